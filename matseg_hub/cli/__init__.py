"""The ``matseg`` command.

Subcommands are discovered: every module in this package that defines ``NAME``, ``HELP``, ``register(parser)``
and ``run(args) -> int`` becomes ``matseg NAME`` (or ``matseg GROUP NAME`` when it also defines ``GROUP``, e.g.
``matseg build benchmark``). Modules keep heavy imports inside ``run`` so that ``matseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
from typing import Callable, List, Optional

from ..errors import MatSegError, describe_os_error
from ..utils.logging import set_verbosity

INTERRUPTED = "matseg: interrupted; finished output is kept: rerun the same command to resume"
BUG = "matseg: unexpected error, a bug in matseg-hub: please report it with the traceback below"


def run_reporting_errors(fn: Callable[[], Optional[int]], prog: str = "matseg", interrupted: str = INTERRUPTED,
                         verbose: bool = False) -> int:
    """``fn()``'s exit status; a user's or the machine's error ends in one line on stderr and a non-zero status.

    :class:`MatSegError` -> ``<prog>: error: <message>``, 1; Ctrl-C -> ``interrupted`` (the line to print), 130;
    an environment ``OSError`` (permissions, full or read-only disk, a file in the way) -> one line naming the path
    and what to do, 1 (``verbose``: the traceback too). Anything else is a bug: a line saying so, then the traceback.
    Used by the ``matseg`` command and by ``train/train.py``.
    """
    bug = BUG.replace("matseg:", f"{prog}:", 1)
    try:
        return int(fn() or 0)
    except MatSegError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130  # 128 + SIGINT, what a shell reports for Ctrl-C
    except OSError as exc:
        line = describe_os_error(exc)
        if line is None:
            print(bug, file=sys.stderr)
            raise
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 1
    except Exception:
        print(bug, file=sys.stderr)
        raise

GROUP_HELP = {
    "build": "build a Hub dataset folder (Parquet shards + dataset card) from raw data",
    "generate": "generate synthetic data (2D scenes, textures, PBR materials, 3D renders)",
}


def _command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "register") and hasattr(module, "run"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="matseg", description="MatSeg Hub: zero-shot material-state segmentation "
                                     "benchmark, metric, synthetic data generators and model.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups = {}
    for module in _command_modules():
        group = getattr(module, "GROUP", None)
        if group is None:
            sub = top.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        else:
            if group not in groups:
                gp = top.add_parser(group, help=GROUP_HELP.get(group, group), description=GROUP_HELP.get(group))
                groups[group] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
                gp.set_defaults(_group_parser=gp)
            sub = groups[group].add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.register(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_verbosity(logging.DEBUG if args.verbose else logging.INFO)
    run = getattr(args, "_run", None)
    if run is None:
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 2
    return run_reporting_errors(lambda: run(args), verbose=args.verbose)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
