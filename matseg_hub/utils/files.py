"""Atomic output: a long job interrupted or failing on one item never leaves half-written files.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` write to a temporary sibling and ``os.replace`` it.
* :func:`atomic_directory` yields a temporary sibling folder and moves it into place only when the block
  finishes without an exception (the previous content, if any, is replaced at that moment).

Output ownership: a command writes only inside what it owns. Every output folder gets an output manifest,
``.matseg_output.json`` (``{"tool", "kind", "files"}``: the command that wrote it and, for dataset folders, the
files it wrote). :func:`check_output_folder` refuses an existing folder that is not the same command's output
(a folder with no manifest and anything in it, or another command's output) and an output that overlaps a
source; :func:`claim_output_folder` does that and marks a folder as the command's own. The manifest is a hidden
file: ``datasets.load_dataset`` (which reads the card's ``data/*.parquet`` patterns) never reads it.

Locks: :func:`take_lock` creates a lock file exclusively (``O_EXCL``) holding ``<host> <pid>``; a lock left by
a dead process of this host is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Union

from ..errors import MatSegFormatError, MatSegInputError, MatSegOutputError
from .logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
OUTPUT_MANIFEST = ".matseg_output.json"
_TOOL = "matseg-hub"
_HELD_LOCKS: Set[str] = set()  # lock files this process holds (a lock naming this PID but not held here is stale)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_directory(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``path`` when the block succeeds.

    On any exception the temporary folder is removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True or choose another output folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, trash / path.name)
        os.replace(tmp, path)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# output ownership
# ----------------------------------------------------------------------------------------------------------------
def cannot_write(path: PathLike, exc: OSError) -> MatSegOutputError:
    """The typed error for a write the disk refused (read-only folder, full disk, a file in the way, ...):
    ``<path>: <reason> (<what to do>)``, naming the file the system named, else ``path``."""
    from ..errors import describe_os_error

    line = describe_os_error(exc) if exc.filename is not None else None
    if line is None:
        line = f"{path}: {exc.strerror or exc} (check that the folder is writable and the disk has space, then rerun)"
    return MatSegOutputError(line, path=path)


def read_output_manifest(folder: PathLike) -> Optional[Dict[str, Any]]:
    """The output manifest of ``folder`` (``{"tool", "kind", "files"?}``), or ``None`` when it has none.

    Raises:
        MatSegOutputError: a manifest that cannot be read (the folder's ownership is then unknown).
    """
    path = Path(folder) / OUTPUT_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("tool") != _TOOL or not isinstance(data.get("kind"), str):
            raise ValueError("not a matseg-hub output manifest")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MatSegOutputError(f"{path} cannot be read ({exc}), so it is unknown which files of {folder} this tool "
                                "wrote; nothing was changed. Choose another output folder", path=path) from None
    return data


def write_output_manifest(folder: PathLike, kind: str, files: Optional[Iterable[str]] = None) -> Path:
    """Write ``folder/.matseg_output.json`` (deterministic bytes): ``kind`` and, when given, the files written
    (paths relative to ``folder``, ``/``-separated)."""
    data: Dict[str, Any] = {"tool": _TOOL, "kind": kind}
    if files is not None:
        data["files"] = sorted(set(files))
    return atomic_write_text(Path(folder) / OUTPUT_MANIFEST, json.dumps(data, indent=1, sort_keys=True) + "\n")


def check_sources_apart(output: PathLike, sources: Iterable[Optional[PathLike]], *, option: str = "--output") -> None:
    """Refuse an output folder equal to, inside or holding a local source folder (Hub ids and ``None`` pass).

    Raises:
        MatSegOutputError: naming both folders.
    """
    out = Path(output).resolve()
    for source in sources:
        if source is None or not Path(source).exists():
            continue
        src = Path(source).resolve()
        if out == src or src in out.parents or out in src.parents:
            relation = "is" if out == src else ("is inside" if src in out.parents else "holds")
            raise MatSegOutputError(f"{option} {output} {relation} the source {source}: writing there could replace "
                                    f"or delete the source's files; nothing was changed. Choose an output folder "
                                    f"outside the source", path=output)


def check_output_folder(output: PathLike, kind: str, *, sources: Iterable[Optional[PathLike]] = (),
                        option: str = "--output") -> Optional[Dict[str, Any]]:
    """Check that ``output`` may be written by the command ``kind`` (e.g. ``"build benchmark"``).

    Returns:
        the manifest of an earlier output of the same command, or ``None`` for a folder that does not exist or
        is empty.

    Raises:
        MatSegOutputError: ``output`` overlaps a source, is a file, holds files but no manifest (not this tool's
            output, or one written before manifests existed), or is another command's output.
    """
    check_sources_apart(output, sources, option=option)
    path = Path(output)
    if not path.exists():
        return None
    if not path.is_dir():
        raise MatSegOutputError(f"{option} {path} is a file, not a folder; nothing was changed. Choose a folder",
                                path=path)
    manifest = read_output_manifest(path)
    if manifest is None:
        if not any(path.iterdir()):
            return None
        raise MatSegOutputError(
            f"{option} {path} is not empty and is not an output of `matseg {kind}` (it has no {OUTPUT_MANIFEST}); "
            f"nothing in it was changed. Choose a new or empty output folder (an output of a matseg-hub version "
            f"that wrote no {OUTPUT_MANIFEST}: move it away or delete it yourself, then rerun)", path=path)
    if manifest["kind"] != kind:
        raise MatSegOutputError(f"{option} {path} holds the output of `matseg {manifest['kind']}`, not of "
                                f"`matseg {kind}`; nothing in it was changed. Choose another output folder", path=path)
    return manifest


def claim_output_folder(output: PathLike, kind: str, *, sources: Iterable[Optional[PathLike]] = (),
                        option: str = "--output") -> Path:
    """:func:`check_output_folder`, then create ``output`` if needed and mark it as ``kind``'s output (for
    commands that write their items straight into the folder and resume item by item)."""
    manifest = check_output_folder(output, kind, sources=sources, option=option)
    path = Path(output)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if manifest is None:
            write_output_manifest(path, kind)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    return path


@contextlib.contextmanager
def claimed_output_folder(output: PathLike, kind: str, *, sources: Iterable[Optional[PathLike]] = (),
                          option: str = "--output") -> Iterator[Path]:
    """:func:`claim_output_folder` for the block; when the block fails and the folder holds nothing but the manifest
    this call wrote, the manifest (and the folder, if this call created it) is removed again, so a command refused
    before any work leaves no trace."""
    path = Path(output)
    existed = path.exists()
    marked = read_output_manifest(path) is None if existed and path.is_dir() else True
    claim_output_folder(path, kind, sources=sources, option=option)
    try:
        yield path
    except BaseException:
        if marked and [p.name for p in path.iterdir()] == [OUTPUT_MANIFEST]:
            with contextlib.suppress(OSError):
                (path / OUTPUT_MANIFEST).unlink()
                if not existed:
                    path.rmdir()
        raise


def remove_own_files(folder: PathLike, names: Iterable[str]) -> int:
    """Delete the files ``names`` (relative to ``folder``: what an output manifest lists) and the folders they
    leave empty; nothing else. Returns how many files were deleted."""
    folder = Path(folder)
    removed = 0
    parents: Set[Path] = set()
    for name in names:
        path = folder / name
        if folder.resolve() not in path.resolve().parents:
            continue  # a manifest never names a file outside its folder; do not follow one that does
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        parents.update(p for p in path.parents if folder in p.parents)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty
    return removed


# ----------------------------------------------------------------------------------------------------------------
# locks
# ----------------------------------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder(path: PathLike) -> str:
    """``"<host> <pid>"`` written in a lock file (empty when unreadable)."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


