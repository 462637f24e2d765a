"""Scene streams: determinism across workers and nodes, disjoint shards, torch DataLoader, folder streams, mixing."""

from __future__ import annotations

import json
from itertools import islice

import numpy as np
import pytest

from matseg_hub.errors import MatSegInputError
from matseg_hub.synthetic.scenes2d import SceneConfig, generate_scene
from matseg_hub.synthetic.sources import SceneSources, SourcePool
from matseg_hub.synthetic.streaming import (folder_scene_stream, mix_scene_streams, scene_stream, scene_tensors,
                                            stream_indices)
from matseg_hub.synthetic.layout import write_scene

CONFIG = SceneConfig(size=(48, 64))


def _image(h, w, seed):
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 10, w // 10, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def sources():
    pool = SourcePool([_image(100, 140, s) for s in range(3)])
    return SceneSources(pool, SourcePool([_image(30, 30, 9)]))


def _arrays(row):
    t = scene_tensors(row)
    return t["index"], t["image"].numpy(), t["masks"].numpy(), t["metadata"]


def test_stream_rows_are_the_generated_scenes(sources):
    ds = scene_stream(seed=4, sources=sources, config=CONFIG, num=5)
    assert set(ds.features) == {"image", "masks", "annotated", "num_materials", "seed", "index", "source", "license",
                                "metadata"}  # license: per-row licence column (added)
    rows = list(ds)
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert list(rows[0]) == list(ds.features)  # the features' column order
    assert rows[0]["image"].format == "JPEG" and rows[0]["masks"][0].mode == "L"  # decoded images, not bytes
    for row in rows:
        scene = generate_scene(4, row["index"], sources, CONFIG)
        t = scene_tensors(row)
        assert t["image"].shape == (3, 48, 64) and t["masks"].shape == (scene.num_materials, 48, 64)
        np.testing.assert_allclose(t["masks"].numpy(), scene.masks, atol=0.5 / 255 + 1e-6)
        assert row["seed"] == 4 and row["num_materials"] == scene.num_materials
    again = [_arrays(r) for r in scene_stream(seed=4, sources=sources, config=CONFIG, num=5)]
    for (i, im, m, meta), row in zip(again, rows):
        j, im2, m2, meta2 = _arrays(row)
        assert i == j and np.array_equal(im, im2) and np.array_equal(m, m2) and meta == meta2


def test_dataloader_workers_do_not_change_the_scenes_or_their_order(sources):
    import torch

    ds = scene_stream(seed=1, sources=sources, config=CONFIG, num=6)
    runs = {}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, collate_fn=scene_tensors)
        runs[workers] = [(b["index"], b["image"], b["masks"], b["annotated"]) for b in loader]
    assert [r[0] for r in runs[0]] == list(range(6))
    assert [r[0] for r in runs[2]] == list(range(6))
    for a, b in zip(runs[0], runs[2]):
        assert all(torch.equal(x, y) for x, y in zip(a[1:], b[1:]))
        assert a[1].dtype == torch.uint8 and a[2].dtype == torch.float32


def test_infinite_stream_gives_each_worker_its_own_endless_shard(sources):
    import torch

    ds = scene_stream(seed=2, sources=sources, config=CONFIG, num=None, num_shards=4)
    assert [r["index"] for r in islice(ds, 4)] == [0, 4, 8, 12]  # one process: its first shard, forever
    runs = []
    for _ in range(2):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=scene_tensors)
        runs.append([item["index"] for item in islice(loader, 6)])
    assert runs[0] == runs[1] == [0, 1, 4, 5, 8, 9]  # worker 0: shard 0, worker 1: shard 1, round-robin


@pytest.mark.parametrize("num", [5, None])
def test_resuming_from_a_state_dict_gives_the_next_scenes_without_generating_the_skipped_ones(sources, num,
                                                                                             monkeypatch):
    import matseg_hub.synthetic.scenes2d as scenes2d

    ds = scene_stream(seed=7, sources=sources, config=CONFIG, num=num, num_shards=3)
    it = iter(ds)
    before = [next(it)["index"] for _ in range(2)]
    state = json.loads(json.dumps(ds.state_dict()))  # JSON-serialisable
    following = [_arrays(next(it)) for _ in range(2)]
    made = []
    real = scenes2d.generate_scene
    monkeypatch.setattr(scenes2d, "generate_scene", lambda seed, index, *a, **k: made.append(index) or
                        real(seed, index, *a, **k))
    again = scene_stream(seed=7, sources=sources, config=CONFIG, num=num, num_shards=3)
    again.load_state_dict(state)
    it = iter(again)
    for expected in following:
        got = _arrays(next(it))
        assert got[0] == expected[0] and np.array_equal(got[1], expected[1]) and got[3] == expected[3]
    assert made == [f[0] for f in following]  # the scenes before the checkpoint were not made again
    assert before == [0, 3] and [f[0] for f in following] == ([1, 4] if num else [6, 9])


