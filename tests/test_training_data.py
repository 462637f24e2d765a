"""Training data sources and loader settings: generated scenes stay arrays (no image round trip), a Parquet
dataset is read through its encoded rows, pinned memory on GPUs, SyncBatchNorm for multi-GPU runs."""

from __future__ import annotations

import numpy as np
import torch

from matseg_hub.synthetic.scenes2d import SceneConfig, generate_scene
from matseg_hub.synthetic.sources import SceneSources
from matseg_hub.training.config import load_config
from matseg_hub.training.data import _row_arrays, build_loader, build_source
from matseg_hub.training.model import convert_sync_batchnorm

TINY = ["--data_sources", "[{type: scenes2d, weight: 1, min_size: 64, max_size: 96, max_side: 128}]",
        "--min_size", "64", "--max_size", "64", "--max_pixels", "8192", "--max_batch_size", "2", "--num_workers", "0"]


def test_generated_scenes_reach_the_batches_without_jpeg_round_trip():
    """The training stream used to encode every generated scene to JPEG/PNG and decode it again: the RGB the
    model saw was the JPEG's, not the scene's."""
    source = build_source({"type": "scenes2d", "seed": 4, "min_size": 64, "max_size": 96, "max_side": 128})
    row = next(iter(source))
    rgb, masks, ann = _row_arrays(row)
    scene = generate_scene(4, 0, SceneSources.builtin(max_side=128), SceneConfig(min_size=64, max_size=96))
    assert isinstance(row["image"], np.ndarray)
    assert np.array_equal(rgb, scene.rgb)  # bit-exact: no lossy encoding
    assert np.abs(masks - scene.masks).max() <= 0.5 / 255 + 1e-6  # 8-bit masks, as the encoded rows have
    assert np.abs(ann - scene.annotated).max() <= 0.5 / 255 + 1e-6


def test_parquet_dataset_source_reads_encoded_rows(tmp_path):
    from matseg_hub.synthetic.dataset import generate_parquet

    config = SceneConfig(size=(64, 80))
    out = generate_parquet(tmp_path / "ds", 2, seed=6, config=config, preview_count=0)
    rows = list(build_source({"type": "hub", "path": str(out)}))
    assert len(rows) == 2
    by_index = {int(r["index"]): r for r in rows}
    rgb, masks, ann = _row_arrays(by_index[1])
    scene = generate_scene(6, 1, None, config)
    assert rgb.shape == (64, 80, 3) and masks.shape == scene.masks.shape
    assert np.abs(rgb.astype(int) - scene.rgb.astype(int)).mean() < 8  # JPEG of the same scene
    assert np.abs(masks - scene.masks).max() <= 0.5 / 255 + 1e-6  # PNG masks: lossless 8-bit


def test_pin_memory_follows_the_device():
    cfg = load_config(None, TINY)
    assert build_loader(cfg).pin_memory is False
    loader = build_loader(cfg, pin_memory=True)
    assert loader.pin_memory is True and loader._loader().pin_memory is True


def _model():
    from matseg_hub.models.matseg import MatSegConfig, MatSegModel

    return MatSegModel(MatSegConfig.from_convnext_size("tiny", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64],
                                                       descriptor_dim=8))


def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def test_sync_batchnorm_for_multi_gpu_runs_only():
    bn = torch.nn.BatchNorm2d
    n = _count(_model(), bn)
    assert n > 0
    synced = convert_sync_batchnorm(_model(), num_processes=2, device_type="cuda")
    assert _count(synced, torch.nn.SyncBatchNorm) == n
    assert _count(synced, bn) == 0  # SyncBatchNorm is not a BatchNorm2d
    for kwargs in (dict(num_processes=1, device_type="cuda"), dict(num_processes=2, device_type="cpu"),
                   dict(num_processes=4, device_type="cuda", enabled=False)):
        assert _count(convert_sync_batchnorm(_model(), **kwargs), torch.nn.SyncBatchNorm) == 0, kwargs
    assert load_config(None, ["--sync_batchnorm", "false"]).sync_batchnorm is False
