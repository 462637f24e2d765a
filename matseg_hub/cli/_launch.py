"""``--launcher local|ray|slurm`` for every sharded command: run all ``--num-shards`` jobs on an engine, then finalise.

A command calls :func:`maybe_launch` at the top of its ``run(args)``. Without ``--launcher`` it returns ``None``
and the command runs job ``--shard`` (default 0) as it always did. With a launcher, it runs the command's own
``run(args)`` once per shard (``args.shard = i``, on the engine: :mod:`matseg_hub.utils.launchers`), then calls the
command's ``finalize(args, results)`` once in this process (card/preview/manifest check, push) and returns its exit
status.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine options (``--launcher``, ``--ray-*``, ``--slurm-*``) of a sharded command."""
    group = parser.add_argument_group(
        "cluster engines", "with --launcher, --num-shards N (without --shard) runs all N jobs on the engine, then "
        "finalises once (card, preview, check that every job finished); see docs/cluster.md")
    group.add_argument("--launcher", choices=("local", "ray", "slurm"), default=None,
                       help="run every job of the array: local (one after another in this process), ray (tasks on "
                            "a Ray cluster), slurm (a submitit job array). Default: run only job --shard here")
    group.add_argument("--ray-address", default=None, help="Ray cluster to join (ray.init(address=...): 'auto', "
                       "'HOST:6379', 'ray://HOST:10001'; default: $RAY_ADDRESS, else a local Ray instance)")
    group.add_argument("--ray-num-cpus", type=int, default=None,
                       help="CPUs of the local Ray instance started when no cluster is given (default: all)")
    group.add_argument("--ray-cpus-per-task", type=float, default=None,
                       help="CPUs each job's task reserves (default: --workers, else 1)")
    group.add_argument("--ray-max-retries", type=int, default=3,
                       help="reruns of a job whose Ray worker or node died (default 3; a rerun resumes the job)")
    group.add_argument("--slurm-partition", default=None, help="Slurm partition (default: the cluster's)")
    group.add_argument("--slurm-time", type=_minutes, default=None,
                       help="time limit per job, minutes or HH:MM:SS (default 24:00:00; a job that runs out is "
                            "requeued and resumes)")
    group.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per job (default: --workers)")
    group.add_argument("--slurm-mem-gb", type=float, default=None, help="memory per job in GB")
    group.add_argument("--slurm-max-parallel", type=int, default=None, help="array jobs running at once")
    group.add_argument("--slurm-local", action="store_true",
                       help="run the array with submitit's LocalExecutor (subprocesses here; no Slurm needed)")
    group.add_argument("--slurm-folder", default=None,
                       help="submitit's folder for job files and logs (default: <output>.launch/slurm)")


def _minutes(text: str) -> int:
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a time limit is minutes or HH:MM:SS, got {text!r}") from None
    if len(values) == 1:
        minutes = values[0]
    elif len(values) in (2, 3):
        h, m, s = ([0] * (3 - len(values)) + values)
        minutes = h * 60 + m + (1 if s else 0)
    else:
        raise argparse.ArgumentTypeError(f"a time limit is minutes or HH:MM:SS, got {text!r}")
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"a time limit must be at least one minute, got {text!r}")
    return minutes


def launch_dir(output: str) -> Path:
    """``<output>.launch``: the launch's shard lock files (removed when the launch ends) and submitit logs."""
    out = Path(output).resolve()
    return out.with_name(out.name + ".launch")


_PATH_OPTIONS = ("output", "preview", "slurm_folder")
# options that name a local path when one exists by that name (else a Hub id, a command on PATH, ...)
_MAYBE_PATH_OPTIONS = ("source", "input", "from_folders", "natural_images", "textures", "pbr", "hdri", "objects",
                       "blender_python")


def _absolute(name: str, value: Any) -> Any:
    """A relative path option made absolute: engine workers run in another working directory (a Ray worker in the
    one its raylet was started from, a Slurm job wherever the cluster puts it). The output options always; the
    input ones (``_MAYBE_PATH_OPTIONS``, each item of a list) when such a path exists; any other option (``--preset``,
    ``--push-to-hub``, ...) is kept as given even if a file of that name happens to exist."""
    import os

    if isinstance(value, list) and name in _MAYBE_PATH_OPTIONS:
        return [_absolute(name, v) for v in value]
    if not isinstance(value, str) or not value or os.path.isabs(value):
        return value
    if name in _PATH_OPTIONS or (name in _MAYBE_PATH_OPTIONS and os.path.exists(value)):
        return os.path.abspath(value)
    return value


def run_cli_shard(payload, shard: int) -> int:
    """One job of a command: ``module.run(args)`` with ``args.shard = shard`` (what a ``--shard`` run calls)."""
    import importlib
    import logging

    from ..utils.logging import set_verbosity

    module_name, values = payload
    args = argparse.Namespace(**values)
    args.shard, args.launcher = shard, None
    set_verbosity(logging.DEBUG if values.get("verbose") else logging.INFO)
    return importlib.import_module(module_name).run(args)


