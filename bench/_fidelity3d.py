#!/usr/bin/env python3
"""3D scene statistics against the authors' Blender script (issue #18, 3D half): objects and visible materials.

    python bench/_fidelity3d.py                     # 20 scenes, 256 px, 8 samples (seed 0)
    python bench/_fidelity3d.py --num 40 --size 128

``bench/bench_fidelity.py`` imports :func:`fidelity_3d_rows` and prints its rows after the 2D table.

Ours: ``generate_3d`` with the default ``Scene3DConfig`` (the authors' distribution) on the shared assets
(``../shared/data``: natural images as phase-map sources and environments, textures, PBR folders, the two glTF
objects; the default built-in assets when the folder is absent), rendered into
``bench/_work/fidelity3d/seed<seed>-<size>px-<samples>spp/`` (resumable: a rerun only renders what is missing).
Counted per scene from the written scene folders: main (annotated) objects and scattered objects from
``scene3d.json``, visible materials from the masks (``maskNNN.png`` above 0.5 on at least 0.1 % of the pixels, what
the renderer keeps), the annotated fraction from ``ObjectMaskOcluded.png``, redraws from ``scene_metadata.json``.

The authors' side has two columns:

* ``authors' code``: the distribution read from ``main.py`` / ``ObjectsHandling.py`` / ``MaterialMapping.py`` of
  ``sagieppel/MatSeg-Synthethic-Dataset-Generation-Script`` (CC0), worked out exactly (no Blender run);
* ``authors' scenes``: the twelve released scenes in ``../shared/data/matseg_synthetic_sample`` (their renders):
  mask files per scene, masks visible as above, annotated fraction. Their object counts are not recorded there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
WORK = HERE / "_work" / "fidelity3d"
VISIBLE_FRACTION = 0.001  # matseg_hub.scenes3d.render.MIN_VISIBLE_FRACTION

# --- the authors' distribution, worked out from their code (module docstring of matseg_hub.scenes3d.scene) ------
P_MAIN = {1: 0.5 + 0.25 / 6 + 0.25 / 11, **{k: 0.25 / 6 + 0.25 / 11 for k in range(2, 7)},
          **{k: 0.25 / 11 for k in range(7, 12)}}
MEAN_MAIN = sum(k * p for k, p in P_MAIN.items())  # 0.5 * 1 + 0.25 * 3.5 + 0.25 * 6 = 2.875
P_SCATTER = 0.2
MEAN_SCATTER = 4.5  # randint(8) + 1
P_TWO_PLUS = 1.0 - P_MAIN[1] * (1.0 - P_SCATTER)
P_MATS = {2: 0.15 + 0.85 / 7, **{k: 0.85 / 7 for k in range(3, 9)}}
MEAN_MATS = sum(k * p for k, p in P_MATS.items())  # 0.15 * 2 + 0.85 * 5 = 4.55


def _hist(values: List[int]) -> str:
    if not values:
        return "-"
    u, c = np.unique(values, return_counts=True)
    return " ".join(f"{int(a)}:{int(b)}" for a, b in zip(u, c))


def _code_hist(p: Dict[int, float]) -> str:
    return " ".join(f"{k}:{v:.0%}" for k, v in p.items())


def _read_masks(folder: Path):
    from matseg_hub.synthetic.layout import read_scene

    s = read_scene(folder)
    return s.masks, s.annotated, s.metadata


def _visible(masks: np.ndarray) -> int:
    k, h, w = masks.shape
    need = max(4, int(round(VISIBLE_FRACTION * h * w)))
    return int(sum(np.count_nonzero(m >= 0.5) >= need - 2 for m in masks))  # 8-bit rounding at the 0.5 edge


def authors_sample_stats(root: Path = SHARED / "matseg_synthetic_sample") -> Optional[Dict[str, List[float]]]:
    """Mask files, visible masks and annotated fraction of the authors' released scenes (None when absent)."""
    from matseg_hub.synthetic.layout import iter_scene_folders

    if not root.is_dir():
        return None
    files, visible, annotated = [], [], []
    for folder in iter_scene_folders(root):
        masks, ann, _ = _read_masks(folder)
        files.append(int(masks.shape[0]))
        visible.append(_visible(masks))
        annotated.append(float(ann.mean()))
    return {"files": files, "visible": visible, "annotated": annotated} if files else None


