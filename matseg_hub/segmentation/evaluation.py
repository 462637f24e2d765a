"""Point-prompted IoU on segmentation sets (SPEC §10), the protocol of the authors' evaluation code.

Per ground-truth region of an image (at evaluation size, the longer side ``max_size``):

1. erode the region's mask with ``cv2.erode`` and a square kernel of side ``margin + query_radius`` (10 + 10 =
   20 px: the authors' ``get_pointer_masks(mask, num_points=10, boundary_erosion=10, point_radius=10,
   min_erode_area=400)`` in ``DisplaySegmentationResults.py``). A side-20 kernel anchored at its centre erodes
   10 px on the top/left and 9 px on the bottom/right, so a radius-10 disc centred in the eroded mask stays inside
   the region except for its last pixel row/column on the bottom/right (up to 2 px outside): it is an erosion by
   the radius, not by margin + radius as SPEC §10 words it;
2. skip the region when fewer than ``min_area`` (400) pixels remain (counted and listed under ``small_regions``);
3. draw ``num_queries`` (10) pixels of the eroded mask uniformly with replacement (the authors redraw random
   pixels of the image until one is inside: the same distribution), each the centre of a query disc of radius
   ``query_radius`` (10), from a generator keyed by ``(seed, image id, region index)`` so that a result never
   depends on which images or regions came before;
4. ask the scorer for the similarity map of each query (``queries="each"``, the authors' loop: one map per disc)
   or of one prompt made of all the discs (``queries="joint"``);
5. IoU of ``map > t`` with the region (:func:`~matseg_hub.metrics.iou.iou_sweep`): the **oracle** is the best
   ``t`` of the sweep 0, 0.01, ..., 1 for each query map (the authors' ``find_best_tresh_and_IOU(prob_map, ...)``
   is called per map; it is not published: a coarse-to-fine search from 0 to 1, gap 0.05 down to 0.01, which the
   full sweep never scores below); **fixed** is the IoU at one ``threshold`` for the whole set.

A region's numbers are the means over its query maps, an image's the means over its scored regions; the set's
means are given per region and per image. The oracle sees the ground truth to choose its threshold, so it is an
upper bound on what the model's maps allow, not a number a user could reach; the fixed threshold is the honest
one. ``oracle_shared`` (per image) is the best single threshold for all the maps of an image.

Example::

    from matseg_hub.segmentation.evaluation import evaluate_segmentation, format_iou_table
    result = evaluate_segmentation("path/to/set", model="hsv", threshold=0.9)
    print(format_iou_table([result]))
"""

from __future__ import annotations

import itertools
import math
import os
import zlib
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError, skip_or_raise
from ..metrics.iou import DEFAULT_THRESHOLDS, iou_sweep
from ..models.scorers import Prompt, Scorer, resolve_scorer
from ..utils.logging import get_logger, progress
from ..utils.seeds import STREAMS, stream_rng
from .item import SegmentationItem

logger = get_logger(__name__)

#: the authors' ``boundary_erosion`` (pixels kept clear of the region's boundary besides the disc radius)
MARGIN = 10
NUM_QUERIES = 10
QUERY_RADIUS = 10
MIN_AREA = 400
QUERY_MODES = ("each", "joint")
#: the oracle's sweep: 0, 0.01, ..., 1
THRESHOLDS = DEFAULT_THRESHOLDS
#: first word of every query generator's seed (the CRC-32 of the stream's name; see matseg_hub.utils.seeds)
QUERY_STREAM = STREAMS["segmentation.iou.queries"]
SCORER_OPTIONS = ("layer", "prompt_points", "negative_points", "multimask", "bgr", "revision", "token",
                  "local_files_only", "cache_dir")
_BATCH = 32  # prompts per similarity_maps call


# ----------------------------------------------------------------------------------------------------------------
# the protocol's pieces
# ----------------------------------------------------------------------------------------------------------------
def eroded_region(mask: np.ndarray, margin: int = MARGIN, query_radius: int = QUERY_RADIUS) -> np.ndarray:
    """The pixels where a query disc may be centred: ``cv2.erode(mask, ones([margin + r, margin + r]))``.

    Args:
        mask: bool (or 0/1) [H, W], one region.
        margin, query_radius: the kernel is a square of side ``margin + query_radius`` (anchored at its centre,
            OpenCV's default; pixels beyond the image border do not erode).

    Returns:
        bool [H, W].
    """
    import cv2

    side = int(margin) + int(query_radius)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if side <= 1:
        return mask.astype(bool)
    return cv2.erode(mask, np.ones((side, side), dtype=np.uint8)) > 0


