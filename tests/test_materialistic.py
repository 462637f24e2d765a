"""Materialistic (``matseg_hub.models.materialistic``): the model, its scorer, the converter of the authors'
checkpoint, and ``materialistic:`` model specs in ``evaluate``. Tiny configs only (ViT hidden 32, 4 layers)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.models.materialistic import (MaterialisticConfig, MaterialisticModel, MaterialisticScorer,
                                             dino_vit_config, load_materialistic_scorer, preprocess_image)
from matseg_hub.models.materialistic.convert import convert_authors_state_dict, strip_prefixes
from matseg_hub.models.materialistic.scorer import scale_points
from matseg_hub.models.scorers import Prompt, resolve_scorer

VIT = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32)
C = 16  # reassemble / fusion width
HEADS = 4


def tiny_config(**kwargs):
    params = dict(backbone_config=dino_vit_config(**VIT), backbone_out_indices=(1, 2, 3, 4), reassemble_hidden_size=C,
                  fusion_hidden_size=C, num_attention_heads=HEADS, head_hidden_sizes=(16, 8, 8), image_size=48)
    params.update(kwargs)
    return MaterialisticConfig(**params)


def randomize(model, seed=0):
    """Every weight random (biases and norms too, weights ~ 1/sqrt(fan-in)), so that a wrong mapping or a wrong
    formula shows while the logits stay in the sigmoid's working range."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * noise)
            elif p.ndim == 1 or (p.ndim == 3 and p.shape[1] == 1):  # biases, CLS token
                p.copy_(0.2 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize(MaterialisticModel(tiny_config()))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("materialistic") / "tiny-materialistic"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    img = np.zeros((44, 60, 3), dtype=np.uint8)
    img[:, :30] = (200, 40, 40)
    img[:, 30:] = (30, 60, 190)
    return np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------------
def test_output_has_the_input_size_is_a_probability_and_depends_on_the_click(model):
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x, torch.tensor([[3, 5], [50, 33]]))
    assert out.score_map.shape == (2, 1, 40, 56) and out.logits.shape == (2, 1, 40, 56)
    assert float(out.score_map.min()) >= 0.0 and float(out.score_map.max()) <= 1.0
    assert torch.allclose(out.score_map, torch.sigmoid(out.logits))
    with torch.no_grad():
        a = model(x[:1], [[3, 5]]).score_map
        b = model(x[:1], [[50, 33]]).score_map
        c = model(x[:1], [[4, 5]]).score_map  # same patch, other sub-patch offset
    assert float((a - b).abs().max()) > 1e-3
    assert float((a - c).abs().max()) > 1e-5
    # one image, several clicks == one call per click; batch item 0 of the batched call too
    with torch.no_grad():
        both = model(x[:1], [[3, 5], [50, 33]]).score_map
    assert torch.allclose(both[0], a[0], atol=1e-5) and torch.allclose(both[1], b[0], atol=1e-5)
    assert torch.allclose(out.score_map[0], a[0], atol=1e-5)


def test_dino_position_interpolation_is_used_for_other_sizes(model):
    emb = model.backbone.embeddings
    tokens = torch.zeros(1, 1 + 5 * 7, 32)
    pos = emb.interpolate_pos_encoding(tokens, 40, 56)
    side = 4
    grid = emb.position_embeddings[:, 1:].reshape(1, side, side, 32).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, scale_factor=(5.1 / side, 7.1 / side), mode="bicubic")
    assert pos.shape == (1, 36, 32)
    assert torch.allclose(pos[0, 1:], expected.permute(0, 2, 3, 1).reshape(-1, 32))
    hf_style = torch.nn.functional.interpolate(grid, size=(5, 7), mode="bicubic", align_corners=False)
    assert not torch.allclose(pos[0, 1:], hf_style.permute(0, 2, 3, 1).reshape(-1, 32))


