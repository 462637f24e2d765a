"""MatSegConfig / MatSegModel / MatSegImageProcessor: shapes, save/load, Auto classes, offline loading, encoder
initialisation from a ConvNeXt checkpoint, model card, bad inputs. Everything uses tiny random models."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from hub_fixtures import local_hub  # noqa: F401  (session-scoped local Hub server, see hubserver.py)
from matseg_hub.errors import MatSegInputError
from matseg_hub.models.matseg import MatSegConfig, MatSegImageProcessor, MatSegModel, MatSegOutput

TINY = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], descriptor_dim=16)


def tiny_config(**kwargs) -> MatSegConfig:
    params = dict(TINY)
    params.update(kwargs)
    return MatSegConfig.from_convnext_size(**params)


def tiny_model(seed: int = 0, **kwargs) -> MatSegModel:
    torch.manual_seed(seed)  # transformers initialises through torch's default generator
    return MatSegModel(tiny_config(**kwargs)).eval()


@pytest.fixture(scope="module")
def model() -> MatSegModel:
    return tiny_model()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ---------------------------------------------------------------------------------------------------- config
def test_default_config_is_reference_convnext_base():
    config = MatSegConfig()
    assert config.model_type == "matseg"
    assert list(config.backbone_config.depths) == [3, 3, 27, 3]
    assert list(config.backbone_config.hidden_sizes) == [128, 256, 512, 1024]
    assert config.backbone_config.num_channels == 4
    assert config.descriptor_dim == 128
    assert config.psp_scales == [1.0, 0.5, 0.25, 0.125]
    assert config.psp_channels == 512 and config.decoder_channels == [512, 256]
    assert config.backbone is None


def test_named_sizes_and_config_errors():
    tiny = MatSegConfig.from_convnext_size("tiny")
    assert list(tiny.backbone_config.hidden_sizes) == [96, 192, 384, 768]
    with pytest.raises(MatSegInputError, match="unknown ConvNeXt size"):
        MatSegConfig.from_convnext_size("huge")
    with pytest.raises(MatSegInputError, match="4-stage"):
        MatSegConfig.from_convnext_size(depths=[1, 1, 1], hidden_sizes=[8, 16, 24])
    with pytest.raises(MatSegInputError, match="decoder_channels"):
        tiny_config(decoder_channels=[8])


# ---------------------------------------------------------------------------------------------------- forward
def test_forward_shapes(model):
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x, upsample=True, output_hidden_states=True)
    assert isinstance(out, MatSegOutput)
    assert out.descriptor_map.shape == (2, 16, 16, 24)
    assert out.upsampled_descriptor_map.shape == (2, 16, 64, 96)
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 24, 4, 6), (2, 32, 2, 3)]
    with torch.no_grad():
        plain = model(x)
        sized = model(x, output_size=(10, 20))
        tup = model(x, return_dict=False)
    assert plain.upsampled_descriptor_map is None and plain.hidden_states is None
    assert sized.upsampled_descriptor_map.shape == (2, 16, 10, 20)
    assert isinstance(tup, tuple) and len(tup) == 1 and torch.equal(tup[0], plain.descriptor_map)
    # the upsampled map is the bilinear (align_corners=False) resize of the 1/4 map
    expected = torch.nn.functional.interpolate(plain.descriptor_map, size=(64, 96), mode="bilinear", align_corners=False)
    assert torch.allclose(out.upsampled_descriptor_map, expected)


def test_sizes_not_multiple_of_32_and_zero_fourth_channel(model):
    x = torch.randn(1, 3, 45, 70, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out3 = model(x).descriptor_map
        out4 = model(torch.cat([x, torch.zeros(1, 1, 45, 70)], 1)).descriptor_map
        out4_roi = model(torch.cat([x, torch.ones(1, 1, 45, 70)], 1)).descriptor_map
    assert out3.shape == (1, 16, 11, 17)
    assert torch.equal(out3, out4)
    assert not torch.allclose(out3, out4_roi)  # the 4th channel is wired to the stem


def test_stem_has_four_channels_and_layer_scale_init(model):
    assert model.backbone.embeddings.patch_embeddings.weight.shape == (8, 4, 4, 4)
    scale = model.backbone.encoder.stages[0].layers[0].layer_scale_parameter
    assert torch.allclose(scale, torch.full_like(scale, 1e-6))
    # no layer norms on the feature maps: the reference feeds the raw stage outputs to PSP and the skips
    assert not any("hidden_states_norms" in k for k in model.state_dict())


def test_training_step_gives_gradients():
    model = tiny_model(seed=3).train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    loss = model(x).descriptor_map.square().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((1, 3, 64, 64), np.float32), "torch.Tensor"),
        (torch.zeros(3, 64, 64), "4 dimensions"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating-point"),
        (torch.zeros(1, 5, 64, 64), "3 \\(image\\) or 4"),
        (torch.zeros(1, 1, 64, 64), "3 \\(image\\) or 4"),
        (torch.zeros(1, 3, 16, 64), "at least 32x32"),
    ],
)
def test_bad_pixel_values(model, bad, message):
    with pytest.raises(MatSegInputError, match=message):
        model(bad)


# ---------------------------------------------------------------------------------------------------- save / load
def test_save_pretrained_round_trip_and_auto_classes(model, tmp_path, no_network):
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    model.config.backbone = "facebook/convnext-base-224-22k"  # recorded, never fetched on load
    try:
        model.save_pretrained(tmp_path, model_card={"license": "cc0-1.0", "datasets": ["testns/matseg"],
                                                    "metrics": {"triplet_accuracy": 0.9}})
        MatSegImageProcessor(channel_order="bgr").save_pretrained(tmp_path)
    finally:
        model.config.backbone = None
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "matseg" and config["backbone_config"]["num_channels"] == 4
    assert (tmp_path / "model.safetensors").is_file()

    loaded = MatSegModel.from_pretrained(tmp_path).eval()
    auto = AutoModel.from_pretrained(tmp_path).eval()
    assert type(auto) is MatSegModel and type(AutoConfig.from_pretrained(tmp_path)) is MatSegConfig
    assert auto.config.backbone == "facebook/convnext-base-224-22k"
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, MatSegImageProcessor) and processor.channel_order == "bgr"

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x).descriptor_map
        assert torch.equal(loaded(x).descriptor_map, expected)
        assert torch.equal(auto(x).descriptor_map, expected)
    # batch-norm running statistics travel with the weights
    key = "decoder.blocks.2.skip.norm.running_var"
    assert torch.equal(loaded.state_dict()[key], model.state_dict()[key])


def test_model_card_metadata(model, tmp_path):
    from huggingface_hub import ModelCard

    model.save_pretrained(tmp_path, model_card={"license": "apache-2.0", "tags": ["extra-tag"],
                                                "datasets": ["testns/matseg"], "repo_id": "testns/tiny-matseg",
                                                "metrics": {"triplet_accuracy": 0.92, "triplet_accuracy_soft": 0.84}})
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-segmentation"
    assert {"matseg", "extra-tag"} <= set(data["tags"])
    assert data["datasets"] == ["testns/matseg"]
    results = data["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"triplet_accuracy": 0.92, "triplet_accuracy_soft": 0.84}
    assert 'AutoModel.from_pretrained("testns/tiny-matseg")' in card.text
    # default card: no licence claimed when none is given
    plain = model.model_card()
    assert "license" not in plain.split("---")[1]


def test_trust_remote_code_loads_without_importing_matseg_hub(model, tmp_path):
    """config.json's auto_map points at a two-line shim importing the installed package: a fresh process that
    never imports matseg_hub loads the model with trust_remote_code=True, and can save and reload it."""
    import subprocess
    import sys

    model.save_pretrained(tmp_path / "m")
    MatSegImageProcessor().save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["auto_map"]["AutoModel"] == "matseg_auto.MatSegModel"
    shim = (tmp_path / "m" / "matseg_auto.py").read_text()
    assert "from matseg_hub.models.matseg import" in shim
    code = f"""
