"""Process pools for the generators and extractors: one place that starts them.

Workers ignore ``SIGINT``: Ctrl-C reaches the whole process group, and only the calling process should handle it
(it stops the run, keeps the finished output and prints one line); the pool's exit then terminates the workers, so
they print no ``KeyboardInterrupt`` traceback of their own.
"""

from __future__ import annotations

import multiprocessing
import signal
from typing import Callable, Optional


def _start_worker(initializer: Optional[Callable], initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(workers: int, initializer: Optional[Callable] = None, initargs: tuple = (),
                start_method: Optional[str] = None):
    """A ``multiprocessing`` pool of ``workers`` processes that ignore ``SIGINT``, each running
    ``initializer(*initargs)`` first (a module-level function: it is pickled).

    ``start_method`` defaults to ``forkserver`` where available, else ``spawn``; never ``fork``: a child forked
    from a process whose OpenCV/Arrow thread pools are running can deadlock.
    """
    if start_method is None:
        start_method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(start_method)
    return ctx.Pool(workers, initializer=_start_worker, initargs=(initializer, tuple(initargs)))
