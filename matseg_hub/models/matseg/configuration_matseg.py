"""Configuration of the MatSeg descriptor network (ConvNeXt encoder + PSP + U-Net decoder).

``config.json`` holds exactly what is needed to build the network: the ConvNeXt encoder's configuration
(``backbone_config``), the descriptor depth and the decoder widths. It never triggers a download: the name of
the ConvNeXt checkpoint the encoder was initialised from (``backbone``) is kept as metadata only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

from transformers import ConvNextConfig, PretrainedConfig

from ...errors import MatSegInputError

# depths and stage widths of the published ConvNeXt sizes (Liu et al. 2022; torchvision / facebook/convnext-*)
CONVNEXT_SIZES: Dict[str, Dict[str, List[int]]] = {
    "tiny": {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768]},
    "small": {"depths": [3, 3, 27, 3], "hidden_sizes": [96, 192, 384, 768]},
    "base": {"depths": [3, 3, 27, 3], "hidden_sizes": [128, 256, 512, 1024]},
    "large": {"depths": [3, 3, 27, 3], "hidden_sizes": [192, 384, 768, 1536]},
    "xlarge": {"depths": [3, 3, 27, 3], "hidden_sizes": [256, 512, 1024, 2048]},
}
# torchvision's stochastic-depth rates, which the reference trained with (convnext_base: 0.5)
_TORCHVISION_DROP_PATH = {"tiny": 0.1, "small": 0.4, "base": 0.5, "large": 0.5, "xlarge": 0.5}

STAGE_NAMES = ["stage1", "stage2", "stage3", "stage4"]
REFERENCE_PSP_SCALES = (1.0, 0.5, 0.25, 0.125)


def convnext_encoder_config(size: str = "base", *, depths: Optional[Sequence[int]] = None,
                            hidden_sizes: Optional[Sequence[int]] = None, num_channels: int = 4,
                            drop_path_rate: Optional[float] = None, **kwargs: Any) -> ConvNextConfig:
    """A ``ConvNextConfig`` for the MatSeg encoder: a named size, or explicit ``depths``/``hidden_sizes``.

    ``num_channels`` is the stem's input channels (4 in the reference: RGB + a zero channel).
    """
    if depths is None or hidden_sizes is None:
        if size not in CONVNEXT_SIZES:
            raise MatSegInputError(f"unknown ConvNeXt size {size!r}; use one of {sorted(CONVNEXT_SIZES)} "
                                   "or give depths= and hidden_sizes=")
        depths = CONVNEXT_SIZES[size]["depths"] if depths is None else depths
        hidden_sizes = CONVNEXT_SIZES[size]["hidden_sizes"] if hidden_sizes is None else hidden_sizes
    if len(depths) != 4 or len(hidden_sizes) != 4:
        raise MatSegInputError(f"the MatSeg decoder needs a 4-stage ConvNeXt, got depths={list(depths)}, "
                               f"hidden_sizes={list(hidden_sizes)}")
    if drop_path_rate is None:
        drop_path_rate = _TORCHVISION_DROP_PATH.get(size, 0.0)
    return ConvNextConfig(num_channels=num_channels, depths=list(depths), hidden_sizes=list(hidden_sizes),
                          drop_path_rate=drop_path_rate, out_features=list(STAGE_NAMES), **kwargs)


class MatSegConfig(PretrainedConfig):
    r"""Configuration of :class:`MatSegModel`.

    Args:
        backbone_config: ``ConvNextConfig`` (or its dict) of the encoder. Default: ConvNeXt-base
            (depths [3, 3, 27, 3], hidden sizes [128, 256, 512, 1024], stochastic depth 0.5 as torchvision's
            ``convnext_base`` used by the reference). Its ``num_channels`` is forced to ``num_channels`` and
            its ``out_features`` to the four stages.
        backbone: name or path of the ConvNeXt checkpoint the encoder was (or is to be) initialised from, e.g.
            ``"facebook/convnext-base-224-22k"``. Metadata only: building or loading a MatSeg model never reads
            it; :meth:`MatSegModel.from_backbone_pretrained` does.
        descriptor_dim: depth ``D`` of the output descriptor map (reference: 128).
        num_channels: input channels of the encoder stem (reference: 4 = RGB + one channel that is zero in
            training and inference).
        num_image_channels: channels of a normalised image (3); inputs with this many channels get the
            remaining ``num_channels - num_image_channels`` channels filled with zeros.
        psp_scales: relative sizes at which the pyramid-pooling module resamples the last stage
            (reference: 1, 1/2, 1/4, 1/8).
        psp_channels: output channels of each pyramid branch; default ``hidden_sizes[-1] // 2`` (512 for base).
        decoder_channels: output channels of the first two U-Net blocks; default ``hidden_sizes[2], hidden_sizes[1]``
            (512, 256 for base). The third block outputs ``descriptor_dim``.
        batch_norm_eps: epsilon of the decoder's batch norms.
        initializer_range: std of the normal init of the encoder's layers (transformers convention).
    """

    model_type = "matseg"
    sub_configs = {"backbone_config": ConvNextConfig}

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoConfig") -> None:
        """No-op: the class lives in the installed ``matseg_hub`` package. ``save_pretrained`` writes the
        ``auto_map`` shim itself; ``transformers``' copying of the class's source files (which it does for classes
        loaded with ``trust_remote_code``) would copy package modules with relative imports and break."""
        return None

    def __init__(
        self,
        backbone_config: Union[ConvNextConfig, Dict[str, Any], None] = None,
        backbone: Optional[str] = None,
        descriptor_dim: int = 128,
        num_channels: int = 4,
        num_image_channels: int = 3,
        psp_scales: Sequence[float] = REFERENCE_PSP_SCALES,
        psp_channels: Optional[int] = None,
        decoder_channels: Optional[Sequence[int]] = None,
        batch_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ):
        if backbone_config is None:
            backbone_config = convnext_encoder_config("base", num_channels=num_channels)
        elif isinstance(backbone_config, dict):
            backbone_config = dict(backbone_config)
            backbone_config.pop("model_type", None)
            backbone_config = ConvNextConfig(**backbone_config)
        elif not isinstance(backbone_config, ConvNextConfig):
            raise MatSegInputError(f"backbone_config must be a ConvNextConfig or a dict, got {type(backbone_config).__name__}")
        hidden_sizes = list(backbone_config.hidden_sizes)
        if len(hidden_sizes) != 4 or len(backbone_config.depths) != 4:
            raise MatSegInputError(f"the MatSeg decoder needs a 4-stage ConvNeXt, got hidden_sizes={hidden_sizes}")
        if num_image_channels > num_channels:
            raise MatSegInputError(f"num_image_channels ({num_image_channels}) > num_channels ({num_channels})")
        backbone_config.num_channels = num_channels
        backbone_config.out_features = list(STAGE_NAMES)
        self.backbone_config = backbone_config
        self.backbone = backbone
        self.descriptor_dim = int(descriptor_dim)
        self.num_channels = int(num_channels)
        self.num_image_channels = int(num_image_channels)
        self.psp_scales = [float(s) for s in psp_scales]
        self.psp_channels = int(psp_channels) if psp_channels is not None else hidden_sizes[-1] // 2
        if decoder_channels is None:
            decoder_channels = [hidden_sizes[2], hidden_sizes[1]]
        if len(decoder_channels) != 2:
            raise MatSegInputError(f"decoder_channels must list 2 widths, got {list(decoder_channels)}")
        self.decoder_channels = [int(c) for c in decoder_channels]
        self.batch_norm_eps = float(batch_norm_eps)
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)

    @classmethod
    def from_convnext_size(cls, size: str = "base", *, depths: Optional[Sequence[int]] = None,
                           hidden_sizes: Optional[Sequence[int]] = None, drop_path_rate: Optional[float] = None,
                           **kwargs: Any) -> "MatSegConfig":
        """Config with a named ConvNeXt size (``tiny``/``small``/``base``/``large``/``xlarge``) or explicit
        ``depths``/``hidden_sizes`` (e.g. a tiny test model: ``depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]``)."""
        num_channels = kwargs.get("num_channels", 4)
        backbone_config = convnext_encoder_config(size, depths=depths, hidden_sizes=hidden_sizes,
                                                  num_channels=num_channels, drop_path_rate=drop_path_rate)
        return cls(backbone_config=backbone_config, **kwargs)

    def to_dict(self) -> Dict[str, Any]:
        output = super().to_dict()
        if isinstance(output.get("backbone_config"), PretrainedConfig):  # older transformers
            output["backbone_config"] = output["backbone_config"].to_dict()
        return output
