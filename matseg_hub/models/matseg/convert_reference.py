"""Convert a reference MatSeg checkpoint (``torch.save(Desnet.Net().state_dict())``) into a :class:`MatSegModel`.

Usage::

    python -m matseg_hub.models.matseg.convert_reference logs/Defult.torch --output matseg-convnext-base [--push-to-hub ORG/NAME]

The reference net (``Desnet.py`` in sagieppel/Zero-Shot-Material-State-Segmentation-Net) wraps torchvision's
ConvNeXt (``Encoder1.features.*``) with a 4-channel stem, a PSP module (``PSPLayers``, ``SqueezeLayers``) and a
U-Net decoder (``upsample_ModuleList``). Key mapping:

=========================================  =================================================================
reference                                  MatSegModel
=========================================  =================================================================
``Encoder1.features.0.{0,1}``              ``backbone.embeddings.{patch_embeddings,layernorm}``
``Encoder1.features.{2s+1}.{j}.block.0``   ``backbone.encoder.stages.{s}.layers.{j}.dwconv``
``...block.2`` / ``block.3`` / ``block.5``  ``...layernorm`` / ``pwconv1`` / ``pwconv2``
``...layer_scale`` [C, 1, 1]               ``...layer_scale_parameter`` [C]
``Encoder1.features.{2s}.{0,1}``           ``backbone.encoder.stages.{s}.downsampling_layer.{0,1}``
``PSPLayers.{i}.{0,1}``                    ``psp.branches.{i}.{conv,norm}``
``SqueezeLayers.{0,1}``                    ``psp.bottleneck.{conv,norm}``
``upsample_ModuleList.{2b}.{0,1}``         ``decoder.blocks.{b}.conv.{conv,norm}``
``upsample_ModuleList.{2b+1}.{0,1}``       ``decoder.blocks.{b}.skip.{conv,norm}``
``Encoder1.classifier.*``                  dropped (ImageNet head, unused by the reference forward)
=========================================  =================================================================

The module also holds :class:`ReferenceNet`, an independent port of the reference forward pass with the
reference's module names (torchvision-style ConvNeXt blocks re-implemented in plain torch), used to verify a
conversion (``--verify``, on by default), by the tests and by ``bench/bench_model.py``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import MatSegFormatError, MatSegInputError
from ...utils.logging import get_logger

logger = get_logger(__name__)

REFERENCE_MEAN = (123.68, 116.779, 103.939)
REFERENCE_STD = (65.0, 65.0, 65.0)


# ----------------------------------------------------------------------------------------------------------------
# Port of the reference network (module names as in Desnet.Net, torchvision ConvNeXt naming inside Encoder1)
# ----------------------------------------------------------------------------------------------------------------
class _LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d: LayerNorm over channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class _Permute(nn.Module):
    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class _CNBlock(nn.Module):
    """torchvision ``CNBlock`` (eval behaviour: stochastic depth is the identity)."""

    def __init__(self, dim: int, layer_scale: float = 1e-6):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            _Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            _Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale * self.block(x) + x


class _TorchvisionConvNeXt(nn.Module):
    """``features`` / ``avgpool`` / ``classifier`` as torchvision's ConvNeXt, with an ``in_channels`` stem."""

    def __init__(self, depths: Sequence[int], widths: Sequence[int], in_channels: int = 4, num_classes: int = 1000):
        super().__init__()
        layers: List[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, widths[0], kernel_size=4, stride=4),
                                                 _LayerNorm2d(widths[0], eps=1e-6))]
        for i, (depth, width) in enumerate(zip(depths, widths)):
            layers.append(nn.Sequential(*[_CNBlock(width) for _ in range(depth)]))
            if i + 1 < len(widths):
                layers.append(nn.Sequential(_LayerNorm2d(width, eps=1e-6),
                                            nn.Conv2d(width, widths[i + 1], kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(_LayerNorm2d(widths[-1], eps=1e-6), nn.Flatten(1),
                                        nn.Linear(widths[-1], num_classes))


def _conv_bn_gelu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=k, stride=1, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.GELU())


class ReferenceNet(nn.Module):
    """Port of the reference ``Desnet.Net`` (PSP mode, "add" skip stitching, resize upsampling).

    State-dict keys are the reference's, so ``ReferenceNet().load_state_dict(torch.load("Defult.torch"))`` works.
    Default sizes are the reference's (ConvNeXt-base, descriptor depth 128); smaller sizes follow the same rules
    (PSP branch width ``widths[-1] // 2``, decoder widths ``widths[2], widths[1], descriptor_depth``).
    """

    SKIP_LAYERS = {2: 5, 4: 3, 8: 1}  # upsampling step -> encoder feature index kept for the skip connection
    PSP_SCALES = (1, 1 / 2, 1 / 4, 1 / 8)

    def __init__(self, descriptor_depth: int = 128, depths: Sequence[int] = (3, 3, 27, 3),
                 widths: Sequence[int] = (128, 256, 512, 1024)):
        super().__init__()
        self.Encoder1 = _TorchvisionConvNeXt(depths, widths, in_channels=4)
        top = widths[-1]
        self.PSPLayers = nn.ModuleList([_conv_bn_gelu(top, top // 2, 3) for _ in self.PSP_SCALES])
        self.SqueezeLayers = _conv_bn_gelu(top // 2 * len(self.PSP_SCALES), top, 3)
        self.upscaling = {2: (top, widths[2], widths[2]), 4: (widths[2], widths[1], widths[1]),
                          8: (widths[1], descriptor_depth, widths[0])}  # step -> (in, out, skip)
        self.upsample_ModuleList = nn.ModuleList()
        for step in (2, 4, 8):
            cin, cout, cskip = self.upscaling[step]
            self.upsample_ModuleList.append(_conv_bn_gelu(cin, cout, 3))
            self.upsample_ModuleList.append(_conv_bn_gelu(cskip, cout, 1))

    def preprocess(self, images: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """images: [B, H, W, 3] 0–255 (any channel order; normalised per channel index), mask: [B, H, W]."""
        param = next(self.parameters())
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(param.dtype).to(param.device)
        roi = torch.from_numpy(mask.astype(np.float32)).unsqueeze(1).to(param.dtype).to(param.device)
        x = x.clone()
        for i in range(3):
            x[:, i] = (x[:, i] - REFERENCE_MEAN[i]) / REFERENCE_STD[i]
        return torch.cat([x, roi], 1)

    def forward_tensor(self, x: torch.Tensor, output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """x: normalised float [B, 4, H, W] -> descriptor map [B, D, H/4, W/4] (or at ``output_size``)."""
        kept = {}
        for i, layer in enumerate(self.Encoder1.features):
            x = layer(x)
            for step, index in self.SKIP_LAYERS.items():
                if index == i:
                    kept[step] = x
        size = (x.shape[2], x.shape[3])
        pyramid = []
        for scale, layer in zip(self.PSP_SCALES, self.PSPLayers):
            new = (np.array(size) * scale).astype(np.int32)
            new = (max(1, int(new[0])), max(1, int(new[1])))
            y = F.interpolate(x, new, mode="bilinear", align_corners=False)
            pyramid.append(F.interpolate(layer(y), size, mode="bilinear", align_corners=False))
        x = self.SqueezeLayers(torch.cat(pyramid, dim=1))
        for k, step in enumerate((2, 4, 8)):
            x = self.upsample_ModuleList[2 * k](x)
            y = self.upsample_ModuleList[2 * k + 1](kept[step])
            if y.shape[2] != x.shape[2] or y.shape[3] != x.shape[3]:
                x = F.interpolate(x, size=(y.shape[2], y.shape[3]), mode="bilinear", align_corners=False)
                x = x + y  # the reference adds the skip only inside this branch (always taken in practice)
        if output_size is not None:
            x = F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, images: np.ndarray, mask: np.ndarray, train_mode: bool = True) -> torch.Tensor:
        """As ``Desnet.Net.forward(Images, Mask, TrainMode)``: numpy [B, H, W, 3] 0–255 and [B, H, W] -> descriptor
        map float [B, D, H/4, W/4], or at [H, W] when ``train_mode`` is False."""
        x = self.preprocess(images, mask)
        return self.forward_tensor(x, None if train_mode else (images.shape[1], images.shape[2]))


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------
_BLOCK_PARTS = {"block.0": "dwconv", "block.2": "layernorm", "block.3": "pwconv1", "block.5": "pwconv2"}
_BN_PARTS = {"0": "conv", "1": "norm"}


def _strip_prefix(state_dict: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):  # saved from DataParallel
            key = key[len("module."):]
        out[key] = value
    return out


def reference_config(state_dict: Mapping[str, torch.Tensor]):
    """The :class:`MatSegConfig` matching a reference state dict (sizes read from the tensors' shapes)."""
    from . import MatSegConfig, convnext_encoder_config

    sd = _strip_prefix(state_dict)
    required = ["Encoder1.features.0.0.weight", "PSPLayers.0.0.weight", "upsample_ModuleList.4.0.weight"]
    for key in required:
        if key not in sd:
            raise MatSegFormatError("not a reference MatSeg (Desnet.Net) state dict", field=key)
    stem = sd["Encoder1.features.0.0.weight"]
    depths, widths = [], []
    for s in range(4):
        idx = 2 * s + 1
        blocks = {int(m.group(1)) for k in sd for m in [re.match(rf"Encoder1\.features\.{idx}\.(\d+)\.layer_scale$", k)] if m}
        if not blocks:
            raise MatSegFormatError(f"no ConvNeXt blocks found for stage {s + 1}", field=f"Encoder1.features.{idx}")
        depths.append(max(blocks) + 1)
        widths.append(int(sd[f"Encoder1.features.{idx}.0.layer_scale"].shape[0]))
    # stochastic depth 0.5 as torchvision's convnext_base, which the reference trains with
    backbone_config = convnext_encoder_config("base", depths=depths, hidden_sizes=widths,
                                              num_channels=int(stem.shape[1]))
    return MatSegConfig(
        backbone_config=backbone_config,
        descriptor_dim=int(sd["upsample_ModuleList.4.0.weight"].shape[0]),
        num_channels=int(stem.shape[1]),
        psp_channels=int(sd["PSPLayers.0.0.weight"].shape[0]),
        decoder_channels=[int(sd["upsample_ModuleList.0.0.weight"].shape[0]),
                          int(sd["upsample_ModuleList.2.0.weight"].shape[0])],
    )


def map_reference_key(key: str) -> Optional[str]:
    """MatSegModel state-dict key for a reference key; None for keys that are dropped (ImageNet head)."""
    if key.startswith("Encoder1.classifier."):
        return None
    m = re.match(r"Encoder1\.features\.0\.([01])\.(\w+)$", key)
    if m:
        part = "patch_embeddings" if m.group(1) == "0" else "layernorm"
        return f"backbone.embeddings.{part}.{m.group(2)}"
    m = re.match(r"Encoder1\.features\.(\d+)\.(\d+)\.(.+)$", key)
    if m:
        index, sub, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        if index % 2 == 1:  # stage blocks
            stage = (index - 1) // 2
            if rest == "layer_scale":
                return f"backbone.encoder.stages.{stage}.layers.{sub}.layer_scale_parameter"
            for ref, ours in _BLOCK_PARTS.items():
                if rest.startswith(ref + "."):
                    return f"backbone.encoder.stages.{stage}.layers.{sub}.{ours}.{rest[len(ref) + 1:]}"
        else:  # downsampling between stages
            stage = index // 2
            return f"backbone.encoder.stages.{stage}.downsampling_layer.{sub}.{rest}"
    m = re.match(r"PSPLayers\.(\d+)\.([01])\.(\w+)$", key)
    if m:
        return f"psp.branches.{m.group(1)}.{_BN_PARTS[m.group(2)]}.{m.group(3)}"
    m = re.match(r"SqueezeLayers\.([01])\.(\w+)$", key)
    if m:
        return f"psp.bottleneck.{_BN_PARTS[m.group(1)]}.{m.group(2)}"
    m = re.match(r"upsample_ModuleList\.(\d+)\.([01])\.(\w+)$", key)
    if m:
        index = int(m.group(1))
        part = "conv" if index % 2 == 0 else "skip"
        return f"decoder.blocks.{index // 2}.{part}.{_BN_PARTS[m.group(2)]}.{m.group(3)}"
    raise MatSegFormatError("unknown key in a reference MatSeg state dict", field=key)


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Reference state dict -> MatSegModel state dict (tensors are not copied)."""
    out = {}
    for key, value in _strip_prefix(state_dict).items():
        new = map_reference_key(key)
        if new is None:
            continue
        if new.endswith("layer_scale_parameter"):
            value = value.reshape(-1)
        out[new] = value
    return out


def convert_reference(state_dict: Mapping[str, torch.Tensor], *, backbone: Optional[str] = None):
    """A :class:`MatSegModel` (eval mode) holding the weights of a reference state dict.

    Raises :class:`MatSegFormatError` when a key is unknown, missing or of the wrong shape.
    """
    from . import MatSegModel

    config = reference_config(state_dict)
    config.backbone = backbone
    model = MatSegModel(config)
    converted = convert_state_dict(state_dict)
    target = model.state_dict()
    missing = sorted(set(target) - set(converted))
    unexpected = sorted(set(converted) - set(target))
    if missing or unexpected:
        raise MatSegFormatError(f"state dict does not fit the inferred model: missing {missing[:5]}, "
                                f"unexpected {unexpected[:5]}", field=(missing or unexpected)[0])
    for key, value in converted.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise MatSegFormatError(f"shape {tuple(value.shape)} != expected {tuple(target[key].shape)}", field=key)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def reference_net_for(state_dict: Mapping[str, torch.Tensor]) -> ReferenceNet:
    """A :class:`ReferenceNet` sized for (and loaded with) a reference state dict, in eval mode."""
    config = reference_config(state_dict)
    net = ReferenceNet(descriptor_depth=config.descriptor_dim, depths=config.backbone_config.depths,
                       widths=config.backbone_config.hidden_sizes)
    net.load_state_dict(_strip_prefix(state_dict), strict=True)
    return net.eval()


@torch.inference_mode()
def verify_conversion(state_dict: Mapping[str, torch.Tensor], model: Any, *, sizes: Sequence[Tuple[int, int]] = ((64, 96), (70, 45)),
                      seed: int = 0) -> float:
    """Max abs difference between the reference forward (ported) and ``model`` on random uint8 images.

    The reference is fed images as the reference evaluation does (0–255 values, zero 4th channel, output upsampled
    to the image size); ``model`` gets the same normalised pixels through :class:`MatSegImageProcessor` with
    ``size_mode="none"``.
    """
    from . import MatSegImageProcessor

    reference = reference_net_for(state_dict)
    processor = MatSegImageProcessor(size_mode="none")
    rng = np.random.default_rng(seed)
    worst = 0.0
    model = model.eval()
    for height, width in sizes:
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        expected = reference(image[None].astype(np.float32), np.zeros((1, height, width), np.float32), train_mode=False)
        inputs = processor(image)
        got = model(inputs["pixel_values"], upsample=True).upsampled_descriptor_map
        worst = max(worst, float((expected - got).abs().max()))
    return worst


def convert_checkpoint(checkpoint: str | Path, output_dir: str | Path, *, push_to_hub: Optional[str] = None,
                       verify: bool = True, tolerance: float = 1e-4, backbone: Optional[str] = None,
                       license: Optional[str] = "cc0-1.0", private: bool = False) -> Dict[str, Any]:
    """Convert a reference ``torch.save`` checkpoint and save it (model, image processor, model card).

    The checkpoint is read with ``torch.load(weights_only=True)`` (no unpickling of arbitrary objects).
    Returns ``{"output_dir", "max_abs_diff", "repo_id"}``. Raises :class:`MatSegFormatError` when the checkpoint
    does not fit, or when the converted model differs from the reference forward by more than ``tolerance``.
    """
    from . import MatSegImageProcessor

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise MatSegInputError(f"checkpoint not found: {checkpoint}")
    try:
        state_dict = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise MatSegFormatError(f"cannot read the checkpoint with torch.load(weights_only=True): {exc}", path=checkpoint) from exc
    if not isinstance(state_dict, Mapping):
        raise MatSegFormatError("expected a state dict (mapping of tensors)", path=checkpoint)
    try:
        model = convert_reference(state_dict, backbone=backbone)
    except MatSegFormatError as exc:
        raise MatSegFormatError(str(exc), path=checkpoint, field=exc.field) from exc
    diff = None
    if verify:
        diff = verify_conversion(state_dict, model)
        logger.info("max abs difference to the reference forward: %.3g", diff)
        if not diff <= tolerance:
            raise MatSegFormatError(f"converted model differs from the reference forward by {diff:.3g} > {tolerance}",
                                    path=checkpoint)
    processor = MatSegImageProcessor()
    card = {"license": license, "description": None,
            "training": f"Converted from the reference checkpoint `{checkpoint.name}` of {_REF_URL} with "
                        "`python -m matseg_hub.models.matseg.convert_reference`. The reference initialises its encoder from "
                        "torchvision's `ConvNeXt_Base_Weights.DEFAULT` (ImageNet-1k) and trains on the MatSeg "
                        "synthetic data"
                        + (f" (max abs difference to the reference forward: {diff:.2g})." if diff is not None else ".")}
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, model_card=dict(card, repo_id=push_to_hub))
    processor.save_pretrained(output_dir)
    if push_to_hub:
        from huggingface_hub import create_repo, upload_folder

        create_repo(push_to_hub, repo_type="model", private=private, exist_ok=True)
        upload_folder(folder_path=str(output_dir), repo_id=push_to_hub, repo_type="model",
                      commit_message="Convert the reference MatSeg checkpoint")
    return {"output_dir": str(output_dir), "max_abs_diff": diff, "repo_id": push_to_hub}


_REF_URL = "https://github.com/sagieppel/Zero-Shot-Material-State-Segmentation-Net"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matseg_hub.models.matseg.convert_reference",
                                     description="Convert a reference MatSeg checkpoint (Desnet.Net state dict) to a "
                                                 "transformers MatSegModel folder.")
    parser.add_argument("checkpoint", help="reference checkpoint saved with torch.save(net.state_dict())")
    parser.add_argument("--output", required=True, help="folder to write (config.json, model.safetensors, ...)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also push to this Hub model repository")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with the reference forward")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference accepted (default 1e-4)")
    parser.add_argument("--backbone", default=None,
                        help="Hub id recorded as the encoder's starting checkpoint (model-card metadata only; the "
                             "reference starts from torchvision's ConvNeXt_Base_Weights.DEFAULT, which is not on the Hub)")
    parser.add_argument("--license", default="cc0-1.0", help="licence id for the model card")
    args = parser.parse_args(argv)
    from ...errors import MatSegError
    from ...utils.logging import set_verbosity
    import logging

    set_verbosity(logging.INFO)
    try:
        result = convert_checkpoint(args.checkpoint, args.output, push_to_hub=args.push_to_hub, verify=not args.no_verify,
                                    tolerance=args.tolerance, backbone=args.backbone or None, license=args.license,
                                    private=args.private)
    except MatSegError as exc:
        print(f"convert_reference: error: {exc}", file=sys.stderr)
        return 1
    diff = result["max_abs_diff"]
    print(f"saved {result['output_dir']}" + (f" (max abs diff to reference: {diff:.3g})" if diff is not None else "")
          + (f", pushed to {result['repo_id']}" if result["repo_id"] else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