import sys
from transformers import AutoImageProcessor, AutoModel
try:
    AutoModel.from_pretrained({str(tmp_path / "m")!r})
    print("loaded without trust_remote_code")
except ValueError as exc:
    print("refused:", "trust_remote_code" in str(exc))
model = AutoModel.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True)
model.save_pretrained({str(tmp_path / "again")!r})
again = AutoModel.from_pretrained({str(tmp_path / "again")!r}, trust_remote_code=True)
print(type(model).__name__, type(processor).__name__, type(again).__name__)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert any(line.endswith("refused: True") for line in lines)
    assert lines[-1] == "MatSegModel MatSegImageProcessor MatSegModel"
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["README.md", "config.json", "matseg_auto.py",
                                                                       "model.safetensors"]

@pytest.mark.parametrize("remote_card", [False, True])
def test_push_to_hub_uploads_weights_processor_and_card(model, monkeypatch, remote_card):
    """push_to_hub through a recorded fake HfApi (the local Hub server is read-only)."""
    import huggingface_hub

    uploaded = {}

    class Repo:
        repo_id = "testns/tiny-matseg"

    def upload_folder(self, *, folder_path, repo_id, **kwargs):
        from pathlib import Path

        uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
        uploaded["_repo_id"] = repo_id
        return "commit"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: Repo())
    monkeypatch.setattr(huggingface_hub.HfApi, "file_exists", lambda self, *a, **kw: remote_card)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert model.push_to_hub("testns/tiny-matseg", image_processor=MatSegImageProcessor()) == "commit"
    assert uploaded["_repo_id"] == "testns/tiny-matseg"
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(uploaded)
    if remote_card:  # an existing card in the repository is kept
        assert "README.md" not in uploaded
    else:
        assert b'AutoModel.from_pretrained("testns/tiny-matseg")' in uploaded["README.md"]
    uploaded.clear()
    model.push_to_hub("testns/tiny-matseg", model_card={"license": "cc0-1.0", "metrics": {"triplet_accuracy": 0.5}})
    assert b"license: cc0-1.0" in uploaded["README.md"] and b"triplet_accuracy" in uploaded["README.md"]

