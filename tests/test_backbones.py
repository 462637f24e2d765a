"""``features:`` (models.backbones): tiny random DINOv2 (with and without registers), ViT, CLIP / SigLIP vision
towers (also inside a full CLIPModel folder) and ConvNeXt (AutoBackbone) saved with ``save_pretrained``; each
descriptor map is checked against a hand computation from the model's own outputs (patch tokens without CLS /
register tokens, at the patch centres of a 7 px patch grid, where bilinear upsampling by 7 hits the token exactly),
then scored through ``evaluate_benchmark``, the CLI and, by Hub id, from a local Hub server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hub_fixtures import local_hub  # noqa: F401  (session-scoped local Hub server, see hubserver.py)
from matseg_hub.errors import MatSegInputError
from matseg_hub.models.backbones import (BACKBONE_MULTIPLE, CLIP_MEAN, IMAGENET_MEAN, FeatureBackboneScorer,
                                         input_size, load_feature_scorer)
from matseg_hub.models.scorers import Prompt, resolve_scorer

P = 7  # patch size: upsampling a grid by 7 (odd) puts pixel 7*i + 3 exactly on token i
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=P,
           image_size=28)
MEAN, STD = [0.3, 0.5, 0.7], [0.2, 0.3, 0.25]  # saved with the processor: a fallback to ImageNet's would show
REGISTERS = 4
ENV = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")


def _tiny(kind: str):
    import transformers as tf

    torch.manual_seed({"dinov2": 1, "dinov2_reg": 2, "vit": 3, "clip": 4, "siglip": 5, "clip_full": 6}[kind])
    if kind == "dinov2":
        return tf.Dinov2Model(tf.Dinov2Config(**VIT))
    if kind == "dinov2_reg":
        return tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**VIT, num_register_tokens=REGISTERS))
    if kind == "vit":
        return tf.ViTModel(tf.ViTConfig(**VIT), add_pooling_layer=False)
    if kind == "clip":
        return tf.CLIPVisionModel(tf.CLIPVisionConfig(**VIT))
    if kind == "siglip":
        return tf.SiglipVisionModel(tf.SiglipVisionConfig(**VIT))
    if kind == "clip_full":
        text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        return tf.CLIPModel(tf.CLIPConfig(vision_config=VIT, text_config=text))
    raise AssertionError(kind)


# kind -> (tokens before the patch grid, whether the model is called with interpolate_pos_encoding=True)
KINDS = {"dinov2": (1, False), "dinov2_reg": (1 + REGISTERS, False), "vit": (1, True), "clip": (1, True),
         "siglip": (0, True)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """kind -> a save_pretrained folder (model + a ViT image processor with MEAN / STD)."""
    from transformers import ConvNextConfig, ConvNextModel, ViTImageProcessor

    root = tmp_path_factory.mktemp("backbones")
    out = {}
    for kind in list(KINDS) + ["clip_full"]:
        _tiny(kind).save_pretrained(root / kind)
        ViTImageProcessor(image_mean=MEAN, image_std=STD).save_pretrained(root / kind)
        out[kind] = root / kind
    torch.manual_seed(7)
    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])).save_pretrained(root / "convnext")
    ViTImageProcessor(image_mean=MEAN, image_std=STD).save_pretrained(root / "convnext")
    out["convnext"] = root / "convnext"
    torch.manual_seed(8)
    _tiny("dinov2").save_pretrained(root / "no_processor")  # no preprocessor_config.json
    out["no_processor"] = root / "no_processor"
    return out


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).integers(0, 256, (5 * P, 7 * P, 3), dtype=np.uint8)  # 35 x 49: a 5 x 7 grid


def _pixels(image: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    x = (image.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    return torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32))[None]


def _hand_tokens(folder, kind: str, pixel_values: torch.Tensor, layer=None) -> torch.Tensor:
    """[gh * gw + prefix, D] tokens of the model reloaded the plain transformers way."""
    import transformers as tf

    cls = {"dinov2": tf.Dinov2Model, "dinov2_reg": tf.Dinov2WithRegistersModel, "vit": tf.ViTModel,
           "clip": tf.CLIPVisionModel, "siglip": tf.SiglipVisionModel, "clip_full": tf.CLIPVisionModel}[kind]
    model = cls.from_pretrained(folder).eval()
    kwargs = {"interpolate_pos_encoding": True} if KINDS.get(kind, (1, True))[1] else {}
    with torch.no_grad():
        out = model(pixel_values, output_hidden_states=True, **kwargs)
    return (out.last_hidden_state if layer is None else out.hidden_states[layer])[0]


def _fmap(scorer, image) -> np.ndarray:
    scorer.set_image(image)
    return scorer.descriptor_map()


# ------------------------------------------------------------------------------------------------ hand computation
@pytest.mark.parametrize("kind", list(KINDS))
def test_patch_centres_are_the_patch_tokens_without_cls_and_registers(folders, image, kind):
    scorer = load_feature_scorer(str(folders[kind]), device="cpu")
    fmap = _fmap(scorer, image)
    assert isinstance(scorer, FeatureBackboneScorer) and fmap.dtype == np.float32 and fmap.shape == (35, 49, 32)
    prefix = KINDS[kind][0]
    tokens = _hand_tokens(folders[kind], kind, _pixels(image))
    assert tokens.shape[0] == prefix + 5 * 7
    grid = tokens[prefix:].reshape(5, 7, 32).numpy()
    np.testing.assert_allclose(fmap[3::P, 3::P], grid, atol=2e-5, rtol=1e-4)
    # the whole map is the grid upsampled bilinearly (align_corners=False)
    up = F.interpolate(torch.from_numpy(grid).permute(2, 0, 1)[None], size=(35, 49), mode="bilinear",
                       align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(fmap, up, atol=2e-5, rtol=1e-4)
    if prefix:  # keeping the CLS token (and registers) and dropping the last tokens instead would show here
        wrong = tokens[:5 * 7].reshape(5, 7, 32).numpy()
        assert not np.allclose(fmap[3::P, 3::P], wrong, atol=1e-2)
    grid_t = scorer.feature_grid(_pixels(image))  # channels-last with canonical strides: the fast upsampling path
    assert tuple(grid_t.shape) == (1, 32, 5, 7) and grid_t.stride() == (5 * 7 * 32, 1, 7 * 32, 32)
    described = scorer.describe()
    assert described["dropped_tokens"] == prefix and described["patch_size"] == [P, P]
    assert described["image_mean"] == pytest.approx(MEAN) and "image processor" in described["normalisation"]


def test_register_tokens_are_dropped_not_only_cls(folders, image):
    """DINOv2 with 4 registers: dropping only the CLS token would put registers on the first patches."""
    scorer = load_feature_scorer(str(folders["dinov2_reg"]), device="cpu")
    assert scorer.num_register_tokens == REGISTERS and scorer.describe()["register_tokens"] == REGISTERS
    fmap = _fmap(scorer, image)
    tokens = _hand_tokens(folders["dinov2_reg"], "dinov2_reg", _pixels(image))
    right = tokens[1 + REGISTERS:].reshape(5, 7, 32).numpy()
    cls_only = tokens[1:1 + 35].reshape(5, 7, 32).numpy()  # the slice a scorer ignoring registers would take
    np.testing.assert_allclose(fmap[3::P, 3::P], right, atol=2e-5, rtol=1e-4)
    assert not np.allclose(fmap[3::P, 3::P], cls_only, atol=1e-2)
    assert np.abs(fmap[3::P, 3::P] - cls_only).max() > 0.1


def test_full_clip_folder_gives_its_vision_tower(folders, image):
    scorer = load_feature_scorer(str(folders["clip_full"]), device="cpu")
    assert scorer.model_type == "clip_vision_model" and type(scorer.model).__name__ == "CLIPVisionModel"
    fmap = _fmap(scorer, image)
    grid = _hand_tokens(folders["clip_full"], "clip_full", _pixels(image))[1:].reshape(5, 7, 32).numpy()
    np.testing.assert_allclose(fmap[3::P, 3::P], grid, atol=2e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ layer
@pytest.mark.parametrize("kind,layer", [("dinov2_reg", 1), ("dinov2_reg", -1), ("vit", 0), ("siglip", -2)])
def test_layer_is_the_hidden_state_of_that_index(folders, image, kind, layer):
    default = _fmap(load_feature_scorer(str(folders[kind]), device="cpu"), image)
    scorer = load_feature_scorer(str(folders[kind]), device="cpu", layer=layer)
    fmap = _fmap(scorer, image)
    prefix = KINDS[kind][0]
    grid = _hand_tokens(folders[kind], kind, _pixels(image), layer=layer)[prefix:].reshape(5, 7, 32).numpy()
    np.testing.assert_allclose(fmap[3::P, 3::P], grid, atol=2e-5, rtol=1e-4)
    assert np.abs(fmap - default).max() > 1e-3  # a layer that did nothing would show here
    assert scorer.describe()["layer"] == layer


def test_layer_through_resolve_scorer_and_out_of_range(folders):
    scorer = resolve_scorer(f"features:{folders['dinov2']}", layer=-3, device="cpu")  # 2 layers: 3 hidden states
    assert scorer.layer == -3
    for bad in (3, -4):
        with pytest.raises(MatSegInputError, match=r"layer .* out of range .* 3 hidden_states"):
            load_feature_scorer(str(folders["dinov2"]), layer=bad)
    with pytest.raises(MatSegInputError, match="integer"):
        load_feature_scorer(str(folders["dinov2"]), layer="last")


# ------------------------------------------------------------------------------------------------ AutoBackbone
def _channel_norm(x: torch.Tensor) -> torch.Tensor:
    """ConvNextBackbone's per-stage LayerNorm over channels, as initialised (weight 1, bias 0, eps 1e-6)."""
    mean = x.mean(1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(1, keepdim=True) + 1e-6)


