"""matseg_hub.synthetic.dataset: resumable writers refuse other settings, packaging checks folders, licences, cards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.synthetic.scenes2d import SceneConfig, generate_scene
from matseg_hub.synthetic.sources import SceneSources, SourcePool
from matseg_hub.synthetic.layout import write_scene
from matseg_hub.synthetic import dataset as synthetic_dataset
from matseg_hub.synthetic.dataset import RUN_FILE, folders_to_parquet, generate_folders, generate_parquet
from matseg_hub.utils.files import OUTPUT_MANIFEST

CONFIG = SceneConfig(size=(48, 64))


def _image(h, w, seed):
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, size=(h // 10, w // 10, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def sources():
    return SceneSources(SourcePool([_image(100, 140, s) for s in range(3)], names=["a", "b", "c"]),
                        SourcePool([_image(30, 30, 9)], names=["t"]))


def test_folder_resume_refuses_other_settings(tmp_path, sources):
    out = tmp_path / "scenes"
    assert generate_folders(out, 3, seed=0, sources=sources, config=CONFIG) == {"written": 3, "skipped": 0}
    assert json.loads((out / RUN_FILE).read_text())["seed"] == 0
    before = (out / "0" / "RGB__RGB.jpg").read_bytes()
    with pytest.raises(MatSegInputError, match=r"seed: 0 \(earlier run\) vs 1 \(this run\)") as err:
        generate_folders(out, 3, seed=1, sources=sources, config=CONFIG)
    assert "--no-resume" in str(err.value) and "new --output" in str(err.value)
    with pytest.raises(MatSegInputError, match="config.size"):
        generate_folders(out, 3, seed=0, sources=sources, config=SceneConfig(size=(64, 64)))
    other = SceneSources(SourcePool([_image(100, 140, 5)], names=["z"]), sources.textures)
    with pytest.raises(MatSegInputError, match="sources.natural"):
        generate_folders(out, 3, seed=0, sources=other, config=CONFIG)
    assert (out / "0" / "RGB__RGB.jpg").read_bytes() == before  # nothing was touched
    # same settings: resumes (and may extend)
    assert generate_folders(out, 4, seed=0, sources=sources, config=CONFIG) == {"written": 1, "skipped": 3}
    # discarding: the seed-1 scenes replace the seed-0 ones
    assert generate_folders(out, 2, seed=1, sources=sources, config=CONFIG, resume=False) == {"written": 2,
                                                                                               "skipped": 0}
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MANIFEST, RUN_FILE, "0", "1"]
    assert json.loads((out / "0" / "scene_metadata.json").read_text())["seed"] == 1


def test_folder_written_before_fingerprints_is_checked_by_its_scenes(tmp_path, sources):
    out = tmp_path / "old"
    generate_folders(out, 2, seed=0, sources=sources, config=CONFIG)
    (out / RUN_FILE).unlink()
    with pytest.raises(MatSegInputError, match="seed"):
        generate_folders(out, 2, seed=3, sources=sources, config=CONFIG)
    assert generate_folders(out, 2, seed=0, sources=sources, config=CONFIG)["skipped"] == 2


def test_parquet_job_array_refuses_mixed_settings_and_previews_once(tmp_path, sources, monkeypatch):
    from datasets import load_dataset

    calls = []
    real = synthetic_dataset.preview_png
    monkeypatch.setattr(synthetic_dataset, "preview_png", lambda scenes, **kw: calls.append(len(scenes)) or
                        real(scenes, **kw))
    out = tmp_path / "pq"
    assert generate_parquet(out, 4, seed=0, sources=sources, config=CONFIG, shard_index=0, num_shards=2) is None
    assert calls == []  # a job that does not finalize renders no preview
    with pytest.raises(MatSegInputError, match="seed"):
        generate_parquet(out, 4, seed=1, sources=sources, config=CONFIG, shard_index=1, num_shards=2)
    with pytest.raises(MatSegInputError, match="config"):
        generate_parquet(out, 4, seed=0, sources=sources, config=SceneConfig(size=(64, 64)), shard_index=1,
                         num_shards=2)
    final = generate_parquet(out, 4, seed=0, sources=sources, config=CONFIG, shard_index=1, num_shards=2,
                             preview_count=2)
    assert final == out and calls == [2] and (out / "preview.png").is_file()
    assert not (out / ".matseg_build").exists() and not (out / RUN_FILE).exists()
    ds = load_dataset(str(out), split="train")
    assert sorted(ds["index"]) == [0, 1, 2, 3] and set(ds["seed"]) == {0}
    assert set(ds["license"]) == {"unknown"}
    card = (out / "README.md").read_text()
    assert "license: other" in card and "generate_scene(seed, index" in card and "`unknown`: 4" in card


def test_parquet_no_resume_discards_a_run_with_other_settings(tmp_path, sources):
    from datasets import load_dataset

    out = tmp_path / "pq"
    assert generate_parquet(out, 4, seed=0, sources=sources, config=CONFIG, shard_index=0, num_shards=2) is None
    assert generate_parquet(out, 2, seed=5, sources=sources, config=CONFIG, resume=False,
                            source_license="CC-BY-4.0", preview_count=0) == out
    ds = load_dataset(str(out), split="train")
    assert sorted(ds["index"]) == [0, 1] and set(ds["seed"]) == {5}
    assert set(ds["license"]) == {"CC-BY-4.0"} and not (out / "preview.png").exists()


def test_packaging_skips_and_reports_bad_folders(tmp_path, sources):
    import cv2
    from datasets import load_dataset

    root = tmp_path / "renders"
    for i in range(3):
        meta_scene = generate_scene(0, i, sources, CONFIG)
        meta_scene.metadata = {"generator": "matseg_hub.render3d", "seed": 0, "index": i,
                               "licences": {"hdri/sky.hdr": "CC0", "models/chair.glb": ""}}
        write_scene(root / str(i), meta_scene)
    (root / "1" / "mask002.png").write_bytes(b"garbage")
    cv2.imwrite(str(root / "2" / "mask001.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(MatSegFormatError, match="mask002.png"):
        folders_to_parquet(root, tmp_path / "strict")
    out = folders_to_parquet(root, tmp_path / "ds", skip_bad=True)
    ds = load_dataset(str(out), split="train")
    assert ds["index"] == [0] and ds["license"] == ["CC0; unknown"]
    meta = json.loads(ds["metadata"][0])
    assert meta["folder"] == "0" and str(tmp_path) not in ds["metadata"][0]
    card = (out / "README.md").read_text()
    assert "`1`" in card and "`2`" in card and "mask002.png" in card and "mask001.png" in card  # skipped, listed
    assert str(tmp_path) not in card and "generate_scene" not in card  # 3D-folder card: no 2D reproduction claim
    assert "license: other" in card


def test_builder_script_accepts_the_equals_form(monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "builders" / "matseg_synthetic.py"
    spec = importlib.util.spec_from_file_location("matseg_synthetic_builder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = []
    monkeypatch.setattr(module, "main", lambda argv: seen.append(argv) or 0)
    module.run(["--from-folders=renders", "--output", "o"])
    module.run(["--from-folders", "renders", "--output", "o"])
    module.run(["--num", "3", "--output", "o"])
    assert [a[:2] for a in seen] == [["build", "synthetic"], ["build", "synthetic"], ["generate", "2d"]]