# ---------------------------------------------------------------------------------------------------- encoder init
def _tiny_convnext_checkpoint(path, seed=0):
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(seed)
    convnext = ConvNextModel(ConvNextConfig(num_channels=3, depths=TINY["depths"], hidden_sizes=TINY["hidden_sizes"]))
    with torch.no_grad():
        for p in convnext.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.1)
    convnext.save_pretrained(path)
    return convnext


def test_encoder_from_local_convnext_checkpoint(tmp_path, no_network):
    convnext = _tiny_convnext_checkpoint(tmp_path / "convnext")
    torch.manual_seed(0)
    model = MatSegModel.from_backbone_pretrained(tmp_path / "convnext", descriptor_dim=16)
    assert model.config.backbone == str(tmp_path / "convnext")
    assert list(model.config.backbone_config.hidden_sizes) == TINY["hidden_sizes"]
    stem = model.backbone.embeddings.patch_embeddings.weight
    assert torch.equal(stem[:, :3], convnext.embeddings.patch_embeddings.weight)
    assert torch.count_nonzero(stem[:, 3]) == 0  # the extra channel starts at zero, as in the reference
    ours = model.backbone.state_dict()
    for key, value in convnext.state_dict().items():
        if key.startswith("encoder.") or key == "embeddings.layernorm.weight":
            assert torch.equal(ours[key], value), key
    # the 4-channel model on a zero 4th channel equals the 3-channel ConvNeXt's stage outputs
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = convnext(x, output_hidden_states=True).hidden_states[-1]
        got = model.eval()(x, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(ref, got, atol=1e-5)

    # save and reload: never reads the encoder checkpoint again (it could be gone or unreachable)
    model.save_pretrained(tmp_path / "matseg")
    import shutil

    shutil.rmtree(tmp_path / "convnext")
    reloaded = MatSegModel.from_pretrained(tmp_path / "matseg")
    assert torch.equal(reloaded.backbone.embeddings.patch_embeddings.weight, stem)


def test_encoder_checkpoint_of_wrong_size_is_rejected(tmp_path):
    _tiny_convnext_checkpoint(tmp_path / "convnext")
    model = MatSegModel(tiny_config(hidden_sizes=[8, 16, 24, 40]))
    with pytest.raises(MatSegInputError, match="does not match"):
        model.load_encoder_weights(tmp_path / "convnext")


# ---------------------------------------------------------------------------------------------------- image processor
def test_processor_normalisation_and_channel_order():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 200, 100, 50
    rgb = MatSegImageProcessor()(image)["pixel_values"]
    bgr = MatSegImageProcessor(channel_order="bgr")(image)["pixel_values"]
    assert rgb.dtype == torch.float32 and rgb.shape == (1, 3, 32, 32)
    assert np.allclose(rgb[0, :, 0, 0].numpy(), [(200 - 123.68) / 65, (100 - 116.779) / 65, (50 - 103.939) / 65], atol=1e-6)
    # reference evaluation: cv2 BGR pixels fed to the same per-index mean
    assert np.allclose(bgr[0, :, 0, 0].numpy(), [(50 - 123.68) / 65, (100 - 116.779) / 65, (200 - 103.939) / 65], atol=1e-6)
    ref = MatSegImageProcessor.reference_evaluation()
    assert ref.channel_order == "bgr" and ref.size_mode == "none"


def test_processor_size_modes_and_post_processing():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    pad = MatSegImageProcessor()(image)
    assert pad["pixel_values"].shape == (1, 3, 64, 96) and pad["original_sizes"] == [(50, 70)]
    assert torch.count_nonzero(pad["pixel_values"][0, :, 50:, :]) == 0  # padded with the mean colour
    resized = MatSegImageProcessor(size_mode="resize")(image)
    assert resized["pixel_values"].shape == (1, 3, 64, 64)
    none = MatSegImageProcessor(size_mode="none")(image, return_tensors="np")
    assert isinstance(none["pixel_values"], np.ndarray) and none["pixel_values"].shape == (1, 3, 50, 70)
    # batches of different sizes: padded together
    batch = MatSegImageProcessor()([image, rng.integers(0, 256, (40, 100, 3), dtype=np.uint8)])
    assert batch["pixel_values"].shape == (2, 3, 64, 128)
    maps = MatSegImageProcessor().post_process_descriptor_map(torch.randn(2, 5, 16, 32), batch["original_sizes"],
                                                               batch["processed_sizes"])
    assert [tuple(m.shape) for m in maps] == [(5, 50, 70), (5, 40, 100)]
    with pytest.raises(MatSegInputError, match="different sizes"):
        MatSegImageProcessor(size_mode="none")([image, image[:40]])
    grey = MatSegImageProcessor()(image[..., 0])
    assert grey["pixel_values"].shape == (1, 3, 64, 96)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((32, 32, 4), np.uint8), "alpha"),
        (np.zeros((32, 32, 3), np.bool_), "dtype"),
        (torch.zeros(3, 32, 32), "not torch tensors"),
        ("image.png", "numpy array"),
        (np.zeros((2, 32, 32, 3), np.uint8), "shape"),
    ],
)
def test_processor_bad_images(bad, message):
    with pytest.raises(MatSegInputError, match=message):
        MatSegImageProcessor()(bad)


