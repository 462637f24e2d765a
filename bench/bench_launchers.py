"""Benchmark: ``--launcher ray`` scaling (2 Ray workers vs 1) and the per-shard overhead of Ray and submitit.

    python bench/bench_launchers.py                      # 400 scenes of 512 px, 4 shards; a few minutes on 2 cores
    python bench/bench_launchers.py --scenes 400 --size 128 --shards 8 --overhead-shards 8

What is measured (wall clock, this machine; the figures are only as quiet as the machine: the load average is
printed before and after, and a ratio measured while other jobs run is not the engine's):

* scaling: ``matseg generate 2d --num N --format parquet --num-shards S --launcher ray`` (1 CPU per task; a task's
  OpenCV/OpenMP pools are sized to its CPUs) on a local Ray instance (127.0.0.1) of 1 CPU (1 worker) and of 2 CPUs
  (2 workers); the ratio ``t(1 worker) / t(2 workers)`` is the scaling (goal >= 1.8x on 2 cores). Every run's
  output is compared byte for byte (they must be equal). A small warm-up launch starts the Ray workers first;
  each configuration runs ``--repeats`` times, interleaved, and the best run counts.
* per-shard overhead: K shards of one 64-px scene each (``--num K --num-shards K``), on the local launcher (this
  process, one shard after another: the reference), on Ray with one task at a time, and on submitit's
  LocalExecutor (``--slurm-local``: one subprocess per job, all at once); ``(t_engine - t_local) / K`` is what the
  engine adds per shard (process start, imports, pickling, polling). Every shard loads its sources, in every
  engine, so that cost is in the reference too.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _run(argv) -> float:
    """One ``matseg`` command in this process (logs at WARNING); its wall-clock seconds."""
    from matseg_hub.cli import build_parser
    from matseg_hub.utils.logging import disable_progress_bars, set_verbosity

    args = build_parser().parse_args(argv)
    set_verbosity(logging.WARNING)
    disable_progress_bars()
    t0 = time.perf_counter()
    rc = args._run(args)
    elapsed = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"bench: {' '.join(argv)} exited with {rc}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=400, help="scenes of the scaling run (default 400)")
    parser.add_argument("--size", type=int, default=512, help="scene side in pixels (default 512)")
    parser.add_argument("--shards", type=int, default=4, help="shards of the scaling run (default 4)")
    parser.add_argument("--overhead-shards", type=int, default=8, help="shards of the overhead runs (default 8)")
    parser.add_argument("--scratch", default=None, help="folder for the outputs (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each scaling configuration (default 2)")
    parser.add_argument("--skip-slurm", action="store_true", help="leave out submitit")
    opts = parser.parse_args()

    os.environ.setdefault("MATSEG_NO_PROGRESS", "1")
    import ray

    scratch = Path(tempfile.mkdtemp(prefix="bench_launchers_", dir=opts.scratch))
    common = ["generate", "2d", "--size", str(opts.size), "--max-materials", "5", "--source-limit", "8",
              "--max-source-side", "256", "--no-progress", "--format", "parquet"]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) before")

    def start(cpus: int) -> None:  # a local Ray instance of `cpus` CPUs, its workers started by a warm-up launch
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
        print(f"ray.init (local instance, {cpus} CPU{'s' if cpus > 1 else ''}): {time.perf_counter() - t0:.1f} s")
        warm = scratch / f"warmup_{cpus}"
        _run([*common, "--num", str(2 * cpus), "--num-shards", str(cpus), "--output", str(warm), "--launcher", "ray"])
        shutil.rmtree(warm, ignore_errors=True)

    scaling = {1: [], 2: []}
    for rep in range(opts.repeats):  # interleaved (1, 2, 1, 2, ...) so both see the same load; best kept
        for workers in (1, 2):
            start(workers)
            try:
                out = scratch / f"scaling_{workers}_{rep}"
                scaling[workers].append((_run([*common, "--num", str(opts.scenes), "--num-shards", str(opts.shards),
                                               "--output", str(out), "--launcher", "ray", "--ray-cpus-per-task",
                                               "1"]), _digest(out)))
                shutil.rmtree(out, ignore_errors=True)
            finally:
                ray.shutdown()
    k = opts.overhead_shards
    over = {}
    tiny = ["generate", "2d", "--size", "64", "--max-materials", "4", "--source-limit", "4",
            "--max-source-side", "128", "--no-progress", "--format", "parquet", "--num", str(k),
            "--num-shards", str(k)]
    over["local"] = _run([*tiny, "--output", str(scratch / "o_local"), "--launcher", "local"])
    start(1)
    try:
        over["ray (1 task at a time)"] = _run([*tiny, "--output", str(scratch / "o_ray"), "--launcher", "ray"])
    finally:
        ray.shutdown()
    if not opts.skip_slurm:
        over["submitit LocalExecutor"] = _run([*tiny, "--output", str(scratch / "o_slurm"), "--launcher", "slurm",
                                               "--slurm-local", "--slurm-folder", str(scratch / "slurm_logs")])
    digests = {name: _digest(scratch / f"o_{key}") for name, key in
               (("local", "local"), ("ray (1 task at a time)", "ray"), ("submitit LocalExecutor", "slurm"))
               if (scratch / f"o_{key}").exists()}

    print(f"\nscaling: {opts.scenes} scenes of {opts.size} px, {opts.shards} shards, --launcher ray, 1 CPU per task")
    for workers in (1, 2):
        times = ", ".join(f"{t:.1f}" for t, _ in scaling[workers])
        best = min(t for t, _ in scaling[workers])
        print(f"  {workers} worker{'s' if workers > 1 else ' '}: best {best:7.1f} s  {opts.scenes / best:6.1f} scenes/s"
              f"  (runs: {times} s)")
    t1, t2 = (min(t for t, _ in scaling[w]) for w in (1, 2))
    ratio = t1 / t2
    same = len({d for w in (1, 2) for _, d in scaling[w]}) == 1
    print(f"  ratio 1 worker / 2 workers: {ratio:.2f}x  (goal >= 1.8x: {'met' if ratio >= 1.8 else 'NOT met'}); "
          f"same bytes in every run: {same}")
    print(f"\nper-shard overhead: {k} shards of one 64-px scene each")
    base = over["local"]
    for name, t in over.items():
        extra = "" if name == "local" else f"  +{(t - base) / k * 1000:7.0f} ms per shard vs local"
        print(f"  {name:24s}: {t:6.2f} s  {t / k * 1000:7.0f} ms per shard{extra}")
    print(f"  same bytes on every engine: {len(set(digests.values())) == 1} ({', '.join(digests)})")
    print(f"\nload average {os.getloadavg()[0]:.2f} (1 min) after; outputs in {scratch} (removed)")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
