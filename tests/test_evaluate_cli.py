"""``matseg evaluate``: several models and modes, --report, failing models, --ties, --prompt-points, --task iou.

Real subprocess calls of ``python -m matseg_hub evaluate`` on the built-in sample and on small benchmark folders the
tests write; a tiny random SAM saved with ``save_pretrained`` for the promptable rows.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matseg_hub.benchmark.evaluation import evaluate_benchmark
from matseg_hub.benchmark.report import CHART_SIZE
from matseg_hub.testing import make_benchmark_folder

from test_report import parse_tables

ENV = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")
KEYS = ("point_triplet", "material_triplet", "point_top1", "material_top1")


def matseg(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def related(tmp_path_factory):
    """A small benchmark folder whose img_001 has a partial-similarity relation (soft cases to score)."""
    return make_benchmark_folder(tmp_path_factory.mktemp("related"), num_images=2, size=(96, 128), num_groups=[3, 3],
                                 relations={0: "(1,2)\n", 1: "[1,3]\n"}, seed=5)


def test_report_of_two_models_in_two_modes_on_the_builtin_sample(tmp_path):
    report = tmp_path / "report"
    proc = matseg("--model", "rgb", "hsv", "--mode", "soft", "soft_only", "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == ("MatSeg triplet accuracy on built-in sample (1 CC0 photo) (soft, soft_only "
                                           "mode, max size 700)")
    payload = json.loads((report / "results.json").read_text())
    assert payload["written_by"] == "matseg evaluate" and payload["task"] == "triplet"
    assert payload["settings"]["modes"] == ["soft", "soft_only"] and payload["settings"]["models"] == ["rgb", "hsv"]
    assert [(r["model"], r["mode"]) for r in payload["runs"]] == [("rgb", "soft"), ("rgb", "soft_only"),
                                                                   ("hsv", "soft"), ("hsv", "soft_only")]
    for run in payload["runs"]:
        direct = evaluate_benchmark(None, run["model"], mode=run["mode"], show_progress=False)
        assert run["mean"] == direct["mean"] and run["images"] == direct["images"]
        assert run["skipped"] == direct["skipped"]
    (header, rows), (_, paper_rows) = parse_tables((report / "leaderboard.md").read_text())
    rgb = payload["runs"][0]["mean"]
    assert rows[0] == ["rgb", f"{rgb['point_triplet']:.5f}", f"{rgb['material_triplet']:.5f}",
                       f"{rgb['point_top1']:.5f}", "n/a", "n/a", "n/a", "1 / 0"]  # the sample has no soft cases
    assert rows[1][0] == "hsv" and rows[1][1] == f"{payload['runs'][2]['mean']['point_triplet']:.5f}"
    assert ["MatSeg mixed 2D+3D", "0.92", "0.84"] in paper_rows
    image = Image.open(io.BytesIO((report / "leaderboard.png").read_bytes()))
    assert image.format == "PNG" and image.size == CHART_SIZE


def test_soft_cases_and_several_outputs_agree(related, tmp_path):
    out, report = tmp_path / "r.json", tmp_path / "rep"
    proc = matseg("--data", related, "--model", "hsv", "rgb", "--mode", "soft_only", "soft", "--max-size", 0,
                  "--output", out, "--report", report)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(out.read_text())["runs"]
    assert runs == json.loads((report / "results.json").read_text())["runs"]
    (_, rows), _ = parse_tables((report / "leaderboard.md").read_text())
    assert [row[0] for row in rows] == ["hsv", "rgb"]
    for row, name in zip(rows, ("hsv", "rgb")):
        soft = evaluate_benchmark(related, name, mode="soft", max_size=None, show_progress=False)["mean"]
        soft_only = evaluate_benchmark(related, name, mode="soft_only", max_size=None, show_progress=False)["mean"]
        assert soft_only["num_scored_images"] == 2
        assert row[1:] == [f"{soft[k]:.5f}" for k in ("point_triplet", "material_triplet", "point_top1")] + \
            [f"{soft_only[k]:.5f}" for k in ("point_triplet", "material_triplet", "point_top1")] + ["2 / 2"]


def test_chart_pixels_follow_the_results(related, tmp_path):
    """Two different result sets give different charts (a blank or number-blind chart fails)."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert matseg("--model", "rgb", "--report", a).returncode == 0
    assert matseg("--data", related, "--model", "hsv", "--report", b).returncode == 0
    pa = np.asarray(Image.open(a / "leaderboard.png").convert("RGB"))
    pb = np.asarray(Image.open(b / "leaderboard.png").convert("RGB"))
    assert pa.shape == pb.shape == (CHART_SIZE[1], CHART_SIZE[0], 3) and np.any(pa != pb)