EMPTY_LOCK_STALE_S = 10.0  # an empty lock file this old was left by a process that died before writing it
TAKEOVER_GUARD_S = 60.0  # a takeover guard older than this was left by a process that died while taking over


def _take_over(path: Path, seen: str) -> None:
    """Remove the stale lock ``path`` if it still holds ``seen``, under the guard ``<path>.takeover`` (``O_EXCL``):
    two processes that both found it stale cannot both remove it (the second would remove the first's new lock)."""
    guard = path.with_name(path.name + ".takeover")
    try:
        os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - guard.stat().st_mtime > TAKEOVER_GUARD_S:
                guard.unlink()
        return
    except OSError:
        return
    try:
        if lock_holder(path) == seen:
            logger.warning("taking over the lock %s of %s, which is no longer running", path, seen or "nobody")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    finally:
        with contextlib.suppress(OSError):
            guard.unlink()


def take_lock(path: PathLike, other_hosts_stale: bool = False, stale_after_s: Optional[float] = None) -> bool:
    """Create the lock file ``path`` exclusively (holding ``<host> <pid>``); ``False`` when a live process holds it.

    A lock of a dead process of this host (or one naming this process that it does not hold: left by a writer
    that was never closed) is taken over. ``other_hosts_stale``: a lock of another host is taken over too (its
    process cannot be checked from here): only for a job that an engine's launch holds exclusively
    (:func:`matseg_hub.utils.launchers.launched_shard`), whose earlier attempt died on another node.
    ``stale_after_s``: a lock of another host not touched for that long is taken over (its holder refreshes its
    modification time while it lives: :func:`touch_lock`). Takeovers go through :func:`_take_over`, so two takers
    never both win. Release it with :func:`release_lock`.
    """
    path = Path(path)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = lock_holder(path)
            try:
                host, pid = seen.split()
                pid_number = int(pid)
            except ValueError:
                host, pid_number = "", 0
            mine_stale = pid_number == os.getpid() and str(path.resolve()) not in _HELD_LOCKS
            here = host == socket.gethostname()
            quiet_s = None
            with contextlib.suppress(OSError):
                quiet_s = time.time() - path.stat().st_mtime
            # an empty lock: its creator died between creating and writing it (or is writing it right now)
            empty_stale = not seen and quiet_s is not None and quiet_s > EMPTY_LOCK_STALE_S
            quiet_stale = (stale_after_s is not None and bool(host) and not here and quiet_s is not None
                           and quiet_s > stale_after_s)
            if ((here and (mine_stale or not pid_alive(pid_number))) or (other_hosts_stale and host and not here)
                    or empty_stale or quiet_stale):
                _take_over(path, seen)
                continue
            return False
        _HELD_LOCKS.add(str(path.resolve()))  # before the write: another thread reading our pid sees it held
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        return True
    return False


