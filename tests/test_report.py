"""benchmark.report: leaderboard reports (results.json, leaderboard.md, leaderboard.png) and their folder rules."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from matseg_hub.benchmark.evaluation import evaluate_benchmark
from matseg_hub.benchmark.report import (CHART_SIZE, PAPER_IOU, PAPER_TRIPLET, REPORT_FILES, REPORT_KIND, iou_chart,
                                         leaderboard_rows, triplet_chart, write_report)
from matseg_hub.errors import MatSegInputError, MatSegOutputError
from matseg_hub.utils.files import OUTPUT_MANIFEST, read_output_manifest, write_output_manifest


def _mean(pt, mt, p1, m1=1.0, n=3):
    return {"point_triplet": pt, "material_triplet": mt, "point_top1": p1, "material_top1": m1,
            "num_images": n, "num_scored_images": n, "num_skipped_images": 0, "num_anchors": 10 * n}


def _run(model, mode, *numbers, n=3):
    return {"task": "triplet", "model": model, "mode": mode, "max_size": 700, "mean": _mean(*numbers, n=n),
            "images": {}, "skipped": [], "bad": [], "scorer": {"name": model, "kind": "descriptor"}}


RUNS = [_run("net-a", "soft", 0.91234, 0.90111, 0.8), _run("net-b", "soft", 0.61, 0.62, 0.5),
        _run("net-a", "soft_only", 0.83333, 0.82222, 0.7, n=2)]


def parse_tables(markdown: str):
    """Every Markdown table of the page: a list of (header cells, rows of cells)."""
    tables, current = [], None
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if current is None:
                current = (cells, [])
                tables.append(current)
            elif not set("".join(cells)) <= set("-: "):
                current[1].append(cells)
        else:
            current = None
    return tables


def _png(path_or_bytes):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image.convert("RGB"))


def test_rows_merge_the_modes_of_one_model():
    rows = leaderboard_rows(RUNS + [_run("net-a", "soft", 0.5, 0.5, 0.5)])
    assert [r["model"] for r in rows] == ["net-a", "net-b", "net-a (run 2)"]
    assert set(rows[0]["modes"]) == {"soft", "soft_only"} and rows[0]["modes"]["soft_only"]["point_triplet"] == 0.83333
    assert set(rows[1]["modes"]) == {"soft"}


def test_triplet_leaderboard_cells_and_paper_block(tmp_path):
    written = write_report(RUNS, tmp_path / "rep", settings={"data": "my/bench"}, date="2026-01-02T03:04:05+00:00")
    assert sorted(p.name for p in written.values()) == sorted(REPORT_FILES)
    text = (tmp_path / "rep" / "leaderboard.md").read_text()
    (header, rows), (paper_header, paper_rows) = parse_tables(text)
    assert header == ["model", "all cases: point triplet", "all cases: material triplet", "all cases: point top-1",
                      "soft cases: point triplet", "soft cases: material triplet", "soft cases: point top-1",
                      "images scored (all cases / soft cases)"]
    assert rows == [["net-a", "0.91234", "0.90111", "0.80000", "0.83333", "0.82222", "0.70000", "3 / 2"],
                    ["net-b", "0.61000", "0.62000", "0.50000", "—", "—", "—", "3 / —"]]
    # the paper's rows are a separate, labelled block, never mixed into the measured table
    before_paper = text.split("## Paper (reference)")[0]
    assert "published numbers, not measured by this run" in text and "SAM 8 pt" not in before_paper
    assert paper_header == ["model (paper)", "all cases: triplet", "soft cases: triplet"]
    assert paper_rows == [[name, f"{a:.2f}", f"{s:.2f}"] for name, a, s in PAPER_TRIPLET]
    assert ["MatSeg mixed 2D+3D", "0.92", "0.84"] in paper_rows and ["SAM 4 pt", "0.72", "0.64"] in paper_rows
    assert ["random", "0.50", "0.50"] in paper_rows
    assert "my/bench" in text and "2026-01-02T03:04:05+00:00" in text


def test_hard_mode_gets_its_own_columns(tmp_path):
    write_report([_run("m", "hard", 0.7, 0.6, 0.5)], tmp_path / "rep")
    (header, rows), _ = parse_tables((tmp_path / "rep" / "leaderboard.md").read_text())
    assert header[-4:] == ["hard: point triplet", "hard: material triplet", "hard: point top-1",
                           "images scored (all cases / soft cases / hard)"]
    assert rows == [["m", "—", "—", "—", "—", "—", "—", "0.70000", "0.60000", "0.50000", "— / — / 3"]]


def test_results_json_holds_every_run_and_the_settings(tmp_path):
    runs = [evaluate_benchmark(None, m, mode=mode, show_progress=False) for m in ("rgb", "hsv")
            for mode in ("soft", "soft_only")]
    write_report(runs, tmp_path / "rep", settings={"modes": ["soft", "soft_only"]})
    payload = json.loads((tmp_path / "rep" / "results.json").read_text())
    from matseg_hub import __version__

    assert payload["written_by"] == "matseg evaluate" and payload["matseg_hub_version"] == __version__
    assert payload["task"] == "triplet" and payload["settings"] == {"modes": ["soft", "soft_only"]}
    assert payload["date"].endswith("+00:00")
    assert [(r["model"], r["mode"]) for r in payload["runs"]] == [("rgb", "soft"), ("rgb", "soft_only"),
                                                                   ("hsv", "soft"), ("hsv", "soft_only")]
    assert payload["runs"][0]["mean"] == runs[0]["mean"] and payload["runs"][2]["images"] == runs[2]["images"]
    (_, rows), _ = parse_tables((tmp_path / "rep" / "leaderboard.md").read_text())
    assert rows[0][:2] == ["rgb", f"{runs[0]['mean']['point_triplet']:.5f}"]
    assert rows[0][4:7] == ["n/a", "n/a", "n/a"]  # the built-in sample has no relations: no soft case to score
    assert rows[1][0] == "hsv" and rows[1][1] == f"{runs[2]['mean']['point_triplet']:.5f}"


def test_chart_is_a_png_that_draws_the_numbers(tmp_path):
    write_report(RUNS, tmp_path / "rep")
    chart = _png(tmp_path / "rep" / "leaderboard.png")
    assert chart.shape == (CHART_SIZE[1], CHART_SIZE[0], 3)
    other = _png(triplet_chart([_run("net-a", "soft", 0.3, 0.3, 0.3), _run("net-b", "soft", 0.61, 0.62, 0.5),
                                _run("net-a", "soft_only", 0.83333, 0.82222, 0.7)]))
    assert np.any(chart != other)  # a blank (or number-blind) chart fails
    assert np.array_equal(chart, _png(triplet_chart(RUNS)))  # deterministic
    # net-a's all-cases bar (the first bar, blue) is taller than net-b's: count blue pixels per column band
    blue = np.all(chart == (31, 119, 180), axis=2)[64:]  # below the legend (its blue swatch)
    heights = blue.sum(axis=0)
    slot = (CHART_SIZE[0] - 56 - 16) / (2 + len(PAPER_TRIPLET) - 1)
    a = heights[56:int(56 + slot)].max()
    b = heights[int(56 + slot):int(56 + 2 * slot)].max()
    assert a > b > 0 and a / b == pytest.approx(0.91234 / 0.61, rel=0.03)


def _iou_run(model, oracle, fixed, data="Cu ore"):
    return {"task": "iou", "model": model, "scorer": {"name": model, "kind": "descriptor"}, "data": data,
            "max_size": 700, "threshold": 0.5, "seed": 0,
            "mean": {"oracle_region": oracle, "oracle_image": oracle + 0.01, "fixed_region": fixed,
                     "fixed_image": fixed + 0.01, "num_images": 4, "num_regions": 9, "num_small_regions": 2},
            "images": {}, "small_regions": [], "bad": []}


def test_iou_report(tmp_path):
    runs = [_iou_run("rgb", 0.4, 0.3), _iou_run("hsv", 0.35, 0.2)]
    write_report(runs, tmp_path / "rep")
    text = (tmp_path / "rep" / "leaderboard.md").read_text()
    (header, rows), (paper_header, paper_rows) = parse_tables(text)
    assert header == ["model", "oracle IoU per region", "oracle IoU per image", "fixed IoU per region",
                      "fixed IoU per image", "images", "regions", "small regions left out"]
    assert rows[0] == ["rgb", "0.40000", "0.41000", "0.30000", "0.31000", "4", "9", "2"]
    assert "one threshold for the whole set: 0.5." in text and "published numbers, not measured by this run" in text
    assert paper_header == ["dataset (paper)", "MatSeg", "Materialistic", "SAM 8 pt"]
    assert paper_rows[0] == ["Cu ore", "0.52", "0.36", "0.69"] and len(paper_rows) == len(PAPER_IOU)
    assert json.loads((tmp_path / "rep" / "results.json").read_text())["task"] == "iou"
    chart = _png(tmp_path / "rep" / "leaderboard.png")
    assert chart.shape == (CHART_SIZE[1], CHART_SIZE[0], 3)
    # the paper's bars are drawn for a dataset the paper scored ("Cu ore"), not for another one
    assert np.any(chart != _png(iou_chart(runs, data="my-own-set")))


def test_bad_runs_are_typed_errors(tmp_path):
    with pytest.raises(MatSegInputError, match="at least one run"):
        write_report([], tmp_path / "r")
    with pytest.raises(MatSegInputError, match="both triplet and iou"):
        write_report([RUNS[0], _iou_run("rgb", 0.4, 0.3)], tmp_path / "r")
    with pytest.raises(MatSegInputError, match="run 0 is not an evaluation result"):
        write_report([{"model": "x"}], tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_report_folder_rules(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "leaderboard.md").write_text("my notes")
    with pytest.raises(MatSegOutputError, match="is not empty and is not an output of `matseg evaluate --report`"):
        write_report(RUNS, foreign)
    assert [p.name for p in foreign.iterdir()] == ["leaderboard.md"] and (foreign / "leaderboard.md").read_text() == \
        "my notes"
    other = tmp_path / "built"
    other.mkdir()
    write_output_manifest(other, "build benchmark")
    with pytest.raises(MatSegOutputError, match="holds the output of `matseg build benchmark`"):
        write_report(RUNS, other)
    # overwrite: only the report's file names are replaced, the rest is kept and the folder is not claimed
    (foreign / "keep.txt").write_text("keep")
    write_report(RUNS, foreign, overwrite=True)
    assert sorted(p.name for p in foreign.iterdir()) == sorted(REPORT_FILES + ("keep.txt",))
    assert (foreign / "keep.txt").read_text() == "keep"
    # a re-run into its own folder replaces its own files only; nothing else and no temporary file is left
    own = tmp_path / "rep"
    write_report(RUNS, own)
    assert read_output_manifest(own) == {"tool": "matseg-hub", "kind": REPORT_KIND, "files": sorted(REPORT_FILES)}
    (own / "mine.txt").write_text("mine")
    write_report([_run("net-c", "soft", 0.1, 0.1, 0.1)], own)
    assert sorted(p.name for p in own.iterdir()) == sorted(REPORT_FILES + (OUTPUT_MANIFEST, "mine.txt"))
    assert [r["model"] for r in json.loads((own / "results.json").read_text())["runs"]] == ["net-c"]
    with pytest.raises(MatSegOutputError, match="is the source"):
        write_report(RUNS, own, sources=[own])
    (tmp_path / "file").write_text("x")
    with pytest.raises(MatSegOutputError, match="is a file"):
        write_report(RUNS, tmp_path / "file")
