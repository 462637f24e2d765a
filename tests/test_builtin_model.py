"""The built-in net ``matseg-tiny`` (``matseg_hub/resources/models/matseg-tiny/``, :mod:`matseg_hub.models.builtin`).

It must be a real learned net: it beats the colour baselines on generated scenes of a seed its recipe never used;
the name works wherever a model is taken (``matseg evaluate``, ``MatSegPredictor``, ``matseg demo``,
``AutoModel.from_pretrained(matseg_hub.builtin_model_dir())``); the folder round-trips through a (local) Hub; the
wheel carries it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import matseg_hub
from matseg_hub.benchmark.evaluation import evaluate_benchmark
from matseg_hub.errors import MatSegInputError
from matseg_hub.models.builtin import BUILTIN_MODELS, builtin_model_dir

REPO = Path(__file__).resolve().parents[1]
RECIPES = [REPO / "train" / "configs" / "matseg-tiny.yaml", REPO / "train" / "configs" / "matseg-tiny-finetune.yaml"]
FOLDER = REPO / "matseg_hub" / "resources" / "models" / "matseg-tiny"
FRESH_SEED = 31_337  # a scene stream the recipe neither trains nor selects on (checked below)
KEYS = ("point_triplet", "material_triplet", "point_top1", "material_top1")
ENV = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")


def _matseg(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matseg_hub", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV)


def _rows(stdout: str, names) -> dict:
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line.split()[:1] in [[n] for n in names]}


@pytest.fixture(scope="module")
def sample_scores():
    """The packaged net's numbers on the built-in photo (the reference every other path must reproduce)."""
    return evaluate_benchmark(None, "matseg-tiny", show_progress=False)["mean"]