def test_streaming_uses_only_public_datasets_api():
    import ast
    from pathlib import Path

    import matseg_hub.synthetic.streaming as streaming

    internals = {"iterable_dataset", "ExamplesIterable", "_state_dict"}
    bad = []
    for node in ast.walk(ast.parse(Path(streaming.__file__).read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("datasets"):
            bad += [f"from {node.module} import {a.name}" for a in node.names
                    if a.name.startswith("_") or a.name in internals or node.module != "datasets"
                    and node.module.split(".")[1] in internals]
        elif isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("datasets.") and
                    set(a.name.split(".")) & internals]
        elif isinstance(node, ast.Attribute) and node.attr in internals:
            bad.append(f"attribute .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in internals:
            bad.append(node.id)
    assert not bad, bad


def test_split_by_node_is_disjoint_and_complete(sources):
    from datasets.distributed import split_dataset_by_node

    ds = scene_stream(seed=3, sources=sources, config=CONFIG, num=10)
    whole = {r["index"]: _arrays(r) for r in ds}
    seen = []
    for rank in range(3):
        part = [r for r in split_dataset_by_node(ds, rank=rank, world_size=3)]
        seen.extend(r["index"] for r in part)
        for r in part:
            _, im, m, meta = _arrays(r)
            assert np.array_equal(im, whole[r["index"]][1]) and meta == whole[r["index"]][3]
    assert sorted(seen) == list(range(10)) and len(seen) == len(set(seen))


def test_shards_never_repeat_a_scene():
    a = list(islice(stream_indices([0, 2], 4, None), 50))
    b = list(islice(stream_indices([1, 3], 4, None), 50))
    assert not set(a) & set(b)
    assert sorted(stream_indices(range(7), 7, 20)) == list(range(20))
    assert list(stream_indices([5], 7, 3)) == []


def test_bad_stream_arguments(sources):
    with pytest.raises(MatSegInputError):
        scene_stream(seed=-1, sources=sources)
    with pytest.raises(MatSegInputError):
        scene_stream(seed=0, sources=sources, num=-2)


def test_folder_stream_and_mixing(sources, tmp_path):
    for i in range(3):
        write_scene(tmp_path / str(i), generate_scene(0, i, sources, CONFIG))
    write_scene(tmp_path / "0" / "0", generate_scene(0, 7, sources, CONFIG))  # nested sub-scene
    (tmp_path / "9").mkdir()  # unfinished: ignored
    folders = folder_scene_stream(tmp_path)
    rows = list(folders)
    assert [r["index"] for r in rows] == [0, 7, 1, 2]
    scene = generate_scene(0, 1, sources, CONFIG)
    np.testing.assert_allclose(scene_tensors(rows[2])["masks"].numpy(), scene.masks, atol=0.5 / 255 + 1e-6)
    generated = scene_stream(seed=5, sources=sources, config=CONFIG, num=4)
    mixed = list(mix_scene_streams([generated, folders], probabilities=[0.5, 0.5], seed=0))
    assert {r["source"] for r in mixed} == {"matseg_hub.scenes2d"}  # the recorded generator name (data)
    assert {r["seed"] for r in mixed} == {0, 5}
    with pytest.raises(MatSegInputError):
        folder_scene_stream(tmp_path / "9")


def test_authors_sample_streams(shared_data):
    rows = list(islice(folder_scene_stream(shared_data / "matseg_synthetic_sample"), 2))
    assert rows[0]["image"].size == (1600, 1600) and rows[0]["num_materials"] == 4
    assert "camera" in rows[0]["metadata"] and rows[0]["seed"] == -1


def test_array_rows_match_encoded_rows_and_feed_a_dataloader(sources):
    import torch

    encoded = [scene_tensors(r) for r in scene_stream(seed=6, sources=sources, config=CONFIG, num=3)]
    arrays = scene_stream(seed=6, sources=sources, config=CONFIG, num=3, encoded=False)
    assert arrays.features is None
    rows = list(arrays)
    assert list(rows[0]) == list(scene_stream(seed=6, sources=sources, config=CONFIG, num=1).features)
    assert rows[0]["masks"].dtype == np.uint8 and rows[0]["image"].shape == (48, 64, 3)
    for row, enc in zip(rows, encoded):
        t = scene_tensors(row)
        assert t["index"] == enc["index"]
        assert torch.equal(t["masks"], enc["masks"]) and torch.equal(t["annotated"], enc["annotated"])
        assert np.array_equal(row["image"], generate_scene(6, row["index"], sources, CONFIG).rgb)
    loader = torch.utils.data.DataLoader(arrays, batch_size=None, num_workers=2, collate_fn=scene_tensors)
    assert [b["index"] for b in loader] == [0, 1, 2]


def test_16bit_masks_are_fractions_on_the_streaming_path(sources, tmp_path):
    import cv2

    from matseg_hub.synthetic.layout import read_scene

    folder = write_scene(tmp_path / "0", generate_scene(0, 0, sources, CONFIG))
    for mask in folder.glob("mask*.png"):
        mask.unlink()
    cv2.imwrite(str(folder / "mask001.png"), np.full((48, 64), 32767, np.uint16))
    expected = read_scene(folder).masks
    assert np.allclose(expected, 32767 / 65535)
    t = scene_tensors(next(iter(folder_scene_stream(tmp_path))))
    np.testing.assert_allclose(t["masks"].numpy(), expected, atol=1e-6)  # was 1.0 (PIL convert("L") clipped)


def test_bad_scene_folders_are_skipped_with_a_warning_or_raise(sources, tmp_path, caplog):
    import logging

    import cv2

    from matseg_hub.errors import MatSegFormatError

    for i in range(3):
        write_scene(tmp_path / str(i), generate_scene(0, i, sources, CONFIG))
    (tmp_path / "1" / "mask002.png").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "2" / "mask001.png"), np.zeros((10, 10), np.uint8))
    with caplog.at_level(logging.WARNING, logger="matseg_hub"):
        rows = list(folder_scene_stream(tmp_path))
    assert [r["index"] for r in rows] == [0]
    assert "mask002.png" in caplog.text and "mask001.png" in caplog.text
    assert json.loads(rows[0]["metadata"])["folder"] == "0" and rows[0]["license"] == "unknown"
    with pytest.raises(MatSegFormatError, match="mask002.png"):
        list(folder_scene_stream(tmp_path, on_error="raise"))
