"""Configuration of the Materialistic material-selection network (Sharma et al., SIGGRAPH 2023).

``config.json`` holds what is needed to build the network: the DINO ViT backbone's ``ViTConfig``
(``backbone_config``; default DINO ViT-B/8), which of its hidden states feed the four decoder levels, the widths of
the reassemble / cross-attention / fusion / head layers, and the input policy of :class:`MaterialisticScorer`
(``image_size``, ``resize_mode``, ``resample``, ``image_mean``, ``image_std``). Nothing here triggers a download.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Union

from transformers import PretrainedConfig, ViTConfig

from ...errors import MatSegInputError

#: the decoder levels' upsampling of the ViT token grid (the authors' DPT-style reassemble: x4, x2, x1, x1)
REASSEMBLE_FACTORS = (4, 2, 1, 1)
RESIZE_MODES = ("shortest_edge", "square", "multiple")
RESAMPLE_CHOICES = ("box", "bilinear", "bicubic", "nearest")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def dino_vit_config(size: str = "base", patch_size: int = 8, **kwargs: Any) -> ViTConfig:
    """``ViTConfig`` of a DINO ViT (Caron et al. 2021, ``facebookresearch/dino``): ``size`` ``"small"`` or
    ``"base"``, patch 8 or 16, 224-pixel position grid, LayerNorm eps 1e-6, exact GELU. ``kwargs`` override."""
    sizes = {"small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
             "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)}
    if size not in sizes:
        raise MatSegInputError(f"unknown DINO ViT size {size!r}; use one of {sorted(sizes)}")
    params: Dict[str, Any] = dict(sizes[size], patch_size=patch_size, image_size=224, layer_norm_eps=1e-6,
                                  hidden_act="gelu", qkv_bias=True, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    params.update(kwargs)
    return ViTConfig(**params)


class MaterialisticConfig(PretrainedConfig):
    r"""Configuration of :class:`~matseg_hub.models.materialistic.MaterialisticModel`.

    Args:
        backbone_config: ``ViTConfig`` (or its dict) of the frozen DINO backbone; default DINO ViT-B/8
            (:func:`dino_vit_config`).
        backbone_out_indices: the four ``hidden_states`` indices (0 = patch embeddings, i = output of block i) that
            feed the four decoder levels; the authors hook blocks 3, 6, 9, 12 (1-based).
        reassemble_hidden_size: channels of each level after the readout projection + 1x1 convolution (256).
        fusion_hidden_size: channels of the cross-attention output and of the fusion blocks (256).
        num_attention_heads: heads of each level's sigmoid cross-attention (16).
        head_hidden_sizes: widths of the per-pixel MLP's hidden layers (256, 128, 128); the last layer has 1 output.
        cross_attention_layer_norm_eps: eps of the cross-attention layer norms (PyTorch default 1e-5).
        image_size: input resolution: the shortest edge for ``resize_mode="shortest_edge"`` (authors: 512, then a
            512x512 centre crop, which a full-image map cannot use), the side for ``"square"``; ignored by
            ``"multiple"`` (the image's own size). Sizes are always rounded to a multiple of the patch size.
        resize_mode: ``"shortest_edge"`` (default), ``"square"`` or ``"multiple"``.
        resample: PIL filter for the resize (``"box"``, as the authors).
        image_mean, image_std: normalisation of [0, 1] RGB (ImageNet's, as the authors).
        initializer_range: std of the normal init of the ViT (transformers convention).
    """

    model_type = "materialistic"
    sub_configs = {"backbone_config": ViTConfig}

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoConfig") -> None:
        """No-op: the class lives in the installed ``matseg_hub`` package (see MatSegConfig)."""
        return None

    def __init__(
        self,
        backbone_config: Union[ViTConfig, Dict[str, Any], None] = None,
        backbone_out_indices: Sequence[int] = (3, 6, 9, 12),
        reassemble_hidden_size: int = 256,
        fusion_hidden_size: int = 256,
        num_attention_heads: int = 16,
        head_hidden_sizes: Sequence[int] = (256, 128, 128),
        cross_attention_layer_norm_eps: float = 1e-5,
        image_size: int = 512,
        resize_mode: str = "shortest_edge",
        resample: str = "box",
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ):
        if backbone_config is None:
            backbone_config = dino_vit_config("base", patch_size=8)
        elif isinstance(backbone_config, dict):
            backbone_config = dict(backbone_config)
            backbone_config.pop("model_type", None)
            backbone_config = ViTConfig(**backbone_config)
        elif not isinstance(backbone_config, ViTConfig):
            raise MatSegInputError(f"backbone_config must be a ViTConfig or a dict, got {type(backbone_config).__name__}")
        indices = [int(i) for i in backbone_out_indices]
        layers = int(backbone_config.num_hidden_layers)
        if len(indices) != len(REASSEMBLE_FACTORS) or not all(0 <= i <= layers for i in indices):
            raise MatSegInputError(f"backbone_out_indices must list {len(REASSEMBLE_FACTORS)} hidden-state indices in "
                                   f"0..{layers}, got {list(backbone_out_indices)}")
        patch = int(backbone_config.patch_size)
        if any(patch % f for f in REASSEMBLE_FACTORS):
            raise MatSegInputError(f"the backbone patch size ({patch}) must be divisible by the reassemble factors "
                                   f"{REASSEMBLE_FACTORS}")
        if fusion_hidden_size % num_attention_heads or reassemble_hidden_size < num_attention_heads:
            raise MatSegInputError(f"fusion_hidden_size ({fusion_hidden_size}) must be divisible by num_attention_heads "
                                   f"({num_attention_heads}), and reassemble_hidden_size at least that many")
        if resize_mode not in RESIZE_MODES:
            raise MatSegInputError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if resample not in RESAMPLE_CHOICES:
            raise MatSegInputError(f"resample must be one of {RESAMPLE_CHOICES}, got {resample!r}")
        if int(image_size) < patch:
            raise MatSegInputError(f"image_size must be at least the patch size {patch}, got {image_size}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(float(s) for s in image_std) <= 0:
            raise MatSegInputError(f"image_mean / image_std must be 3 numbers (std > 0), got {image_mean}, {image_std}")
        self.backbone_config = backbone_config
        self.backbone_out_indices = indices
        self.reassemble_hidden_size = int(reassemble_hidden_size)
        self.fusion_hidden_size = int(fusion_hidden_size)
        self.num_attention_heads = int(num_attention_heads)
        self.head_hidden_sizes = [int(h) for h in head_hidden_sizes]
        self.cross_attention_layer_norm_eps = float(cross_attention_layer_norm_eps)
        self.image_size = int(image_size)
        self.resize_mode = str(resize_mode)
        self.resample = str(resample)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)

    @property
    def patch_size(self) -> int:
        return int(self.backbone_config.patch_size)

    def to_dict(self) -> Dict[str, Any]:
        output = super().to_dict()
        if isinstance(output.get("backbone_config"), PretrainedConfig):  # older transformers
            output["backbone_config"] = output["backbone_config"].to_dict()
        return output


__all__ = ["MaterialisticConfig", "dino_vit_config", "REASSEMBLE_FACTORS", "RESIZE_MODES", "RESAMPLE_CHOICES",
           "IMAGENET_MEAN", "IMAGENET_STD"]
