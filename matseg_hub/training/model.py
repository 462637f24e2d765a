"""Building, normalising inputs for, and saving the MatSeg model during training."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ..utils.logging import get_logger

logger = get_logger(__name__)


def build_model(config) -> "Any":
    """A :class:`~matseg_hub.modeling.MatSegModel` for a :class:`~matseg_hub.training.config.TrainConfig`:

    * ``init_from``: a saved MatSeg model (folder or Hub id) to continue from;
    * ``encoder_checkpoint``: a new model whose encoder starts from that ConvNeXt checkpoint (the paper:
      ImageNet-pretrained ConvNeXt-base from the Hub);
    * otherwise a randomly initialised model of ``convnext_size`` or explicit ``depths``/``hidden_sizes``.
    """
    from ..modeling import MatSegConfig, MatSegModel

    extra: Dict[str, Any] = {"descriptor_dim": config.descriptor_dim}
    if config.decoder_channels is not None:
        extra["decoder_channels"] = list(config.decoder_channels)
    if config.psp_channels is not None:
        extra["psp_channels"] = int(config.psp_channels)
    if config.init_from:
        return MatSegModel.from_pretrained(config.init_from)
    if config.encoder_checkpoint:
        return MatSegModel.from_backbone_pretrained(config.encoder_checkpoint, drop_path_rate=config.drop_path_rate,
                                                    **extra)
    cfg = MatSegConfig.from_convnext_size(config.convnext_size, depths=config.depths, hidden_sizes=config.hidden_sizes,
                                          drop_path_rate=config.drop_path_rate, **extra)
    return MatSegModel(cfg)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """RGB 0-255 float [B, 3, H, W] -> ``pixel_values`` exactly as :class:`MatSegImageProcessor` normalises."""
    from ..modeling.image_processing_matseg import REFERENCE_MEAN, REFERENCE_STD

    mean = torch.tensor(REFERENCE_MEAN, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(REFERENCE_STD, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.to(torch.float32) - mean) / std


def save_model(model, folder, *, metrics: Optional[Dict[str, float]] = None, training: Optional[str] = None,
               repo_id: Optional[str] = None, datasets=()) -> None:
    """``save_pretrained`` (safetensors) + the image processor + a model card holding ``metrics``."""
    from ..modeling import MatSegImageProcessor

    card: Dict[str, Any] = {"license": "cc0-1.0", "training": training, "repo_id": repo_id,
                            "datasets": list(datasets)}
    if metrics:
        card["metrics"] = metrics
    model.save_pretrained(folder, model_card=card)
    MatSegImageProcessor().save_pretrained(folder)


def mixed_precision_for(requested: str) -> str:
    """``auto`` -> ``bf16`` on GPUs that support it, ``fp16`` on other GPUs, ``no`` on CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


__all__ = ["build_model", "mixed_precision_for", "normalize_images", "save_model"]