@pytest.mark.parametrize("layer,dim", [(None, 32), (2, 16), (-3, 16), (0, 8)])
def test_convnext_stage_by_layer(folders, layer, dim):
    from transformers import ConvNextModel

    img = np.random.default_rng(5).integers(0, 256, (64, 96, 3), dtype=np.uint8)  # multiples of 32: no resize
    scorer = load_feature_scorer(str(folders["convnext"]), device="cpu", layer=layer)
    assert scorer.family == "backbone" and scorer.patch_size == (BACKBONE_MULTIPLE, BACKBONE_MULTIPLE)
    fmap = _fmap(scorer, img)
    assert fmap.shape == (64, 96, dim) and fmap.dtype == np.float32
    model = ConvNextModel.from_pretrained(folders["convnext"]).eval()
    with torch.no_grad():
        hidden = model(_pixels(img), output_hidden_states=True).hidden_states  # stem + 4 stages
    stage = _channel_norm(hidden[-1 if layer is None else layer])
    expected = F.interpolate(stage, size=(64, 96), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    np.testing.assert_allclose(fmap, expected.numpy(), atol=5e-5, rtol=1e-4)
    assert scorer.describe()["stage"] == ["stem", "stage1", "stage2", "stage3", "stage4"][-1 if layer is None else layer]
    with pytest.raises(MatSegInputError, match="out of range"):
        load_feature_scorer(str(folders["convnext"]), layer=5)


# ------------------------------------------------------------------------------------------------ input size
def test_input_size_rule():
    assert input_size(700, 525, 14) == (700, 532)  # 525 / 14 = 37.5 rounds up
    assert input_size(525, 700, 16) == (528, 704)
    assert input_size(30, 52, 7) == (28, 49)
    assert input_size(3, 5, 14) == (14, 14)  # at least one patch
    assert input_size(1400, 700, 8, max_input_size=700) == (704, 352)


def test_image_not_a_patch_multiple_is_resized_then_mapped_back(folders):
    img = np.random.default_rng(9).integers(0, 256, (30, 52, 3), dtype=np.uint8)
    scorer = load_feature_scorer(str(folders["dinov2"]), device="cpu")
    assert scorer.input_size(30, 52) == (28, 49)
    assert tuple(scorer.pixel_values(img).shape) == (1, 3, 28, 49)
    fmap = _fmap(scorer, img)
    assert fmap.shape == (30, 52, 32)
    resized = cv2.resize(img.astype(np.float32), (49, 28), interpolation=cv2.INTER_LINEAR)
    x = (resized / 255 - np.array(MEAN)) / np.array(STD)
    tokens = _hand_tokens(folders["dinov2"], "dinov2", torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32))[None])
    grid = torch.from_numpy(tokens[1:].reshape(4, 7, 32).numpy()).permute(2, 0, 1)[None]
    expected = F.interpolate(grid, size=(30, 52), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(fmap, expected, atol=5e-5, rtol=1e-4)


def test_normalisation_falls_back_per_model_family(folders, image, caplog):
    with caplog.at_level("WARNING"):
        scorer = load_feature_scorer(str(folders["no_processor"]), device="cpu")
    assert scorer.image_mean == pytest.approx(IMAGENET_MEAN) and "ImageNet" in scorer.describe()["normalisation"]
    assert "no image processor" in caplog.text
    fmap = _fmap(scorer, image)
    grid = _hand_tokens(folders["no_processor"], "dinov2", _pixels(image, IMAGENET_MEAN, [0.229, 0.224, 0.225]))
    np.testing.assert_allclose(fmap[3::P, 3::P], grid[1:].reshape(5, 7, 32).numpy(), atol=2e-5, rtol=1e-4)
    from matseg_hub.models.backbones import _mean_std
    assert _mean_std(str(folders["no_processor"]), "clip_vision_model", {})[0] == CLIP_MEAN


def test_similarity_maps_are_cosines_of_the_features(folders, image):
    scorer = load_feature_scorer(str(folders["dinov2"]), device="cpu")
    scorer.set_image(image)
    maps = scorer.similarity_maps([Prompt.of([[10, 10, 0]])])
    fmap = scorer.descriptor_map()
    unit = fmap / np.linalg.norm(fmap, axis=2, keepdims=True)
    np.testing.assert_allclose(maps[0], unit @ unit[10, 10], atol=1e-5)
    assert maps[0, 10, 10] == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_models_raise_typed_errors(tmp_path):
    from transformers import BertConfig, BertModel

    with pytest.raises(MatSegInputError, match="does not exist"):
        load_feature_scorer(str(tmp_path / "nope"))
    with pytest.raises(MatSegInputError, match="does not exist"):
        resolve_scorer("features:/nope")
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=50)).save_pretrained(tmp_path / "bert")
    with pytest.raises(MatSegInputError, match="'bert' model, not a vision backbone"):
        load_feature_scorer(str(tmp_path / "bert"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MatSegInputError, match="config"):
        load_feature_scorer(str(tmp_path / "empty"))
    with pytest.raises(MatSegInputError, match="max_input_size"):
        load_feature_scorer(str(tmp_path / "empty"), max_input_size=0)


def test_cli_missing_folder_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", "features:/nope",
                           "--max-size", "128"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors and "/nope" in errors[0] and "does not exist" in errors[0]


# ------------------------------------------------------------------------------------------------ benchmark, CLI
def test_evaluate_benchmark_on_the_builtin_sample(folders):
    from matseg_hub.benchmark.evaluation import evaluate_benchmark

    result = evaluate_benchmark(None, model=f"features:{folders['dinov2_reg']}", max_size=128)
    mean = result["mean"]
    assert mean["num_scored_images"] == 1
    for key in ("point_triplet", "material_triplet", "point_top1", "material_top1"):
        assert 0.0 <= mean[key] <= 1.0
    assert result["scorer"]["dropped_tokens"] == 1 + REGISTERS and result["scorer"]["register_tokens"] == REGISTERS
    # another backbone gives other numbers (the map really comes from the model)
    other = evaluate_benchmark(None, model=f"features:{folders['convnext']}", max_size=128)
    assert other["mean"]["point_triplet"] != mean["point_triplet"]


def test_cli_evaluate_prints_a_table(folders, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", f"features:{folders['siglip']}",
                           "--max-size", "128", "--layer", "1"], capture_output=True, text=True, env=ENV,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "point triplet" in proc.stdout
    row = [line for line in proc.stdout.splitlines() if "siglip" in line]
    assert row, proc.stdout
    numbers = [float(v) for v in row[0].split()[-4:]]
    assert all(0.0 <= v <= 1.0 for v in numbers)


# ------------------------------------------------------------------------------------------------ Hub id
_CLIENT = """
import json, numpy as np
from matseg_hub.models.scorers import resolve_scorer
scorer = resolve_scorer("features:testns/tiny-dinov2-reg", device="cpu")
image = np.random.default_rng(3).integers(0, 256, (35, 49, 3), dtype=np.uint8)
scorer.set_image(image)
fmap = scorer.descriptor_map()
print(json.dumps({"shape": list(fmap.shape), "values": fmap[3::7, 3::7].ravel().tolist(),
                  "described": scorer.describe()}))
"""


@pytest.mark.hub
def test_load_by_hub_id_from_the_local_hub(local_hub, folders, image):  # noqa: F811
    from hubserver import run_client

    local_hub.publish(folders["dinov2_reg"], "testns/tiny-dinov2-reg", repo_type="model")
    reply = json.loads(run_client(_CLIENT, local_hub, timeout=300).stdout.strip().splitlines()[-1])
    assert reply["shape"] == [35, 49, 32]
    assert reply["described"]["name"] == "features:testns/tiny-dinov2-reg"
    assert reply["described"]["image_mean"] == pytest.approx(MEAN)  # the processor came from the Hub too
    local = _fmap(load_feature_scorer(str(folders["dinov2_reg"]), device="cpu"), image)
    np.testing.assert_allclose(np.array(reply["values"]), local[3::P, 3::P].ravel(), atol=1e-6)


def test_scorer_from_a_model_in_memory(folders, image):
    from transformers import ConvNextBackbone, ConvNextConfig, Dinov2WithRegistersModel

    from matseg_hub.models.backbones import feature_scorer_from_model

    model = Dinov2WithRegistersModel.from_pretrained(folders["dinov2_reg"])
    scorer = feature_scorer_from_model(model, image_mean=MEAN, image_std=STD, device="cpu")
    loaded = load_feature_scorer(str(folders["dinov2_reg"]), device="cpu")
    np.testing.assert_allclose(_fmap(scorer, image), _fmap(loaded, image), atol=1e-6)
    assert scorer.prefix_tokens == 1 + REGISTERS
    default = feature_scorer_from_model(model, device="cpu")  # no processor given: ImageNet's mean/std
    assert default.image_mean == pytest.approx(IMAGENET_MEAN)
    backbone = ConvNextBackbone(ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_indices=[3]))
    assert feature_scorer_from_model(backbone, device="cpu", layer=-2).describe()["stage"] == "stage3"
    with pytest.raises(MatSegInputError, match="out_indices"):
        feature_scorer_from_model(backbone, layer=1)