def test_processor_bad_options():
    with pytest.raises(MatSegInputError, match="channel_order"):
        MatSegImageProcessor(channel_order="rbg")
    with pytest.raises(MatSegInputError, match="size_mode"):
        MatSegImageProcessor(size_mode="crop")


# ---------------------------------------------------------------------------------------------------- local Hub
_CLIENT_FORWARD = """
import json, torch
import matseg_hub.models.matseg  # registers model type 'matseg' with the Auto classes
from transformers import AutoImageProcessor, AutoModel
model = AutoModel.from_pretrained({repo!r}).eval()
processor = AutoImageProcessor.from_pretrained({repo!r})
x = torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)
with torch.no_grad():
    out = model(x).descriptor_map
print(json.dumps({{"type": type(model).__name__, "processor": type(processor).__name__,
                  "backbone": model.config.backbone, "values": out.flatten()[:50].tolist()}}))
"""


@pytest.mark.hub
def test_load_from_local_hub_by_repo_id(local_hub, tmp_path):  # noqa: F811
    from hubserver import run_client

    model = tiny_model(seed=11)
    # names an encoder checkpoint that does not exist on the server: loading must not try to fetch it
    model.config.backbone = "testns/no-such-convnext"
    model.save_pretrained(tmp_path / "tiny", model_card={"license": "cc0-1.0", "repo_id": "testns/tiny-matseg"})
    MatSegImageProcessor().save_pretrained(tmp_path / "tiny")
    local_hub.publish(tmp_path / "tiny", "testns/tiny-matseg", repo_type="model")

    result = run_client(_CLIENT_FORWARD.format(repo="testns/tiny-matseg"), local_hub)
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["type"] == "MatSegModel" and reply["processor"] == "MatSegImageProcessor"
    assert reply["backbone"] == "testns/no-such-convnext"
    # the same by repo id without importing matseg_hub first, through the auto_map shim
    remote = _CLIENT_FORWARD.format(repo="testns/tiny-matseg").replace(
        "import matseg_hub.models.matseg  # registers model type 'matseg' with the Auto classes\n", "").replace(
        "from_pretrained({repo!r})".format(repo="testns/tiny-matseg"),
        "from_pretrained({repo!r}, trust_remote_code=True)".format(repo="testns/tiny-matseg"))
    assert "matseg_hub" not in remote and remote.count("trust_remote_code=True") == 2
    assert json.loads(run_client(remote, local_hub).stdout.strip().splitlines()[-1])["values"] == reply["values"]
    x = torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval()(x).descriptor_map.flatten()[:50]
    assert np.allclose(reply["values"], expected.numpy(), atol=1e-6)


