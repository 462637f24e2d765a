"""Inference helpers: descriptor_map() and MatSegPredictor on a constructed descriptor map with known regions,
and on a tiny random model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from matseg_hub.errors import MatSegInputError
from matseg_hub.models.inference import MatSegPredictor, descriptor_map
from matseg_hub.models.matseg import MatSegConfig, MatSegImageProcessor, MatSegModel


@pytest.fixture(scope="module")
def model() -> MatSegModel:
    torch.manual_seed(0)
    config = MatSegConfig.from_convnext_size(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], descriptor_dim=16)
    return MatSegModel(config).eval()


@pytest.fixture
def two_regions():
    """A 40x60 descriptor map: left half material A, right half material B (orthogonal), plus noise.

    Returns (descriptors float32 [40, 60, 8], labels int64 [40, 60])."""
    rng = np.random.default_rng(0)
    a = np.zeros(8, np.float32)
    a[0] = 1
    b = np.zeros(8, np.float32)
    b[1] = 1
    labels = np.zeros((40, 60), np.int64)
    labels[:, 30:] = 1
    desc = np.where(labels[..., None] == 0, a, b) * rng.uniform(1, 3, (40, 60, 1))  # scale does not matter
    desc = desc + rng.normal(0, 0.02, desc.shape)
    return desc.astype(np.float32), labels


def test_descriptor_map_matches_model_output(model):
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    got = descriptor_map(model, image)
    assert got.shape == (50, 70, 16) and got.dtype == np.float32
    processor = MatSegImageProcessor()
    inputs = processor(image)
    with torch.no_grad():
        low = model(inputs["pixel_values"]).descriptor_map
    full = torch.nn.functional.interpolate(low, size=(64, 96), mode="bilinear", align_corners=False)[0, :, :50, :70]
    assert np.allclose(got, full.permute(1, 2, 0).numpy(), atol=1e-6)
    # reference evaluation setting: image fed as is, map upsampled straight to the image size
    ref = descriptor_map(model, image, MatSegImageProcessor.reference_evaluation())
    assert ref.shape == (50, 70, 16)


def test_predictor_caches_and_answers(model):
    image = np.random.default_rng(2).integers(0, 256, (45, 66, 3), dtype=np.uint8)
    predictor = MatSegPredictor(model)
    assert not predictor.is_image_set
    predictor.set_image(image)
    assert predictor.image_size == (45, 66)
    raw = predictor.descriptor_map()
    assert np.allclose(raw, descriptor_map(model, image), atol=1e-6)
    unit = predictor.descriptor_map(normalized=True)
    assert np.allclose(np.linalg.norm(unit, axis=-1), 1, atol=1e-4)
    sim = predictor.similarity_map([[10, 20]])
    assert sim.shape == (45, 66) and sim.dtype == np.float32
    assert sim.max() <= 1 + 1e-5 and sim.min() >= -1 - 1e-5
    predictor.reset_image()
    with pytest.raises(MatSegInputError, match="set_image"):
        predictor.similarity_map([[10, 20]])


def test_similarity_mask_segment_on_known_regions(model, two_regions):
    desc, labels = two_regions
    predictor = MatSegPredictor(model)
    predictor.set_descriptor_map(desc)
    sim = predictor.similarity_map([[5, 5]], radius=3)
    assert sim[labels == 0].min() > 0.95 and sim[labels == 1].max() < 0.3
    mask = predictor.mask([[50, 30, 4]], threshold=0.9)
    assert mask.dtype == np.bool_ and np.array_equal(mask, labels == 1)
    # several points for one material, and a list of materials -> argmax segmentation
    seg, sims = predictor.segment([[[3, 3], [20, 35]], [[45, 10], [55, 38, 0]]], radius=2, return_similarity=True)
    assert seg.dtype == np.int64 and np.array_equal(seg, labels)
    assert sims.shape == (2, 40, 60)
    # pixels matching no material well enough are -1
    seg = predictor.segment([[[3, 3]]], min_similarity=0.5)
    assert set(np.unique(seg)) == {-1, 0} and np.array_equal(seg == 0, labels == 0)


def test_point_descriptor_follows_the_reference_disc_rule(model, two_regions):
    desc, _ = two_regions
    predictor = MatSegPredictor(model)
    predictor.set_descriptor_map(desc)
    x, y, r = 28, 10, 4  # disc straddling the boundary
    disc = cv2.circle(np.zeros(desc.shape[:2], np.uint8), (x, y), r, 1, thickness=-1).astype(bool)
    unit = desc / np.linalg.norm(desc, axis=-1, keepdims=True)
    expected = unit[disc].sum(0)
    expected /= np.linalg.norm(expected)
    got = predictor.material_descriptor([[x, y, r]]).numpy()
    assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose(predictor.similarity_map([[x, y]], radius=r), unit @ expected, atol=1e-5)
    # a disc at the border is clipped to the image
    corner = predictor.material_descriptor([[0, 0, 6]]).numpy()
    assert np.isfinite(corner).all()


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((20, 20), np.uint8), "\\[H, W, 3\\]"),
        (np.zeros((20, 20, 4), np.uint8), "\\[H, W, 3\\]"),
        (np.zeros((20, 20, 3), np.float32), "uint8"),
        (torch.zeros(20, 20, 3, dtype=torch.uint8), "numpy array"),
    ],
)
def test_bad_images(model, image, message):
    with pytest.raises(MatSegInputError, match=message):
        descriptor_map(model, image)
    with pytest.raises(MatSegInputError, match=message):
        MatSegPredictor(model).set_image(image)


def test_bad_points(model, two_regions):
    predictor = MatSegPredictor(model)
    predictor.set_descriptor_map(two_regions[0])
    with pytest.raises(MatSegInputError, match="outside"):
        predictor.similarity_map([[60, 5]])
    with pytest.raises(MatSegInputError, match="shape"):
        predictor.similarity_map([[1, 2, 3, 4]])
    with pytest.raises(MatSegInputError, match="shape"):
        predictor.similarity_map([])
    with pytest.raises(MatSegInputError, match="radius"):
        predictor.similarity_map([[5, 5, -1]])
    with pytest.raises(MatSegInputError, match="empty"):
        predictor.segment([])
    with pytest.raises(MatSegInputError, match="CUDA"):
        MatSegPredictor(model, half=True) if not torch.cuda.is_available() else (_ for _ in ()).throw(
            MatSegInputError("CUDA present: nothing to check"))


def test_load_descriptor_fn(model, tmp_path):
    from matseg_hub.models.inference import load_descriptor_fn

    model.save_pretrained(tmp_path / "m")
    MatSegImageProcessor(size_mode="resize").save_pretrained(tmp_path / "m")
    image = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    fn = load_descriptor_fn(str(tmp_path / "m"), device="cpu")
    assert np.allclose(fn(image), descriptor_map(model, image, MatSegImageProcessor(size_mode="resize")), atol=1e-6)
    ref = load_descriptor_fn(str(tmp_path / "m"), device="cpu", bgr=True)
    assert np.allclose(ref(image), descriptor_map(model, image, MatSegImageProcessor.reference_evaluation()), atol=1e-6)
    padded = load_descriptor_fn(str(tmp_path / "m"), device="cpu", size_mode="pad")
    assert padded(image).shape == (40, 50, 16)
    with pytest.raises(MatSegInputError, match="cannot load"):
        load_descriptor_fn(str(tmp_path / "missing"))


def test_model_scored_by_the_benchmark_evaluator(model, tmp_path):
    """The lead's ``matseg evaluate --model DIR`` path: built-in sample photo, tiny random model."""
    evaluation = pytest.importorskip("matseg_hub.benchmark.evaluation")
    model.save_pretrained(tmp_path / "m")
    result = evaluation.evaluate_benchmark(None, model=str(tmp_path / "m"), max_size=128, device="cpu")
    assert result["model"] == str(tmp_path / "m")
    assert 0.0 <= result["mean"]["point_triplet"] <= 1.0