def _assets():
    from matseg_hub.scenes3d.scene import assets_from_folders, default_assets

    if not SHARED.is_dir():
        return default_assets(), "built-in photos, primitives"
    assets = assets_from_folders(natural_images=SHARED / "natural_images", textures=SHARED / "textures",
                                 pbr=SHARED / "pbr_materials", objects=SHARED / "objects")
    return assets, f"shared data ({len(assets.objects)} glTF objects, {len(assets.pbr_folders)} PBR, no HDRI)"


def render_ours(num_scenes: int, size: int, samples: int, seed: int, workers: int = 1):
    """Render (or reuse) our scenes; returns (scene folders, seconds per freshly rendered scene or None, assets)."""
    from matseg_hub.scenes3d import generate_3d
    from matseg_hub.scenes3d.render import scene_folder_name
    from matseg_hub.scenes3d.scene import Scene3DConfig

    assets, what = _assets()
    out = WORK / f"seed{seed}-{size}px-{samples}spp"
    config = Scene3DConfig(width=size, height=size, samples=samples, pattern_resolution=min(512, 2 * size))
    t0 = time.perf_counter()
    report = generate_3d(out, num_scenes, seed=seed, assets=assets, config=config, workers=workers, preview=True,
                         show_progress=False, sources=[SHARED] if SHARED.is_dir() else ())
    wall = time.perf_counter() - t0
    for f in report.failed:
        print(f"  scene {f.index} failed: {f.error}", file=sys.stderr)
    per = wall * workers / len(report.rendered) if report.rendered else None
    folders = [out / scene_folder_name(i) for i in range(num_scenes) if (out / scene_folder_name(i)).is_dir()]
    return folders, per, what, len(report.failed)


def ours_stats(folders: List[Path]) -> Dict[str, list]:
    from matseg_hub.scenes3d.scene import Scene3D

    st = {k: [] for k in ("main", "scattered", "planned", "visible", "annotated", "attempt", "ground")}
    for folder in folders:
        scene = Scene3D.load(folder / "scene3d.json")
        masks, ann, meta = _read_masks(folder)
        st["main"].append(len(scene.objects))
        st["scattered"].append(len(scene.occluders))
        st["planned"].append(scene.num_materials)
        st["visible"].append(_visible(masks))
        st["annotated"].append(float(ann.mean()))
        st["attempt"].append(int(meta.get("attempt", 0)))
        st["ground"].append(bool(scene.ground.enabled))
    return st


def sampled_stats(num: int, seed: int) -> Dict[str, np.ndarray]:
    """Counts over ``num`` plain-data scenes (no render; pattern maps at 32 px, which changes no count's law)."""
    from matseg_hub.scenes3d.scene import Scene3DConfig, sample_scene

    assets, _ = _assets()
    config = Scene3DConfig(pattern_resolution=32)
    main, scattered, mats = [], [], []
    for i in range(num):
        sc = sample_scene(seed, i, assets, config)
        main.append(len(sc.objects))
        scattered.append(len(sc.occluders))
        mats.append(sc.num_materials)
    return {"main": np.array(main), "scattered": np.array(scattered), "materials": np.array(mats)}