def touch_lock(path: PathLike) -> None:
    """Refresh the modification time of a lock this process holds (a heartbeat for ``stale_after_s``)."""
    if holds_lock(path):
        with contextlib.suppress(OSError):
            os.utime(path)


def holds_lock(path: PathLike) -> bool:
    """Whether this process holds the lock file ``path`` (taken with :func:`take_lock`, not released)."""
    return str(Path(path).resolve()) in _HELD_LOCKS and Path(path).exists()


def release_lock(path: PathLike) -> None:
    """Remove a lock file this process took with :func:`take_lock` (a lock it does not hold is left alone)."""
    key = str(Path(path).resolve())
    if key in _HELD_LOCKS:
        _HELD_LOCKS.discard(key)
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()


def files_fingerprint(paths: Iterable[PathLike], extra: str = "") -> str:
    """A short digest of the names, sizes and modification times of ``paths`` (folders: every file under them,
    sorted; missing paths count as missing) and ``extra``: what an input was when a resumable job read it."""
    import hashlib

    digest = hashlib.sha256(extra.encode("utf-8"))
    for path in sorted(Path(p) for p in paths):
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            try:
                st = f.stat()
                digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
            except OSError:
                digest.update(f"{f}\0missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


#: a resumable run's recorded settings, in its output (or work) folder: one name for every generator and builder
RUN_PARAMS_FILE = ".matseg_run.json"


def check_run_params(output_dir: PathLike, generator: str, params: Mapping[str, Any], *, record: bool = True) -> None:
    """Record a generator's parameters in ``output_dir/.matseg_run.json``, or check them against the recorded ones.

    A resumable output folder must be finished with the parameters it was started with, or it would mix two
    datasets. The first run writes the file; a later run (a rerun, another job of a job array) with different
    ``params`` raises :class:`MatSegInputError` naming each difference and how to proceed.

    Args:
        params: JSON-serialisable values (only what changes the output; not ``workers``, shards or previews).
        record: write the file when absent (``False``: only compare, e.g. before the inputs are known to be good).
    """
    path = Path(output_dir) / RUN_PARAMS_FILE
    wanted = json.loads(json.dumps(dict(params)))  # normalised as they are stored (tuples -> lists, ...)
    if path.is_file():
        try:
            recorded = json.loads(path.read_text())
            old_generator, old = recorded["generator"], recorded["params"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MatSegFormatError(f"cannot read the recorded run parameters ({exc}); delete the file to record "
                                    f"this run's parameters", path=path) from None
        if old_generator != generator:
            raise MatSegInputError(f"{output_dir} holds the output of 'generate {old_generator}', not "
                                   f"'generate {generator}'; choose another output folder")
        diffs = [f"{k}: recorded {old.get(k, '(absent)')!r}, this run {wanted.get(k, '(absent)')!r}"
                 for k in sorted(set(old) | set(wanted)) if old.get(k) != wanted.get(k)]
        if diffs:
            raise MatSegInputError(
                f"{output_dir} was started with other parameters ({'; '.join(diffs)}). Rerun with the recorded "
                f"parameters (see {path}) to finish it, or write to a new output folder (or delete this one to "
                f"start over)")
        return
    if not record:
        return
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"generator": generator, "params": wanted}, indent=1, sort_keys=True) + "\n")


