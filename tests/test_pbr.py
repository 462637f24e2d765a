"""PBR materials: invariants of generated maps, normals vs height, seeding, mixing, the folder layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.materials.pbr import (MAP_DEFAULTS, PBRMaterial, decode_normal, encode_normal, list_pbr_folders,
                                      mix_materials, normal_from_height, read_pbr_folder, texture_to_pbr,
                                      write_pbr_folder)


def make_texture(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(128, 60, (size, size, 3)), (0, 0), 2)
    return np.clip(base, 0, 255).astype(np.uint8)


def check_material(m: PBRMaterial, facing_up: bool = True) -> None:
    m.validate()
    h, w = m.shape
    assert m.albedo.dtype == np.uint8 and m.albedo.shape == (h, w, 3)
    for name in ("roughness", "metallic", "height", "transmission"):
        a = getattr(m, name)
        assert a.dtype == np.float32 and a.shape == (h, w) and a.min() >= 0 and a.max() <= 1, name
    assert m.normal.dtype == np.float32 and m.normal.shape == (h, w, 3)
    np.testing.assert_allclose(np.linalg.norm(m.normal, axis=-1), 1, atol=1e-5)
    if facing_up:  # generated normals; scanned JPEG normal maps may hold a few z <= 0 pixels
        assert (m.normal[..., 2] > 0).all()


@pytest.mark.parametrize("seed", range(12))
def test_generated_maps_ranges_and_normals_consistent_with_height(seed):
    m = texture_to_pbr(make_texture(48, seed), seed=seed, source="t.jpg", license="CC0")
    check_material(m)
    assert m.metadata["seed"] == seed and m.metadata["source"] == "t.jpg" and m.metadata["license"] == "CC0"
    k = m.metadata["recipe"]["normal_strength"]
    d_rows, d_cols = np.gradient(m.height.astype(np.float64))
    n = m.normal.astype(np.float64)
    np.testing.assert_allclose(n[..., 0] / n[..., 2], -k * d_cols, atol=1e-4)
    np.testing.assert_allclose(n[..., 1] / n[..., 2], -k * d_rows, atol=1e-4)


def test_seeded_and_deterministic():
    tex = make_texture()
    a, b = texture_to_pbr(tex, seed=5), texture_to_pbr(tex, seed=5)
    for name in ("albedo", "roughness", "metallic", "height", "normal", "transmission"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    others = [texture_to_pbr(tex, seed=s) for s in range(6, 12)]
    assert any(not np.array_equal(a.roughness, o.roughness) for o in others)
    with pytest.raises(MatSegInputError):
        texture_to_pbr(tex)  # no rng/seed
    with pytest.raises(MatSegInputError):
        texture_to_pbr(tex[:, :, 0], seed=1)


def test_without_augmentation_albedo_is_the_texture_unless_recoloured():
    tex = make_texture()
    for s in range(10):
        m = texture_to_pbr(tex, seed=s, augment=False)
        if not m.metadata["recipe"].get("albedo_hue"):
            assert np.array_equal(m.albedo, tex)


def test_normal_encoding_round_trip_and_flat_height():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(8, 8, 3)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.1
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    back = decode_normal(encode_normal(n))
    assert np.degrees(np.arccos(np.clip((back * n).sum(-1), -1, 1))).max() < 1.0
    flat = normal_from_height(np.zeros((5, 5)))
    assert np.array_equal(flat, np.broadcast_to(np.array([0, 0, 1], np.float32), (5, 5, 3)))


def test_mixing_modes():
    a = texture_to_pbr(make_texture(64, 1), seed=1, license="CC0")
    b = texture_to_pbr(make_texture(32, 2), seed=2, license="CC BY 2.0")  # other size: resized
    first = mix_materials([a, b], seed=0, mode="material", weights=[1, 0])
    assert np.array_equal(first.albedo, a.albedo) and np.allclose(first.roughness, a.roughness)
    assert first.metadata["license"] == "CC BY 2.0 AND CC0"
    mx = mix_materials([a, b], seed=0, mode="max")
    b_rough = cv2.resize(b.roughness, (64, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(mx.roughness, np.maximum(a.roughness, b_rough), atol=1e-6)
    prop = mix_materials([a, b], seed=0, mode="property")
    w = prop.metadata["recipe"]["weights"]
    assert len({round(v[0], 6) for v in w.values()}) > 1  # a weight per property
    for m in (first, mx, prop, mix_materials([a, b, a], seed=3)):
        check_material(m)
        assert m.shape == (64, 64)
    same = [mix_materials([a, b], seed=9) for _ in range(2)]
    assert np.array_equal(same[0].normal, same[1].normal)
    with pytest.raises(MatSegInputError):
        mix_materials([a], seed=0)
    with pytest.raises(MatSegInputError):
        mix_materials([a, b], seed=0, mode="average")


def test_folder_round_trip(tmp_path):
    m = texture_to_pbr(make_texture(64, 3), seed=3, source="tex.jpg", license="CC BY 2.0")
    m.transmission[:] = np.linspace(0, 1, 64, dtype=np.float32)[None, :]
    m.ambient_color = m.albedo.copy()
    folder = write_pbr_folder(m, tmp_path / "mat")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["AmbientColor.jpg", "Finished.txt", "Height.jpg", "Metallic.jpg", "Normal.jpg",
                     "OriginColor.jpg", "Roughness.jpg", "Transmission.jpg", "material.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["mat"]  # no temporary leftovers
    back = read_pbr_folder(folder, require_finished=True)
    check_material(back)
    assert np.abs(back.albedo.astype(int) - m.albedo.astype(int)).mean() < 3
    for name in ("roughness", "metallic", "height", "transmission"):
        assert np.abs(getattr(back, name) - getattr(m, name)).mean() < 0.02, name
    assert np.degrees(np.arccos(np.clip((back.normal * m.normal).sum(-1), -1, 1))).mean() < 3
    assert back.metadata["license"] == "CC BY 2.0" and back.metadata["seed"] == 3 and back.metadata["missing"] == []
    # overwriting replaces the folder; opaque materials have no Transmission map
    m.transmission[:] = 0
    write_pbr_folder(m, folder)
    assert not (folder / "Transmission.jpg").exists()


def test_missing_maps_take_documented_defaults(tmp_path):
    folder = tmp_path / "only_albedo"
    folder.mkdir()
    cv2.imwrite(str(folder / "OriginColor.jpg"), make_texture(16))
    m = read_pbr_folder(folder)
    check_material(m)
    for name, value in MAP_DEFAULTS.items():
        assert np.all(getattr(m, name) == np.float32(value)), name
    assert np.allclose(m.normal, [0, 0, 1])
    assert set(m.metadata["missing"]) == {"roughness", "metallic", "height", "transmission", "normal"}
    assert m.metadata["license"] == "unknown"
    with pytest.raises(MatSegFormatError, match="unfinished"):
        read_pbr_folder(folder, require_finished=True)
    # the authors' Turn_Texture_To_PBR names the albedo Color.jpg; heights of another size are resized
    other = tmp_path / "color_name"
    other.mkdir()
    cv2.imwrite(str(other / "Color.jpg"), make_texture(16))
    cv2.imwrite(str(other / "Height.png"), np.full((8, 8), 65535, np.uint16))
    m2 = read_pbr_folder(other)
    assert m2.height.shape == (16, 16) and np.allclose(m2.height, 1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MatSegFormatError, match="albedo"):
        read_pbr_folder(empty)
    (folder / "Roughness.jpg").write_bytes(b"garbage")
    with pytest.raises(MatSegFormatError, match="Roughness"):
        read_pbr_folder(folder)
    assert [p.name for p in list_pbr_folders(tmp_path)] == ["color_name", "only_albedo"]


def test_reads_the_shared_materials(shared_data):
    folders = list_pbr_folders(shared_data / "pbr_materials")
    assert len(folders) == 10
    for f in folders[:4] + folders[-2:]:
        m = read_pbr_folder(f)
        check_material(m, facing_up=False)
        assert "albedo" not in m.metadata["missing"]
    mixed = read_pbr_folder(folders[-1], require_finished=True)
    assert mixed.metadata["missing"] == ["transmission"]


class _ListPool:
    """A minimal texture pool (``len``, ``pool[i]``); ``None`` entries are unreadable."""

    def __init__(self, images):
        self.images = images
        self.source = "list"

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from types import SimpleNamespace

        if self.images[i] is None:
            raise MatSegFormatError("unreadable", path=f"t{i}.jpg")
        return SimpleNamespace(image=self.images[i], name=f"t{i}_Texture.jpg", license="CC0")


def test_mixes_use_two_different_textures_and_skip_unreadable_ones():
    from matseg_hub.materials.pbr_generation import material_for_item

    two = _ListPool([make_texture(32, 0), make_texture(32, 1)])
    for item in range(20):  # rng.integers(0, 2, 2) picked the same texture twice in about half of them
        m = material_for_item(two, 0, item, mix_ratio=1.0)
        assert sorted(m.metadata["source"]) == ["t0_Texture.jpg", "t1_Texture.jpg"], item
    one = _ListPool([make_texture(32, 0)])  # a single texture: no mix of it with itself
    assert not material_for_item(one, 0, 0, mix_ratio=1.0).metadata["name"].startswith("Merge_")
    holey = _ListPool([None, make_texture(32, 1), None, make_texture(32, 3)])
    for item in range(10):
        m = material_for_item(holey, 5, item, mix_ratio=0.5)
        sources = m.metadata["source"] if isinstance(m.metadata["source"], list) else [m.metadata["source"]]
        assert set(sources) <= {"t1_Texture.jpg", "t3_Texture.jpg"} and len(set(sources)) == len(sources)
        again = material_for_item(holey, 5, item, mix_ratio=0.5)
        assert np.array_equal(m.albedo, again.albedo)
    with pytest.raises(MatSegInputError, match="can be read"):
        material_for_item(_ListPool([None, None]), 0, 0)