def test_bad_inputs_are_typed_errors(model):
    with pytest.raises(MatSegInputError, match="multiples of the patch size"):
        model(torch.zeros(1, 3, 41, 56), [[0, 0]])
    with pytest.raises(MatSegInputError, match="outside"):
        model(torch.zeros(1, 3, 40, 56), [[56, 0]])
    with pytest.raises(MatSegInputError, match=r"\[P, 2\]"):
        model(torch.zeros(1, 3, 40, 56), [[1, 2, 3]])
    with pytest.raises(MatSegInputError, match="one point per image"):
        model(torch.zeros(2, 3, 40, 56), [[1, 2], [3, 4], [5, 6]])
    with pytest.raises(MatSegInputError, match="backbone_out_indices"):
        tiny_config(backbone_out_indices=(1, 2, 9, 4))
    with pytest.raises(MatSegInputError, match="resize_mode"):
        tiny_config(resize_mode="crop")


def test_save_and_load_round_trip(model, model_dir):
    from transformers import AutoModel

    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "materialistic" and config["backbone_config"]["patch_size"] == 8
    loaded = MaterialisticModel.from_pretrained(model_dir).eval()
    assert loaded.config.backbone_out_indices == [1, 2, 3, 4] and loaded.config.image_size == 48
    auto = AutoModel.from_pretrained(model_dir).eval()
    assert isinstance(auto, MaterialisticModel)
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = model(x, [[10, 20]]).score_map
        assert torch.equal(loaded(x, [[10, 20]]).score_map, ref)
        assert torch.equal(auto(x, [[10, 20]]).score_map, ref)