@pytest.mark.hub
def test_encoder_initialised_from_convnext_repo_on_local_hub(local_hub, tmp_path):  # noqa: F811
    from hubserver import run_client

    convnext = _tiny_convnext_checkpoint(tmp_path / "convnext", seed=4)
    local_hub.publish(tmp_path / "convnext", "testns/tiny-convnext", repo_type="model")
    code = """
import json, torch
from matseg_hub.models.matseg import MatSegModel
model = MatSegModel.from_backbone_pretrained("testns/tiny-convnext", descriptor_dim=16)
stem = model.backbone.embeddings.patch_embeddings.weight
print(json.dumps({"backbone": model.config.backbone, "hidden": list(model.config.backbone_config.hidden_sizes),
                  "rgb": stem[:, :3].flatten().tolist(), "extra": float(stem[:, 3].abs().sum()),
                  "dw": model.backbone.encoder.stages[2].layers[0].dwconv.weight.flatten()[:20].tolist()}))
"""
    reply = json.loads(run_client(code, local_hub).stdout.strip().splitlines()[-1])
    assert reply["backbone"] == "testns/tiny-convnext" and reply["hidden"] == TINY["hidden_sizes"]
    assert np.allclose(reply["rgb"], convnext.embeddings.patch_embeddings.weight.flatten().detach().numpy())
    assert reply["extra"] == 0.0
    assert np.allclose(reply["dw"], convnext.encoder.stages[2].layers[0].dwconv.weight.flatten()[:20].detach().numpy())


def test_forward_refuses_misspelled_arguments(model):
    """forward(**kwargs) used to swallow any keyword: a misspelled ``upsample`` silently did nothing."""
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(TypeError, match=r"\['output_sise', 'upsampel'\]"):
        model(x, upsampel=True, output_sise=(8, 8))
    with pytest.raises(TypeError, match="no attention"):
        model(x, output_attentions=True)
    with torch.no_grad():
        # what transformers' generic callers and the image processor pass is accepted
        out = model(x, output_hidden_states=False, return_dict=True, output_attentions=False)
        inputs = MatSegImageProcessor()(np.zeros((50, 70, 3), np.uint8))
        assert set(inputs) == {"pixel_values", "original_sizes", "processed_sizes"}
        processed = model(**inputs)
    assert out.descriptor_map.shape == (1, 16, 16, 16)
    assert processed.descriptor_map.shape[:2] == (1, 16)
