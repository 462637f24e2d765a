"""One model interface for every benchmark: a *scorer* answers "how similar is each pixel to this prompt?".

Every model that ``matseg evaluate`` scores (triplet accuracy on the MatSeg benchmark, point-prompted IoU on
segmentation sets) is a :class:`Scorer`. There are two kinds:

* :class:`DescriptorScorer` (``kind = "descriptor"``): the model maps an image to a dense descriptor map
  float [H, W, D] — the ``rgb`` / ``hsv`` baselines, MatSeg nets, ``transformers`` backbones (``features:``),
  a hard segmentation (an integer [H, W] label map, scored as one-hot descriptors), any Python callable.
  Triplet accuracy scores the map exactly as the paper does (:func:`~matseg_hub.metrics.triplet.point_descriptors`);
  a prompt's similarity map is the cosine of every pixel to the prompt's material descriptor.
* :class:`PromptableScorer` (``kind = "promptable"``): the model takes point prompts and returns, per prompt, a
  similarity map in [0, 1] (SAM's mask probabilities, Materialistic's score map). Triplet accuracy then ranks the
  points of an image by their similarity to each anchor's map (:func:`anchor_prompts`, :func:`point_similarities`).

Usage::

    scorer = resolve_scorer("hsv")            # or "features:facebook/dinov2-small", "sam:facebook/sam-vit-base", ...
    scorer.set_image(image)                   # RGB uint8 [H, W, 3] at evaluation resolution
    maps = scorer.similarity_maps([Prompt.of([[120, 80, 10]])])   # float32 [1, H, W]

Model specs (:func:`resolve_scorer`, ``matseg evaluate --model``): ``rgb``, ``hsv``, ``matseg-tiny`` (the MatSeg net
that ships inside the package, :mod:`matseg_hub.models.builtin`), ``PATH`` or ``ORG/NAME`` (a MatSeg
net), ``features:ORG/NAME|PATH`` (a ``transformers`` vision backbone), ``sam:ORG/NAME|PATH`` (SAM / SAM 2),
``materialistic:PATH``; or a :class:`Scorer` / callable object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegInputError
from ..metrics.triplet import _check_points, _disc

DescriptorFn = Callable[[np.ndarray], np.ndarray]

KINDS = ("descriptor", "promptable")
MULTIMASK_CHOICES = ("auto", "always", "never")


# ----------------------------------------------------------------------------------------------------------------
# prompts
# ----------------------------------------------------------------------------------------------------------------
def _as_point_array(points: Any, what: str) -> np.ndarray:
    if points is None:
        return np.zeros((0, 3), dtype=np.int64)
    array = np.asarray(points)
    if array.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 3:
        raise MatSegInputError(f"{what} must be [k, 3] (x, y, radius) points; got shape {array.shape}")
    try:
        return _check_points(array)
    except MatSegInputError as exc:
        raise MatSegInputError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class Prompt:
    """The point prompt of one query, in the pixels of the image given to :meth:`Scorer.set_image`.

    Attributes:
        positive: int64 [k, 3] ``(x, y, radius)`` points on the material asked for (k >= 1); the first is the
            anchor / click (Materialistic uses only it).
        negative: int64 [m, 3] points on other materials (m >= 0; promptable models that take negative points use
            them, descriptor models ignore them).
    """

    positive: np.ndarray
    negative: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))

    @classmethod
    def of(cls, positive: Any, negative: Any = None) -> "Prompt":
        """A checked prompt from point lists ``[[x, y, r], ...]``."""
        pos = _as_point_array(positive, "prompt positive points")
        if pos.shape[0] == 0:
            raise MatSegInputError("a prompt needs at least one positive point")
        return cls(pos, _as_point_array(negative, "prompt negative points"))


def anchor_prompts(points: np.ndarray, point_groups: np.ndarray, *, prompt_points: int = 1,
                   negative_points: int = 0, rng: Optional[np.random.Generator] = None
                   ) -> Tuple[List[Prompt], np.ndarray]:
    """The triplet-accuracy prompt of every anchor, and which points each anchor's triplets leave out.

    Anchor ``a``'s prompt is the anchor itself plus ``prompt_points - 1`` other points of its group drawn without
    replacement by ``rng`` (fewer when the group is smaller), all positive; with ``negative_points = m``, also ``m``
    points of other groups (fewer when there are fewer), drawn by ``rng``, as negatives. The extra prompt points
    (positive and negative) are left out of that anchor's triplets: their similarity would be a free answer.

    Args:
        points: int [N, 3] ``(x, y, radius)``.
        point_groups: [N] group index of each point.
        prompt_points: k >= 1 (the paper: 1, 2, 4, 8).
        negative_points: m >= 0.
        rng: the seeded generator that draws the extra points (required when k > 1 or m > 0).

    Returns:
        ``(prompts, exclude)``: N prompts, and bool [N, N] with ``exclude[a, j]`` True for point ``j`` used in anchor
        ``a``'s prompt (never the anchor itself).
    """
    pts = np.asarray(points)
    groups = np.asarray(point_groups)
    n = pts.shape[0]
    if prompt_points < 1:
        raise MatSegInputError(f"prompt_points must be at least 1, got {prompt_points}")
    if negative_points < 0:
        raise MatSegInputError(f"negative_points must be 0 or more, got {negative_points}")
    if (prompt_points > 1 or negative_points > 0) and rng is None:
        raise MatSegInputError("anchor_prompts needs a seeded rng to draw extra prompt points")
    exclude = np.zeros((n, n), dtype=bool)
    prompts: List[Prompt] = []
    for a in range(n):
        same = np.flatnonzero((groups == groups[a]) & (np.arange(n) != a))
        extra = rng.choice(same, size=min(prompt_points - 1, same.size), replace=False) if prompt_points > 1 and same.size \
            else np.zeros(0, dtype=np.int64)
        other = np.flatnonzero(groups != groups[a])
        neg = rng.choice(other, size=min(negative_points, other.size), replace=False) if negative_points and other.size \
            else np.zeros(0, dtype=np.int64)
        exclude[a, extra] = True
        exclude[a, neg] = True
        prompts.append(Prompt(pts[np.concatenate([[a], extra]).astype(np.int64)].astype(np.int64),
                              pts[neg.astype(np.int64)].astype(np.int64).reshape(-1, 3)))
    return prompts, exclude


def disc_means(maps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Mean of each similarity map over each point's disc (``cv2.circle`` filled, clipped to the map).

    Args:
        maps: float [P, H, W].
        points: int [N, 3] ``(x, y, radius)``; every disc must have a pixel inside the map.

    Returns:
        float64 [P, N].
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise MatSegInputError(f"similarity maps must be [P, H, W]; got shape {maps.shape}")
    _, height, width = maps.shape
    pts = _check_points(points)
    out = np.empty((maps.shape[0], pts.shape[0]), dtype=np.float64)
    for j in range(pts.shape[0]):
        y0, y1, x0, x1, mask = _disc(pts[j], height, width)
        sel = mask.astype(bool)
        if not sel.any():
            raise MatSegInputError(f"point {j} ({pts[j, 0]}, {pts[j, 1]}, r={pts[j, 2]}) has no pixel inside the "
                                   f"{width}x{height} map")
        out[:, j] = maps[:, y0:y1, x0:x1][:, sel].astype(np.float64).mean(axis=1)
    return out


# ----------------------------------------------------------------------------------------------------------------
# scorers
# ----------------------------------------------------------------------------------------------------------------
class Scorer:
    """Base class of every model ``matseg evaluate`` scores (see the module docstring).

    Subclasses set ``kind`` and implement :meth:`set_image` and :meth:`similarity_maps`. A scorer holds one image
    at a time; :meth:`set_image` does the per-image work once (a backbone pass, SAM's image embedding).

    Attributes:
        name: shown in tables and reports.
        kind: ``"descriptor"`` or ``"promptable"``.
        prompt_points, negative_points: how :func:`anchor_prompts` builds a promptable model's triplet prompts.
    """

    kind: str = "descriptor"
    prompt_points: int = 1
    negative_points: int = 0

    def __init__(self, name: str):
        self.name = str(name)

    def set_image(self, image: np.ndarray) -> None:  # pragma: no cover - interface
        """Take the image (RGB uint8 [H, W, 3], at evaluation resolution) that the next queries are about."""
        raise NotImplementedError

    def similarity_maps(self, prompts: Sequence[Prompt]) -> np.ndarray:  # pragma: no cover - interface
        """float32 [P, H, W]: for each prompt, every pixel's similarity to the prompted material (higher = more
        similar; promptable models in [0, 1], descriptor models the cosine in [-1, 1])."""
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        """The settings that make this scorer's numbers reproducible (written into reports)."""
        out: Dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "promptable":
            out.update(prompt_points=self.prompt_points, negative_points=self.negative_points)
        return out