def test_the_folder_is_small_float16_and_loads_as_float32():
    from safetensors import safe_open

    assert builtin_model_dir() == FOLDER.resolve() and matseg_hub.builtin_model_dir() == FOLDER.resolve()
    names = {p.name for p in FOLDER.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= names
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) <= 4 * 2**20
    with safe_open(str(FOLDER / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
    assert "torch.float16" in dtypes and "torch.float32" not in dtypes
    assert json.loads((FOLDER / "config.json").read_text())["dtype"] == "float32"
    card = (FOLDER / "README.md").read_text()
    for needed in ("seed", "steps", "wall time", "| test scenes | rgb |", "| built-in photo | matseg-tiny"):
        assert needed in card, needed


def test_unknown_builtin_name_is_a_typed_error():
    assert list(BUILTIN_MODELS) == ["matseg-tiny"]
    with pytest.raises(MatSegInputError, match="unknown built-in model 'nope'"):
        builtin_model_dir("nope")


def test_automodel_from_builtin_model_dir_in_a_fresh_interpreter():
    """``import matseg_hub`` + ``builtin_model_dir()`` registers the Auto classes: no other import needed."""
    code = """
import json, torch, matseg_hub
from transformers import AutoModel
model = AutoModel.from_pretrained(matseg_hub.builtin_model_dir()).eval()
x = torch.linspace(-2, 2, 3 * 64 * 64).reshape(1, 3, 64, 64)
with torch.no_grad():
    out = model(x).descriptor_map
print(json.dumps({"class": type(model).__name__, "dtype": str(next(model.parameters()).dtype),
                  "shape": list(out.shape), "sum": float(out.double().sum())}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["class"] == "MatSegModel" and got["dtype"] == "torch.float32"
    import torch

    from matseg_hub.models.matseg import MatSegModel

    model = MatSegModel.from_pretrained(FOLDER).eval()
    assert got["shape"] == [1, model.config.descriptor_dim, 16, 16]
    with torch.no_grad():
        expected = float(model(torch.linspace(-2, 2, 3 * 64 * 64).reshape(1, 3, 64, 64)).descriptor_map.double().sum())
    assert got["sum"] == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_beats_rgb_and_hsv_on_scenes_of_a_seed_the_recipe_never_used(tmp_path):
    from matseg_hub.training.scoring import write_scene_benchmark

    recipes = [yaml.safe_load(path.read_text()) for path in RECIPES]  # stage 1 and stage 2 of the shipped net
    used = {r["seed"] for r in recipes} | {r.get("eval_seed", 1_000_003) for r in recipes}
    assert FRESH_SEED not in used
    recipe = recipes[-1]
    data = write_scene_benchmark(tmp_path / "fresh", FRESH_SEED, 24, size=recipe["eval_scene_size"])
    assert len(list((data / "images").iterdir())) == 24
    means = {m: evaluate_benchmark(data, m, max_size=None, show_progress=False)["mean"]
             for m in ("rgb", "hsv", "matseg-tiny")}
    tiny = means["matseg-tiny"]["point_triplet"]
    assert tiny > means["rgb"]["point_triplet"] and tiny > means["hsv"]["point_triplet"], means
    assert means["matseg-tiny"]["num_scored_images"] == 24


def test_evaluate_without_arguments_prints_rgb_hsv_and_matseg_tiny(tmp_path, sample_scores):
    out = tmp_path / "results.json"
    proc = _matseg("evaluate", "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(proc.stdout, ("rgb", "hsv", "matseg-tiny"))
    assert list(rows) == ["rgb", "hsv", "matseg-tiny"], proc.stdout
    assert rows["matseg-tiny"][:3] == ["soft", "1", f"{sample_scores['point_triplet']:.5f}"]
    runs = {r["model"]: r for r in json.loads(out.read_text())["runs"]}
    assert list(runs) == ["rgb", "hsv", "matseg-tiny"]
    assert {k: runs["matseg-tiny"]["mean"][k] for k in KEYS} == pytest.approx({k: sample_scores[k] for k in KEYS},
                                                                                 abs=1e-12)
    # the card's table holds the same number for the shipped copy on the built-in photo
    card = (FOLDER / "README.md").read_text()
    assert f"| built-in photo | matseg-tiny (float16, shipped) | {sample_scores['point_triplet']:.4f} |" in card


def test_predictor_by_name_matches_the_model_loaded_from_the_folder():
    from matseg_hub.benchmark.format import builtin_benchmark_dir, read_benchmark, resize_for_evaluation
    from matseg_hub.models.inference import MatSegPredictor
    from matseg_hub.models.matseg import MatSegModel

    item = next(iter(read_benchmark(builtin_benchmark_dir())))
    points, point_groups = item.points()
    image, points, _ = resize_for_evaluation(item.image(), points, 700)
    by_name = MatSegPredictor("matseg-tiny", device="cpu")
    by_model = MatSegPredictor(MatSegModel.from_pretrained(builtin_model_dir()), device="cpu")
    by_name.set_image(image)
    by_model.set_image(image)
    x, y, r = (int(v) for v in points[0])
    a, b = by_name.similarity_map([[x, y, r]]), by_model.similarity_map([[x, y, r]])
    assert a.shape == image.shape[:2] and np.array_equal(a, b)
    at_points = a[points[:, 1].astype(int), points[:, 0].astype(int)]
    same = point_groups == point_groups[0]
    assert at_points[same].mean() > at_points[~same].mean() + 0.1  # the learned net tells the two states apart
    assert a[y, x] > 0.9  # the clicked material is similar to itself


@pytest.mark.hub
def test_hub_round_trip_gives_the_packaged_scores(local_hub, tmp_path, sample_scores):  # noqa: F811
    from hubserver import run_client

    folder = tmp_path / "matseg-tiny"
    shutil.copytree(FOLDER, folder)  # publish a copy: the package's folder is never written to
    sha = local_hub.publish(folder, "testns/matseg-tiny", "model", message="matseg-tiny")
    result = run_client("""
import json, torch, huggingface_hub
import matseg_hub.models.matseg  # registers the model type with AutoModel
from transformers import AutoModel
model = AutoModel.from_pretrained("testns/matseg-tiny").eval()
x = torch.linspace(-2, 2, 3 * 64 * 64).reshape(1, 3, 64, 64)
with torch.no_grad():
    out = model(x).descriptor_map
print(json.dumps({"class": type(model).__name__, "sum": float(out.double().sum()),
                  "sha": huggingface_hub.HfApi().model_info("testns/matseg-tiny").sha}))
""", local_hub)
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["class"] == "MatSegModel" and got["sha"] == sha
    import torch

    from matseg_hub.models.matseg import MatSegModel

    with torch.no_grad():
        expected = MatSegModel.from_pretrained(FOLDER).eval()(torch.linspace(-2, 2, 3 * 64 * 64).reshape(
            1, 3, 64, 64)).descriptor_map.double().sum()
    assert got["sum"] == pytest.approx(float(expected), rel=1e-6, abs=1e-6)

    out = tmp_path / "hub.json"
    proc = _matseg("evaluate", "--model", "testns/matseg-tiny", "--output", out,
                   env=dict(local_hub.env(), MATSEG_DISABLE_PROGRESS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:] + local_hub.log_tail()
    mean = json.loads(out.read_text())["mean"]
    assert {k: mean[k] for k in KEYS} == pytest.approx({k: sample_scores[k] for k in KEYS}, abs=1e-12)


def test_the_wheel_carries_the_model_and_stays_small(tmp_path):
    """``pip wheel`` of a copy of the project (no build isolation: nothing is downloaded)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "matseg_hub", src / "matseg_hub", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = list((tmp_path / "dist").glob("matseg_hub-*.whl"))
    assert len(wheels) == 1 and wheels[0].stat().st_size < 10 * 2**20
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        inside = "matseg_hub/resources/models/matseg-tiny/"
        for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
            assert inside + name in names, name
        assert wheel.read(inside + "model.safetensors") == (FOLDER / "model.safetensors").read_bytes()


def test_demo_without_arguments_opens_the_builtin_photo_with_matseg_tiny(monkeypatch):
    """``matseg demo`` (no arguments): the run wires matseg-tiny and the built-in photo into the app (Gradio's
    ``launch`` is replaced; tests/test_demo_browser.py drives a served app in Chromium)."""
    gr = pytest.importorskip("gradio")
    from matseg_hub.cli import build_parser
    from matseg_hub.cli import demo as demo_cli

    args = build_parser().parse_args(["demo"])
    assert args.model == "matseg-tiny" and args.image is None
    seen = {}
    real_build = demo_cli.build_demo

    def build(predictor, **kwargs):
        seen["predictor"], seen["image"] = predictor, kwargs.get("image")
        return real_build(predictor, **kwargs)

    monkeypatch.setattr(demo_cli, "build_demo", build)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.setdefault("launched", kw))
    assert demo_cli.run(args) == 0
    photo = demo_cli.initial_image(None, 700)
    assert seen["launched"]["server_name"] == "127.0.0.1"
    assert seen["image"] is not None and np.array_equal(seen["image"], photo) and max(photo.shape[:2]) <= 700
    predictor = seen["predictor"]
    assert predictor.is_image_set and predictor.image_size == photo.shape[:2]
    assert Path(predictor.model.name_or_path).resolve() == builtin_model_dir()
    assert demo_cli.initial_image("none", 700) is None
    with pytest.raises(MatSegInputError, match="--image"):
        demo_cli.initial_image("/nonexistent/photo.jpg", 700)
