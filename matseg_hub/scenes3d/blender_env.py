"""Finding (or creating) the Python that has Blender's ``bpy``.

``bpy`` is never a dependency of the core: the wheel on PyPI pins its own numpy (``bpy`` 4.2–5.0 need CPython 3.11
and numpy < 2), so it usually lives in a separate virtual environment that the renderer runs as worker processes.
:func:`find_blender_python` looks, in order, at: the explicit argument, ``$MATSEG_BLENDER_PYTHON``, the
checkout's ``.cache/blender-venv``, ``~/.cache/matseg_hub/blender-venv`` (``$XDG_CACHE_HOME`` respected), and the
current Python when it can import ``bpy``. :func:`setup_blender_env` creates the venv
(``matseg generate 3d --install-blender``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from ..errors import MatSegError, MissingDependencyError
from ..utils.logging import get_logger

logger = get_logger(__name__)

#: the newest bpy with a CPython 3.11 manylinux wheel when this was written (Blender 5.0.1)
BPY_VERSION = "5.0.1"
BLENDER_PACKAGES = (f"bpy=={BPY_VERSION}", "OpenEXR>=3.2")
ENV_VAR = "MATSEG_BLENDER_PYTHON"
WORKER_SCRIPT = Path(__file__).with_name("blender_worker.py")
DONE_MARK = "MATSEG-DONE "  # the worker prints it before each result (same constant in blender_worker.py)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def checkout_venv() -> Path:
    """``<checkout>/.cache/blender-venv`` (the folder holding the ``matseg_hub`` package)."""
    return Path(__file__).resolve().parents[2] / ".cache" / "blender-venv"


def user_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "matseg_hub" / "blender-venv"


def default_venv() -> Path:
    """Where :func:`setup_blender_env` installs by default: the checkout's ``.cache`` when it is writable (an
    editable install), else the user cache."""
    venv = checkout_venv()
    root = venv.parents[1]
    if (root / "pyproject.toml").is_file() and os.access(root, os.W_OK):
        return venv
    return user_venv()


def install_instructions() -> str:
    venv = default_venv()
    py = _venv_python(venv)
    return ("3D rendering needs Blender's Python module 'bpy' (and 'OpenEXR'). bpy wheels need CPython 3.11 and "
            "their own numpy, so put them in a separate environment:\n"
            f"    matseg generate 3d --install-blender\n"
            "or by hand:\n"
            f"    python3.11 -m venv {venv}\n"
            f"    {py} -m pip install {' '.join(repr(p) if '>' in p else p for p in BLENDER_PACKAGES)}\n"
            f"or point ${ENV_VAR} at a Python that imports bpy and OpenEXR "
            f"(e.g. where 'pip install \"matseg-hub[blender]\"' worked).")


class BlenderNotFoundError(MissingDependencyError):
    """No Python with ``bpy`` was found; the message gives the exact commands to install one."""

    def __init__(self, detail: str = ""):
        MatSegError.__init__(self, (detail + "\n" if detail else "") + install_instructions())
        self.package = "bpy"
        self.extra = "blender"


def candidate_pythons(explicit: Optional[str] = None) -> List[str]:
    out = []
    if explicit:
        out.append(str(explicit))
    if os.environ.get(ENV_VAR):
        out.append(os.environ[ENV_VAR])
    for venv in (checkout_venv(), user_venv()):
        py = _venv_python(venv)
        if py.exists():
            out.append(str(py))
    if importlib.util.find_spec("bpy") is not None:
        out.append(sys.executable)
    return out


def worker_env() -> dict:
    """Environment for Blender worker processes: no PYTHONPATH leaking the core's numpy into the bpy venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def check_blender_python(python: str, timeout: float = 120.0) -> str:
    """Run the worker's ``--version`` with ``python``; return Blender's version or raise
    :class:`BlenderNotFoundError` saying what failed."""
    import json

    try:
        proc = subprocess.run([python, str(WORKER_SCRIPT), "--version"], capture_output=True, text=True,
                              timeout=timeout, env=worker_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlenderNotFoundError(f"cannot run {python}: {exc}") from None
    for line in proc.stdout.splitlines():
        if line.startswith(DONE_MARK):
            return json.loads(line[len(DONE_MARK):])["blender"]
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    raise BlenderNotFoundError(f"{python} cannot run the Blender worker: {' | '.join(tail)}")


def find_blender_python(explicit: Optional[str] = None, check: bool = False) -> Optional[str]:
    """The first usable Python with ``bpy`` (see the module docstring), or ``None``.

    With ``check``, each candidate is test-run (a few seconds) and the first that works is returned.
    """
    chosen = [str(p) for p in (explicit, os.environ.get(ENV_VAR)) if p]
    for py in candidate_pythons(explicit):
        if not Path(py).exists():
            if py in chosen:
                where = "given" if explicit and py == str(explicit) else f"named by ${ENV_VAR}"
                raise BlenderNotFoundError(f"the Blender Python {py} ({where}) does not exist.")
            continue
        if not check:
            return py
        try:
            check_blender_python(py)
            return py
        except BlenderNotFoundError as exc:
            logger.warning("%s", str(exc).splitlines()[0])
    return None


def require_blender_python(explicit: Optional[str] = None) -> str:
    py = find_blender_python(explicit)
    if py is None:
        raise BlenderNotFoundError("No Python with bpy was found.")
    return py


def _python311() -> Optional[str]:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    return shutil.which("python3.11")


def setup_blender_env(venv: Optional[os.PathLike] = None, python: Optional[str] = None,
                      packages=BLENDER_PACKAGES) -> str:
    """Create a venv with ``bpy`` and ``OpenEXR`` (default :func:`default_venv`) and return its Python.

    Runs ``<python3.11> -m venv VENV`` then ``VENV/bin/python -m pip install bpy==X OpenEXR`` (a ~400 MB
    download, ~1 GB installed); an existing venv is reused. Raises :class:`MatSegError` when no CPython 3.11 is
    found or pip fails.
    """
    venv = Path(venv) if venv else default_venv()
    py = _venv_python(venv)
    base = python or _python311()
    if not py.exists():
        if base is None:
            raise MatSegError("bpy wheels need CPython 3.11, which was not found (no python3.11 on PATH); install it "
                              "or pass python=/path/to/python3.11")
        logger.info("creating %s with %s", venv, base)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    t0 = time.time()
    logger.info("installing %s into %s (a few hundred MB)", " ".join(packages), venv)
    proc = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", *packages])
    if proc.returncode != 0:
        raise MatSegError(f"pip could not install {' '.join(packages)} into {venv} (exit {proc.returncode})")
    version = check_blender_python(str(py))
    logger.info("Blender %s ready in %s (%.0f s)", version, venv, time.time() - t0)
    return str(py)
