"""``features:<Hub id or folder>``: any ``transformers`` vision backbone's dense features as a descriptor scorer.

The descriptor map of an image (RGB uint8 [H, W, 3], at evaluation resolution) is computed as follows:

1. **Resize** the image (bilinear, ``cv2.INTER_LINEAR`` on float32) so that each side is the nearest multiple of
   the patch size (ViTs: ``config.patch_size``; convolutional backbones: :data:`BACKBONE_MULTIPLE` = 32, the
   total stride of their last stage), at least one patch, each side rounded on its own (the aspect ratio is kept
   to within half a patch). ``max_input_size`` optionally caps the longer side first. The image processor's own
   resize / crop (224 px) is never used.
2. **Normalise** with the model's image processor's ``rescale_factor`` / ``image_mean`` / ``image_std``
   (``AutoImageProcessor.from_pretrained``); without a saved processor: CLIP's mean/std for CLIP, 0.5/0.5 for
   SigLIP, ImageNet's for everything else (logged as a warning).
3. **Run** the model. ViTs get ``interpolate_pos_encoding=True`` where their ``forward`` takes it (DINOv2
   interpolates by itself). ``layer=None`` takes ``last_hidden_state`` (the model's output: after the final
   layer norm for DINOv2 / ViT / SigLIP; CLIP's equals ``hidden_states[-1]``); ``layer=i`` takes
   ``hidden_states[i]`` (0 = the embeddings, negative counts from the end). Convolutional backbones
   (ConvNeXt, ResNet, Swin, ... through their ``AutoBackbone`` class) take ``layer`` as the index into
   ``stage_names`` (0 = the stem, default -1 = the last stage) and give that stage's feature map.
4. **Drop** the CLS token (DINOv2, ViT, CLIP; SigLIP has none) and the register tokens
   (``config.num_register_tokens``, DINOv2 with registers): the patch tokens are the last ``gh * gw`` of the
   sequence, reshaped row-major to the patch grid [gh, gw, D].
5. **Upsample** the grid bilinearly (``align_corners=False``) to the image's own size [H, W] and return it as
   float32 [H, W, D] (not normalised; the scorer's cosine normalises).

Supported: ``Dinov2Model``, ``Dinov2WithRegistersModel``, ``ViTModel`` (DINO ViT-B/8 ...), ``CLIPVisionModel`` and
``SiglipVisionModel`` (a full ``CLIPModel`` / ``SiglipModel`` folder gives its vision tower), any other
``AutoModel`` ViT whose sequence is a few prefix tokens then the patch grid, and every model type with an
``AutoBackbone`` class.

Example::

    from matseg_hub.models.backbones import load_feature_scorer
    scorer = load_feature_scorer("facebook/dinov2-small")
    scorer.set_image(image)                 # RGB uint8 [H, W, 3]
    fmap = scorer.descriptor_map()          # float32 [H, W, 384]
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError
from ..utils.logging import get_logger
from .scorers import DescriptorScorer, _first_line, _load_errors, _looks_like_path, torch_device

logger = get_logger(__name__)

BACKBONE_MULTIPLE = 32
"""Convolutional backbones: each input side is resized to the nearest multiple of this (their last stage's stride)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)

# model_type -> number of CLS tokens before the registers and the patch tokens
CLS_TOKENS = {"dinov2": 1, "dinov2_with_registers": 1, "vit": 1, "clip_vision_model": 1, "siglip_vision_model": 0}
# full image-text models whose vision tower is used
VISION_TOWERS = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}
# fallback normalisation when no image processor was saved
FALLBACK_MEAN_STD = {"clip_vision_model": (CLIP_MEAN, CLIP_STD), "siglip_vision_model": (HALF, HALF)}
MAX_PREFIX_TOKENS = 16  # an unknown ViT: at most this many tokens (CLS, distillation, registers) before the patches


def input_size(height: int, width: int, multiple: int, max_input_size: Optional[int] = None) -> Tuple[int, int]:
    """The model's input size for an image of ``height x width``: each side the nearest multiple of ``multiple``
    (half rounds up), at least ``multiple``; with ``max_input_size``, the image is first scaled (aspect kept) so
    that its longer side is at most that.

    Returns:
        ``(input_height, input_width)``, both multiples of ``multiple``.
    """
    h, w = float(height), float(width)
    if max_input_size is not None and max(h, w) > max_input_size:
        scale = max_input_size / max(h, w)
        h, w = h * scale, w * scale
    return (max(multiple, int(math.floor(h / multiple + 0.5)) * multiple),
            max(multiple, int(math.floor(w / multiple + 0.5)) * multiple))


