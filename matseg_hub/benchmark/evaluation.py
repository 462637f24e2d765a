"""Scoring a model on the MatSeg benchmark with triplet accuracy (SPEC §3), image by image.

A *model* here is anything that maps an RGB image (uint8 [H, W, 3], at evaluation resolution) to a descriptor
map (float [H, W, D]): the built-in baselines ``"rgb"`` and ``"hsv"``, a Python callable, or a MatSeg model
folder / Hub id (loaded with ``transformers``).

Example::

    from matseg_hub.benchmark.evaluation import evaluate_benchmark
    results = evaluate_benchmark("path/or/hub-id", model="rgb", mode="soft")
    results["mean"]["point_triplet"]
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from .format import DEFAULT_MAX_SIZE
from ..errors import MatSegFormatError, MatSegInputError
from ..metrics.triplet import METRIC_KEYS, MODES, aggregate, point_descriptors, triplet_accuracy
from ..utils.logging import get_logger, progress

logger = get_logger(__name__)

DescriptorFn = Callable[[np.ndarray], np.ndarray]
BASELINES = ("rgb", "hsv")


def rgb_descriptors(image: np.ndarray) -> np.ndarray:
    """The ``rgb`` baseline: the image's three channels as a float32 [H, W, 3] descriptor map."""
    return np.asarray(image, dtype=np.float32)


def hsv_descriptors(image: np.ndarray) -> np.ndarray:
    """The ``hsv`` baseline: OpenCV's 8-bit HSV of the RGB image (H in 0-179) as float32 [H, W, 3]."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)


@dataclass
class ResolvedModel:
    name: str
    fn: DescriptorFn


def resolve_model(model: Union[str, os.PathLike, DescriptorFn], *, device: Optional[str] = None,
                  bgr: bool = False) -> ResolvedModel:
    """Turn ``"rgb"``, ``"hsv"``, a callable, a MatSeg model folder or a Hub model id into a descriptor function.

    Args:
        bgr: feed the network BGR images, reproducing the reference ``Evaluate.py`` (which reads with cv2).
    """
    if callable(model):
        return ResolvedModel(getattr(model, "__name__", "callable"), model)
    name = str(model)
    if name == "rgb":
        return ResolvedModel("rgb", rgb_descriptors)
    if name == "hsv":
        return ResolvedModel("hsv", hsv_descriptors)
    if "/" not in name and not os.path.exists(name):
        raise MatSegInputError(f"unknown model {name!r}: use 'rgb', 'hsv', a MatSeg model folder or a Hub model id "
                               f"('namespace/name')")
    try:
        from ..models.inference import load_descriptor_fn
    except ImportError as exc:  # pragma: no cover - the model module ships with the package
        raise MatSegInputError(f"unknown model {name!r}: use 'rgb', 'hsv', a MatSeg model folder or a Hub id") from exc
    return ResolvedModel(name, load_descriptor_fn(name, device=device, bgr=bgr))


def evaluate_benchmark(data: Optional[Union[str, os.PathLike]] = None, model: Union[str, DescriptorFn] = "rgb", *,
                       mode: str = "soft", max_size: Optional[int] = DEFAULT_MAX_SIZE, split: str = "test",
                       limit: Optional[int] = None, device: Optional[str] = None, bgr: bool = False,
                       allow_pickle: bool = False, skip_bad: bool = False,
                       show_progress: Optional[bool] = None) -> Dict[str, Any]:
    """Score a model on a benchmark source with triplet accuracy.

    Args:
        data: raw benchmark folder, built dataset folder or Hub dataset id; ``None`` = the built-in sample.
        model: ``"rgb"``, ``"hsv"``, a callable ``uint8 [h, w, 3] RGB -> float [h, w, D]``, a MatSeg model
            folder or a Hub model id.
        mode: ``"soft"`` (the paper's numbers), ``"hard"`` or ``"soft_only"``.
        max_size: evaluation resolution (longer side); ``None`` = full resolution.
        limit: score only the first ``limit`` images.
        skip_bad: leave out photos that fail validation (listed under ``"bad"``) instead of stopping at the first:
            in a raw folder, those the reader rejects; from any source, those whose points cannot be scored at
            evaluation size (a disc with no pixel inside the resized image, a point outside the photo).

    Returns:
        ``{"mean": {4 numbers + counts}, "images": {image_id: {4 numbers}}, "skipped": [image ids with no
        scored anchor], "bad": [{"image_id", "reason"} left out by skip_bad], "model": name, "mode": mode,
        "max_size": max_size}``.
    """
    from .format import evaluation_scale
    from .dataset import load_benchmark

    if mode not in MODES:
        raise MatSegInputError(f"mode must be one of {MODES}, got {mode!r}")
    if limit is not None and limit < 1:
        raise MatSegInputError(f"limit must be at least 1, got {limit}")
    evaluation_scale(1, 1, max_size)  # validates max_size before any work
    resolved = resolve_model(model, device=device, bgr=bgr)
    per_image: List[Dict[str, Any]] = []
    images: Dict[str, Dict[str, Any]] = {}
    skipped: List[str] = []
    bad: List[Dict[str, str]] = []

    def leave_out(image_id: str, reason: str) -> None:
        bad.append({"image_id": image_id, "reason": reason})

    items = load_benchmark(data, split=split, allow_pickle=allow_pickle, skip_bad=skip_bad, on_skip=leave_out)
    disable = None if show_progress is None else not show_progress
    for item in progress(itertools.islice(items, limit), total=limit, desc=f"scoring {resolved.name}", unit="img",
                         disable=disable):
        try:
            ev = item.for_evaluation(max_size=max_size)
        except MatSegFormatError as exc:  # e.g. a point whose disc has no pixel left at evaluation size
            if not skip_bad:
                raise
            logger.warning("skipping %s: %s", item.image_id, exc)
            leave_out(item.image_id, str(exc))
            continue
        features = resolved.fn(ev.image)
        if features.ndim != 3 or features.shape[:2] != ev.image.shape[:2]:
            raise MatSegInputError(f"model {resolved.name!r} returned a map of shape {features.shape} for an image of "
                                   f"shape {ev.image.shape}; expected [H, W, D] at the image's size")
        desc = point_descriptors(features, ev.points)
        result = triplet_accuracy(desc, ev.point_groups, ev.group_similarity, group_ids=range(len(ev.group_ids)),
                                  mode=mode)
        per_image.append(result)
        if result["scored"]:
            images[item.image_id] = {k: result[k] for k in METRIC_KEYS}
        else:
            skipped.append(item.image_id)
    if not per_image:
        raise MatSegInputError(f"no image to score in {data!r}")
    return {"model": resolved.name, "mode": mode, "max_size": max_size, "mean": aggregate(per_image),
            "images": images, "skipped": skipped, "bad": bad}


def format_table(runs: List[Dict[str, Any]]) -> str:
    """A plain-text table of the mean numbers of one or more :func:`evaluate_benchmark` results."""
    header = f"{'model':<24} {'mode':<9} {'images':>6} {'point triplet':>14} {'material triplet':>17} " \
             f"{'point top-1':>12} {'material top-1':>15}"
    lines = [header, "-" * len(header)]
    for run in runs:
        m = run["mean"]

        def f(v):
            return f"{v:.5f}" if v is not None else "n/a"

        lines.append(f"{run['model'][-24:]:<24} {run['mode']:<9} {m['num_scored_images']:>6} "
                     f"{f(m['point_triplet']):>14} {f(m['material_triplet']):>17} {f(m['point_top1']):>12} "
                     f"{f(m['material_top1']):>15}")
    return "\n".join(lines)
