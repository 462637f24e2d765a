"""models.sam: SAM as a promptable scorer, on a tiny random SamModel saved with save_pretrained (no download)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from matseg_hub.errors import MatSegInputError  # noqa: E402
from matseg_hub.models.sam import SamScorer, load_sam_scorer  # noqa: E402
from matseg_hub.models.scorers import Prompt, anchor_prompts, point_similarities, resolve_scorer  # noqa: E402

INPUT_SIZE = 64  # the tiny model's square input (SAM's 1024)


def tiny_sam(seed: int = 0):
    """A tiny SamModel (sizes in the spirit of transformers' own SAM tests) with weights drawn at a useful scale
    (SAM's default init gives the vision encoder ~1e-10 weights, hence near-constant masks), and its processor."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=INPUT_SIZE,
                           patch_size=8, window_size=4, global_attn_indexes=[1], output_channels=32, num_pos_feats=16,
                           mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=32, image_size=INPUT_SIZE, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32))
    model = SamModel(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_norm_weight = ("norm" in name) and name.endswith("weight")
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2 + (1.0 if is_norm_weight else 0.0))
    processor = SamProcessor(SamImageProcessor(size={"longest_edge": INPUT_SIZE},
                                               pad_size={"height": INPUT_SIZE, "width": INPUT_SIZE}))
    return model, processor


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sam")
    model, processor = tiny_sam()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    img = np.zeros((48, 60, 3), dtype=np.uint8)
    img[:, :30] = (200, 40, 40)
    img[:, 30:] = (30, 60, 190)
    return np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture()
def scorer(sam_dir, image):
    s = load_sam_scorer(sam_dir, device="cpu")
    s.set_image(image)
    return s


def mixed_prompts():
    return [Prompt.of([[10, 20, 3]]),
            Prompt.of([[10, 20, 3], [40, 30, 2]], [[5, 5, 1]]),
            Prompt.of([[50, 40, 3]]),
            Prompt.of([[1, 2, 3], [4, 5, 2]]),
            Prompt.of([[33, 11, 2]], [[3, 40, 2], [58, 2, 1]]),
            Prompt.of([[20, 30, 4], [22, 31, 1]], [[45, 10, 2]]),
            Prompt.of([[59, 47, 1]])]


# ----------------------------------------------------------------------------------------------------------------
def test_batched_maps_equal_one_call_per_prompt(sam_dir, image):
    s = load_sam_scorer(sam_dir, device="cpu", chunk_size=2)   # chunking inside a length group too
    s.set_image(image)
    prompts = mixed_prompts()
    batched = s.similarity_maps(prompts)
    single = s.per_prompt_similarity_maps(prompts)
    assert batched.shape == single.shape == (len(prompts),) + image.shape[:2]
    np.testing.assert_allclose(batched, single, atol=1e-6, rtol=0)
    # and the order is kept: prompt i's map is the map of prompt i decoded alone
    alone = s.similarity_maps([prompts[4]])
    np.testing.assert_allclose(batched[4], alone[0], atol=1e-6, rtol=0)


def test_padding_would_change_the_mask_so_prompts_are_grouped_by_length(sam_dir, image):
    """Why the scorer groups by length instead of padding with the pad label: a padded prompt is not the same
    prompt. If transformers ever makes the pad token inert this test says so (and padding could be used)."""
    s = load_sam_scorer(sam_dir, device="cpu")
    s.set_image(image)
    pts = torch.tensor(s.input_coordinates(np.array([[[10.0, 20.0]]])), dtype=torch.float32)[None]
    padded = torch.cat([pts, torch.full((1, 1, 1, 2), -10.0)], dim=2)
    with torch.no_grad():
        a = s.model(image_embeddings=s._embeddings, input_points=pts, input_labels=torch.tensor([[[1]]]),
                    multimask_output=False).pred_masks
        b = s.model(image_embeddings=s._embeddings, input_points=padded, input_labels=torch.tensor([[[1, -10]]]),
                    multimask_output=False).pred_masks
    assert float((a - b).abs().max()) > 1e-4