# ----------------------------------------------------------------------------------------------------------------
# scorer
# ----------------------------------------------------------------------------------------------------------------
def test_scorer_batched_maps_equal_one_by_one_and_match_the_model(model, image):
    scorer = MaterialisticScorer(model, device="cpu", prompt_batch_size=2)
    scorer.set_image(image)
    prompts = [Prompt.of([[5, 5, 3]]), Prompt.of([[55, 40, 2]]), Prompt.of([[30, 22, 4]]), Prompt.of([[0, 43, 1]]),
               Prompt.of([[59, 0, 1]])]
    maps = scorer.similarity_maps(prompts)
    assert maps.shape == (5, 44, 60) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    single = np.concatenate([scorer.similarity_maps([p]) for p in prompts])
    np.testing.assert_allclose(maps, single, atol=1e-5)
    assert np.abs(maps[0] - maps[1]).max() > 1e-3
    # the scorer's map is the model's map of the resized image at the mapped click, resized back
    pixel_values = preprocess_image(image, model.config)
    assert pixel_values.shape == (1, 3, 48, 64)  # shortest edge 48, sides multiples of 8
    click = scale_points(np.array([[55, 40]]), (44, 60), (48, 64))
    assert click.tolist() == [[59, 44]]
    with torch.no_grad():
        direct = model(pixel_values, torch.from_numpy(click)).score_map
    direct = torch.nn.functional.interpolate(direct, size=(44, 60), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(maps[1], direct[0, 0].numpy(), atol=1e-5)


def test_only_the_first_positive_point_is_the_click(model, image):
    scorer = MaterialisticScorer(model, device="cpu", prompt_points=4, negative_points=2)
    scorer.set_image(image)
    alone = scorer.similarity_maps([Prompt.of([[12, 30, 3]])])
    more = scorer.similarity_maps([Prompt.of([[12, 30, 3], [50, 5, 3], [40, 40, 2]], [[2, 2, 1]])])
    np.testing.assert_array_equal(alone, more)
    assert "first positive point" in scorer.describe()["protocol"]


def test_resize_modes(model, image):
    from matseg_hub.models.materialistic import model_input_size

    assert model_input_size(44, 60, model.config) == (48, 64)
    assert model_input_size(44, 60, tiny_config(resize_mode="square")) == (48, 48)
    assert model_input_size(44, 60, tiny_config(resize_mode="multiple")) == (48, 64)
    assert model_input_size(700, 525, tiny_config(image_size=512)) \
        == (680, 512)
    scorer = MaterialisticScorer(MaterialisticModel(tiny_config(resize_mode="square")).eval(), device="cpu")
    scorer.set_image(image)
    assert scorer._embeddings.input_size == (48, 48)
    assert scorer.similarity_maps([Prompt.of([[3, 3, 1]])]).shape == (1, 44, 60)


def test_set_image_runs_the_backbone_once_per_image(model_dir, image, monkeypatch):
    scorer = load_materialistic_scorer(model_dir, device="cpu")
    calls = []
    original = scorer.model.backbone.forward
    monkeypatch.setattr(scorer.model.backbone, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    scorer.set_image(image)
    scorer.similarity_maps([Prompt.of([[i, i, 1]]) for i in range(0, 40, 5)])
    scorer.similarity_maps([Prompt.of([[3, 7, 1]])])
    assert len(calls) == 1
    with pytest.raises(MatSegInputError, match="outside"):
        scorer.similarity_maps([Prompt.of([[60, 3, 1]])])


# ----------------------------------------------------------------------------------------------------------------
# converter: the authors' key layout, written out by hand
# ----------------------------------------------------------------------------------------------------------------
def authors_state_dict(seed=0):
    """A state dict in the layout of the authors' ``Transformer`` (src/models/transformer.py) for the tiny sizes."""
    gen = torch.Generator().manual_seed(seed)
    d, hid, mlp = 32, C, 64
    shapes = {"dino_model.cls_token": (1, 1, d), "dino_model.pos_embed": (1, 17, d),
              "dino_model.patch_embed.proj.weight": (d, 3, 8, 8), "dino_model.patch_embed.proj.bias": (d,),
              "dino_model.norm.weight": (d,), "dino_model.norm.bias": (d,)}
    for i in range(4):
        b = f"dino_model.blocks.{i}."
        shapes.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.qkv.weight": (3 * d, d),
                       b + "attn.qkv.bias": (3 * d,), b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                       b + "norm2.weight": (d,), b + "norm2.bias": (d,), b + "mlp.fc1.weight": (mlp, d),
                       b + "mlp.fc1.bias": (mlp,), b + "mlp.fc2.weight": (d, mlp), b + "mlp.fc2.bias": (d,)})
    for n in range(1, 5):
        shapes.update({f"spatial_transform_{n}.0.project.0.weight": (d, 2 * d), f"spatial_transform_{n}.0.project.0.bias": (d,),
                       f"spatial_transform_{n}.2.weight": (hid, d, 1, 1), f"spatial_transform_{n}.2.bias": (hid,)})
        a = f"cross_attention_{n}."
        shapes.update({a + "LayerNorm.weight": (hid,), a + "LayerNorm.bias": (hid,),
                       a + "get_reference_embedding.reference_feature_extractor.0.weight": (2 * hid, hid + 2),
                       a + "get_reference_embedding.reference_feature_extractor.0.bias": (2 * hid,),
                       a + "get_reference_embedding.reference_feature_extractor.2.weight": (hid, 2 * hid),
                       a + "get_reference_embedding.reference_feature_extractor.2.bias": (hid,)})
        for part in ("query", "key", "value", "out"):
            shapes.update({a + f"{part}.weight": (hid, hid), a + f"{part}.bias": (hid,)})
        shapes.update({a + "out_norm.weight": (hid,), a + "out_norm.bias": (hid,)})
        f = f"fusion_{n}."
        for r in (1, 2):  # fusion_4.resConfUnit1 exists in the authors' model too (unused: no second input)
            shapes.update({f + f"resConfUnit{r}.conv1.weight": (hid, hid, 3, 3), f + f"resConfUnit{r}.conv1.bias": (hid,),
                           f + f"resConfUnit{r}.conv2.weight": (hid, hid, 3, 3)})
        shapes.update({f + "out_conv.weight": (hid, hid, 1, 1), f + "out_conv.bias": (hid,),
                       f + "layer_norm_1.weight": (hid,), f + "layer_norm_1.bias": (hid,)})
    for idx, (o, i) in zip((0, 2, 4, 6), ((16, hid), (8, 16), (8, 8), (1, 8))):
        shapes.update({f"out_conv.{idx}.weight": (o, i), f"out_conv.{idx}.bias": (o,)})
    return {k: torch.randn(s, generator=gen) * 0.3 for k, s in shapes.items()}


