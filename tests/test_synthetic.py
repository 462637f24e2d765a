"""The official scene layout: write/read round trip, atomic and resumable writing, nested scenes, the authors' data."""

from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from matseg_hub.errors import MatSegError, MatSegFormatError, MatSegInputError
from matseg_hub.synthetic.layout import (SyntheticScene, encode_scene, is_complete_scene, iter_scene_folders,
                                         preview_grid, read_scene, remove_stale_partials, write_scene)
from matseg_hub.synthetic.rows import row_to_scene, scene_features, scene_row, scene_row_from_folder


def _scene(h=40, w=56, k=3, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.random((k + 1, h, w)).astype(np.float32)
    weights = raw / raw.sum(0, keepdims=True)
    masks = weights[:k]
    import cv2

    rgb = cv2.resize(rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_LINEAR)  # smooth: JPEG keeps it close
    return SyntheticScene(rgb=rgb, masks=masks, annotated=np.clip(masks.sum(0), 0, 1),
                          metadata={"seed": seed, "index": 5, "generator": "test"})


def test_write_read_round_trip(tmp_path):
    scene = _scene()
    folder = write_scene(tmp_path / "0", scene)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["Finished.txt", "ObjectMaskOcluded.png", "RGB__RGB.jpg", "mask001.png", "mask002.png",
                     "mask003.png", "scene_metadata.json"]
    back = read_scene(folder)
    assert back.rgb.shape == scene.rgb.shape and back.rgb.dtype == np.uint8
    assert np.abs(back.rgb.astype(int) - scene.rgb.astype(int)).mean() < 4  # JPEG quality 95
    np.testing.assert_allclose(back.masks, scene.masks, atol=0.5 / 255 + 1e-6)  # PNG, round(255 * m)
    np.testing.assert_allclose(back.annotated, scene.annotated, atol=0.5 / 255 + 1e-6)
    assert back.metadata["seed"] == 0 and back.metadata["index"] == 5
    assert back.metadata["mask_files"] == ["mask001.png", "mask002.png", "mask003.png"]
    # a second write of the same scene gives the same bytes
    write_scene(tmp_path / "again", scene)
    for name in names:
        assert (tmp_path / "0" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_encoding_is_deterministic():
    assert encode_scene(_scene()) == encode_scene(_scene())


def test_extra_files_and_camera_metadata(tmp_path):
    camera = {"name": "Camera", "Focal Length": 50.0}
    folder = write_scene(tmp_path / "s", _scene(), extra_files={"CameraParameters.json": json.dumps(camera).encode()})
    assert read_scene(folder).metadata["camera"] == camera
    with pytest.raises(MatSegInputError):
        write_scene(tmp_path / "t", _scene(), extra_files={"Finished.txt": b""})


def test_unfinished_folder_is_redone_and_subscenes_are_kept(tmp_path):
    folder = tmp_path / "7"
    folder.mkdir()
    (folder / "RGB__RGB.jpg").write_bytes(b"half written")
    (folder / "mask001.png").write_bytes(b"x")
    (folder / "mask009.png").write_bytes(b"stale")
    write_scene(folder / "7", _scene(seed=1))  # a finished sub-scene inside
    assert not is_complete_scene(folder)
    write_scene(folder, _scene(k=2))
    assert is_complete_scene(folder)
    assert sorted(p.name for p in folder.glob("mask*.png")) == ["mask001.png", "mask002.png"]
    assert read_scene(folder).num_materials == 2
    assert read_scene(folder / "7").num_materials == 3
    assert [p.relative_to(tmp_path).as_posix() for p in iter_scene_folders(tmp_path)] == ["7", "7/7"]
    with pytest.raises(FileExistsError):
        write_scene(folder, _scene(), overwrite=False)


def test_disk_full_leaves_nothing_marked_finished(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(MatSegError, match="No space left"):
        write_scene(tmp_path / "0", _scene())
    monkeypatch.undo()
    assert not (tmp_path / "0").exists()
    assert not any(tmp_path.iterdir())  # the temporary sibling is gone too
    # disk full while updating an existing (unfinished) folder
    (tmp_path / "1").mkdir()
    import matseg_hub.synthetic.layout as synthetic

    calls = []

    def full_on_third(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    real = synthetic.atomic_write_bytes
    monkeypatch.setattr(synthetic, "atomic_write_bytes", full_on_third)
    with pytest.raises(MatSegError):
        write_scene(tmp_path / "1", _scene())
    assert not is_complete_scene(tmp_path / "1")


def test_killed_run_leftovers_are_ignored_and_cleaned(tmp_path):
    stale = tmp_path / ".3.abcd.partial"  # what a run killed inside write_scene leaves
    stale.mkdir()
    (stale / "Finished.txt").write_bytes(b"")
    other = tmp_path / ".4.efgh.partial"  # another job's scene: not ours to clean
    other.mkdir()
    (tmp_path / "2").mkdir()  # a folder without Finished.txt
    write_scene(tmp_path / "1", _scene())
    assert [p.name for p in iter_scene_folders(tmp_path)] == ["1"]
    assert remove_stale_partials(tmp_path, ["3"]) == 1
    assert not stale.exists() and other.exists()
    assert remove_stale_partials(tmp_path) == 1 and not other.exists()


def test_read_errors_name_the_file(tmp_path):
    folder = write_scene(tmp_path / "0", _scene())
    import cv2

    cv2.imwrite(str(folder / "mask002.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(MatSegFormatError, match="mask002.png"):
        read_scene(folder)
    (folder / "Finished.txt").unlink()
    with pytest.raises(MatSegFormatError, match="Finished.txt"):
        read_scene(folder)
    with pytest.raises(MatSegFormatError, match="not found"):
        read_scene(tmp_path / "missing")
    with pytest.raises(MatSegInputError):
        list(iter_scene_folders(tmp_path / "missing"))


class _Boom:
    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise AssertionError("the pickle was loaded")


def test_pickles_are_never_loaded_unless_allowed(tmp_path):
    folder = write_scene(tmp_path / "0", _scene())
    (folder / "scene_data.pkl").write_bytes(pickle.dumps(_Boom()))
    meta = read_scene(folder).metadata
    assert meta["pickles"] == ["scene_data.pkl"] and "pickle_data" not in meta
    assert "pickle" not in json.loads(scene_row_from_folder(folder)["metadata"])
    with pytest.raises(AssertionError, match="was loaded"):
        read_scene(folder, allow_pickle=True)


def test_reference_2d_mask_names_are_read_in_numeric_order(tmp_path):
    import cv2

    folder = tmp_path / "0"
    folder.mkdir()
    cv2.imwrite(str(folder / "RGB__RGB.jpg"), np.zeros((8, 8, 3), np.uint8))
    for k in (0, 1, 10, 2):
        cv2.imwrite(str(folder / f"mask{k}.png"), np.full((8, 8), k, np.uint8))
    (folder / "Finished.txt").write_bytes(b"")
    scene = read_scene(folder)  # no ObjectMaskOcluded.png: the union of the masks
    assert [round(float(m[0, 0]) * 255) for m in scene.masks] == [0, 1, 2, 10]
    np.testing.assert_allclose(scene.annotated, np.clip(scene.masks.sum(0), 0, 1))


def test_rows_round_trip():
    scene = _scene()
    row = scene_row(scene, source="test")
    features = scene_features()
    encoded = features.encode_example(row)
    back = row_to_scene(features.decode_example(encoded))
    np.testing.assert_allclose(back.masks, scene.masks, atol=0.5 / 255 + 1e-6)
    assert row["num_materials"] == 3 and row["seed"] == 0 and row["index"] == 5


def test_preview_grid_shape():
    grid = preview_grid([_scene(), _scene(seed=1), _scene(seed=2)], tile=32, columns=2)
    assert grid.shape == (64, 2 * 3 * 32, 3) and grid.dtype == np.uint8


def test_authors_published_synthetic_sample(shared_data, tmp_path):
    root = shared_data / "matseg_synthetic_sample"
    folders = list(iter_scene_folders(root))
    rel = [f.relative_to(root).as_posix() for f in folders]
    assert rel[:2] == ["1", "1/1"] and len(folders) == 12  # six scenes, each with a nested sub-scene
    scene = read_scene(folders[0])
    assert scene.rgb.shape == (1600, 1600, 3) and scene.masks.shape == (4, 1600, 1600)
    assert scene.masks.dtype == np.float32 and 0 <= scene.masks.min() and scene.masks.max() <= 1
    assert scene.metadata["camera"]["name"] == "Camera"
    assert "scene_data.pkl" in scene.metadata["pickles"] and "pickle_data" not in scene.metadata
    assert scene.metadata["flags"] == ["NoGroundPlane"]
    # through our writer and back: masks and annotated region exactly (8-bit PNG), camera kept
    camera = (folders[0] / "CameraParameters.json").read_bytes()
    out = write_scene(tmp_path / "1", scene, extra_files={"CameraParameters.json": camera})
    back = read_scene(out)
    assert np.array_equal(back.masks, scene.masks) and np.array_equal(back.annotated, scene.annotated)
    assert back.metadata["camera"] == scene.metadata["camera"]


def _write_mask(path, array):
    import cv2

    assert cv2.imwrite(str(path), array)


def test_bad_masks_are_caught_by_the_shared_check(tmp_path):
    from matseg_hub.synthetic.layout import check_scene_folder

    garbage = write_scene(tmp_path / "garbage", _scene())
    (garbage / "mask002.png").write_bytes(b"\x89PNG not really")
    small = write_scene(tmp_path / "small", _scene(h=40, w=56))
    _write_mask(small / "mask001.png", np.zeros((20, 20), np.uint8))
    for folder, name in ((garbage, "mask002.png"), (small, "mask001.png")):
        with pytest.raises(MatSegFormatError, match=name):
            check_scene_folder(folder)
        with pytest.raises(MatSegFormatError, match=name):
            scene_row_from_folder(folder)
        with pytest.raises(MatSegFormatError, match=name):
            read_scene(folder)
    # a truncated mask whose header is intact: caught when the rows are decoded in full (packaging)
    cut = write_scene(tmp_path / "cut", _scene())
    data = (cut / "mask001.png").read_bytes()
    (cut / "mask001.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MatSegFormatError, match="mask001.png"):
        scene_row_from_folder(cut, decode=True)


def test_16bit_masks_read_as_fractions_on_every_path(tmp_path):
    folder = write_scene(tmp_path / "s", _scene(k=1))
    _write_mask(folder / "mask001.png", np.full((40, 56), 32767, np.uint16))
    assert np.allclose(read_scene(folder).masks[0], 32767 / 65535)
    row = scene_row_from_folder(folder, root=tmp_path)
    assert np.allclose(row_to_scene(row).masks[0], 32767 / 65535)
    decoded = scene_features().decode_example(scene_features().encode_example(row))  # PIL "I;16" images
    assert np.allclose(row_to_scene(decoded).masks[0], 32767 / 65535)


def test_row_metadata_has_no_absolute_paths(tmp_path):
    folder = write_scene(tmp_path / "renders" / "3" / "0", _scene())
    row = scene_row_from_folder(folder, root=tmp_path / "renders")
    meta = json.loads(row["metadata"])
    assert meta["folder"] == "3/0" and str(tmp_path) not in row["metadata"] and str(tmp_path) not in row["source"]
    assert json.loads(scene_row_from_folder(folder)["metadata"])["folder"] == "0"
    assert read_scene(folder, root=tmp_path).metadata["folder"] == "renders/3/0"


def test_license_column():
    from matseg_hub.synthetic.rows import scene_license

    assert scene_license({"license": "CC-BY-4.0"}) == "CC-BY-4.0"
    assert scene_license({"licences": {"a.glb": "CC0", "b.hdr": "", "c.png": "CC-BY-4.0"}}) == \
        "CC-BY-4.0; CC0; unknown"
    assert scene_license({"licences": {}}) == "cc0-1.0"  # a 3D render that uses no third-party asset
    assert scene_license({"seed": 3}) == "unknown"  # nothing recorded (the authors' data, other tools)
    meta = {"background": {"source": "skimage:coffee.png"}, "materials": [{"source": "photos/a.jpg"}]}
    assert scene_license(meta) == "scikit-image sample data: CC0 (Rachel Michetti); unknown"
    assert scene_license(meta, "CC-BY-4.0") == "CC-BY-4.0; scikit-image sample data: CC0 (Rachel Michetti)"
    row = scene_row(_scene(), source="test")
    assert row["license"] == "unknown" and set(row) == set(scene_features())


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (257, 128), (600, 901)])
def test_mask_png_bytes_decode_identically_in_opencv_and_pillow(shape):
    import io

    import cv2
    from PIL import Image

    from matseg_hub.utils.images import encode_mask_png

    rng = np.random.default_rng(shape[0])
    mask = rng.integers(0, 256, shape, dtype=np.uint8)
    mask[: shape[0] // 2] = 255  # long runs, like real masks
    data = encode_mask_png(mask)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), mask)
    image = Image.open(io.BytesIO(data))
    image.load()  # Pillow checks every chunk's CRC
    assert image.mode == "L" and np.array_equal(np.asarray(image), mask)
    with pytest.raises(MatSegInputError):
        encode_mask_png(np.zeros((4, 4, 3), np.uint8))


def test_mask_deflate_is_the_standard_zlib_stream_whatever_the_library():
    import zlib

    from matseg_hub.utils.images import _deflate_rle

    rng = np.random.default_rng(7)
    for data in (bytes(5000), b"\xff" * 3073, rng.integers(0, 4, 20000, dtype=np.uint8).tobytes() * 3):
        standard = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        expected = standard.compress(data) + standard.flush()
        # zlib-ng when installed, the standard library otherwise: the same bytes, every call
        assert {_deflate_rle(data) for _ in range(20)} == {expected}
        assert zlib.decompress(expected) == data