def test_maps_have_the_image_size_and_are_probabilities(scorer, image):
    maps = scorer.similarity_maps(mixed_prompts())
    assert maps.dtype == np.float32 and maps.shape == (7, 48, 60)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    assert float(maps.std(axis=(1, 2)).min()) > 1e-3               # not constant maps
    assert float(np.abs(maps[0] - maps[2]).max()) > 1e-3           # different prompts, different maps


def test_image_embedding_computed_once_per_image(sam_dir, image):
    s = load_sam_scorer(sam_dir, device="cpu")
    calls = []
    real = s.model.get_image_embeddings

    def counting(pixel_values, **kwargs):
        calls.append(tuple(pixel_values.shape))
        return real(pixel_values, **kwargs)

    s.model.get_image_embeddings = counting
    s.set_image(image)
    s.similarity_maps(mixed_prompts())
    s.similarity_maps(mixed_prompts()[:2])
    s.per_prompt_similarity_maps(mixed_prompts()[:3])
    assert calls == [(1, 3, INPUT_SIZE, INPUT_SIZE)]


def test_points_are_rescaled_like_the_processor(scorer, image):
    xy = [[10, 20], [40, 30], [59, 47], [0, 0]]
    inputs = scorer.processor(images=image, input_points=[[xy]], input_labels=[[[1, 1, 0, 1]]], return_tensors="pt")
    expected = inputs["input_points"][0, 0].numpy()
    np.testing.assert_allclose(scorer.input_coordinates(np.array(xy, dtype=np.float64)), expected, atol=1e-6)


def manual_map(model, processor, image, xy, labels, multimask):
    """The plain transformers pipeline: processor -> SamModel -> pick by IoU -> post_process_masks -> sigmoid."""
    inputs = processor(images=image, input_points=[[xy]], input_labels=[[labels]], return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"].float(),
                    input_labels=inputs["input_labels"], multimask_output=multimask)
    best = int(out.iou_scores[0, 0].argmax())
    masks = processor.post_process_masks(out.pred_masks[:, :, best:best + 1], inputs["original_sizes"],
                                         inputs["reshaped_input_sizes"], binarize=False)[0]
    return torch.sigmoid(masks[0, 0]).numpy(), best, out.iou_scores[0, 0].numpy()


def test_multimask_auto_picks_the_highest_iou_mask(scorer, image):
    for xy in ([17, 9], [45, 33], [5, 40]):
        want, best, ious = manual_map(scorer.model, scorer.processor, image, [xy], [1], multimask=True)
        assert ious.shape == (3,)
        got = scorer.similarity_maps([Prompt.of([xy + [2]])])[0]
        np.testing.assert_allclose(got, want, atol=1e-5)
        # the other two multimask outputs are different maps: the choice matters
        for other in {0, 1, 2} - {best}:
            inputs = scorer.processor(images=image, input_points=[[[xy]]], return_tensors="pt")
            with torch.no_grad():
                out = scorer.model(image_embeddings=scorer._embeddings, input_points=inputs["input_points"].float(),
                                   input_labels=torch.ones((1, 1, 1), dtype=torch.int64), multimask_output=True)
            up = scorer.processor.post_process_masks(out.pred_masks[:, :, other:other + 1], inputs["original_sizes"],
                                                     inputs["reshaped_input_sizes"], binarize=False)[0]
            assert float(np.abs(torch.sigmoid(up[0, 0]).numpy() - got).max()) > 1e-4


def test_multimask_auto_uses_the_single_mask_for_several_points(sam_dir, scorer, image):
    xy, labels = [[10, 20], [40, 30], [5, 5]], [1, 1, 0]
    want, _, ious = manual_map(scorer.model, scorer.processor, image, xy, labels, multimask=False)
    assert ious.shape == (1,)
    prompt = Prompt.of([[10, 20, 2], [40, 30, 2]], [[5, 5, 2]])
    np.testing.assert_allclose(scorer.similarity_maps([prompt])[0], want, atol=1e-5)
    forced = load_sam_scorer(sam_dir, device="cpu", multimask="always")
    forced.set_image(image)
    want_multi, _, _ = manual_map(scorer.model, scorer.processor, image, xy, labels, multimask=True)
    np.testing.assert_allclose(forced.similarity_maps([prompt])[0], want_multi, atol=1e-5)
    assert float(np.abs(want_multi - want).max()) > 1e-4
    never = load_sam_scorer(sam_dir, device="cpu", multimask="never")
    never.set_image(image)
    one, _, _ = manual_map(scorer.model, scorer.processor, image, [[17, 9]], [1], multimask=False)
    np.testing.assert_allclose(never.similarity_maps([Prompt.of([[17, 9, 2]])])[0], one, atol=1e-5)