def test_truncated_weights_and_unusable_devices_are_typed_errors(folders, tmp_path):
    import shutil

    broken = tmp_path / "truncated"
    shutil.copytree(folders["dinov2"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MatSegInputError, match="cannot load the 'dinov2' model") as info:
        load_feature_scorer(str(broken), device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(MatSegInputError, match="unknown torch device 'gpu'"):
        load_feature_scorer(str(folders["dinov2"]), device="gpu")
    with pytest.raises(MatSegInputError, match="not available"):
        load_feature_scorer(str(folders["dinov2"]), device=f"cuda:{torch.cuda.device_count()}")


def test_a_bfloat16_backbone_gets_its_input_in_its_dtype(image):
    """The input follows the model's dtype (a converted ConvNeXt raised 'Input type (float) and bias type
    (BFloat16) should be the same'); the map stays float32."""
    from transformers import ConvNextBackbone, ConvNextConfig

    from matseg_hub.models.backbones import feature_scorer_from_model

    torch.manual_seed(9)
    backbone = ConvNextBackbone(ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]))
    full = feature_scorer_from_model(backbone, device="cpu")
    full.set_image(image)
    reference = full.descriptor_map()
    half = feature_scorer_from_model(backbone.to(torch.bfloat16), device="cpu")
    half.set_image(image)
    fmap = half.descriptor_map()
    assert fmap.dtype == np.float32 and fmap.shape == reference.shape
    assert np.abs(fmap - reference).max() <= 0.05 * np.abs(reference).max()


@pytest.mark.parametrize("content, message", [("{broken", "cannot read the image processor"),
                                              ('{"image_processor_type": "ViTImageProcessor", "image_mean": 5, '
                                               '"image_std": [0.5, 0.5]}', "image_mean / image_std")])
def test_a_broken_image_processor_is_a_typed_error_not_a_silent_fallback(folders, tmp_path, content, message):
    """A preprocessor_config.json that exists but cannot be used must not be taken for a missing one (that would
    normalise with ImageNet's mean/std behind the user's back)."""
    import shutil

    from matseg_hub.errors import MatSegFormatError

    folder = tmp_path / "broken_processor"
    shutil.copytree(folders["dinov2"], folder)
    (folder / "preprocessor_config.json").write_text(content)
    with pytest.raises(MatSegFormatError, match=message) as info:
        load_feature_scorer(str(folder), device="cpu")
    assert "\n" not in str(info.value) and "preprocessor_config.json" in str(info.value)


def test_a_file_given_as_the_model_folder_is_named_as_a_file(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(MatSegInputError, match="is a file, not a folder"):
        load_feature_scorer(str(tmp_path / "weights.bin"))
