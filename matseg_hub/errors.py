"""Typed errors raised at the project's boundaries.

Every error names what was wrong (the file, the line or field) and what to do about it, so that a user
with a 1,220-image folder can fix the one bad item without reading a traceback.
"""

from __future__ import annotations

import errno
import os
from typing import Optional, Sequence


class MatSegError(Exception):
    """Base class of every error this package raises on purpose."""


class MatSegFormatError(MatSegError, ValueError):
    """A data file (annotation, relations, image, scene folder, ...) does not follow the format.

    Attributes:
        path: the offending file, when there is one.
        field: the JSON field, line number or key that was wrong, when known.
    """

    def __init__(self, message: str, path: Optional[os.PathLike | str] = None, field: Optional[str] = None):
        self.path = None if path is None else str(path)
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path
            if field is not None:
                where += f" [{field}]"
            where += ": "
        elif field is not None:
            where = f"[{field}]: "
        super().__init__(where + message)


class MatSegInputError(MatSegError, ValueError):
    """An argument (array, tensor, option) has the wrong shape, type or value."""


class MissingDependencyError(MatSegError, ImportError):
    """An optional dependency is needed for this feature; the message says how to install it."""

    def __init__(self, package: str, feature: str, extra: Optional[str] = None):
        hint = f'pip install "matseg-hub[{extra}]"' if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the optional package '{package}', which is not installed. Install it with: {hint}")
        self.package = package
        self.extra = extra


def require(module: str, feature: str, extra: Optional[str] = None, package: Optional[str] = None):
    """Import an optional module or raise :class:`MissingDependencyError` with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised where the package is absent
        raise MissingDependencyError(package or module, feature, extra) from exc


def require_extra(extra: str, feature: str, modules: Sequence[str]) -> None:
    """Check at the start of a long job that every module of an optional extra imports.

    Raises :class:`MissingDependencyError` naming all the missing ones at once (``pip install
    "matseg-hub[extra]"``), instead of a ``ModuleNotFoundError`` after the job has run for a while. Only
    ``importlib.util.find_spec`` is used: nothing is imported.
    """
    import importlib.util

    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise MissingDependencyError(", ".join(missing), feature, extra)


class MatSegOutputError(MatSegInputError):
    """An output folder cannot be used as asked: it holds files this tool did not write, it overlaps a source,
    another process is writing it, or the disk refuses the write. Nothing was deleted or replaced.

    Attributes:
        path: the folder (or file) concerned.
    """

    def __init__(self, message: str, path: Optional[os.PathLike | str] = None):
        self.path = None if path is None else str(path)
        super().__init__(message)


# errno -> what to do, for the OSErrors that come from the machine or the user's paths, not from a bug
_ENVIRONMENT_ERRNOS = {
    errno.EACCES: "choose a folder you can write to, or change its permissions",
    errno.EPERM: "choose a folder you can write to, or change its permissions",
    errno.EROFS: "the file system is read-only: choose an output on a writable disk",
    errno.ENOSPC: "free some space or choose an output on another disk; rerun the same command to resume",
    errno.EDQUOT: "free some space or choose an output on another disk; rerun the same command to resume",
    errno.EEXIST: "a file of that name is in the way: remove it or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "a folder is where a file is expected: choose another path",
    errno.ENOENT: "it does not exist (or was removed while the command ran): check the path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ELOOP: "the path has a symbolic-link loop: choose another path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer workers",
    errno.ENFILE: "too many open files on the system: raise the limit or use fewer workers",
    errno.EIO: "the disk reported an input/output error: check it, or choose another disk",
    errno.EBUSY: "it is in use by another process",
    errno.ETXTBSY: "it is in use by another process",
    errno.ENOTEMPTY: "the folder is not empty (another run writing to it?)",
}


def describe_os_error(exc: OSError) -> Optional[str]:
    """One line for an OSError caused by the environment (permissions, a read-only or full disk, a file in the
    way, a path that vanished): ``<path>: <reason> (<what to do>)``. None for any other OSError (a bug,
    to be shown with its traceback)."""
    hint = _ENVIRONMENT_ERRNOS.get(exc.errno)
    if hint is None:
        return None
    reason = exc.strerror or os.strerror(exc.errno)
    where = ""
    if exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if getattr(exc, "filename2", None) is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        where += ": "
    return f"{where}{reason} ({hint})"


def skip_or_raise(exc: "MatSegError", key: str, *, skip_bad: bool, on_skip=None, logger=None) -> None:
    """The ``--skip-bad`` rule of every reader and evaluator: re-raise ``exc`` unless ``skip_bad``; else log
    ``skipping <key>: <reason>`` and report ``on_skip(key, reason)``. Call it in the ``except`` block, then
    ``continue``."""
    if not skip_bad:
        raise exc
    import logging

    (logger or logging.getLogger("matseg_hub")).warning("skipping %s: %s", key, exc)
    if on_skip is not None:
        on_skip(key, str(exc))