def test_a_failing_model_is_one_line_and_the_others_still_run(tmp_path):
    report = tmp_path / "rep"
    proc = matseg("--model", "rgb", "/nonexistent", "hsv", "--report", report, "--output", tmp_path / "r.json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("matseg: error: model /nonexistent: ") and \
        "does not exist" in errors[0], proc.stderr
    rows = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith(("rgb ", "hsv "))]
    assert rows == ["rgb", "hsv"]
    assert "/nonexistent: FAILED" in proc.stdout
    payload = json.loads((report / "results.json").read_text())
    assert [r["model"] for r in payload["runs"]] == ["rgb", "hsv"]
    assert [f["model"] for f in payload["settings"]["failed"]] == ["/nonexistent"]
    assert [f["model"] for f in json.loads((tmp_path / "r.json").read_text())["failed"]] == ["/nonexistent"]
    (_, rows), _ = parse_tables((report / "leaderboard.md").read_text())
    assert [row[0] for row in rows] == ["rgb", "hsv"]


def test_an_unexpected_error_in_one_model_does_not_stop_the_others(tmp_path, capsys):
    """``run(args)`` also takes scorer objects: one whose map function breaks (a bug in that model) is reported in
    one line, the other models are scored and reported, the status is 1."""
    from matseg_hub.cli import build_parser
    from matseg_hub.cli.evaluate import run
    from matseg_hub.models.scorers import DescriptorScorer

    broken_model = DescriptorScorer(lambda image: 1 // 0, name="broken")  # a plain Python bug in the model
    args = build_parser().parse_args(["evaluate", "--report", str(tmp_path / "rep")])
    args.model = ["rgb", broken_model, "hsv"]
    assert run(args) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("matseg:")]
    assert errors == ["matseg: error: model broken failed unexpectedly, a bug in it or in matseg-hub: "
                      "ZeroDivisionError: integer division or modulo by zero (run with -v for the traceback)"]
    assert [r["model"] for r in json.loads((tmp_path / "rep" / "results.json").read_text())["runs"]] == ["rgb", "hsv"]


def test_report_into_a_folder_of_other_files_is_refused_before_scoring(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.md").write_text("do not touch")
    proc = matseg("--model", "rgb", "--report", folder)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"matseg: error: --report {folder} is not empty and is not an output of `matseg evaluate --report` (it has "
        "no .matseg_output.json); nothing in it was changed. Choose a new or empty output folder (an output of a "
        "matseg-hub version that wrote no .matseg_output.json: move it away or delete it yourself, then rerun)"]
    assert [p.name for p in folder.iterdir()] == ["thesis.md"] and (folder / "thesis.md").read_text() == "do not touch"
    # a report folder is re-used: the second run replaces the report's own files
    own = tmp_path / "rep"
    for model in ("rgb", "hsv"):
        assert matseg("--model", model, "--report", own).returncode == 0
    assert [r["model"] for r in json.loads((own / "results.json").read_text())["runs"]] == ["hsv"]


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    """A benchmark folder of grey photos: every hsv descriptor is (0, 0, V), so every point ties with every other."""
    root = make_benchmark_folder(tmp_path_factory.mktemp("grey"), num_images=2, size=(96, 128), num_groups=[2, 3],
                                 relations={1: "(1,2)\n"}, seed=3)
    for jpg in (root / "images").glob("*.jpg"):
        Image.open(jpg).convert("L").convert("RGB").save(jpg, quality=92)
        pixels = np.asarray(Image.open(jpg).convert("RGB"))
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return root


