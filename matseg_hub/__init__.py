"""MatSeg Hub: the Hugging Face-native home of the MatSeg material-state segmentation benchmark.

Public entry points are imported lazily (``matseg_hub.read_benchmark`` etc.) so that ``import matseg_hub``
stays cheap and does not import torch. ``import matseg_hub.modeling`` (or touching ``matseg_hub.MatSegModel``)
registers the ``matseg`` model type with ``transformers``' Auto classes.
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
    "BenchmarkItem": "benchmark",
    "read_benchmark_item": "benchmark",
    "read_benchmark": "benchmark",
    "parse_group_relations": "benchmark",
    "resize_for_evaluation": "benchmark",
    "point_disc_masks": "benchmark",
    "builtin_benchmark_dir": "benchmark",
    "load_benchmark": "benchmark_dataset",
    "build_benchmark_dataset": "benchmark_dataset",
    "point_descriptors": "metric",
    "label_map_descriptors": "metric",
    "triplet_accuracy": "metric",
    "aggregate": "metric",
    "score_images": "metric",
    "evaluate_benchmark": "evaluation",
    "publish_folder": "hub",
    "MatSegConfig": "modeling",
    "MatSegModel": "modeling",
    "MatSegImageProcessor": "modeling",
    "MatSegPredictor": "inference",
    "descriptor_map": "inference",
    "load_descriptor_fn": "inference",
    "SceneConfig": "scenes2d",
    "SceneSources": "scenes2d",
    "SourcePool": "scenes2d",
    "generate_scene": "scenes2d",
    "pattern_map": "patterns",
    "render_pattern": "patterns",
    "PatternParams": "patterns",
    "SyntheticScene": "synthetic",
    "read_scene": "synthetic",
    "write_scene": "synthetic",
    "iter_scene_folders": "synthetic",
    "scene_stream": "streaming",
    "folder_scene_stream": "streaming",
    "mix_scene_streams": "streaming",
    "scene_tensors": "streaming",
    "extract_textures": "textures",
    "PBRMaterial": "pbr",
    "texture_to_pbr": "pbr",
    "mix_materials": "pbr",
    "read_pbr_folder": "pbr",
    "write_pbr_folder": "pbr",
    "iter_textures": "asset_datasets",
    "iter_materials": "asset_datasets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'matseg_hub' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
