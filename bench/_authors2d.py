"""Import the authors' 2D generator (``Generate_2D_Scene_And_Annotation.py`` of
``sagieppel/MatSeg2D-generation-code``, cloned under ``bench/_work/``) for the side-by-side benches."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path


def import_authors_generator(path: Path):
    """The authors' module from the folder ``path``; ``sklearn``, which it imports but does not use, is stubbed
    when it is not installed."""
    try:
        import sklearn.metrics.pairwise  # noqa: F401  (imported, unused, by the authors' module)
    except ImportError:
        stub = types.ModuleType("sklearn.metrics.pairwise")
        stub.cosine_similarity = None
        sys.modules.setdefault("sklearn", types.ModuleType("sklearn"))
        sys.modules.setdefault("sklearn.metrics", types.ModuleType("sklearn.metrics"))
        sys.modules["sklearn.metrics.pairwise"] = stub
    path = str(Path(path).resolve())
    sys.path.insert(0, path)
    try:
        return importlib.import_module("Generate_2D_Scene_And_Annotation")
    finally:
        sys.path.remove(path)
