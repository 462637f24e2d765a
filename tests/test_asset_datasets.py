"""Textures and PBR Hub datasets: Parquet + card, load_dataset round-trips, licences per row, streaming loaders."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from matseg_hub.materials.datasets import (TexturePool, build_pbr_dataset, build_textures_dataset, iter_materials,
                                           iter_textures, material_from_row)
from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.materials.pbr import read_pbr_folder, texture_to_pbr, write_pbr_folder
from matseg_hub.materials.textures import texture_file_name


def make_texture_folder(root, n: int = 5):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for k in range(n):
        name = texture_file_name(f"photo{k % 3}", k, 0.5 + k / 20, 40)
        img = cv2.GaussianBlur(rng.integers(0, 256, (80 + 8 * k, 80 + 8 * k, 3)).astype(np.uint8), (5, 5), 0)
        cv2.imwrite(str(root / name), img)
        names.append(name)
    # per source photo id, and per file (the file entry wins)
    (root / "licenses.json").write_text(json.dumps({"photo0": "CC BY 2.0", names[1]: "CC0"}))
    return names


def make_pbr_folder(root, n: int = 3):
    rng = np.random.default_rng(1)
    for k in range(n):
        tex = cv2.GaussianBlur(rng.integers(0, 256, (48, 48, 3)).astype(np.uint8), (5, 5), 0)
        m = texture_to_pbr(tex, seed=k, source=f"t{k}.jpg", license=["CC0", "CC BY 2.0", "unknown"][k])
        write_pbr_folder(m, root / f"mat{k}")
    return sorted(p.name for p in root.iterdir())


def test_textures_dataset_round_trip(tmp_path):
    from datasets import load_dataset

    names = make_texture_folder(tmp_path / "tex")
    out = build_textures_dataset(tmp_path / "tex", tmp_path / "ds", max_shard_size="1KB",
                                 row_group_size=2)
    assert (out / "README.md").is_file() and (out / "preview.jpg").is_file()
    assert len(list((out / "data").glob("*.parquet"))) >= 2  # size-bounded shards
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: other") and "| CC BY 2.0 | 2 |" in card and "| CC0 | 1 |" in card
    ds = load_dataset(str(out), split="train")
    assert len(ds) == 5
    rows = {r["file_name"]: r for r in ds}
    assert set(rows) == set(names)
    lic = {n: rows[n]["license"] for n in names}
    assert lic[names[0]] == "CC BY 2.0" and lic[names[1]] == "CC0" and lic[names[3]] == "CC BY 2.0"
    assert lic[names[2]] == "unknown"
    r = rows[names[4]]
    assert r["source_id"] == "photo1" and r["texture_index"] == 4 and r["cell_size"] == 40
    assert abs(r["score"] - 0.7) < 1e-6 and r["width"] == 112
    assert r["image"].size == (112, 112)
    # the loaders give the same arrays from the folder and from the dataset (streamed)
    from_folder = {t.name: t for t in iter_textures(tmp_path / "tex")}
    from_ds = {t.name: t for t in iter_textures(out, streaming=True)}
    assert set(from_folder) == set(from_ds) == set(names)
    for n in names:
        assert np.array_equal(from_folder[n].image, from_ds[n].image)
        assert from_folder[n].license == from_ds[n].license == lic[n]
    # disjoint shards for parallel workers
    parts = [[t.name for t in iter_textures(out, shard_index=i, num_shards=2)] for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(names) and not set(parts[0]) & set(parts[1])
    pool = TexturePool(out)
    assert len(pool) == 5 and pool[0].image.dtype == np.uint8


def test_textures_dataset_resume_and_bad_files(tmp_path):
    names = make_texture_folder(tmp_path / "tex", 3)
    (tmp_path / "tex" / "zz_broken.jpg").write_bytes(b"nope")
    with pytest.raises(MatSegFormatError, match="zz_broken"):
        build_textures_dataset(tmp_path / "tex", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()  # nothing half-written in place
    out = build_textures_dataset(tmp_path / "tex", tmp_path / "ds", skip_bad=True)
    assert "zz_broken.jpg" in (out / "README.md").read_text()
    assert sum(1 for _ in iter_textures(out)) == len(names)
    # job arrays: two jobs, the last one finalizes
    assert build_textures_dataset(tmp_path / "tex", tmp_path / "ds2", skip_bad=True, shard_index=0,
                                  num_shards=2) is None
    out2 = build_textures_dataset(tmp_path / "tex", tmp_path / "ds2", skip_bad=True, shard_index=1, num_shards=2)
    assert sorted(t.name for t in iter_textures(out2)) == sorted(names)


def test_pbr_dataset_round_trip(tmp_path):
    from datasets import load_dataset

    folders = make_pbr_folder(tmp_path / "pbr")
    out = build_pbr_dataset(tmp_path / "pbr", tmp_path / "ds", require_finished=True)
    card = (out / "README.md").read_text()
    assert "| CC0 | 1 |" in card and "roughness 0.5" in card
    ds = load_dataset(str(out), split="train", streaming=True)
    rows = list(ds)
    assert [r["name"] for r in rows] == folders
    assert [r["license"] for r in rows] == ["CC0", "CC BY 2.0", "unknown"]
    assert rows[0]["albedo"].size == (48, 48) and rows[0]["seed"] == 0
    mats = list(iter_materials(out))
    for name, mat in zip(folders, mats):
        ref = read_pbr_folder(tmp_path / "pbr" / name)
        assert np.array_equal(mat.albedo, ref.albedo) and np.array_equal(mat.height, ref.height)
        assert np.allclose(mat.normal, ref.normal) and np.array_equal(mat.transmission, ref.transmission)
        assert mat.metadata["license"] == ref.metadata["license"]
        assert mat.metadata["recipe"] == json.loads(json.dumps(ref.metadata["recipe"]))
    folder_mats = list(iter_materials(tmp_path / "pbr"))
    assert [m.metadata["name"] for m in folder_mats] == folders


def test_pbr_rows_keep_missing_maps_missing(tmp_path):
    root = tmp_path / "pbr"
    (root / "bare").mkdir(parents=True)
    cv2.imwrite(str(root / "bare" / "OriginColor.jpg"), np.full((16, 16, 3), 90, np.uint8))
    (root / "licenses.json").write_text(json.dumps({"bare": "CC0"}))
    out = build_pbr_dataset(root, tmp_path / "ds")
    from datasets import load_dataset

    row = load_dataset(str(out), split="train")[0]
    assert row["roughness"] is None and row["normal"] is None and row["license"] == "CC0"
    mat = next(iter_materials(out))
    assert np.all(mat.roughness == 0.5) and np.allclose(mat.normal, [0, 0, 1])
    assert material_from_row({"name": "x", "albedo": {"bytes": (root / "bare" / "OriginColor.jpg").read_bytes()}}
                             ).albedo.shape == (16, 16, 3)


def test_shared_textures_and_materials(shared_data, tmp_path):
    out = build_textures_dataset(shared_data / "textures", tmp_path / "tex")
    recs = list(iter_textures(out))
    assert len(recs) == 14 and all(r.cell_size == 40 and 0.5 < r.score < 0.7 for r in recs)
    assert {r.source_id for r in recs} >= {"0a4c64de2e2a98fc", "0a5d2c29a13d083e"}
    out = build_pbr_dataset(shared_data / "pbr_materials", tmp_path / "pbr")
    from datasets import load_dataset

    ds = load_dataset(str(out), split="train")
    assert len(ds) == 10 and sum(ds["is_mix"]) == 3


def test_both_datasets_stream_into_the_2d_generator_sources(tmp_path):
    from matseg_hub.synthetic.sources import SourcePool

    make_texture_folder(tmp_path / "tex", 3)
    tex = build_textures_dataset(tmp_path / "tex", tmp_path / "ds_tex")
    make_pbr_folder(tmp_path / "pbr", 2)
    pbr = build_pbr_dataset(tmp_path / "pbr", tmp_path / "ds_pbr")
    pool = SourcePool.from_hub_dataset(str(tex), streaming=True)
    assert len(pool) == 3
    pool = SourcePool.from_hub_dataset(str(pbr), column="albedo", streaming=True)
    assert len(pool) == 2
    # a built folder given where a folder of images is expected is read as the dataset, not as its preview picture
    assert len(SourcePool.from_folder(tex)) == 3 and len(SourcePool.from_folder(pbr)) == 2
    assert all("preview" not in name for name in SourcePool.from_folder(tex).names)


def test_3d_assets_refuse_a_built_dataset_folder(tmp_path):
    from matseg_hub.scenes3d.scene import assets_from_folders

    make_texture_folder(tmp_path / "tex", 2)
    built = build_textures_dataset(tmp_path / "tex", tmp_path / "ds_tex")
    with pytest.raises(MatSegInputError, match="is a built dataset"):
        assets_from_folders(textures=built)