def _check_image(image: Any) -> np.ndarray:
    """The one check of an input image for every model: RGB uint8 numpy [H, W, 3], H, W >= 1."""
    if not isinstance(image, np.ndarray):
        raise MatSegInputError(f"image must be a numpy array RGB uint8 [H, W, 3], got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise MatSegInputError(f"image must be an RGB uint8 [H, W, 3] array, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise MatSegInputError(f"image must be RGB uint8 [H, W, 3] (0–255), got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise MatSegInputError(f"image must be a non-empty RGB uint8 [H, W, 3] array, got shape {image.shape}")
    return image


def _looks_like_path(name: str) -> bool:
    """True for a model spec target that names a folder (``./x``, ``/x``, ``~/x``, ``a/b/c``, an existing path),
    False for a Hub id ``ORG/NAME``."""
    from pathlib import Path

    return name.startswith((".", "/", "~")) or name.count("/") != 1 or (os.sep != "/" and os.sep in name) \
        or Path(name).exists()


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when the message is empty), for one-line typed errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_errors() -> Tuple[type, ...]:
    """What ``from_pretrained`` raises for a folder or Hub id that holds no loadable model (a missing or malformed
    file, a config value of the wrong type, truncated or mismatched weights), to be re-raised as a typed error."""
    errors: List[type] = [OSError, ValueError, KeyError, TypeError, RuntimeError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors is a transformers dependency
        pass
    return tuple(errors)


def torch_device(device: Any = None) -> Any:
    """The ``torch.device`` a network scorer runs on: ``device`` checked (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a
    ``torch.device``), or ``cuda`` when available else ``cpu`` for None.

    Raises:
        MatSegInputError: an unknown device name, or a CUDA device on a machine without it (one line, not torch's
            assertion).
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise MatSegInputError(f"unknown torch device {device!r} ({_first_line(exc)}); use 'cpu', 'cuda' or "
                               f"'cuda:N'") from None
    if out.type == "cuda" and (not torch.cuda.is_available()
                               or (out.index is not None and out.index >= torch.cuda.device_count())):
        raise MatSegInputError(f"device {device!r} is not available here ({torch.cuda.device_count()} CUDA devices); "
                               f"use --device cpu")
    return out


class DescriptorScorer(Scorer):
    """A model that maps an image to a dense descriptor map: ``fn(uint8 [H, W, 3]) -> float [H, W, D]`` (or an
    integer [H, W] label map for a hard segmentation)."""

    kind = "descriptor"

    def __init__(self, fn: DescriptorFn, name: Optional[str] = None):
        super().__init__(name if name is not None else getattr(fn, "__name__", "callable"))
        self.fn = fn
        self._image: Optional[np.ndarray] = None
        self._map: Optional[np.ndarray] = None
        self._dense: Optional[np.ndarray] = None
        self._unit: Optional[np.ndarray] = None

    def set_image(self, image: np.ndarray) -> None:
        """Take the image (RGB uint8 [H, W, 3]); its map is computed on first use and kept until the next image."""
        self._image = _check_image(image)
        self._map = None
        self._dense = None
        self._unit = None

    def descriptor_map(self) -> np.ndarray:
        """The current image's map, float [H, W, D] (or an integer [H, W] label map), checked against its size."""
        if self._image is None:
            raise MatSegInputError("no image set: call set_image(image) first")
        if self._map is None:
            out = np.asarray(self.fn(self._image))
            h, w = self._image.shape[:2]
            if out.ndim not in (2, 3) or out.shape[:2] != (h, w) or (out.ndim == 2 and not (
                    np.issubdtype(out.dtype, np.integer) or out.dtype == bool)):
                raise MatSegInputError(f"model {self.name!r} returned a map of shape {out.shape} ({out.dtype}) for an "
                                       f"image of shape {self._image.shape}; expected float [H, W, D] or an integer "
                                       f"[H, W] label map at the image's size")
            self._map = out
        return self._map

    def _as_dense(self) -> np.ndarray:
        """The map as float [H, W, D] (a label map as one-hot float32, built once per image)."""
        if self._dense is None:
            fmap = self.descriptor_map()
            if fmap.ndim == 2:
                labels, inverse = np.unique(fmap, return_inverse=True)
                onehot = np.zeros(fmap.shape + (labels.size,), dtype=np.float32)
                onehot.reshape(-1, labels.size)[np.arange(fmap.size), inverse.reshape(-1)] = 1
                fmap = onehot
            self._dense = fmap
        return self._dense

    def _inverse_norms(self) -> np.ndarray:
        """float32 [H, W]: 1 / max(||pixel descriptor||, 1e-12), so that cosines need no normalised copy of the map
        (a backbone's map at 700 px is a gigabyte)."""
        if self._unit is None:
            fmap = self._as_dense()
            norms = np.sqrt(np.einsum("hwd,hwd->hw", fmap, fmap, dtype=np.float64))
            self._unit = (1.0 / np.maximum(norms, 1e-12)).astype(np.float32)
        return self._unit

    def material_descriptors(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """float64 [P, D]: per prompt, the normalised mean of its positive discs' point descriptors (each disc's
        descriptor as :func:`~matseg_hub.metrics.triplet.point_descriptors` computes it)."""
        from ..metrics.triplet import point_descriptors

        fmap = self._as_dense()
        out = []
        for prompt in prompts:
            mean = point_descriptors(fmap, prompt.positive).mean(axis=0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        return np.stack(out) if out else np.zeros((0, fmap.shape[2]))

    def similarity_maps(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """float32 [P, H, W] cosine of every pixel's descriptor to each prompt's material descriptor."""
        fmap = self._as_dense()
        desc = self.material_descriptors(prompts).astype(np.float32)
        dots = np.einsum("hwd,pd->phw", fmap.astype(np.float32, copy=False), desc, optimize=True)
        return (dots * self._inverse_norms()[None]).astype(np.float32)


class PromptableScorer(Scorer):
    """A model that answers point prompts with similarity maps in [0, 1] (SAM, Materialistic).

    Subclasses implement :meth:`set_image` and :meth:`similarity_maps` (batched: all prompts of an image in as few
    model calls as possible).
    """

    kind = "promptable"
    #: False for a model that reads only the first positive point (Materialistic's click): ``matseg evaluate
    #: --prompt-points 1 2 4 8`` then scores it once, with one-point prompts.
    takes_prompt_points = True

    def __init__(self, name: str, *, prompt_points: int = 1, negative_points: int = 0):
        super().__init__(name)
        if prompt_points < 1:
            raise MatSegInputError(f"--prompt-points must be at least 1, got {prompt_points}")
        if negative_points < 0:
            raise MatSegInputError(f"--negative-points must be 0 or more, got {negative_points}")
        self.prompt_points = int(prompt_points)
        self.negative_points = int(negative_points)


def point_similarities(scorer: Scorer, points: np.ndarray, point_groups: np.ndarray, *,
                       rng: Optional[np.random.Generator] = None, batch: int = 64
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Similarity of every annotated point to each anchor's prompt, for triplet accuracy of a promptable scorer.

    Args:
        scorer: a scorer with the image set.
        points: int [N, 3]; point_groups: [N].
        rng: draws extra prompt points (:func:`anchor_prompts`).
        batch: prompts per :meth:`Scorer.similarity_maps` call (bounds the memory of [batch, H, W] maps).

    Returns:
        ``(similarities, exclude)``: float64 [N, N] with row ``a`` the mean of anchor ``a``'s map over each point's
        disc, and the bool [N, N] left-out mask of :func:`anchor_prompts`.
    """
    prompts, exclude = anchor_prompts(points, point_groups, prompt_points=scorer.prompt_points,
                                      negative_points=scorer.negative_points, rng=rng)
    rows = []
    for start in range(0, len(prompts), batch):
        maps = np.asarray(scorer.similarity_maps(prompts[start:start + batch]))
        if maps.ndim != 3 or maps.shape[0] != len(prompts[start:start + batch]):
            raise MatSegInputError(f"model {scorer.name!r} returned maps of shape {maps.shape} for "
                                   f"{len(prompts[start:start + batch])} prompts; expected [P, H, W]")
        rows.append(disc_means(maps, points))
    return np.concatenate(rows, axis=0), exclude


# ----------------------------------------------------------------------------------------------------------------
# model specs
# ----------------------------------------------------------------------------------------------------------------
def rgb_descriptors(image: np.ndarray) -> np.ndarray:
    """The ``rgb`` baseline: the image's three channels as a float32 [H, W, 3] descriptor map."""
    return np.asarray(image, dtype=np.float32)


def hsv_descriptors(image: np.ndarray) -> np.ndarray:
    """The ``hsv`` baseline: OpenCV's 8-bit HSV of the RGB image (H in 0-179) as float32 [H, W, 3]."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)


BASELINES = {"rgb": rgb_descriptors, "hsv": hsv_descriptors}

SPEC_HELP = ("'rgb', 'hsv', 'matseg-tiny' (the MatSeg net built into the package), a MatSeg model folder or Hub id ('ORG/NAME'), 'features:ORG/NAME' (a transformers "
             "vision backbone), 'sam:ORG/NAME' (SAM), 'materialistic:FOLDER'")


def resolve_scorer(model: Union[str, os.PathLike, Scorer, DescriptorFn], *, device: Optional[str] = None,
                   bgr: bool = False, layer: Optional[int] = None, prompt_points: int = 1, negative_points: int = 0,
                   multimask: str = "auto", **hub_kwargs: Any) -> Scorer:
    """Turn a model spec (see the module docstring), a :class:`Scorer` or a callable into a :class:`Scorer`.

    Args:
        device: torch device for network models (default: cuda when available).
        bgr: MatSeg nets only: feed BGR like the reference ``Evaluate.py``.
        layer: ``features:`` only: the hidden state to use (index into ``hidden_states``; default the last).
        prompt_points, negative_points: promptable models: the triplet prompt (:func:`anchor_prompts`).
        multimask: ``sam:`` only: ``"auto"`` (the highest-IoU of the three masks for one point, the single mask
            otherwise), ``"always"`` or ``"never"``.
        hub_kwargs: passed to ``from_pretrained`` (``revision``, ``token``, ``local_files_only``, ...).
    """
    if isinstance(model, Scorer):
        return model
    if callable(model):
        return DescriptorScorer(model)
    name = str(model)
    if name in BASELINES:
        return DescriptorScorer(BASELINES[name], name)
    prefix = name.partition(":")[0] + ":" if ":" in name else None
    if prefix in SCORER_LOADERS:
        options = {"features:": {"layer": layer},
                   "sam:": {"prompt_points": prompt_points, "negative_points": negative_points,
                            "multimask": multimask}}.get(prefix, {"prompt_points": prompt_points,
                                                                  "negative_points": negative_points})
        return _loader(prefix)(_spec_target(name), device=device, **options, **hub_kwargs)
    from .builtin import builtin_model_path

    builtin = builtin_model_path(name)  # "matseg-tiny": the net that ships inside the package
    if builtin is None and "/" not in name and not os.path.exists(name):
        raise MatSegInputError(f"unknown model {name!r}: use {SPEC_HELP}")
    if device is not None:
        torch_device(device)  # one typed error for an unusable device, as for the prefixed kinds
    load_descriptor_fn = _imported(".inference:load_descriptor_fn")
    target = str(builtin) if builtin is not None else name
    return DescriptorScorer(load_descriptor_fn(target, device=device, bgr=bgr, **hub_kwargs), name)


#: The model kinds a spec prefix names: ``prefix -> loader`` where a loader is ``f(target, *, device, **options)``
#: returning a :class:`Scorer`, given as ``"module:function"`` (imported on first use, relative to this package) or
#: as a callable. :func:`register_scorer` adds a kind (a plug-in's own prefix).
SCORER_LOADERS: Dict[str, Union[str, Callable[..., Scorer]]] = {
    "features:": ".backbones:load_feature_scorer",
    "sam:": ".sam:load_sam_scorer",
    "materialistic:": ".materialistic:load_materialistic_scorer",
}


def register_scorer(prefix: str, loader: Callable[..., Scorer]) -> None:
    """Make ``PREFIX:TARGET`` model specs load with ``loader(target, device=..., **options)``.

    Example::

        register_scorer("mynet:", lambda target, device=None, **_: DescriptorScorer(my_fn(target), f"mynet:{target}"))
    """
    if not prefix.endswith(":") or len(prefix) < 2 or prefix in BASELINES:
        raise MatSegInputError(f"a scorer prefix ends with ':' (e.g. 'mynet:'); got {prefix!r}")
    if not callable(loader):
        raise MatSegInputError(f"the loader for {prefix!r} must be callable")
    SCORER_LOADERS[prefix] = loader


def _loader(prefix: str) -> Callable[..., Scorer]:
    return _imported(SCORER_LOADERS[prefix])


def _imported(loader: Union[str, Callable[..., Any]]) -> Callable[..., Any]:
    """A ``"module:function"`` name (relative to this package) imported on first use; a callable as it is. (The
    loaders import this module, so it never imports them at its top.)"""
    if isinstance(loader, str):
        import importlib

        module, _, function = loader.partition(":")
        loader = getattr(importlib.import_module(module, __package__), function)
    return loader


def _spec_target(spec: str) -> str:
    prefix, _, target = spec.partition(":")
    if not target:
        raise MatSegInputError(f"model spec {spec!r} names no model: write {prefix}:ORG/NAME or {prefix}:FOLDER")
    return target


__all__ = ["Prompt", "Scorer", "DescriptorScorer", "PromptableScorer", "anchor_prompts", "disc_means",
           "point_similarities", "resolve_scorer", "rgb_descriptors", "hsv_descriptors", "BASELINES", "KINDS",
           "SPEC_HELP", "MULTIMASK_CHOICES", "SCORER_LOADERS", "register_scorer", "torch_device"]
