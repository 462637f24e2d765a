"""The benchmark dataset through a real local Hub-compatible server: publish, load_dataset by repo id
(also streaming), and `matseg evaluate --data <repo id>`."""

from __future__ import annotations

import json

import pytest

from hubserver import run_client
from matseg_hub.benchmark.format import read_benchmark
from matseg_hub.benchmark.dataset import build_benchmark_dataset
from matseg_hub.benchmark.evaluation import evaluate_benchmark
from matseg_hub.testing import make_benchmark_folder

pytestmark = pytest.mark.hub

CLIENT = """
import json, sys
import numpy as np
from datasets import load_dataset
out = {}
for streaming in (False, True):
    ds = load_dataset("testns/matseg", split="test", streaming=streaming)
    out[str(streaming)] = [{"id": r["image_id"], "size": list(r["image"].size), "groups": r["group_ids"],
                            "sim": r["group_similarity"], "x0": r["groups"][0]["points"][0]["x"],
                            "pixel": np.asarray(r["image"])[10, 20].tolist()} for r in ds]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def published(local_hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("hubraw")
    raw = make_benchmark_folder(root / "raw", num_images=4, size=(80, 120), num_groups=[2, 3], orientation=6,
                                relations={1: "(1,2)\n[2,3]\n"}, seed=21)
    built = build_benchmark_dataset(raw, root / "matseg", max_shard_size="20KB")
    local_hub.publish(built, "testns/matseg", repo_type="dataset")
    return raw


def test_load_dataset_by_repo_id_returns_the_same_rows(local_hub, published):
    result = json.loads(run_client(CLIENT, local_hub, timeout=300).stdout.strip().splitlines()[-1])
    items = list(read_benchmark(published))
    for streaming in ("False", "True"):
        rows = result[streaming]
        assert [r["id"] for r in rows] == [i.image_id for i in items]
        for row, item in zip(rows, items):
            assert row["size"] == [item.width, item.height] == [120, 80]   # EXIF orientation applied on decode
            assert row["groups"] == item.group_ids
            assert row["sim"] == item.group_similarity.tolist()
            assert row["x0"] == item.groups[item.group_ids[0]][0, 0]
            assert max(abs(a - b) for a, b in zip(row["pixel"], item.image()[10, 20].tolist())) <= 3


def test_matseg_evaluate_on_hub_id(local_hub, published, tmp_path):
    out = tmp_path / "r.json"
    code = (f"import sys; from matseg_hub.cli import main; "
            f"sys.exit(main(['evaluate', '--data', 'testns/matseg', '--model', 'rgb', '--mode', 'hard', '--output', {str(out)!r}]))")
    proc = run_client(code, local_hub, timeout=300)
    assert "testns/matseg" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["images"] == evaluate_benchmark(published, "rgb", mode="hard")["images"]
    assert payload["mean"]["point_triplet"] == 1.0