def test_prompt_points_k_uses_all_k_points(sam_dir, image):
    s = resolve_scorer(f"sam:{sam_dir}", device="cpu", prompt_points=4)
    assert isinstance(s, SamScorer) and s.prompt_points == 4
    s.set_image(image)
    points = np.array([[5, 5, 2], [12, 30, 2], [20, 10, 2], [25, 40, 2], [40, 8, 2], [50, 30, 2], [55, 44, 2]])
    groups = np.array([0, 0, 0, 0, 1, 1, 1])
    prompts, exclude = anchor_prompts(points, groups, prompt_points=4, rng=np.random.default_rng(0))
    assert [p.positive.shape[0] for p in prompts] == [4, 4, 4, 4, 3, 3, 3]
    base = s.similarity_maps(prompts[:1])[0]
    for j in range(1, 4):   # move each non-anchor prompt point in turn: the map changes
        moved = prompts[0].positive.copy()
        moved[j, :2] = [58, 2]
        assert float(np.abs(s.similarity_maps([Prompt(moved)])[0] - base).max()) > 1e-4
    sims, excl = point_similarities(s, points, groups, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(excl, exclude)
    assert sims.shape == (7, 7) and np.all((sims >= 0) & (sims <= 1))


def test_describe_names_the_protocol(sam_dir):
    d = load_sam_scorer(sam_dir, device="cpu", prompt_points=2, negative_points=1, multimask="never").describe()
    assert d["kind"] == "promptable" and d["prompt_points"] == 2 and d["negative_points"] == 1
    assert d["multimask"] == "never" and d["model_type"] == "sam" and "disc" in d["protocol"]


# ----------------------------------------------------------------------------------------------------------------
def _evaluate(data, model, **kwargs):
    from matseg_hub.benchmark.evaluation import evaluate_benchmark

    return evaluate_benchmark(data, model=model, show_progress=False, **kwargs)


def _check_numbers(result):
    numbers = [v for k, v in result["mean"].items() if isinstance(v, float)]
    assert numbers, result["mean"]
    assert all(0.0 <= v <= 1.0 for v in numbers), result["mean"]


def test_evaluate_builtin_sample(sam_dir):
    one = _evaluate(None, f"sam:{sam_dir}", max_size=128)
    _check_numbers(one)
    assert one["scorer"]["kind"] == "promptable" and one["scorer"]["prompt_points"] == 1
    four = _evaluate(None, f"sam:{sam_dir}", max_size=128, prompt_points=4, multimask="never")
    _check_numbers(four)
    assert four["scorer"]["prompt_points"] == 4 and four["scorer"]["multimask"] == "never"
    assert four["mean"]["point_triplet"] != one["mean"]["point_triplet"]
    # a resolved Scorer object is scored as given
    obj = _evaluate(None, resolve_scorer(f"sam:{sam_dir}", device="cpu", prompt_points=4, multimask="never"),
                    max_size=128)
    assert obj["mean"] == four["mean"]


def test_evaluate_a_benchmark_folder_written_by_the_test(sam_dir, tmp_path):
    from PIL import Image

    from matseg_hub.benchmark.format import write_benchmark_item

    rng = np.random.default_rng(7)
    for k in range(2):
        img = np.zeros((90, 120, 3), dtype=np.uint8)
        img[:, :60] = (180, 60 + 40 * k, 40)
        img[:, 60:] = (40, 90, 170)
        img = np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        groups = {"1": [[10, 10, 4], [30, 50, 4], [50, 80, 3]], "2": [[70, 20, 4], [100, 60, 4], [90, 85, 3]],
                  "3": [[40, 30, 3], [45, 70, 3]]}
        write_benchmark_item(tmp_path / "bench", f"img{k}", buf.getvalue(), groups, relations="(1,3)\n",
                             image_ext=".png")
    result = _evaluate(tmp_path / "bench", f"sam:{sam_dir}", max_size=128)
    _check_numbers(result)
    assert sorted(result["images"]) == ["img0", "img1"]


def test_cli_evaluate_prints_a_table(sam_dir):
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", f"sam:{sam_dir}",
                           "--max-size", "128", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if "tiny-sam" in line]
    assert len(rows) == 1 and "(1 pt)" in rows[0], proc.stdout
    numbers = [float(tok) for tok in rows[0].split() if tok.replace(".", "", 1).isdigit() and "." in tok]
    assert len(numbers) == 4 and all(0.0 <= v <= 1.0 for v in numbers), proc.stdout
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", f"sam:{sam_dir}",
                           "--max-size", "128", "--device", "cpu", "--prompt-points", "1", "4", "--negative-points",
                           "1", "--multimask", "never"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if "tiny-sam" in line]
    assert len(rows) == 2 and "(1 pt, 1 neg)" in rows[0] and "(4 pt, 1 neg)" in rows[1], proc.stdout
    assert rows[0].split()[-4:] != rows[1].split()[-4:]


