"""Training augmentations of the paper (SPEC §6), on whole batches, seeded by a ``torch.Generator``.

Per image, with probability ``p_any`` (reference: 0.5) the image is augmented at all; then independently:

* horizontal / vertical flip (masks and annotated region flipped with it), each with ``p_flip``;
* multiplicative noise ``x * U(1 - noise, 1 + noise)`` per pixel and channel, with ``p_noise``;
* Gaussian blur (5x5, sigma 1.1 like ``cv2.GaussianBlur(img, (5, 5), 0)``), with ``p_blur``;
* darken / lighten ``x * U(dark_min, dark_max)``, with ``p_dark``;
* decolouring: mix with the grey image, ``x * r + grey * (1 - r)``, ``r ~ U(0, 1)`` (partial), or ``r = 0``
  (full) with probability ``p_full_decolour`` of the decoloured images; with ``p_decolour``.

Every random number is drawn for every image whether or not the augmentation applies, in a fixed order, so the
result depends only on the generator's state and the batch shape. Images stay on the 0-255 scale, clipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
from torch.nn import functional as F

from ..errors import MatSegInputError


@dataclass
class AugmentConfig:
    """Probabilities and ranges; defaults follow the reference reader (``MatSegReader.Augment``)."""

    p_any: float = 0.5
    p_flip: float = 0.5
    p_noise: float = 0.035
    noise: float = 0.1
    p_blur: float = 0.2
    blur_sigma: float = 1.1
    p_dark: float = 0.25
    dark_min: float = 0.5
    dark_max: float = 1.15
    p_decolour: float = 0.2
    p_full_decolour: float = 0.3

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


def _gaussian_kernel(sigma: float, size: int = 5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, sigma: float = 1.1, size: int = 5) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders. float [B, C, H, W] -> same shape."""
    k = _gaussian_kernel(sigma, size).to(images)
    c = images.shape[1]
    pad = size // 2
    x = F.pad(images, (pad, pad, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, size).repeat(c, 1, 1, 1), groups=c)
    x = F.pad(x, (0, 0, pad, pad), mode="reflect")
    return F.conv2d(x, k.view(1, 1, size, 1).repeat(c, 1, 1, 1), groups=c)


def augment_batch(images: torch.Tensor, masks: Optional[torch.Tensor] = None, annotated: Optional[torch.Tensor] = None,
                  *, generator: torch.Generator, config: Optional[AugmentConfig] = None
                  ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Augment a batch.

    Args:
        images: float or uint8 [B, 3, H, W], RGB 0-255.
        masks: float [B, K, H, W] soft material masks (flipped with the images), or None.
        annotated: float [B, H, W] annotated region (flipped with the images), or None.
        generator: a CPU ``torch.Generator``; all randomness comes from it.
        config: :class:`AugmentConfig` (default: the reference's probabilities).

    Returns:
        ``(images float32 [B, 3, H, W] in [0, 255], masks, annotated)``; inputs are not modified.
    """
    cfg = config or AugmentConfig()
    if images.ndim != 4 or images.shape[1] != 3:
        raise MatSegInputError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    b = images.shape[0]
    x = images.to(torch.float32).clone()

    def draw(*shape):
        return torch.rand(*shape, generator=generator)

    u = draw(b, 12)  # fixed layout: one row of uniforms per image
    on = u[:, 0] < cfg.p_any
    flip_h = on & (u[:, 1] < cfg.p_flip)
    flip_v = on & (u[:, 2] < cfg.p_flip)
    noise_on = on & (u[:, 3] < cfg.p_noise)
    blur_on = on & (u[:, 4] < cfg.p_blur)
    dark_on = on & (u[:, 5] < cfg.p_dark)
    dark = cfg.dark_min + u[:, 6] * (cfg.dark_max - cfg.dark_min)
    grey_on = on & (u[:, 7] < cfg.p_decolour)
    keep_colour = torch.where(u[:, 8] < cfg.p_full_decolour, torch.zeros_like(u[:, 9]), u[:, 9])
    noise = 1.0 - cfg.noise + 2.0 * cfg.noise * draw(*x.shape) if bool(noise_on.any()) else None

    def flip(t: Optional[torch.Tensor], sel: torch.Tensor, dim: int) -> Optional[torch.Tensor]:
        if t is None or not bool(sel.any()):
            return t
        t = t.clone()
        t[sel] = t[sel].flip(dim)
        return t

    x = flip(x, flip_h, -1)
    x = flip(x, flip_v, -2)
    out_masks = flip(flip(masks, flip_h, -1), flip_v, -2) if masks is not None else None
    out_ann = flip(flip(annotated, flip_h, -1), flip_v, -2) if annotated is not None else None

    if noise is not None:
        x = torch.where(noise_on[:, None, None, None], x * noise, x)
    if bool(blur_on.any()) and min(x.shape[-2:]) > 2:
        x[blur_on] = gaussian_blur(x[blur_on], cfg.blur_sigma)
    x = torch.where(dark_on[:, None, None, None], x * dark[:, None, None, None], x)
    grey = x.mean(dim=1, keepdim=True)
    r = keep_colour[:, None, None, None]
    x = torch.where(grey_on[:, None, None, None], x * r + grey * (1 - r), x)
    return x.clamp_(0.0, 255.0), out_masks, out_ann


__all__ = ["AugmentConfig", "augment_batch", "gaussian_blur"]
