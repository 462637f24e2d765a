"""Converter: a reference checkpoint (generated here: random init of the ported reference net, saved with
``torch.save``) converted to a MatSegModel reproduces the reference forward pass to 1e-4.

The port (``matseg_hub.models.matseg.convert_reference.ReferenceNet``) keeps the reference's module structure and names
(``Encoder1.features`` with torchvision-style ConvNeXt blocks, ``PSPLayers``, ``SqueezeLayers``,
``upsample_ModuleList``) and its forward (numpy [B, H, W, 3] images, per-index mean/65 normalisation, zero 4th
channel, PSP sizes via ``np.int32``, skips added inside the size-mismatch branch, upsampling to the image at
inference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matseg_hub.models.matseg.convert_reference import (ReferenceNet, convert_checkpoint, convert_reference, main,
                                                        map_reference_key, reference_config, verify_conversion)
from matseg_hub.errors import MatSegFormatError
from matseg_hub.models.matseg import MatSegConfig, MatSegImageProcessor, MatSegModel

DEPTHS = (2, 1, 3, 1)
WIDTHS = (8, 16, 24, 32)
DESCRIPTOR = 16


def random_reference(seed: int = 0) -> ReferenceNet:
    """A small reference net with every parameter and batch-norm statistic randomised (eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    net = ReferenceNet(descriptor_depth=DESCRIPTOR, depths=DEPTHS, widths=WIDTHS)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.1)  # far from the 1e-6 init: blocks matter
            elif p.ndim == 1 and name.endswith("weight"):  # norm scales
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
            elif name.endswith("num_batches_tracked"):
                b.fill_(1234)
    return net.eval()


@pytest.fixture(scope="module")
def reference() -> ReferenceNet:
    return random_reference()


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "Defult.torch"
    torch.save(reference.state_dict(), path)  # what the reference Train.py writes
    return path


def test_inferred_config(reference):
    config = reference_config(reference.state_dict())
    assert list(config.backbone_config.depths) == list(DEPTHS)
    assert list(config.backbone_config.hidden_sizes) == list(WIDTHS)
    assert config.descriptor_dim == DESCRIPTOR and config.num_channels == 4
    assert config.psp_channels == WIDTHS[-1] // 2 and config.decoder_channels == [WIDTHS[2], WIDTHS[1]]


def test_base_size_key_mapping_is_complete():
    """The real reference (ConvNeXt-base, D=128) maps key for key, shape for shape (built on the meta device)."""
    with torch.device("meta"):
        reference = ReferenceNet()
    ref_state = reference.state_dict()
    config = reference_config(ref_state)
    assert config.to_dict()["backbone_config"]["hidden_sizes"] == [128, 256, 512, 1024]
    with torch.device("meta"):
        ours = MatSegModel(MatSegConfig()).state_dict()
    mapped = {map_reference_key(k): v for k, v in ref_state.items()}
    dropped = sorted(k for k in ref_state if map_reference_key(k) is None)
    assert dropped == ["Encoder1.classifier.0.bias", "Encoder1.classifier.0.weight",
                       "Encoder1.classifier.2.bias", "Encoder1.classifier.2.weight"]
    mapped.pop(None)
    assert set(mapped) == set(ours)
    for key, value in mapped.items():
        assert value.numel() == ours[key].numel(), key


