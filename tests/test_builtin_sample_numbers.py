"""The built-in benchmark sample's exact numbers: always run (no ../shared/data needed).

``matseg_hub/resources/benchmark_sample`` (one CC0 photo, 37 points in 13 groups, no relations) scored at the
evaluation size (700 px) by the RGB and HSV baselines. The values are pinned to 1e-9, so that any change to the
image reader, the evaluation resize, the point rounding, the discs or the ranking shows here, on every machine.
(The shipped JPEG is a re-encoded copy of the authors' photo: these are not the published numbers, which
``tests/test_evaluation.py`` checks on the original photo when ``../shared/data`` is present.) Without
relations, soft and hard modes give the same numbers (SPEC §3.6).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from matseg_hub.benchmark.evaluation import evaluate_benchmark
from matseg_hub.metrics.triplet import METRIC_KEYS

# point_triplet, material_triplet, point_top1, material_top1
EXPECTED = {
    "rgb": (0.9465172965172964, 0.9514790764790765, 1.0, 1.0),
    "hsv": (0.6312585312585315, 0.6358585858585857, 34 / 37, 0.9212121212121211),
}


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("model", ["rgb", "hsv"])
def test_builtin_sample_numbers(model, mode):
    result = evaluate_benchmark(None, model, mode=mode)
    assert list(result["images"]) == ["20230913_185027"] and result["skipped"] == [] and result["bad"] == []
    got = tuple(result["mean"][key] for key in METRIC_KEYS)
    assert got == pytest.approx(EXPECTED[model], abs=1e-9, rel=0)
    assert result["mean"]["num_anchors"] == 37


def test_builtin_sample_has_no_soft_cases():
    """No relations: "soft cases only" has nothing to score, and says so instead of inventing a number."""
    result = evaluate_benchmark(None, "rgb", mode="soft_only")
    assert all(result["mean"][key] is None for key in METRIC_KEYS)
    assert result["mean"]["num_scored_images"] == 0 and result["mean"]["num_skipped_images"] == 1


def test_readme_first_command_prints_and_writes_the_numbers(tmp_path):
    """``matseg evaluate`` (the README's first command): the table docs/metrics.md quotes, and the same eight numbers
    in ``--output``."""
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "-m", "matseg_hub", "evaluate", "--output", str(out)],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MATSEG_DISABLE_PROGRESS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()
            if line.startswith(("rgb ", "hsv ", "matseg-tiny "))}
    assert list(rows) == ["rgb", "hsv", "matseg-tiny"]  # the built-in net is scored too (tests/test_builtin_model.py)
    assert {k: rows[k] for k in ("rgb", "hsv")} == {"rgb": ["soft", "1", "0.94652", "0.95148", "1.00000", "1.00000"],
                                                    "hsv": ["soft", "1", "0.63126", "0.63586", "0.91892", "0.92121"]}
    runs = {run["model"]: run for run in json.loads(out.read_text())["runs"]}
    for model, expected in EXPECTED.items():
        assert tuple(runs[model]["mean"][key] for key in METRIC_KEYS) == pytest.approx(expected, abs=1e-9, rel=0)