def test_ties_reach_the_metric(grey, tmp_path):
    numbers = {}
    for ties in ("first", "average"):
        out = tmp_path / f"{ties}.json"
        proc = matseg("--data", grey, "--model", "hsv", "--ties", ties, "--output", out)
        assert proc.returncode == 0, proc.stderr
        payload = json.loads(out.read_text())
        numbers[ties] = payload["mean"]["point_triplet"]
        assert payload["mean"] == evaluate_benchmark(grey, "hsv", ties=ties, show_progress=False)["mean"]
    assert numbers["average"] == pytest.approx(0.5, abs=1e-12)  # all tied: every order counts half
    assert abs(numbers["first"] - 0.5) > 0.05  # the reference's argsort order is not the average


def tiny_sam_folder(folder):
    """A tiny random SamModel + processor saved with save_pretrained (the sizes of tests/test_sam.py)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    size = 64
    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=size, patch_size=8,
                           window_size=4, global_attn_indexes=[1], output_channels=32, num_pos_feats=16, mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=32, image_size=size, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32))
    model = SamModel(config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_norm_weight = ("norm" in name) and name.endswith("weight")
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2 + (1.0 if is_norm_weight else 0.0))
    model.save_pretrained(folder)
    SamProcessor(SamImageProcessor(size={"longest_edge": size}, pad_size={"height": size, "width": size})
                 ).save_pretrained(folder)
    return folder


def test_prompt_points_score_a_promptable_model_once_per_k(related, tmp_path):
    pytest.importorskip("matseg_hub.models.sam")
    sam = tiny_sam_folder(tmp_path / "tiny-sam")
    report = tmp_path / "rep"
    proc = matseg("--data", related, "--model", f"sam:{sam}", "hsv", "--prompt-points", 1, 2, "--seed", 3,
                  "--device", "cpu", "--max-size", 128, "--report", report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((report / "results.json").read_text())["runs"]
    assert [r["model"] for r in runs] == [f"sam:{sam} (1 pt)", f"sam:{sam} (2 pt)", "hsv"]  # hsv scored once
    assert [r["scorer"].get("prompt_points") for r in runs] == [1, 2, None]
    for run, k in zip(runs[:2], (1, 2)):  # one loaded model re-used per k gives the numbers of a fresh one
        direct = evaluate_benchmark(related, f"sam:{sam}", prompt_points=k, seed=3, device="cpu", max_size=128,
                                    show_progress=False)
        assert run["mean"] == direct["mean"]
    (_, rows), _ = parse_tables((report / "leaderboard.md").read_text())
    assert [row[0] for row in rows] == [f"sam:{sam} (1 pt)", f"sam:{sam} (2 pt)", "hsv"]


@pytest.mark.parametrize("args, message", [
    (["--task", "iou"], "--task iou needs --data"),
    (["--format", "masks"], "--format is for --task iou"),
    (["--prompt-points", "0"], "--prompt-points must be at least 1, got 0"),
    (["--negative-points", "-1"], "--negative-points must be 0 or more"),
    (["--task", "iou", "--data", "/no/such/set"], "/no/such/set does not exist"),
    (["--task", "iou", "--data", ".", "--format", "bogus"], "unknown --format 'bogus'"),
    (["--limit", "0"], "--limit must be at least 1, got 0"),
    (["--task", "iou", "--data", ".", "--mode", "hard"], "--mode is for --task triplet"),
    (["--task", "iou", "--data", ".", "--seed", "-1"], "--seed must be 0 or more, got -1"),
    (["--task", "iou", "--data", Path(__file__).parent, "--model", "rgb", "hsv"], "not a segmentation set"),
])
def test_bad_options_are_one_line_errors(args, message):
    proc = matseg(*args, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def segmentation_folder(root, num_images=2, size=96, seed=0):
    """A raw segmentation folder in the ``masks`` layout: ``images/<id>.png`` + one label PNG ``masks/<id>.png``
    per image (left half region 1, right half region 2, different noisy colours)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(num_images):
        labels = np.ones((size, size), np.uint8)
        labels[:, size // 2:] = 2
        colours = rng.integers(30, 220, size=(3, 3))
        image = colours[labels] + rng.integers(-25, 25, size=(size, size, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"img{i}.png")
        Image.fromarray(labels).save(root / "masks" / f"img{i}.png")
    return root


def test_task_iou_dispatches_to_evaluate_segmentation(tmp_path):
    seg = pytest.importorskip("matseg_hub.segmentation.evaluation",
                              reason="matseg_hub.segmentation.evaluation (evaluate_segmentation) has not landed yet")
    data = segmentation_folder(tmp_path / "seg")
    report = tmp_path / "rep"
    proc = matseg("--task", "iou", "--data", data, "--format", "masks", "--model", "rgb", "hsv", "--threshold", 0.4,
                  "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"Point-prompted IoU on {data} (fixed threshold 0.4")
    payload = json.loads((report / "results.json").read_text())
    assert payload["task"] == "iou" and [r["model"] for r in payload["runs"]] == ["rgb", "hsv"]
    assert payload["settings"]["threshold"] == 0.4 and payload["settings"]["format"] == "masks"
    for run in payload["runs"]:
        direct = seg.evaluate_segmentation(data, run["model"], format="masks", threshold=0.4, show_progress=False)
        assert run["mean"] == direct["mean"] and run["threshold"] == 0.4
    assert payload["runs"][0]["mean"]["num_regions"] == 4
    (header, rows), (paper_header, _) = parse_tables((report / "leaderboard.md").read_text())
    assert header[1] == "oracle IoU per region" and paper_header[0] == "dataset (paper)"
    assert rows[0][:2] == ["rgb", f"{payload['runs'][0]['mean']['oracle_region']:.5f}"]
    joint = matseg("--task", "iou", "--data", data, "--format", "masks", "--model", "rgb", "--queries", "joint",
                   "--output", tmp_path / "joint.json")
    assert joint.returncode == 0, joint.stderr
    direct = seg.evaluate_segmentation(data, "rgb", format="masks", queries="joint", show_progress=False)
    assert json.loads((tmp_path / "joint.json").read_text())["mean"] == direct["mean"]
    # one map per disc and one joint map differ (the oracle does not depend on --threshold)
    assert direct["mean"]["oracle_region"] != payload["runs"][0]["mean"]["oracle_region"]


def test_ctrl_c_keeps_the_finished_runs(tmp_path, capsys):
    """Ctrl-C while one model is scored (here: raised by the model itself) still prints and writes the runs that had
    finished, marks the results as interrupted and ends with status 130."""
    from matseg_hub.cli import build_parser
    from matseg_hub.cli.evaluate import run
    from matseg_hub.models.scorers import DescriptorScorer

    def interrupted(image):
        raise KeyboardInterrupt

    out, report = tmp_path / "r.json", tmp_path / "rep"
    args = build_parser().parse_args(["evaluate", "--mode", "soft", "hard", "--output", str(out), "--report",
                                      str(report)])
    args.model = ["rgb", DescriptorScorer(interrupted, name="slow"), "hsv"]
    assert run(args) == 130
    captured = capsys.readouterr()
    assert "interrupted while scoring slow" in captured.err and captured.out.splitlines()[3].startswith("rgb ")
    payload = json.loads(out.read_text())
    assert [(r["model"], r["mode"]) for r in payload["runs"]] == [("rgb", "soft"), ("rgb", "hard")]
    assert payload["interrupted"] == "slow"
    assert json.loads((report / "results.json").read_text())["settings"]["interrupted"] == "slow"
