"""One image of a segmentation set: the unit every reader yields and the IoU evaluation scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np


@dataclass
class SegmentationItem:
    """One image and its ground-truth regions.

    Attributes:
        image_id: unique within the set (the file stem, or ``stem/frame`` where a layout nests).
        image: uint8 [H, W, 3] RGB.
        masks: bool [R, H, W], one binary mask per region (R >= 1, none empty).
        region_names: R names (the mask file stem, the label value, the material name; ``""`` when unknown).
        license: the image's licence (SPDX id or free text; ``"unknown"`` when the source gives none).
        source: where the item came from (a path inside the source folder, or a Hub row), for error messages.
    """

    image_id: str
    image: np.ndarray
    masks: np.ndarray
    region_names: List[str] = field(default_factory=list)
    license: str = "unknown"
    source: Optional[str] = None
