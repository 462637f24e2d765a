"""Benchmark scoring: baselines reproduce the reference's numbers; every data source; the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from matseg_hub.benchmark.dataset import build_benchmark_dataset
from matseg_hub.errors import MatSegInputError
from matseg_hub.benchmark.evaluation import evaluate_benchmark, hsv_descriptors, rgb_descriptors
from matseg_hub.testing import make_benchmark_folder

KEYS = ("point_triplet", "material_triplet", "point_top1", "material_top1")


def _means(result):
    return tuple(round(result["mean"][k], 5) for k in KEYS)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_reference_numbers_on_shared_sample(shared_data, mode):
    root = shared_data / "matseg_benchmark_sample"
    assert _means(evaluate_benchmark(root, "rgb", mode=mode)) == (0.94677, 0.95170, 1.0, 1.0)
    assert _means(evaluate_benchmark(root, "hsv", mode=mode)) == (0.63159, 0.63593, 0.91892, 0.92121)


def test_builtin_default_scores():
    rgb = evaluate_benchmark(None, "rgb")
    assert rgb["images"].keys() == {"20230913_185027"} and rgb["skipped"] == []
    # the shipped copy is re-encoded JPEG: within 1e-3 of the reference's numbers on the original photo
    assert rgb["mean"]["point_triplet"] == pytest.approx(0.94677, abs=1e-3)
    assert rgb["mean"]["material_top1"] == 1.0
    hsv = evaluate_benchmark(None, "hsv")
    assert hsv["mean"]["point_triplet"] == pytest.approx(0.63159, abs=2e-3)


def test_baseline_descriptors():
    image = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(rgb_descriptors(image), image.astype(np.float32))
    np.testing.assert_array_equal(hsv_descriptors(image), [[[0, 255, 255], [120, 255, 255]]])


@pytest.fixture(scope="module")
def banded(tmp_path_factory):
    root = tmp_path_factory.mktemp("banded")
    return make_benchmark_folder(root, num_images=3, size=(900, 600), num_groups=[2, 3], orientation=6,
                                 relations={1: "(1,2)\n"}, seed=11)


def test_decidable_images_score_one_and_sources_agree(banded, tmp_path):
    raw = evaluate_benchmark(banded, "rgb", mode="hard")
    assert _means(raw) == (1.0, 1.0, 1.0, 1.0) and len(raw["images"]) == 3
    # soft mode also scores the 0.3 relation of img_001, which random band colours don't respect
    assert evaluate_benchmark(banded, "rgb", mode="soft")["images"]["img_001"]["point_triplet"] < 1.0
    built = build_benchmark_dataset(banded, tmp_path / "matseg")
    from_built = evaluate_benchmark(built, "rgb", mode="hard")
    assert from_built["images"] == raw["images"]


def test_constant_descriptor_model_is_near_chance(banded):
    result = evaluate_benchmark(banded, lambda image: np.ones(image.shape[:2] + (4,), np.float32), mode="hard")
    # all points tie: order is argsort's, so the score is far from perfect
    assert result["mean"]["point_triplet"] < 0.8


def test_wrong_model_output_shape(banded):
    with pytest.raises(MatSegInputError, match=r"returned a map of shape \(10, 10, 3\)"):
        evaluate_benchmark(banded, lambda image: np.zeros((10, 10, 3)))


def test_bad_mode():
    with pytest.raises(MatSegInputError, match="mode must be one of"):
        evaluate_benchmark(None, "rgb", mode="medium")


def test_limit(banded):
    assert list(evaluate_benchmark(banded, "rgb", limit=2)["images"]) == ["img_000", "img_001"]


def test_cli_default_is_readme_main_job(tmp_path):
    matseg = shutil.which("matseg")
    cmd = [matseg] if matseg else [sys.executable, "-m", "matseg_hub"]
    out = tmp_path / "results.json"
    proc = subprocess.run(cmd + ["evaluate", "--output", str(out)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, MATSEG_DISABLE_PROGRESS="1"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("MatSeg triplet accuracy on built-in sample")
    assert any(line.startswith("rgb ") and "1.00000" in line for line in lines)
    assert any(line.startswith("hsv ") for line in lines)
    assert any(line.startswith("matseg-tiny ") for line in lines)  # the built-in net
    payload = json.loads(out.read_text())
    assert [r["model"] for r in payload["runs"]] == ["rgb", "hsv", "matseg-tiny"]


def test_cli_single_model_results_json(banded, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--data", str(banded), "--model", "hsv",
                           "--mode", "soft_only", "--output", str(out)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, MATSEG_DISABLE_PROGRESS="1"))
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.read_text())
    assert set(payload) >= {"mean", "images", "skipped"} and payload["mode"] == "soft_only"
    # soft_only scores only partially similar pairs: just img_001 has a relation
    assert list(payload["images"]) == ["img_001"] and payload["skipped"] == ["img_000", "img_002"]
    assert set(payload["images"]["img_001"]) == set(KEYS)


def test_cli_bad_data_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--data", str(tmp_path / "no" / "where")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_skip_bad_and_limit_do_not_read_unused_items(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=3, size=(60, 80), seed=4)
    jpg = raw / "images" / "img_001.jpg"
    jpg.write_bytes(jpg.read_bytes()[:100])
    assert list(evaluate_benchmark(raw, "rgb", limit=1)["images"]) == ["img_000"]  # img_001 is never read
    from matseg_hub.errors import MatSegFormatError

    with pytest.raises(MatSegFormatError, match="img_001.jpg: corrupt"):
        evaluate_benchmark(raw, "rgb")
    result = evaluate_benchmark(raw, "rgb", skip_bad=True)
    assert list(result["images"]) == ["img_000", "img_002"]
    assert [b["image_id"] for b in result["bad"]] == ["img_001"] and "corrupt" in result["bad"][0]["reason"]


def test_cli_rejects_negative_max_size():
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--max-size", "-5"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "max_size must be a positive" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("model, message", [("rgbb", "unknown model 'rgbb'"), ("./no/model", "does not exist")])
def test_cli_unknown_model(model, message):
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--model", model], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_output_never_replaces_a_file_it_did_not_write(tmp_path):
    """--output is checked before scoring: a foreign file is kept (unless --overwrite), a folder is refused, and a
    results file of an earlier `matseg evaluate` is replaced."""
    cmd = [sys.executable, "-m", "matseg_hub", "evaluate", "--model", "rgb", "--output"]
    env = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    proc = subprocess.run(cmd + [str(notes)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
    assert proc.stderr.strip().splitlines() == [f"matseg: error: --output {notes} exists and was not written by "
                                                "`matseg evaluate`; nothing was changed. Choose another file name, "
                                                "or pass --overwrite to replace it"]
    assert notes.read_text() == '{"my": "notes"}'
    proc = subprocess.run(cmd + [str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "is a folder" in proc.stderr
    ours = tmp_path / "r.json"
    for _ in range(2):  # the second run replaces the first run's own file
        proc = subprocess.run(cmd + [str(ours)], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
    assert json.loads(ours.read_text())["written_by"] == "matseg evaluate"
    proc = subprocess.run(cmd + [str(notes), "--overwrite"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and json.loads(notes.read_text())["model"] == "rgb"