def assign_directly(sd, image_size=512):
    """Our model with the authors' tensors copied in by module attribute (independent of the converter's table)."""
    model = MaterialisticModel(tiny_config(image_size=image_size))
    with torch.no_grad():
        emb = model.backbone.embeddings
        emb.cls_token.copy_(sd["dino_model.cls_token"])
        emb.position_embeddings.copy_(sd["dino_model.pos_embed"])
        emb.patch_embeddings.projection.weight.copy_(sd["dino_model.patch_embed.proj.weight"])
        emb.patch_embeddings.projection.bias.copy_(sd["dino_model.patch_embed.proj.bias"])
        model.backbone.layernorm.weight.copy_(sd["dino_model.norm.weight"])
        model.backbone.layernorm.bias.copy_(sd["dino_model.norm.bias"])
        for i, layer in enumerate(model.backbone.layers):
            b = f"dino_model.blocks.{i}."
            q, k, v = sd[b + "attn.qkv.weight"].chunk(3)
            qb, kb, vb = sd[b + "attn.qkv.bias"].chunk(3)
            pairs = [(layer.layernorm_before, "norm1"), (layer.layernorm_after, "norm2"),
                     (layer.attention.o_proj, "attn.proj"), (layer.mlp.fc1, "mlp.fc1"), (layer.mlp.fc2, "mlp.fc2")]
            for module, name in pairs:
                module.weight.copy_(sd[b + name + ".weight"])
                module.bias.copy_(sd[b + name + ".bias"])
            for module, w, bias in ((layer.attention.q_proj, q, qb), (layer.attention.k_proj, k, kb),
                                    (layer.attention.v_proj, v, vb)):
                module.weight.copy_(w)
                module.bias.copy_(bias)
        for n in range(1, 5):
            r, a, f = model.reassemble[n - 1], model.cross_attention[n - 1], model.fusion[n - 1]
            pairs = [(r.readout_projection, f"spatial_transform_{n}.0.project.0"), (r.projection, f"spatial_transform_{n}.2"),
                     (a.input_norm, f"cross_attention_{n}.LayerNorm"), (a.query, f"cross_attention_{n}.query"),
                     (a.key, f"cross_attention_{n}.key"), (a.value, f"cross_attention_{n}.value"),
                     (a.output_projection, f"cross_attention_{n}.out"), (a.output_norm, f"cross_attention_{n}.out_norm"),
                     (a.reference_encoder.fc1, f"cross_attention_{n}.get_reference_embedding.reference_feature_extractor.0"),
                     (a.reference_encoder.fc2, f"cross_attention_{n}.get_reference_embedding.reference_feature_extractor.2"),
                     (f.projection, f"fusion_{n}.out_conv"),
                     (f.residual_layer2.convolution1, f"fusion_{n}.resConfUnit2.conv1")]
            if n < 4:
                pairs.append((f.residual_layer1.convolution1, f"fusion_{n}.resConfUnit1.conv1"))
                f.residual_layer1.convolution2.weight.copy_(sd[f"fusion_{n}.resConfUnit1.conv2.weight"])
            for module, name in pairs:
                module.weight.copy_(sd[name + ".weight"])
                module.bias.copy_(sd[name + ".bias"])
            f.residual_layer2.convolution2.weight.copy_(sd[f"fusion_{n}.resConfUnit2.conv2.weight"])
        for i, layer in enumerate(model.head.layers):
            layer.weight.copy_(sd[f"out_conv.{2 * i}.weight"])
            layer.bias.copy_(sd[f"out_conv.{2 * i}.bias"])
    return model.eval()


EXPECTED_DROPPED = sorted([f"fusion_{n}.layer_norm_1.{p}" for n in range(1, 5) for p in ("weight", "bias")]
                          + ["fusion_4.resConfUnit1.conv1.weight", "fusion_4.resConfUnit1.conv1.bias",
                             "fusion_4.resConfUnit1.conv2.weight"])


