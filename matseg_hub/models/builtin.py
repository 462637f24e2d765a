"""The MatSeg nets that ship inside the package (``matseg_hub/resources/models/<name>/``), by name.

``matseg-tiny`` is a small MatSeg net (ConvNeXt depths [1, 1, 1, 1], widths [16, 32, 64, 128], 32-d descriptors,
float16 weights) trained on CPU on generated 2D scenes only, with ``train/configs/matseg-tiny.yaml``; its model card
(``README.md`` in its folder) has the recipe and the measured numbers. The name works wherever a model is taken:
``matseg evaluate --model matseg-tiny``, ``resolve_scorer("matseg-tiny")``, ``MatSegPredictor("matseg-tiny")``,
``matseg demo`` (its default). This module stays light (no torch): the scorer table imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from ..errors import MatSegInputError

#: built-in model name -> its folder under ``matseg_hub/resources/models/``
BUILTIN_MODELS: Dict[str, str] = {"matseg-tiny": "matseg-tiny"}
#: the built-in model that ``matseg evaluate`` and ``matseg demo`` use by default
DEFAULT_BUILTIN_MODEL = "matseg-tiny"


def builtin_model_dir(name: str = DEFAULT_BUILTIN_MODEL) -> Path:
    """The folder of a built-in MatSeg net (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
    ``README.md``), loadable with ``MatSegModel.from_pretrained`` / ``AutoModel.from_pretrained`` once
    ``matseg_hub.models.matseg`` is imported (``matseg_hub.builtin_model_dir`` imports it).

    Raises:
        MatSegInputError: ``name`` is not a built-in model, or its folder is missing from this installation.
    """
    if name not in BUILTIN_MODELS:
        raise MatSegInputError(f"unknown built-in model {name!r}: the package ships {sorted(BUILTIN_MODELS)}")
    folder = Path(__file__).resolve().parents[1] / "resources" / "models" / BUILTIN_MODELS[name]
    if not (folder / "config.json").is_file():
        raise MatSegInputError(f"the built-in model {name!r} is missing from this installation ({folder} has no "
                               f"config.json); reinstall matseg-hub")
    return folder


def builtin_model_path(name: str) -> Optional[Path]:
    """The folder of ``name`` when it names a built-in model, else ``None`` (a folder or a Hub id)."""
    return builtin_model_dir(name) if str(name) in BUILTIN_MODELS else None


__all__ = ["BUILTIN_MODELS", "DEFAULT_BUILTIN_MODEL", "builtin_model_dir", "builtin_model_path"]