def query_rng(seed: int, image_id: str, region: int) -> np.random.Generator:
    """The generator of the queries of region ``region`` of image ``image_id``:
    ``default_rng([QUERY_STREAM, seed, crc32(image_id), region])`` (the stream ``segmentation.iou.queries`` of
    :func:`matseg_hub.utils.seeds.stream_rng`)."""
    return stream_rng("segmentation.iou.queries", int(seed), zlib.crc32(str(image_id).encode("utf-8")), int(region))


def draw_queries(eroded: np.ndarray, num_queries: int, query_radius: int, rng: np.random.Generator) -> np.ndarray:
    """``num_queries`` disc centres drawn uniformly (with replacement) among the pixels of ``eroded``.

    Args:
        eroded: bool [H, W] with at least one pixel.
        rng: the region's generator (:func:`query_rng`).

    Returns:
        int64 [num_queries, 3] ``(x, y, query_radius)``.
    """
    pixels = np.flatnonzero(eroded)
    if pixels.size == 0:
        raise MatSegInputError("no pixel to draw a query from: the eroded region is empty")
    picks = pixels[rng.integers(0, pixels.size, size=int(num_queries))]
    y, x = np.divmod(picks, eroded.shape[1])
    return np.stack([x, y, np.full_like(x, int(query_radius))], axis=1).astype(np.int64)


