"""The plain-Python 3D scene model: determinism, JSON round-trip, validation, assets. No Blender needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.scenes3d.scene import (GENERATOR_VERSION, SCENE_VERSION, PatternLayer, Scene3D, SceneAssets,
                                       Scene3DConfig, assets_from_folders, default_assets, layout_shares,
                                       load_source_image, pattern_image, sample_scene, scene_rng)

SMALL = Scene3DConfig(width=64, height=64, samples=4, pattern_resolution=64)


def test_same_seed_same_scene_and_json():
    a = sample_scene(5, 7, config=SMALL)
    b = sample_scene(5, 7, config=SMALL)
    assert a == b
    assert a.to_json() == b.to_json()
    assert (a.seed, a.index, a.attempt, a.version) == (5, 7, 0, SCENE_VERSION)
    assert a.generator_version == GENERATOR_VERSION
    # a scene file written before the sampler recorded its version still loads (and renders the same)
    old = a.to_dict()
    del old["generator_version"]
    assert Scene3D.from_dict(old).generator_version is None


def test_3d_and_2d_scenes_of_one_seed_draw_different_numbers():
    """SeedSequence([seed, index]) == SeedSequence([seed, index, 0]) (zero padding): the 2D scene (s, i) and the
    3D scene (s, i, attempt 0) used to draw the same random numbers. Each stream now has its own id word."""
    from matseg_hub.synthetic import scenes2d
    from matseg_hub.utils.seeds import STREAMS, stream_rng

    for seed, index in ((0, 0), (3, 5), (7, 1)):
        a = scene_rng(seed, index).random(8)
        b = scenes2d.scene_rng(seed, index).random(8)
        assert not np.allclose(a, b)
        assert not np.allclose(a, scene_rng(seed, index, 1).random(8))
        assert not np.allclose(a, np.random.default_rng(np.random.SeedSequence([seed, index])).random(8))
        # every named stream differs from every other one for the same words
        draws = {name: stream_rng(name, seed, index).random(4).tobytes() for name in STREAMS}
        assert len(set(draws.values())) == len(STREAMS)
    assert scene_rng(3, 5).random(4).tolist() == stream_rng("scene3d", 3, 5, 0).random(4).tolist()

def test_scene_depends_on_seed_index_attempt_not_on_order():
    first = sample_scene(1, 3, config=SMALL).to_json()
    others = [sample_scene(1, i, config=SMALL).to_json() for i in range(3)]
    assert first == sample_scene(1, 3, config=SMALL).to_json()  # drawing other scenes first changes nothing
    assert len({first, *others}) == 4
    assert sample_scene(2, 3, config=SMALL).to_json() != first
    assert sample_scene(1, 3, config=SMALL, attempt=1).to_json() != first


def test_scene_content_follows_config():
    for index in range(8):
        s = sample_scene(0, index, config=Scene3DConfig(width=80, height=48, samples=3, objects=(1, 1),
                                                      materials=(2, 5), occluders=(0, 3), pattern_resolution=64))
        assert 2 <= s.num_materials <= 5
        assert 0 <= len(s.occluders) <= 3
        assert (s.render.width, s.render.height, s.render.samples) == (80, 48, 3)
        obj = s.annotated_objects[0]
        assert len(obj.layout.patterns) == len(obj.layout.materials) - 1
        assert len(s.material_names()) == s.num_materials
        assert s.environment.kind == "sky"  # default assets have no HDRI and no environment photos
        assert all(not o.annotated for o in s.occluders)


def test_num_objects_draws_inside_the_range_not_clipped_to_its_ends():
    """--num-objects 3 5 on the paper preset: every count 3, 4, 5 is drawn, without the pile-up at 3 that clipping
    the authors' draw (half of it a single object) made; the default range keeps the code's draw."""
    from collections import Counter

    config = Scene3DConfig.from_preset("paper", objects=(3, 5), scatter_prob=0.0)
    counts = Counter(len(sample_scene(2, i, config=config).annotated_objects) for i in range(150))
    assert set(counts) == {3, 4, 5}
    assert counts[3] < 0.6 * 150  # clipping gave P(3) = 0.5 + 0.25 * 3/6 + 0.25 * 3/11 = 0.69
    assert min(counts.values()) >= 0.15 * 150


def test_spread_preset_keeps_the_version_2_distribution():
    """Preset "spread" (generator version 2): 1-6 objects set apart on the ground, each with its own 2-5
    materials, 1-8 occluders; every material of every object keeps a share of its surface."""
    config = Scene3DConfig.from_preset("spread", pattern_resolution=64)
    objects, occluders = set(), set()
    for index in range(100):
        s = sample_scene(3, index, config=config)
        objects.add(len(s.objects))
        occluders.add(len(s.occluders))
        assert all(o.annotated and o.layout_from is None for o in s.objects)
        assert s.num_materials <= config.max_scene_materials
        assert s.num_materials >= 2 and len(s.objects[0].layout.materials) >= 2
        names = [o.name for o in s.objects + s.occluders]
        assert len(set(names)) == len(names)
        for obj in s.objects:
            coverages = [float(pattern_image(p).mean()) for p in obj.layout.patterns]
            shares = layout_shares(coverages)
            assert len(shares) == len(obj.layout.materials) and sum(shares) == pytest.approx(1.0)
            assert min(shares) >= 0.03, (index, obj.name, shares)
        # the objects stand apart on the ground (bounding circles), and the camera frames their centre
        spots = [(o.location[0], o.location[1], o.size) for o in s.objects]
        assert all(o.location[2] == 0.0 for o in s.objects)
        for i, (x, y, a) in enumerate(spots):
            for u, v, b in spots[:i]:
                assert np.hypot(x - u, y - v) > 0.25 * (a + b)
    assert objects == set(range(1, 7))
    assert min(occluders) == 1 and max(occluders) >= 7 and occluders <= set(range(1, 9))
    single = sample_scene(3, 0, config=Scene3DConfig.from_preset("single", pattern_resolution=64))
    assert len(single.objects) == 1 and len(single.occluders) <= 3
    with pytest.raises(MatSegInputError, match="unknown 3D scene preset"):
        Scene3DConfig.from_preset("dense")


def test_default_distribution_is_the_authors_main_py():
    """200 seeded plain-data scenes against the probabilities of the authors' main.py (module docstring):
    main objects 1 (P = 0.5 + 0.25/6 + 0.25/11 = 0.564) to 11, sharing one layout of 2-8 materials (P(2) = 0.15 +
    0.85/7 = 0.271, mean 4.55), scattered objects in 20 % of the scenes (1-8), ground 25 %, and the camera of
    RandomlySetCameraPos (R in [40, 100], angle from the vertical (1 - 1.1 u v) * 3.14 / 2, mean 65 degrees)."""
    from matseg_hub.scenes3d.scene import AUTHORS_MAIN_OBJECTS

    config = Scene3DConfig(pattern_resolution=64)
    n = 200
    mains, mats, scattered, grounds, angles, two_plus = [], [], [], [], [], 0
    for index in range(n):
        s = sample_scene(3, index, config=config)
        owner, rest = s.objects[0], s.objects[1:]
        assert s.layout_owners == [owner] and all(o.layout_from == owner.name for o in rest)
        assert all(o.layout.materials == [] and o.annotated and o.anchor == "centre" for o in rest)
        k = len(owner.layout.materials)
        assert s.num_materials == k and len(s.material_names()) == k
        coverages = [float(pattern_image(p).mean()) for p in owner.layout.patterns]
        assert min(layout_shares(coverages)) >= 0.02, (index, coverages)  # every material lands somewhere
        assert owner.layout.extent >= owner.size * 0.999
        mains.append(len(s.objects))
        mats.append(k)
        scattered.append(len(s.occluders))
        grounds.append(s.ground.enabled)
        two_plus += len(s.objects) + len(s.occluders) >= 2
        if len(s.objects) == 1 and 40 <= owner.size <= 60 and owner.location[:2] == (0.0, 0.0):
            assert 0.0 <= owner.location[2] <= owner.size / 2  # lifted by size / 2 * rand()
        assert all(10.0 <= o.size <= 60.0 for o in s.objects)
        for occ in s.occluders:  # farther from the origin than their size (the code's AvoidRad=0 loop)
            assert not occ.annotated and 4.0 <= occ.size <= 100.0
        cam = s.camera
        assert cam.lens == 50.0 and cam.location[0] == 0.0 and cam.rotation[2] == pytest.approx(180.0, abs=0.01)
        assert -9.0 <= cam.rotation[0] <= 90.0  # (1 - 1.1) * 90 degrees: a little past the vertical
        angles.append(cam.rotation[0])
        assert 40.0 - 10.0 <= np.hypot(cam.location[1], cam.location[2]) <= 100.0 + 25.0
        Scene3D.from_json(s.to_json())  # valid and round-trips
    mains, mats, scattered = np.array(mains), np.array(mats), np.array(scattered)
    assert set(mains) <= set(range(1, 12)) and mains.max() >= 9
    assert 0.564 - 0.09 <= np.mean(mains == 1) <= 0.564 + 0.09
    assert set(mats) == set(range(2, 9))
    assert 0.271 - 0.08 <= np.mean(mats == 2) <= 0.271 + 0.08 and abs(mats.mean() - 4.55) <= 0.4
    assert 0.2 - 0.08 <= np.mean(scattered > 0) <= 0.2 + 0.08 and set(scattered) <= set(range(0, 9))
    assert 0.25 - 0.08 <= np.mean(grounds) <= 0.25 + 0.08
    assert abs(np.mean(angles) - 65.2) <= 4.0
    # 2+ objects (main and scattered) in 1 - 0.564 * 0.8 = 55 % of the authors' scenes
    assert 0.549 - 0.09 <= two_plus / n <= 0.549 + 0.09
    assert sum(m.probability for m in AUTHORS_MAIN_OBJECTS) == 1.0


def test_quaternion_quirk_rotation_is_a_rotation():
    from matseg_hub.scenes3d.scene import _euler_matrix, quaternion_quirk_rotation

    rng = np.random.default_rng(0)
    for _ in range(20):
        rot = quaternion_quirk_rotation(rng)
        m = _euler_matrix(*np.radians(rot))
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(m) == pytest.approx(1.0)
    # w, x, y = 2 pi * (0.5, 0.5, 0): a half-turn mix; the same numbers give the same rotation
    assert quaternion_quirk_rotation(np.random.default_rng(4)) == quaternion_quirk_rotation(np.random.default_rng(4))


def test_shared_layout_is_validated():
    d = json.loads(sample_scene(0, 5, config=SMALL).to_json())
    assert len(d["objects"]) >= 2 and d["objects"][1]["layout_from"] == "object0"
    bad = json.loads(json.dumps(d))
    bad["objects"][1]["layout_from"] = "nobody"
    with pytest.raises(MatSegFormatError, match="not an earlier annotated object") as info:
        Scene3D.from_dict(bad)
    assert info.value.field == "objects[1].layout_from"
    bad = json.loads(json.dumps(d))
    bad["objects"][1]["layout"] = d["objects"][0]["layout"]
    with pytest.raises(MatSegFormatError, match="empty layout"):
        Scene3D.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["objects"][1]["anchor"] = "top"
    with pytest.raises(MatSegFormatError, match="unknown anchor"):
        Scene3D.from_dict(bad)
    # the masks are the owner's materials only
    s = Scene3D.from_dict(d)
    assert s.num_materials == len(s.objects[0].layout.materials)


def test_layout_shares():
    assert layout_shares([]) == [1.0]
    assert layout_shares([0.5]) == [0.5, 0.5]
    assert layout_shares([0.5, 1 / 3, 0.25]) == pytest.approx([0.25] * 4)
    assert layout_shares([0.0, 0.5])[1] == 0.0  # an empty map: its material lands nowhere


def test_pattern_maps_reproduce_and_are_not_empty():
    s = sample_scene(0, 2, config=Scene3DConfig(materials=(4, 4), pattern_resolution=64))
    for layer in s.objects[0].layout.patterns:
        m = pattern_image(layer)
        assert m.shape == (64, 64) and m.dtype == np.float32
        assert 0.0 <= m.min() and m.max() <= 1.0
        assert 0.02 < m.mean() < 0.98
        np.testing.assert_array_equal(m, pattern_image(PatternLayer(**json.loads(json.dumps(layer.__dict__)))))


def test_json_round_trip_and_files(tmp_path):
    s = sample_scene(3, 1, config=SMALL)
    back = Scene3D.from_json(s.to_json())
    assert back == s
    assert back.to_dict() == json.loads(s.to_json())
    path = s.save(tmp_path / "scene.json")
    assert Scene3D.load(path) == s
    assert Scene3D.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def _scene_dict():
    return json.loads(sample_scene(0, 0, config=SMALL).to_json())


@pytest.mark.parametrize("edit, field, words", [
    (lambda d: d.update(colour=1), "colour", "unknown field"),
    (lambda d: d.pop("objects"), "objects", "missing required field"),
    (lambda d: d["objects"][0].update(size="big"), "objects[0].size", "expected a finite number"),
    (lambda d: d["objects"][0].update(shape="teapot"), "objects[0].shape", "unknown shape"),
    (lambda d: d["objects"][0]["layout"]["materials"][0].update(kind="wood"),
     "objects[0].layout.materials[0].kind", "unknown material kind"),
    (lambda d: d["objects"][0]["layout"]["materials"][0].update(roughness=2.0),
     "objects[0].layout.materials[0].roughness", "must be in [0, 1]"),
    (lambda d: d["objects"][0]["layout"]["patterns"].clear(), "objects[0].layout.patterns", "need"),
    (lambda d: d["camera"].update(location=[0, 0]), "camera.location", "list of 3"),
    (lambda d: d["render"].update(samples=0), "render.samples", "samples"),
    (lambda d: d["render"].update(width=True), "render.width", "integer"),
    (lambda d: d["environment"].update(kind="hdri", path=None), "environment.path", "needs a path"),
    (lambda d: d.update(version=99), "version", "not supported"),
    (lambda d: [o.update(annotated=False) for o in d["objects"]], "objects", "annotated"),
])
def test_bad_scene_names_the_field(edit, field, words):
    d = _scene_dict()
    edit(d)
    with pytest.raises(MatSegFormatError) as info:
        Scene3D.from_dict(d, path="scene.json")
    assert info.value.field == field
    assert words in str(info.value) and "scene.json" in str(info.value)


def test_bad_json_text_and_missing_file(tmp_path):
    with pytest.raises(MatSegFormatError, match="invalid scene JSON"):
        Scene3D.from_json("{not json")
    with pytest.raises(MatSegFormatError, match="not found"):
        Scene3D.load(tmp_path / "missing.json")


def test_bad_arguments():
    with pytest.raises(MatSegInputError):
        scene_rng(-1, 0)
    with pytest.raises(MatSegInputError):
        Scene3DConfig(materials=(3, 2))
    with pytest.raises(MatSegInputError):
        Scene3DConfig(primitives=("teapot",))
    with pytest.raises(MatSegInputError):
        SceneAssets(pattern_sources=[])
    with pytest.raises(MatSegInputError, match="unknown built-in photo"):
        load_source_image("skimage:nothing")
    with pytest.raises(MatSegInputError, match="does not exist"):
        assets_from_folders(natural_images="/nonexistent/folder")


def test_default_assets_load():
    assets = default_assets()
    for source in assets.pattern_sources:
        im = load_source_image(source)
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3


def _write_png(path, array):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def test_assets_from_generated_folders(tmp_path):
    rng = np.random.default_rng(0)
    _write_png(tmp_path / "nat" / "a.png", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    _write_png(tmp_path / "nat" / "sub" / "b.jpg", rng.integers(0, 255, (50, 30, 3), dtype=np.uint8))
    _write_png(tmp_path / "pbr" / "wood" / "OriginColor.jpg", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "objs").mkdir()
    (tmp_path / "objs" / "thing.gltf").write_text("{}")
    assets = assets_from_folders(natural_images=tmp_path / "nat", pbr=tmp_path / "pbr", objects=tmp_path / "objs",
                                 builtin=False, licenses={str((tmp_path / "nat").resolve()): "CC-BY 4.0"})
    assert [p.split("/")[-1] for p in assets.pattern_sources] == ["a.png", "b.jpg"]
    assert assets.environment_images == assets.pattern_sources
    assert len(assets.pbr_folders) == 1 and assets.objects[0].endswith("thing.gltf")
    assert assets.license_of(assets.pattern_sources[1]) == "CC-BY 4.0"
    config = Scene3DConfig(gltf_prob=1.0, pbr_prob=1.0, pattern_resolution=32)
    s = sample_scene(0, 0, assets, config)
    assert s.objects[0].shape == "gltf" and s.objects[0].path.endswith("thing.gltf")
    assert {m.kind for m in s.objects[0].layout.materials} == {"pbr"}
    assert any(lic == "CC-BY 4.0" for lic in s.asset_licenses().values())


def test_assets_from_shared_data(shared_data):
    assets = assets_from_folders(natural_images=shared_data / "natural_images", textures=shared_data / "textures",
                                 pbr=shared_data / "pbr_materials", objects=shared_data / "objects")
    assert len(assets.objects) == 2 and len(assets.pbr_folders) == 10
    s = sample_scene(0, 0, assets, Scene3DConfig(gltf_prob=1.0, pattern_resolution=64))
    assert s.objects[0].shape == "gltf"
    assert Scene3D.from_json(s.to_json()) == s


def test_every_builtin_asset_has_a_licence():
    s = sample_scene(0, 4, config=Scene3DConfig(materials=(5, 5), pattern_resolution=32))
    licenses = s.asset_licenses()
    assert licenses and all(v.startswith("scikit-image sample data: ") and not v.endswith("unknown")
                            for v in licenses.values())


def test_cli_preset_and_ranges_make_the_config():
    """``matseg generate 3d`` builds its config from ``--preset``; a range given on the command line replaces only
    that range, and the paper preset's ranges are the authors' (1-11 objects, 2-8 materials), not older defaults."""
    import argparse

    from matseg_hub.cli import generate_3d

    parser = argparse.ArgumentParser()
    generate_3d.register(parser)
    paper = generate_3d.scene_config(parser.parse_args(["--resolution", "64"]))
    assert paper == Scene3DConfig(width=64, height=64)
    assert (paper.objects, paper.materials, paper.occluders) == ((1, 11), (2, 8), (1, 8))
    spread = generate_3d.scene_config(parser.parse_args(["--preset", "spread", "--materials", "3", "4"]))
    assert spread.style == "spread" and spread.materials == (3, 4) and spread.objects == (1, 6)
    with pytest.raises(MatSegInputError, match="unknown 3D scene preset 'nope'"):
        generate_3d.scene_config(parser.parse_args(["--preset", "nope"]))
    with pytest.raises(MatSegInputError, match="must start at 2 or more for the paper preset"):
        generate_3d.scene_config(parser.parse_args(["--materials", "1", "1"]))