# ----------------------------------------------------------------------------------------------------------------
def test_missing_folder_is_a_typed_one_line_error(tmp_path):
    with pytest.raises(MatSegInputError, match="does not exist") as info:
        resolve_scorer(f"sam:{tmp_path / 'nope'}")
    assert "\n" not in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", "sam:/nope", "--max-size",
                           "128"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "/nope" in proc.stderr and "does not exist" in proc.stderr


def test_non_sam_folder_is_a_typed_error(tmp_path):
    from transformers import ConvNextConfig, ConvNextModel

    ConvNextModel(ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)).save_pretrained(
        tmp_path / "convnext")
    with pytest.raises(MatSegInputError, match="model_type 'convnext'"):
        load_sam_scorer(tmp_path / "convnext")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MatSegInputError, match="config.json"):
        load_sam_scorer(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(MatSegInputError, match="config.json"):
        load_sam_scorer(tmp_path / "bad")


def test_bad_options_are_typed_errors(sam_dir, scorer):
    with pytest.raises(MatSegInputError, match="multimask"):
        load_sam_scorer(sam_dir, multimask="sometimes")
    with pytest.raises(MatSegInputError, match="prompt-points"):
        load_sam_scorer(sam_dir, prompt_points=0)
    with pytest.raises(MatSegInputError, match="RGB uint8"):
        scorer.set_image(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(MatSegInputError, match="set_image"):
        load_sam_scorer(sam_dir, device="cpu").similarity_maps([Prompt.of([[1, 1, 1]])])
    with pytest.raises(MatSegInputError, match="Prompt"):
        scorer.similarity_maps([[[1, 1, 1]]])
    assert json.dumps(scorer.describe())   # reports can store it


# ----------------------------------------------------------------------------------------------------------------
# SAM 2: a tiny real Sam2Model. Sam2ImageProcessor needs torchvision (absent here), so without it the model path is
# tested with a stand-in processor doing what Sam2Processor does (square resize, ImageNet normalisation; masks
# bilinearly resized to the image); with torchvision the real Sam2Processor is used.
def tiny_sam2_model():
    from transformers import Sam2Config, Sam2Model

    config = Sam2Config(
        vision_config=dict(
            backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=12, num_attention_heads=1,
                                 image_size=[INPUT_SIZE, INPUT_SIZE], blocks_per_stage=[1, 1, 2, 1],
                                 embed_dim_per_stage=[12, 24, 48, 96], num_attention_heads_per_stage=[1, 1, 1, 1],
                                 window_size_per_stage=[8, 8, 8, 8], global_attention_blocks=[3],
                                 window_positional_embedding_background_size=[2, 2]),
            backbone_channel_list=[96, 48, 24, 12], backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
            fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=INPUT_SIZE, patch_size=16),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))
    model = Sam2Model(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_norm_weight = ("norm" in name) and name.endswith("weight")
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2 + (1.0 if is_norm_weight else 0.0))
    return model