def _check_item(item: Any) -> SegmentationItem:
    if not isinstance(item, SegmentationItem):
        raise MatSegInputError(f"data must be a segmentation set (a folder, a built dataset or a Hub id) or an "
                               f"iterable of SegmentationItem; got an item of type {type(item).__name__}")
    where = item.source or item.image_id
    image = np.asarray(item.image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MatSegFormatError(f"image {item.image_id!r}: expected an RGB uint8 [H, W, 3] image, got shape "
                                f"{image.shape} {image.dtype}", path=where, field="image")
    masks = np.asarray(item.masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise MatSegFormatError(f"image {item.image_id!r} has no region mask: give it at least one mask",
                                path=where, field="masks")
    if masks.shape[1:] != image.shape[:2]:
        raise MatSegFormatError(f"image {item.image_id!r}: masks of size {masks.shape[2]}x{masks.shape[1]} for an "
                                f"image of size {image.shape[1]}x{image.shape[0]}: every mask must have the "
                                f"image's size", path=where, field="masks")
    masks = masks.astype(bool)
    empty = [i for i in range(masks.shape[0]) if not masks[i].any()]
    if empty:
        names = [(item.region_names[i] if i < len(item.region_names) and item.region_names[i] else str(i))
                 for i in empty]
        raise MatSegFormatError(f"image {item.image_id!r}: empty mask(s) {names}: remove them or fix the "
                                f"annotation", path=where, field="masks")
    return SegmentationItem(item.image_id, image, masks, list(item.region_names), item.license, item.source)


def resize_item(item: SegmentationItem, max_size: Optional[int]) -> SegmentationItem:
    """The item at evaluation size: the image as :func:`~matseg_hub.benchmark.format.resize_for_evaluation`
    resizes it (bilinear, longer side ``max_size``), each mask to the same size with nearest-neighbour."""
    import cv2

    from ..benchmark.format import resize_for_evaluation

    image, _, rat = resize_for_evaluation(item.image, np.zeros((0, 3)), max_size)
    if rat == 1.0:
        return item
    size = (image.shape[1], image.shape[0])
    masks = np.stack([cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
                      for m in item.masks])
    return SegmentationItem(item.image_id, image, masks, item.region_names, item.license, item.source)


def _items(data: Any, format: Optional[str], split: str, skip_bad: bool, on_skip) -> Iterator[SegmentationItem]:
    if isinstance(data, SegmentationItem):
        return iter([data])
    if isinstance(data, (str, os.PathLike)):
        from .dataset import load_segmentation

        return load_segmentation(data, format=format, split=split, skip_bad=skip_bad, on_skip=on_skip)
    try:
        return iter(data)
    except TypeError:
        raise MatSegInputError(f"data must be a segmentation set (a folder, a built dataset or a Hub id) or an "
                               f"iterable of SegmentationItem; got {type(data).__name__}") from None


def _region_name(item: SegmentationItem, r: int) -> str:
    return item.region_names[r] if r < len(item.region_names) and item.region_names[r] else str(r)


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(np.mean(values)) if len(values) else None


# ----------------------------------------------------------------------------------------------------------------
# the evaluation
# ----------------------------------------------------------------------------------------------------------------
def evaluate_segmentation(data: Any, model: Any = "rgb", *, format: Optional[str] = None, split: str = "test",
                          threshold: float = 0.5, max_size: Optional[int] = 700, limit: Optional[int] = None,
                          device: Optional[str] = None, seed: int = 0, num_queries: int = NUM_QUERIES,
                          query_radius: int = QUERY_RADIUS, min_area: int = MIN_AREA, margin: int = MARGIN,
                          queries: str = "each", skip_bad: bool = False, show_progress: Optional[bool] = None,
                          **scorer_options: Any) -> Dict[str, Any]:
    """Point-prompted IoU of a model on a segmentation set (the protocol of the module docstring).

    Args:
        data: what :func:`~matseg_hub.segmentation.dataset.load_segmentation` reads (a raw folder, a built dataset
            folder, a Hub dataset id), or an iterable of :class:`SegmentationItem`.
        model: a model spec or scorer (:func:`~matseg_hub.models.scorers.resolve_scorer`).
        format, split: passed to ``load_segmentation``.
        threshold: the fixed threshold (one value for the whole set).
        max_size: evaluation size (longer side; ``None`` = full resolution).
        limit: score only the first ``limit`` images.
        seed: keys every region's query generator (with the image id and the region index).
        num_queries, query_radius, min_area, margin: the protocol's constants (the authors': 10, 10, 400, 10).
        queries: ``"each"`` (one similarity map per query disc, the authors' loop) or ``"joint"`` (one prompt of
            all the discs: descriptor models average the discs' descriptors, SAM takes them as positive points,
            Materialistic its first point).
        skip_bad: leave out bad images (listed under ``"bad"``) instead of raising.
        show_progress: a progress bar (default: unless disabled package-wide).
        scorer_options: ``layer``, ``prompt_points``, ``negative_points``, ``multimask``, ``bgr`` and Hub loading
            options, passed to ``resolve_scorer``.

    Returns:
        ``{"task": "iou", "model", "scorer", "data", "max_size", "threshold", "seed", "protocol": {...},
        "mean": {"oracle_region", "oracle_image", "fixed_region", "fixed_image", "oracle_shared_image",
        "num_images", "num_regions", "num_small_regions", "num_bad_images"}, "images": {image_id: {"oracle",
        "fixed", "best_threshold", "oracle_shared", "regions": [{"name", "oracle", "fixed", "area",
        "eroded_area", "best_thresholds", "queries"}]}}, "small_regions": [{"image_id", "region", "area"}],
        "skipped": [image ids with no region large enough], "bad": [{"image_id", "reason"}]}``. Means are over
        scored regions / images (``None`` when nothing was scored in a category).

    Raises:
        MatSegFormatError: a bad image (masks of another size, an empty mask, no mask, an image id seen before),
            unless ``skip_bad``.
        MatSegInputError: a bad option, a model's map of the wrong shape, or no region to score at all.
    """
    from ..benchmark.format import evaluation_scale

    unknown = sorted(set(scorer_options) - set(SCORER_OPTIONS))
    if unknown:
        raise MatSegInputError(f"unknown option(s) {unknown} for evaluate_segmentation; scorer options are "
                               f"{list(SCORER_OPTIONS)}")
    if queries not in QUERY_MODES:
        raise MatSegInputError(f"queries must be one of {QUERY_MODES}, got {queries!r}")
    if not (isinstance(threshold, (int, float, np.floating)) and math.isfinite(float(threshold))):
        raise MatSegInputError(f"threshold must be a finite number, got {threshold!r}")
    for name, value, low in (("num_queries", num_queries, 1), ("query_radius", query_radius, 0),
                             ("min_area", min_area, 0), ("margin", margin, 0), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise MatSegInputError(f"{name} must be an integer >= {low}, got {value!r}")
    if limit is not None and limit < 1:
        raise MatSegInputError(f"limit must be at least 1, got {limit}")
    evaluation_scale(1, 1, max_size)  # validates max_size before any work
    scorer: Scorer = resolve_scorer(model, device=device, **scorer_options)

    images: Dict[str, Dict[str, Any]] = {}
    small: List[Dict[str, Any]] = []
    skipped: List[str] = []
    bad: List[Dict[str, str]] = []
    region_oracle: List[float] = []
    region_fixed: List[float] = []

    def leave_out(image_id: str, reason: str) -> None:
        bad.append({"image_id": str(image_id), "reason": reason})

    items = _items(data, format, split, skip_bad, leave_out)
    disable = None if show_progress is None else not show_progress
    unreadable = 0  # of those, images _check_item refused (or a repeated image id)
    scored_ids: set = set()
    seen = 0  # images read (bad ones the reader left out never arrive here)
    for raw in progress(itertools.islice(items, limit), total=limit, desc=f"IoU {scorer.name}", unit="img",
                        disable=disable):
        seen += 1
        try:
            item = _check_item(raw)
            if item.image_id in scored_ids:  # results are keyed by image id: a second one would replace the first
                raise MatSegFormatError(f"image id {item.image_id!r} appears twice in the set: give every image its "
                                        f"own id", path=item.source or item.image_id, field="image_id")
            scored_ids.add(item.image_id)
        except MatSegFormatError as exc:
            skip_or_raise(exc, raw.image_id, skip_bad=skip_bad, on_skip=leave_out, logger=logger)
            unreadable += 1
            continue
        item = resize_item(item, max_size)
        try:
            entry = _score_image(scorer, item, threshold=float(threshold), seed=seed, num_queries=num_queries,
                                 query_radius=query_radius, min_area=min_area, margin=margin, queries=queries,
                                 small=small)
        except MatSegInputError as exc:  # a model that fails on this image: say which
            raise MatSegInputError(f"model {scorer.name!r} on image {item.image_id!r}: {exc}") from None
        if entry is None:
            skipped.append(item.image_id)
            continue
        images[item.image_id] = entry
        region_oracle += [r["oracle"] for r in entry["regions"]]
        region_fixed += [r["fixed"] for r in entry["regions"]]
    if not seen:
        left_out = f": all {len(bad)} images were bad and left out (--skip-bad)" if bad else ""
        raise MatSegInputError(f"no image to score in {_describe_data(data)}{left_out}")
    if not images:
        raise MatSegInputError(f"no region to score in {_describe_data(data)}: all {len(small)} regions of the "
                               f"{seen - unreadable} readable images have fewer than {min_area} px left after "
                               f"erosion by {margin + query_radius} px (and {len(bad)} images were bad)")
    mean = {
        "oracle_region": _mean(region_oracle),
        "oracle_image": _mean([e["oracle"] for e in images.values()]),
        "fixed_region": _mean(region_fixed),
        "fixed_image": _mean([e["fixed"] for e in images.values()]),
        "oracle_shared_image": _mean([e["oracle_shared"] for e in images.values()]),
        "num_images": len(images),
        "num_regions": len(region_oracle),
        "num_small_regions": len(small),
        "num_bad_images": len(bad),
    }
    protocol = {"queries": queries, "num_queries": num_queries, "query_radius": query_radius, "margin": margin,
                "erosion_kernel": margin + query_radius, "min_area": min_area,
                "oracle_thresholds": [float(THRESHOLDS[0]), float(THRESHOLDS[-1]), len(THRESHOLDS)]}
    return {"task": "iou", "model": scorer.name, "scorer": scorer.describe(), "data": _describe_data(data),
            "max_size": max_size, "threshold": float(threshold), "seed": seed, "protocol": protocol, "mean": mean,
            "images": images, "small_regions": small, "skipped": skipped, "bad": bad}


def _describe_data(data: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, SegmentationItem):
        return f"<SegmentationItem {data.image_id!r}>"
    size = f" of {len(data)}" if hasattr(data, "__len__") else ""
    return f"<{type(data).__name__}{size} SegmentationItem>"


def _score_image(scorer: Scorer, item: SegmentationItem, *, threshold: float, seed: int, num_queries: int,
                 query_radius: int, min_area: int, margin: int, queries: str,
                 small: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """One image's entry of :func:`evaluate_segmentation` (``None`` when no region is large enough)."""
    regions: List[Tuple[int, np.ndarray, int]] = []  # (region index, query points, eroded area)
    for r in range(item.masks.shape[0]):
        eroded = eroded_region(item.masks[r], margin, query_radius)
        area = int(eroded.sum())
        if area < min_area:
            small.append({"image_id": item.image_id, "region": _region_name(item, r), "area": area})
            continue
        regions.append((r, draw_queries(eroded, num_queries, query_radius, query_rng(seed, item.image_id, r)),
                        area))
    if not regions:
        return None
    prompts: List[Prompt] = []
    owner: List[int] = []  # index into regions of each prompt
    for i, (_, points, _) in enumerate(regions):
        if queries == "each":
            prompts += [Prompt.of(p[None]) for p in points]
            owner += [i] * len(points)
        else:
            prompts.append(Prompt.of(points))
            owner.append(i)
    scorer.set_image(item.image)
    height, width = item.image.shape[:2]
    # the fixed threshold's IoU is read off the oracle's sweep when it is one of its thresholds (the same strict
    # ``map > t``), else from a sweep of its own
    on_grid = np.flatnonzero(THRESHOLDS == threshold)
    sweeps: List[List[np.ndarray]] = [[] for _ in regions]
    fixed: List[List[float]] = [[] for _ in regions]
    for start in range(0, len(prompts), _BATCH):
        batch = prompts[start:start + _BATCH]
        maps = np.asarray(scorer.similarity_maps(batch))
        if maps.ndim != 3 or maps.shape != (len(batch), height, width):
            raise MatSegInputError(f"returned maps of shape {maps.shape} for {len(batch)} prompts on an image of "
                                   f"size {width}x{height}; expected [P, H, W] = [{len(batch)}, {height}, {width}]")
        for j, sim in enumerate(maps):
            i = owner[start + j]
            mask = item.masks[regions[i][0]]
            sweep = iou_sweep(sim, mask, THRESHOLDS)
            sweeps[i].append(sweep)
            fixed[i].append(float(sweep[on_grid[0]] if on_grid.size else iou_sweep(sim, mask, [threshold])[0]))
    out_regions = []
    stacked = [np.stack(s) for s in sweeps]  # per region: [maps, T]
    for i, (r, points, area) in enumerate(regions):
        ious = stacked[i]
        best = ious.argmax(axis=1)
        out_regions.append({
            "name": _region_name(item, r),
            "oracle": float(ious.max(axis=1).mean()),
            "fixed": float(np.mean(fixed[i])),
            "area": int(item.masks[r].sum()),
            "eroded_area": area,
            "best_thresholds": [float(THRESHOLDS[b]) for b in best],
            "queries": points.tolist(),
        })
    # one threshold for every map of the image: the best of the mean sweep
    per_region_mean = np.stack([ious.mean(axis=0) for ious in stacked])  # [regions, T]
    image_sweep = per_region_mean.mean(axis=0)
    shared = int(image_sweep.argmax())
    return {"oracle": float(np.mean([r["oracle"] for r in out_regions])),
            "fixed": float(np.mean([r["fixed"] for r in out_regions])),
            "best_threshold": float(THRESHOLDS[shared]), "oracle_shared": float(image_sweep[shared]),
            "regions": out_regions}


def format_iou_table(runs: Iterable[Dict[str, Any]]) -> str:
    """A plain-text table of the mean numbers of one or more :func:`evaluate_segmentation` results: the oracle
    (best threshold per query map, labelled as such) and the fixed-threshold IoU, per region and per image."""
    runs = list(runs)
    width = max([5] + [len(str(run["model"])) for run in runs])
    header = (f"{'model':<{width}} {'images':>6} {'regions':>7} {'small':>5} {'oracle/region':>13} {'oracle/image':>12} "
              f"{'threshold':>9} {'fixed/region':>12} {'fixed/image':>11}")
    lines = [header, "-" * len(header)]

    def f(v: Optional[float]) -> str:
        return f"{v:.4f}" if v is not None else "n/a"

    for run in runs:
        m = run["mean"]
        lines.append(f"{str(run['model']):<{width}} {m['num_images']:>6} {m['num_regions']:>7} "
                     f"{m['num_small_regions']:>5} {f(m['oracle_region']):>13} {f(m['oracle_image']):>12} "
                     f"{run['threshold']:>9.2f} {f(m['fixed_region']):>12} {f(m['fixed_image']):>11}")
    return "\n".join(lines)


__all__ = ["evaluate_segmentation", "format_iou_table", "eroded_region", "draw_queries", "query_rng", "resize_item",
           "MARGIN", "NUM_QUERIES", "QUERY_RADIUS", "MIN_AREA", "QUERY_MODES", "THRESHOLDS", "QUERY_STREAM"]
