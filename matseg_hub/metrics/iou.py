"""IoU of a thresholded similarity map against a region, for every threshold of a sweep in one pass (SPEC §10).

The paper's IoU protocol thresholds a scorer's similarity map (``similarity > t``, a strict comparison of the map's
values with the thresholds as real numbers) and reports the best ``t`` per query (an oracle) beside a fixed one. The
plain sweep (:func:`iou_sweep_plain`) builds one mask per threshold. :func:`iou_sweep` gets every threshold's IoU
from one histogram pass instead: each pixel falls into bucket ``k`` = how many thresholds lie strictly below its
value, ``np.bincount`` of ``2 k + inside`` counts the buckets inside and outside the region, and cumulative sums
from the top give, for each threshold, the pixels above it inside the region (the intersection) and outside it
(union = region + those). The counts are integers, so the IoU values equal the plain sweep's exactly.

How a pixel's bucket is found without a search (evenly spaced thresholds ``t_j = t_0 + j * step``):

* A float32 map is compared in float32: for a float32 value ``v``, ``v > t_j`` holds exactly when ``v > tau_j``
  where ``tau_j`` is the largest float32 not above ``t_j``. (float64 and integer maps: ``tau = t`` in float64.)
* ``q = v * a`` in the map's float type, ``a = 1 / step``; the bucket is ``ceil(q) - j0`` clipped to ``[0, T]``,
  ``j0 = round(t_0 * a)``. This is exact when every threshold satisfies ``tau_j * a <= j0 + j < next(tau_j) * a``
  in exact arithmetic (checked once per threshold list and dtype) and ``q`` is not an integer: rounding ``v * a``
  to the float type never jumps over an integer, it can only land on one. Pixels whose ``q`` is an integer (values
  on or next to a threshold, maps of a few levels such as 0/1) are bucketed again by ``searchsorted`` on ``tau``.
* Values below the sweep keep buckets of their own (folded into bucket 0 after counting) rather than being clipped
  into one: ``np.bincount`` is slow when many pixels hit the same counter (half of a cosine map is below 0).
* Evenly spaced thresholds that fail the check (float64 maps, whose values can sit one float64 step from a float64
  threshold) get the same arithmetic bucket, then every pixel is compared with the thresholds on either side of it
  (exact once the bucket is at most one off). Uneven thresholds, or thresholds closer than the map's float type can
  tell apart, use ``searchsorted`` for every pixel: the same counts, O(N log T).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import MatSegInputError

#: the paper's oracle sweep: thresholds 0, 0.01, ..., 1
DEFAULT_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
_BLOCK = 1 << 16  # pixels bucketed at once (a block's buffers stay in cache)


def _as_thresholds(thresholds: Any) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.isfinite(t).all():
        raise MatSegInputError(f"thresholds must be a non-empty list of finite numbers, got {thresholds!r}")
    if np.any(np.diff(t) <= 0):
        raise MatSegInputError("thresholds must be strictly increasing")
    return t


def _check_maps(similarity: Any, region: Any) -> Tuple[np.ndarray, np.ndarray, Any]:
    """``(similarity, bool region, the map's lowest value or None when empty)``, checked."""
    sim = np.asarray(similarity)
    reg = np.asarray(region)
    if sim.dtype.kind not in "fiub":
        raise MatSegInputError(f"similarity must be a real-valued map, got dtype {sim.dtype}")
    if sim.shape != reg.shape or sim.ndim != 2:
        raise MatSegInputError(f"similarity and region must be [H, W] maps of one shape, got {sim.shape} and "
                               f"{reg.shape}")
    lowest = sim.min() if sim.size else None
    if sim.dtype.kind == "f" and lowest is not None and np.isnan(lowest):  # min() is NaN when a value is
        raise MatSegInputError("the similarity map holds NaN values: a NaN pixel is neither above nor below a "
                               "threshold; fix the scorer (or replace NaN with a value) before the IoU sweep")
    return sim, reg.astype(bool, copy=False), lowest


def _map_dtype(sim: np.ndarray) -> np.dtype:
    """The float type the map is compared in: float32 maps in float32 (exact, see the module docstring), every
    other map in float64 (exact for float16/float64 values and integers below 2**53)."""
    return np.dtype(np.float32) if sim.dtype == np.float32 else np.dtype(np.float64)


def _round_down(t: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The largest value of ``dtype`` not above each threshold: ``v > t  <=>  v > tau`` for every ``v`` of
    ``dtype``."""
    tau = t.astype(dtype)
    over = tau.astype(np.float64) > t
    tau[over] = np.nextafter(tau[over], dtype.type(-np.inf))
    return tau


@lru_cache(maxsize=64)
def _plan(t_bytes: bytes, dtype_str: str) -> Tuple[np.ndarray, Optional[Tuple[Any, int, bool]]]:
    """``(tau, arithmetic)``: the thresholds in the map's float type and, for evenly spaced thresholds,
    ``(a, j0, exact)``: ``exact`` when the arithmetic bucket is right for every value whose ``v * a`` is not an
    integer, else it may be one bucket off next to a threshold (float64 maps: the thresholds are float64 themselves);
    ``None`` for uneven thresholds (searchsorted)."""
    dtype = np.dtype(dtype_str)
    t = np.frombuffer(t_bytes, dtype=np.float64)
    tau = _round_down(t, dtype)
    if t.size < 2 or np.any(np.diff(tau) <= 0):
        return tau, None
    step = (t[-1] - t[0]) / (t.size - 1)
    a = dtype.type(1.0 / step)
    if not np.isfinite(a) or a <= 0:
        return tau, None
    j0 = int(np.rint(float(t[0]) * float(a)))
    limit = 2 ** (np.finfo(dtype).nmant + 1)  # integers up to here are exact in dtype
    if abs(j0) + t.size + 1 >= limit:
        return tau, None
    if np.abs((t - t[0]) / step - np.arange(t.size)).max() > 0.25:  # not evenly spaced
        return tau, None
    nxt = np.nextafter(tau, dtype.type(np.inf))
    fa = Fraction(float(a))
    for j in range(t.size):  # exact: tau_j * a <= j0 + j < next(tau_j) * a
        m = j0 + j
        if not (Fraction(float(tau[j])) * fa <= m < Fraction(float(nxt[j])) * fa):
            # off by at most one bucket near a threshold: every pixel is compared with its two neighbours
            return tau, (a, j0, False)
    return tau, (a, j0, True)


def _bucket_counts(sim: np.ndarray, inside: np.ndarray, t: np.ndarray, lowest: Any = None) -> np.ndarray:
    """int64 [T + 1, 2]: pixels (outside, inside the region) per bucket ``k`` = thresholds strictly below the value."""
    dtype = _map_dtype(sim)
    tau, arithmetic = _plan(t.tobytes(), dtype.str)
    size = t.size
    flat = sim.reshape(-1)
    if flat.dtype != dtype:  # integer, bool, float16 maps: their float64 values (exact)
        flat = flat.astype(dtype)
    ins = inside.reshape(-1)
    counts = np.zeros(2 * (size + 1), dtype=np.int64)
    if flat.size == 0:
        return counts.reshape(size + 1, 2)
    offset = 0
    if arithmetic is not None and not arithmetic[2]:
        return _corrected_counts(flat, ins, tau, *arithmetic[:2])
    if arithmetic is not None:  # the buckets are monotone in the value: clip only the sides the map reaches
        a, j0, _ = arithmetic
        bottom = float(np.ceil(np.multiply(flat.min() if lowest is None else lowest, a))) - j0
        low = bottom < 0
        high = float(np.ceil(np.multiply(flat.max(), a))) - j0 > size
        if low and -bottom <= 8 * (size + 1):
            # values below the sweep keep their own buckets (folded into bucket 0 afterwards) instead of being
            # clipped into one: bincount slows down a lot when many pixels hit the same counter
            offset, low = int(-bottom), False
        counts = np.zeros(2 * (size + 1 + offset), dtype=np.int64)
        tau_pad = np.append(tau, dtype.type(np.inf))  # tau_pad[T]: no value is above it
    block = min(_BLOCK, flat.size)
    q = np.empty(block, dtype=dtype)
    k = np.empty(block, dtype=dtype)
    count = _counter()
    # the narrowest code type that holds every code: torch.bincount reads uint8 / int32 codes as they are (numpy's
    # bincount converts every code to intp first, which is most of its time)
    code_type = np.uint8 if counts.size <= 256 else np.int32 if count is not np.bincount else np.intp
    codes = np.empty(block, dtype=code_type)
    equal = np.empty(block, dtype=bool)
    for i in range(0, flat.size, block):
        x = flat[i:i + block]
        n = x.size
        qb, kb, cb = q[:n], k[:n], codes[:n]
        if arithmetic is None:
            kb[...] = np.searchsorted(tau, x, side="left")
        else:
            np.multiply(x, a, out=qb)
            np.ceil(qb, out=kb)
            eb = equal[:n]
            np.equal(qb, kb, out=eb)
            if np.count_nonzero(eb):  # q on an integer m: bucket m - j0, or the next one when v > tau[m - j0]
                on = np.flatnonzero(eb)
                base = np.clip(kb[on] - j0, 0, size).astype(np.intp)
                kb[on] = base + (x[on] > tau_pad[base]) + j0
            if j0 - offset:
                np.subtract(kb, j0 - offset, out=kb)
            if low:
                np.maximum(kb, 0, out=kb)
            if high:
                np.minimum(kb, size + offset, out=kb)
        np.multiply(kb, 2, out=cb, casting="unsafe")  # 2 k + inside: k is a whole number below 2**24
        np.add(cb, ins[i:i + block], out=cb, casting="unsafe")
        counts += count(cb, minlength=counts.size)
    counts = counts.reshape(-1, 2)
    if offset:
        counts = np.concatenate([counts[:offset + 1].sum(axis=0, keepdims=True), counts[offset + 1:]])
    return counts


def _torch_bincount(codes: np.ndarray, minlength: int) -> np.ndarray:
    import torch

    return torch.bincount(torch.from_numpy(codes), minlength=minlength).numpy()


@lru_cache(maxsize=1)
def _counter():
    """``bincount(codes, minlength)``: torch's (2-3x faster on uint8 / int32 codes, the same integer counts) when
    torch is installed, else numpy's."""
    import importlib.util

    # torch is a core dependency; the fallback keeps the metric usable where it is absent
    return _torch_bincount if importlib.util.find_spec("torch") is not None else np.bincount


def _corrected_counts(flat: np.ndarray, ins: np.ndarray, tau: np.ndarray, a: Any, j0: int) -> np.ndarray:
    """:func:`_bucket_counts` where the arithmetic bucket may be one off: each pixel's bucket ``k`` is moved up when
    ``v > tau[k]`` and down when ``v <= tau[k - 1]``, which makes it exactly ``searchsorted(tau, v, "left")``."""
    size = tau.size
    upper = np.append(tau, tau.dtype.type(np.inf))  # upper[k] = tau[k]; nothing is above upper[T]
    lower = np.insert(tau, 0, tau.dtype.type(-np.inf))  # lower[k] = tau[k - 1]; lower[0] is below every value
    counts = np.zeros(2 * (size + 1), dtype=np.int64)
    block = min(_BLOCK, flat.size)
    q = np.empty(block, dtype=flat.dtype)
    codes = np.empty(block, dtype=np.intp)
    for i in range(0, flat.size, block):
        x = flat[i:i + block]
        qb, cb = q[:x.size], codes[:x.size]
        np.multiply(x, a, out=qb)
        np.ceil(qb, out=qb)
        if j0:
            np.subtract(qb, j0, out=qb)
        np.clip(qb, 0, size, out=qb)
        np.copyto(cb, qb, casting="unsafe")
        cb += x > upper[cb]
        cb -= x <= lower[cb]
        np.maximum(cb, 0, out=cb)  # -inf <= lower[0]
        cb += cb
        cb += ins[i:i + block]
        counts += np.bincount(cb, minlength=counts.size)
    return counts.reshape(size + 1, 2)


def iou_sweep(similarity: Any, region: Any, thresholds: Any = DEFAULT_THRESHOLDS) -> np.ndarray:
    """IoU of ``similarity > t`` with ``region`` for every threshold ``t``, from one histogram pass over the pixels.

    Args:
        similarity: real-valued [H, W] map (float32 maps are compared in float32, others in float64; ``v > t``
            is the exact comparison of the two numbers, as :func:`iou_sweep_plain` makes it).
        region: bool (or 0/1) [H, W], the ground-truth region.
        thresholds: strictly increasing floats [T] (default :data:`DEFAULT_THRESHOLDS`, 0 to 1 by 0.01). Evenly
            spaced thresholds are bucketed arithmetically (O(N)); others by ``searchsorted`` (O(N log T)).

    Returns:
        float64 [T]: ``|pred & region| / |pred | region|`` per threshold, 1.0 where both are empty. Identical to
        :func:`iou_sweep_plain`.

    Raises:
        MatSegInputError: shapes differ, the map holds NaN, or the thresholds are not finite and increasing.
    """
    sim, reg, lowest = _check_maps(similarity, region)
    t = _as_thresholds(thresholds)
    counts = _bucket_counts(sim, reg, t, lowest)
    # pixels above threshold j: buckets k > j (k thresholds strictly below the value)
    above = np.cumsum(counts[::-1], axis=0)[::-1][1:]  # [T, 2]: (outside, inside) counts above each threshold
    intersection = above[:, 1]
    union = int(counts[:, 1].sum()) + above[:, 0]
    out = np.ones(t.size, dtype=np.float64)
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def iou_sweep_plain(similarity: Any, region: Any, thresholds: Any = DEFAULT_THRESHOLDS) -> np.ndarray:
    """The brute-force sweep, the reference :func:`iou_sweep` is tested and timed against: per threshold,
    ``pred = similarity > t`` (in float64: the exact comparison) and ``|pred & region| / |pred | region|``.

    Same arguments, result and errors as :func:`iou_sweep`."""
    sim, reg, _ = _check_maps(similarity, region)
    sim = sim.astype(np.float64)
    out = []
    for t in _as_thresholds(thresholds):
        pred = sim > t
        union = np.logical_or(pred, reg).sum()
        out.append(np.logical_and(pred, reg).sum() / union if union else 1.0)
    return np.asarray(out, dtype=np.float64)


def best_iou(similarity: Any, region: Any, thresholds: Any = DEFAULT_THRESHOLDS) -> tuple:
    """``(iou, threshold)`` of the best threshold of the sweep (the oracle; the lowest threshold among ties)."""
    t = _as_thresholds(thresholds)
    ious = iou_sweep(similarity, region, t)
    j = int(np.argmax(ious))
    return float(ious[j]), float(t[j])
