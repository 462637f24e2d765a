"""Logging and progress bars, defined once for the whole package.

Library code never prints: it logs through :func:`get_logger` and wraps long loops in :func:`progress`.
Set ``MATSEG_DISABLE_PROGRESS=1`` (or call :func:`disable_progress_bars`) to silence the bars.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")

_LIBRARY_LOGGER = "matseg_hub"
_progress_enabled: Optional[bool] = None


def get_logger(name: Optional[str] = None) -> logging.Logger:
    """Return the package logger or one of its children (``get_logger(__name__)``)."""
    if name is None or name == _LIBRARY_LOGGER:
        return logging.getLogger(_LIBRARY_LOGGER)
    if not name.startswith(_LIBRARY_LOGGER):
        name = f"{_LIBRARY_LOGGER}.{name}"
    return logging.getLogger(name)


def set_verbosity(level: int) -> None:
    """Set the level of the package logger and give it a stderr handler if it has none."""
    logger = get_logger()
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def disable_progress_bars() -> None:
    global _progress_enabled
    _progress_enabled = False


def enable_progress_bars() -> None:
    global _progress_enabled
    _progress_enabled = True


def progress_enabled() -> bool:
    if _progress_enabled is not None:
        return _progress_enabled
    return os.environ.get("MATSEG_DISABLE_PROGRESS", "").lower() not in {"1", "true", "yes"}


def progress(iterable: Iterable[T], total: Optional[int] = None, desc: Optional[str] = None, unit: str = "it",
             disable: Optional[bool] = None) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar (to stderr, with rate and ETA) unless progress bars are disabled."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not progress_enabled()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True)
