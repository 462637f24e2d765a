"""Pixel-capped training batches of random size (SPEC §6), as the reference reader builds them.

* :func:`sample_batch_shape` draws a batch height and width in ``[min_size, max_size]`` (multiples of 32, the
  ConvNeXt stride) and the number of images so that ``B * H * W <= max_pixels`` (and ``B <= max_batch_size``);
* :func:`fit_scene` brings one scene to exactly ``H x W``: scaled up when smaller (or, sometimes, scaled down so
  that its annotated region fits), then cropped at a random place that covers as much of the annotated region as
  possible; image (bilinear), soft masks (bilinear) and annotated region (bilinear) are resampled together;
  materials with no pixel above 0.5 left after cropping are dropped;
* :func:`collate_scenes` stacks fitted scenes into tensors, masks zero-padded to the batch's material count.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

from ..errors import MatSegInputError


@dataclass
class BatchShape:
    height: int
    width: int
    batch_size: int


def sample_batch_shape(rng: np.random.Generator, *, min_size: int = 250, max_size: int = 900,
                       max_pixels: int = 700 * 700 * 2, max_batch_size: int = 7, multiple: int = 32,
                       min_batch_size: int = 1) -> BatchShape:
    """Random batch height/width (multiples of ``multiple`` in ``[min_size, max_size]``) and size.

    ``batch_size = min(max_batch_size, max_pixels // (H * W))``; shapes are redrawn until it is at least
    ``min_batch_size``.
    """
    lo = -(-int(min_size) // multiple) * multiple
    hi = (int(max_size) // multiple) * multiple
    if lo > hi or lo <= 0:
        raise MatSegInputError(f"no multiple of {multiple} between min_size={min_size} and max_size={max_size}")
    if lo * lo * min_batch_size > max_pixels:
        raise MatSegInputError(f"max_pixels={max_pixels} cannot hold {min_batch_size} image(s) of {lo}x{lo}")
    steps = (hi - lo) // multiple + 1
    for _ in range(1000):
        h, w = (lo + multiple * rng.integers(0, steps, size=2)).tolist()
        bs = min(int(max_batch_size), int(max_pixels) // (h * w))
        if bs >= min_batch_size:
            return BatchShape(int(h), int(w), int(bs))
    return BatchShape(lo, lo, min(int(max_batch_size), int(max_pixels) // (lo * lo)))


def _bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of ``mask > 0.5`` (the whole image when empty)."""
    ys = np.flatnonzero((mask > 0.5).any(axis=1))
    xs = np.flatnonzero((mask > 0.5).any(axis=0))
    if ys.size == 0:
        return 0, mask.shape[0], 0, mask.shape[1]
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def _offset(lo_box: int, hi_box: int, size: int, full: int, rng: np.random.Generator) -> int:
    """Crop start in [0, full - size] so that the crop covers [lo_box, hi_box) as well as it can."""
    last = full - size
    if hi_box - lo_box <= size:   # box fits: any start that contains it
        a, b = max(0, hi_box - size), min(lo_box, last)
    else:                          # box larger than the crop: any start inside the box
        a, b = max(0, lo_box), min(hi_box - size, last)
    if b < a:
        a, b = b, a
    a, b = max(0, a), min(last, b)
    return int(rng.integers(a, b + 1)) if b > a else int(max(0, min(a, last)))


def fit_scene(rgb: np.ndarray, masks: np.ndarray, annotated: np.ndarray, height: int, width: int,
              rng: np.random.Generator, *, p_shrink: float = 0.3) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize/crop one scene to exactly ``height x width``.

    Args:
        rgb: uint8 [H, W, 3]; masks: float32 [K, H, W] in [0, 1]; annotated: float32 [H, W] in [0, 1].
        p_shrink: probability of scaling a large scene down so that its annotated region's bounding box fits.

    Returns:
        ``(rgb uint8 [h, w, 3], masks float32 [K', h, w], annotated float32 [h, w])`` where only materials with
        some pixel > 0.5 are kept (``K'`` may be 0).
    """
    import cv2

    h0, w0 = rgb.shape[:2]
    y0, y1, x0, x1 = _bbox(annotated)
    scale = max(height / h0, width / w0)  # >= this covers the target
    if scale <= 1.0:
        fit_box = min(height / max(1, y1 - y0), width / max(1, x1 - x0))
        shrink = rng.random() < p_shrink
        scale = max(scale, min(1.0, fit_box)) if shrink else 1.0
    if abs(scale - 1.0) > 1e-9:
        nh, nw = max(height, int(round(h0 * scale))), max(width, int(round(w0 * scale)))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        masks = np.stack([cv2.resize(m, (nw, nh), interpolation=cv2.INTER_LINEAR) for m in masks]) if len(masks) \
            else np.zeros((0, nh, nw), np.float32)
        annotated = cv2.resize(annotated, (nw, nh), interpolation=cv2.INTER_LINEAR)
        sy, sx = nh / h0, nw / w0
        y0, y1, x0, x1 = int(y0 * sy), int(np.ceil(y1 * sy)), int(x0 * sx), int(np.ceil(x1 * sx))
    H, W = rgb.shape[:2]
    oy = _offset(y0, y1, height, H, rng)
    ox = _offset(x0, x1, width, W, rng)
    rgb = np.ascontiguousarray(rgb[oy:oy + height, ox:ox + width])
    masks = masks[:, oy:oy + height, ox:ox + width]
    annotated = np.ascontiguousarray(annotated[oy:oy + height, ox:ox + width])
    present = (masks > 0.5).reshape(len(masks), -1).any(axis=1) if len(masks) else np.zeros(0, bool)
    return rgb, np.ascontiguousarray(masks[present], dtype=np.float32), annotated.astype(np.float32, copy=False)


def collate_scenes(scenes: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]], max_materials: int = 10
                   ) -> Dict[str, "object"]:
    """Stack fitted scenes (all ``h x w``) into a batch.

    Returns:
        dict with ``images`` uint8 torch [B, 3, h, w] (RGB 0-255), ``masks`` float32 [B, K, h, w] (zero-padded,
        at most ``max_materials`` per image), ``annotated`` float32 [B, h, w], ``num_materials`` int64 [B].
    """
    import torch

    if not scenes:
        raise MatSegInputError("collate_scenes needs at least one scene")
    h, w = scenes[0][0].shape[:2]
    k = max(1, min(max_materials, max(len(s[1]) for s in scenes)))
    b = len(scenes)
    images = np.zeros((b, 3, h, w), np.uint8)
    masks = np.zeros((b, k, h, w), np.float32)
    ann = np.zeros((b, h, w), np.float32)
    num = np.zeros(b, np.int64)
    for i, (rgb, m, a) in enumerate(scenes):
        if rgb.shape[:2] != (h, w):
            raise MatSegInputError(f"scene {i} is {rgb.shape[:2]}, expected {(h, w)}")
        images[i] = rgb.transpose(2, 0, 1)
        n = min(k, len(m))
        masks[i, :n] = m[:n]
        ann[i] = a
        num[i] = n
    return {"images": torch.from_numpy(images), "masks": torch.from_numpy(masks),
            "annotated": torch.from_numpy(ann), "num_materials": torch.from_numpy(num)}


__all__ = ["BatchShape", "collate_scenes", "fit_scene", "sample_batch_shape"]
