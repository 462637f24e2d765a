"""Generated benchmark folders for tests, benchmarks and examples (no real data needed).

:func:`make_benchmark_folder` writes photos in the authors' raw layout whose material groups are decidable:
each group is a region of its own colour (plus noise), and points are placed inside their group's region, so
the ``rgb`` baseline scores 1.0 on them. Photos can carry an EXIF orientation with annotations in the displayed
frame, like phone photos in the real benchmark.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .benchmark.format import write_benchmark_item

PathLike = Union[str, os.PathLike]

# EXIF orientation -> PIL transpose that maps the *displayed* picture to the *stored* one (inverse of exif_transpose)
_STORE_TRANSPOSE = {1: None, 3: "ROTATE_180", 6: "ROTATE_90", 8: "ROTATE_270"}


def make_photo(height: int, width: int, num_groups: int, rng: np.random.Generator) -> tuple:
    """A displayed photo split into ``num_groups`` vertical bands of distinct colours (+ mild noise).

    Returns:
        (uint8 [H, W, 3] RGB, int [num_groups, 2] column ranges of the bands)
    """
    colours = rng.permutation(np.linspace(30, 225, num_groups * 3).reshape(num_groups, 3).T.ravel()).reshape(3, -1).T
    edges = np.linspace(0, width, num_groups + 1).astype(int)
    image = np.empty((height, width, 3), dtype=np.float32)
    for g in range(num_groups):
        image[:, edges[g]:edges[g + 1]] = colours[g]
    image += rng.normal(0, 4, image.shape)
    bands = np.stack([edges[:-1], edges[1:]], axis=1)
    return np.clip(image, 0, 255).astype(np.uint8), bands


def make_benchmark_folder(root: PathLike, num_images: int = 3, *, size: tuple = (480, 640), num_groups: Sequence[int] = (2, 3),
                          points_per_group: int = 4, orientation: int = 1, relations: Optional[Dict[int, str]] = None,
                          seed: int = 0, quality: int = 92) -> Path:
    """Write a raw benchmark folder ``root/images/<id>.jpg`` + ``root/data/<id>/data.json`` (+ relations).

    Args:
        num_images: number of photos, ids ``img_000``, ``img_001``, ...
        size: displayed (height, width).
        num_groups: group counts cycled over the images.
        orientation: EXIF orientation written into every photo (1, 3, 6 or 8); points are in the displayed frame.
        relations: image index -> text of ``group_relations.txt``.
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
    """
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    for index in range(num_images):
        image_id = f"img_{index:03d}"
        groups = num_groups[index % len(num_groups)]
        photo, bands = make_photo(height, width, groups, rng)
        annotation: Dict[str, Dict[str, List[List[int]]]] = {}
        radius = max(2, min(height, width) // 40)
        for g in range(groups):
            lo, hi = bands[g]
            xs = rng.integers(lo + radius + 1, hi - radius - 1, points_per_group)
            ys = rng.integers(radius + 1, height - radius - 1, points_per_group)
            pts = [[int(x), int(y), int(radius)] for x, y in zip(xs, ys)]
            annotation[str(g + 1)] = {"pt_im": pts, "pt_pg": [[p[0] // 4, p[1] // 4, radius // 4 + 1] for p in pts]}
        stored = Image.fromarray(photo)
        transpose = _STORE_TRANSPOSE[orientation]
        exif = Image.Exif()
        if transpose is not None:
            stored = stored.transpose(getattr(Image.Transpose, transpose))
            exif[0x0112] = orientation
        buf = io.BytesIO()
        stored.save(buf, format="JPEG", quality=quality, exif=exif)
        write_benchmark_item(root, image_id, buf.getvalue(), annotation,
                             relations=relations.get(index) if relations else None)
    return root