def test_demo_helpers(model, two_regions):
    from matseg_hub.cli import demo

    image = np.random.default_rng(5).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert demo.shrink_image(np.zeros((1400, 700, 3), np.uint8), 700).shape == (700, 350, 3)
    assert demo.shrink_image(image, 700) is image
    heat = demo.similarity_heatmap(np.linspace(-1, 1, 40 * 60, dtype=np.float32).reshape(40, 60))
    assert heat.shape == (40, 60, 3) and heat.dtype == np.uint8
    predictor = MatSegPredictor(model)
    predictor.set_descriptor_map(two_regions[0])
    heat, overlay, caption = demo.click_result(predictor, image, 5, 5, 3, 0.9)
    assert heat.shape == overlay.shape == (40, 60, 3) and "50.0%" in caption
    assert not np.array_equal(overlay[:, :30], image[:, :30]) and np.array_equal(overlay[:, 33:], image[:, 33:])


def test_demo_command_is_registered_and_needs_gradio():
    from matseg_hub.cli import build_parser
    from matseg_hub.cli import demo
    from matseg_hub.errors import MissingDependencyError

    args = build_parser().parse_args(["demo", "--model", "some/model"])
    assert args.model == "some/model" and args.threshold == 0.9
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        with pytest.raises(MissingDependencyError, match="matseg-hub\\[demo\\]"):
            demo.build_demo(None)


