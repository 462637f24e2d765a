"""The MatSeg descriptor network as a ``transformers`` model.

Architecture (Eppel et al., NeurIPS 2024 D&B; reference ``Desnet.py``):

* encoder: ``transformers.ConvNextBackbone`` whose stem takes ``num_channels`` = 4 inputs (RGB + a channel
  that is zero in training and inference); the four stage outputs are used *without* extra layer norms (the
  reference uses torchvision's ``features`` directly), so the backbone's ``hidden_states_norms`` are identities;
* pyramid pooling (PSP) on the last stage: for each scale s in (1, 1/2, 1/4, 1/8) bilinear resize to
  ``max(1, int(size * s))``, conv3x3 + BN + GELU, resize back; concatenate; conv3x3 + BN + GELU back to the
  last stage's width;
* U-Net decoder, 3 blocks: conv3x3 + BN + GELU, bilinear upsampling to the skip's size, plus a conv1x1 + BN +
  GELU projection of the skip (stages 3, 2, 1). The last block outputs the ``D``-channel descriptor map at the
  stem's resolution (1/4 of the input).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F
from transformers import ConvNextBackbone, ConvNextConfig, ConvNextModel, PreTrainedModel
from transformers.utils import ModelOutput

from ...errors import MatSegInputError
from ...utils.logging import get_logger
from .configuration_matseg import STAGE_NAMES, MatSegConfig

logger = get_logger(__name__)

MIN_INPUT_SIZE = 32  # the last stage is at 1/32: smaller inputs leave it empty

# ``auto_map``: lets ``Auto*.from_pretrained(..., trust_remote_code=True)`` find the classes without a prior
# ``import matseg_hub.models.matseg``. The "remote code" is a two-line shim that imports the installed package.
AUTO_MAP_SHIM = "matseg_auto.py"
AUTO_MAP_MODEL = {"AutoConfig": "matseg_auto.MatSegConfig", "AutoModel": "matseg_auto.MatSegModel"}
AUTO_MAP_PROCESSOR = {"AutoImageProcessor": "matseg_auto.MatSegImageProcessor"}
_SHIM_TEXT = '''"""MatSeg classes for transformers' Auto classes: they come from the installed package
(``pip install matseg-hub``); nothing else is defined or run here."""

from matseg_hub.models.matseg import MatSegConfig, MatSegImageProcessor, MatSegModel  # noqa: F401
'''


def write_auto_map_shim(directory: Union[str, os.PathLike]) -> Path:
    """Write ``matseg_auto.py`` (the ``auto_map`` target) into a saved model folder; returns its path."""
    from ...utils.files import atomic_write_text

    path = Path(directory) / AUTO_MAP_SHIM
    atomic_write_text(path, _SHIM_TEXT)
    return path


@dataclass
class MatSegOutput(ModelOutput):
    """Output of :class:`MatSegModel`.

    Attributes:
        descriptor_map: float [B, D, H/4, W/4] (exactly ``floor(H/4)`` x ``floor(W/4)``), raw (not
            L2-normalised) descriptors; cosine similarity between them is what the model was trained for.
        upsampled_descriptor_map: float [B, D, H', W'] — ``descriptor_map`` resized bilinearly
            (``align_corners=False``) to the input size or to ``output_size``; only when asked for.
        hidden_states: the four encoder stage outputs (float [B, C_i, H/2^(i+2), W/2^(i+2)]) when
            ``output_hidden_states=True``.
    """

    descriptor_map: Optional[torch.FloatTensor] = None
    upsampled_descriptor_map: Optional[torch.FloatTensor] = None
    hidden_states: Optional[Tuple[torch.FloatTensor, ...]] = None


class MatSegConvBlock(nn.Module):
    """conv (no bias) + BatchNorm + GELU. float [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps=eps)
        self.act = nn.GELU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(hidden_states)))


