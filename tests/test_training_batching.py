"""Pixel-capped batches of random size; scenes and masks resized/cropped together."""

import numpy as np
import pytest

from matseg_hub.errors import MatSegInputError
from matseg_hub.training.batching import collate_scenes, fit_scene, sample_batch_shape


def test_batch_shapes_are_multiples_of_32_and_pixel_capped():
    rng = np.random.default_rng(0)
    shapes = [sample_batch_shape(rng, min_size=250, max_size=900, max_pixels=700 * 700 * 2, max_batch_size=7)
              for _ in range(300)]
    for s in shapes:
        assert s.height % 32 == 0 and s.width % 32 == 0
        assert 256 <= s.height <= 896 and 256 <= s.width <= 896
        assert 1 <= s.batch_size <= 7 and s.batch_size * s.height * s.width <= 700 * 700 * 2
    assert len({(s.height, s.width) for s in shapes}) > 50
    again = [sample_batch_shape(np.random.default_rng(0)) for _ in range(1)]
    assert again[0] == shapes[0]
    with pytest.raises(MatSegInputError):
        sample_batch_shape(rng, min_size=300, max_size=310)


def _scene(h=60, w=80):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (200, 0, 0)
    rgb[:, w // 2:] = (0, 0, 200)
    masks = np.zeros((3, h, w), np.float32)
    masks[0, :, : w // 2] = 1
    masks[1, :, w // 2:] = 1  # masks[2] is empty
    ann = np.zeros((h, w), np.float32)
    ann[10:50, 10:70] = 1
    return rgb, masks, ann


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (128, 128)])
def test_fit_scene_keeps_image_and_masks_aligned(size):
    rgb, masks, ann = _scene()
    for seed in range(5):
        out_rgb, out_masks, out_ann = fit_scene(rgb, masks, ann, *size, np.random.default_rng(seed))
        assert out_rgb.shape == (*size, 3) and out_masks.shape[1:] == size and out_ann.shape == size
        assert out_rgb.dtype == np.uint8 and out_masks.dtype == np.float32
        # the empty material is dropped; each kept mask covers pixels of one colour only (image and masks aligned)
        assert 1 <= len(out_masks) <= 2
        for m in out_masks:
            inside = m > 0.5
            red = (out_rgb[..., 0] > 100)[inside].mean()
            blue = (out_rgb[..., 2] > 100)[inside].mean()
            assert max(red, blue) > 0.97 and min(red, blue) < 0.03
        assert out_ann.max() > 0.5  # the crop overlaps the annotated region


def test_fit_scene_is_deterministic():
    rgb, masks, ann = _scene(300, 400)
    a = fit_scene(rgb, masks, ann, 96, 64, np.random.default_rng(3))
    b = fit_scene(rgb, masks, ann, 96, 64, np.random.default_rng(3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_collate_pads_materials():
    rgb, masks, ann = _scene()
    one = fit_scene(rgb, masks, ann, 32, 64, np.random.default_rng(0))
    two = (one[0], one[1][:1], one[2])
    batch = collate_scenes([one, two], max_materials=10)
    assert tuple(batch["images"].shape) == (2, 3, 32, 64) and str(batch["images"].dtype) == "torch.uint8"
    assert batch["masks"].shape[1] == len(one[1]) and batch["num_materials"].tolist() == [len(one[1]), 1]
    assert float(batch["masks"][1, 1:].abs().sum()) == 0.0
    with pytest.raises(MatSegInputError):
        collate_scenes([])