def _pair(value: Any) -> Tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


class FeatureBackboneScorer(DescriptorScorer):
    """A descriptor scorer over a ``transformers`` vision model's dense features (see the module docstring).

    Build it with :func:`load_feature_scorer` (or :func:`feature_scorer_from_model`). :meth:`descriptor_map` gives
    float32 [H, W, D].

    Attributes:
        model: the loaded model (eval mode, on ``device``).
        family: ``"vit"`` (patch tokens) or ``"backbone"`` (an ``AutoBackbone`` stage's feature map).
        model_type: the model's ``config.model_type``.
        layer: the ``layer`` asked for (``None`` = ``last_hidden_state`` / the last stage).
        patch_size: (ph, pw) for ViTs; (32, 32) (:data:`BACKBONE_MULTIPLE`) for backbones.
        prefix_tokens: CLS + register tokens dropped from a ViT's sequence (``None`` for an unknown ViT: inferred
            per image as the sequence length minus the patch count).
        image_mean, image_std: the normalisation; ``mean_std_source`` says where it came from.
        max_input_size: optional cap on the model input's longer side (before rounding to the patch size).
    """

    def __init__(self, model: Any, *, name: str, family: str, model_type: str, layer: Optional[int],
                 patch_size: Tuple[int, int], prefix_tokens: Optional[int], num_register_tokens: int,
                 image_mean: Sequence[float], image_std: Sequence[float], rescale_factor: float,
                 mean_std_source: str, device: Any, max_input_size: Optional[int] = None):
        super().__init__(self._features, name)
        self.model = model
        self.family = family
        self.model_type = model_type
        self.layer = layer
        self.patch_size = patch_size
        self.prefix_tokens = prefix_tokens
        self.num_register_tokens = num_register_tokens
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.rescale_factor = float(rescale_factor)
        self.mean_std_source = mean_std_source
        self.device = device
        self.max_input_size = max_input_size
        params = inspect.signature(model.forward).parameters
        self._interpolate = family == "vit" and "interpolate_pos_encoding" in params

    # ------------------------------------------------------------------------------------------------ steps
    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """(input height, input width) the model sees for an image of ``height x width`` (:func:`input_size`)."""
        ph, pw = self.patch_size
        if ph == pw:
            return input_size(height, width, ph, self.max_input_size)
        h, _ = input_size(height, width, ph, self.max_input_size)
        _, w = input_size(height, width, pw, self.max_input_size)
        return h, w

    def pixel_values(self, image: np.ndarray) -> "Any":
        """The model input of an RGB uint8 [H, W, 3] image: torch [1, 3, h, w] (resized, normalised) on the model's
        device, in its dtype (float32 unless the model was converted)."""
        import cv2
        import torch

        height, width = image.shape[:2]
        ih, iw = self.input_size(height, width)
        x = image.astype(np.float32)
        if (ih, iw) != (height, width):
            x = cv2.resize(x, (iw, ih), interpolation=cv2.INTER_LINEAR)
        x = x * np.float32(self.rescale_factor)
        x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        dtype = next(self.model.parameters()).dtype
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device, dtype)

    def feature_grid(self, pixel_values: Any) -> "Any":
        """The low-resolution feature map of a model input [1, 3, h, w]: float32 torch [1, D, gh, gw] (ViTs: the
        patch tokens without CLS / register tokens, ``gh = h / ph``, ``gw = w / pw``)."""
        import torch

        with torch.inference_mode():
            if self.family == "backbone":
                return self.model(pixel_values=pixel_values).feature_maps[-1].float()
            kwargs: Dict[str, Any] = {}
            if self._interpolate:
                kwargs["interpolate_pos_encoding"] = True
            if self.layer is not None:
                kwargs["output_hidden_states"] = True
            out = self.model(pixel_values=pixel_values, **kwargs)
            tokens = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
            gh, gw = pixel_values.shape[2] // self.patch_size[0], pixel_values.shape[3] // self.patch_size[1]
            prefix = tokens.shape[1] - gh * gw
            expected = self.prefix_tokens
            if expected is not None and prefix != expected or not 0 <= prefix <= MAX_PREFIX_TOKENS:
                raise MatSegInputError(
                    f"model {self.name!r} ({self.model_type}) returned {tokens.shape[1]} tokens for a {gh}x{gw} patch "
                    f"grid: expected {expected if expected is not None else 'a few'} CLS/register tokens before "
                    f"the {gh * gw} patch tokens; this model's token layout is not supported by features:")
            grid = tokens[:, prefix:].float().contiguous().reshape(1, gh, gw, -1)
            return grid.permute(0, 3, 1, 2)  # [1, D, gh, gw] with the canonical channels-last strides

    def _features(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        return self.upsample(self.feature_grid(self.pixel_values(image)), height, width)

    def upsample(self, grid: Any, height: int, width: int) -> np.ndarray:
        """A feature grid float32 torch [1, D, gh, gw] upsampled bilinearly (``align_corners=False``) to the
        image: float32 numpy [height, width, D]."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            # channels-last in, channels-last out: the [1, D, H, W] result is laid out as [H, W, D], so the map
            # needs no transposing copy (one pass over its memory; ~4x faster on CPU than upsampling planes)
            up = F.interpolate(grid.contiguous(memory_format=torch.channels_last), size=(height, width),
                               mode="bilinear", align_corners=False)
            out = up.permute(0, 2, 3, 1)[0]
            if not out.is_contiguous():  # pragma: no cover - a backend without channels-last upsampling
                out = out.contiguous()
            return out.cpu().numpy()

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        policy = (f"each side resized (bilinear) to the nearest multiple of {self.patch_size[0]}"
                  + (f"x{self.patch_size[1]}" if self.patch_size[0] != self.patch_size[1] else "")
                  + (f" after capping the longer side at {self.max_input_size}" if self.max_input_size else "")
                  + "; features upsampled bilinearly (align_corners=False) to the image size")
        out.update(family=self.family, model_type=self.model_type,
                   layer="last_hidden_state" if self.layer is None and self.family == "vit" else
                   ("last stage" if self.layer is None else self.layer),
                   patch_size=list(self.patch_size), input_size_policy=policy, max_input_size=self.max_input_size,
                   image_mean=list(self.image_mean), image_std=list(self.image_std),
                   normalisation=self.mean_std_source)
        if self.family == "vit":
            out.update(dropped_tokens=("inferred" if self.prefix_tokens is None else self.prefix_tokens),
                       register_tokens=self.num_register_tokens,
                       interpolate_pos_encoding=self._interpolate or self.model_type.startswith("dinov2"))
        else:
            out.update(stage=self.model.stage_names[self.model.out_indices[-1]])
        return out


# -------------------------------------------------------------------------------------------------------- loading
def _mean_std(name: str, model_type: str, hub_kwargs: Dict[str, Any]) -> Tuple[Tuple, Tuple, float, str]:
    from transformers import AutoImageProcessor

    saved = Path(name) / "preprocessor_config.json"  # a folder's (a Hub id is no local path)
    try:
        processor = AutoImageProcessor.from_pretrained(name, **hub_kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if saved.is_file():  # a broken file, not a missing one: never silently normalise another way
            raise MatSegFormatError(f"cannot read the image processor ({_first_line(exc)}); fix the file or remove it "
                                    f"to normalise with the model family's default mean/std", path=saved) from None
        mean, std = FALLBACK_MEAN_STD.get(model_type, (IMAGENET_MEAN, IMAGENET_STD))
        source = "CLIP" if mean == CLIP_MEAN else ("0.5/0.5 (SigLIP)" if mean == HALF else "ImageNet")
        logger.warning("features:%s: no image processor saved (preprocessor_config.json): normalising with %s "
                       "mean/std", name, source)
        logger.debug("AutoImageProcessor.from_pretrained(%s): %s", name, _first_line(exc))
        return mean, std, 1 / 255, f"fallback: {source} mean/std (no image processor saved)"
    mean = getattr(processor, "image_mean", None)
    std = getattr(processor, "image_std", None)
    if not getattr(processor, "do_normalize", True) or mean is None or std is None:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    try:
        rescale = float(getattr(processor, "rescale_factor", 1 / 255)) if getattr(processor, "do_rescale", True) \
            else 1.0
        mean, std = (tuple(np.asarray(v, dtype=np.float64).reshape(-1).tolist()) for v in (mean, std))
    except (TypeError, ValueError):
        mean = std = ()
    if len(mean) not in (1, 3) or len(std) not in (1, 3) or not min(std, default=0.0) > 0:
        got = f"{getattr(processor, 'image_mean', None)!r} / {getattr(processor, 'image_std', None)!r}"
        raise MatSegFormatError(f"the image processor of {name!r} needs image_mean / image_std of 1 or 3 numbers "
                                f"(std > 0) and a numeric rescale_factor; got {got}",
                                path=saved if saved.is_file() else None, field="image_mean/image_std")
    mean = mean * 3 if len(mean) == 1 else mean
    std = std * 3 if len(std) == 1 else std
    return mean, std, rescale, f"image processor ({type(processor).__name__})"


def _check_layer(layer: Optional[int], count: int, what: str, name: str) -> Optional[int]:
    if layer is None:
        return None
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise MatSegInputError(f"layer must be an integer index into the {what} of {name!r}, got {layer!r}")
    if not -count <= int(layer) < count:
        raise MatSegInputError(f"layer {layer} is out of range for {name!r}: it has {count} {what} "
                               f"(use {-count}..{count - 1})")
    return int(layer)


def load_feature_scorer(name_or_path: str, *, device: Optional[str] = None, layer: Optional[int] = None,
                        max_input_size: Optional[int] = None, **hub_kwargs: Any) -> FeatureBackboneScorer:
    """Load a ``transformers`` vision model as a descriptor scorer (``features:ORG/NAME`` / ``features:FOLDER``).

    Args:
        name_or_path: a Hub model id or a folder written by ``save_pretrained``.
        device: torch device (default: ``"cuda"`` when available, else ``"cpu"``).
        layer: ViTs: index into ``hidden_states`` (0 = embeddings, negative from the end; default
            ``last_hidden_state``); ``AutoBackbone`` models: index into ``stage_names`` (0 = stem; default the last
            stage).
        max_input_size: cap the model input's longer side at this many pixels (before rounding to the patch size);
            default: the image's own size.
        hub_kwargs: passed to ``from_pretrained`` (``revision``, ``token``, ``cache_dir``, ``local_files_only``).

    Returns:
        A :class:`FeatureBackboneScorer` whose :meth:`~FeatureBackboneScorer.descriptor_map` is float32 [H, W, D].

    Raises:
        MatSegInputError: the folder does not exist, the model cannot be loaded, it is not a vision model, or
            ``layer`` is out of range.
    """
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING, MODEL_MAPPING

    device = torch_device(device)  # checked before any loading
    name = str(name_or_path)
    if _looks_like_path(name) and not Path(name).expanduser().is_dir():
        what = "is a file, not a folder" if Path(name).expanduser().exists() else "does not exist"
        raise MatSegInputError(f"the model folder {name} {what}; give a folder written by "
                               f"save_pretrained (config.json + weights) or a Hub model id such as "
                               f"'facebook/dinov2-small'")
    if _looks_like_path(name):
        name = str(Path(name).expanduser())
    if max_input_size is not None and (isinstance(max_input_size, bool) or int(max_input_size) < 1):
        raise MatSegInputError(f"max_input_size must be a positive number of pixels, got {max_input_size!r}")
    try:
        config = AutoConfig.from_pretrained(name, **hub_kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MatSegInputError(f"cannot read the config of model {name!r}: {_first_line(exc)}") from exc
    model_type = str(getattr(config, "model_type", ""))
    if model_type in VISION_TOWERS:  # a full CLIP / SigLIP: its vision tower
        config = config.vision_config
        model_type = VISION_TOWERS[model_type]

    vit = model_type in CLS_TOKENS or (type(config) not in MODEL_FOR_BACKBONE_MAPPING
                                       and getattr(config, "patch_size", None) is not None
                                       and type(config) in MODEL_MAPPING)
    try:
        if vit:
            count = int(getattr(config, "num_hidden_layers", 0)) + 1
            layer = _check_layer(layer, count, "hidden_states", name)
            model = AutoModel.from_pretrained(name, config=config, **hub_kwargs)  # a full CLIP: CLIPVisionModel
        elif type(config) in MODEL_FOR_BACKBONE_MAPPING:
            # AutoBackbone.from_pretrained asks the Hub whether the id exists (a timm fallback) even for a
            # folder; the backbone class of the config type is what it would load.
            cls = MODEL_FOR_BACKBONE_MAPPING[type(config)]
            stages = list(getattr(config, "stage_names", []) or [])
            if not stages:
                raise MatSegInputError(f"the {model_type!r} backbone {name!r} lists no stages (config.stage_names)")
            stage = _check_layer(layer, len(stages), "stages (stage_names, 0 = stem)", name)
            index = (len(stages) - 1) if stage is None else stage % len(stages)
            layer = stage
            model = cls.from_pretrained(name, out_indices=[index], **hub_kwargs)
        else:
            raise MatSegInputError(f"{name!r} is a {model_type or type(config).__name__!r} model, not a vision "
                                   f"backbone; features: takes a ViT (DINOv2, ViT, CLIP, SigLIP) or a model with "
                                   f"an AutoBackbone class (ConvNeXt, ResNet, Swin, ...)")
    except _load_errors() as exc:  # a malformed config value, truncated weights, ...
        if isinstance(exc, MatSegInputError):
            raise
        raise MatSegInputError(f"cannot load the {model_type!r} model {name!r}: {_first_line(exc)}") from exc
    mean, std, rescale, source = _mean_std(name, model_type, hub_kwargs)
    return feature_scorer_from_model(model, name=f"features:{name_or_path}", layer=layer, image_mean=mean,
                                     image_std=std, rescale_factor=rescale, normalisation=source, device=device,
                                     max_input_size=max_input_size)


def feature_scorer_from_model(model: Any, *, name: Optional[str] = None, layer: Optional[int] = None,
                              image_mean: Optional[Sequence[float]] = None,
                              image_std: Optional[Sequence[float]] = None, rescale_factor: float = 1 / 255,
                              normalisation: Optional[str] = None, device: Optional[str] = None,
                              max_input_size: Optional[int] = None) -> FeatureBackboneScorer:
    """The scorer of a model already in memory (what :func:`load_feature_scorer` builds after loading).

    Args:
        model: a ViT (``Dinov2Model``, ``Dinov2WithRegistersModel``, ``ViTModel``, ``CLIPVisionModel``,
            ``SiglipVisionModel``, another ``AutoModel`` ViT) or an ``AutoBackbone`` model (its last
            ``out_indices`` stage is used; ``layer`` must then be None).
        layer: ViTs: index into ``hidden_states`` (default ``last_hidden_state``).
        image_mean, image_std: normalisation after ``* rescale_factor`` (default: the per-family fallback of the
            module docstring).
        device: where to run (default: cuda when available); the model is moved there and put in eval mode.

    Returns:
        A :class:`FeatureBackboneScorer`.
    """
    config = model.config
    model_type = str(getattr(config, "model_type", ""))
    backbone = hasattr(model, "stage_names") and hasattr(model, "out_indices")
    if not backbone and getattr(config, "patch_size", None) is None:
        raise MatSegInputError(f"{name or type(model).__name__!r} is a {model_type or type(model).__name__!r} "
                               f"model, not a vision backbone (no patch_size, no AutoBackbone stages)")
    label = name if name is not None else f"features:{type(model).__name__}"
    if backbone:
        if layer is not None and layer % len(model.stage_names) != model.out_indices[-1] % len(model.stage_names):
            raise MatSegInputError(f"{label}: layer {layer} is not the backbone's output stage "
                                   f"{model.out_indices[-1]}; build the backbone with out_indices=[{layer}]")
        patch, registers, prefix = (BACKBONE_MULTIPLE, BACKBONE_MULTIPLE), 0, None
    else:
        layer = _check_layer(layer, int(getattr(config, "num_hidden_layers", 0)) + 1, "hidden_states", label)
        patch = _pair(config.patch_size)
        registers = int(getattr(config, "num_register_tokens", 0) or 0)
        prefix = CLS_TOKENS[model_type] + registers if model_type in CLS_TOKENS else None
    if image_mean is None or image_std is None:
        mean, std = FALLBACK_MEAN_STD.get(model_type, (IMAGENET_MEAN, IMAGENET_STD))
        image_mean = mean if image_mean is None else image_mean
        image_std = std if image_std is None else image_std
        normalisation = normalisation or "default for the model family"
    device = torch_device(device)
    model = model.to(device).eval()
    logger.info("%s: %s (%s), layer %s, patch %s, normalisation: %s", label, type(model).__name__, model_type,
                "last" if layer is None else layer, patch, normalisation or "given")
    return FeatureBackboneScorer(model, name=label, family="backbone" if backbone else "vit", model_type=model_type,
                                 layer=layer, patch_size=patch, prefix_tokens=prefix, num_register_tokens=registers,
                                 image_mean=image_mean, image_std=image_std, rescale_factor=rescale_factor,
                                 mean_std_source=normalisation or "given", device=device,
                                 max_input_size=max_input_size)


__all__ = ["FeatureBackboneScorer", "load_feature_scorer", "feature_scorer_from_model", "input_size", "BACKBONE_MULTIPLE"]
