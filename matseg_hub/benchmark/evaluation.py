"""Scoring a model on the MatSeg benchmark with triplet accuracy (SPEC §3), image by image.

A *model* is any scorer of :mod:`matseg_hub.models.scorers`: a descriptor model (``"rgb"``, ``"hsv"``, a MatSeg
model folder / Hub id, ``"features:ORG/NAME"``, a Python callable ``uint8 [H, W, 3] -> float [H, W, D]`` or an
integer [H, W] label map) is scored on its point descriptors (SPEC §3); a promptable model (``"sam:ORG/NAME"``,
``"materialistic:FOLDER"``) on the similarity of every point to each anchor's prompt (SPEC §9).

Example::

    from matseg_hub.benchmark.evaluation import evaluate_benchmark
    results = evaluate_benchmark("path/or/hub-id", model="rgb", mode="soft")
    results["mean"]["point_triplet"]
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .format import DEFAULT_MAX_SIZE
from ..errors import MatSegFormatError, MatSegInputError, skip_or_raise
from ..metrics.triplet import METRIC_KEYS, MODES, TIES, aggregate, point_descriptors, triplet_accuracy
from ..models.scorers import BASELINES as _BASELINE_FNS, Scorer, hsv_descriptors, point_similarities, \
    resolve_scorer, rgb_descriptors
from ..utils.logging import get_logger, progress

logger = get_logger(__name__)

DescriptorFn = Callable[[np.ndarray], np.ndarray]
BASELINES = tuple(_BASELINE_FNS)


def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator that draws an image's extra prompt points: keyed by the seed and the image id, so that a
    result never depends on which images were scored before it."""
    import zlib

    return np.random.default_rng([int(seed), zlib.crc32(image_id.encode("utf-8"))])