def test_demo_app_upload_and_click(model):
    """With gradio installed (extra "demo"): the app's upload and click handlers, without serving."""
    gr = pytest.importorskip("gradio")
    from matseg_hub.cli.demo import build_demo

    demo = build_demo(MatSegPredictor(model), max_size=64)
    handlers = {f.name: f.fn for f in demo.fns.values()}
    image = np.random.default_rng(6).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    shown, heat, overlay, caption = handlers["on_upload"](image)
    assert shown.shape == (42, 64, 3) and heat is None and "click" in caption
    heat, overlay, caption = handlers["on_click"](shown, 5, 0.9, gr.SelectData(target=None, data={"index": [10, 20], "value": None}))
    assert heat.shape == overlay.shape == (42, 64, 3) and caption.startswith("point (10, 20)")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_model_gives_the_float32_similarities(model, dtype):
    """What ``half=True`` does on a GPU (the model in float16, inputs cast to it, the cache in its dtype), run on
    CPU with a model cast by hand: similarities within 1e-2 of float32, returned as float32."""
    import copy

    image = (np.random.default_rng(5).random((70, 90, 3)) * 255).astype(np.uint8)
    full = MatSegPredictor(model)
    full.set_image(image)
    low = MatSegPredictor(copy.deepcopy(model).to(dtype))
    low.set_image(image)
    assert low._features.dtype == dtype
    for point in ([[30, 20]], [[80, 60], [5, 5]]):
        reference, reduced = full.similarity_map(point), low.similarity_map(point)
        assert reduced.dtype == np.float32 and reduced.shape == (70, 90)
        assert np.abs(reduced - reference).max() < 1e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="half=True runs on CUDA only")
def test_half_predictor_leaves_the_callers_model_alone(model):
    """half=True used to call model.half() on the caller's model (in place)."""
    image = (np.random.default_rng(5).random((70, 90, 3)) * 255).astype(np.uint8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    low = MatSegPredictor(model, half=True, device="cuda")
    low.set_image(image)
    assert next(low.model.parameters()).dtype == torch.float16 and low._features.dtype == torch.float16
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    full = MatSegPredictor(model)
    full.set_image(image)
    assert np.abs(low.similarity_map([[30, 20]]) - full.similarity_map([[30, 20]])).max() < 1e-2


def test_refused_half_predictor_leaves_the_model_alone(model):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: half=True is allowed")
    with pytest.raises(MatSegInputError, match="CUDA"):
        MatSegPredictor(model, half=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
