"""The MatSeg training loss (paper appendix A; SPEC §6).

For every image of a batch:

1. the predicted descriptor map is L2-normalised per pixel;
2. each material's descriptor is the mean of the normalised descriptors where its mask is > 0.5 (inside the
   annotated region), L2-normalised;
3. every pixel is compared (cosine similarity) with every material descriptor of the image (``scope="image"``,
   the paper's wording) or of the whole batch (``scope="batch"``, what the reference ``Desnet.py`` code does);
4. softmax over materials at temperature ``T`` (0.2) gives a per-pixel probability of each material;
5. cross-entropy against the soft masks (normalised to sum to 1 per pixel, as the reference reader does),
   averaged over the pixels of the annotated region; pixels outside it, or covered by no material, are ignored.

The masks are resized to the descriptor map's resolution (1/4 of the input) with nearest-neighbour sampling,
as the reference does. Everything is computed in float32 whatever the descriptor map's dtype (mixed precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn import functional as F

from ..errors import MatSegInputError

SCOPES = ("image", "batch")


@dataclass
class MaterialLossOutput:
    """Result of :func:`material_loss`.

    Attributes:
        loss: float32 scalar tensor (differentiable).
        pixel_accuracy: float32 scalar (no gradient): share of counted pixels whose most probable material is
            the material with the largest target weight.
        num_pixels: int64 scalar tensor, the number of pixels counted (inside the annotated region, covered by a
            material); a tensor on the loss's device, so a training step reads nothing back to the host
            (``int(out.num_pixels)`` does).
        num_materials: int64 scalar tensor, the number of materials that had at least one pixel > threshold.
        probabilities: float32 [B, M, h, w] per-pixel material probabilities (``M = K`` for ``scope="image"``,
            ``B * K`` for ``"batch"``), detached; invalid materials get probability 0.
    """

    loss: torch.Tensor
    pixel_accuracy: torch.Tensor
    num_pixels: torch.Tensor
    num_materials: torch.Tensor
    probabilities: torch.Tensor


def resize_targets(masks: torch.Tensor, size, mode: str = "nearest") -> torch.Tensor:
    """float [B, K, H, W] -> float [B, K, h, w] (``mode``: ``"nearest"`` like the reference, or ``"area"``)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if mode == "area":
        if masks.shape[-1] >= size[-1]:
            return F.adaptive_avg_pool2d(masks, size)
        return F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(masks, size=size, mode=mode)


def material_loss(descriptors: torch.Tensor, masks: torch.Tensor, annotated: Optional[torch.Tensor] = None, *,
                  num_materials: Optional[torch.Tensor] = None, temperature: float = 0.2, threshold: float = 0.5,
                  scope: str = "image", resize_mode: str = "nearest", eps: float = 1e-6) -> MaterialLossOutput:
    """The paper's contrastive cross-entropy loss on a batch.

    Args:
        descriptors: float [B, D, h, w], raw descriptor map (``MatSegOutput.descriptor_map``; any float dtype).
        masks: float [B, K, H, W] in [0, 1], one soft mask per material, zero-padded to ``K`` materials;
            resized to ``h x w`` here.
        annotated: float [B, H, W] in [0, 1] (or bool), the annotated region; pixels with value <= 0.5 are
            ignored. ``None``: every pixel covered by a material counts.
        num_materials: int [B], materials of each image (slots beyond it are ignored); default: every slot
            with at least one pixel > ``threshold`` after resizing.
        temperature: softmax temperature T (paper: 0.2).
        threshold: a material's region, where its mean descriptor is taken, is ``mask > threshold``.
        scope: ``"image"`` (softmax over the image's own materials) or ``"batch"`` (over every material of the
            batch, as the reference code does).
        resize_mode: ``"nearest"`` (reference) or ``"area"``.

    Returns:
        :class:`MaterialLossOutput`; the loss is 0 (with a zero gradient) when no pixel counts.
    """
    if scope not in SCOPES:
        raise MatSegInputError(f"scope must be one of {SCOPES}, got {scope!r}")
    if descriptors.ndim != 4 or masks.ndim != 4 or masks.shape[0] != descriptors.shape[0]:
        raise MatSegInputError(f"descriptors must be [B, D, h, w] and masks [B, K, H, W] with the same B; got "
                               f"{tuple(descriptors.shape)} and {tuple(masks.shape)}")
    if temperature <= 0:
        raise MatSegInputError(f"temperature must be > 0, got {temperature}")
    b, _, h, w = descriptors.shape
    k = masks.shape[1]
    desc = F.normalize(descriptors.float(), dim=1, eps=1e-12)                        # [B, D, h, w]
    target = resize_targets(masks.to(desc.device, torch.float32), (h, w), resize_mode)  # [B, K, h, w]
    ann_ok = None
    if annotated is not None:
        ann = annotated.to(desc.device, torch.float32)
        if ann.ndim == 4:
            ann = ann[:, 0]
        ann_ok = resize_targets(ann[:, None], (h, w), resize_mode)[:, 0] > 0.5          # [B, h, w]
    region = target > threshold
    if ann_ok is not None:  # unannotated pixels take no part at all, not even in the material means
        region = region & ann_ok[:, None]
    region = region.to(torch.float32)
    counts = region.sum(dim=(2, 3))                                                     # [B, K]
    valid = counts > 0
    if num_materials is not None:
        slots = torch.arange(k, device=desc.device)[None, :]
        valid = valid & (slots < num_materials.to(desc.device).reshape(-1, 1))
    # per-material mean of normalised descriptors, then L2-normalised: [B, K, D]
    mean_desc = torch.einsum("bdhw,bkhw->bkd", desc, region) / counts.clamp_min(1.0)[..., None]
    mean_desc = F.normalize(mean_desc, dim=2, eps=1e-12)

    target = target * valid[..., None, None]
    total = target.sum(dim=1, keepdim=True)                                             # [B, 1, h, w]
    keep = total[:, 0] > eps
    if ann_ok is not None:
        keep = keep & ann_ok
    target = target / total.clamp_min(eps)

    neg = -1.0e4  # masked logits: exp(-1e4) == 0, and no overflow in log_softmax
    if scope == "image":
        logits = torch.einsum("bkd,bdhw->bkhw", mean_desc, desc) / temperature
        logits = logits.masked_fill(~valid[..., None, None], neg)
        full_target = target
    else:
        all_desc = mean_desc.reshape(b * k, -1)
        logits = torch.einsum("nd,bdhw->bnhw", all_desc, desc) / temperature
        logits = logits.masked_fill(~valid.reshape(1, b * k, 1, 1), neg)
        full_target = desc.new_zeros((b, b * k, h, w))
        for i in range(b):
            full_target[i, i * k:(i + 1) * k] = target[i]
    log_prob = torch.log_softmax(logits, dim=1)
    pixel_ce = -(full_target * log_prob).sum(dim=1)                                     # [B, h, w]
    keep_f = keep.to(torch.float32)
    loss = (pixel_ce * keep_f).sum() / keep_f.sum().clamp_min(1.0)
    with torch.no_grad():
        prob = log_prob.exp()
        hit = (prob.argmax(dim=1) == full_target.argmax(dim=1)).to(torch.float32)
        accuracy = (hit * keep_f).sum() / keep_f.sum().clamp_min(1.0)
    return MaterialLossOutput(loss=loss, pixel_accuracy=accuracy, num_pixels=keep.sum(),
                              num_materials=valid.sum(), probabilities=prob.detach())


__all__ = ["MaterialLossOutput", "SCOPES", "material_loss", "resize_targets"]