def settings_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> List[str]:
    """``"key.sub: <old> (earlier run) vs <new> (this run)"`` for every setting that differs (nested dicts walked)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)} (earlier run) vs {json.dumps(b)} (this run)")
    return out


def check_run_fingerprint(path: PathLike, fingerprint: Dict[str, Any], *, output: PathLike,
                          discard: bool = False) -> bool:
    """Record ``fingerprint`` (a run's settings, JSON) at ``path`` on a first run; on a later run compare it.

    Returns ``True`` when the earlier run had other settings and ``discard`` was given (the caller discards its
    output; the new fingerprint is recorded), ``False`` otherwise.

    Raises:
        MatSegInputError: the settings differ and ``discard`` is false; says what differs and how to proceed.
    """
    path = Path(path)
    text = json.dumps(fingerprint, indent=1, sort_keys=True)
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = {"unreadable": str(path)}
        diffs = settings_differences(old, fingerprint)
        if not diffs:
            return False
        if not discard:
            raise MatSegInputError(
                f"{output} holds an earlier run with other settings, so resuming it would mix two kinds of scenes:\n  "
                + "\n  ".join(diffs) + "\nUse a new --output folder, rerun with the earlier settings to finish it, "
                "or pass --no-resume (resume=False) to discard the earlier run's scenes.")
        logger.warning("discarding the earlier run in %s (other settings: %s)", output, "; ".join(diffs))
        atomic_write_text(path, text)
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)  # exclusive: two jobs starting together cannot both record theirs
    except FileExistsError:
        tmp.unlink()
        return check_run_fingerprint(path, fingerprint, output=output, discard=discard)
    except OSError:  # no hard links on this file system
        os.replace(tmp, path)
    else:
        tmp.unlink()
    return False