def test_conversion_matches_reference_forward(reference, checkpoint, tmp_path):
    result = convert_checkpoint(checkpoint, tmp_path / "converted", backbone=None)
    assert result["max_abs_diff"] is not None and result["max_abs_diff"] <= 1e-4
    model = MatSegModel.from_pretrained(tmp_path / "converted").eval()
    processor = MatSegImageProcessor.from_pretrained(tmp_path / "converted")
    assert processor.channel_order == "rgb"
    assert (tmp_path / "converted" / "README.md").read_text().count("cc0-1.0") >= 1

    rng = np.random.default_rng(7)
    for height, width in [(96, 64), (77, 131), (32, 32)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        with torch.no_grad():
            # reference, as Evaluate.py calls it: Net.forward(img, img[:, :, :, 0] * 0, TrainMode=False)
            batch = image[None].astype(np.float32)
            expected = reference(batch, batch[:, :, :, 0] * 0, train_mode=False)
            expected_low = reference(batch, batch[:, :, :, 0] * 0, train_mode=True)
            inputs = MatSegImageProcessor(size_mode="none")(image)
            out = model(inputs["pixel_values"], upsample=True)
        assert out.descriptor_map.shape == expected_low.shape
        assert float((out.descriptor_map - expected_low).abs().max()) <= 1e-4
        assert float((out.upsampled_descriptor_map - expected).abs().max()) <= 1e-4
        assert float(expected.abs().mean()) > 1e-2  # a non-trivial comparison


def test_bgr_switch_reproduces_reference_evaluation(reference, checkpoint):
    """The reference evaluation feeds cv2's BGR array; our RGB input with channel_order='bgr' gives the same map."""
    from matseg_hub.models.inference import descriptor_map

    model = convert_reference(torch.load(checkpoint, weights_only=True))
    rgb = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    bgr = rgb[:, :, ::-1].astype(np.float32)[None]
    with torch.no_grad():
        expected = reference(bgr, bgr[:, :, :, 0] * 0, train_mode=False)[0].permute(1, 2, 0).numpy()
    got = descriptor_map(model, rgb, MatSegImageProcessor.reference_evaluation())
    assert got.shape == (70, 90, DESCRIPTOR) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-4
    rgb_fed = descriptor_map(model, rgb, MatSegImageProcessor(size_mode="none"))
    assert np.abs(rgb_fed - expected).max() > 1e-3  # the switch matters


def test_verification_detects_a_wrong_mapping(reference):
    state = reference.state_dict()
    model = convert_reference(state)
    assert verify_conversion(state, model) <= 1e-4
    with torch.no_grad():
        model.decoder.blocks[1].skip.norm.running_mean.add_(0.5)
    assert verify_conversion(state, model) > 1e-3


def test_data_parallel_prefix_and_cli(reference, tmp_path, capsys):
    path = tmp_path / "dp.torch"
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)
    assert main([str(path), "--output", str(tmp_path / "out")]) == 0
    assert "max abs diff" in capsys.readouterr().out
    assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / "preprocessor_config.json").is_file()


def test_bad_checkpoints(reference, tmp_path):
    state = dict(reference.state_dict())
    state["Encoder1.features.1.0.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.torch"
    torch.save(state, path)
    with pytest.raises(MatSegFormatError, match="unknown key") as info:
        convert_checkpoint(path, tmp_path / "out")
    assert info.value.path == str(path) and info.value.field == "Encoder1.features.1.0.extra.weight"

    (tmp_path / "junk.torch").write_bytes(b"not a checkpoint")
    with pytest.raises(MatSegFormatError, match="torch.load"):
        convert_checkpoint(tmp_path / "junk.torch", tmp_path / "out")

    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.torch")
    with pytest.raises(MatSegFormatError, match="not a reference MatSeg"):
        convert_checkpoint(tmp_path / "other.torch", tmp_path / "out")


def test_push_to_hub_uploads_the_converted_folder(checkpoint, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    def fake_create_repo(repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs.get("private"))

    def fake_upload_folder(*, folder_path, repo_id, **kwargs):
        from pathlib import Path

        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        calls["repo"] = repo_id
        calls["readme"] = (Path(folder_path) / "README.md").read_text()

    monkeypatch.setattr(huggingface_hub, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload_folder)
    assert main([str(checkpoint), "--output", str(tmp_path / "out"), "--push-to-hub", "testns/matseg-ref", "--private"]) == 0
    assert calls["create"] == ("testns/matseg-ref", True) and calls["repo"] == "testns/matseg-ref"
    assert calls["files"] == ["README.md", "config.json", "matseg_auto.py", "model.safetensors", "preprocessor_config.json"]
    assert 'AutoModel.from_pretrained("testns/matseg-ref")' in calls["readme"] and "license: cc0-1.0" in calls["readme"]
