"""Triplet accuracy, the MatSeg benchmark's score (SPEC §3), vectorised and exact.

The metric asks, for every annotated point (the *anchor*), whether the points that are more similar to it in
the ground truth are also more similar to it in the predicted descriptors. It is computed in two steps:

1. :func:`point_descriptors` (or :func:`label_map_descriptors` for a hard segmentation) turns a descriptor map
   and the point discs into one L2-normalised descriptor per point;
2. :func:`triplet_accuracy` ranks all points by cosine similarity to each anchor and scores the ranking
   against the ground-truth group similarity; :func:`aggregate` averages images into the benchmark score.

Example::

    from matseg_hub.metrics.triplet import point_descriptors, triplet_accuracy, aggregate
    desc = point_descriptors(feature_map, points)          # float [H, W, D], int [N, 3] (x, y, radius)
    result = triplet_accuracy(desc, point_groups, group_similarity, mode="soft")
    result["point_triplet"], result["material_triplet"], result["point_top1"], result["material_top1"]
    score = aggregate([result, ...])                         # benchmark mean over images

Exactness. Everything is computed in float64 (see :func:`point_descriptors`) with the same arithmetic, in the
same order, as a plain per-point / per-anchor loop over the reference algorithm (``bench/_reference_metric.py``,
compared to 1e-12 in ``tests/test_metric.py``; in practice the numbers are bit-identical). The similarity of an
anchor to all points is ``(d[anchor] * d).sum(1)`` exactly as in the authors' ``Evaluate.py`` (not a BLAS
matrix product, whose rounding may differ between equal rows), and the points are ordered with numpy's default
``argsort`` reversed, so exact ties are broken as the reference breaks them. (numpy's default sort kernel is
platform dependent for exact ties; it is the same kernel as the reference's on the same machine.)

Where this module defines what the reference leaves undefined (the reference returns NaN):

* pixels whose descriptor is all zeros stay zero after per-pixel normalisation (``x / max(||x||, 1e-12)``, the
  rule of ``torch.nn.functional.normalize`` that the reference uses);
* a point whose disc sums to the zero vector gets a zero descriptor (similarity 0 to every point, itself
  included); it is logged as a warning and counted in ``num_zero_descriptors``;
* in hard mode, an anchor with no point of another group in the image is skipped (no triplet exists); the
  reference divides 0 by 0 there. Soft mode already skips it.
* an image with no scored anchor returns ``scored=False`` and ``None`` values instead of NaN, and
  :func:`aggregate` leaves it out of the mean and counts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import MatSegInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)

__all__ = [
    "MODES",
    "METRIC_KEYS",
    "PIXEL_NORM_EPS",
    "point_descriptors",
    "label_map_descriptors",
    "discs_outside_map",
    "MAX_POINT_VALUE",
    "triplet_accuracy",
    "TIES",
    "aggregate",
    "score_images",
]

#: The scoring modes (SPEC §3.3-3.4): ``"soft"`` uses the partial group similarities (the reference's published
#: numbers), ``"hard"`` ignores them (same group = 1, else 0), ``"soft_only"`` is soft mode restricted to the
#: compared points whose similarity to the anchor is partial (neither 0 nor 1).
MODES = ("soft", "hard", "soft_only")
#: The four per-image values returned by :func:`triplet_accuracy` and averaged by :func:`aggregate`.
METRIC_KEYS = ("point_triplet", "material_triplet", "point_top1", "material_top1")
#: Lower bound of a pixel's norm in per-pixel normalisation (as in ``torch.nn.functional.normalize``).
PIXEL_NORM_EPS = 1e-12

# Number of float64 elements in the temporary anchors x points x D product of one similarity block.
_SIM_BLOCK_ELEMENTS = 1 << 18
# Number of anchor x point cells handled at once when ranking (bounds memory for very large point sets).
_RANK_BLOCK_CELLS = 1 << 22


# ----------------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------------
def _as_numpy(value: Any, name: str) -> np.ndarray:
    """numpy view of an array-like (torch tensors on any device are copied to the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            value = value.float()
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise MatSegInputError(f"{name} must be an array (numpy array, nested lists or tensor); got "
                               f"{type(value).__name__}: {exc}") from exc
    if arr.dtype == object:
        raise MatSegInputError(f"{name} must be a numeric array with a regular shape; got an object array of shape "
                               f"{arr.shape} (ragged nested lists?)")
    return arr


def _check_numeric(arr: np.ndarray, name: str) -> None:
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise MatSegInputError(f"{name} must hold real numbers; got dtype {arr.dtype}")


def _check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if a float array holds NaN or inf (one fast sum; an element-wise search only when it is not finite)."""
    if not np.issubdtype(arr.dtype, np.floating) or arr.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    if np.isfinite(total):
        return
    bad = ~np.isfinite(arr)
    if not bad.any():  # finite values whose sum overflows
        return
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise MatSegInputError(f"{name} holds {int(bad.sum())} NaN/inf value(s), the first at index {where}; "
                           f"fix the model output (or replace them, e.g. numpy.nan_to_num) before scoring")


#: The largest absolute value of a point's x, y or radius (in map pixels): 2**20, far beyond any photo, and small
#: enough for OpenCV's 32-bit drawing to draw the disc quickly.
MAX_POINT_VALUE = 1 << 20


def _check_points(points: Any) -> np.ndarray:
    """Validate points and return them as int64 [N, 3] (x, y, radius). (Whether each disc reaches the map is
    checked where it is drawn, :func:`_disc_in_map`.)"""
    pts = _as_numpy(points, "points")
    _check_numeric(pts, "points")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise MatSegInputError(f"points must have shape [N, 3] (x, y, radius); got shape {pts.shape}")
    if pts.shape[0] == 0:
        raise MatSegInputError("points is empty: an image needs at least one annotated point to be scored")
    if np.issubdtype(pts.dtype, np.floating):
        if not np.isfinite(pts).all():
            i = int(np.argwhere(~np.isfinite(pts))[0, 0])
            raise MatSegInputError(f"points[{i}] = {pts[i].tolist()} is not finite")
        pts = np.round(pts)  # half to even, as the benchmark's evaluation resizing (SPEC §2)
    big = np.flatnonzero((np.abs(pts) > MAX_POINT_VALUE).any(1))
    if big.size:
        i = int(big[0])
        raise MatSegInputError(f"points[{i}] = {pts[i].tolist()} has a value beyond +-{MAX_POINT_VALUE} pixels "
                               f"(MAX_POINT_VALUE); points must be (x, y, radius) in the map's pixels")
    pts = pts.astype(np.int64)
    bad = np.flatnonzero(pts[:, 2] < 0)
    if bad.size:
        i = int(bad[0])
        raise MatSegInputError(f"points[{i}] = {pts[i].tolist()} has a negative radius")
    return pts


def _disc(pts_row: np.ndarray, height: int, width: int) -> Tuple[int, int, int, int, np.ndarray]:
    """The disc ``cv2.circle(mask, (x, y), r, 1, thickness=-1)`` draws, cropped to its box inside the map.

    Returns ``(y0, y1, x0, x1, mask)`` with ``mask`` uint8 [y1 - y0, x1 - x0]. ``cv2.circle`` is translation
    invariant and clips exactly, so drawing in the box equals cropping a full-size mask (checked in the tests),
    also for a disc whose centre lies outside the map. A disc that misses the map has an empty or all-zero mask.
    """
    import cv2

    x, y, r = (int(v) for v in pts_row)
    x0, y0 = min(max(0, x - r), width), min(max(0, y - r), height)
    x1, y1 = max(min(width, x + r + 1), x0), max(min(height, y + r + 1), y0)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    if mask.size:
        cv2.circle(mask, (x - x0, y - y0), r, 1, thickness=-1)
    return y0, y1, x0, x1, mask


def _disc_in_map(pts: np.ndarray, i: int, height: int, width: int) -> Tuple[int, int, int, int, np.ndarray]:
    """:func:`_disc` of ``pts[i]``; raise when the disc has no pixel inside the map."""
    box = _disc(pts[i], height, width)
    if not box[4].any():
        raise MatSegInputError(
            f"points[{i}] = {pts[i].tolist()} (x, y, radius): its disc has no pixel inside the {width}x{height} "
            f"(W x H) map; points must be in the map's pixels: rescale them to the map, e.g. with "
            f"matseg_hub.benchmark.format.resize_for_evaluation, or upsample the map to the image first")
    return box


def discs_outside_map(points: Any, height: int, width: int) -> np.ndarray:
    """Indices (int64 [k]) of the points whose disc has no pixel inside an ``height x width`` map.

    A disc is drawn like ``cv2.circle`` draws it (clipped at the border), so a point just outside the map, e.g. on
    a photo's last column rounded to ``x = W`` at evaluation size, still has the pixels of its disc inside.
    """
    pts = _check_points(points)
    return np.array([i for i in range(len(pts)) if not _disc(pts[i], height, width)[4].any()], dtype=np.int64)


def _normalise_rows(desc: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """L2-normalise float64 rows in place; rows of norm 0 stay 0. Returns (desc, zero_row_mask)."""
    norm = np.sqrt((desc * desc).sum(1))
    zero = norm == 0
    desc[~zero] /= norm[~zero, None]
    return desc, zero


def _warn_zero(zero: np.ndarray) -> None:
    if zero.any():
        idx = np.flatnonzero(zero)
        logger.warning("%d point(s) have a disc whose descriptors sum to zero (points %s%s); they get a zero "
                       "descriptor (similarity 0 to every point)", idx.size, idx[:10].tolist(),
                       ", ..." if idx.size > 10 else "")


# ----------------------------------------------------------------------------------------------------------------
# point descriptors
# ----------------------------------------------------------------------------------------------------------------
def point_descriptors(feature_map: Any, points: Any) -> np.ndarray:
    """One L2-normalised descriptor per point disc (SPEC §3.1).

    Each pixel's descriptor is L2-normalised (``x / max(||x||, 1e-12)``, so all-zero pixels stay zero), the
    normalised descriptors are summed inside the point's filled disc exactly as
    ``cv2.circle(mask, (x, y), radius, 1, thickness=-1)`` draws it (clipped to the map), and the sum is
    L2-normalised. Only the pixels of the discs are read: each disc is drawn once in its own small box, no
    full-size mask and no normalised copy of the whole map is made.

    All arithmetic is float64 whatever the map's dtype (a float32 map is upcast exactly), in the order of the
    reference loop (``(mask * normalised_map).sum(0).sum(0)``), which makes the result equal to the float64 loop
    reference to the last bit. (The authors' ``Evaluate.py`` works in float32 on the GPU, whose summation order
    cannot be reproduced; float64 keeps ties between identical discs exact and near-ties stable.)

    Args:
        feature_map: float (or integer, e.g. an 8-bit image) [H, W, D] descriptor map at the resolution the
            points are given in; numpy array or torch tensor. A 2-D *integer* map is a label map and is
            scored as one-hot descriptors (:func:`label_map_descriptors`).
        points: int or float [N, 3] ``(x, y, radius)`` in the map's pixels; floats are rounded half to even.
            Discs are clipped at the map's border like ``cv2.circle`` clips them, so a centre may lie outside
            the map as long as its disc has a pixel inside; |x|, |y|, radius <= :data:`MAX_POINT_VALUE`.

    Returns:
        float64 [N, D] (or [N, K] for a label map), rows L2-normalised. A point whose disc sums to the zero vector
        gets a zero row (logged as a warning; :func:`triplet_accuracy` counts them in ``num_zero_descriptors``).

    Raises:
        MatSegInputError: map of the wrong rank or dtype, NaN/inf in the map, empty or malformed points, a point
            whose disc has no pixel inside the map, a negative radius or a value beyond :data:`MAX_POINT_VALUE`.
    """
    fmap = _as_numpy(feature_map, "feature_map")
    _check_numeric(fmap, "feature_map")
    if fmap.ndim == 2:
        if np.issubdtype(fmap.dtype, np.integer) or fmap.dtype == bool:
            return label_map_descriptors(fmap, points)
        raise MatSegInputError(f"feature_map must be [H, W, D]; got a 2-D float array of shape {fmap.shape}: pass "
                               f"feature_map[..., None] for a single-channel map, or an integer label map")
    if fmap.ndim != 3:
        raise MatSegInputError(f"feature_map must be [H, W, D] (channels last); got shape {fmap.shape}. A model's "
                               f"[D, H, W] output must be transposed (e.g. fmap.permute(1, 2, 0))")
    height, width, depth = fmap.shape
    if height == 0 or width == 0 or depth == 0:
        raise MatSegInputError(f"feature_map is empty (shape {fmap.shape})")
    pts = _check_points(points)
    _check_finite(fmap, "feature_map")

    desc = np.empty((pts.shape[0], depth), dtype=np.float64)
    for i in range(pts.shape[0]):
        y0, y1, x0, x1, mask = _disc_in_map(pts, i, height, width)
        patch = fmap[y0:y1, x0:x1].astype(np.float64)
        norm = np.sqrt((patch * patch).sum(2))
        np.maximum(norm, PIXEL_NORM_EPS, out=norm)
        norm[mask == 0] = np.inf  # x / inf = 0: the pixel is outside the disc (saves multiplying by the mask)
        patch /= norm[:, :, None]
        desc[i] = patch.sum(0).sum(0)
    desc, zero = _normalise_rows(desc)
    _warn_zero(zero)
    return desc


def label_map_descriptors(label_map: Any, points: Any, labels: Optional[Sequence[int]] = None) -> np.ndarray:
    """Point descriptors of a hard segmentation: the label histogram of each disc, L2-normalised (SPEC §3.1).

    Equal to :func:`point_descriptors` of the one-hot map (one channel per label), without building it.

    Args:
        label_map: integer (or bool) [H, W] segment id per pixel.
        points: int or float [N, 3] ``(x, y, radius)`` in the map's pixels (see :func:`point_descriptors`).
        labels: the label of each output column; default: the sorted distinct labels of ``label_map``. Labels
            that occur in no disc only add zero columns, which change no similarity.

    Returns:
        float64 [N, K], rows L2-normalised (never zero: every disc must hold a pixel of the map).
    """
    lab = _as_numpy(label_map, "label_map")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise MatSegInputError(f"label_map must hold integer segment ids; got dtype {lab.dtype} (round or cast "
                               f"it, or pass a float [H, W, D] map to point_descriptors)")
    if lab.ndim != 2 or lab.size == 0:
        raise MatSegInputError(f"label_map must be a non-empty [H, W] array; got shape {lab.shape}")
    height, width = lab.shape
    pts = _check_points(points)
    if labels is None:
        column_labels = np.unique(lab)
    else:
        column_labels = np.asarray(labels)
        if column_labels.ndim != 1 or np.unique(column_labels).size != column_labels.size:
            raise MatSegInputError("labels must be a 1-D sequence of distinct label values")
        order = np.argsort(column_labels, kind="stable")
        column_labels_sorted = column_labels[order]
    desc = np.zeros((pts.shape[0], column_labels.size), dtype=np.float64)
    for i in range(pts.shape[0]):
        y0, y1, x0, x1, mask = _disc_in_map(pts, i, height, width)
        values, counts = np.unique(lab[y0:y1, x0:x1][mask.astype(bool)], return_counts=True)
        if labels is None:
            cols = np.searchsorted(column_labels, values)
        else:
            pos = np.searchsorted(column_labels_sorted, values).clip(0, column_labels.size - 1)
            missing = column_labels_sorted[pos] != values
            if missing.any():
                raise MatSegInputError(f"label {values[missing][0]!r} of label_map (in the disc of points[{i}]) "
                                       f"is not in labels")
            cols = order[pos]
        desc[i, cols] = counts
    desc, _ = _normalise_rows(desc)
    return desc


# ----------------------------------------------------------------------------------------------------------------
# group similarity
# ----------------------------------------------------------------------------------------------------------------
def _group_index(point_groups: Any, n: int) -> Tuple[np.ndarray, List[Hashable]]:
    """int64 [N] index of each point's group, and the groups in order of first appearance."""
    if hasattr(point_groups, "detach") and hasattr(point_groups, "cpu"):
        point_groups = point_groups.detach().cpu().numpy()
    if isinstance(point_groups, np.ndarray):
        if point_groups.ndim != 1:
            raise MatSegInputError(f"point_groups must be 1-D (one group id per point); got shape {point_groups.shape}")
        items = point_groups.tolist()
    else:
        try:
            items = list(point_groups)
        except TypeError as exc:
            raise MatSegInputError(f"point_groups must be a sequence of group ids; got {type(point_groups).__name__}"
                                   ) from exc
    if len(items) != n:
        raise MatSegInputError(f"point_groups has {len(items)} entries but descriptors has {n} rows: give one group "
                               f"id per point, in the order of the descriptors")
    index: Dict[Hashable, int] = {}
    gid = np.empty(n, dtype=np.int64)
    for i, g in enumerate(items):
        if isinstance(g, np.generic):
            g = g.item()
        try:
            gid[i] = index.setdefault(g, len(index))
        except TypeError as exc:
            raise MatSegInputError(f"point_groups[{i}] = {g!r} is not a valid group id (use str or int)") from exc
    return gid, list(index)


def _unknown(group: Any, groups: List[Hashable]) -> MatSegInputError:
    shown = ", ".join(repr(g) for g in groups[:20]) + (", ..." if len(groups) > 20 else "")
    return MatSegInputError(f"group_similarity names group {group!r}, which has no point (groups with points: "
                            f"{shown}); remove it, or check that group ids have the same type (e.g. '1' vs 1)")


def _similarity_matrix(group_similarity: Any, group_ids: Optional[Sequence[Hashable]],
                       groups: List[Hashable]) -> np.ndarray:
    """float64 [G, G] similarity between the groups in ``groups`` order (identity when None)."""
    n_groups = len(groups)
    pos = {g: i for i, g in enumerate(groups)}
    if group_similarity is None:
        return np.eye(n_groups)

    if isinstance(group_similarity, Mapping) and set(group_similarity) == {"group_ids", "matrix"}:
        if group_ids is not None:
            raise MatSegInputError("group_ids given twice: in group_similarity['group_ids'] and as an argument")
        return _similarity_matrix(group_similarity["matrix"], group_similarity["group_ids"], groups)

    if isinstance(group_similarity, Mapping):
        if group_ids is not None:
            raise MatSegInputError("group_ids is only used with a dense group_similarity matrix, not with a dict")
        sim = np.eye(n_groups)
        given = np.zeros((n_groups, n_groups), dtype=bool)
        for g, row in group_similarity.items():
            if g not in pos:
                raise _unknown(g, groups)
            if not isinstance(row, Mapping):
                raise MatSegInputError(f"group_similarity[{g!r}] must be a dict group -> similarity; got "
                                       f"{type(row).__name__}")
            for g2, w in row.items():
                if g2 not in pos:
                    raise _unknown(g2, groups)
                try:
                    w = float(w)
                except (TypeError, ValueError) as exc:
                    raise MatSegInputError(f"group_similarity[{g!r}][{g2!r}] = {w!r} is not a number") from exc
                if not 0.0 <= w <= 1.0:
                    raise MatSegInputError(f"group_similarity[{g!r}][{g2!r}] = {w} must be in [0, 1]")
                i, j = pos[g], pos[g2]
                if i == j:
                    if w != 1.0:
                        raise MatSegInputError(f"group_similarity[{g!r}][{g!r}] = {w}: a group's similarity to "
                                               f"itself is 1")
                    continue
                for a, b in ((i, j), (j, i)):
                    if given[a, b] and sim[a, b] != w:
                        raise MatSegInputError(f"group_similarity gives groups {g!r} and {g2!r} two different "
                                               f"similarities ({sim[a, b]} and {w}); it must be symmetric")
                    sim[a, b] = w
                    given[a, b] = True
        return sim

    mat = _as_numpy(group_similarity, "group_similarity")
    _check_numeric(mat, "group_similarity")
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise MatSegInputError(f"group_similarity must be a square [G, G] matrix (or a dict); got shape {mat.shape}")
    mat = mat.astype(np.float64)
    if not np.isfinite(mat).all() or (mat < 0).any() or (mat > 1).any():
        raise MatSegInputError("group_similarity values must be finite and in [0, 1]")
    if not (np.diag(mat) == 1).all():
        raise MatSegInputError("group_similarity must have 1 on its diagonal (a group's similarity to itself)")
    if not (mat == mat.T).all():
        i, j = np.argwhere(mat != mat.T)[0]
        raise MatSegInputError(f"group_similarity must be symmetric; entries [{i}, {j}] = {mat[i, j]} and "
                               f"[{j}, {i}] = {mat[j, i]} differ")
    if group_ids is None:
        # point_groups are row indices into the matrix
        ids: List[Hashable] = list(range(mat.shape[0]))
        bad = [g for g in groups if not (isinstance(g, (int, np.integer)) and not isinstance(g, bool)
                                         and 0 <= g < mat.shape[0])]
        if bad:
            raise MatSegInputError(f"point group {bad[0]!r} is not a row index of the {mat.shape[0]}x{mat.shape[0]} "
                                   f"group_similarity matrix: pass group_ids (the group id of each matrix row), or "
                                   f"give point_groups as row indices")
    else:
        ids = [g.item() if isinstance(g, np.generic) else g for g in (
            group_ids.tolist() if isinstance(group_ids, np.ndarray) else list(group_ids))]
        if len(ids) != mat.shape[0]:
            raise MatSegInputError(f"group_ids has {len(ids)} entries but group_similarity is "
                                   f"{mat.shape[0]}x{mat.shape[0]}: give the group id of each matrix row")
        if len(set(ids)) != len(ids):
            raise MatSegInputError(f"group_ids has repeated ids: {ids}")
        missing = [g for g in groups if g not in set(ids)]
        if missing:
            raise MatSegInputError(f"point group {missing[0]!r} is not in group_ids {ids[:20]}: every point's group "
                                   f"needs a row of group_similarity (check id types, e.g. '1' vs 1)")
    for g in ids:
        if g not in pos:
            raise _unknown(g, groups)
    take = np.array([ids.index(g) for g in groups], dtype=np.int64)
    return mat[np.ix_(take, take)]


# ----------------------------------------------------------------------------------------------------------------
# triplet accuracy
# ----------------------------------------------------------------------------------------------------------------
def _similarities(desc: np.ndarray, rows: slice) -> np.ndarray:
    """Cosine similarities [rows, N] as the reference computes them: ``(desc[p] * desc).sum(1)`` per anchor."""
    n, depth = desc.shape
    start, stop = rows.start, rows.stop
    out = np.empty((stop - start, n), dtype=desc.dtype)
    step = max(1, _SIM_BLOCK_ELEMENTS // max(1, n * depth))
    for a in range(start, stop, step):
        b = min(stop, a + step)
        out[a - start:b - start] = (desc[a:b, None, :] * desc[None, :, :]).sum(2)
    return out


def _row_means(values: np.ndarray, valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean of ``values[p][valid[p]]`` per row, summed like ``numpy.mean`` of the compacted row; and the counts."""
    counts = valid.sum(1)
    means = np.zeros(values.shape[0], dtype=np.float64)
    if values.shape[1] and valid.all():
        return values.sum(1) / values.shape[1], counts
    for p in np.flatnonzero(counts):
        means[p] = values[p][valid[p]].mean()
    return means, counts


def _score_block_hard(same: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard mode for a block of anchors. same: bool [B, N] ordered same-group flags. Returns acc, top1, scored."""
    wrong = np.cumsum(~same, axis=1)
    n_same = same[:, 1:].sum(1)
    scored = (n_same > 0) & (wrong[:, -1] > 0)
    acc = np.zeros(same.shape[0], dtype=np.float64)
    rows = np.flatnonzero(scored)
    if rows.size:
        w = wrong[rows]
        s = same[rows, 1:]
        acc[rows] = ((1 - (w[:, 1:] / w[:, -1:])) * s).sum(1) / n_same[rows]
    return acc, same[:, 1].copy(), scored


def _score_block_soft(rank: np.ndarray, n_levels: int, skip_level: Optional[np.ndarray]
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft mode for a block of anchors.

    rank: int [B, N] rank (0 = least similar) of the ground-truth similarity to the anchor of each ordered point.
    skip_level: bool [n_levels], True for similarity levels not scored as ``q`` (soft-only mode), or None.
    """
    n_anchor, n = rank.shape
    pos = np.arange(n, dtype=np.int64)[None, :]
    errors = np.zeros((n_anchor, n), dtype=np.int64)
    possible = np.zeros((n_anchor, n), dtype=np.int64)
    lt_before = np.zeros((n_anchor, n), dtype=np.int64)  # #{i < q: rank[i] < level}, running over levels
    le_total = np.zeros((n_anchor, 1), dtype=np.int64)  # #{i: rank[i] <= level}
    for level in range(n_levels):
        eq = rank == level
        eq_incl = np.cumsum(eq, axis=1)
        eq_before = eq_incl - eq
        eq_total = eq_incl[:, -1:]
        le_total += eq_total
        # errors(q) = #{i < q: w[i] < w[q]} + #{i >= q: w[i] > w[q]}
        gt_before = pos - lt_before - eq_before
        err = lt_before + (n - le_total) - gt_before
        # possible(q) = #{i >= 1: w[i] != w[q]}
        poss = (n - 1) - (eq_total - eq[:, :1])
        np.copyto(errors, err, where=eq)
        np.copyto(possible, poss, where=eq)
        lt_before += eq_before
    valid = possible > 0
    valid[:, 0] = False
    if skip_level is not None:
        valid &= ~skip_level[rank]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 1 - errors / possible
    acc, counts = _row_means(values[:, 1:], valid[:, 1:])
    scored = counts > 0
    top1 = rank[:, 1] >= rank[:, 1:].max(1)
    return acc, top1, scored


#: How equal similarities are ranked (see :func:`triplet_accuracy`).
TIES = ("first", "average")


class _Truth:
    """One image's ground truth as the ranking scorers use it: point groups, similarity levels, the mode."""

    def __init__(self, gid: np.ndarray, groups: List[Hashable], group_similarity: Any,
                 group_ids: Optional[Sequence[Hashable]], mode: str):
        if mode == "hard":
            if group_similarity is not None:  # still validated, so that a wrong call fails the same way in every mode
                _similarity_matrix(group_similarity, group_ids, groups)
            sim = np.eye(len(groups))
        else:
            sim = _similarity_matrix(group_similarity, group_ids, groups)
        sim32 = sim.astype(np.float32)  # the reference stores the weights in a float32 array
        self.levels, level_of = np.unique(sim32, return_inverse=True)
        self.level_of = level_of.reshape(sim32.shape)
        self.skip_level = np.isin(self.levels, np.array([0, 1], dtype=np.float32)) if mode == "soft_only" else None
        self.gid = gid
        self.mode = mode

    def score_ordered(self, anchors: np.ndarray, order: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Anchors int [B] and, per anchor, the point indices int [B, M] in descending similarity (position 0 taken
        as the anchor). Returns per-anchor accuracy, top-1 and scored flags."""
        sorted_groups = self.gid[order]
        if self.mode == "hard":
            return _score_block_hard(sorted_groups == self.gid[anchors, None])
        return _score_block_soft(self.level_of[self.gid[anchors, None], sorted_groups], self.levels.size,
                                 self.skip_level)

    def score_average(self, anchor: int, others: np.ndarray, sim: np.ndarray) -> Tuple[float, float, bool]:
        """``ties="average"`` for one anchor: ``others`` int [M] the ranked points (not the anchor), ``sim`` [M]
        their similarities. Pairwise: a wrongly ordered pair counts 1, a tied pair of different truth 1/2."""
        if others.size == 0:
            return 0.0, 0.0, False
        best = sim == sim.max()
        si, sq = sim[:, None], sim[None, :]  # rows: the other point i, columns: the scored position q
        if self.mode == "hard":
            same = self.gid[others] == self.gid[anchor]
            top = float(same[best].mean())
            n_other = int((~same).sum())
            if not same.any() or n_other == 0:
                return 0.0, top, False
            ahead = (si > sq) + 0.5 * (si == sq)  # [M, M]: i counted before q
            wrong = ahead[~same][:, same].sum(0)
            return float(np.mean(1 - wrong / n_other)), top, True
        w = self.level_of[self.gid[anchor], self.gid[others]]
        top = float((w[best] >= w.max()).mean())
        wi, wq = w[:, None], w[None, :]
        errors = (((wi < wq) & (si > sq)) | ((wi > wq) & (si < sq))).sum(0) + 0.5 * ((wi != wq) & (si == sq)).sum(0)
        possible = (wi != wq).sum(0)
        valid = possible > 0
        if self.skip_level is not None:
            valid &= ~self.skip_level[w]
        if not valid.any():
            return 0.0, top, False
        return float(np.mean(1 - errors[valid] / possible[valid])), top, True


def _triplet_accuracy_rows(descriptors: Any, similarities: Any, exclude: Any, point_groups: Any,
                           group_similarity: Any, *, group_ids: Optional[Sequence[Hashable]], mode: str,
                           ties: str) -> Dict[str, Any]:
    """:func:`triplet_accuracy` of per-anchor similarity rows (promptable models)."""
    if descriptors is not None:
        raise MatSegInputError("give descriptors or similarities, not both (descriptors=None with similarities)")
    if similarities is None:
        raise MatSegInputError("exclude is only used with similarities (per-anchor similarity rows)")
    sim = _as_numpy(similarities, "similarities")
    _check_numeric(sim, "similarities")
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] == 0:
        raise MatSegInputError(f"similarities must be a square [N, N] array (row a: every point's similarity to "
                               f"anchor a's query); got shape {sim.shape}")
    n = sim.shape[0]
    if sim.dtype not in (np.float32, np.float64):
        sim = sim.astype(np.float64)
    left = np.isnan(sim)
    if np.isinf(sim).any():
        where = tuple(int(i) for i in np.argwhere(np.isinf(sim))[0])
        raise MatSegInputError(f"similarities hold inf at index {where}; use finite values (NaN = left out)")
    if exclude is not None:
        ex = _as_numpy(exclude, "exclude")
        if ex.shape != sim.shape:
            raise MatSegInputError(f"exclude must have the shape of similarities {sim.shape}; got {ex.shape}")
        left = left | ex.astype(bool)
    np.fill_diagonal(left, False)
    gid, groups = _group_index(point_groups, n)
    truth = _Truth(gid, groups, group_similarity, group_ids, mode)
    acc = np.zeros(n, dtype=np.float64)
    top1 = np.zeros(n, dtype=np.float64)
    scored = np.zeros(n, dtype=bool)
    for a in range(n):
        keep = ~left[a]
        keep[a] = False
        others = np.flatnonzero(keep)
        if others.size == 0:
            continue
        row = sim[a, others]
        if ties == "first":
            order = np.concatenate([[a], others[np.argsort(row)[::-1]]])[None]
            block = truth.score_ordered(np.array([a]), order)
            acc[a], top1[a], scored[a] = block[0][0], block[1][0], block[2][0]
        else:
            acc[a], top1[a], scored[a] = truth.score_average(a, others, row)
    return _image_result(acc, top1, scored, gid, groups, mode, n, 0)


def triplet_accuracy(descriptors: Any, point_groups: Any, group_similarity: Any = None, *,
                     group_ids: Optional[Sequence[Hashable]] = None, mode: str = "soft",
                     normalize: bool = False, similarities: Any = None, exclude: Any = None,
                     ties: str = "first") -> Dict[str, Any]:
    """Triplet and top-1 accuracy of one image's point descriptors (SPEC §3.2-3.5).

    For each anchor point, all points (itself included) are ordered by descending cosine similarity to it
    (``numpy.argsort(s)[::-1]``; position 0 is taken as the anchor) and the order is scored against the
    ground-truth similarity ``w`` of each point's group to the anchor's group:

    * ``mode="soft"`` (the reference's published numbers): for each position ``q >= 1``,
      ``1 - errors/possible`` with errors ``#{i < q: w[i] < w[q]} + #{i >= q: w[i] > w[q]}`` and possible
      ``#{i >= 1: w[i] != w[q]}`` (``q`` skipped when 0); the anchor's value is the mean over ``q``, top-1 is
      ``w[1] >= max(w[1:])``. Anchors with no counted ``q`` are skipped.
    * ``mode="hard"``: relations ignored (same group 1, else 0); with ``wrong = cumsum(~same)``,
      ``sum((1 - wrong[1:]/wrong[-1]) * same[1:]) / sum(same[1:])``; top-1 is ``same[1]``. Anchors with
      ``sum(same[1:]) == 0`` (a group with no other point) or no point of another group are skipped.
    * ``mode="soft_only"``: soft mode counting only positions whose ``w[q]`` is neither 0 nor 1.

    Per image: ``point_*`` is the mean over scored anchors, ``material_*`` the mean over groups (in order of
    their first scored anchor) of the mean over their scored anchors. With no relations, soft and hard modes
    give the same numbers.

    Promptable models (SAM, Materialistic) have no descriptors: they give, per anchor, a similarity of every
    point to the anchor's prompt. Pass those as ``similarities`` [N, N] (row ``a`` = anchor ``a``) with
    ``descriptors=None``; the anchor is then always placed first, and points marked in ``exclude`` (or NaN in
    ``similarities``) are left out of that anchor's ranking (the anchor's other prompt points).

    Ties. ``ties="first"`` (default) orders equal similarities as the reference does (``numpy.argsort`` reversed:
    the order numpy's sort leaves them in, not a principled rule, but the published numbers' rule).
    ``ties="average"`` scores the expectation over all orders of tied points: a pair of points with equal
    similarity and different ground truth counts as half an error, and top-1 is the fraction of the points tied
    for the best similarity that are a right answer. It is the fair rule for hard segmentations (a label map
    gives every point of a segment the same similarity); without exact ties both rules give the same numbers.

    Args:
        descriptors: float [N, D] point descriptors, rows L2-normalised (zero rows allowed), e.g. from
            :func:`point_descriptors`. float32 and float64 are kept as given (the similarities are computed in
            that dtype, as the reference does with its float32 descriptors); other dtypes become float64.
        point_groups: [N] group id (str or int) of each point.
        group_similarity: ground-truth similarity between groups (values in [0, 1], 1 on the diagonal,
            symmetric), one of: ``None`` (no relations: identity); a dict ``{group: {other_group: weight}}``
            (missing pairs 0, a pair given one way applies both ways); a dense float [G, G] matrix whose rows
            are ``group_ids`` (or, when ``group_ids`` is None, whose row indices are the ``point_groups``); or
            a dict ``{"group_ids": [...], "matrix": [[...]]}`` as a benchmark row stores it. Every group named
            must have at least one point. Weights are compared as float32, like the reference.
        group_ids: the group id of each row of a dense ``group_similarity``.
        mode: ``"soft"``, ``"hard"`` or ``"soft_only"``.
        normalize: L2-normalise the descriptor rows (in float64) first. Without it, rows whose norm is not 1
            (within 1e-3; 1e-2 for float16) are an error, since the dot product would not be the cosine similarity.
        similarities: instead of ``descriptors``: float [N, N], ``similarities[a, j]`` = similarity of point ``j``
            to anchor ``a``'s query (any real scale, higher = more similar; the diagonal is ignored; NaN = left out).
        exclude: optional bool [N, N]: ``exclude[a, j]`` leaves point ``j`` out of anchor ``a``'s ranking (the
            diagonal is ignored). Only with ``similarities``.
        ties: ``"first"`` or ``"average"`` (see above).

    Returns:
        dict with ``point_triplet``, ``material_triplet``, ``point_top1``, ``material_top1`` (float, or None when
        no anchor is scored), ``scored`` (bool), ``mode``, ``num_points``, ``num_groups``, ``num_anchors``
        (scored anchors), ``num_scored_groups`` and ``num_zero_descriptors``.

    Raises:
        MatSegInputError: descriptors not [N, D], empty, NaN/inf, not normalised; point_groups of another length;
            an unknown mode; a malformed similarity, or one naming a group with no point.
    """
    if mode not in MODES:
        raise MatSegInputError(f"mode must be one of {MODES}; got {mode!r}")
    if ties not in TIES:
        raise MatSegInputError(f"ties must be one of {TIES}; got {ties!r}")
    if similarities is not None or exclude is not None:
        return _triplet_accuracy_rows(descriptors, similarities, exclude, point_groups, group_similarity,
                                      group_ids=group_ids, mode=mode, ties=ties)
    desc = _as_numpy(descriptors, "descriptors")
    _check_numeric(desc, "descriptors")
    if desc.ndim != 2:
        raise MatSegInputError(f"descriptors must be [N, D] (one row per point); got shape {desc.shape}")
    n, depth = desc.shape
    if n == 0:
        raise MatSegInputError("descriptors is empty: an image needs at least one annotated point to be scored")
    if depth == 0:
        raise MatSegInputError(f"descriptors have no columns (shape {desc.shape})")
    # rows count as unit vectors within the precision they were given in
    norm_tol = 1e-3 if desc.dtype.itemsize >= 4 or not np.issubdtype(desc.dtype, np.floating) else 1e-2
    if desc.dtype not in (np.float32, np.float64):
        desc = desc.astype(np.float64)
    _check_finite(desc, "descriptors")
    if normalize:
        desc, _ = _normalise_rows(desc.astype(np.float64, copy=True))
    norms = np.sqrt((desc.astype(np.float64) ** 2).sum(1))
    zero = norms == 0
    off = np.flatnonzero(~zero & (np.abs(norms - 1) > norm_tol))
    if off.size:
        i = int(off[0])
        raise MatSegInputError(f"descriptors[{i}] has L2 norm {norms[i]:.6g}; rows must be L2-normalised "
                               f"({off.size} row(s) are not): normalise them, or pass normalize=True")
    gid, groups = _group_index(point_groups, n)
    truth = _Truth(gid, groups, group_similarity, group_ids, mode)
    acc = np.zeros(n, dtype=np.float64)
    top1 = np.zeros(n, dtype=np.float64)
    scored = np.zeros(n, dtype=bool)
    if n > 1 and ties == "first":
        step = max(1, _RANK_BLOCK_CELLS // n)
        for a in range(0, n, step):
            b = min(n, a + step)
            order = np.argsort(_similarities(desc, slice(a, b)), axis=1)[:, ::-1]
            acc[a:b], top1[a:b], scored[a:b] = truth.score_ordered(np.arange(a, b), order)
    elif n > 1:
        for a in range(n):
            others = np.flatnonzero(np.arange(n) != a)
            row = _similarities(desc, slice(a, a + 1))[0]
            acc[a], top1[a], scored[a] = truth.score_average(a, others, row[others])
    return _image_result(acc, top1, scored, gid, groups, mode, n, int(zero.sum()))


def _image_result(acc: np.ndarray, top1: np.ndarray, scored: np.ndarray, gid: np.ndarray, groups: List[Hashable],
                  mode: str, n: int, num_zero: int) -> Dict[str, Any]:
    """Per-image means (point and material) of per-anchor values."""
    result: Dict[str, Any] = {
        "scored": bool(scored.any()),
        "mode": mode,
        "num_points": int(n),
        "num_groups": len(groups),
        "num_anchors": int(scored.sum()),
        "num_scored_groups": 0,
        "num_zero_descriptors": num_zero,
    }
    if not result["scored"]:
        result.update({key: None for key in METRIC_KEYS})
        return result
    anchors = np.flatnonzero(scored)
    group_order = list(dict.fromkeys(gid[anchors].tolist()))
    per_group_acc = [np.mean(acc[anchors[gid[anchors] == g]]) for g in group_order]
    per_group_top1 = [np.mean(top1[anchors[gid[anchors] == g]]) for g in group_order]
    result.update({
        "point_triplet": float(np.mean(acc[anchors])),
        "material_triplet": float(np.mean(per_group_acc)),
        "point_top1": float(np.mean(top1[anchors])),
        "material_top1": float(np.mean(per_group_top1)),
        "num_scored_groups": len(group_order),
    })
    return result


def aggregate(results: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Benchmark score: the mean of the per-image values of :func:`triplet_accuracy` (SPEC §3.5).

    Images with no scored anchor (``scored=False``) are left out of the means and counted.

    Args:
        results: per-image dicts returned by :func:`triplet_accuracy` (all in the same mode).

    Returns:
        dict with the four means (None when no image is scored), ``mode``, ``num_images``,
        ``num_scored_images``, ``num_skipped_images`` and ``num_anchors`` (total scored anchors).
    """
    results = list(results)
    if not results:
        raise MatSegInputError("aggregate needs at least one per-image result")
    modes = {r.get("mode") for r in results}
    if len(modes) > 1:
        raise MatSegInputError(f"aggregate got results of different modes {sorted(map(str, modes))}; average one "
                               f"mode at a time")
    for i, r in enumerate(results):
        if "scored" not in r or any(k not in r for k in METRIC_KEYS):
            raise MatSegInputError(f"results[{i}] is not a triplet_accuracy result (missing keys)")
    scored = [r for r in results if r["scored"]]
    out: Dict[str, Any] = {
        "mode": modes.pop(),
        "num_images": len(results),
        "num_scored_images": len(scored),
        "num_skipped_images": len(results) - len(scored),
        "num_anchors": int(sum(r.get("num_anchors", 0) for r in scored)),
    }
    for key in METRIC_KEYS:
        values = [float(r[key]) for r in scored]
        if any(not math.isfinite(v) for v in values):
            raise MatSegInputError(f"a scored result has a non-finite {key}")
        out[key] = float(np.mean(values)) if values else None
    return out


def score_images(descriptors: Sequence[Any], point_groups: Sequence[Any],
                 group_similarity: Optional[Sequence[Any]] = None, *, group_ids: Optional[Sequence[Any]] = None,
                 mode: str = "soft", normalize: bool = False, similarities: bool = False,
                 ties: str = "first") -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Score a list of images: :func:`triplet_accuracy` per image, then :func:`aggregate`.

    This is what the ``evaluate`` module ``triplet_accuracy`` computes. Errors name the image (its index).

    Args:
        descriptors: per image, float [N_i, D] point descriptors (rows L2-normalised unless ``normalize``).
        point_groups: per image, [N_i] group id of each point.
        group_similarity: None (no relations anywhere) or, per image, anything :func:`triplet_accuracy` accepts
            (None, a dict of dicts, a dense matrix, or ``{"group_ids": [...], "matrix": [[...]]}``).
        group_ids: None or, per image, the row ids of that image's dense ``group_similarity``.
        mode, normalize, ties: as in :func:`triplet_accuracy`.
        similarities: ``descriptors`` holds, per image, a promptable model's [N_i, N_i] similarity rows (row ``a``:
            every point's similarity to anchor ``a``'s query, NaN = left out) instead of descriptors.

    Returns:
        ``(aggregate(per_image), per_image)``.
    """
    descriptors, point_groups = list(descriptors), list(point_groups)
    n_images = len(descriptors)
    if n_images == 0:
        raise MatSegInputError("no images to score: descriptors is empty")
    if len(point_groups) != n_images:
        raise MatSegInputError(f"{n_images} images of descriptors but {len(point_groups)} of point groups: give "
                               f"one list of group ids per image")
    per_image_args = {"group_similarity": group_similarity, "group_ids": group_ids}
    for name, value in per_image_args.items():
        if value is None:
            per_image_args[name] = [None] * n_images
        else:
            if isinstance(value, (Mapping, np.ndarray)) or not isinstance(value, Sequence) or len(value) != n_images:
                raise MatSegInputError(f"{name} must be a list with one entry per image ({n_images}); got "
                                       f"{type(value).__name__}" + (f" of length {len(value)}"
                                                                   if isinstance(value, Sequence) else ""))
            per_image_args[name] = list(value)
    results = []
    for i in range(n_images):
        try:
            rows = {"descriptors": None, "similarities": descriptors[i]} if similarities else \
                {"descriptors": descriptors[i]}
            results.append(triplet_accuracy(point_groups=point_groups[i],
                                            group_similarity=per_image_args["group_similarity"][i],
                                            group_ids=per_image_args["group_ids"][i], mode=mode, normalize=normalize,
                                            ties=ties, **rows))
        except MatSegInputError as exc:
            raise MatSegInputError(f"image {i}: {exc}") from exc
    return aggregate(results), results
