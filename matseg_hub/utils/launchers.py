"""Running the shards of a job on an engine: this process (``local``), a Ray cluster (``ray``) or Slurm (``slurm``).

Every generator and builder already splits its work into jobs (``--shard i --num-shards n``): a job is idempotent
(a rerun resumes it and skips what is finished), deterministic (item ``k`` is a function of the settings and ``k``,
never of the split or of the worker) and owns its own files. This module adds nothing on top of that contract: it
calls the same per-shard function a ``--shard i`` run calls, on the engine the user already runs, and returns when
every shard has finished; the caller then finalises once.

* :class:`LocalLauncher` runs the shards one after another in this process (each shard uses its own
  ``--workers`` process pool, as a hand-run job does).
* :class:`RayLauncher` submits one ``ray.remote`` task per shard to the cluster ``ray.init(address=...)``
  connects to (or to a local Ray instance it starts); a task whose worker dies (node lost, pre-empted, killed)
  is retried by Ray (``max_retries``), and the retry resumes the shard.
* :class:`SlurmLauncher` submits a ``submitit`` job array (``submitit.AutoExecutor``: partition, time limit, CPUs per
  task); ``local=True`` uses ``submitit.LocalExecutor`` (subprocesses on this machine, for tests and laptops). A job
  that Slurm pre-empts or times out is requeued by submitit (the shard callable is ``Checkpointable``) and resumes.

:func:`launch_shards` adds the per-shard lock files that let two launches of the same job run at once: a shard
another live launch holds is left to it (this launch waits for its lock to go, then checks the shard and reruns it
only if it is not done); a lock left by a dead process of this host is taken over (see
:func:`~matseg_hub.utils.files.take_lock`).

Ray and submitit are optional (``pip install "matseg-hub[ray]"`` / ``"matseg-hub[slurm]"``) and imported only when
their launcher runs.

Test-only fault injection: with ``MATSEG_TEST_KILL_AFTER=n`` and ``MATSEG_TEST_KILL_MARKER=<path>`` in the
environment, the first process that finishes ``n`` items of a shard (see :func:`fault_point`) creates the marker
file and exits at once with status 137 (as a killed worker does); every later process finds the marker and runs
normally. :func:`launch_shards` forwards these two variables to the shard processes of every engine.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..errors import MatSegInputError, MatSegOutputError, MissingDependencyError
from .logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
LAUNCHERS = ("local", "ray", "slurm")
KILL_AFTER_ENV = "MATSEG_TEST_KILL_AFTER"
KILL_MARKER_ENV = "MATSEG_TEST_KILL_MARKER"
# set while a shard runs under a launch (which holds that shard's launch lock): its writer may take over the
# job lock that an earlier attempt left on another node (a lost worker, a requeued Slurm job)
LAUNCHED_ENV = "MATSEG_LAUNCHED_SHARD"
FORWARDED_ENV = (KILL_AFTER_ENV, KILL_MARKER_ENV)
LAUNCH_HEARTBEAT_S = 60.0  # a launch refreshes its shard locks this often
LAUNCH_LOCK_STALE_S = 600.0  # a shard lock of another host untouched this long is taken over
TASK_CPUS_ENV = "MATSEG_TASK_CPUS"  # the CPUs a launched shard's task reserved (Ray num_cpus, Slurm cpus_per_task)
_FAULT = {"count": 0}


def launched_shard() -> bool:
    """Whether this process runs a shard for a launch (:func:`launch_shards`), which holds it exclusively."""
    return os.environ.get(LAUNCHED_ENV) == "1"


def available_cpus() -> int:
    """CPUs this process may use: those its launched task reserved (``MATSEG_TASK_CPUS``, set by the launchers),
    else the CPUs it is allowed to run on (``sched_getaffinity``: Slurm's cgroup, ``taskset``), else the CPU count.
    A Blender worker sizes its threads from it, so a 4-CPU task on a 64-core node does not start 64 threads."""
    with contextlib.suppress(ValueError, TypeError):
        reserved = int(float(os.environ.get(TASK_CPUS_ENV, "")))
        if reserved >= 1:
            return reserved
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# -- test-only fault injection ------------------------------------------------------------------------------------
def fault_point() -> None:
    """Count one finished item of this process; the test hook may end the process here (see the module docstring).

    A no-op unless both ``MATSEG_TEST_KILL_AFTER`` and ``MATSEG_TEST_KILL_MARKER`` are set. Writers call it after
    each item is safely written (a scene folder, a Parquet row handed to the writer, a photo's textures).
    """
    after, marker = os.environ.get(KILL_AFTER_ENV), os.environ.get(KILL_MARKER_ENV)
    if not after or not marker:
        return
    _FAULT["count"] += 1
    if _FAULT["count"] < int(after):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return  # fired once already (this run or an earlier one)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os._exit(137)


@contextlib.contextmanager
def _environment(env: Dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _FAULT["count"] = 0
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _forwarded_env() -> Dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}


@dataclass
class ShardResult:
    """What one shard's run returned: ``rc`` (0 = finished), ``error`` (one line, or ``None``), ``host``/``pid``
    of the process that ran it (the last attempt)."""

    shard: int
    rc: int = 0
    error: Optional[str] = None
    host: str = ""
    pid: int = 0


def _limit_threads(threads: Optional[int]) -> None:
    """Size OpenCV's and the BLAS/OpenMP thread pools of an engine worker to the CPUs its task reserved (a Ray task
    of 1 CPU must not spread over every core of the node; results do not depend on the thread count)."""
    if not threads or threads < 1:
        return
    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(int(threads))


def _call_shard(fn: Callable[..., Optional[int]], payload: Any, shard: int, env: Dict[str, str],
                threads: Optional[int] = None) -> ShardResult:
    """Run ``fn(payload, shard)`` in the current process (a local call, a Ray task or a submitit job), with at most
    ``threads`` threads per pool when given (:func:`_limit_threads`)."""
    import socket

    from ..errors import MatSegError

    _limit_threads(threads)
    task_env = {TASK_CPUS_ENV: str(int(threads))} if threads and threads >= 1 else {}
    with _environment({**env, **task_env, LAUNCHED_ENV: "1"}):
        try:
            rc = int(fn(payload, shard) or 0)
            error = None if rc == 0 else f"exit status {rc}"
        except MatSegError as exc:  # bad input / output: the same on every retry, so not an engine failure
            rc, error = 1, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ShardResult(shard, rc, error, socket.gethostname(), os.getpid())


class _CheckpointableShard:
    """The submitit job callable: ``submitit`` requeues it on pre-emption or time-out (it resumes the shard)."""

    def __init__(self, fn: Callable, payload: Any, env: Dict[str, str], threads: Optional[int] = None):
        self.fn, self.payload, self.env, self.threads = fn, payload, env, threads

    def __call__(self, shard: int) -> ShardResult:
        return _call_shard(self.fn, self.payload, shard, self.env, self.threads)

    def checkpoint(self, shard: int):  # called by submitit on SIGUSR2 / time-out: resubmit the same shard
        import submitit

        return submitit.helpers.DelayedSubmission(self, shard)


# -- engines --------------------------------------------------------------------------------------------------------
class Launcher:
    """Runs ``fn(payload, shard)`` for a list of shards; subclasses decide where. ``fn`` must be a module-level
    function and ``payload`` picklable (they travel to other processes and machines)."""

    name = "base"

    def run(self, fn: Callable, payload: Any, shards: Sequence[int], on_done: Callable[[ShardResult], None]) -> None:
        """Run every shard; call ``on_done(result)`` in this process as each one finishes (any order)."""
        raise NotImplementedError


class LocalLauncher(Launcher):
    """The shards one after another in this process (each with its own ``--workers`` pool)."""

    name = "local"

    def run(self, fn, payload, shards, on_done) -> None:
        env = _forwarded_env()
        for shard in shards:
            on_done(_call_shard(fn, payload, shard, env))


@dataclass
class RayLauncher(Launcher):
    """One ``ray.remote`` task per shard.

    Args:
        address: the cluster to join (``ray.init(address=...)``: ``"auto"``, ``"127.0.0.1:6379"``,
            ``"ray://head:10001"``); ``None`` joins a running instance found by ``RAY_ADDRESS``, else starts a
            local one with ``num_cpus`` CPUs. An instance already initialised in this process is reused.
        num_cpus: CPUs of the local instance started when there is no cluster (default: all).
        cpus_per_task: Ray CPUs each shard task reserves (match ``--workers``).
        max_retries: how often Ray reruns a task whose worker process or node died (the rerun resumes the shard).
    """

    address: Optional[str] = None
    num_cpus: Optional[int] = None
    cpus_per_task: float = 1.0
    max_retries: int = 3
    name: str = field(default="ray", init=False)

    def __post_init__(self) -> None:  # a missing extra is reported before anything is written
        _require("ray", "ray", "--launcher ray")

    def run(self, fn, payload, shards, on_done) -> None:
        ray = _require("ray", "ray", "--launcher ray")
        started = False
        if not ray.is_initialized():
            kwargs: Dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if self.address:
                kwargs["address"] = self.address
            elif not os.environ.get("RAY_ADDRESS"):
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise MatSegInputError(f"--launcher ray: cannot reach the Ray cluster {self.address or '(local)'}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; check "
                                       "--ray-address (ray start --head prints it)") from exc
            started = True
        try:
            task = ray.remote(_call_shard).options(num_cpus=self.cpus_per_task, max_retries=self.max_retries,
                                                   retry_exceptions=False)
            env = _forwarded_env()
            threads = max(1, int(self.cpus_per_task))
            pending = {task.remote(fn, payload, shard, env, threads): shard for shard in shards}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    shard = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the task failed max_retries + 1 times, or raised a bug
                        text = str(exc).strip().splitlines()
                        result = ShardResult(shard, 1, f"{type(exc).__name__}: {text[-1] if text else ''}")
                    on_done(result)
        finally:
            if started:
                ray.shutdown()


@dataclass
class SlurmLauncher(Launcher):
    """A ``submitit`` job array: one array task per shard.

    Args:
        folder: submitit's folder for job scripts, pickles and logs (``%j`` is replaced by the job id).
        partition, time_min, cpus_per_task, mem_gb: the Slurm options (``--partition``, ``--time``,
            ``--cpus-per-task``, ``--mem``); ``None`` leaves the cluster's default, except ``time_min``: a day
            (submitit's own default is 5 minutes).
        max_parallel: array tasks running at once (``--array=...%N``; default: submitit's, 256).
        local: ``submitit.LocalExecutor`` (subprocesses on this machine) instead of Slurm.
        extra: more ``slurm_*`` parameters for ``AutoExecutor.update_parameters`` (e.g. ``{"slurm_account": ..}``).
    """

    folder: PathLike = "submitit_logs/%j"
    partition: Optional[str] = None
    time_min: Optional[int] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    max_parallel: Optional[int] = None
    local: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)
    name: str = field(default="slurm", init=False)

    def __post_init__(self) -> None:  # a missing extra or a machine without Slurm: before anything is written
        _require("submitit", "slurm", "--launcher slurm")
        import shutil

        if not self.local and shutil.which("sbatch") is None:
            raise MatSegInputError("--launcher slurm: this machine has no Slurm (no `sbatch` on PATH); run the "
                                   "command on the cluster's login node, or add --slurm-local to run the jobs here")

    def executor(self):
        """The configured ``submitit`` executor."""
        submitit = _require("submitit", "slurm", "--launcher slurm")
        if self.local:
            executor = submitit.LocalExecutor(folder=str(self.folder))
            params: Dict[str, Any] = {"timeout_min": self.time_min or 24 * 60}
            if self.cpus_per_task:
                params["cpus_per_task"] = self.cpus_per_task
        else:
            executor = submitit.AutoExecutor(folder=str(self.folder), cluster="slurm")
            # submitit's own default limit is 5 minutes (a shard would time out and be requeued until
            # max_num_timeout): a day unless --slurm-time says otherwise
            params = {k: v for k, v in {"slurm_partition": self.partition, "timeout_min": self.time_min or 24 * 60,
                                        "cpus_per_task": self.cpus_per_task, "mem_gb": self.mem_gb,
                                        "slurm_array_parallelism": self.max_parallel}.items() if v is not None}
            params.update(self.extra)
        executor.update_parameters(**params)
        return executor

    def run(self, fn, payload, shards, on_done) -> None:
        shards = list(shards)
        if not shards:
            return
        executor = self.executor()
        try:
            jobs = executor.map_array(_CheckpointableShard(fn, payload, _forwarded_env(), self.cpus_per_task), shards)
        except Exception as exc:  # sbatch missing or refusing the array
            raise MatSegInputError(f"--launcher slurm: submitting the job array failed: "
                                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                                   " (use --slurm-local to run the jobs on this machine)") from exc
        logger.info("submitted %d Slurm jobs (%s); logs in %s", len(jobs), jobs[0].job_id, self.folder)
        pending = dict(zip(shards, jobs))
        try:
            self._wait(pending, on_done)
        except BaseException:  # Ctrl-C or a failure here: no job keeps running without a launch watching it
            for job in pending.values():
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
            raise

    @staticmethod
    def _wait(pending, on_done) -> None:
        while pending:
            for shard, job in list(pending.items()):
                if not job.done():
                    continue
                del pending[shard]
                try:
                    result = job.result()
                except Exception as exc:  # the job failed (killed, out of memory, a bug): its log says why
                    text = str(exc).strip().splitlines()
                    result = ShardResult(shard, 1, f"{type(exc).__name__}: {text[0] if text else ''} "
                                                   f"(log: {job.paths.stderr})")
                on_done(result)
            if pending:
                time.sleep(0.2)


def _require(module: str, extra: str, feature: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, feature, extra) from exc


def make_launcher(name: str, **options: Any) -> Launcher:
    """``"local"`` / ``"ray"`` / ``"slurm"`` -> a :class:`Launcher`; ``options`` are the engine's fields
    (see :class:`RayLauncher`, :class:`SlurmLauncher`; options of other engines are ignored when ``None``)."""
    if name == "local":
        return LocalLauncher()
    if name == "ray":
        keys = ("address", "num_cpus", "cpus_per_task", "max_retries")
        return RayLauncher(**{k: options[k] for k in keys if options.get(k) is not None})
    if name == "slurm":
        keys = ("folder", "partition", "time_min", "cpus_per_task", "mem_gb", "max_parallel", "local", "extra")
        return SlurmLauncher(**{k: options[k] for k in keys if options.get(k) is not None})
    raise MatSegInputError(f"unknown launcher {name!r}: choose one of {', '.join(LAUNCHERS)}")


# -- shards with locks ----------------------------------------------------------------------------------------------
def shard_lock_path(lock_dir: PathLike, shard: int, num_shards: int) -> Path:
    """The lock file of one shard of a launch (``<lock_dir>/shard-<i:05d>-of-<n:05d>.lock``)."""
    return Path(lock_dir) / f"shard-{shard:05d}-of-{num_shards:05d}.lock"


def launch_shards(fn: Callable[[Any, int], Optional[int]], payload: Any, num_shards: int, launcher: Launcher, *,
                  lock_dir: PathLike, shard_done: Optional[Callable[[int], bool]] = None,
                  poll_s: float = 0.5, heartbeat_s: float = LAUNCH_HEARTBEAT_S,
                  stale_after_s: float = LAUNCH_LOCK_STALE_S) -> List[ShardResult]:
    """Run ``fn(payload, i)`` for every shard ``i`` of ``range(num_shards)`` on ``launcher``, each under its lock.

    The launching process takes each shard's lock file in ``lock_dir`` (:func:`shard_lock_path`, created with
    ``O_EXCL``, holding ``<host> <pid>``) before the shard runs and releases it when the shard ends. A shard whose
    lock another live process holds (a second launch of the same job) is not started: once its lock is gone, the
    shard is checked with ``shard_done(i)`` and run only if that says it is not done (``None``: always rerun, for
    jobs whose rerun of a finished shard is a no-op). ``lock_dir`` is removed when this leaves it empty.

    The launch refreshes its locks every ``heartbeat_s``; a lock of another host left untouched for
    ``stale_after_s`` (that launch's node died) is taken over, so a relaunch from another node does not wait
    forever (a lock of a dead process of this host is taken over at once).

    Returns one :class:`ShardResult` per shard, in shard order (a shard finished by another launch: ``rc=0`` and
    its host/pid empty).

    Raises:
        MatSegOutputError: a shard failed (after the engine's retries): the message lists the failed shards and
            their first error, and says to rerun the same command to resume.
    """
    import threading

    from .files import cannot_write, release_lock, take_lock, touch_lock

    lock_dir = Path(lock_dir)
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(lock_dir, exc) from exc
    results: Dict[int, ShardResult] = {}
    held: List[int] = []

    def done(result: ShardResult) -> None:
        results[result.shard] = result
        release_lock(shard_lock_path(lock_dir, result.shard, num_shards))

    def take(i: int) -> bool:  # another launch removes the folder when it leaves it empty: make it again
        for _ in range(20):
            try:
                lock_dir.mkdir(parents=True, exist_ok=True)
                return take_lock(shard_lock_path(lock_dir, i, num_shards), stale_after_s=stale_after_s)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise cannot_write(lock_dir, exc) from exc
        raise cannot_write(lock_dir, FileNotFoundError(2, "removed again and again while taking a lock",
                                                        str(lock_dir)))

    stop = threading.Event()

    def heartbeat() -> None:  # the locks this launch holds stay fresh while it lives
        while not stop.wait(heartbeat_s):
            for i in range(num_shards):
                touch_lock(shard_lock_path(lock_dir, i, num_shards))

    beat = threading.Thread(target=heartbeat, name="launch-heartbeat", daemon=True)
    beat.start()
    try:
        mine = [i for i in range(num_shards) if take(i)]
        held = [i for i in range(num_shards) if i not in set(mine)]
        if held:
            logger.info("shards %s are being run by another launch of this job; running the other %d",
                        _ranges(held), len(mine))
        launcher.run(fn, payload, mine, done)
        while held:  # the other launch's shards: wait for each lock, then check (and finish) the shard
            waiting = []
            for i in held:
                if not take(i):
                    waiting.append(i)
                    continue
                if shard_done is not None and shard_done(i):
                    done(ShardResult(i))
                else:
                    launcher.run(fn, payload, [i], done)
            held = waiting
            if held:
                time.sleep(poll_s)
    finally:
        stop.set()
        beat.join()
        for i in range(num_shards):
            release_lock(shard_lock_path(lock_dir, i, num_shards))
        with contextlib.suppress(OSError):
            lock_dir.rmdir()
    failed = [r for _, r in sorted(results.items()) if r.rc != 0]
    if failed and len(failed) == num_shards and len({r.error for r in failed}) == 1:
        raise MatSegOutputError(f"every one of the {num_shards} jobs failed: {failed[0].error}")
    if failed:
        first = failed[0]
        raise MatSegOutputError(
            f"{len(failed)} of {num_shards} shards failed ({_ranges([r.shard for r in failed])}); shard {first.shard}: "
            f"{first.error}. The finished shards are kept: rerun the same command to resume the others")
    return [results[i] for i in range(num_shards)]


def _ranges(numbers: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out: List[str] = []
    numbers = sorted(numbers)
    start = prev = None
    for n in numbers + [None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(out)


def describe_missing(missing: Sequence[int]) -> str:
    """The shards named in an incomplete-output error (``"shards 1, 3-4"``)."""
    return ("shard " if len(missing) == 1 else "shards ") + _ranges(missing)
