"""``--launcher local|ray|slurm``: every job of an array on an engine, then finalised once, with the bytes of the
jobs run by hand (``--shard i``). A local Ray instance on 127.0.0.1 (2 CPUs) is started once per session; submitit
runs through its ``LocalExecutor`` (``--slurm-local``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest

from matseg_hub.cli import main
from matseg_hub.utils import launchers
from test_textures import make_photo

SCENES = ["--num", "12", "--size", "64", "--max-materials", "4", "--source-limit", "4", "--max-source-side", "128",
          "--no-progress"]
SHARDS = 4


def tree_digest(folder: Path) -> dict:
    """Relative path -> sha256 of every file under ``folder`` (the whole output tree, nothing left out)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def by_hand(command, output: Path, extra=()) -> dict:
    """The reference: every job of the array run by hand, one after another (``--shard i --num-shards n``)."""
    for i in range(SHARDS):
        assert main([*command, "--output", str(output), "--shard", str(i), "--num-shards", str(SHARDS), *extra]) == 0
    return tree_digest(output)


def cli(*args, env=None, timeout=240, cwd=None):
    """``python -m matseg_hub ...`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "matseg_hub", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "MATSEG_NO_PROGRESS": "1", **(env or {})})


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray instance (127.0.0.1, 2 CPUs) for the whole session; its address for ``--ray-address``."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference_2d(tmp_path_factory):
    """The 2D scenes (folders and Parquet) of 4 jobs run by hand."""
    root = tmp_path_factory.mktemp("ref2d")
    return {fmt: by_hand(["generate", "2d", *SCENES, "--format", fmt], root / fmt) for fmt in ("folders", "parquet")}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    src = tmp_path_factory.mktemp("photos")
    for k in range(4):
        cv2.imwrite(str(src / f"p{k}.jpg"), make_photo(8, 10, region=(1 + k % 3, 1, 5), seed=k)[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 98])
    return src


TEXTURES = ["generate", "textures", "--min-cells", "5"]


@pytest.fixture(scope="module")
def reference_textures(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("reftex") / "t"
    digest = by_hand([*TEXTURES, "--input", str(photos)], out)
    assert any(name.endswith("_Texture.jpg") for name in digest)  # the photos do give textures
    return digest


def test_ray_runs_2d_folders_and_parquet_with_the_bytes_of_hand_run_jobs(ray_address, reference_2d, tmp_path):
    # Parquet from a separate process that joins the running cluster, in another working directory than the
    # cluster's workers (a relative --output must still land there); folders from this (already connected) one
    proc = cli("generate", "2d", *SCENES, "--format", "parquet", "--output", "p", "--num-shards", str(SHARDS),
               "--launcher", "ray", "--ray-address", ray_address, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(tmp_path / "p") == reference_2d["parquet"]
    assert main(["generate", "2d", *SCENES, "--format", "folders", "--output", str(tmp_path / "f"),
                 "--num-shards", str(SHARDS), "--launcher", "ray"]) == 0
    assert tree_digest(tmp_path / "f") == reference_2d["folders"]
    assert len([k for k in reference_2d["folders"] if k.endswith("Finished.txt")]) == 12
    assert not (tmp_path / "p.launch").exists() and not (tmp_path / "f.launch").exists()  # the locks are gone


def test_ray_runs_texture_extraction_with_the_bytes_of_hand_run_jobs(ray_address, photos, reference_textures,
                                                                     tmp_path, capsys):
    assert main([*TEXTURES, "--input", str(photos), "--output", str(tmp_path / "t"), "--num-shards", str(SHARDS),
                 "--launcher", "ray"]) == 0
    assert tree_digest(tmp_path / "t") == reference_textures
    assert "from 4 photos" in capsys.readouterr().out  # the finalising pass counts the whole array


def test_a_ray_worker_killed_during_a_shard_is_retried_and_the_bytes_are_the_same(ray_address, reference_2d,
                                                                                  tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv(launchers.KILL_AFTER_ENV, "2")  # the worker dies after its 2nd scene (mid-shard) ...
    monkeypatch.setenv(launchers.KILL_MARKER_ENV, str(marker))  # ... once
    assert main(["generate", "2d", *SCENES, "--format", "parquet", "--output", str(tmp_path / "p"),
                 "--num-shards", str(SHARDS), "--launcher", "ray", "--ray-max-retries", "2"]) == 0
    assert marker.is_file()  # a worker really was killed
    assert tree_digest(tmp_path / "p") == reference_2d["parquet"]


def test_submitit_local_executor_gives_the_same_bytes(reference_2d, tmp_path):
    pytest.importorskip("submitit")
    proc = cli("generate", "2d", *SCENES, "--format", "parquet", "--output", str(tmp_path / "p"),
               "--num-shards", str(SHARDS), "--launcher", "slurm", "--slurm-local", "--slurm-folder",
               str(tmp_path / "logs"))
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(tmp_path / "p") == reference_2d["parquet"]
    assert any((tmp_path / "logs").rglob("*_log.out"))  # submitit's own job logs


def test_a_killed_slurm_job_fails_in_one_line_and_a_rerun_finishes_with_the_same_bytes(reference_2d, tmp_path):
    pytest.importorskip("submitit")
    args = ["generate", "2d", *SCENES, "--format", "folders", "--output", str(tmp_path / "f"),
            "--num-shards", str(SHARDS), "--launcher", "slurm", "--slurm-local", "--slurm-folder",
            str(tmp_path / "logs")]
    marker = tmp_path / "killed"
    proc = cli(*args, env={launchers.KILL_AFTER_ENV: "1", launchers.KILL_MARKER_ENV: str(marker)})
    assert proc.returncode == 1 and marker.is_file()
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("matseg: error: 1 of 4 shards failed (") and "rerun the same command" in line
    assert tree_digest(tmp_path / "f") != reference_2d["folders"]  # a job's scenes are missing ...
    proc = cli(*args, env={launchers.KILL_AFTER_ENV: "1", launchers.KILL_MARKER_ENV: str(marker)})
    assert proc.returncode == 0, proc.stderr  # ... and the rerun finishes them (the hook fires once only)
    assert tree_digest(tmp_path / "f") == reference_2d["folders"]


def test_two_launches_at_once_split_or_wait_and_give_the_right_bytes(reference_2d, tmp_path):
    args = ["generate", "2d", *SCENES, "--format", "parquet", "--output", str(tmp_path / "p"),
            "--num-shards", str(SHARDS), "--launcher", "local"]
    procs = [subprocess.Popen([sys.executable, "-m", "matseg_hub", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "MATSEG_NO_PROGRESS": "1"})
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    # both share the work (0, 0), or one starts after the other published and is told so (never a broken dataset)
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0 or (p.returncode == 1 and "is already a finished dataset" in err), err
    assert 0 in [p.returncode for p in procs]
    assert tree_digest(tmp_path / "p") == reference_2d["parquet"]
    assert not (tmp_path / "p.launch").exists()


def test_a_shard_another_launch_holds_is_waited_for_then_checked(tmp_path):
    """The lock of a live process: this launch runs the other shards, waits, then checks the held one."""
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    held = launchers.shard_lock_path(lock_dir, 1, 3)
    held.write_text(f"{__import__('socket').gethostname()} {os.getpid()}")  # "another launch" (this live pid)
    from matseg_hub.utils.files import _HELD_LOCKS

    _HELD_LOCKS.add(str(held.resolve()))  # held by this process, as another launch's would be: not stale
    ran, checked = [], []
    release = threading.Timer(0.3, lambda: (_HELD_LOCKS.discard(str(held.resolve())), held.unlink()))
    release.start()
    results = launchers.launch_shards(_record, ran, 3, launchers.LocalLauncher(), lock_dir=lock_dir,
                                      shard_done=lambda i: checked.append(i) or True, poll_s=0.05)
    release.join()
    assert ran == [0, 2] and checked == [1] and [r.shard for r in results] == [0, 1, 2]
    assert not lock_dir.exists()


def _record(payload, shard):
    payload.append(shard)
    return 0


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    launchers.shard_lock_path(lock_dir, 0, 2).write_text(f"{__import__('socket').gethostname()} {dead.stdout.strip()}")
    ran = []
    launchers.launch_shards(_record, ran, 2, launchers.LocalLauncher(), lock_dir=lock_dir)
    assert ran == [0, 1]


def test_a_launch_lock_of_another_node_is_waited_for_while_fresh_and_taken_over_once_stale(tmp_path):
    """Another node's launch holds shard 1 (its lock names that node, which this host cannot check): while the lock
    is fresh this launch waits; once untouched for stale_after_s (that node died), it takes the shard over."""
    import time

    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock = launchers.shard_lock_path(lock_dir, 1, 2)
    lock.write_text("another-node.cluster 4242")
    ran, result = [], {}
    t = threading.Thread(target=lambda: result.update(r=launchers.launch_shards(
        _record, ran, 2, launchers.LocalLauncher(), lock_dir=lock_dir, poll_s=0.05, stale_after_s=1.5)))
    t.start()
    time.sleep(0.8)
    assert ran == [0] and t.is_alive()  # shard 1 waits for the fresh lock
    os.utime(lock)  # the other launch's heartbeat
    time.sleep(0.9)
    assert ran == [0] and t.is_alive()
    t.join(10)
    assert not t.is_alive() and ran == [0, 1] and [r.shard for r in result["r"]] == [0, 1]
    assert not lock_dir.exists()


def test_a_launch_refreshes_its_locks_while_it_runs(tmp_path):
    import time

    lock_dir = tmp_path / "locks"
    stamps = []

    def slow(payload, shard):
        lock = launchers.shard_lock_path(lock_dir, shard, 1)
        stamps.append(lock.stat().st_mtime)
        time.sleep(0.6)
        stamps.append(lock.stat().st_mtime)
        return 0

    launchers.launch_shards(slow, None, 1, launchers.LocalLauncher(), lock_dir=lock_dir, heartbeat_s=0.1)
    assert stamps[1] > stamps[0]


def test_two_takers_of_one_stale_lock_never_both_win(tmp_path):
    """Many threads race to take over one stale lock (a dead process of this host): exactly one gets it."""
    from matseg_hub.utils import files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = __import__("socket").gethostname()
    for round_ in range(5):
        lock = tmp_path / f"r{round_}.lock"
        lock.write_text(f"{host} {dead.stdout.strip()}")
        barrier, wins = threading.Barrier(8), []

        def go():
            barrier.wait()
            if files.take_lock(lock):
                wins.append(threading.get_ident())

        threads = [threading.Thread(target=go) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(wins) == 1 and lock.read_text() == f"{host} {os.getpid()}"
        files.release_lock(lock)
        assert not lock.exists()


def test_a_job_lock_left_on_another_node_is_taken_over_by_the_launch_not_by_a_hand_run(reference_2d, tmp_path):
    """A shard killed on node X leaves its writer's job lock naming X; the launch's rerun (on this node) owns the
    shard through its launch lock, so it takes that lock over; a hand-run job cannot tell and refuses."""
    out = tmp_path / "p"
    args = ["generate", "2d", *SCENES, "--format", "parquet", "--output", str(out), "--num-shards", str(SHARDS),
            "--launcher", "local"]
    marker = tmp_path / "killed"
    proc = cli(*args, env={launchers.KILL_AFTER_ENV: "1", launchers.KILL_MARKER_ENV: str(marker)})
    assert proc.returncode == 137 and marker.is_file()
    locks = [p for p in out.parent.rglob("*.lock") if p.parent.name != "p.launch"]
    assert locks, sorted(str(p) for p in tmp_path.rglob("*"))
    for lock in locks:
        lock.write_text("another-node.cluster 4242")
    hand = cli(*args[:-2], "--shard", "0")
    assert hand.returncode == 1 and "being built right now by another process (another-node.cluster 4242" in (
        hand.stderr.strip().splitlines()[-1])
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(out) == reference_2d["parquet"]


def test_launcher_option_errors_are_one_line(tmp_path, capsys, monkeypatch):
    base = ["generate", "2d", *SCENES, "--output", str(tmp_path / "o"), "--num-shards", "2"]
    assert main([*base, "--launcher", "local", "--shard", "1"]) == 1
    assert "--shard 1 runs one job of an array by itself" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([*base, "--launcher", "ray"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "matseg-hub[ray]"' in err
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(["build", "textures", "--input", str(tmp_path), "--output", str(tmp_path / "b"), "--num-shards", "2",
                 "--launcher", "slurm", "--slurm-local"]) == 1
    assert 'pip install "matseg-hub[slurm]"' in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "b").exists()


def test_slurm_on_a_machine_without_slurm_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert main(["generate", "2d", *SCENES, "--output", str(tmp_path / "o"), "--num-shards", "2",
                 "--launcher", "slurm"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Slurm (no `sbatch` on PATH)" in err and "--slurm-local" in err
    assert not (tmp_path / "o").exists()


def test_an_unfinished_dataset_names_the_missing_shards(tmp_path):
    from matseg_hub.cli._launch import check_dataset_finalized
    from matseg_hub.errors import MatSegOutputError

    out = tmp_path / "p"
    assert main(["generate", "2d", *SCENES, "--format", "parquet", "--output", str(out), "--shard", "2",
                 "--num-shards", str(SHARDS)]) == 0
    with pytest.raises(MatSegOutputError, match=r"shards 0-1, 3 of 4 did not finish"):
        check_dataset_finalized(str(out), SHARDS)


@pytest.fixture(scope="module")
def texture_folder(photos, tmp_path_factory):
    tex = tmp_path_factory.mktemp("tex") / "t"
    assert main([*TEXTURES, "--input", str(photos), "--output", str(tex)]) == 0
    return tex


def test_pbr_on_ray_equals_hand_run_jobs(ray_address, texture_folder, tmp_path):
    pbr = ["generate", "pbr", "--textures", str(texture_folder), "--num", "6", "--seed", "3"]
    ref = by_hand(pbr, tmp_path / "ref", extra=["--preview", str(tmp_path / "ref.png")])
    assert main([*pbr, "--output", str(tmp_path / "r"), "--num-shards", str(SHARDS), "--launcher", "ray",
                 "--preview", str(tmp_path / "r.png")]) == 0
    assert tree_digest(tmp_path / "r") == ref and len([k for k in ref if k.endswith("Finished.txt")]) == 6
    # the preview shows the whole array (written once, by the finalising pass), as the last hand-run job's does
    assert (tmp_path / "r.png").read_bytes() == (tmp_path / "ref.png").read_bytes()


def test_build_with_the_local_launcher_equals_hand_run_jobs(texture_folder, tmp_path):
    tex = texture_folder
    ref = by_hand(["build", "textures", "--input", str(tex)], tmp_path / "ref")
    assert main(["build", "textures", "--input", str(tex), "--output", str(tmp_path / "b"), "--num-shards",
                 str(SHARDS), "--launcher", "local"]) == 0
    assert tree_digest(tmp_path / "b") == ref


def test_time_limits_and_ranges():
    from matseg_hub.cli._launch import _minutes

    assert [_minutes(t) for t in ("90", "1:30", "01:30:00", "0:00:30")] == [90, 2, 90, 1]  # Slurm: M, M:S, H:M:S
    assert launchers._ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


def test_a_launched_build_pushes_once_after_the_check(texture_folder, tmp_path, monkeypatch, capsys):
    """The jobs never push; the launching process pushes the finalised folder once (a recorded publish_folder: the
    local Hub server of the tests takes no uploads)."""
    import matseg_hub.hub.publish as publish

    calls = []

    def record(folder, repo_id, **kwargs):
        calls.append((Path(folder), repo_id, (Path(folder) / "README.md").is_file()))
        return "0" * 40

    monkeypatch.setattr(publish, "publish_folder", record)
    out = tmp_path / "b"
    assert main(["build", "textures", "--input", str(texture_folder), "--output", str(out), "--num-shards",
                 str(SHARDS), "--launcher", "local", "--push-to-hub", "ns/textures"]) == 0
    assert calls == [(out, "ns/textures", True)]
    assert "pushed to" in capsys.readouterr().out
    # the same command again: one line saying the dataset is finished, before any job runs
    assert main(["build", "textures", "--input", str(texture_folder), "--output", str(out), "--num-shards",
                 str(SHARDS), "--launcher", "local"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is already a finished dataset" in err and "--overwrite" in err


def _report_cpus(payload, shard):
    payload.append((shard, launchers.available_cpus(), os.environ.get("OMP_NUM_THREADS")))
    return 0


def test_a_launched_shard_sizes_its_threads_to_the_cpus_its_task_reserved(monkeypatch):
    """A shard task of 3 CPUs sees 3 usable CPUs (a Blender worker's default threads follow it), whatever the node
    has; outside a launch it is the CPUs this process may run on (sched_getaffinity: Slurm's cgroup, taskset)."""
    monkeypatch.delenv(launchers.TASK_CPUS_ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))  # restored after the test
    assert launchers.available_cpus() == len(os.sched_getaffinity(0))
    seen, cv_threads = [], cv2.getNumThreads()
    try:
        result = launchers._call_shard(_report_cpus, seen, 5, {}, threads=3)
    finally:
        cv2.setNumThreads(cv_threads)
    assert (result.shard, result.rc, result.error) == (5, 0, None)
    assert seen == [(5, 3, "3")]
    assert launchers.TASK_CPUS_ENV not in os.environ  # only while the shard runs
    monkeypatch.setenv(launchers.TASK_CPUS_ENV, "junk")
    assert launchers.available_cpus() == len(os.sched_getaffinity(0))


def test_only_path_options_are_made_absolute_for_the_engine_workers(tmp_path, monkeypatch):
    """Engine workers run elsewhere, so relative paths travel absolute; a --preset or --push-to-hub value that
    happens to name a file in the working directory is not a path, and each folder of a list is made absolute."""
    from matseg_hub.cli._launch import _absolute

    monkeypatch.chdir(tmp_path)
    for name in ("paper", "photos", "a", "b"):
        (tmp_path / name).mkdir()
    assert _absolute("preset", "paper") == "paper"
    assert _absolute("push_to_hub", "a") == "a"
    assert _absolute("output", "new/out") == str(tmp_path / "new" / "out")  # an output need not exist yet
    assert _absolute("natural_images", "photos") == str(tmp_path / "photos")
    assert _absolute("source", "user/matseg-benchmark") == "user/matseg-benchmark"  # a Hub id, no such folder
    assert _absolute("from_folders", ["a", "b", "/abs/c"]) == [str(tmp_path / "a"), str(tmp_path / "b"), "/abs/c"]
    assert _absolute("num", 5) == 5
