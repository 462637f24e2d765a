"""Scoring during training: the benchmark and held-out generated scenes, both with triplet accuracy.

Held-out scenes are written once as a raw benchmark folder (``images/`` + ``data/<id>/data.json``), so they are
scored by the same code as the real benchmark (:func:`matseg_hub.benchmark.evaluation.evaluate_benchmark`) and can be
re-scored later with ``matseg evaluate --data <folder>``. Points are drawn where one material clearly dominates
(its mask > 0.9, inside the annotated region), with discs that stay inside that area.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from ..errors import MatSegInputError
from ..utils.images import swap_rb
from ..utils.logging import get_logger
from ..utils.seeds import stream_rng

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]


def scene_points(masks: np.ndarray, annotated: np.ndarray, rng: np.random.Generator, *, points_per_material: int = 6,
                 radius: int = 3, purity: float = 0.9) -> Dict[str, Dict[str, list]]:
    """Benchmark-style annotation of one scene: ``{"1": {"pt_im": [[x, y, r], ...]}, ...}``.

    Args:
        masks: float32 [K, H, W] soft masks; annotated: float32 [H, W].
        purity: a point's material must exceed this on the whole disc (checked by eroding the region).

    Returns:
        groups with at least 2 points (materials too small for a disc are left out).
    """
    import cv2

    k = 2 * radius + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    groups: Dict[str, Dict[str, list]] = {}
    for m in range(len(masks)):
        region = ((masks[m] > purity) & (annotated > 0.5)).astype(np.uint8)
        region = cv2.erode(region, kernel)
        ys, xs = np.nonzero(region)
        if len(ys) < 2:
            continue
        pick = rng.choice(len(ys), size=min(points_per_material, len(ys)), replace=False)
        groups[str(len(groups) + 1)] = {"pt_im": [[int(xs[i]), int(ys[i]), int(radius)] for i in sorted(pick)]}
    return groups


def write_scene_benchmark(root: PathLike, seed: int, num_scenes: int, *, size: int = 256, sources=None,
                          points_per_material: int = 6, radius: Optional[int] = None) -> Path:
    """Generate ``num_scenes`` 2D scenes of stream ``seed`` (held out from training by using another seed) and
    write them as a raw benchmark folder. Scenes with fewer than 2 scorable materials are skipped (and replaced).

    Returns the folder (``images/scene_0000.jpg``, ``data/scene_0000/data.json``, ...).
    """
    import cv2

    from ..benchmark.format import write_benchmark_item
    from ..synthetic.scenes2d import SceneConfig, generate_scene

    if num_scenes <= 0:
        raise MatSegInputError(f"num_scenes must be > 0, got {num_scenes}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    config = SceneConfig(size=(int(size), int(size)))
    r = radius if radius is not None else max(2, int(size) // 64)
    written, index = 0, 0
    while written < num_scenes and index < num_scenes * 10:
        scene = generate_scene(seed, index, sources, config)
        rng = stream_rng("scoring.points", seed, index)
        index += 1
        groups = scene_points(scene.masks, scene.annotated, rng, points_per_material=points_per_material, radius=r)
        if len(groups) < 2:
            continue
        ok, jpg = cv2.imencode(".jpg", swap_rb(scene.rgb), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise MatSegInputError(f"cannot encode held-out scene {index} as JPEG")
        write_benchmark_item(root, f"scene_{written:04d}", jpg.tobytes(), groups)
        written += 1
    return root


def model_descriptor_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """RGB uint8 [H, W, 3] -> float32 [H, W, D] for a :class:`~matseg_hub.models.matseg.MatSegModel` (eval mode)."""
    from ..models.inference import descriptor_map

    def fn(image: np.ndarray) -> np.ndarray:
        return descriptor_map(model, image)

    fn.__name__ = "model"
    return fn


def score(data: Optional[PathLike], model: Union[str, Callable], *, max_size: Optional[int] = 700,
          limit: Optional[int] = None, mode: str = "soft") -> Dict[str, float]:
    """Mean triplet/top-1 numbers of ``model`` on a benchmark source (``None``: the built-in sample)."""
    from ..benchmark.evaluation import evaluate_benchmark

    result = evaluate_benchmark(data, model, mode=mode, max_size=max_size, limit=limit, show_progress=False)
    mean = result["mean"]
    return {k: float(v) for k, v in mean.items() if isinstance(v, (int, float)) and v is not None}


__all__ = ["model_descriptor_fn", "scene_points", "score", "write_scene_benchmark"]