class MatSegPyramidPooling(nn.Module):
    """PSP on the last encoder stage. float [B, C, h, w] -> [B, C, h, w]."""

    def __init__(self, config: MatSegConfig):
        super().__init__()
        channels = config.backbone_config.hidden_sizes[-1]
        self.scales = list(config.psp_scales)
        self.branches = nn.ModuleList(
            [MatSegConvBlock(channels, config.psp_channels, 3, config.batch_norm_eps) for _ in self.scales])
        self.bottleneck = MatSegConvBlock(config.psp_channels * len(self.scales), channels, 3, config.batch_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        size = tuple(hidden_states.shape[-2:])
        pyramid = []
        for scale, branch in zip(self.scales, self.branches):
            scaled = (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))
            y = F.interpolate(hidden_states, size=scaled, mode="bilinear", align_corners=False)
            y = F.interpolate(branch(y), size=size, mode="bilinear", align_corners=False)
            pyramid.append(y)
        return self.bottleneck(torch.cat(pyramid, dim=1))


class MatSegUpBlock(nn.Module):
    """One U-Net step: ``conv(x)`` resized to the skip's size plus ``skip_proj(skip)``.

    x: float [B, C_in, h, w], skip: float [B, C_skip, H, W] -> float [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int, eps: float):
        super().__init__()
        self.conv = MatSegConvBlock(in_channels, out_channels, 3, eps)
        self.skip = MatSegConvBlock(skip_channels, out_channels, 1, eps)

    def forward(self, hidden_states: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv(hidden_states)
        skip = self.skip(skip)
        if hidden_states.shape[-2:] != skip.shape[-2:]:
            hidden_states = F.interpolate(hidden_states, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return hidden_states + skip


class MatSegDecoder(nn.Module):
    """Stages (1/4, 1/8, 1/16, 1/32) -> descriptor map float [B, D, H/4, W/4]."""

    def __init__(self, config: MatSegConfig):
        super().__init__()
        hidden = config.backbone_config.hidden_sizes
        widths = [hidden[3], *config.decoder_channels, config.descriptor_dim]
        skips = [hidden[2], hidden[1], hidden[0]]
        self.blocks = nn.ModuleList(
            [MatSegUpBlock(widths[i], widths[i + 1], skips[i], config.batch_norm_eps) for i in range(3)])

    def forward(self, bottleneck: torch.Tensor, stages: Sequence[torch.Tensor]) -> torch.Tensor:
        hidden_states = bottleneck
        for block, skip in zip(self.blocks, (stages[2], stages[1], stages[0])):
            hidden_states = block(hidden_states, skip)
        return hidden_states


#: keys of :class:`MatSegImageProcessor`'s output besides ``pixel_values``, which ``forward`` accepts and ignores
PROCESSOR_EXTRA_KEYS = ("original_sizes", "processed_sizes")


class MatSegPreTrainedModel(PreTrainedModel):
    config_class = MatSegConfig
    base_model_prefix = "matseg"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ConvNextLayer", "ConvNextStage"]

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoModel") -> None:
        """No-op: the class lives in the installed ``matseg_hub`` package. ``save_pretrained`` writes the
        ``auto_map`` shim itself; ``transformers``' copying of the class's source files (which it does for classes
        loaded with ``trust_remote_code``) would copy package modules with relative imports and break."""
        return None

    def _init_weights(self, module: nn.Module) -> None:
        """PSP / decoder: PyTorch's default init (what the reference trains from). The ConvNeXt encoder is a
        sub-model and keeps its own scheme (transformers dispatches to ``ConvNextBackbone._init_weights``)."""
        try:  # transformers >= 5: init helpers that leave loaded weights alone
            from transformers import initialization as init
        except ImportError:  # pragma: no cover - transformers 4.x
            from torch.nn import init
        if isinstance(module, nn.Conv2d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if module.running_mean is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)


class MatSegModel(MatSegPreTrainedModel):
    """ConvNeXt U-Net mapping an image to a ``D``-dimensional material descriptor per pixel.

    Inputs are normalised images (see :class:`MatSegImageProcessor`): ``pixel_values`` float
    [B, 3, H, W] (a zero 4th channel is added) or [B, 4, H, W], with H, W >= 32 (multiples of 32 recommended).
    """

    def __init__(self, config: MatSegConfig):
        super().__init__(config)
        backbone_config = config.backbone_config
        self.backbone = ConvNextBackbone(backbone_config)
        # the reference feeds the raw stage outputs to PSP / skips: no extra layer norms on the feature maps
        self.backbone.hidden_states_norms = nn.ModuleDict({stage: nn.Identity() for stage in STAGE_NAMES})
        self.psp = MatSegPyramidPooling(config)
        self.decoder = MatSegDecoder(config)
        self.post_init()

    # ------------------------------------------------------------------ inputs
    def _check_pixel_values(self, pixel_values: Any) -> torch.Tensor:
        if not isinstance(pixel_values, torch.Tensor):
            raise MatSegInputError(f"pixel_values must be a torch.Tensor [B, C, H, W], got {type(pixel_values).__name__}"
                                   " (use MatSegImageProcessor to turn images into pixel_values)")
        if pixel_values.ndim != 4:
            raise MatSegInputError(f"pixel_values must have 4 dimensions [B, C, H, W], got shape {tuple(pixel_values.shape)}")
        if not pixel_values.is_floating_point():
            raise MatSegInputError(f"pixel_values must be a floating-point tensor (normalised image), got {pixel_values.dtype}"
                                   " (use MatSegImageProcessor to turn uint8 images into pixel_values)")
        channels = pixel_values.shape[1]
        cfg = self.config
        if channels not in (cfg.num_image_channels, cfg.num_channels):
            raise MatSegInputError(f"pixel_values must have {cfg.num_image_channels} (image) or {cfg.num_channels} "
                                   f"(image + extra) channels in dimension 1, got shape {tuple(pixel_values.shape)}")
        height, width = pixel_values.shape[-2:]
        if height < MIN_INPUT_SIZE or width < MIN_INPUT_SIZE:
            raise MatSegInputError(f"pixel_values must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, got {height}x{width}")
        if channels < cfg.num_channels:
            extra = pixel_values.new_zeros((pixel_values.shape[0], cfg.num_channels - channels, height, width))
            pixel_values = torch.cat([pixel_values, extra], dim=1)
        param = next(self.parameters())
        return pixel_values.to(device=param.device, dtype=param.dtype)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        upsample: bool = False,
        output_size: Optional[Tuple[int, int]] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[MatSegOutput, Tuple[torch.Tensor, ...]]:
        """Descriptor map of normalised images.

        Args:
            pixel_values: float [B, 3, H, W] or [B, 4, H, W] (normalised by :class:`MatSegImageProcessor`).
            upsample: also return ``upsampled_descriptor_map`` at the input size (bilinear, align_corners=False).
            output_size: (height, width) to upsample to instead of the input size (implies ``upsample``).
            output_hidden_states: also return the four encoder stage outputs.
            return_dict: return a :class:`MatSegOutput` (default) or a tuple.
            output_attentions: accepted for transformers' generic callers; the model has no attention (``True`` is
                refused).
            kwargs: only the image processor's bookkeeping (``original_sizes``, ``processed_sizes``), so that
                ``model(**processor(images))`` works; anything else is a misspelled argument.

        Returns:
            :class:`MatSegOutput` with ``descriptor_map`` float [B, D, H/4, W/4].

        Raises:
            TypeError: an unknown keyword argument (named), as Python raises for a misspelled one.
        """
        unknown = sorted(set(kwargs) - set(PROCESSOR_EXTRA_KEYS))
        if unknown:
            raise TypeError(f"MatSegModel.forward() got unexpected keyword argument(s) {unknown}; it takes "
                            "pixel_values, upsample, output_size, output_hidden_states, return_dict")
        if output_attentions:
            raise TypeError("MatSegModel.forward(): output_attentions=True, but the model has no attention layers")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        pixel_values = self._check_pixel_values(pixel_values)
        stages = self.backbone(pixel_values, return_dict=True).feature_maps
        bottleneck = self.psp(stages[-1])
        descriptor_map = self.decoder(bottleneck, stages)

        upsampled = None
        if upsample or output_size is not None:
            size = tuple(output_size) if output_size is not None else tuple(pixel_values.shape[-2:])
            upsampled = F.interpolate(descriptor_map, size=size, mode="bilinear", align_corners=False)
        hidden_states = tuple(stages) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (descriptor_map, upsampled, hidden_states) if v is not None)
        return MatSegOutput(descriptor_map=descriptor_map, upsampled_descriptor_map=upsampled,
                            hidden_states=hidden_states)

    # ------------------------------------------------------------------ encoder initialisation
    def load_encoder_weights(self, name_or_path: Union[str, os.PathLike], **hub_kwargs: Any) -> "MatSegModel":
        """Initialise the encoder from a ConvNeXt checkpoint (Hub id or local folder of a ``ConvNextModel`` /
        ``ConvNextForImageClassification`` / ``ConvNextBackbone``).

        The 3-channel stem is copied into the first 3 input channels and the extra channel's weights are set
        to zero, as the reference does. Stage widths and depths must match ``config.backbone_config``.
        ``hub_kwargs`` go to ``from_pretrained`` (``revision``, ``token``, ``cache_dir``, ``local_files_only``).
        """
        # ConvNextModel reads ConvNextModel / ConvNextForImageClassification / ConvNextBackbone checkpoints alike
        source = ConvNextModel.from_pretrained(str(name_or_path), **hub_kwargs)
        # keep the stem and the stages; the pooled-output layer norm (and any classifier) is not part of the encoder
        state = {k: v for k, v in source.state_dict().items() if k.startswith(("embeddings.", "encoder."))}
        target = self.backbone.state_dict()
        stem = "embeddings.patch_embeddings.weight"
        src_stem = state[stem]
        tgt_stem = target[stem]
        if src_stem.shape[0] != tgt_stem.shape[0] or src_stem.shape[2:] != tgt_stem.shape[2:]:
            raise MatSegInputError(f"encoder checkpoint {name_or_path} does not match the configured ConvNeXt "
                                   f"(stem {tuple(src_stem.shape)} vs {tuple(tgt_stem.shape)})")
        stem_weight = torch.zeros_like(tgt_stem)
        n = min(src_stem.shape[1], tgt_stem.shape[1])
        stem_weight[:, :n] = src_stem[:, :n]
        state[stem] = stem_weight
        mismatched = [k for k, v in state.items() if k in target and target[k].shape != v.shape]
        unexpected = [k for k in state if k not in target]
        missing = [k for k in target if k not in state]
        if mismatched or missing:
            raise MatSegInputError(f"encoder checkpoint {name_or_path} does not match the configured ConvNeXt "
                                   f"(mismatched: {mismatched[:5]}, missing: {missing[:5]})")
        with torch.no_grad():
            for key, value in state.items():
                if key in target:
                    target[key].copy_(value.to(target[key].dtype))
        if unexpected:
            logger.debug("ignored encoder checkpoint entries: %s", unexpected)
        self.config.backbone = str(name_or_path)
        logger.info("initialised the MatSeg encoder from %s", name_or_path)
        return self

    @classmethod
    def from_backbone_pretrained(cls, name_or_path: Union[str, os.PathLike] = "facebook/convnext-base-224-22k",
                                 drop_path_rate: Optional[float] = None, hub_kwargs: Optional[Dict[str, Any]] = None,
                                 **config_kwargs: Any) -> "MatSegModel":
        """A new MatSeg model whose encoder starts from a ConvNeXt checkpoint (the paper's starting point).

        The encoder's size is read from the checkpoint's config; decoder and PSP are randomly initialised;
        ``config_kwargs`` go to :class:`MatSegConfig` (``descriptor_dim``, ...). This is the only place that
        reads ``backbone`` weights: ``from_pretrained`` of a saved MatSeg model never does.
        """
        hub_kwargs = dict(hub_kwargs or {})
        source_config = ConvNextConfig.from_pretrained(str(name_or_path), **hub_kwargs)
        num_channels = config_kwargs.get("num_channels", 4)
        kwargs = dict(num_channels=num_channels, depths=list(source_config.depths),
                      hidden_sizes=list(source_config.hidden_sizes), drop_path_rate=drop_path_rate)
        from .configuration_matseg import convnext_encoder_config

        size = _size_name(source_config.depths, source_config.hidden_sizes)
        backbone_config = convnext_encoder_config(size or "base", **kwargs)
        config = MatSegConfig(backbone_config=backbone_config, backbone=str(name_or_path), **config_kwargs)
        model = cls(config)
        model.load_encoder_weights(name_or_path, **hub_kwargs)
        return model

    # ------------------------------------------------------------------ model card
    def model_card(self, **kwargs: Any) -> str:
        """README.md text (YAML metadata + description) for this model; keyword arguments as
        :func:`matseg_hub.models.matseg.model_card.model_card_text` (license, tags, datasets, metrics, repo_id, ...)."""
        from .model_card import model_card_text

        return model_card_text(self.config, **kwargs)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], *args: Any, model_card: Optional[Dict[str, Any]] = None,
                        write_model_card: bool = True, **kwargs: Any):
        """``PreTrainedModel.save_pretrained`` plus a ``README.md`` model card (unless one exists or
        ``write_model_card=False``; ``model_card``: keyword arguments of :meth:`model_card` — license, datasets,
        metrics, ...) and the ``auto_map`` shim (see :func:`write_auto_map_shim`) so that
        ``AutoModel.from_pretrained(folder_or_repo, trust_remote_code=True)`` works without importing matseg_hub."""
        self.config.auto_map = dict(AUTO_MAP_MODEL)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        write_auto_map_shim(save_directory)
        readme = Path(save_directory) / "README.md"
        if write_model_card and (model_card is not None or not readme.exists()):
            from ...utils.files import atomic_write_text

            atomic_write_text(readme, self.model_card(**(model_card or {})))
        return result

    def push_to_hub(self, repo_id: str, *, model_card: Optional[Dict[str, Any]] = None, image_processor: Any = None,
                    commit_message: Optional[str] = None, private: Optional[bool] = None,
                    token: Union[bool, str, None] = None, revision: Optional[str] = None, create_pr: bool = False,
                    **save_kwargs: Any):
        """Upload the model (and ``image_processor`` when given) to the Hub with a MatSeg model card.

        ``model_card``: keyword arguments of :meth:`model_card` (license, datasets, metrics, ...); when None, a
        model card already in the repository is kept and a default one is written only if there is none
        (``transformers``' own ``push_to_hub`` would replace it with a generic template).
        Returns the ``CommitInfo`` of the upload.
        """
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        keep_remote_card = model_card is None and api.file_exists(repo_id, "README.md", repo_type="model",
                                                                    revision=revision)
        with tempfile.TemporaryDirectory() as tmp:
            card = dict(model_card or {})
            card.setdefault("repo_id", repo_id)
            self.save_pretrained(tmp, model_card=card, write_model_card=not keep_remote_card, **save_kwargs)
            if image_processor is not None:
                image_processor.save_pretrained(tmp)
            return api.upload_folder(folder_path=tmp, repo_id=repo_id, repo_type="model", revision=revision,
                                     create_pr=create_pr, commit_message=commit_message or "Upload MatSeg model")


def _size_name(depths: Sequence[int], hidden_sizes: Sequence[int]) -> Optional[str]:
    from .configuration_matseg import CONVNEXT_SIZES

    for name, spec in CONVNEXT_SIZES.items():
        if list(spec["depths"]) == list(depths) and list(spec["hidden_sizes"]) == list(hidden_sizes):
            return name
    return None
