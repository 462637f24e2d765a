"""matseg_hub.hub.publish: publishing, and real round-trips through a local Hub-compatible server (olah).

Every Hugging Face client call runs in a subprocess with ``local_hub.env()`` (``HF_ENDPOINT`` = the local
server), as a user would run it; see ``hubserver.py``.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_fixtures import local_hub  # noqa: F401  (also registered by conftest.py; one server either way)
from hubserver import run_client
from matseg_hub.errors import MatSegInputError
from matseg_hub.hub.publish import HubPublishError, publish_folder

pytestmark = pytest.mark.hub

DATASET_CARD = """---
license: cc0-1.0
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---
# tiny
"""

METRIC_SCRIPT = '''
import datasets
import evaluate

SCALE = {scale}


class ExactSum(evaluate.Metric):
    """Sum of the predictions that equal their reference, times SCALE."""

    def _info(self):
        return evaluate.MetricInfo(
            description="exact sum", citation="", inputs_description="",
            features=datasets.Features(
                {{"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}}
            ),
        )

    def _compute(self, predictions, references):
        return {{"exact_sum": SCALE * int(sum(p for p, r in zip(predictions, references) if p == r))}}
'''


def _last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def _tiny_table(rows: int = 60_000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({
        "idx": np.arange(rows, dtype=np.int64),
        "value": rng.random(rows),
        "name": [f"item-{i}" for i in range(rows)],
    })


def _write_dataset(folder: Path, table: pa.Table) -> Path:
    (folder / "data").mkdir(parents=True)
    # Several row groups (about 1.5 MB): streaming reads it with HTTP range requests, as for real shards.
    pq.write_table(table, folder / "data" / "train-00000-of-00001.parquet", row_group_size=10_000)
    (folder / "README.md").write_text(DATASET_CARD)
    return folder


def _http(url: str, headers=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_dataset_round_trip(local_hub, tmp_path):  # noqa: F811
    table = _tiny_table()
    sha = local_hub.publish(_write_dataset(tmp_path / "tiny", table), "testns/tiny", "dataset", message="tiny dataset")
    result = run_client(
        """
import json, datasets, huggingface_hub
ds = datasets.load_dataset("testns/tiny", split="train")
stream = datasets.load_dataset("testns/tiny", split="train", streaming=True)
streamed = [(row["idx"], row["name"]) for row in stream]
print(json.dumps({
    "sha": huggingface_hub.HfApi().dataset_info("testns/tiny").sha,
    "rows": ds.num_rows, "columns": ds.column_names,
    "idx_sum": int(sum(ds["idx"])), "value_sum": float(sum(ds["value"])), "row_7": ds[7],
    "stream_rows": len(streamed), "stream_idx_sum": int(sum(i for i, _ in streamed)), "stream_last": streamed[-1],
}))
""",
        local_hub,
    )
    got = _last_json(result.stdout)
    assert got["sha"] == sha
    assert got["rows"] == got["stream_rows"] == table.num_rows
    assert got["columns"] == ["idx", "value", "name"]
    assert got["idx_sum"] == got["stream_idx_sum"] == int(np.sum(table["idx"].to_numpy()))
    assert got["value_sum"] == pytest.approx(float(np.sum(table["value"].to_numpy())), rel=1e-12)
    assert got["row_7"] == table.slice(7, 1).to_pylist()[0]
    assert got["stream_last"] == [table.num_rows - 1, f"item-{table.num_rows - 1}"]


def test_model_round_trip(local_hub, tmp_path):  # noqa: F811
    import torch
    from safetensors.torch import load_file
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(0)
    config = ConvNextConfig(num_channels=3, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], image_size=32)
    model = ConvNextModel(config).eval()
    model.save_pretrained(tmp_path / "tiny-convnext")
    sha = local_hub.publish(tmp_path / "tiny-convnext", "testns/tiny-convnext", "model")
    out = tmp_path / "loaded.safetensors"
    result = run_client(
        f"""
import json, os, torch, huggingface_hub
from safetensors.torch import save_file
from transformers import AutoModel
model = AutoModel.from_pretrained("testns/tiny-convnext").eval()
save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, {str(out)!r})
x = torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
with torch.no_grad():
    pooled = model(pixel_values=x).pooler_output
