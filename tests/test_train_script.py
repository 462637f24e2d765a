"""``train/train.py`` end to end: config parsing, exact data resume, and real (tiny) training through
``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo), in subprocesses.

On a machine without GPUs ``--multi_gpu`` makes accelerate start the processes with torchrun; the script passes
``cpu=True`` to ``Accelerator`` there, which gives a gloo process group (``--cpu --num_processes 2`` alone would
silently start a single process in this accelerate version).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from matseg_hub.errors import MatSegInputError
from matseg_hub.training.config import TrainConfig, load_config, parse_overrides

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train" / "train.py"
TINY = [
    "--depths", "[1, 1, 1, 1]", "--hidden_sizes", "[8, 16, 32, 64]", "--descriptor_dim", "16", "--drop_path_rate", "0",
    "--data_sources", "[{type: scenes2d, weight: 1, min_size: 64, max_size: 128, max_side: 128}]",
    "--min_size", "64", "--max_size", "96", "--max_pixels", "24576", "--max_batch_size", "3",
    "--learning_rate", "2e-3", "--weight_decay", "4e-5", "--mixed_precision", "no", "--report_to", "tensorboard",
    "--logging_every", "1", "--eval_max_size", "256", "--eval_scene_size", "96",
]


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------
def test_config_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 7\nlearning_rate: 1.0e-4\ndepths: [1, 1, 1, 1]\nhidden_sizes: [8, 16, 32, 64]\n")
    cfg = load_config(path, ["--max_steps", "9", "--learning-rate=3e-4", "--augment", "false", "--push_to_hub",
                             "null", "--data_sources", "[{type: folder, path: x, weight: 2}]", "--overfit_one_batch"])
    assert cfg.max_steps == 9 and cfg.learning_rate == 3e-4 and cfg.depths == [1, 1, 1, 1]
    assert cfg.augment is False and cfg.push_to_hub is None and cfg.overfit_one_batch is True
    assert cfg.data_sources == [{"type": "folder", "path": "x", "weight": 2}]
    assert parse_overrides(["--a=1", "--b", "x y"]) == {"a": 1, "b": "x y"}
    for bad in (["--no_such_key", "1"], ["--max_steps", "many"], ["--max_steps", "0"], ["max_steps"],
                ["--loss_scope", "pixel"]):
        with pytest.raises(MatSegInputError):
            load_config(path, bad)
    # every shipped recipe parses
    for name in ("tiny-cpu.yaml", "paper.yaml"):
        assert isinstance(load_config(REPO / "train" / "configs" / name), TrainConfig)


def test_best_is_picked_on_heldout_scenes_by_default(tmp_path):
    """The benchmark is the test set: best/ is picked on held-out generated scenes unless asked otherwise."""
    default = load_config(None)
    assert default.best_metric == "scenes/point_triplet" and default.eval_scenes > 0
    assert not default.selects_on_test_set
    for name in ("tiny-cpu.yaml", "paper.yaml"):
        cfg = load_config(REPO / "train" / "configs" / name)
        assert cfg.best_metric.startswith("scenes/") and cfg.eval_scenes > 0, name
    # selecting on the benchmark is allowed but flagged (train.py warns, the card says so)
    assert load_config(None, ["--best_metric", "benchmark/point_triplet"]).selects_on_test_set
    assert load_config(None, ["--best_metric", "null"]).best_metric is None
    with pytest.raises(MatSegInputError, match="eval_scenes"):  # nothing to select on
        load_config(None, ["--eval_scenes", "0"])
    assert load_config(None, ["--eval_scenes", "0", "--eval_benchmark", "null"]).eval_scenes == 0  # no evaluation
    with pytest.raises(MatSegInputError, match="best_metric"):
        load_config(None, ["--best_metric", "point_triplet"])


def test_model_card_says_what_picked_the_checkpoint(tmp_path):
    from matseg_hub.models.matseg import MatSegConfig, MatSegModel
    from matseg_hub.training.model import card_metrics, save_model, selection_text

    result = {"step": 40, "benchmark/point_triplet": 0.91, "benchmark/point_triplet_soft": 0.8,
              "scenes/point_triplet": 0.95, "eval_seconds": 3.0}
    assert card_metrics(result) == {"benchmark_point_triplet": 0.91}
    model = MatSegModel(MatSegConfig.from_convnext_size("tiny", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64],
                                                        descriptor_dim=8))
    cfg = load_config(None, ["--eval_scenes", "30"])
    save_model(model, tmp_path / "best", metrics=card_metrics(result), selection=selection_text(cfg, result, 40))
    card = (tmp_path / "best" / "README.md").read_text()
    assert "## Model selection" in card and "`scenes/point_triplet` = 0.9500 on 30 held-out generated 2D scenes" in card
    assert "benchmark numbers are test numbers" in card and "| benchmark_point_triplet | 0.9100 |" in card
    assert "scenes_point_triplet |" not in card  # held-out numbers are selection data, not benchmark results
    on_test = load_config(None, ["--best_metric", "benchmark/point_triplet"])
    text = selection_text(on_test, result, 40)
    assert "`benchmark/point_triplet` = 0.9100 on the benchmark itself" in text and "not test numbers" in text
    assert "not selected by any metric" in selection_text(cfg, result)


def _train_py(args, tmp_path, timeout=120):
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, words", [
    (["--max_stepz", "3"], "unknown config key(s) ['max_stepz']"),
    (["--config", "no-such.yaml"], "config file no-such.yaml not found"),
    (["--resume_from_checkpoint", "runs/none/checkpoints/step-3"], "does not exist"),
    (["--resume_from_checkpoint", "."], "is not a complete checkpoint"),
    (["--init_from", "./no-such-model"], "init_from: cannot load"),
])
def test_bad_setting_or_missing_checkpoint_ends_in_one_line(tmp_path, args, words):
    """train.py used to print its own typed error as a traceback."""
    proc = _train_py(TINY + ["--output_dir", str(tmp_path / "run"), "--eval_benchmark", "null", "--eval_scenes", "0",
                             "--report_to", "none", "--num_workers", "0", *args], tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: ") and words in last, last
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------------------------
# data: exact resume in the middle of a DataLoader round
# ---------------------------------------------------------------------------------------------------------------
def test_loader_resumes_exactly_mid_round():
    from matseg_hub.training.data import build_loader

    cfg = load_config(None, TINY + ["--num_workers", "2"])
    loader = build_loader(cfg)
    it = iter(loader)
    seen = [next(it) for _ in range(3)]
    state = json.loads(json.dumps(loader.state_dict()))  # JSON-serialisable
    assert state["drop"] == 1  # 3 batches with 2 workers: one batch of the current round consumed
    following = [next(it) for _ in range(2)]
    del it
    again = build_loader(cfg)
    again.load_state_dict(state)
    it = iter(again)
    for expected in following:
        got = next(it)
        assert torch.equal(got["images"], expected["images"]) and torch.equal(got["masks"], expected["masks"])
    del it
    assert not torch.equal(seen[0]["images"][:1], following[0]["images"][:1])
    with pytest.raises(MatSegInputError):
        build_loader(load_config(None, TINY + ["--num_workers", "1"])).load_state_dict(state)


def test_weighted_mixture_of_generated_and_folder_scenes(tmp_path):
    """A 2D-generator stream mixed with a folder in the official layout; both used, same batches per seed."""
    from matseg_hub.synthetic.scenes2d import SceneConfig, generate_scene
    from matseg_hub.synthetic.layout import write_scene
    from matseg_hub.training.data import build_loader

    for i in range(4):
        write_scene(tmp_path / "scenes" / str(i), generate_scene(5, i, None, SceneConfig(size=(96, 96))))
    sources = ("[{type: scenes2d, weight: 1, min_size: 64, max_size: 128, max_side: 128}, "
               f"{{type: folder, path: '{tmp_path / 'scenes'}', weight: 3}}]")
    cfg = load_config(None, TINY + ["--num_workers", "0", "--data_sources", sources])
    runs = []
    for _ in range(2):
        it = iter(build_loader(cfg))
        runs.append([next(it) for _ in range(4)])
    picked = torch.cat([b["sources"] for b in runs[0]])
    assert set(picked.tolist()) == {0, 1} and (picked == 1).sum() > (picked == 0).sum()
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(*runs))


# ---------------------------------------------------------------------------------------------------------------
# real training through accelerate, 2 processes
# ---------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore",
               MATSEG_DISABLE_PROGRESS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _launch(args, processes=2, timeout=240):
    if shutil.which("accelerate") is None:
        pytest.skip("the accelerate command is not on PATH")
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(SCRIPT), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _history(folder: Path):
    return {h["step"]: h for h in json.loads((folder / "trainer_state.json").read_text())["history"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    remote = out.parent / "hub-remote.git"  # publish_folder's git transport into a local bare repository
    proc = _launch(TINY + ["--output_dir", str(out), "--max_steps", "5", "--checkpoint_every", "3",
                           "--eval_every", "5", "--eval_scenes", "3", "--eval_benchmark", "builtin",
                           "--num_workers", "2", "--keep_checkpoints", "3",
                           "--push_to_hub", "tester/matseg-tiny", "--hub_git_remote", str(remote)])
    return out, proc


@pytest.mark.slow
def test_two_process_training_writes_everything(trained):
    out, proc = trained
    assert "2 process(es), DistributedType.MULTI_CPU" in proc.stderr + proc.stdout
    ckpt = out / "checkpoints" / "step-3"
    for name in ("model.safetensors", "optimizer.bin", "random_states_0.pkl", "random_states_1.pkl",
                 "data_state_rank0.json", "data_state_rank1.json", "trainer_state.json"):
        assert (ckpt / name).is_file(), name
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 5 and sorted(_history(out)) == [1, 2, 3, 4, 5]
    assert [e["step"] for e in state["evals"]] == [0, 5]
    assert 0.0 <= state["evals"][-1]["benchmark/point_triplet"] <= 1.0
    assert "scenes/point_triplet" in state["evals"][-1]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    card = (out / "best" / "README.md").read_text()
    assert "point_triplet" in card and "model-index" in card and "tester/matseg-tiny" in card
    # best/ was picked on the held-out scenes; the benchmark numbers are reported as test numbers
    best = json.loads((out / "best" / "eval_results.json").read_text())
    assert state["best_step"] == best["step"] and state["best"] == best["scenes/point_triplet"]
    assert "selected as the best by `scenes/point_triplet`" in card and "3 held-out generated 2D scenes" in card
    # the best model was pushed, its card holding the measured numbers
    remote = out.parent / "hub-remote.git"
    pushed = subprocess.run(["git", "--git-dir", str(remote), "show", "main:README.md"], capture_output=True, text=True)
    assert pushed.returncode == 0 and "benchmark_point_triplet" in pushed.stdout
    files = subprocess.run(["git", "--git-dir", str(remote), "ls-tree", "--name-only", "main"], capture_output=True,
                           text=True).stdout.split()
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(files)


@pytest.mark.slow
def test_resume_gives_the_same_batches_and_losses(trained, tmp_path):
    out, _ = trained
    resumed = tmp_path / "resumed"
    # step 3 with 2 DataLoader workers per process: the checkpoint falls in the middle of a worker round
    _launch(TINY + ["--output_dir", str(resumed), "--max_steps", "5", "--checkpoint_every", "100",
                    "--eval_every", "100", "--eval_scenes", "0", "--eval_benchmark", "null", "--num_workers", "2",
                    "--resume_from_checkpoint", str(out / "checkpoints" / "step-3")])
    a, b = _history(out), _history(resumed)
    assert sorted(b) == [1, 2, 3, 4, 5]
    for step in (4, 5):
        assert b[step]["batch"] == a[step]["batch"], f"step {step}: another batch after resume"
        assert b[step]["loss"] == pytest.approx(a[step]["loss"], rel=1e-5, abs=1e-6), f"step {step}"


@pytest.mark.slow
def test_saved_model_loads_and_scores(trained):
    out, _ = trained
    import matseg_hub.models.matseg  # noqa: F401  (registers the model type)
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out / "best")
    assert model.config.descriptor_dim == 16
    y = model(torch.zeros(1, 3, 64, 64)).descriptor_map
    assert tuple(y.shape) == (1, 16, 16, 16)
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", str(out / "best"),
                           "--data", str(out / "heldout_scenes"), "--output", str(out / "eval.json")],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "eval.json").read_text())
    assert result["mean"]["num_scored_images"] == 3 and 0 <= result["mean"]["point_triplet"] <= 1


@pytest.mark.slow
def test_loss_decreases_on_a_fixed_batch(tmp_path):
    """Plain ``python train/train.py`` (one process), one batch over and over: the loss must fall."""
    out = tmp_path / "overfit"
    cmd = [sys.executable, str(SCRIPT), *TINY, "--output_dir", str(out), "--max_steps", "12",
           "--overfit_one_batch", "true", "--augment", "false", "--num_workers", "0", "--eval_benchmark", "null",
           "--eval_scenes", "0", "--checkpoint_every", "100", "--eval_every", "100", "--report_to", "none"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    h = _history(out)
    assert len({h[s]["batch"] for s in h}) == 1
    first, last = h[1]["loss"], min(h[s]["loss"] for s in (10, 11, 12))
    assert last < 0.7 * first, (first, last)
