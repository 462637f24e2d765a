"""Batch augmentations: seeded, shape-preserving, geometric ones applied to masks too."""

import torch

from matseg_hub.training.augment import AugmentConfig, augment_batch, gaussian_blur


def _batch(b=6, h=16, w=20):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)
    masks = torch.rand(b, 2, h, w, generator=g)
    ann = torch.rand(b, h, w, generator=g)
    return images, masks, ann


def test_same_seed_same_result_and_inputs_untouched():
    images, masks, ann = _batch()
    before = images.clone()
    a = augment_batch(images, masks, ann, generator=torch.Generator().manual_seed(7))
    b = augment_batch(images, masks, ann, generator=torch.Generator().manual_seed(7))
    c = augment_batch(images, masks, ann, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert torch.equal(images, before)
    assert a[0].dtype == torch.float32 and a[0].shape == images.shape
    assert a[0].min() >= 0 and a[0].max() <= 255


def test_flips_move_masks_with_images():
    images, masks, ann = _batch()
    cfg = AugmentConfig(p_any=1, p_flip=1, p_noise=0, p_blur=0, p_dark=0, p_decolour=0)
    x, m, a = augment_batch(images, masks, ann, generator=torch.Generator().manual_seed(0), config=cfg)
    assert torch.equal(x, images.float().flip(-1).flip(-2))
    assert torch.equal(m, masks.flip(-1).flip(-2)) and torch.equal(a, ann.flip(-1).flip(-2))


def test_each_photometric_augmentation():
    images, masks, ann = _batch()
    x0 = images.float()
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    off = dict(p_any=1, p_flip=0, p_noise=0, p_blur=0, p_dark=0, p_decolour=0)
    # full decolouring: every channel equals the grey mean
    x, m, _ = augment_batch(images, masks, ann, generator=gen(),
                            config=AugmentConfig(**{**off, "p_decolour": 1, "p_full_decolour": 1}))
    assert torch.allclose(x[:, 0], x0.mean(1)) and torch.allclose(x[:, 1], x[:, 2])
    assert torch.equal(m, masks)  # photometric: masks untouched
    # partial decolouring: between the image and its grey version
    partial = AugmentConfig(**{**off, "p_decolour": 1, "p_full_decolour": 0})
    x, _, _ = augment_batch(images, generator=gen(), config=partial)
    grey = x0.mean(1, keepdim=True)
    assert ((x - grey).abs() <= (x0 - grey).abs() + 1e-3).all()
    # darken/lighten: one factor per image in [0.5, 1.15]
    x, _, _ = augment_batch(images, generator=gen(), config=AugmentConfig(**{**off, "p_dark": 1}))
    ratio = x.sum((1, 2, 3)) / x0.sum((1, 2, 3))
    assert ((ratio > 0.49) & (ratio < 1.16)).all()
    # noise: per-pixel factors within +-10 %
    x, _, _ = augment_batch(images, generator=gen(), config=AugmentConfig(**{**off, "p_noise": 1}))
    nz = x0 > 0
    r = x[nz] / x0[nz]
    assert ((r >= 0.9 - 1e-5) & ((r <= 1.1 + 1e-5) | (x[nz] == 255))).all() and r.std() > 0.01
    # blur lowers the high-frequency energy
    x, _, _ = augment_batch(images, generator=gen(), config=AugmentConfig(**{**off, "p_blur": 1}))
    assert (x.diff(dim=-1).abs().mean() < 0.6 * x0.diff(dim=-1).abs().mean())
    # p_any = 0: nothing happens
    x, m, a = augment_batch(images, masks, ann, generator=gen(), config=AugmentConfig(p_any=0))
    assert torch.equal(x, x0) and torch.equal(m, masks) and torch.equal(a, ann)


def test_gaussian_blur_keeps_constants():
    x = torch.full((2, 3, 9, 9), 100.0)
    assert torch.allclose(gaussian_blur(x), x)
