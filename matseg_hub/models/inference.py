"""Inference with a MatSeg model: descriptor maps, click -> similarity map / mask, full segmentation.

Two entry points:

* :func:`descriptor_map` — one image in, its descriptor map at image size out (what the triplet-accuracy
  evaluator needs); :func:`load_descriptor_fn` loads a saved model into such a function;
* :class:`MatSegPredictor` — caches an image's (L2-normalised, image-sized) descriptor map once in
  :meth:`~MatSegPredictor.set_image`, so that any number of point queries are cheap (like segment-anything's
  ``SamPredictor``).

Points are pixel coordinates ``(x, y)`` of the image as given (column, row), optionally with a radius
``(x, y, r)``; each point becomes a filled disc (``cv2.circle``, as the reference does). A point's descriptor is
the L2-normalised sum of the normalised pixel descriptors inside its disc (the reference ``Demo.py`` / evaluation
rule); several points of one material are averaged (each point's descriptor normalised, then the mean
normalised again).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import MatSegInputError
from ..metrics.triplet import _check_points, _disc
from .scorers import _check_image as _check_rgb_image
from ..utils.logging import get_logger

logger = get_logger(__name__)

DEFAULT_POINT_RADIUS = 10  # reference Demo.py default
DEFAULT_THRESHOLD = 0.9  # reference Demo.py default

PointsLike = Union[Sequence[Sequence[float]], np.ndarray]


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _default_processor(model: Any):
    from .matseg import MatSegImageProcessor

    return MatSegImageProcessor()


@torch.inference_mode()
def _upsampled_descriptors(model: Any, image: np.ndarray, processor: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """(low-res map [D, h, w], image-sized map [D, H, W]), both in the model's dtype and device."""
    inputs = processor(image, return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(_model_device(model))
    low = model(pixel_values).descriptor_map
    full = processor.post_process_descriptor_map(low, inputs["original_sizes"], inputs["processed_sizes"])[0]
    return low[0], full


def descriptor_map(model: Any, image: np.ndarray, processor: Any = None) -> np.ndarray:
    """Descriptor map of one image at the image's size.

    Args:
        model: a :class:`~matseg_hub.models.matseg.MatSegModel` (any device / dtype; switched to eval mode).
        image: RGB uint8 numpy [H, W, 3].
        processor: a :class:`~matseg_hub.models.matseg.MatSegImageProcessor`; default ``MatSegImageProcessor()``
            (RGB, pad to multiples of 32). ``MatSegImageProcessor.reference_evaluation()`` reproduces the reference
            ``Evaluate.py`` (BGR input, no padding).

    Returns:
        float32 numpy [H, W, D]: raw (not normalised) descriptors, upsampled bilinearly (``align_corners=False``)
        from the model's 1/4-resolution output, as the reference evaluation does.
    """
    image = _check_rgb_image(image)
    processor = processor if processor is not None else _default_processor(model)
    model.eval()
    _, full = _upsampled_descriptors(model, image, processor)
    return full.float().permute(1, 2, 0).contiguous().cpu().numpy()


def load_model_and_processor(name_or_path: str, *, device: Union[str, torch.device, None] = None, bgr: bool = False,
                             size_mode: Optional[str] = None, **hub_kwargs: Any):
    """Load a MatSeg model (eval mode, on ``device``) and its image processor: the one place that does this.

    Args:
        name_or_path: a folder written by ``save_pretrained``, a Hub model id, or the name of a built-in net
            (``"matseg-tiny"``, :mod:`matseg_hub.models.builtin`).
        device: torch device (default: ``"cuda"`` when available, else ``"cpu"``).
        bgr: reproduce the reference ``Evaluate.py``: BGR channel order and the image fed at its own size
            (``MatSegImageProcessor.reference_evaluation()``). Otherwise the saved image processor is used
            (``preprocessor_config.json``; the default processor when there is none).
        size_mode: override the processor's ``size_mode`` (``"pad"``, ``"resize"``, ``"none"``).
        hub_kwargs: passed to ``from_pretrained`` (``revision``, ``token``, ``cache_dir``, ``local_files_only``).

    Returns:
        ``(model, processor)``.

    Raises:
        MatSegInputError: ``name_or_path`` is not a loadable MatSeg model (a missing folder is named as such).
    """
    from pathlib import Path

    from .builtin import builtin_model_path
    from .matseg import MatSegImageProcessor, MatSegModel

    name = str(name_or_path)
    builtin = builtin_model_path(name)  # "matseg-tiny": the folder inside the package
    if builtin is not None:
        name = str(builtin)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") != 1 or Path(name).exists()
    if looks_like_path and not Path(name).expanduser().exists():
        raise MatSegInputError(f"cannot load a MatSeg model from {name!r}: the folder does not exist; give a folder "
                               f"written by save_pretrained "
                               f"(config.json + weights) or a Hub model id such as 'namespace/matseg-convnext-base'")
    try:
        model = MatSegModel.from_pretrained(name, **hub_kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise MatSegInputError(f"cannot load a MatSeg model from {name!r}: {exc}") from exc
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    if bgr:
        processor = MatSegImageProcessor.reference_evaluation()
    else:
        try:
            processor = MatSegImageProcessor.from_pretrained(name, **hub_kwargs)
        except (OSError, ValueError):
            logger.info("no image processor saved with %s: using the default one", name)
            processor = MatSegImageProcessor()
    if size_mode is not None:
        processor = MatSegImageProcessor(image_mean=processor.image_mean, image_std=processor.image_std,
                                         channel_order=processor.channel_order, size_mode=size_mode,
                                         size_divisor=processor.size_divisor)
    return model, processor


def load_descriptor_fn(name_or_path: str, *, device: Union[str, torch.device, None] = None, bgr: bool = False,
                       size_mode: Optional[str] = None, **hub_kwargs: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``uint8 [H, W, 3] RGB -> float32 [H, W, D]`` for ``matseg evaluate --model``; arguments as
    :func:`load_model_and_processor`."""
    model, processor = load_model_and_processor(name_or_path, device=device, bgr=bgr, size_mode=size_mode,
                                                **hub_kwargs)

    def matseg_descriptors(image: np.ndarray) -> np.ndarray:
        return descriptor_map(model, image, processor)

    matseg_descriptors.__name__ = str(name_or_path)
    return matseg_descriptors


def _parse_points(points: PointsLike, radius: Optional[int], height: int, width: int, what: str = "points") -> np.ndarray:
    """int64 [N, 3] (x, y, r) points, checked against the image size. Points may mix (x, y) and (x, y, r)."""
    r_default = DEFAULT_POINT_RADIUS if radius is None else radius
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is not None and array.ndim == 1 and array.shape[0] in (2, 3):
        array = array[None]
    if array is None or array.ndim != 2:  # ragged: (x, y) and (x, y, r) mixed, or junk
        try:
            rows = [np.asarray(p, dtype=np.float64).reshape(-1) for p in points]
        except (TypeError, ValueError) as exc:
            raise MatSegInputError(f"{what} must be numbers [[x, y], ...] or [[x, y, r], ...]: {exc}") from exc
        if not rows or any(row.shape[0] not in (2, 3) for row in rows):
            raise MatSegInputError(f"{what} must have shape [N, 2] (x, y) or [N, 3] (x, y, radius) with N >= 1")
        array = np.stack([np.append(row, r_default) if row.shape[0] == 2 else row for row in rows])
    if array.shape[1] not in (2, 3) or array.shape[0] == 0:
        raise MatSegInputError(f"{what} must have shape [N, 2] (x, y) or [N, 3] (x, y, radius) with N >= 1, got {array.shape}")
    if array.shape[1] == 2:
        array = np.concatenate([array, np.full((array.shape[0], 1), r_default, dtype=np.float64)], axis=1)
    try:  # finite, within MAX_POINT_VALUE, rounded half to even, radius >= 0: the metric's one check of points
        out = _check_points(array)
    except MatSegInputError as exc:
        raise MatSegInputError(f"{what}: {exc}") from None
    bad = (out[:, 0] < 0) | (out[:, 0] >= width) | (out[:, 1] < 0) | (out[:, 1] >= height)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MatSegInputError(f"{what}[{i}] = (x={out[i, 0]}, y={out[i, 1]}) lies outside the {width}x{height} image")
    return out


def _disc_pixels(x: int, y: int, r: int, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row / column indices of ``cv2.circle(mask, (x, y), r, 1, thickness=-1)`` inside the image (the metric's
    disc, drawn in its box clipped to the image)."""
    y0, _, x0, _, mask = _disc(np.array([x, y, r]), height, width)
    rows, cols = np.nonzero(mask)
    return rows + y0, cols + x0


class MatSegPredictor:
    """Caches one image's descriptor map; answers point queries (similarity map, mask, segmentation).

    Args:
        model: a :class:`~matseg_hub.models.matseg.MatSegModel` (put in eval mode and moved to ``device``), or a
            name to load with :func:`load_model_and_processor`: a built-in net (``"matseg-tiny"``), a folder or a
            Hub id (its saved image processor is then used unless ``processor`` is given).
        processor: a :class:`~matseg_hub.models.matseg.MatSegImageProcessor` (default: RGB, pad to multiples of 32).
        device: where to run (default: the model's device).
        half: run and cache in float16 (CUDA only) — halves the memory of the cache (D x H x W values). The
            predictor converts a private copy of the model: the caller's model keeps its dtype.

    Example::

        predictor = MatSegPredictor(model)              # or MatSegPredictor("matseg-tiny"), the built-in net
        predictor.set_image(image)                      # RGB uint8 [H, W, 3]
        sim = predictor.similarity_map([[120, 80]])     # float32 [H, W] in [-1, 1]
        labels = predictor.segment([[[120, 80]], [[300, 200], [310, 40]]])  # int64 [H, W] in {0, 1}
    """

    def __init__(self, model: Any, processor: Any = None, *, device: Union[str, torch.device, None] = None,
                 half: bool = False):
        if isinstance(model, (str, os.PathLike)):
            model, saved = load_model_and_processor(os.fspath(model), device=device)
            processor = processor if processor is not None else saved
        if half:
            target = torch.device(device) if device is not None else _model_device(model)
            if target.type != "cuda":
                raise MatSegInputError(f"half precision needs a CUDA device, the model is on {target}")
            import copy

            model = copy.deepcopy(model).to(device=target, dtype=torch.float16)  # the caller's model is untouched
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = _model_device(self.model)
        self.processor = processor if processor is not None else _default_processor(model)
        self.reset_image()

    # ------------------------------------------------------------------ image
    def reset_image(self) -> None:
        self._low: Optional[torch.Tensor] = None
        self._features: Optional[torch.Tensor] = None
        self._size: Optional[Tuple[int, int]] = None

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    @property
    def image_size(self) -> Tuple[int, int]:
        """(H, W) of the current image."""
        self._require_image()
        return self._size  # type: ignore[return-value]

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Run the model on ``image`` (RGB uint8 [H, W, 3]) and cache its normalised descriptor map
        (``D x H x W`` values in the model's dtype on its device: 250 MB for a 700x700 image at D=128 in float32).
        Shrink large photos first (the reference demo and evaluation work at 700 px on the longer side)."""
        image = _check_rgb_image(image)
        low, full = _upsampled_descriptors(self.model, image, self.processor)
        self._low = low
        self._features = F.normalize(full.float(), dim=0).to(full.dtype)
        self._size = (int(image.shape[0]), int(image.shape[1]))

    def set_descriptor_map(self, descriptors: Union[np.ndarray, torch.Tensor]) -> None:
        """Use a precomputed descriptor map float [H, W, D] instead of running the model (for tests, or maps
        computed elsewhere)."""
        tensor = torch.as_tensor(np.asarray(descriptors) if isinstance(descriptors, np.ndarray) else descriptors)
        if tensor.ndim != 3 or not tensor.is_floating_point():
            raise MatSegInputError(f"descriptor map must be float [H, W, D], got {tuple(tensor.shape)} {tensor.dtype}")
        full = tensor.permute(2, 0, 1).to(device=self.device, dtype=next(self.model.parameters()).dtype)
        self._low = None
        self._features = F.normalize(full.float(), dim=0).to(full.dtype)
        self._size = (int(tensor.shape[0]), int(tensor.shape[1]))

    def _require_image(self) -> torch.Tensor:
        if self._features is None:
            raise MatSegInputError("no image set: call set_image(image) first")
        return self._features

    @torch.inference_mode()
    def descriptor_map(self, normalized: bool = False) -> np.ndarray:
        """The current image's descriptor map, float32 [H, W, D]; raw (as :func:`descriptor_map`) unless
        ``normalized`` (L2-normalised per pixel)."""
        features = self._require_image()
        if normalized or self._low is None:
            out = features
        else:
            processed = self.processor.target_size(*self._size)
            out = self.processor.post_process_descriptor_map(self._low[None], [self._size], [processed])[0]
        return out.float().permute(1, 2, 0).contiguous().cpu().numpy()

    # ------------------------------------------------------------------ queries
    @torch.inference_mode()
    def material_descriptor(self, points: PointsLike, radius: Optional[int] = None) -> torch.Tensor:
        """Descriptor of the material under ``points`` ([[x, y], ...] or [[x, y, r], ...]): float32 [D], unit norm."""
        features = self._require_image()
        height, width = self._size  # type: ignore[misc]
        parsed = _parse_points(points, radius, height, width)
        descs = []
        for x, y, r in parsed:
            rows, cols = _disc_pixels(int(x), int(y), int(r), height, width)
            rows_t = torch.as_tensor(rows, device=features.device)
            cols_t = torch.as_tensor(cols, device=features.device)
            descs.append(F.normalize(features[:, rows_t, cols_t].float().sum(dim=1), dim=0))
        return F.normalize(torch.stack(descs).mean(dim=0), dim=0)

    @torch.inference_mode()
    def similarity_maps(self, points_per_material: Sequence[PointsLike], radius: Optional[int] = None) -> np.ndarray:
        """Cosine similarity of every pixel to each material: float32 [K, H, W] for K point lists (one einsum)."""
        features = self._require_image()
        if len(points_per_material) == 0:
            raise MatSegInputError("points_per_material is empty")
        descs = torch.stack([self.material_descriptor(p, radius) for p in points_per_material])  # [K, D]
        sims = torch.einsum("kd,dhw->khw", descs.to(features.dtype), features)
        return sims.float().cpu().numpy()

    def similarity_map(self, points: PointsLike, radius: Optional[int] = None) -> np.ndarray:
        """Cosine similarity of every pixel to the material under ``points``: float32 [H, W] in [-1, 1]."""
        return self.similarity_maps([points], radius)[0]

    def mask(self, points: PointsLike, threshold: float = DEFAULT_THRESHOLD, radius: Optional[int] = None) -> np.ndarray:
        """Pixels of the material under ``points``: bool [H, W], ``similarity > threshold`` (reference: 0.9)."""
        return self.similarity_map(points, radius) > float(threshold)

    def segment(self, points_per_material: Sequence[PointsLike], radius: Optional[int] = None,
                min_similarity: Optional[float] = None, return_similarity: bool = False):
        """Full segmentation from one point list per material: int64 [H, W] label map (index of the most
        similar material). With ``min_similarity``, pixels whose best similarity is below it get label -1.
        With ``return_similarity``, also returns the float32 [K, H, W] similarity maps."""
        sims = self.similarity_maps(points_per_material, radius)
        labels = sims.argmax(axis=0).astype(np.int64)
        if min_similarity is not None:
            labels[sims.max(axis=0) < float(min_similarity)] = -1
        return (labels, sims) if return_similarity else labels


__all__ = ["MatSegPredictor", "descriptor_map", "load_descriptor_fn", "DEFAULT_POINT_RADIUS", "DEFAULT_THRESHOLD"]
