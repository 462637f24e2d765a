"""The Materialistic network (Sharma et al., "Materialistic: Selecting Similar Materials in Images", SIGGRAPH 2023)
as a ``transformers`` model.

Given an image and one clicked pixel, the network scores every pixel by how likely it shows the same material:

* backbone: a frozen DINO ViT (default ViT-B/8) run as ``transformers.ViTModel``; the hidden states of blocks
  3, 6, 9, 12 (``backbone_out_indices``) are kept. Position embeddings are resized exactly as DINO does (bicubic with
  DINO's ``+0.1`` scale-factor offset), so any input whose sides are multiples of the patch size works;
* reassemble (DPT-style), per level: the readout projection ``Linear(2D, D)`` of each patch token concatenated with
  the CLS token, the tokens laid out on their grid, a 1x1 convolution to ``reassemble_hidden_size`` channels and a
  bilinear upsampling by 4, 2, 1, 1 (levels at 1/2, 1/4, 1/8, 1/8 of the input for patch 8);
* sigmoid cross-attention, per level: layer norm of the level's tokens; the *reference embedding* is the token of
  the grid cell holding the click concatenated with the click's sub-cell offset (2 numbers in [-1, 1]: where in the
  cell, in input pixels, relative to its centre) through an MLP ``Linear(C+2, 2C), ReLU, Linear(2C, C)``; the query
  is projected from it, keys and values from every token; the attention is a per-head *sigmoid* (not a softmax) of
  the scaled dot products and multiplies the values token by token; output projection and layer norm;
* fusion (DPT-style RefineNet blocks, deepest first): ``level + RCU(previous)``, a second residual conv unit, x2
  bilinear upsampling (except the deepest block), 1x1 convolution; the last block is at the input resolution;
* head: a per-pixel MLP ``C -> 256 -> 128 -> 128 -> 1`` (ReLU between) gives the logits; the score map is their
  sigmoid.

Everything before the reference embedding (backbone, reassemble, the layer norms, keys and values) does not depend
on the click: :meth:`MaterialisticModel.get_image_embeddings` computes it once per image and
:meth:`MaterialisticModel.decode` answers any number of clicks from it.

Differences from the authors' code (``prafull7/materialistic``, which hard-codes a 512x512 input and CUDA):
any input whose sides are multiples of the patch size (non-square too), any device, clicks given as ``(x, y)``
(the authors' ``reference_locations`` are ``(row, column)``), the click-independent part reusable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel, ViTModel
from transformers.models.vit.modeling_vit import ViTEmbeddings
from transformers.utils import ModelOutput

from ...errors import MatSegInputError
from .configuration import REASSEMBLE_FACTORS, MaterialisticConfig


# ----------------------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class MaterialisticOutput(ModelOutput):
    """Output of :class:`MaterialisticModel`.

    Attributes:
        score_map: float [B, 1, H, W] in [0, 1], the sigmoid of ``logits``: how likely each pixel shows the
            clicked material.
        logits: float [B, 1, H, W].
        hidden_states: the four backbone hidden states used (float [B, 1 + h*w, D]) when ``output_hidden_states``.
    """

    score_map: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    hidden_states: Optional[Tuple[torch.FloatTensor, ...]] = None


@dataclass
class MaterialisticImageEmbeddings:
    """The click-independent part of a forward pass (:meth:`MaterialisticModel.get_image_embeddings`).

    Attributes:
        normed: per level, the layer-normed tokens on their grid, float [B, C, h_l, w_l].
        keys, values: per level, float [B, heads, h_l * w_l, C_out / heads].
        input_size: (H, W) of ``pixel_values``.
        hidden_states: the backbone hidden states used, or None.
    """

    normed: List[torch.Tensor]
    keys: List[torch.Tensor]
    values: List[torch.Tensor]
    input_size: Tuple[int, int]
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None

    @property
    def batch_size(self) -> int:
        return int(self.normed[0].shape[0])


# ----------------------------------------------------------------------------------------------------------------
# backbone
# ----------------------------------------------------------------------------------------------------------------
class MaterialisticViTEmbeddings(ViTEmbeddings):
    """``ViTEmbeddings`` whose position embeddings are resized as DINO's ``interpolate_pos_encoding`` does
    (bicubic, ``scale_factor = (h + 0.1) / sqrt(N)``), so that converted DINO weights give DINO's tokens."""

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        class_pos_embed = self.position_embeddings[:, 0]
        patch_pos_embed = self.position_embeddings[:, 1:]
        dim = embeddings.shape[-1]
        grid_h = height // self.patch_size + 0.1
        grid_w = width // self.patch_size + 0.1
        side = math.sqrt(num_positions)
        patch_pos_embed = F.interpolate(
            patch_pos_embed.reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2),
            scale_factor=(grid_h / side, grid_w / side), mode="bicubic")
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