download_repo = huggingface_hub.snapshot_download  # from the local server in HF_ENDPOINT
folder = download_repo(repo_id="testns/tiny-convnext")
print(json.dumps({{"class": type(model).__name__, "hidden_sizes": model.config.hidden_sizes, "pooled": pooled.tolist(),
                  "snapshot": os.path.basename(folder), "files": sorted(os.listdir(folder))}}))
""",
        local_hub,
    )
    got = _last_json(result.stdout)
    assert got["class"] == "ConvNextModel" and got["hidden_sizes"] == [8, 16, 24, 32]
    assert got["snapshot"] == sha and got["files"] == ["config.json", "model.safetensors"]
    loaded = load_file(out)
    expected = model.state_dict()
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name
    x = torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    with torch.no_grad():
        pooled = model(pixel_values=x).pooler_output
    torch.testing.assert_close(torch.tensor(got["pooled"]), pooled, rtol=0, atol=1e-6)


def test_metric_space_round_trip_and_bare_name(local_hub, tmp_path):  # noqa: F811
    # The same module under two Spaces, with different scales, so each result shows which Space was loaded.
    for repo_id, scale in (("testns/exact_sum", 1), ("evaluate-metric/exact_sum", 10)):
        space = tmp_path / repo_id.replace("/", "--")
        space.mkdir()
        (space / "exact_sum.py").write_text(METRIC_SCRIPT.format(scale=scale))
        card = "---\ntitle: exact_sum\nsdk: gradio\napp_file: app.py\ntags: [evaluate, metric]\n---\n"
        (space / "README.md").write_text(card)
        (space / "app.py").write_text("import evaluate\nfrom evaluate.utils import launch_gradio_widget\n"
                                      "launch_gradio_widget(evaluate.load('exact_sum'))\n")
        local_hub.publish(space, repo_id, "space")
    result = run_client(
        """
import json, evaluate
community = evaluate.load("testns/exact_sum")
canonical = evaluate.load("exact_sum")  # a bare name: evaluate looks for the Space evaluate-metric/exact_sum
print(json.dumps({
    "community": community.compute(predictions=[1, 2, 3, 5], references=[1, 0, 3, 5]),
    "canonical": canonical.compute(predictions=[1, 2, 3, 5], references=[1, 0, 3, 5]),
}))
""",
        local_hub,
    )
    got = _last_json(result.stdout)
    assert got == {"community": {"exact_sum": 9}, "canonical": {"exact_sum": 90}}


def test_git_publish_mirrors_the_folder_and_server_speaks_hub_http(local_hub, tmp_path):  # noqa: F811
    folder = tmp_path / "repo"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "a.bin").write_bytes(bytes(range(256)) * 40)
    (folder / "data" / "old.bin").write_bytes(b"stale")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "upload.lock").write_text("never published")
    first = local_hub.publish(folder, "testns/mirror", "dataset", message="first")
    (folder / "data" / "old.bin").unlink()
    (folder / "README.md").write_text("# mirror\n")
    second = local_hub.publish(folder, "testns/mirror", "dataset", message="second")
    assert len(first) == len(second) == 40 and first != second
    assert local_hub.publish(folder, "testns/mirror", "dataset") == second  # unchanged folder: no new commit

    base = f"{local_hub.endpoint}"
    status, _, body = _http(f"{base}/api/datasets/testns/mirror")  # repository info without a revision
    assert status == 200 and json.loads(body)["sha"] == second
    status, _, body = _http(f"{base}/api/datasets/testns/mirror/tree/main?recursive=true")
    assert sorted(item["path"] for item in json.loads(body) if item["type"] == "file") == ["README.md", "data/a.bin"]
    status, _, body = _http(f"{base}/api/datasets/testns/mirror/revision/{first}")
    assert status == 200 and {s["rfilename"] for s in json.loads(body)["siblings"]} == {"data/a.bin", "data/old.bin"}

    url = f"{base}/datasets/testns/mirror/resolve/main/data/a.bin"
    content = bytes(range(256)) * 40
    status, headers, body = _http(url)
    assert status == 200 and body == content
    assert headers["Content-Length"] == str(len(content)) and headers["X-Repo-Commit"] == second and headers["ETag"]
    status, headers, body = _http(url, {"Range": "bytes=100-199"})
    assert status == 206 and body == content[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(content)}"
    status, _, body = _http(url, {"Range": "bytes=-10"})
    assert status == 206 and body == content[-10:]
    status, _, _ = _http(url, {"Range": f"bytes={len(content)}-"})
    assert status == 416
    status, headers, _ = _http(f"{base}/datasets/testns/mirror/resolve/v9.9.9/data/a.bin")
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
    status, headers, _ = _http(f"{base}/datasets/testns/mirror/resolve/main/data/old.bin")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    status, headers, _ = _http(f"{base}/datasets/testns/no-such-repo/resolve/main/README.md")
    assert status == 401 and headers["X-Error-Code"] == "RepoNotFound"  # what huggingface.co answers anonymously


def test_server_serves_lfs_objects_of_a_git_mirror(local_hub, tmp_path):  # noqa: F811
    content = np.random.default_rng(1).bytes(5000)
    oid = hashlib.sha256(content).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(content)}\n"
    (tmp_path / "weights.bin").write_text(pointer)
    local_hub.publish(tmp_path, "testns/lfs", "model")
    objects = local_hub.repo_path("testns/lfs", "model") / "lfs" / "objects" / oid[:2] / oid[2:4]
    objects.mkdir(parents=True)
    (objects / oid).write_bytes(content)  # where git-lfs keeps the object in a bare repository
    url = f"{local_hub.endpoint}/testns/lfs/resolve/main/weights.bin"
    status, headers, body = _http(url)
    assert status == 200 and body == content and headers["ETag"] == f'"{oid}"'
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(len(content))
    status, _, body = _http(url, {"Range": "bytes=4990-"})
    assert status == 206 and body == content[4990:]
    status, _, body = _http(f"{local_hub.endpoint}/api/models/testns/lfs/tree/main")
    assert json.loads(body)[0]["lfs"] == {"oid": oid, "size": len(content), "pointerSize": len(pointer)}


def test_http_publish_to_a_read_only_hub_names_the_repo(local_hub, tmp_path):  # noqa: F811
    (tmp_path / "README.md").write_text("# x\n")
    result = run_client(
        f"""
