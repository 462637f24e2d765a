"""The multi-node training recipe of docs/cluster.md on one host: two ``accelerate launch`` commands, one per
"machine" (``--num_machines 2``, ranks 0 and 1, rendezvous on 127.0.0.1), one CPU process each over gloo, train a
tiny model together for two steps."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from test_train_script import REPO, SCRIPT, TINY, _env, _free_port


@pytest.mark.slow
def test_two_machines_on_one_host_train_together(tmp_path):
    if shutil.which("accelerate") is None:
        pytest.skip("the accelerate command is not on PATH")
    out, port = tmp_path / "run", _free_port()
    args = TINY + ["--output_dir", str(out), "--max_steps", "2", "--eval_every", "2", "--eval_scenes", "2",
                   "--checkpoint_every", "2", "--num_workers", "0", "--report_to", "none"]
    procs = [subprocess.Popen(["accelerate", "launch", "--multi_gpu", "--num_machines", "2", "--machine_rank",
                               str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
                               "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
                               str(SCRIPT), *args],
                              cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "2 process(es), DistributedType.MULTI_CPU" in logs[0]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 2
    ckpt = out / "checkpoints" / "step-2"
    assert (ckpt / "data_state_rank0.json").is_file() and (ckpt / "data_state_rank1.json").is_file()