class Sam2LikeProcessor:
    """What Sam2Processor does for one image (used only where torchvision is absent)."""

    target_size = INPUT_SIZE

    def __call__(self, images, return_tensors="pt"):
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(2, 0, 1)[None].float() / 255.0
        x = torch.nn.functional.interpolate(x, (INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
        return {"pixel_values": (x - mean) / std, "original_sizes": torch.tensor([images.shape[:2]])}

    def post_process_masks(self, masks, original_sizes, binarize=True, **_):
        return [torch.nn.functional.interpolate(m, tuple(s), mode="bilinear", align_corners=False)
                for m, s in zip(masks, original_sizes)]


def sam2_processor():
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return Sam2LikeProcessor()
    from transformers import Sam2ImageProcessor, Sam2Processor

    return Sam2Processor(Sam2ImageProcessor(size={"height": INPUT_SIZE, "width": INPUT_SIZE}))


def test_sam2_model_batched_equals_per_prompt(image):
    s = SamScorer(tiny_sam2_model(), sam2_processor(), name="sam2-tiny", chunk_size=3)
    assert s.model_type == "sam2"
    s.set_image(image)
    prompts = mixed_prompts()
    batched = s.similarity_maps(prompts)
    assert batched.shape == (len(prompts),) + image.shape[:2] and batched.dtype == np.float32
    assert float(batched.min()) >= 0.0 and float(batched.max()) <= 1.0
    assert float(batched.std(axis=(1, 2)).min()) > 1e-4
    np.testing.assert_allclose(batched, s.per_prompt_similarity_maps(prompts), atol=1e-6, rtol=0)
    np.testing.assert_allclose(s.input_coordinates(np.array([[30.0, 24.0]])), [[32.0, 32.0]])  # square input


def test_sam2_folder_without_torchvision_is_a_typed_error(tmp_path):
    import importlib.util

    from matseg_hub.errors import MissingDependencyError

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: SAM 2 folders load")
    tiny_sam2_model().save_pretrained(tmp_path / "sam2")
    with pytest.raises(MissingDependencyError, match="torchvision"):
        resolve_scorer(f"sam:{tmp_path / 'sam2'}")


def test_malformed_folders_and_devices_are_typed_one_line_errors(sam_dir, tmp_path):
    """A config.json that is not an object, truncated weights, an unusable device: MatSegInputError, not a raw
    AttributeError / SafetensorError / torch assertion."""
    import shutil

    listed = tmp_path / "listed"
    shutil.copytree(sam_dir, listed)
    (listed / "config.json").write_text("[1, 2]")
    with pytest.raises(MatSegInputError, match="model_type None") as info:
        load_sam_scorer(listed, device="cpu")
    assert "\n" not in str(info.value)
    truncated = tmp_path / "truncated"
    shutil.copytree(sam_dir, truncated)
    (truncated / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MatSegInputError, match="cannot load the SamModel weights") as info:
        load_sam_scorer(truncated, device="cpu")
    assert "\n" not in str(info.value) and str(truncated) in str(info.value)
    with pytest.raises(MatSegInputError, match="unknown torch device 'gpu'"):
        load_sam_scorer(sam_dir, device="gpu")
    with pytest.raises(MatSegInputError, match="not available"):
        load_sam_scorer(sam_dir, device=f"cuda:{torch.cuda.device_count()}")


def test_prompt_points_outside_the_image_and_a_failed_set_image(scorer, image, monkeypatch):
    """A prompt point outside the image is refused (SAM would silently extrapolate); a set_image whose model pass
    fails leaves no stale embedding of the previous image to answer the next prompts."""
    height, width = image.shape[:2]
    with pytest.raises(MatSegInputError, match="outside"):
        scorer.similarity_maps([Prompt.of([[width, 1, 1]])])
    with pytest.raises(MatSegInputError, match="outside"):
        scorer.similarity_maps([Prompt.of([[1, 1, 1]], [[1, height + 3, 1]])])
    assert scorer.similarity_maps([Prompt.of([[width - 1, height - 1, 1]])]).shape == (1, height, width)

    def out_of_memory(pixel_values):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(scorer.model, "get_image_embeddings", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        scorer.set_image(image[:20])
    with pytest.raises(MatSegInputError, match="set_image"):
        scorer.similarity_maps([Prompt.of([[1, 1, 1]])])
