"""Pattern maps: soft masks implanted from natural images (MatSeg paper §3.1, SPEC §4).

A pattern map is made from one natural image in four steps:

1. geometry: a random crop of the image, rescaled, rotated and possibly mirrored, warped to the output size
   (one ``cv2.warpAffine``, mirrored borders, so any source size works; a crop that shrinks the source 2x or more
   is read from a half-resolution copy of it, see :func:`half_resolution`);
2. property: one of ``R, G, B, H, S, V`` or a random signed mix of ``R, G, B`` (``mix``), scaled to [0, 1],
   possibly inverted;
3. optional Gaussian blur of the property;
4. a fuzzy threshold: 0 below ``t_lo``, 1 above ``t_hi``, linear between (``t_lo == t_hi``: a hard threshold).

:func:`authors_pattern_map` draws a map the way the authors' ``UV_Map_Extractore.get_uv_binary_map`` does (the
scene generator's default, SPEC §4): an unrotated crop at the source's resolution, one of ``B G R`` (70 %) or
``H S V`` (30 %) divided by 255 or by its maximum, a high threshold redrawn until at most ``max_occupancy`` of the
crop is above it, and a low threshold (half of the soft scenes' maps) below it.

Every random choice is recorded in a :class:`PatternParams` (a JSON-friendly dataclass), so that
``render_pattern(image, params)`` reproduces the map bit for bit. The thresholds are placed at quantiles of the
property, so ``occupancy`` (the fraction of the output at 1) can be asked for; ``region`` restricts the
quantiles to part of the output (used by the scene generator to share the free area between materials).

Example::

    rng = np.random.default_rng(0)
    soft, params = pattern_map(image, rng, size=(512, 512), return_params=True)   # float32 [512, 512] in [0, 1]
    assert np.array_equal(render_pattern(image, params), soft)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegInputError

PROPERTIES: Tuple[str, ...] = ("R", "G", "B", "H", "S", "V", "mix")
_SAMPLE_STRIDE = 4  # quantiles are estimated on every 4th row/column (1/16 of the pixels)
_MIN_SPREAD = 0.02  # a property whose 5-95 % range is below this is treated as flat


@dataclass(frozen=True)
class PatternParams:
    """Everything needed to reproduce a pattern map from its source image (see :func:`render_pattern`).

    Geometry: output pixel ``(x, y)`` samples the source at
    ``center + scale * R(angle) * F(flip) * ((x, y) - output_center)``, in pixels of the source image given.
    """

    height: int
    width: int
    source_height: int
    source_width: int
    center_x: float
    center_y: float
    scale: float  # source pixels per output pixel
    angle: float  # degrees
    flip: bool
    property: str
    mix: Optional[Tuple[float, float, float]] = None  # weights of R, G, B when property == "mix"
    invert: bool = False
    blur_sigma: float = 0.0  # in output pixels; 0 = no blur
    t_lo: float = 0.5
    t_hi: float = 0.5
    work_scale: float = 1.0  # the property is computed at this fraction of the output size, then resized (bilinear)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dict (``PatternParams.from_dict`` reverses it)."""
        out = dict(self.__dict__)  # flat dataclass: no deep copy needed
        out["mix"] = None if self.mix is None else [float(v) for v in self.mix]
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PatternParams":
        data = dict(data)
        if data.get("mix") is not None:
            data["mix"] = tuple(float(v) for v in data["mix"])
        return cls(**data)

    def affine_matrix(self) -> np.ndarray:
        """float64 [2, 3]: output pixel -> source pixel (for ``cv2.warpAffine`` with ``WARP_INVERSE_MAP``)."""
        a = math.radians(self.angle)
        c, s = math.cos(a) * self.scale, math.sin(a) * self.scale
        fx = -1.0 if self.flip else 1.0
        lin = np.array([[c * fx, -s], [s * fx, c]], dtype=np.float64)
        ox, oy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        offset = np.array([self.center_x, self.center_y]) - lin @ np.array([ox, oy])
        return np.concatenate([lin, offset[:, None]], axis=1)

    def at_working_resolution(self) -> "PatternParams":
        """These parameters at their working resolution (``work_scale``): the same source region warped to fewer
        output pixels (``height``/``width`` scaled by ``work_scale``, rounded up, at least 2), ``work_scale=1``.
        ``self`` when ``work_scale >= 1``."""
        if self.work_scale >= 1.0:
            return self
        h = max(2, int(math.ceil(self.height * self.work_scale)))
        w = max(2, int(math.ceil(self.width * self.work_scale)))
        return PatternParams(**{**self.__dict__, "height": h, "width": w, "work_scale": 1.0,
                                "scale": self.scale * self.width / w,
                                "blur_sigma": self.blur_sigma * w / self.width})


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise MatSegInputError("a pattern source must be an RGB uint8 array [H, W, 3], got "
                               f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    if min(image.shape[:2]) < 2:
        raise MatSegInputError(f"a pattern source must be at least 2x2 pixels, got {image.shape[:2]}")
    return image


def _size(size: Union[int, Sequence[int], None], image: np.ndarray) -> Tuple[int, int]:
    if size is None:
        return int(image.shape[0]), int(image.shape[1])
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise MatSegInputError(f"size must be positive (height, width), got {size}")
    return h, w


HALF_RES_SCALE = 2.0  # crops that shrink the source at least this much are taken from its half-resolution copy


def half_resolution(image: np.ndarray) -> np.ndarray:
    """``image`` averaged over 2x2 blocks (an odd last row/column is dropped): the copy :func:`warp_source` reads
    for crops that shrink the source 2x or more. :class:`~matseg_hub.synthetic.sources.SourcePool` keeps one per image."""
    import cv2

    h, w = image.shape[0] // 2, image.shape[1] // 2
    return cv2.resize(image[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)


def _halved(params: PatternParams, half: np.ndarray) -> PatternParams:
    """``params`` for the half-resolution copy: source pixel ``u`` is ``(u + 0.5) / 2 - 0.5`` there."""
    return PatternParams(**{**params.__dict__, "source_height": int(half.shape[0]),
                            "source_width": int(half.shape[1]), "scale": params.scale / 2.0,
                            "center_x": (params.center_x + 0.5) / 2.0 - 0.5,
                            "center_y": (params.center_y + 0.5) / 2.0 - 0.5})


def warp_source(image: np.ndarray, params: PatternParams, border: Optional[int] = None,
                half: Optional[np.ndarray] = None) -> np.ndarray:
    """The source crop seen by ``params``: uint8 [height, width, C] (bilinear, mirrored borders).

    A crop that shrinks the source 2x or more (``params.scale >= 2``) is read from the source's half-resolution
    copy (:func:`half_resolution`; ``half`` when given, else made here): a bilinear sample then averages the
    source's neighbourhood instead of skipping pixels (less aliasing), and the warp reads 4x fewer bytes
    (1.4-1.6x faster in the generator).
    An unrotated crop that lies inside the source is cut at whole pixels and resized
    (:func:`~matseg_hub.utils.images.resize_image`: area-averaged when shrinking, about 2x faster than the warp);
    its samples move by at most half a source pixel from the affine mapping. Other crops are warped (bilinear,
    :func:`~matseg_hub.utils.images.warp_affine`, ``border`` outside the source, mirrored by default).
    """
    import cv2

    from ..utils.images import resize_image, warp_affine

    if params.scale >= HALF_RES_SCALE and min(image.shape[:2]) >= 4:
        if half is None:
            half = half_resolution(image)
        image, params = half, _halved(params, half)
    h, w = params.height, params.width
    if params.angle == 0.0:
        x0 = int(round(params.center_x - 0.5 * w * params.scale))
        y0 = int(round(params.center_y - 0.5 * h * params.scale))
        x1 = x0 + max(1, int(round(w * params.scale)))
        y1 = y0 + max(1, int(round(h * params.scale)))
        if x0 >= 0 and y0 >= 0 and x1 <= image.shape[1] and y1 <= image.shape[0]:
            out = resize_image(image[y0:y1, x0:x1], (w, h))
            return cv2.flip(out, 1) if params.flip else out
    return warp_affine(image, params.affine_matrix(), (w, h), border)


def property_plane(image: np.ndarray, params: PatternParams, crop: Optional[np.ndarray] = None,
                   half: Optional[np.ndarray] = None) -> np.ndarray:
    """The (warped, possibly inverted and blurred) property of ``params``: float32 [height, width] in [0, 1].

    ``crop``: the already warped source at the working resolution (``warp_source``), to try several properties
    of one crop without warping again. ``half``: the source's :func:`half_resolution` copy, if kept.
    """
    import cv2

    work = params.at_working_resolution()
    if crop is None:
        crop = warp_source(image, work, half=half)
    prop = params.property
    if prop in ("R", "G", "B"):
        plane = crop[:, :, "RGB".index(prop)].astype(np.float32)
        plane *= np.float32(1.0 / 255.0)
    elif prop in ("H", "S", "V"):
        hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
        plane = hsv[:, :, "HSV".index(prop)].astype(np.float32)
        plane *= np.float32(1.0 / (180.0 if prop == "H" else 255.0))
    elif prop == "mix":
        if params.mix is None:
            raise MatSegInputError("property 'mix' needs mix weights (3 floats)")
        w = np.asarray(params.mix, dtype=np.float32)
        lo = float(np.minimum(w, 0).sum()) * 255.0
        hi = float(np.maximum(w, 0).sum()) * 255.0
        span = max(hi - lo, 1e-6)
        m = np.concatenate([(w / span).reshape(1, 3), [[-lo / span]]], axis=1).astype(np.float32)
        plane = cv2.transform(crop.astype(np.float32), m).reshape(work.height, work.width)
    else:
        raise MatSegInputError(f"unknown pattern property {prop!r}; expected one of {PROPERTIES}")
    if params.invert:
        np.subtract(np.float32(1.0), plane, out=plane)
    if work.blur_sigma > 0:
        plane = cv2.GaussianBlur(plane, (0, 0), float(work.blur_sigma), borderType=cv2.BORDER_REFLECT_101)
    if (work.height, work.width) != (params.height, params.width):
        plane = cv2.resize(plane, (params.width, params.height), interpolation=cv2.INTER_LINEAR)
    return plane


def fuzzy_threshold(plane: np.ndarray, t_lo: float, t_hi: float) -> np.ndarray:
    """0 where ``plane <= t_lo``, 1 where ``plane >= t_hi``, linear between: float32, same shape.

    With ``t_lo == t_hi`` it is a hard threshold (1 where ``plane > t_hi``).
    """
    if t_hi < t_lo:
        raise MatSegInputError(f"t_hi ({t_hi}) must be >= t_lo ({t_lo})")
    if t_hi - t_lo < 1e-6:
        return (plane > np.float32(t_hi)).astype(np.float32)
    out = plane - np.float32(t_lo)
    out *= np.float32(1.0 / (t_hi - t_lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def render_pattern(image: np.ndarray, params: PatternParams) -> np.ndarray:
    """Reproduce a pattern map from its source image and parameters: float32 [height, width] in [0, 1]."""
    _check_image(image)
    if (image.shape[0], image.shape[1]) != (params.source_height, params.source_width):
        raise MatSegInputError(f"the parameters were drawn for a {params.source_height}x{params.source_width} source, "
                               f"got {image.shape[0]}x{image.shape[1]}")
    return fuzzy_threshold(property_plane(image, params), params.t_lo, params.t_hi)


def _sample_values(plane: np.ndarray, region: Optional[np.ndarray]) -> np.ndarray:
    s = _SAMPLE_STRIDE if min(plane.shape) >= 8 * _SAMPLE_STRIDE else 1
    values = plane[::s, ::s]
    if region is not None:
        keep = region[::s, ::s] > 0.5
        if keep.any():
            values = values[keep]
    return values.ravel()


def _sorted_quantile(sorted_values: np.ndarray, q: float) -> float:
    """``numpy.quantile(values, q)`` (linear method) of already sorted values: one sort serves every quantile."""
    n = sorted_values.size
    pos = q * (n - 1)
    lo = min(int(math.floor(pos)), n - 1)
    hi = min(lo + 1, n - 1)
    a, b = float(sorted_values[lo]), float(sorted_values[hi])
    return a + (pos - lo) * (b - a)


def sample_geometry(image_shape: Tuple[int, int], size: Tuple[int, int], rng: np.random.Generator, *,
                    zoom_range: Tuple[float, float] = (0.35, 1.0), rotate_prob: float = 0.5,
                    flip_prob: float = 0.5) -> Dict[str, Any]:
    """Random crop/rescale/rotation/flip of a ``image_shape`` source for a ``size`` output (PatternParams fields).

    ``zoom_range``: the crop's shorter side as a fraction of the source's shorter side (then rescaled to the output).
    """
    sh, sw = int(image_shape[0]), int(image_shape[1])
    h, w = size
    zoom = float(rng.uniform(*zoom_range))
    # source pixels per output pixel so that the crop covers `zoom` of the source (in its shorter dimension)
    scale = zoom * min(sh / h, sw / w)
    angle = float(rng.uniform(-180.0, 180.0)) if rng.random() < rotate_prob else 0.0
    flip = bool(rng.random() < flip_prob)
    half_w, half_h = 0.5 * w * scale, 0.5 * h * scale
    cx = float(rng.uniform(min(half_w, sw / 2), max(sw - half_w, sw / 2)))
    cy = float(rng.uniform(min(half_h, sh / 2), max(sh - half_h, sh / 2)))
    return dict(height=h, width=w, source_height=sh, source_width=sw, center_x=cx, center_y=cy, scale=scale,
                angle=angle, flip=flip)


def pattern_map(image: np.ndarray, rng: np.random.Generator, size: Union[int, Sequence[int], None] = None, *,
                occupancy: Optional[float] = None, region: Optional[np.ndarray] = None, hard: Optional[bool] = None,
                properties: Sequence[str] = PROPERTIES, softness_range: Tuple[float, float] = (0.0, 0.6),
                blur_prob: float = 0.3, blur_sigma_range: Tuple[float, float] = (0.5, 4.0),
                zoom_range: Tuple[float, float] = (0.35, 1.0), rotate_prob: float = 0.5, flip_prob: float = 0.5,
                work_scale: float = 1.0, half: Optional[np.ndarray] = None, return_params: bool = False):
    """A random soft pattern map from a natural image.

    Args:
        image: uint8 [H, W, 3] RGB source (any size; it is cropped, rescaled and rotated to ``size``).
        rng: the random generator (every random choice comes from it).
        size: output ``(height, width)`` or an int; default the image's size.
        occupancy: fraction of the output (of ``region`` when given) where the map exceeds 0.5; default random
            in [0.1, 0.7]. The linear zone is centred on that quantile of the property (exact up to ties).
        region: float32/bool [height, width]; quantiles are taken where ``region > 0.5`` (all pixels if empty).
        hard: hard threshold (``t_lo == t_hi``); default random (30 %).
        properties: the properties to draw from (``R G B H S V mix``). Flat properties (no contrast in the crop)
            are skipped when another one has contrast.
        softness_range: width of the linear zone, as a fraction of the property's 5-95 % range.
        blur_prob, blur_sigma_range: chance and sigma (output pixels) of a Gaussian blur of the property.
        zoom_range, rotate_prob, flip_prob: geometry (see :func:`sample_geometry`).
        work_scale: compute the property at this fraction of the output size and resize it (bilinear) before the
            threshold: about ``1 / work_scale**2`` times faster, edges stay sharp.
        half: the image's :func:`half_resolution` copy when one is kept (a pool of sources keeps one per image);
            made when needed otherwise. It changes nothing in the result, only the time.
        return_params: also return the :class:`PatternParams`.

    Returns:
        float32 [height, width] in [0, 1]; with ``return_params``, ``(map, params)``.
    """
    _check_image(image)
    h, w = _size(size, image)
    props = [p for p in properties if p in PROPERTIES]
    if not props:
        raise MatSegInputError(f"properties must name some of {PROPERTIES}, got {properties}")
    if region is not None and region.shape[:2] != (h, w):
        raise MatSegInputError(f"region must be [{h}, {w}], got {region.shape}")
    geometry = sample_geometry(image.shape[:2], (h, w), rng, zoom_range=zoom_range, rotate_prob=rotate_prob,
                               flip_prob=flip_prob)
    if occupancy is None:
        occupancy = float(rng.uniform(0.1, 0.7))
    if not 0.0 <= occupancy <= 1.0:
        raise MatSegInputError(f"occupancy must be in [0, 1], got {occupancy}")
    if hard is None:
        hard = bool(rng.random() < 0.3)
    invert = bool(rng.random() < 0.5)
    blur = float(rng.uniform(*blur_sigma_range)) if rng.random() < blur_prob else 0.0
    softness = 0.0 if hard else float(rng.uniform(*softness_range))
    order = [props[i] for i in rng.permutation(len(props))]
    mix = tuple(float(v) for v in rng.uniform(-1.0, 1.0, size=3))
    if max(abs(v) for v in mix) < 1e-3:
        mix = (1.0, 0.0, 0.0)

    if not 0.0 < work_scale <= 1.0:
        raise MatSegInputError(f"work_scale must be in (0, 1], got {work_scale}")
    chosen = None
    crop = None
    for prop in order:
        params = PatternParams(**geometry, property=prop, mix=mix if prop == "mix" else None, invert=invert,
                               blur_sigma=blur, work_scale=float(work_scale))
        if crop is None:
            crop = warp_source(image, params.at_working_resolution(), half=half)
        plane = property_plane(image, params, crop=crop)
        values = np.sort(_sample_values(plane, region))
        q05, q95 = _sorted_quantile(values, 0.05), _sorted_quantile(values, 0.95)
        if chosen is None or q95 - q05 >= _MIN_SPREAD:
            chosen = (params, plane, values, q95 - q05)
        if q95 - q05 >= _MIN_SPREAD:
            break
    params, plane, values, spread = chosen
    # the linear zone is centred on the quantile, so `occupancy` is the fraction above 0.5 (and about the mean)
    t_mid = _sorted_quantile(values, 1.0 - occupancy)
    half = 0.5 * softness * spread
    t_lo, t_hi = t_mid - half, t_mid + half
    params = PatternParams(**{**params.__dict__, "t_lo": t_lo, "t_hi": t_hi})
    out = fuzzy_threshold(plane, t_lo, t_hi)
    return (out, params) if return_params else out


# ---------------------------------------------------------------------------------------------------------------
# The authors' pattern maps (UV_Map_Extractore.get_uv_binary_map)
# ---------------------------------------------------------------------------------------------------------------
def authors_geometry(image_shape: Tuple[int, int], size: Tuple[int, int], rng: np.random.Generator, *,
                     rescale_prob: float = 0.3, fit: bool = False) -> Dict[str, Any]:
    """The authors' crop of an ``image_shape`` source for a ``size`` output (PatternParams geometry fields).

    As in ``get_uv_map``/``add_shadows``/``load_background``: a source smaller than the output is first scaled up
    to cover it; then, with probability ``rescale_prob``, it is shrunk by a factor uniform in ``[1, r_max]``
    (``r_max``: the factor that makes it just cover the output), otherwise shrunk by ``r_max`` (``fit=True``, the
    background) or kept at its resolution (``fit=False``); then a uniformly placed unrotated, unmirrored
    ``size`` window is cut. ``scale`` is in source pixels per output pixel.
    """
    sh, sw = int(image_shape[0]), int(image_shape[1])
    h, w = int(size[0]), int(size[1])
    r_max = min(sw / w, sh / h)
    scale = min(r_max, 1.0)  # a smaller source is scaled up to cover the output
    r_max = max(r_max / scale, 1.0)
    if rng.random() < rescale_prob:
        scale *= 1.0 + float(rng.random()) * (r_max - 1.0)
    elif fit:
        scale *= r_max
    half_w, half_h = 0.5 * w * scale, 0.5 * h * scale
    cx = float(rng.uniform(half_w, sw - half_w)) if sw - half_w > half_w else sw / 2.0
    cy = float(rng.uniform(half_h, sh - half_h)) if sh - half_h > half_h else sh / 2.0
    return dict(height=h, width=w, source_height=sh, source_width=sw, center_x=cx, center_y=cy, scale=float(scale),
                angle=0.0, flip=False)


_AUTHORS_HIGH_TRIES = 20  # get_uv_binary_map gives up (an empty map) after 20 high and 30 draws in all
_AUTHORS_ALL_TRIES = 30


def authors_pattern_map(image: np.ndarray, rng: np.random.Generator, size: Sequence[int], *, max_occupancy: float,
                        hard: bool, soft_prob: float = 0.5, hsv_prob: float = 0.3, max_norm_prob: float = 0.5,
                        rescale_prob: float = 0.3, work_scale: float = 1.0, half: Optional[np.ndarray] = None
                        ) -> Optional[Tuple[np.ndarray, PatternParams]]:
    """A pattern map drawn as the authors' ``get_uv_binary_map`` draws it, or ``None`` where theirs gives up.

    Args:
        image: uint8 [H, W, 3] RGB source.
        rng: the random generator.
        size: output ``(height, width)``.
        max_occupancy: the largest fraction of the output above the high threshold (the scene's draw).
        hard: the scene is hard (both thresholds equal).
        soft_prob: chance that a soft scene's map has a linear zone (theirs: 0.5).
        hsv_prob: chance of an ``H S V`` channel instead of ``B G R`` (0.3); max_norm_prob: chance that the channel is
            divided by its maximum instead of 255 (0.5).
        rescale_prob: chance of a zoomed-out crop (:func:`authors_geometry`).
        work_scale, half: as in :func:`pattern_map` (speed only; the thresholds are placed on the working plane).

    Returns:
        ``(map, params)``: float32 [height, width] in [0, 1] and its :class:`PatternParams` (thresholds in the
        units of :func:`property_plane`, so :func:`render_pattern` reproduces the map), or ``None`` when no high
        threshold in 20 draws leaves between 1 % and ``max_occupancy`` of the crop above it (the caller draws
        another source, as theirs does).

    The authors' fractions are counted on every 4th row and column. Two of their tests never fire (sums compared
    with a sign error): the 2000-pixel escape and the cap on the linear zone; they do not here either, so the linear
    zone may span the whole range below the high threshold, as theirs does.
    """
    _check_image(image)
    h, w = int(size[0]), int(size[1])
    geometry = authors_geometry(image.shape[:2], (h, w), rng, rescale_prob=rescale_prob)
    hsv = bool(rng.random() < hsv_prob)
    prop = ("H", "S", "V")[int(rng.integers(3))] if hsv else ("B", "G", "R")[int(rng.integers(3))]
    params = PatternParams(**geometry, property=prop, work_scale=float(work_scale))
    plane = property_plane(image, params, half=half)
    values = np.sort(_sample_values(plane, None))
    n = values.size
    # their map = plane * c: 255-based channels (OpenCV's hue, 0..179, over 255 too) or over the channel's maximum;
    # their thresholds t are in map units, t / c in the plane's
    if rng.random() < max_norm_prob:
        peak = float(values[-1])
        if peak <= 1e-6:
            return None  # theirs divides by zero: nothing is above any threshold
        c = 1.0 / peak
    else:
        c = 180.0 / 255.0 if prop == "H" else 1.0

    def above(t: float) -> float:
        return 1.0 - np.searchsorted(values, t, side="right") / n

    tries = 0
    while True:
        t_hi = float(rng.random())
        tries += 1
        if tries > _AUTHORS_HIGH_TRIES:
            return None
        up = above(t_hi / c)
        if up > max_occupancy:
            continue
        if min(up, 1.0 - up) > 0.01:
            break
    while True:
        tries += 1
        if tries > _AUTHORS_ALL_TRIES:
            return None
        t_lo = float(rng.random()) * t_hi
        if rng.random() >= soft_prob or hard:
            t_lo = t_hi
        if rng.random() < 0.01:
            continue
        low = np.searchsorted(values, t_lo / c, side="left") / n
        if low * n < 2:  # theirs redraws when at most one pixel is below
            continue
        if min(low, 1.0 - low) > 0.01 or rng.random() > 0.1:
            break
    params = PatternParams(**{**params.__dict__, "t_lo": t_lo / c, "t_hi": t_hi / c})
    return fuzzy_threshold(plane, params.t_lo, params.t_hi), params
