"""Image processor of the MatSeg model: images -> normalised ``pixel_values`` and back to image-sized maps.

Normalisation is the reference's: on 0–255 input, ``(x - mean) / 65`` with mean (123.68, 116.779, 103.939)
applied to channels 0, 1, 2 *in the order fed*. Training fed RGB, so ``channel_order="rgb"`` (default) is
right; the reference ``Evaluate.py`` / ``Demo.py`` feed OpenCV's BGR, which ``channel_order="bgr"`` reproduces
(see :meth:`MatSegImageProcessor.reference_evaluation`).

Size (``size_mode``): the network accepts any size >= 32 px, but each stage halves with floor, so sizes that are
multiples of ``size_divisor`` (32) keep every pixel aligned.

* ``"pad"`` (default): pad bottom/right to the next multiple of 32 with the mean colour (0 after
  normalisation); :meth:`post_process_descriptor_map` upsamples to the padded size and crops, so no resampling
  of the image is involved;
* ``"resize"``: bilinear resize (OpenCV) to the nearest multiple of 32 (at least 32); maps are resized back;
* ``"none"``: feed the image as it is (the reference evaluation and demo do this).

The 4th input channel of the reference (zeros) is added by the model, not here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from transformers.image_processing_base import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ...errors import MatSegInputError

REFERENCE_MEAN = (123.68, 116.779, 103.939)
REFERENCE_STD = (65.0, 65.0, 65.0)
SIZE_MODES = ("pad", "resize", "none")
CHANNEL_ORDERS = ("rgb", "bgr")


def _as_hwc_array(image: Any, index: int) -> np.ndarray:
    """One image as a numpy array [H, W, 3] (uint8 or float, 0–255)."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL.Image
        image = np.asarray(image.convert("RGB"))
    elif hasattr(image, "detach") and hasattr(image, "cpu"):  # torch tensor
        raise MatSegInputError(f"image {index}: pass images as numpy arrays [H, W, 3] or PIL images, not torch tensors "
                               "(a tensor would be ambiguous between [C, H, W] and [H, W, C])")
    if not isinstance(image, np.ndarray):
        raise MatSegInputError(f"image {index}: expected a numpy array [H, W, 3] or a PIL image, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise MatSegInputError(f"image {index}: expected shape [H, W, 3] (RGB) or [H, W] (grey), got {image.shape}"
                               + (" (drop the alpha channel first)" if image.ndim == 3 and image.shape[2] == 4 else ""))
    if image.dtype == np.bool_ or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise MatSegInputError(f"image {index}: expected uint8 (0–255) or float (0–255) pixels, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise MatSegInputError(f"image {index}: empty image of shape {image.shape}")
    return image


class MatSegImageProcessor(BaseImageProcessor):
    r"""Turns RGB images into ``pixel_values`` for :class:`MatSegModel` and maps back to image size.

    Args:
        image_mean: subtracted from channels 0, 1, 2 (0–255 scale) in the order fed to the network.
        image_std: divisor per channel (reference: 65).
        channel_order: ``"rgb"`` (default; how the model was trained) or ``"bgr"`` (reverse the channels of
            the RGB input before normalising — reproduces the reference evaluation, which feeds ``cv2.imread``).
        size_mode: ``"pad"`` (default), ``"resize"`` or ``"none"``; see the module docstring.
        size_divisor: multiple that ``"pad"`` / ``"resize"`` make height and width (32).
    """

    model_input_names = ["pixel_values"]

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoImageProcessor") -> None:
        """No-op: the class lives in the installed ``matseg_hub`` package. ``save_pretrained`` writes the
        ``auto_map`` shim itself; ``transformers``' copying of the class's source files (which it does for classes
        loaded with ``trust_remote_code``) would copy package modules with relative imports and break."""
        return None

    def __init__(self, image_mean: Sequence[float] = REFERENCE_MEAN, image_std: Sequence[float] = REFERENCE_STD,
                 channel_order: str = "rgb", size_mode: str = "pad", size_divisor: int = 32, **kwargs: Any):
        super().__init__(**kwargs)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.channel_order = _check_choice("channel_order", channel_order, CHANNEL_ORDERS)
        self.size_mode = _check_choice("size_mode", size_mode, SIZE_MODES)
        if int(size_divisor) < 1:
            raise MatSegInputError(f"size_divisor must be >= 1, got {size_divisor}")
        self.size_divisor = int(size_divisor)
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise MatSegInputError("image_mean and image_std need 3 values each (std > 0)")

    @classmethod
    def reference_evaluation(cls, **kwargs: Any) -> "MatSegImageProcessor":
        """The preprocessing of the reference ``Evaluate.py``: BGR channel order, image fed at its own size."""
        return cls(channel_order="bgr", size_mode="none", **kwargs)

    # ------------------------------------------------------------------ sizes
    def target_size(self, height: int, width: int, size_mode: Optional[str] = None) -> Tuple[int, int]:
        """(height, width) fed to the network for an image of ``height`` x ``width``."""
        mode = size_mode or self.size_mode
        d = self.size_divisor
        if mode == "pad":
            return (-(-height // d) * d, -(-width // d) * d)
        if mode == "resize":
            return (max(d, int(round(height / d)) * d), max(d, int(round(width / d)) * d))
        return (height, width)

    # ------------------------------------------------------------------ preprocessing
    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(self, images: Any, channel_order: Optional[str] = None, size_mode: Optional[str] = None,
                   return_tensors: Optional[str] = "pt") -> BatchFeature:
        """Normalise a batch of images.

        Args:
            images: one image or a list; each RGB uint8 (or float 0–255) numpy [H, W, 3], grey [H, W], or a PIL image.
            channel_order / size_mode: override the processor's settings for this call.
            return_tensors: ``"pt"`` (torch, default) or ``"np"``/``None`` (numpy).

        Returns:
            ``BatchFeature`` with ``pixel_values`` float32 [B, 3, H', W'], ``original_sizes`` [(H, W), ...] and
            ``processed_sizes`` [(H', W'), ...] (before batch padding). In ``"pad"`` mode images of different sizes
            are padded to a common size; other modes need equal sizes after processing.
        """
        import cv2

        order = _check_choice("channel_order", channel_order or self.channel_order, CHANNEL_ORDERS)
        mode = _check_choice("size_mode", size_mode or self.size_mode, SIZE_MODES)
        if isinstance(images, (list, tuple)):
            batch = list(images)
        else:
            batch = [images]
        if not batch:
            raise MatSegInputError("no images given")
        mean = np.asarray(self.image_mean, dtype=np.float32)
        std = np.asarray(self.image_std, dtype=np.float32)
        arrays, original_sizes, processed_sizes = [], [], []
        for i, image in enumerate(batch):
            array = _as_hwc_array(image, i)
            h, w = array.shape[:2]
            th, tw = self.target_size(h, w, mode)
            array = array.astype(np.float32)
            if mode == "resize" and (th, tw) != (h, w):
                array = cv2.resize(array, (tw, th), interpolation=cv2.INTER_LINEAR)
            if order == "bgr":
                array = array[:, :, ::-1]
            array = (array - mean) / std
            original_sizes.append((h, w))
            processed_sizes.append((th, tw))
            arrays.append(array)
        if mode != "pad" and len({a.shape for a in arrays}) > 1:
            raise MatSegInputError(f"images of different sizes {sorted({a.shape[:2] for a in arrays})} cannot be batched "
                                   f"with size_mode={mode!r}; use size_mode='pad' or one image per call")
        height = max(s[0] for s in processed_sizes)
        width = max(s[1] for s in processed_sizes)
        pixel_values = np.zeros((len(arrays), 3, height, width), dtype=np.float32)
        for i, array in enumerate(arrays):
            pixel_values[i, :, : array.shape[0], : array.shape[1]] = array.transpose(2, 0, 1)
        data = {"pixel_values": pixel_values, "original_sizes": original_sizes, "processed_sizes": processed_sizes}
        if return_tensors in ("pt", "torch"):
            import torch

            data["pixel_values"] = torch.from_numpy(pixel_values)
        elif return_tensors not in (None, "np", "numpy"):
            raise MatSegInputError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        return BatchFeature(data=data)

    # ------------------------------------------------------------------ postprocessing
    def post_process_descriptor_map(self, descriptor_map: Any, original_sizes: Sequence[Tuple[int, int]],
                                    processed_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                                    size_mode: Optional[str] = None) -> List[Any]:
        """Descriptor maps at the original image sizes.

        Args:
            descriptor_map: torch float [B, D, h, w] (``MatSegOutput.descriptor_map``).
            original_sizes / processed_sizes: from :meth:`preprocess`.
            size_mode: the mode used in :meth:`preprocess` (default: this processor's).

        Returns:
            list of B torch tensors [D, H, W] (bilinear, ``align_corners=False``; in ``"pad"`` mode upsampled to
            the padded batch size, then cropped).
        """
        import torch
        from torch.nn import functional as F

        mode = _check_choice("size_mode", size_mode or self.size_mode, SIZE_MODES)
        if not isinstance(descriptor_map, torch.Tensor) or descriptor_map.ndim != 4:
            raise MatSegInputError("descriptor_map must be a torch tensor [B, D, h, w]")
        if len(original_sizes) != descriptor_map.shape[0]:
            raise MatSegInputError(f"{len(original_sizes)} original sizes for a batch of {descriptor_map.shape[0]}")
        results = []
        if mode == "pad":
            if processed_sizes is None:
                raise MatSegInputError("size_mode 'pad' needs processed_sizes (from preprocess) to crop the padding")
            padded = (max(s[0] for s in processed_sizes), max(s[1] for s in processed_sizes))
            full = F.interpolate(descriptor_map, size=padded, mode="bilinear", align_corners=False)
            for i, (h, w) in enumerate(original_sizes):
                results.append(full[i, :, :h, :w])
        else:
            for i, (h, w) in enumerate(original_sizes):
                results.append(F.interpolate(descriptor_map[i: i + 1], size=(int(h), int(w)), mode="bilinear",
                                             align_corners=False)[0])
        return results

    def to_dict(self) -> Dict[str, Any]:
        output = super().to_dict()
        output.pop("_processor_class", None)
        return output

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any):
        """Save ``preprocessor_config.json`` with an ``auto_map`` entry and the ``matseg_auto.py`` shim, so that
        ``AutoImageProcessor.from_pretrained(..., trust_remote_code=True)`` works without importing matseg_hub."""
        from .modeling_matseg import AUTO_MAP_PROCESSOR, write_auto_map_shim

        self.auto_map = dict(AUTO_MAP_PROCESSOR)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        write_auto_map_shim(save_directory)
        return result


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise MatSegInputError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value.lower()


__all__ = ["MatSegImageProcessor", "REFERENCE_MEAN", "REFERENCE_STD"]
