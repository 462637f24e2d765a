"""The natural photos that ship inside scikit-image's wheel (no download): the package's built-in sources.

The 2D generator draws patterns, backgrounds and textures from them (:data:`BUILTIN_NATURAL`,
:data:`BUILTIN_TEXTURES`, file names in :func:`skimage_data_dir`); the 3D sampler names them ``skimage:<name>``
(:data:`SKIMAGE_PREFIX`); the scene licence of a row is looked up in :data:`SKIMAGE_LICENSES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

SKIMAGE_PREFIX = "skimage:"
#: licences as stated in each ``skimage.data`` function's docstring, by name (file stem)
SKIMAGE_LICENSES: Dict[str, str] = {
    "astronaut": "public domain (NASA)", "coffee": "CC0 (Rachel Michetti)", "chelsea": "CC0 (Stefan van der Walt)",
    "rocket": "public domain (SpaceX)", "immunohistochemistry": "no known copyright restrictions",
    "hubble_deep_field": "public domain (NASA)", "retina": "CC0 1.0", "coins": "no known copyright restrictions",
    "camera": "CC0 (Lav Varshney)", "gravel": "CC0 (CC0Textures)", "brick": "CC0 (CC0Textures)",
    "grass": "CC0 (CC0Textures)", "horse": "CC0 (Andreas Preuss)"}
#: the 3D sampler's photos (``skimage.data`` function names)
SKIMAGE_PHOTOS: Tuple[str, ...] = tuple(SKIMAGE_LICENSES)
#: the 2D generator's photos for patterns and backgrounds, and its textures (file names in skimage's data folder)
BUILTIN_NATURAL = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png",
                   "retina.jpg", "motorcycle_left.png", "color.png", "camera.png", "coins.png", "moon.png")
BUILTIN_TEXTURES = ("brick.png", "grass.png", "gravel.png", "moon.png", "hubble_deep_field.jpg", "ihc.png",
                    "retina.jpg", "coffee.png")


def skimage_data_dir() -> Path:
    """The folder of scikit-image's bundled images."""
    import skimage

    return Path(skimage.__file__).parent / "data"