def maybe_launch(args: argparse.Namespace, module_name: str, finalize: Callable[[argparse.Namespace, list], int],
                 *, shard_overrides: Optional[Dict[str, Any]] = None,
                 shard_done: Optional[Callable[[int], bool]] = None, claim: Optional[str] = None,
                 sources: Sequence[Optional[str]] = (), finished_dataset: bool = False) -> Optional[int]:
    """Run every job of the array on ``args.launcher`` then ``finalize(args, results)``; ``None`` without one.

    Args:
        module_name: the command's module (its ``run`` is the per-shard function).
        finalize: called once in this process after every job finished (its return is the exit status).
        shard_overrides: argument values for the jobs (e.g. ``{"preview": None}``: the finaliser writes it).
        shard_done: whether a job is finished (checked for jobs another launch was running; see
            :func:`~matseg_hub.utils.launchers.launch_shards`).
    """
    from ..errors import MatSegInputError
    from ..hub.writer import check_job
    from ..utils.launchers import launch_shards, make_launcher

    if getattr(args, "launcher", None) is None:
        if args.shard is None:
            args.shard = 0
        return None
    if args.shard is not None:
        raise MatSegInputError(f"--shard {args.shard} runs one job of an array by itself: drop it to run all "
                               f"--num-shards jobs with --launcher {args.launcher}, or drop --launcher")
    check_job(0, args.num_shards)
    if finished_dataset and dataset_finalized(args.output) and not getattr(args, "overwrite", False):
        from ..errors import MatSegOutputError

        raise MatSegOutputError(f"{args.output} is already a finished dataset (every job of an earlier run is done); "
                                "pass --overwrite to rebuild it (only the files this tool wrote there are replaced), "
                                "or choose another --output", path=args.output)
    workers = max(1, int(getattr(args, "workers", 1) or 1))
    folder = args.slurm_folder or str(launch_dir(args.output) / "slurm")
    cpus = (args.slurm_cpus if args.launcher == "slurm" else args.ray_cpus_per_task) or workers
    launcher = make_launcher(args.launcher, address=args.ray_address, num_cpus=args.ray_num_cpus,
                             cpus_per_task=cpus, max_retries=args.ray_max_retries,
                             folder=folder, partition=args.slurm_partition, time_min=args.slurm_time,
                             mem_gb=args.slurm_mem_gb, max_parallel=args.slurm_max_parallel, local=args.slurm_local)
    if claim is not None:
        from ..utils.files import claim_output_folder

        claim_output_folder(args.output, claim, sources=sources)
    values = {k: _absolute(k, v) for k, v in vars(args).items() if not k.startswith("_")}
    values.update(shard_overrides or {})
    results = launch_shards(run_cli_shard, (module_name, values), args.num_shards, launcher,
                            lock_dir=launch_dir(args.output), shard_done=shard_done)
    return int(finalize(args, results) or 0)


# -- finalisers' checks ---------------------------------------------------------------------------------------------
def dataset_progress(output: str, num_shards: int) -> Dict[int, bool]:
    """Shard -> complete, from the Parquet writer's job manifests in ``<output>.partial`` (empty when none)."""
    progress = Path(output).with_name(Path(output).name + ".partial") / ".matseg_build"
    done: Dict[int, bool] = {}
    for path in progress.glob(f"*-of-{num_shards:05d}.json"):
        try:
            manifest = json.loads(path.read_text())
            shard = int(manifest["shard_index"])
            done[shard] = done.get(shard, True) and bool(manifest.get("complete"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return done


def dataset_finalized(output: str) -> bool:
    """Whether ``output`` is a finished dataset folder (its output manifest written, no build in progress)."""
    out = Path(output)
    progress = out.with_name(out.name + ".partial") / ".matseg_build"
    return (out / ".matseg_output.json").is_file() and not progress.is_dir()


def dataset_shard_done(output: str, num_shards: int) -> Callable[[int], bool]:
    """``shard_done`` for the Parquet writers: the dataset is finished, or this job's manifest says complete."""
    def done(shard: int) -> bool:
        return dataset_finalized(output) or dataset_progress(output, num_shards).get(shard, False)
    return done


def check_dataset_finalized(output: str, num_shards: int) -> Path:
    """The finished dataset folder, or a typed error naming the jobs that did not finish."""
    from ..errors import MatSegOutputError
    from ..utils.launchers import describe_missing

    if dataset_finalized(output):
        return Path(output)
    progress = dataset_progress(output, num_shards)
    missing = [i for i in range(num_shards) if not progress.get(i, False)]
    raise MatSegOutputError(f"{output} was not finalised: {describe_missing(missing) if missing else 'no shard'} "
                            f"of {num_shards} did not finish (their work is kept in {output}.partial); rerun the "
                            "same command to resume them", path=output)


def check_keys(output: str, column: str, expected: Sequence[Any], what: str, num_shards: int) -> None:
    """Every expected key once in the dataset's Parquet shards (no duplicate, no gap), else a typed error."""
    import collections

    import pyarrow.parquet as pq

    from ..errors import MatSegOutputError
    from ..utils.launchers import describe_missing

    counts: collections.Counter = collections.Counter()
    for path in sorted((Path(output) / "data").glob("*.parquet")):
        counts.update(pq.read_table(path, columns=[column]).column(column).to_pylist())
    duplicates = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(set(expected) - set(counts))
    if duplicates:
        raise MatSegOutputError(f"{output}: {len(duplicates)} {what} appear more than once (first: {duplicates[0]}); "
                                "the dataset mixes two runs: rebuild it with --overwrite", path=output)
    if missing:
        position = {k: i for i, k in enumerate(expected)}
        shards = sorted({position[k] % num_shards for k in missing})
        raise MatSegOutputError(f"{output}: {len(missing)} {what} are missing (first: {missing[0]}; "
                                f"{describe_missing(shards)}); rerun the same command to finish them", path=output)


def single_job(args: argparse.Namespace, **overrides: Any) -> argparse.Namespace:
    """A copy of ``args`` for the finalising pass: the whole array as one job, no launcher, never ``--overwrite``
    (every job already ran; this pass only finds their work done and writes the summary files)."""
    values = dict(vars(args))
    values.update(shard=0, num_shards=1, launcher=None, overwrite=False)
    values.update(overrides)
    return argparse.Namespace(**values)


def first_error(results: List[Any]) -> Optional[str]:
    """The first error line of the jobs' results (``None``: all finished)."""
    return next((r.error for r in results if r.error), None)
