"""MatSeg Hub: the Hugging Face-native home of the MatSeg material-state segmentation benchmark.

Public entry points are imported lazily (``matseg_hub.read_benchmark`` etc.) so that ``import matseg_hub``
stays cheap and does not import torch. ``import matseg_hub.models.matseg`` (or touching ``matseg_hub.MatSegModel``)
registers the ``matseg`` model type with ``transformers``' Auto classes, so that
``AutoModel.from_pretrained(matseg_hub.builtin_model_dir())`` loads the built-in net ``matseg-tiny``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "MatSegError": "errors",
    "MatSegFormatError": "errors",
    "MatSegInputError": "errors",
    "MissingDependencyError": "errors",
    "BenchmarkItem": "benchmark.format",
    "read_benchmark_item": "benchmark.format",
    "read_benchmark": "benchmark.format",
    "parse_group_relations": "benchmark.format",
    "resize_for_evaluation": "benchmark.format",
    "point_disc_masks": "benchmark.format",
    "builtin_benchmark_dir": "benchmark.format",
    "load_benchmark": "benchmark.dataset",
    "build_benchmark_dataset": "benchmark.dataset",
    "point_descriptors": "metrics.triplet",
    "label_map_descriptors": "metrics.triplet",
    "triplet_accuracy": "metrics.triplet",
    "aggregate": "metrics.triplet",
    "score_images": "metrics.triplet",
    "evaluate_benchmark": "benchmark.evaluation",
    "publish_folder": "hub.publish",
    "MatSegConfig": "models.matseg",
    "MatSegModel": "models.matseg",
    "MatSegImageProcessor": "models.matseg",
    "builtin_model_dir": "models.matseg",  # through models.matseg: the Auto classes are registered on first use
    "MatSegPredictor": "models.inference",
    "descriptor_map": "models.inference",
    "load_descriptor_fn": "models.inference",
    "SceneConfig": "synthetic.scenes2d",
    "SceneSources": "synthetic.sources",
    "SourcePool": "synthetic.sources",
    "generate_scene": "synthetic.scenes2d",
    "pattern_map": "synthetic.patterns",
    "render_pattern": "synthetic.patterns",
    "PatternParams": "synthetic.patterns",
    "SyntheticScene": "synthetic.layout",
    "read_scene": "synthetic.layout",
    "write_scene": "synthetic.layout",
    "iter_scene_folders": "synthetic.layout",
    "scene_stream": "synthetic.streaming",
    "folder_scene_stream": "synthetic.streaming",
    "mix_scene_streams": "synthetic.streaming",
    "scene_tensors": "synthetic.streaming",
    "extract_textures": "materials.textures",
    "PBRMaterial": "materials.pbr",
    "texture_to_pbr": "materials.pbr",
    "mix_materials": "materials.pbr",
    "read_pbr_folder": "materials.pbr",
    "write_pbr_folder": "materials.pbr",
    "iter_textures": "materials.datasets",
    "iter_materials": "materials.datasets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'matseg_hub' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
