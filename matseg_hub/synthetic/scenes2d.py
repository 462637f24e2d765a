"""2D MatSeg scenes: materials scattered over an image by natural-image pattern maps (SPEC §4).

A scene is a pure function of ``(seed, index, sources, config)``: its random generator is
:func:`scene_rng` ``(seed, index)``, the ``"scenes2d"`` stream of :mod:`matseg_hub.utils.seeds` (``SeedSequence``
of the stream's id word, ``seed`` and ``index``: no other generator of the package draws the same numbers), so scenes
can be made in any order, by any number of workers or machines, and scene ``i`` is always the same bytes.

How one scene is made (all work at scene resolution with OpenCV, float32):

1. size ``H x W`` and ``K`` materials (``config.min_materials``..``max_materials``);
2. each material's share of the image (Dirichlet), plus the background's share unless the scene has none;
3. regions, top material first: a pattern map (:func:`~matseg_hub.synthetic.patterns.pattern_map`) whose thresholds sit at
   quantiles of the still-free area, so each material gets its share; material ``k`` covers
   ``w_k = pattern_k * free`` and leaves ``free * (1 - pattern_k)`` (soft, overlapping, scattered regions);
   the bottom material takes what is left when there is no background;
4. optional blur of all weights (gradual transitions) or, for hard scenes, one-hot weights;
5. each material a texture (tiled with wrap or mirror, random scale, rotation, flips, hue shift, tint of gray
   textures) or a uniform/gradient colour, optionally shaded by a map from another natural image;
6. the background is a natural-image crop; the image is ``sum_k w_k * material_k + w_bg * background``;
7. outputs: RGB uint8, masks ``w_k`` (float32, 0-1), annotated region ``1 - w_bg`` and metadata (seed, index,
   every parameter drawn, source names).

Every material is guaranteed visible: at least ``config.min_material_fraction`` of the pixels have its mask above
0.5 (a pattern is redrawn, then replaced by a smooth-noise blob, when it does not reach that).

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
# stream's id word (matseg_hub.utils.seeds), so 2D and 3D scenes of one seed no longer share random numbers
GENERATOR_VERSION = 4


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneConfig:
    """What scenes look like. Probabilities are per scene or per material as named.

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
        preset: the name of the :data:`SCENE_PRESETS` entry the settings started from (``from_preset``), recorded
            in every scene's metadata; ``None`` when the config was built field by field.
    """

    size: Optional[Tuple[int, int]] = None
    min_size: int = 400
    max_size: int = 1000
    min_materials: int = 2
    max_materials: int = 5
    background_prob: float = 0.85
    hard_prob: float = 0.25
    texture_prob: float = 0.85
    gradient_prob: float = 0.5
    shading_prob: float = 0.6
    shading_strength: Tuple[float, float] = (0.2, 0.8)
    blur_prob: float = 0.4
    blur_sigma: Tuple[float, float] = (0.002, 0.012)
    texture_tile: Tuple[float, float] = (0.1, 1.0)
    texture_rotate_prob: float = 0.4
    hue_shift_prob: float = 0.12
    tint_gray_prob: float = 0.8
    min_share: float = 0.06
    min_material_fraction: float = 0.002
    pattern_scale: float = 0.5
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
        if self.max_materials * self.min_share >= 1.0:
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
        tuple (``preset`` is left out when ``None``)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "preset" and v is None:
                continue
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
#: defaults (generator 4: 2-5 materials filling most of the image, 15 % of scenes without background).
SCENE_PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "dense": dict(min_size=400, max_size=1000, min_materials=2, max_materials=5, background_prob=0.85,
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
        scene, min_px = _generate_once(rng, seed, index, sources, config)
        if all(int(np.count_nonzero(m > 0.5)) >= min_px for m in scene.masks):
            if attempt:
                scene.metadata["attempt"] = attempt
            return scene
        logger.debug("scene %d of seed %d: a material is not visible; redrawing (attempt %d)", index, seed, attempt + 1)
    raise MatSegError(f"scene {index} of seed {seed}: could not place every material visibly in "
                      f"{_MAX_ATTEMPTS} attempts; use fewer materials or larger scenes")


_MAX_ATTEMPTS = 8


def _generate_once(rng: np.random.Generator, seed: int, index: int, sources: SceneSources, config: SceneConfig):
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
        bg = _warp(bimg, geometry, cv2.BORDER_REFLECT_101, natural.half_resolution(b))
        bg_info = {"source": natural.names[b], "geometry": geometry}
        acc = _add_weighted(acc, bg, bg_weight, scratch)
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
        "materials": materials_info, "config": config.to_dict(),
    }
    return SyntheticScene(rgb=rgb, masks=weights, annotated=annotated, metadata=metadata), min_px