from matseg_hub.hub.publish import HubPublishError, publish_folder
try:
    publish_folder({str(tmp_path)!r}, "testns/upload", "dataset")
except HubPublishError as exc:
    print("HubPublishError:", exc)
""",
        local_hub,
    )
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("HubPublishError: dataset repository 'testns/upload':"), result.stdout + result.stderr


def test_publish_folder_rejects_bad_arguments(tmp_path):
    with pytest.raises(MatSegInputError, match="not a folder"):
        publish_folder(tmp_path / "missing", "ns/name")
    with pytest.raises(MatSegInputError, match="repo_type"):
        publish_folder(tmp_path, "ns/name", "datasets")
    with pytest.raises(MatSegInputError, match="namespace/name"):
        publish_folder(tmp_path, "name-only")


def test_git_publish_to_an_unreachable_remote_is_a_typed_error(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(HubPublishError, match="'ns/name'.*git"):
        publish_folder(tmp_path, "ns/name", "model", git_remote="file:///nonexistent/matseg/remote.git")


@pytest.mark.parametrize("ci, outcome", [("true", "1 error"), ("", "1 skipped")])
def test_missing_olah_environment_fails_under_ci_and_skips_elsewhere(tmp_path, ci, outcome):
    """Tests never install olah; without its environment a hub test skips, except under CI, where it fails."""
    import os
    import subprocess
    import sys

    (tmp_path / "test_uses_hub.py").write_text("from hub_fixtures import local_hub  # noqa: F401\n\n\n"
                                               "def test_hub(local_hub):\n    pass\n")
    env = dict(os.environ, CI=ci, MATSEG_OLAH_VENV=str(tmp_path / "no-venv"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_uses_hub.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert outcome in result.stdout and ("1 passed" not in result.stdout), result.stdout[-3000:]
    assert result.returncode == (1 if ci else 0), result.stdout[-3000:]
    assert "python tests/hubserver.py" in result.stdout or not ci
    assert not (tmp_path / "no-venv").exists()  # nothing was installed