# ----------------------------------------------------------------------------------------------------------------
# decoder
# ----------------------------------------------------------------------------------------------------------------
class MaterialisticReassembleLayer(nn.Module):
    """Readout projection + token grid + 1x1 conv + upsampling.

    tokens: float [B, 1 + h*w, D] (CLS first) -> float [B, C, h*f, w*f].
    """

    def __init__(self, vit_hidden_size: int, out_channels: int, factor: int):
        super().__init__()
        self.readout_projection = nn.Linear(2 * vit_hidden_size, vit_hidden_size)
        self.projection = nn.Conv2d(vit_hidden_size, out_channels, kernel_size=1)
        self.factor = int(factor)

    def forward(self, tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        patches = tokens[:, 1:]
        readout = tokens[:, :1].expand_as(patches)
        x = self.readout_projection(torch.cat((patches, readout), dim=-1))
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])
        x = self.projection(x)
        if self.factor != 1:
            x = F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=True)
        return x


class MaterialisticReferenceEncoder(nn.Module):
    """Reference embedding of a click: the token of its grid cell + its offset in the cell, through an MLP.

    normed: float [B, C, h, w]; rows, cols: int64 [P] click pixel (input pixels); batch_index: int64 [P]
    -> float [P, C].
    """

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.fc1 = nn.Linear(channels + 2, 2 * channels)
        self.fc2 = nn.Linear(2 * channels, channels)
        self.stride = int(stride)

    def cell_offsets(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """float32 [P, 2]: (row, column) offset of each click from its cell's centre, scaled to about [-1, 1]."""
        s = self.stride
        out = []
        for coord in (rows, cols):
            centre = torch.div(coord, s, rounding_mode="trunc") * s + (s - 1.0) / 2.0
            out.append((coord - centre) / ((s - 1) / 2 + 1e-4))
        return torch.stack(out, dim=1)

    def forward(self, normed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                batch_index: torch.Tensor) -> torch.Tensor:
        cell_rows = torch.div(rows, self.stride, rounding_mode="trunc")
        cell_cols = torch.div(cols, self.stride, rounding_mode="trunc")
        tokens = normed[batch_index, :, cell_rows, cell_cols]
        offsets = self.cell_offsets(rows, cols).to(tokens.dtype)
        return self.fc2(F.relu(self.fc1(torch.cat((tokens, offsets), dim=1))))


class MaterialisticCrossAttention(nn.Module):
    """Sigmoid cross-attention of the click's reference embedding over one level's tokens."""

    def __init__(self, in_channels: int, out_channels: int, num_heads: int, stride: int, eps: float):
        super().__init__()
        self.num_heads = int(num_heads)
        self.head_channels = out_channels // num_heads
        self.out_channels = int(out_channels)
        self.scale = (in_channels // num_heads) ** -0.5  # as the authors: from the input width
        self.input_norm = nn.LayerNorm(in_channels, eps=eps)
        self.reference_encoder = MaterialisticReferenceEncoder(in_channels, stride)
        self.query = nn.Linear(in_channels, out_channels)
        self.key = nn.Linear(in_channels, out_channels)
        self.value = nn.Linear(in_channels, out_channels)
        self.output_projection = nn.Linear(out_channels, out_channels)
        self.output_norm = nn.LayerNorm(out_channels, eps=eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_channels).permute(0, 2, 1, 3)

    def encode(self, level: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """level: float [B, C, h, w] -> (normed grid [B, C, h, w], keys, values [B, heads, h*w, C_out/heads])."""
        b, c, h, w = level.shape
        tokens = self.input_norm(level.permute(0, 2, 3, 1).reshape(b, h * w, c))
        normed = tokens.transpose(1, 2).reshape(b, c, h, w)
        return normed, self._heads(self.key(tokens)), self._heads(self.value(tokens))

    def decode(self, normed: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, rows: torch.Tensor,
               cols: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """-> float [P, C_out, h, w] for P clicks (click p on image ``batch_index[p]``)."""
        _, _, h, w = normed.shape
        reference = self.reference_encoder(normed, rows, cols, batch_index)
        query = self.query(reference).reshape(-1, self.num_heads, 1, self.head_channels)
        # keys / values: one image broadcast over P clicks, or one image per click (B = P)
        attention = torch.sigmoid((query @ keys.transpose(-2, -1)) * self.scale)  # [P, heads, 1, N]
        x = (attention.transpose(-1, -2) * values).permute(0, 2, 1, 3).reshape(query.shape[0], h * w,
                                                                                self.out_channels)
        x = self.output_norm(self.output_projection(x))
        return x.transpose(1, 2).reshape(x.shape[0], self.out_channels, h, w)


class MaterialisticResidualUnit(nn.Module):
    """ReLU, conv3x3 (bias), ReLU, conv3x3 (no bias), plus the input. float [B, C, h, w] -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.convolution1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)
        self.convolution2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolution2(F.relu(self.convolution1(F.relu(x)))) + x


class MaterialisticFusionLayer(nn.Module):
    """``level + RCU1(previous)`` (when there is a previous path), RCU2, x2 upsampling (optional), 1x1 conv."""

    def __init__(self, channels: int, upsample: bool, has_previous: bool):
        super().__init__()
        self.residual_layer1 = MaterialisticResidualUnit(channels) if has_previous else None
        self.residual_layer2 = MaterialisticResidualUnit(channels)
        self.projection = nn.Conv2d(channels, channels, kernel_size=1)
        self.upsample = bool(upsample)

    def forward(self, level: torch.Tensor, previous: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = level
        if previous is not None:
            x = x + self.residual_layer1(previous)
        x = self.residual_layer2(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.projection(x)


class MaterialisticHead(nn.Module):
    """Per-pixel MLP: float [B, C, H, W] -> logits float [B, 1, H, W]."""

    def __init__(self, in_channels: int, hidden_sizes: Sequence[int]):
        super().__init__()
        widths = [in_channels, *hidden_sizes, 1]
        self.layers = nn.ModuleList([nn.Linear(widths[i], widths[i + 1]) for i in range(len(widths) - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return x.permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------------
class MaterialisticPreTrainedModel(PreTrainedModel):
    config_class = MaterialisticConfig
    base_model_prefix = "materialistic"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ViTLayer"]
    _supports_sdpa = True

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoModel") -> None:
        """No-op: the class lives in the installed ``matseg_hub`` package (see MatSegModel)."""
        return None

    def _init_weights(self, module: nn.Module) -> None:
        """Decoder: Xavier-uniform weights and zero biases (the authors' ``init_weights``); ViT: transformers'
        truncated normal. (Only for new models: a converted / saved model loads all its weights.)"""
        try:  # transformers >= 5: init helpers that leave loaded weights alone
            from transformers import initialization as init
        except ImportError:  # pragma: no cover - transformers 4.x
            from torch.nn import init
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if getattr(module, "_materialistic_decoder", False):
                init.xavier_uniform_(module.weight)
            else:
                init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)


class MaterialisticModel(MaterialisticPreTrainedModel):
    """Materialistic: per-pixel score of "same material as the clicked pixel".

    Inputs: ``pixel_values`` float [B, 3, H, W], normalised RGB (ImageNet mean / std of [0, 1] values), H and W
    multiples of the patch size; ``reference_points`` the click of each batch item, int [B, 2] ``(x, y)`` pixels of
    ``pixel_values`` (0 <= x < W, 0 <= y < H).
    """

    def __init__(self, config: MaterialisticConfig):
        super().__init__(config)
        vit = config.backbone_config
        self.backbone = ViTModel(vit, add_pooling_layer=False)
        self.backbone.embeddings = MaterialisticViTEmbeddings(vit)
        patch = config.patch_size
        c_in, c_out = config.reassemble_hidden_size, config.fusion_hidden_size
        self.reassemble = nn.ModuleList(
            [MaterialisticReassembleLayer(vit.hidden_size, c_in, f) for f in REASSEMBLE_FACTORS])
        self.cross_attention = nn.ModuleList(
            [MaterialisticCrossAttention(c_in, c_out, config.num_attention_heads, patch // f,
                                         config.cross_attention_layer_norm_eps) for f in REASSEMBLE_FACTORS])
        n = len(REASSEMBLE_FACTORS)
        self.fusion = nn.ModuleList(
            [MaterialisticFusionLayer(c_out, upsample=i < n - 1, has_previous=i < n - 1) for i in range(n)])
        self.head = MaterialisticHead(c_out, config.head_hidden_sizes)
        for part in (self.reassemble, self.cross_attention, self.fusion, self.head):
            for module in part.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    module._materialistic_decoder = True
        self.post_init()

    # ------------------------------------------------------------------ inputs
    def _check_pixel_values(self, pixel_values: Any) -> torch.Tensor:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3 \
                or not pixel_values.is_floating_point():
            raise MatSegInputError("pixel_values must be a float torch.Tensor [B, 3, H, W] (normalised RGB); got "
                                   f"{type(pixel_values).__name__} shape {tuple(getattr(pixel_values, 'shape', ()))} "
                                   f"dtype {getattr(pixel_values, 'dtype', None)}")
        patch = self.config.patch_size
        height, width = pixel_values.shape[-2:]
        if height % patch or width % patch or height < patch or width < patch:
            raise MatSegInputError(f"pixel_values height and width must be positive multiples of the patch size "
                                   f"{patch}, got {height}x{width} (resize, e.g. with MaterialisticScorer)")
        param = next(self.parameters())
        return pixel_values.to(device=param.device, dtype=param.dtype)

    def _check_points(self, reference_points: Any, input_size: Tuple[int, int], count: int) -> torch.Tensor:
        device = next(self.parameters()).device
        points = torch.as_tensor(reference_points, device=device)
        if points.ndim == 1:
            points = points[None]
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
            raise MatSegInputError(f"reference_points must be [P, 2] (x, y) pixels, got shape {tuple(points.shape)}")
        if points.is_floating_point():
            if not bool(torch.isfinite(points).all()) or bool((points != points.round()).any()):
                raise MatSegInputError("reference_points must be whole pixel indices (x, y)")
        points = points.long()
        height, width = input_size
        inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
        if not bool(inside.all()):
            bad = points[~inside][0].tolist()
            raise MatSegInputError(f"reference point (x, y) = {tuple(bad)} is outside the {width}x{height} input")
        if count not in (1, points.shape[0]):
            raise MatSegInputError(f"{points.shape[0]} reference points for a batch of {count} images: give one "
                                   f"point per image, or any number for a single image")
        return points

    # ------------------------------------------------------------------ the two halves
    def get_image_embeddings(self, pixel_values: torch.Tensor,
                             output_hidden_states: bool = False) -> MaterialisticImageEmbeddings:
        """The click-independent part: backbone, reassemble, cross-attention layer norms, keys and values.

        Args:
            pixel_values: float [B, 3, H, W], normalised, H and W multiples of the patch size.

        Returns:
            :class:`MaterialisticImageEmbeddings` for :meth:`decode`.
        """
        pixel_values = self._check_pixel_values(pixel_values)
        height, width = (int(s) for s in pixel_values.shape[-2:])
        patch = self.config.patch_size
        grid = (height // patch, width // patch)
        out = self.backbone(pixel_values, output_hidden_states=True, interpolate_pos_encoding=True, return_dict=True)
        states = tuple(out.hidden_states[i] for i in self.config.backbone_out_indices)
        normed, keys, values = [], [], []
        for reassemble, attention, tokens in zip(self.reassemble, self.cross_attention, states):
            n, k, v = attention.encode(reassemble(tokens, grid))
            normed.append(n)
            keys.append(k)
            values.append(v)
        return MaterialisticImageEmbeddings(normed, keys, values, (height, width),
                                            states if output_hidden_states else None)

    def decode(self, image_embeddings: MaterialisticImageEmbeddings, reference_points: Any) -> torch.Tensor:
        """Logits of clicks on images already encoded.

        Args:
            image_embeddings: from :meth:`get_image_embeddings` (B images).
            reference_points: int [P, 2] ``(x, y)`` input pixels; P = B (one click per image) or any P when B = 1.

        Returns:
            logits float [P, 1, H, W].
        """
        height, width = image_embeddings.input_size
        points = self._check_points(reference_points, (height, width), image_embeddings.batch_size)
        cols, rows = points[:, 0], points[:, 1]
        if image_embeddings.batch_size == 1:
            batch_index = torch.zeros_like(rows)
        else:
            batch_index = torch.arange(points.shape[0], device=points.device)
        levels = [attention.decode(n, k, v, rows, cols, batch_index)
                  for attention, n, k, v in zip(self.cross_attention, image_embeddings.normed, image_embeddings.keys,
                                                image_embeddings.values)]
        path = None
        for fusion, level in zip(reversed(self.fusion), reversed(levels)):
            path = fusion(level, path)
        logits = self.head(path)
        if logits.shape[-2:] != (height, width):  # patch sizes other than 8
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits

    # ------------------------------------------------------------------ forward
    def forward(self, pixel_values: torch.Tensor, reference_points: Any, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None, **kwargs: Any
                ) -> Union[MaterialisticOutput, Tuple[torch.Tensor, ...]]:
        """Score map of the clicked material.

        Args:
            pixel_values: float [B, 3, H, W], normalised RGB, H and W multiples of the patch size.
            reference_points: int [B, 2] ``(x, y)`` click per image (pixels of ``pixel_values``); with B = 1, any
                number P of clicks on the one image (outputs then have P rows).
            output_hidden_states: also return the four backbone hidden states used.
            return_dict: a :class:`MaterialisticOutput` (default) or a tuple.

        Returns:
            :class:`MaterialisticOutput`: ``score_map`` float [B, 1, H, W] in [0, 1] and ``logits``.
        """
        if kwargs:
            raise TypeError(f"MaterialisticModel.forward() got unexpected keyword argument(s) {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = bool(output_hidden_states if output_hidden_states is not None
                                    else self.config.output_hidden_states)
        embeddings = self.get_image_embeddings(pixel_values, output_hidden_states=output_hidden_states)
        logits = self.decode(embeddings, reference_points)
        score_map = torch.sigmoid(logits)
        if not return_dict:
            return tuple(v for v in (score_map, logits, embeddings.hidden_states) if v is not None)
        return MaterialisticOutput(score_map=score_map, logits=logits, hidden_states=embeddings.hidden_states)


__all__ = ["MaterialisticModel", "MaterialisticPreTrainedModel", "MaterialisticOutput", "MaterialisticImageEmbeddings",
           "MaterialisticViTEmbeddings"]
