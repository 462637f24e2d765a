"""The paper's training loss on constructed tensors."""

import pytest
import torch
from torch.nn import functional as F

from matseg_hub.errors import MatSegInputError
from matseg_hub.training.loss import material_loss


def _two_material_scene(h=8, w=8, d=4):
    """Left half material 0, right half material 1; masks at 4x the map's resolution."""
    masks = torch.zeros(1, 2, 4 * h, 4 * w)
    masks[0, 0, :, : 2 * w] = 1
    masks[0, 1, :, 2 * w:] = 1
    desc = torch.zeros(1, d, h, w)
    desc[0, 0, :, : w // 2] = 1.0
    desc[0, 1, :, w // 2:] = 1.0
    return desc, masks


def test_perfect_descriptors_give_near_zero_loss():
    desc, masks = _two_material_scene()
    out = material_loss(desc * 3.0, masks, temperature=0.2)
    # orthogonal descriptors: p(right) = e^5 / (e^5 + e^0)  ->  loss = log(1 + e^-5)
    assert out.loss.item() == pytest.approx(float(torch.log1p(torch.exp(torch.tensor(-5.0)))), rel=1e-5)
    assert out.pixel_accuracy.item() == 1.0
    # opposite descriptors are even better: log(1 + e^-10)
    desc2 = desc.clone()
    desc2[0, 0, :, 4:] = -1.0
    desc2[0, 1, :, 4:] = 0.0
    assert material_loss(desc2, masks, temperature=0.2).loss.item() < 1e-4
    assert out.num_materials == 2 and out.num_pixels == 64


def test_constant_descriptors_give_log_k():
    _, masks = _two_material_scene()
    out = material_loss(torch.ones(1, 4, 8, 8), masks)
    assert out.loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-6)


def test_mislabelled_pixel_gradient_points_the_right_way():
    desc, masks = _two_material_scene()
    desc = desc + 0.05 * torch.randn(desc.shape, generator=torch.Generator().manual_seed(0))
    # pixel (2, 1) is in material 0's half but carries material 1's descriptor
    desc[0, :, 2, 1] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    desc.requires_grad_(True)
    material_loss(desc, masks).loss.backward()
    g = desc.grad[0, :, 2, 1]
    pixel = desc.detach()[0, :, 2, 1]
    stepped = pixel - 0.5 * g / g.norm()
    mat0 = torch.tensor([1.0, 0.0, 0.0, 0.0])
    mat1 = torch.tensor([0.0, 1.0, 0.0, 0.0])
    assert F.cosine_similarity(stepped, mat0, dim=0) > F.cosine_similarity(pixel, mat0, dim=0)
    assert F.cosine_similarity(stepped, mat1, dim=0) < F.cosine_similarity(pixel, mat1, dim=0)
    # descent increases the material-0 component (the gradient is orthogonal to the unit pixel vector itself)
    assert -g[0] > 0 and abs(float(g[1])) < 1e-6


def test_unannotated_pixels_and_padding_are_ignored():
    desc, masks = _two_material_scene()
    base = material_loss(desc, masks).loss
    wrong = desc.clone()
    wrong[0, :, :, :2] = wrong[0, :, :, 6:8]  # left columns now look like material 1
    annotated = torch.ones(1, 32, 32)
    annotated[0, :, :8] = 0  # ...but they are outside the annotated region
    assert material_loss(wrong, masks, annotated).loss.item() == pytest.approx(base.item(), rel=1e-6)
    assert material_loss(wrong, masks).loss.item() > base.item() + 0.1
    # an extra all-zero (padding) slot, or a slot beyond num_materials, changes nothing
    padded = torch.cat([masks, torch.zeros(1, 1, 32, 32)], 1)
    assert material_loss(desc, padded).loss.item() == pytest.approx(base.item(), rel=1e-6)
    extra = torch.cat([masks, masks[:, :1]], 1)
    same = material_loss(desc, extra, num_materials=torch.tensor([2])).loss
    assert same.item() == pytest.approx(base.item(), rel=1e-6)


def test_soft_targets_and_batch_scope():
    desc, masks = _two_material_scene()
    soft = masks.clone()
    soft[0, 0, :, 12:20] = 0.5
    soft[0, 1, :, 12:20] = 0.5  # a 50/50 band in the middle
    out = material_loss(desc, soft)
    assert torch.isfinite(out.loss) and out.loss.item() > material_loss(desc, masks).loss.item()
    two = torch.cat([desc, desc.flip(-1)], 0)
    m2 = torch.cat([masks, masks.flip(-1)], 0)
    img = material_loss(two, m2, scope="image")
    bat = material_loss(two, m2, scope="batch")
    # the batch scope also contrasts with the other image's (identical) materials: a larger loss
    assert bat.loss.item() > img.loss.item()
    assert bat.probabilities.shape == (2, 4, 8, 8) and img.probabilities.shape == (2, 2, 8, 8)


def test_no_counted_pixel_gives_zero_and_bad_input_raises():
    desc = torch.randn(1, 4, 8, 8, requires_grad=True)
    out = material_loss(desc, torch.zeros(1, 2, 32, 32))
    assert out.loss.item() == 0.0 and out.num_pixels == 0
    out.loss.backward()
    with pytest.raises(MatSegInputError):
        material_loss(desc, torch.zeros(2, 2, 32, 32))
    with pytest.raises(MatSegInputError):
        material_loss(desc, torch.zeros(1, 2, 32, 32), scope="pixel")


def test_half_precision_descriptors_are_computed_in_float32():
    desc, masks = _two_material_scene()
    out = material_loss(desc.to(torch.bfloat16), masks)
    assert out.loss.dtype == torch.float32


def test_loss_reads_nothing_back_to_the_host(monkeypatch):
    """A training step must not wait for the device: the loss used to call ``.item()`` twice per step. Every
    way of reading a tensor's value on the host fails here; the counts come back as tensors."""
    desc, masks = _two_material_scene()
    ann = torch.ones(1, 32, 32)

    def host_read(*args, **kwargs):
        raise AssertionError("material_loss read a tensor back to the host")

    for name in ("item", "tolist", "numpy", "cpu", "__int__", "__float__", "__bool__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for scope in ("image", "batch"):
        out = material_loss(desc * 3.0, masks, ann, num_materials=torch.tensor([2]), scope=scope)
    monkeypatch.undo()
    assert int(out.num_pixels) == 64 and int(out.num_materials) == 2
    assert out.num_pixels.dtype == torch.int64 and out.num_pixels.ndim == 0
