"""2D MatSeg scenes: materials scattered over an image by natural-image pattern maps (SPEC §4).

A scene is a pure function of ``(seed, index, sources, config)``: its random generator is
:func:`scene_rng` ``(seed, index)``, the ``"scenes2d"`` stream of :mod:`matseg_hub.utils.seeds` (``SeedSequence``
of the stream's id word, ``seed`` and ``index``: no other generator of the package draws the same numbers), so scenes
can be made in any order, by any number of workers or machines, and scene ``i`` is always the same bytes.

The default distribution (``SceneConfig()``, the ``"paper"`` preset of :data:`SCENE_PRESETS`) is the authors' 2D
generator, ``Generate_2D_Scene_And_Annotation.py`` with ``UV_Map_Extractore.py`` (sagieppel/MatSeg2D-generation-code;
SPEC §4; measured side by side by ``bench/bench_fidelity.py``). How one scene is made (OpenCV, float32):

1. sides uniform in 400..999, ``K`` uniform in 1..10 materials, hard (one-hot) with probability 0.55, and the scene's
   largest share of one material ``max_occupancy = rand * rand * 0.5 + 0.04`` (0.1 with probability 0.1);
2. per material a pattern map (:func:`~matseg_hub.synthetic.patterns.authors_pattern_map`): a natural photo (redrawn
   while it is not larger than the scene, except 5 % of draws), cut at its resolution (zoomed out at random in 30 %),
   one of ``B G R`` / ``H S V`` (70 / 30 %) over 255 or over its maximum, a high threshold uniform in [0, 1]
   redrawn until 1 %..``max_occupancy`` of the crop is above it, and in half of a soft scene's maps a low threshold
   uniform below it (linear between, 1 above);
3. the maps blurred (50 %, odd kernel 3..9 px), then shared first-come (75 %: each map takes its part of what the
   maps before it left) or evenly (25 %: divided by their sum); hard scenes one-hot, a pixel whose winner weighs
   under 0.1 going to the background; whatever the maps leave is unannotated background (``annotated = sum``);
4. the background a natural photo (smaller ones kept in 3 % of draws), fitted to the scene or zoomed out at
   random (50 %); each material a texture (91 %: random 90° rotation and flips, tiled at its resolution or shrunk
   towards 100 px tiles (75 %, 60 % of them shrunk), else stretched over the scene; hue rotated in 12 %) or a
   uniform colour (9 %), times a shadow map (75 %: a channel of another photo over its maximum, blurred 1-3.5 px,
   strength 1 or uniform, 50 / 50); the image is ``sum_k w_k * material_k + w_bg * background``;
5. outputs: RGB uint8, masks ``w_k`` (float32, 0-1), annotated region and metadata (seed, index, preset, every
   parameter drawn, source names).

Kept from the authors' code on purpose because they change the distribution: the threshold tests that never fire
in theirs (a sign error in two pixel sums: no 2000-pixel escape, no cap on the linear zone), the even mixing that
makes every touched pixel fully annotated, the one-hot cut at 0.1, the hue shift taken modulo 255 on OpenCV's 0..179
hue (shifts past 180 wrap), uniform colours in 0..254, and textures stretched by the scene's width on both axes.

Better here on purpose: every crop and resize is area-averaged or bilinear (theirs: OpenCV's default, aliased
when shrinking), pattern properties are computed at ``pattern_scale`` (0.5) of the scene and thresholds placed on
every 4th row and column (speed; edges stay sharp), the image is rounded instead of truncated to uint8, photos
are read from a decoded pool (``max_side``, 1024 px by default, where theirs reads every file at its resolution), and
every scene is a pure function of ``(seed, index)``. Theirs can hide a material completely (a map inside those
before it, or one that loses every pixel of a hard scene) and still writes its empty mask; here every material
is visible: at least ``config.min_material_fraction`` of the pixels have its mask above 0.5 (a hidden material's
map is redrawn, then the scene), so ``K`` stays uniform in 1..10. A scene whose 8 redraws all hide a material
(rare: many materials in a small scene) keeps its last draw with the hidden materials left unannotated, listed
(indices of the drawn materials) in its metadata's ``dropped_materials``.

The ``"dense"`` preset (``layout="shares"``) is generator 4, the package's former default, pixel for pixel: 2-5
materials given Dirichlet shares of the image (quantile thresholds of the still-free area), background in 85 % of
the scenes, hard in 25 %, gradients, tinted gray textures and arbitrary texture rotations.

Sources are decoded and downscaled once per process into a :class:`~matseg_hub.synthetic.sources.SourcePool`
(:mod:`matseg_hub.synthetic.sources`: folders, Hub datasets, the built-in photos).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegError, MatSegInputError
from ..utils.images import resize_image, warp_affine
from ..utils.logging import get_logger
from ..utils.seeds import stream_rng
from .layout import SyntheticScene
from .patterns import PatternParams, pattern_map, property_plane, sample_geometry, warp_source
from .sources import SceneSources, SourcePool, as_scene_sources

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
GENERATOR_NAME = "matseg_hub.scenes2d"
# 2: resize-based crops, OpenCV compositing, shading normalised first; 3: half-res sources; 4: seeds carry the
# stream's id word (matseg_hub.utils.seeds), so 2D and 3D scenes of one seed no longer share random numbers;
# 5: the authors' distribution by default ("paper" layout, issue #18); generator 4's pixels are the "dense" preset
GENERATOR_VERSION = 5


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------
#: How regions are laid out: ``"paper"`` (the authors' generator: independent pattern maps, each at most
#: ``max_occupancy`` of the image, mixed first-come or evenly; the rest is background) or ``"shares"`` (generator 4:
#: Dirichlet shares of the image, each material's pattern thresholded at a quantile of the still-free area).
LAYOUTS = ("paper", "shares")


@dataclass(frozen=True)
class SceneConfig:
    """What scenes look like. Probabilities are per scene or per material as named.

    The defaults are the authors' 2D distribution (``"paper"`` preset, see the module docstring); the fields
    ``gradient_prob``, ``blur_sigma``, ``texture_tile``, ``texture_rotate_prob``, ``tint_gray_prob`` and
    ``min_share`` apply to the ``"shares"`` layout only (the ``"dense"`` preset).

    Attributes:
        size: fixed ``(height, width)``; when ``None`` both sides are drawn in ``[min_size, max_size]``.
        min_materials, max_materials: number of materials per scene (inclusive).
        background_prob: chance that part of the scene is unannotated natural-image background.
        hard_prob: chance of hard (one-hot) masks instead of soft ones.
        texture_prob: chance that a material is a texture (otherwise a uniform or gradient colour); colours only
            when there are no textures.
        gradient_prob: chance that a colour material is a gradient.
        shading_prob, shading_strength: chance and strength range of a shading map on a material.
        blur_prob, blur_sigma: chance and sigma range (as a fraction of the shorter side) of blurring the masks.
        texture_tile: side of one texture tile as a fraction of the scene's shorter side (range).
        texture_rotate_prob: chance that a texture is rotated (by any angle) before tiling.
        hue_shift_prob: chance of a random hue rotation of a texture; tint_gray_prob: chance to colour a gray one.
        min_share: smallest share of the scene a material is planned to take.
        min_material_fraction: every material's mask exceeds 0.5 on at least this fraction of the pixels.
        pattern_scale: resolution (fraction of the scene's) at which pattern properties are computed before they
            are resized and thresholded at full resolution (speed; edges stay sharp).
        layout: ``"paper"`` or ``"shares"`` (:data:`LAYOUTS`); the fields below apply to ``"paper"``.
        occupancy_base, occupancy_scale, occupancy_fixed_prob, occupancy_fixed: the scene's largest share of one
            material, ``rand * rand * occupancy_scale + occupancy_base``, or ``occupancy_fixed`` with probability
            ``occupancy_fixed_prob`` (the part of a pattern map above its high threshold).
        pattern_soft_prob: chance that a soft scene's pattern map has a linear zone (else a hard edge).
        even_mix_prob: chance that overlapping maps share pixels evenly (divided by their sum) instead of
            first-come (each map takes its part of what the maps before it left).
        shading_full_prob: chance that a shading map has strength 1 (else ``shading_strength``).
        texture_tile_prob: chance that a texture is tiled at its resolution (else stretched over the scene);
            texture_downscale_prob: chance that a tiled texture is first shrunk, to a side of at least
            ``texture_min_tile`` texture pixels.
        preset: the name of the :data:`SCENE_PRESETS` entry the settings started from (``from_preset``), recorded
            in every scene's metadata; ``None`` when the config was built field by field.
    """

    size: Optional[Tuple[int, int]] = None
    min_size: int = 400
    max_size: int = 999
    min_materials: int = 1
    max_materials: int = 10
    background_prob: float = 1.0
    hard_prob: float = 0.55
    texture_prob: float = 0.91
    gradient_prob: float = 0.0
    shading_prob: float = 0.75
    shading_strength: Tuple[float, float] = (0.0, 1.0)
    blur_prob: float = 0.5
    blur_sigma: Tuple[float, float] = (0.002, 0.012)
    texture_tile: Tuple[float, float] = (0.1, 1.0)
    texture_rotate_prob: float = 0.0
    hue_shift_prob: float = 0.12
    tint_gray_prob: float = 0.0
    min_share: float = 0.06
    min_material_fraction: float = 0.002
    pattern_scale: float = 0.5
    layout: str = "paper"
    occupancy_base: float = 0.04
    occupancy_scale: float = 0.5
    occupancy_fixed_prob: float = 0.1
    occupancy_fixed: float = 0.1
    pattern_soft_prob: float = 0.5
    even_mix_prob: float = 0.25
    shading_full_prob: float = 0.5
    texture_tile_prob: float = 0.75
    texture_downscale_prob: float = 0.6
    texture_min_tile: int = 100
    preset: Optional[str] = None

    def __post_init__(self):
        if self.size is not None:
            size = (int(self.size), int(self.size)) if isinstance(self.size, (int, np.integer)) else tuple(
                int(v) for v in self.size)
            object.__setattr__(self, "size", size)
            if len(size) != 2 or min(size) < 16:
                raise MatSegInputError(f"size must be (height, width) with sides >= 16, got {self.size}")
        if not 16 <= self.min_size <= self.max_size:
            raise MatSegInputError(f"need 16 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if not 1 <= self.min_materials <= self.max_materials:
            raise MatSegInputError(f"need 1 <= min_materials <= max_materials, got {self.min_materials}, "
                                   f"{self.max_materials}")
        if self.layout not in LAYOUTS:
            raise MatSegInputError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.texture_min_tile < 1:
            raise MatSegInputError(f"texture_min_tile must be >= 1 (texture pixels), got {self.texture_min_tile}")
        if not 0.0 < self.occupancy_base + self.occupancy_scale <= 1.0 or self.occupancy_base <= 0.0 or not (
                0.0 < self.occupancy_fixed <= 1.0):
            raise MatSegInputError("need 0 < occupancy_base, occupancy_base + occupancy_scale <= 1 and "
                                   f"0 < occupancy_fixed <= 1, got {self.occupancy_base}, {self.occupancy_scale}, "
                                   f"{self.occupancy_fixed}")
        if self.layout == "shares" and self.max_materials * self.min_share >= 1.0:
            raise MatSegInputError(f"max_materials * min_share must be < 1, got {self.max_materials} * "
                                   f"{self.min_share}")
        for f in fields(self):
            if f.name.endswith("_prob") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise MatSegInputError(f"{f.name} must be in [0, 1], got {getattr(self, f.name)}")

    @property
    def largest_side(self) -> int:
        return max(self.size) if self.size else self.max_size

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a JSON-friendly dict (tuples as lists); every field is a number, a bool, a string or a
        tuple."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "SceneConfig":
        """The settings of preset ``name`` (:data:`SCENE_PRESETS`) with ``overrides`` (field names) on top.

        Raises:
            MatSegInputError: unknown preset (the message lists the known ones) or unknown field.
        """
        if name not in SCENE_PRESETS:
            raise MatSegInputError(f"unknown scene preset {name!r}; known presets: {', '.join(sorted(SCENE_PRESETS))}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise MatSegInputError(f"unknown scene setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**SCENE_PRESETS[name], **overrides, "preset": name})

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SceneConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known})


#: Named scene distributions: field overrides of :class:`SceneConfig` (use ``SceneConfig.from_preset(name)``).
#: ``"paper"``: the defaults, the distribution of the authors' generator; ``"dense"``: the package's former
#: defaults (generator 4's pixels: 2-5 materials filling most of the image, 15 % of scenes without background).
SCENE_PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "dense": dict(layout="shares", min_size=400, max_size=1000, min_materials=2, max_materials=5, background_prob=0.85,
                  hard_prob=0.25, texture_prob=0.85, gradient_prob=0.5, shading_prob=0.6, shading_strength=(0.2, 0.8),
                  blur_prob=0.4, blur_sigma=(0.002, 0.012), texture_tile=(0.1, 1.0), texture_rotate_prob=0.4,
                  hue_shift_prob=0.12, tint_gray_prob=0.8, min_share=0.06, min_material_fraction=0.002,
                  pattern_scale=0.5),
}


# ---------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------
def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of the stream ``seed``: ``stream_rng("scenes2d", seed, index)``
    (:mod:`matseg_hub.utils.seeds`)."""
    if int(seed) < 0 or int(index) < 0:
        raise MatSegInputError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return stream_rng("scenes2d", int(seed), int(index))


def _warp(image: np.ndarray, geometry: Dict[str, Any], border: int, half: Optional[np.ndarray] = None) -> np.ndarray:
    """The source region of ``geometry`` (see :class:`PatternParams`) at the output size: uint8 [h, w, 3]."""
    return warp_source(image, PatternParams(**geometry, property="R"), border, half=half)


def _periodic_window(n: int, period: int, start: int, length: int) -> Tuple[int, int, int]:
    """Borders ``(before, after)`` that extend ``n`` source pixels (one period of a periodic tiling) so that the
    window ``[start, start + length)`` of the tiling (``0 <= start < period``) is inside, as few as possible, and
    the window's first index in the extended array."""
    best = None
    for s in (start, start - period):
        before, after = max(0, -s), max(0, s + length - n)
        if best is None or before + after < best[0] + best[1]:
            best = (before, after, s + before)
    return best


def _texture_layer(texture: np.ndarray, h: int, w: int, scale: float, angle: float, offset: Tuple[float, float],
                   flip: bool, wrap: bool, recolour: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """A texture tiled over ``h x w``: uint8 [h, w, 3] (rows may be a strided view).

    The texture is resized once by ``1 / scale`` (area-averaged when shrinking, :func:`resize_image`), recoloured
    (``recolour``, a per-pixel colour change, applied to this one tile), mirrored when ``flip``, repeated (``wrap``)
    or mirror-repeated, started at ``offset`` (texture pixels) and rotated by ``angle`` degrees about the scene's
    centre. The tiling is one ``cv2.copyMakeBorder`` of the resized texture (wrapped or mirrored borders of any
    width), cut to the window needed. Rotation warps that pre-tiled canvas, which covers the rotated footprint, so
    every sample is inside it (a warp with wrap/mirror borders is several times slower).
    """
    import cv2

    th, tw = texture.shape[:2]
    nw, nh = max(2, int(round(tw / scale))), max(2, int(round(th / scale)))
    tile = resize_image(texture, (nw, nh))
    if recolour is not None:
        tile = recolour(tile)
    if flip:
        tile = cv2.flip(tile, 1)
    # period of the tiling: the tile, or (mirror tiling) the tile and its mirror image sharing the edge pixels
    pw, ph = (nw, nh) if wrap else (2 * nw - 2, 2 * nh - 2)
    ox, oy = int(offset[0] / scale) % pw, int(offset[1] / scale) % ph
    if angle == 0.0:
        ch, cw = h, w
    else:
        a = math.radians(angle)
        c, s = math.cos(a), math.sin(a)
        cw = int(math.ceil(w * abs(c) + h * abs(s))) + 4
        ch = int(math.ceil(w * abs(s) + h * abs(c))) + 4
    top, bottom, y0 = _periodic_window(nh, ph, oy, ch)
    left, right, x0 = _periodic_window(nw, pw, ox, cw)
    if top or bottom or left or right:
        tile = cv2.copyMakeBorder(tile, top, bottom, left, right, cv2.BORDER_WRAP if wrap else cv2.BORDER_REFLECT_101)
    canvas = tile[y0:y0 + ch, x0:x0 + cw]
    if angle == 0.0:
        return canvas
    # output pixel (x, y) -> canvas (u, v): rotation about the two centres
    m = np.array([[c, -s, (cw - 1) / 2.0 - c * (w - 1) / 2.0 + s * (h - 1) / 2.0],
                  [s, c, (ch - 1) / 2.0 - s * (w - 1) / 2.0 - c * (h - 1) / 2.0]], dtype=np.float64)
    return warp_affine(canvas, m, (w, h))


def _noise_blob(rng: np.random.Generator, h: int, w: int, free: np.ndarray, occupancy: float) -> np.ndarray:
    """Fallback region: smooth noise thresholded so that ``occupancy`` of the free area is 1 (float32 [h, w])."""
    import cv2

    cell = max(8, min(h, w) // int(rng.integers(3, 9)))
    noise = rng.random((h // cell + 3, w // cell + 3), dtype=np.float32)
    noise = cv2.resize(noise, (w + 3 * cell, h + 3 * cell), interpolation=cv2.INTER_CUBIC)[:h, :w]
    keep = free > 0.5
    values = noise[keep] if keep.any() else noise.ravel()
    t = float(np.quantile(values, 1.0 - occupancy))
    return (noise > np.float32(t)).astype(np.float32)


def _blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 [h, w] map; wide blurs run at half resolution (linear, so weights stay convex)."""
    import cv2

    h, w = mask.shape
    if sigma < 2.0 or min(h, w) < 32:
        return cv2.GaussianBlur(mask, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    small = cv2.resize(mask, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 2.0, borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _add_weighted(acc: Optional[np.ndarray], image: np.ndarray, weight: np.ndarray,
                  scratch: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """``acc += image * weight[:, :, None]`` (float32 [h, w, 3] += uint8 [h, w, 3] * float32 [h, w]), in place;
    returns ``acc``, or the product itself (a new array) when ``acc`` is None (the first layer: no zeros to add).

    OpenCV's same-shape product is several times faster than numpy's broadcast of a mixed-type product.
    ``scratch``: two float32 [h, w, 3] buffers reused across layers (fresh ones cost page faults at every layer).
    """
    import cv2

    w3, product = scratch if scratch is not None else (None, None)
    w3 = cv2.merge((weight, weight, weight), dst=w3)
    if acc is None:
        return cv2.multiply(image, w3, dtype=cv2.CV_32F)
    product = cv2.multiply(image, w3, dst=product, dtype=cv2.CV_32F)
    return cv2.add(acc, product, dst=acc)


def _argmax_planes(planes: Sequence[np.ndarray]) -> np.ndarray:
    """``numpy.argmax(numpy.stack(planes), axis=0)`` as uint8 (first maximum wins), without the strided pass."""
    best = planes[0].copy()
    label = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, len(planes)):
        above = planes[k] > best
        label[above] = k
        np.maximum(best, planes[k], out=best)
    return label


def _draw_size(rng: np.random.Generator, config: SceneConfig) -> Tuple[int, int]:
    if config.size is not None:
        return config.size
    h = int(rng.integers(config.min_size, config.max_size + 1))
    w = int(rng.integers(config.min_size, config.max_size + 1))
    return h, w


def _material_image(rng: np.random.Generator, h: int, w: int, sources: SceneSources, config: SceneConfig,
                    info: Dict[str, Any]) -> np.ndarray:
    """One material's appearance: uint8 [h, w, 3]."""
    import cv2

    textures = sources.textures
    if textures is not None and len(textures) and rng.random() < config.texture_prob:
        t = int(rng.integers(len(textures)))
        tex = textures.images[t]
        th, tw = tex.shape[:2]
        tile = float(rng.uniform(*config.texture_tile)) * min(h, w)
        tile = max(tile, 8.0)
        scale = min(th, tw) / tile  # texture pixels per scene pixel
        angle = float(rng.uniform(-180, 180)) if rng.random() < config.texture_rotate_prob else 0.0
        flip = bool(rng.random() < 0.5)
        wrap = bool(rng.random() < 0.5)
        cx, cy = float(rng.uniform(0, tw)), float(rng.uniform(0, th))
        info.update(kind="texture", source=textures.names[t], tile=round(tile, 3), scale=scale, angle=angle,
                    flip=flip, tiling="wrap" if wrap else "mirror", offset=[cx, cy])
        tint = shift = None
        if textures.is_gray[t] and rng.random() < config.tint_gray_prob:
            tint = rng.integers(40, 256, size=3)
            info["tint"] = [int(c) for c in tint]
        if rng.random() < config.hue_shift_prob:
            shift = int(rng.integers(1, 180))
            info["hue_shift"] = shift

        def recolour(tile: np.ndarray) -> np.ndarray:  # per pixel, so applied to one tile before tiling
            if tint is not None:
                tile = cv2.multiply(tile, np.array([*(tint / 255.0), 0.0]))
            if shift is not None:
                hue, sat, val = cv2.split(cv2.cvtColor(tile, cv2.COLOR_RGB2HSV))
                table = ((np.arange(256) + shift) % 180).astype(np.uint8)  # OpenCV hue is 0..179
                tile = cv2.cvtColor(cv2.merge([cv2.LUT(hue, table), sat, val]), cv2.COLOR_HSV2RGB)
            return tile

        recolour_tile = recolour if (tint is not None or shift is not None) else None
        return _texture_layer(tex, h, w, scale, angle, (cx, cy), flip, wrap, recolour_tile)
    c0 = rng.integers(0, 256, size=3)
    if rng.random() < config.gradient_prob:
        c1 = rng.integers(0, 256, size=3)
        theta = float(rng.uniform(0, 2 * math.pi))
        gx = np.linspace(-0.5, 0.5, w, dtype=np.float32) * np.float32(math.cos(theta))
        gy = np.linspace(-0.5, 0.5, h, dtype=np.float32) * np.float32(math.sin(theta))
        ramp = gy[:, None] + gx[None, :]
        lo, hi = float(ramp.min()), float(ramp.max())
        ramp = (ramp - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1e-6))
        # channel = c0 + ramp * (c1 - c0), always in [0, 255]: convertScaleAbs rounds and saturates
        img = cv2.merge([cv2.convertScaleAbs(ramp, alpha=float(c1[i] - c0[i]), beta=float(c0[i])) for i in range(3)])
        info.update(kind="gradient", colours=[[int(v) for v in c0], [int(v) for v in c1]], angle=math.degrees(theta))
        return img
    info.update(kind="uniform", colour=[int(v) for v in c0])
    return cv2.merge([np.full((h, w), int(c), dtype=np.uint8) for c in c0])


def _shading(rng: np.random.Generator, h: int, w: int, natural: SourcePool, config: SceneConfig,
             info: Dict[str, Any]) -> np.ndarray:
    """A shading map from a natural image: float32 [h, w] in [1 - strength, 1]."""
    import cv2

    s = int(rng.integers(len(natural)))
    img = natural.images[s]
    geometry = sample_geometry(img.shape[:2], (h, w), rng)
    prop = ("R", "G", "B", "V", "S")[int(rng.integers(5))]
    sigma = float(rng.uniform(0.003, 0.03)) * min(h, w)
    params = PatternParams(**geometry, property=prop, blur_sigma=sigma, work_scale=0.25)
    # normalised and scaled at the working resolution, then resized (bilinear): 1/16 of the full-size passes
    small = property_plane(img, params.at_working_resolution(), half=natural.half_resolution(s))
    peak = float(small.max())
    strength = float(rng.uniform(*config.shading_strength))
    gain = strength / peak if peak > 1e-6 else strength
    small *= np.float32(gain)
    small += np.float32(1.0 - strength)
    plane = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    info["shading"] = {"source": natural.names[s], "strength": strength, "pattern": params.to_dict()}
    return plane


def _background_layer(natural: SourcePool, b: int, geometry, bg_weight: np.ndarray, scratch):
    """The first layer of a scene's sum: natural image ``b`` warped by ``geometry`` (mirrored at the borders) times
    the background weight; returns it (float32 [H, W, 3]) and its metadata."""
    import cv2

    bg = _warp(natural.images[b], geometry, cv2.BORDER_REFLECT_101, natural.half_resolution(b))
    return _add_weighted(None, bg, bg_weight, scratch), {"source": natural.names[b], "geometry": geometry}


def generate_scene(seed: int, index: int, sources: Union[SceneSources, SourcePool, None] = None,
                   config: Optional[SceneConfig] = None) -> SyntheticScene:
    """Scene ``index`` of the stream ``seed`` (a pure function of its arguments).

    Args:
        seed, index: non-negative ints; the scene's generator is :func:`scene_rng` ``(seed, index)``.
        sources: :class:`SceneSources` (or one :class:`SourcePool` for both roles); default the built-in photos.
        config: :class:`SceneConfig`; default ``SceneConfig()``.

    Returns:
        :class:`SyntheticScene`: ``rgb`` uint8 [H, W, 3], ``masks`` float32 [K, H, W] in [0, 1] (sum <= 1),
        ``annotated`` float32 [H, W] = ``1 - background weight``, ``metadata`` (seed, index, parameters).
    """
    sources = as_scene_sources(sources)
    config = config or SceneConfig()
    natural = sources.natural
    if natural is None or not len(natural):
        raise MatSegInputError("scene sources hold no natural image")
    rng = scene_rng(seed, index)
    for attempt in range(_MAX_ATTEMPTS):
        if attempt:  # deterministic redraw: a function of (seed, index, attempt) only
            rng = stream_rng("scenes2d.redraw", int(seed), int(index), attempt)
        scene, min_px = _generate_once(rng, seed, index, sources, config, attempt)
        visible = [int(np.count_nonzero(m > 0.5)) >= min_px for m in scene.masks]
        if all(visible):
            if attempt:
                scene.metadata["attempt"] = attempt
            return scene
        logger.debug("scene %d of seed %d: a material is not visible; redrawing (attempt %d)", index, seed, attempt + 1)
    return _drop_hidden_materials(scene, visible, seed, index)


def _drop_hidden_materials(scene: SyntheticScene, visible: List[bool], seed: int, index: int) -> SyntheticScene:
    """The last redraw of a scene that never showed every material (rare: many materials crowded into a small
    scene): the hidden materials join the unannotated background (their pixels stay in the image, outside the
    annotated region), recorded in the metadata as ``dropped_materials``; a scene left with no visible material is
    an error."""
    keep = [k for k, v in enumerate(visible) if v]
    if not keep:  # none reached the visible minimum: the most visible one stays, if anything of it shows
        counts = [int(np.count_nonzero(m > 0.5)) for m in scene.masks]
        best = int(np.argmax(counts))
        keep = [best] if counts[best] else []
        visible = [k == best for k in range(len(visible))] if keep else visible
    if not keep:
        raise MatSegError(f"scene {index} of seed {seed}: no material is visible in {_MAX_ATTEMPTS} attempts; use "
                          f"fewer materials or larger scenes")
    dropped = [k for k, v in enumerate(visible) if not v]
    annotated = np.clip(scene.annotated - scene.masks[dropped].sum(0), 0.0, 1.0).astype(np.float32)
    metadata = dict(scene.metadata, attempt=_MAX_ATTEMPTS - 1, num_materials=len(keep), dropped_materials=dropped,
                    materials=[m for k, m in enumerate(scene.metadata["materials"]) if visible[k]])
    logger.debug("scene %d of seed %d: materials %s never visible; left unannotated", index, seed, dropped)
    return SyntheticScene(rgb=scene.rgb, masks=np.ascontiguousarray(scene.masks[keep]), annotated=annotated,
                          metadata=metadata)


_MAX_ATTEMPTS = 8


def _generate_once(rng: np.random.Generator, seed: int, index: int, sources: SceneSources, config: SceneConfig,
                   attempt: int = 0):
    if config.layout == "shares":
        return _generate_shares(rng, seed, index, sources, config)
    # a redrawn scene keeps its first draws (size, materials, hard, occupancy): K stays uniform
    head = rng if attempt == 0 else scene_rng(seed, index)
    return _generate_paper(rng, seed, index, sources, config, head)


def _generate_shares(rng: np.random.Generator, seed: int, index: int, sources: SceneSources, config: SceneConfig):
    """Generator 4's scene (the ``"shares"`` layout, ``"dense"`` preset): the same random draws, the same pixels."""
    import cv2

    natural = sources.natural
    h, w = _draw_size(rng, config)
    k_mat = int(rng.integers(config.min_materials, config.max_materials + 1))
    has_bg = bool(rng.random() < config.background_prob)
    hard = bool(rng.random() < config.hard_prob)
    n_parts = k_mat + (1 if has_bg else 0)
    shares = rng.dirichlet(np.full(n_parts, 1.5))
    shares = np.maximum(shares, config.min_share)
    shares = shares / shares.sum()
    min_px = max(16, int(math.ceil(config.min_material_fraction * h * w)))

    free = np.ones((h, w), dtype=np.float32)
    weights = np.empty((k_mat, h, w), dtype=np.float32)
    materials_info: List[Dict[str, Any]] = []
    for k in range(k_mat):
        info: Dict[str, Any] = {}
        bottom = k == k_mat - 1 and not has_bg
        if bottom:
            weights[k] = free
            info["region"] = {"kind": "rest"}
        else:
            remaining = float(shares[k:].sum())
            occupancy = float(np.clip(shares[k] / remaining, 0.02, 0.9))
            wk = weights[k]
            placed = False
            for attempt in range(4):
                s = int(rng.integers(len(natural)))
                pat, params = pattern_map(natural.images[s], rng, (h, w), occupancy=occupancy, region=free,
                                          hard=hard or None, work_scale=config.pattern_scale,
                                          half=natural.half_resolution(s),
                                          return_params=True)
                np.multiply(pat, free, out=wk)
                if int(np.count_nonzero(wk > 0.5)) >= min_px:
                    placed = True
                    info["region"] = {"kind": "pattern", "source": natural.names[s], "pattern": params.to_dict(),
                                      "occupancy": occupancy, "attempts": attempt + 1}
                    break
            if not placed:
                n_free = max(1, int(np.count_nonzero(free > 0.5)))
                blob = _noise_blob(rng, h, w, free, min(1.0, max(occupancy, 1.5 * min_px / n_free)))
                np.multiply(blob, free, out=wk)
                info["region"] = {"kind": "noise", "occupancy": occupancy}
            free -= wk  # = free * (1 - pattern) >= 0, since wk <= free
        materials_info.append(info)

    background = free  # weight of the background (0 everywhere when the scene has none)
    blur_sigma = 0.0
    if hard:
        label = _argmax_planes([*weights, background])
        for k in range(k_mat):
            weights[k] = label == k
        background = (label == k_mat).astype(np.float32)
    elif rng.random() < config.blur_prob:
        blur_sigma = float(rng.uniform(*config.blur_sigma)) * min(h, w)
        blurred = np.stack([_blur(m, blur_sigma) for m in weights])
        if all(np.count_nonzero(blurred[k] > 0.5) >= min_px for k in range(k_mat)):
            weights = np.clip(blurred, 0.0, 1.0, out=blurred)  # float rounding of the filters
        else:
            blur_sigma = 0.0
    total = weights.sum(0)
    if not has_bg:
        # no background: the masks sum to one (renormalise the rounding of the blur)
        weights /= np.maximum(total, np.float32(1e-6))[None]
        np.clip(weights, 0.0, 1.0, out=weights)
        total = weights.sum(0)
    annotated = np.clip(total, 0.0, 1.0, out=total)  # total is a new float32 array
    bg_weight = np.float32(1.0) - annotated

    # appearance: layers weighted and summed (the first one's product starts the sum)
    acc = None
    scratch = (np.empty((h, w, 3), dtype=np.float32), np.empty((h, w, 3), dtype=np.float32))
    shaded = np.empty((h, w), dtype=np.float32)
    bg_info: Dict[str, Any] = {}
    if has_bg:
        b = int(rng.integers(len(natural)))
        bimg = natural.images[b]
        geometry = sample_geometry(bimg.shape[:2], (h, w), rng, zoom_range=(0.5, 1.0), rotate_prob=0.2)
        acc, bg_info = _background_layer(natural, b, geometry, bg_weight, scratch)
    for k in range(k_mat):
        info = materials_info[k]
        img = _material_image(rng, h, w, sources, config, info)
        wk = weights[k]
        if rng.random() < config.shading_prob:
            shade = _shading(rng, h, w, natural, config, info)
            wk = np.multiply(wk, shade, out=shaded)
        acc = _add_weighted(acc, img, wk, scratch)
    if acc is None:  # pragma: no cover - a scene has at least one material
        acc = np.zeros((h, w, 3), dtype=np.float32)
    rgb = cv2.convertScaleAbs(acc)  # rounds and saturates to uint8
    metadata = {
        "generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": int(seed), "index": int(index),
        "height": h, "width": w, "num_materials": k_mat, "hard": hard, "has_background": has_bg,
        "mask_blur_sigma": blur_sigma, "shares": [float(s) for s in shares], "background": bg_info,
        "materials": materials_info, "preset": config.preset, "layout": config.layout, "config": config.to_dict(),
    }
    return SyntheticScene(rgb=rgb, masks=weights, annotated=annotated, metadata=metadata), min_px



# ---------------------------------------------------------------------------------------------------------------
# The "paper" layout: the authors' Generate_2D_Scene_And_Annotation.py / UV_Map_Extractore.py
# ---------------------------------------------------------------------------------------------------------------
# the authors' source pickers take an image smaller than the scene only with these chances per draw (patterns,
# backgrounds, shadows); textures are taken as drawn
_ACCEPT_SMALL = {"pattern": 0.05, "background": 0.03, "shading": 0.04}
_BACKGROUND_RESCALE_PROB = 0.5  # load_background: zoomed out at random, else fitted to the scene
_PATTERN_RESCALE_PROB = 0.3  # get_uv_map and add_shadows: zoomed out at random, else at the source's resolution
_SHADING_HSV_PROB = 0.4
_HARD_MIN_WEIGHT = 0.1  # probability_map_to_one_hot: a pixel whose winner weighs less is background
_MAX_SOURCE_DRAWS = 200
_MAX_PATTERN_DRAWS = 40
_MAX_VISIBILITY_ROUNDS = 6


def _pick_source(rng: np.random.Generator, pool: SourcePool, h: int, w: int, accept_small: float) -> int:
    """An image index as the authors draw it: uniform, redrawn while the image is not larger than the scene on
    both sides except with probability ``accept_small`` per draw (bounded: the last draw is kept)."""
    for _ in range(_MAX_SOURCE_DRAWS):
        i = int(rng.integers(len(pool)))
        sh, sw = pool.images[i].shape[:2]
        if (sw > w and sh > h) or rng.random() < accept_small:
            return i
    return i


def _max_occupancy(rng: np.random.Generator, config: SceneConfig) -> float:
    occupancy = float(rng.random() * rng.random()) * config.occupancy_scale + config.occupancy_base
    if rng.random() < config.occupancy_fixed_prob:
        occupancy = config.occupancy_fixed
    return occupancy


def _paper_region(rng: np.random.Generator, h: int, w: int, natural: SourcePool, config: SceneConfig, hard: bool,
                  max_occupancy: float, min_px: int, out: np.ndarray) -> Dict[str, Any]:
    """One material's pattern map (``get_uv_map``'s inner loop) written into ``out`` (float32 [h, w]); returns
    its metadata. Sources are redrawn until the map has ``min_px`` pixels above 0.5 (theirs: a sum above 100)."""
    from .patterns import authors_pattern_map

    for attempt in range(_MAX_PATTERN_DRAWS):
        s = _pick_source(rng, natural, h, w, _ACCEPT_SMALL["pattern"])
        drawn = authors_pattern_map(natural.images[s], rng, (h, w), max_occupancy=max_occupancy, hard=hard,
                                    soft_prob=config.pattern_soft_prob, rescale_prob=_PATTERN_RESCALE_PROB,
                                    work_scale=config.pattern_scale, half=natural.half_resolution(s))
        if drawn is not None and int(np.count_nonzero(drawn[0] > 0.5)) >= min_px:
            out[...] = drawn[0]
            return {"kind": "pattern", "source": natural.names[s], "pattern": drawn[1].to_dict(),
                    "attempts": attempt + 1}
    out[...] = _noise_blob(rng, h, w, np.ones((h, w), dtype=np.float32), max_occupancy)
    return {"kind": "noise", "occupancy": max_occupancy}


def _mix_paper(maps: np.ndarray, blur_kernel: int, even: bool, hard: bool) -> np.ndarray:
    """The authors' mixing of raw maps float32 [K, h, w] (a new array): Gaussian blur (odd kernel, OpenCV's sigma
    for it; 0 = none), then even (divided by the sum) or first-come sharing, then one-hot for hard scenes (a pixel
    whose winner weighs under 0.1 is background)."""
    import cv2

    mixed = np.empty_like(maps)
    for k in range(maps.shape[0]):
        mixed[k] = cv2.GaussianBlur(maps[k], (blur_kernel, blur_kernel), 0) if blur_kernel else maps[k]
    if even:
        total = mixed.sum(0)
        total += np.float32(1e-6)
        mixed /= total[None]
    else:
        left = np.ones(maps.shape[1:], dtype=np.float32)
        for k in range(maps.shape[0]):
            mixed[k] *= left
            left -= mixed[k]
    np.clip(mixed, 0.0, 1.0, out=mixed)
    if hard:
        label = _argmax_planes(list(mixed))
        best = np.take_along_axis(mixed, label[None].astype(np.intp), axis=0)[0]
        keep = best >= np.float32(_HARD_MIN_WEIGHT)
        for k in range(maps.shape[0]):
            mixed[k] = (label == k) & keep
    return mixed


def _paper_texture(rng: np.random.Generator, h: int, w: int, textures: SourcePool, config: SceneConfig,
                   info: Dict[str, Any]) -> np.ndarray:
    """A texture as the authors' ``load_texture`` makes it: uint8 [h, w, 3]."""
    import cv2

    t = int(rng.integers(len(textures)))
    tex = textures.images[t]
    rot, mirror, upside = (bool(rng.random() < 0.5) for _ in range(3))
    if rot:
        tex = np.rot90(tex)
    if mirror:
        tex = tex[:, ::-1]
    if upside:
        tex = tex[::-1]
    tex = np.ascontiguousarray(tex)
    th, tw = tex.shape[:2]
    tiled = bool(rng.random() < config.texture_tile_prob)
    info.update(kind="texture", source=textures.names[t], rot90=rot, fliplr=mirror, flipud=upside)
    if tiled:
        r = 1.0
        if rng.random() < config.texture_downscale_prob:
            r = 1.0 + float(rng.random()) * (min(th, tw) / config.texture_min_tile - 1.0)
        offset = (float(rng.uniform(0, tw)), float(rng.uniform(0, th)))
        info.update(tiling="wrap", scale=r, offset=list(offset))
    else:
        # scale_texture: both sides scaled by scene width / shorter texture side, then stretched to cover the
        # scene (a quirk of theirs: the width is used for both ratios, so textures are stretched on tall scenes)
        r = w / min(th, tw)
        nw, nh = max(int(r * tw), w), max(int(r * th), h)
        x0, y0 = int(rng.integers(nw - w + 1)), int(rng.integers(nh - h + 1))
        info.update(tiling="stretch", size=[nw, nh], offset=[x0, y0])
    shift = None
    if rng.random() < config.hue_shift_prob:
        shift = int(rng.integers(0, 255))
        info["hue_shift"] = shift

    def recolour(img: np.ndarray) -> np.ndarray:
        # theirs adds the shift modulo 255 to OpenCV's hue (0..179), whose converter wraps 180..254 back by 180
        hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
        table = (((np.arange(256) + shift) % 255) % 180).astype(np.uint8)
        return cv2.cvtColor(cv2.merge([cv2.LUT(hue, table), sat, val]), cv2.COLOR_HSV2RGB)

    if tiled:
        return _texture_layer(tex, h, w, r, 0.0, offset, False, True, recolour if shift is not None else None)
    img = resize_image(tex, (nw, nh))[y0:y0 + h, x0:x0 + w]
    return recolour(img) if shift is not None else np.ascontiguousarray(img)


def _paper_shading(rng: np.random.Generator, h: int, w: int, natural: SourcePool, config: SceneConfig,
                   info: Dict[str, Any]) -> np.ndarray:
    """A shadow map as the authors' ``add_shadows`` makes it: float32 [h, w] in [1 - strength, 1]."""
    import cv2
    from .patterns import authors_geometry

    s = _pick_source(rng, natural, h, w, _ACCEPT_SMALL["shading"])
    img = natural.images[s]
    geometry = authors_geometry(img.shape[:2], (h, w), rng, rescale_prob=_PATTERN_RESCALE_PROB)
    hsv = bool(rng.random() < _SHADING_HSV_PROB)
    prop = ("H", "S", "V")[int(rng.integers(3))] if hsv else ("B", "G", "R")[int(rng.integers(3))]
    kernel = 3 + 2 * int(rng.integers(1, 10))
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for that kernel (theirs passes 0)
    strength = 1.0 if rng.random() < config.shading_full_prob else float(rng.uniform(*config.shading_strength))
    params = PatternParams(**geometry, property=prop, blur_sigma=sigma, work_scale=config.pattern_scale)
    small = property_plane(img, params.at_working_resolution(), half=natural.half_resolution(s))
    peak = float(small.max())
    gain = strength / peak if peak > 1e-6 else strength
    small *= np.float32(gain)
    small += np.float32(1.0 - strength)
    plane = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) if small.shape != (h, w) else small
    info["shading"] = {"source": natural.names[s], "strength": strength, "pattern": params.to_dict()}
    return plane


def _generate_paper(rng: np.random.Generator, seed: int, index: int, sources: SceneSources, config: SceneConfig,
                    head: Optional[np.random.Generator] = None):
    """A scene of the authors' distribution (``generate_segmentation``; the ``"paper"`` layout); the scene's first
    draws (size, materials, hard, occupancy, background) come from ``head`` (default ``rng``)."""
    import cv2

    natural = sources.natural
    head = rng if head is None else head
    h, w = _draw_size(head, config)
    k_mat = int(head.integers(config.min_materials, config.max_materials + 1))
    hard = bool(head.random() < config.hard_prob)
    max_occupancy = _max_occupancy(head, config)
    has_bg = bool(head.random() < config.background_prob)
    min_px = max(16, int(math.ceil(config.min_material_fraction * h * w)))

    maps = np.empty((k_mat, h, w), dtype=np.float32)
    materials_info: List[Dict[str, Any]] = []
    for k in range(k_mat):
        materials_info.append({"region": _paper_region(rng, h, w, natural, config, hard, max_occupancy, min_px,
                                                       maps[k])})
    blur_kernel = 3 + 2 * int(rng.integers(0, 4)) if rng.random() < config.blur_prob else 0
    even = bool(rng.random() < config.even_mix_prob)
    # every material stays visible (theirs can hide one under those before it): a hidden one's map is redrawn
    weights = _mix_paper(maps, blur_kernel, even, hard)
    for _ in range(_MAX_VISIBILITY_ROUNDS):
        hidden = [k for k in range(k_mat) if int(np.count_nonzero(weights[k] > 0.5)) < min_px]
        if not hidden:
            break
        for k in hidden:
            region = _paper_region(rng, h, w, natural, config, hard, max_occupancy, min_px, maps[k])
            region["redrawn"] = materials_info[k]["region"].get("redrawn", 0) + 1
            materials_info[k]["region"] = region
        weights = _mix_paper(maps, blur_kernel, even, hard)
    del maps
    annotated = weights.sum(0)
    np.clip(annotated, 0.0, 1.0, out=annotated)
    if not has_bg:  # the last material takes the background's part
        weights[-1] += np.float32(1.0) - annotated
        np.clip(weights[-1], 0.0, 1.0, out=weights[-1])
        annotated = np.clip(weights.sum(0), 0.0, 1.0)
    bg_weight = np.float32(1.0) - annotated

    acc = None
    scratch = (np.empty((h, w, 3), dtype=np.float32), np.empty((h, w, 3), dtype=np.float32))
    shaded = np.empty((h, w), dtype=np.float32)
    bg_info: Dict[str, Any] = {}
    if has_bg:
        from .patterns import authors_geometry

        b = _pick_source(rng, natural, h, w, _ACCEPT_SMALL["background"])
        bimg = natural.images[b]
        geometry = authors_geometry(bimg.shape[:2], (h, w), rng, rescale_prob=_BACKGROUND_RESCALE_PROB, fit=True)
        acc, bg_info = _background_layer(natural, b, geometry, bg_weight, scratch)
    textures = sources.textures
    for k in range(k_mat):
        info = materials_info[k]
        if textures is not None and len(textures) and rng.random() < config.texture_prob:
            img = _paper_texture(rng, h, w, textures, config, info)
        else:
            colour = rng.integers(0, 255, size=3)
            info.update(kind="uniform", colour=[int(v) for v in colour])
            img = cv2.merge([np.full((h, w), int(c), dtype=np.uint8) for c in colour])
        wk = weights[k]
        if rng.random() < config.shading_prob:
            wk = np.multiply(wk, _paper_shading(rng, h, w, natural, config, info), out=shaded)
        acc = _add_weighted(acc, img, wk, scratch)
    rgb = cv2.convertScaleAbs(acc)  # rounds and saturates to uint8
    blur_sigma = 0.3 * ((blur_kernel - 1) * 0.5 - 1) + 0.8 if blur_kernel else 0.0
    metadata = {
        "generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": int(seed), "index": int(index),
        "height": h, "width": w, "num_materials": k_mat, "hard": hard, "has_background": has_bg,
        "max_occupancy": max_occupancy, "mask_mixing": "even" if even else "first-come",
        "mask_blur_kernel": blur_kernel, "mask_blur_sigma": blur_sigma, "background": bg_info,
        "materials": materials_info, "preset": config.preset, "layout": config.layout, "config": config.to_dict(),
    }
    return SyntheticScene(rgb=rgb, masks=weights, annotated=annotated, metadata=metadata), min_px