def evaluate_benchmark(data: Optional[Union[str, os.PathLike]] = None, model: Union[str, DescriptorFn] = "rgb", *,
                       mode: Union[str, Sequence[str]] = "soft", max_size: Optional[int] = DEFAULT_MAX_SIZE, split: str = "test",
                       limit: Optional[int] = None, device: Optional[str] = None, bgr: bool = False,
                       allow_pickle: bool = False, skip_bad: bool = False,
                       show_progress: Optional[bool] = None, ties: str = "first", seed: int = 0,
                       layer: Optional[int] = None, prompt_points: int = 1, negative_points: int = 0,
                       multimask: str = "auto") -> Dict[str, Any]:
    """Score a model on a benchmark source with triplet accuracy.

    Args:
        data: raw benchmark folder, built dataset folder or Hub dataset id; ``None`` = the built-in sample.
        model: a model spec (``"rgb"``, ``"hsv"``, a MatSeg model folder or Hub id, ``"features:…"``,
            ``"sam:…"``, ``"materialistic:…"``), a :class:`~matseg_hub.models.scorers.Scorer` or a callable
            ``uint8 [h, w, 3] RGB -> float [h, w, D]`` (or an integer [h, w] label map: a hard segmentation).
        mode: ``"soft"`` (the paper's numbers), ``"hard"`` or ``"soft_only"``; or a list of them, which scores
            every mode from one model pass per image and returns one result per mode (a list, in that order).
        max_size: evaluation resolution (longer side); ``None`` = full resolution.
        limit: score only the first ``limit`` images.
        skip_bad: leave out photos that fail validation (listed under ``"bad"``) instead of stopping at the first:
            in a raw folder, those the reader rejects; from any source, those whose points cannot be scored at
            evaluation size (a disc with no pixel inside the resized image, a point outside the photo).
        ties: ``"first"`` (the reference's order of equal similarities) or ``"average"`` (a tie counts as half;
            see :func:`~matseg_hub.metrics.triplet.triplet_accuracy`).
        seed: draws the extra prompt points of promptable models (per image, keyed by the image id).
        layer, prompt_points, negative_points, multimask: scorer options
            (:func:`~matseg_hub.models.scorers.resolve_scorer`).

    Returns:
        ``{"task": "triplet", "model": name, "scorer": the scorer's settings, "mode": mode, "ties": ties,
        "seed": seed, "max_size": max_size, "mean": {4 numbers + counts}, "images": {image_id: {4 numbers}},
        "skipped": [image ids with no scored anchor], "bad": [{"image_id", "reason"} left out by skip_bad]}``.
    """
    from .format import evaluation_scale
    from .dataset import load_benchmark

    modes = [mode] if isinstance(mode, str) else list(mode)
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise MatSegInputError(f"mode must be one of {MODES} (or a list of distinct ones), got {mode!r}")
    if limit is not None and limit < 1:
        raise MatSegInputError(f"limit must be at least 1, got {limit}")
    if ties not in TIES:
        raise MatSegInputError(f"ties must be one of {TIES}, got {ties!r}")
    evaluation_scale(1, 1, max_size)  # validates max_size before any work
    resolved: Scorer = resolve_scorer(model, device=device, bgr=bgr, layer=layer, prompt_points=prompt_points,
                                      negative_points=negative_points, multimask=multimask)
    per_image: Dict[str, List[Dict[str, Any]]] = {m: [] for m in modes}
    images: Dict[str, Dict[str, Dict[str, Any]]] = {m: {} for m in modes}
    skipped: Dict[str, List[str]] = {m: [] for m in modes}
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
            skip_or_raise(exc, item.image_id, skip_bad=skip_bad, on_skip=leave_out, logger=logger)
            continue
        resolved.set_image(ev.image)  # the model runs once per image, whatever the number of modes
        if resolved.kind == "descriptor":
            prediction: Dict[str, Any] = {"descriptors": point_descriptors(resolved.descriptor_map(), ev.points)}
        else:
            rows, exclude = point_similarities(resolved, ev.points, ev.point_groups,
                                               rng=_image_rng(seed, item.image_id))
            prediction = {"descriptors": None, "similarities": rows, "exclude": exclude}
        for m in modes:
            result = triplet_accuracy(point_groups=ev.point_groups, group_similarity=ev.group_similarity,
                                      group_ids=range(len(ev.group_ids)), mode=m, ties=ties, **prediction)
            per_image[m].append(result)
            if result["scored"]:
                images[m][item.image_id] = {k: result[k] for k in METRIC_KEYS}
            else:
                skipped[m].append(item.image_id)
    if not per_image[modes[0]]:
        raise MatSegInputError(f"no image to score in {data!r}")
    runs = [{"task": "triplet", "model": resolved.name, "scorer": resolved.describe(), "mode": m, "ties": ties,
             "seed": seed, "max_size": max_size, "mean": aggregate(per_image[m]), "images": images[m],
             "skipped": skipped[m], "bad": list(bad)} for m in modes]
    return runs[0] if isinstance(mode, str) else runs


def format_table(runs: List[Dict[str, Any]]) -> str:
    """A plain-text table of the mean numbers of one or more :func:`evaluate_benchmark` results (the model column
    as wide as the longest name)."""
    width = max([5] + [len(str(run["model"])) for run in runs])
    header = f"{'model':<{width}} {'mode':<9} {'images':>6} {'point triplet':>14} {'material triplet':>17} " \
             f"{'point top-1':>12} {'material top-1':>15}"
    lines = [header, "-" * len(header)]

    def f(v):
        return f"{v:.5f}" if v is not None else "n/a"

    for run in runs:
        m = run["mean"]
        lines.append(f"{run['model']:<{width}} {run['mode']:<9} {m['num_scored_images']:>6} "
                     f"{f(m['point_triplet']):>14} {f(m['material_triplet']):>17} {f(m['point_top1']):>12} "
                     f"{f(m['material_top1']):>15}")
    return "\n".join(lines)


__all__ = ["evaluate_benchmark", "format_table", "rgb_descriptors", "hsv_descriptors", "BASELINES"]