def fidelity_3d_rows(num_scenes: int = 20, size: int = 256, samples: int = 8, seed: int = 0,
                     workers: int = 1, num_sampled: int = 500) -> List[dict]:
    """Rows ``{"statistic", "authors' code", "authors' scenes", "ours"}`` (strings) for ``num_scenes`` of our
    renders (``size`` px, ``samples`` per pixel) against the authors' code and their released scenes; the last
    rows count ``num_sampled`` plain-data scenes (the sampler's law, beyond one small run's luck)."""
    folders, per, what, failed = render_ours(num_scenes, size, samples, seed, workers)
    o = ours_stats(folders)
    a = authors_sample_stats()
    n = len(folders)
    total = [m + s for m, s in zip(o["main"], o["scattered"])]
    na = "n/a"

    def row(stat, code, sample, ours):
        return {"statistic": stat, "authors' code": code, "authors' scenes": sample, "ours": ours}

    def mean(v):
        return f"{np.mean(v):.2f}" if len(v) else "-"

    rows = [
        row("scenes", "-", str(len(a["files"])) if a else na,
            f"{n} ({size} px, {samples} spp, seed {seed}; {what}){f'; {failed} failed' if failed else ''}"),
        row("main objects per scene (histogram)", _code_hist(P_MAIN), na, _hist(o["main"])),
        row("main objects per scene (mean)", f"{MEAN_MAIN:.2f}", na, mean(o["main"])),
        row("scenes with scattered objects", f"{P_SCATTER:.0%} (1-8 each, mean {MEAN_SCATTER})", na,
            f"{np.mean(np.array(o['scattered']) > 0):.0%} ({_hist([s for s in o['scattered'] if s])})" if n else "-"),
        row("objects per scene, main + scattered (mean)", f"{MEAN_MAIN + P_SCATTER * MEAN_SCATTER:.2f}", na,
            mean(total)),
        row("scenes with 2+ objects", f"{P_TWO_PLUS:.1%}", na,
            f"{np.mean(np.array(total) >= 2):.0%} ({int(np.sum(np.array(total) >= 2))}/{n})" if n else "-"),
        row("scenes with 2+ main objects", f"{1 - P_MAIN[1]:.1%}", na,
            f"{np.mean(np.array(o['main']) >= 2):.0%}" if n else "-"),
        row("materials per scene, drawn (histogram)", _code_hist(P_MATS),
            _hist(a["files"]) if a else na, _hist(o["planned"])),
        row("materials per scene, drawn (mean)", f"{MEAN_MATS:.2f}", mean(a["files"]) if a else na,
            mean(o["planned"])),
        row("visible materials per scene (min / mean)", "not checked (every phase is written)",
            f"{min(a['visible'])} / {np.mean(a['visible']):.2f}" if a else na,
            f"{min(o['visible'])} / {np.mean(o['visible']):.2f}" if n else "-"),
        row("scenes with < 2 visible materials", "not checked", str(sum(v < 2 for v in a["visible"])) if a else na,
            str(sum(v < 2 for v in o["visible"]))),
        row("scenes redrawn (hidden materials)", "never", na,
            f"{sum(x > 0 for x in o['attempt'])}/{n} ({sum(o['attempt'])} redraws)"),
        row("ground plane", "25%", na, f"{np.mean(o['ground']):.0%}" if n else "-"),
        row("annotated fraction of the image (mean)", na, f"{np.mean(a['annotated']):.1%}" if a else na,
            f"{np.mean(o['annotated']):.1%}" if n else "-"),
        row("seconds per scene (this run, 1 worker)", "-", "-", f"{per:.1f}" if per else "cached"),
    ]
    if num_sampled > 0:
        big = sampled_stats(num_sampled, seed)
        tot = big["main"] + big["scattered"]
        tag = f"({num_sampled} sampled, not rendered)"
        rows += [
            row(f"main objects per scene, mean {tag}", f"{MEAN_MAIN:.2f}", na, f"{big['main'].mean():.2f}"),
            row(f"one main object {tag}", f"{P_MAIN[1]:.1%}", na, f"{np.mean(big['main'] == 1):.1%}"),
            row(f"scenes with scattered objects {tag}", f"{P_SCATTER:.0%}", na,
                f"{np.mean(big['scattered'] > 0):.1%}"),
            row(f"scenes with 2+ objects {tag}", f"{P_TWO_PLUS:.1%}", na, f"{np.mean(tot >= 2):.1%}"),
            row(f"materials per scene, mean {tag}", f"{MEAN_MATS:.2f}", na, f"{big['materials'].mean():.2f}"),
            row(f"scenes with 2 materials {tag}", f"{P_MATS[2]:.1%}", na, f"{np.mean(big['materials'] == 2):.1%}"),
        ]
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=20)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--sampled", type=int, default=500, help="plain-data scenes counted without rendering")
    args = p.parse_args(argv)
    rows = fidelity_3d_rows(args.num, args.size, args.samples, args.seed, args.workers, args.sampled)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + " --- |" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