@pytest.mark.parametrize("wrap", ["plain", "lightning", "dataparallel"])
def test_converter_maps_every_authors_key(wrap):
    sd = authors_state_dict()
    given = {"plain": sd, "lightning": {"state_dict": {"net." + k: v for k, v in sd.items()}, "epoch": 3},
             "dataparallel": {"module." + k: v for k, v in sd.items()}}[wrap]
    assert set(strip_prefixes(given)) == set(sd)
    converted = convert_authors_state_dict(given, vit_num_attention_heads=2, num_attention_heads=HEADS,
                                           backbone_out_indices=(1, 2, 3, 4), image_size=512)
    assert converted.conversion_dropped_keys == EXPECTED_DROPPED
    cfg = converted.config
    assert (cfg.backbone_config.hidden_size, cfg.backbone_config.num_hidden_layers, cfg.backbone_config.patch_size,
            cfg.backbone_config.image_size, cfg.backbone_config.intermediate_size) == (32, 4, 8, 32, 64)
    assert (cfg.reassemble_hidden_size, cfg.fusion_hidden_size, cfg.head_hidden_sizes) == (C, C, [16, 8, 8])
    direct = assign_directly(sd)
    mine, theirs = converted.state_dict(), direct.state_dict()
    assert set(mine) == set(theirs)
    for key in theirs:
        assert torch.equal(mine[key], theirs[key]), key
    # every authors' tensor is somewhere in the model, unless dropped as unused
    values = list(mine.values())
    for key, value in sd.items():
        if key in EXPECTED_DROPPED:
            continue
        if key.endswith("attn.qkv.weight") or key.endswith("attn.qkv.bias"):
            value = value.chunk(3)[0]
        assert any(v.shape == value.shape and torch.equal(v, value) for v in values), key
    x = torch.randn(1, 3, 40, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(converted(x, [[7, 31]]).score_map, direct(x, [[7, 31]]).score_map)


def test_converter_rejects_unknown_missing_and_misshaped_keys():
    sd = authors_state_dict()
    bad = dict(sd, **{"cross_attention_1.extra.weight": torch.zeros(3)})
    with pytest.raises(MatSegFormatError, match="cross_attention_1.extra.weight"):
        convert_authors_state_dict(bad, vit_num_attention_heads=2, num_attention_heads=HEADS,
                                   backbone_out_indices=(1, 2, 3, 4))
    missing = {k: v for k, v in sd.items() if k != "fusion_2.out_conv.bias"}
    with pytest.raises(MatSegFormatError, match="fusion.1.projection.bias"):
        convert_authors_state_dict(missing, vit_num_attention_heads=2, num_attention_heads=HEADS,
                                   backbone_out_indices=(1, 2, 3, 4))
    shaped = dict(sd, **{"out_conv.6.bias": torch.zeros(2)})
    with pytest.raises(MatSegFormatError, match="head.layers.3.bias"):
        convert_authors_state_dict(shaped, vit_num_attention_heads=2, num_attention_heads=HEADS,
                                   backbone_out_indices=(1, 2, 3, 4))
    with pytest.raises(MatSegFormatError, match="dino_model.pos_embed"):
        convert_authors_state_dict({"out_conv.0.weight": torch.zeros(1)})


def test_converter_cli_writes_a_loadable_folder(tmp_path, image):
    sd = authors_state_dict()
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    ckpt.parent.mkdir()
    torch.save({"state_dict": {"net." + k: v for k, v in sd.items()}}, ckpt)
    out = tmp_path / "converted"
    cmd = [sys.executable, "-m", "matseg_hub.models.materialistic.convert", str(ckpt.parent), "--output", str(out),
           "--vit-num-heads", "2", "--num-heads", str(HEADS), "--image-size", "48", "--backbone-out-indices", "1", "2", "3", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "11 unused keys dropped" in proc.stdout
    scorer = load_materialistic_scorer(out, device="cpu")
    assert scorer.config.image_size == 48 and scorer.config.num_attention_heads == HEADS
    assert (out / "README.md").is_file()
    # the converted folder gives the directly-assigned model's maps
    scorer.set_image(image)
    ref = MaterialisticScorer(assign_directly(sd, image_size=48), device="cpu")
    ref.set_image(image)
    prompts = [Prompt.of([[9, 9, 2]]), Prompt.of([[50, 30, 2]])]
    np.testing.assert_allclose(scorer.similarity_maps(prompts), ref.similarity_maps(prompts), atol=1e-6)
    # a file that is not a checkpoint: one line on stderr, exit 1
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    proc = subprocess.run(cmd[:3] + [str(tmp_path / "junk.ckpt"), "--output", str(tmp_path / "o2")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "junk.ckpt" in proc.stderr


# ----------------------------------------------------------------------------------------------------------------
# model specs and evaluate
# ----------------------------------------------------------------------------------------------------------------
def _check_numbers(result):
    numbers = [v for v in result["mean"].values() if isinstance(v, float)]
    assert numbers and all(0.0 <= v <= 1.0 for v in numbers), result["mean"]


def test_evaluate_builtin_sample(model_dir):
    from matseg_hub.benchmark.evaluation import evaluate_benchmark

    result = evaluate_benchmark(None, model=f"materialistic:{model_dir}", max_size=128, device="cpu",
                                show_progress=False)
    _check_numbers(result)
    assert result["scorer"]["kind"] == "promptable" and result["scorer"]["image_size"] == 48


def test_cli_evaluate(model_dir):
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", f"materialistic:{model_dir}",
                           "--max-size", "128", "--device", "cpu", "--prompt-points", "1", "4"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # one click per map: --prompt-points 1 4 scores it once, not once per k
    rows = [line for line in proc.stdout.splitlines() if line.startswith(f"materialistic:{model_dir} ")]
    assert len(rows) == 1 and "pt)" not in rows[0], proc.stdout
    numbers = [float(tok) for tok in rows[0].split() if tok.replace(".", "", 1).isdigit() and "." in tok]
    assert len(numbers) == 4 and all(0.0 <= v <= 1.0 for v in numbers), proc.stdout


def test_bad_specs_are_typed_one_line_errors(tmp_path):
    with pytest.raises(MatSegInputError, match="not found") as info:
        resolve_scorer("materialistic:/nope")
    assert "\n" not in str(info.value) and "/nope" in str(info.value)
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(**VIT)).save_pretrained(tmp_path / "vit")
    with pytest.raises(MatSegFormatError, match="'vit' model") as info:
        resolve_scorer(f"materialistic:{tmp_path / 'vit'}")
    assert "\n" not in str(info.value) and "model_type" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MatSegFormatError, match="config.json"):
        load_materialistic_scorer(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(MatSegFormatError, match="config.json"):
        load_materialistic_scorer(tmp_path / "bad")
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", "materialistic:/nope",
                           "--max-size", "128"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "/nope" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model",
                           f"materialistic:{tmp_path / 'vit'}", "--max-size", "128"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "model_type" in proc.stderr


@pytest.mark.parametrize("field, value", [("image_mean", 5), ("backbone_out_indices", 3), ("head_hidden_sizes", None),
                                          ("weights", None)])
def test_a_malformed_folder_is_a_typed_one_line_error(model_dir, tmp_path, field, value):
    """A config.json value of the wrong type or truncated weights: MatSegFormatError naming the folder, not a raw
    TypeError / SafetensorError."""
    import json
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    if field == "weights":
        (folder / "model.safetensors").write_bytes(b"not safetensors")
    else:
        config = json.loads((folder / "config.json").read_text())
        config[field] = value
        (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MatSegFormatError, match="cannot load a Materialistic model") as info:
        load_materialistic_scorer(folder, device="cpu")
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_an_unusable_device_is_a_typed_error(model_dir):
    with pytest.raises(MatSegInputError, match="unknown torch device 'gpu'"):
        load_materialistic_scorer(model_dir, device="gpu")
    with pytest.raises(MatSegInputError, match="not available"):
        load_materialistic_scorer(model_dir, device=f"cuda:{torch.cuda.device_count()}")


def test_a_failed_set_image_leaves_no_stale_image(model_dir, image, monkeypatch):
    scorer = load_materialistic_scorer(model_dir, device="cpu")
    scorer.set_image(image)
    assert scorer.similarity_maps([Prompt.of([[3, 3, 1]])]).shape == (1, 44, 60)

    def out_of_memory(pixel_values):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(scorer.model, "get_image_embeddings", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        scorer.set_image(image[:20])
    with pytest.raises(MatSegInputError, match="set_image"):
        scorer.similarity_maps([Prompt.of([[3, 3, 1]])])
