"""Benchmark: does the 2D generator make the authors' data? Scene statistics side by side (issue #18).

    python bench/bench_fidelity.py                        # 60 authors' scenes (cached), 200 of ours
    python bench/bench_fidelity.py --ours-scenes 40       # a quick look while iterating

The authors' generator (``sagieppel/MatSeg2D-generation-code``, MIT) is not part of this project: check it out into
``bench/_work/MatSeg2D-generation-code`` (git-ignored). Its ``generate_segmentation`` is run on the same natural
photos and textures as ours (default ``../shared/data/natural_images`` and ``../shared/data/textures``), at its own
sizes (400-999 px), with ``numpy.random.seed(--authors-seed)``; its scenes are written under
``bench/_work/fidelity/authors-<seed>/`` (it skips finished folders, so an interrupted run resumes) and the
statistics are cached in ``bench/_work/fidelity/authors-<seed>-<n>.json``, so reruns only make our scenes.
Its module imports scikit-learn without using it; a stub stands in when scikit-learn is absent.

Ours: ``generate_scene(--seed, i)`` with ``SceneConfig.from_preset(--preset)`` (default ``paper``), on a source pool
that keeps the photos at their resolution (``max_side=4096``; the authors crop the photos at their resolution).

Per scene, on both sides, from the masks (authors: ``maskN.png`` / 255, ``ObjectMaskOcluded.png`` / 255):

* materials: the number of masks (authors: mask files, and apart those visible, i.e. with at least 0.2 % of the
  pixels above 0.5, as ours guarantees);
* no soft pixels: no mask has a value in (0.04, 0.96) anywhere;
* soft fraction: of the annotated region (annotated > 0.04), the share of pixels where some mask is in (0.04, 0.96);
* annotated fraction: the mean of the annotated map;
* largest material: the largest mean of one mask.

Targets (issue #18, "Done when"): our materials per scene have mean 5.5 +- 0.7 and every count 1-10 occurs; the
no-soft fraction is within +-0.1 of the authors'; the soft and annotated fractions are within 30 % (relative).
When ``bench/_fidelity3d.py`` exists, its ``fidelity_3d_rows(num_scenes)`` rows are printed after the 2D table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from _authors2d import import_authors_generator  # bench/ is on sys.path when a bench runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work" / "fidelity"
SOFT_LO, SOFT_HI = 0.04, 0.96
VISIBLE_FRACTION = 0.002  # SceneConfig.min_material_fraction: a mask above 0.5 on this share of the pixels


def scene_stats(masks: np.ndarray, annotated: np.ndarray) -> Dict[str, float]:
    """Statistics of one scene: ``masks`` float32 [K, H, W] in [0, 1], ``annotated`` float32 [H, W] in [0, 1]."""
    k, h, w = masks.shape
    soft = np.zeros((h, w), dtype=bool)
    visible = 0
    largest = 0.0
    for m in masks:
        soft |= (m > SOFT_LO) & (m < SOFT_HI)
        visible += int(np.count_nonzero(m > 0.5) >= VISIBLE_FRACTION * h * w)
        largest = max(largest, float(m.mean()))
    region = annotated > SOFT_LO
    n_region = int(np.count_nonzero(region))
    return {
        "materials": int(k), "visible": visible, "no_soft": bool(not soft.any()),
        "soft_fraction": float(np.count_nonzero(soft & region) / n_region) if n_region else 0.0,
        "annotated": float(annotated.mean()), "largest": largest,
    }


def summarise(rows: List[Dict[str, float]]) -> Dict[str, object]:
    counts = [r["materials"] for r in rows]
    return {
        "scenes": len(rows),
        "hist": [counts.count(c) for c in range(1, 11)],
        "mean": float(np.mean(counts)), "min": int(min(counts)), "max": int(max(counts)),
        "visible_mean": float(np.mean([r["visible"] for r in rows])),
        "no_soft": float(np.mean([r["no_soft"] for r in rows])),
        "soft_fraction": float(np.mean([r["soft_fraction"] for r in rows])),
        "annotated": float(np.mean([r["annotated"] for r in rows])),
        "largest": float(np.mean([r["largest"] for r in rows])),
    }


# ---------------------------------------------------------------------------------------------------------------
def authors_stats(reference: Path, natural: Path, textures: Path, num: int, seed: int) -> List[Dict[str, float]]:
    """Run (or resume) the authors' generator for ``num`` scenes and read their statistics (cached)."""
    import cv2

    WORK.mkdir(parents=True, exist_ok=True)
    cache = WORK / f"authors-{seed}-{num}.json"
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("natural") == str(natural) and data.get("textures") == str(textures):
            return data["rows"]
    out = WORK / f"authors-{seed}"
    module = import_authors_generator(reference)
    np.random.seed(seed)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a few lines per scene
        module.generate_segmentation(str(natural), [str(textures)], str(out), num)
    print(f"authors' generator: {num} scenes in {time.perf_counter() - t0:.0f} s (unfinished ones only)")
    rows = []
    for i in range(num):
        folder = out / str(i)
        names = sorted((p for p in folder.glob("mask*.png")), key=lambda p: int(p.stem[4:]))
        masks = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in names]).astype(np.float32) / 255.0
        annotated = cv2.imread(str(folder / "ObjectMaskOcluded.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        rows.append(scene_stats(masks, annotated))
    cache.write_text(json.dumps({"natural": str(natural), "textures": str(textures), "rows": rows}))
    return rows


def ours_stats(natural: Path, textures: Path, num: int, seed: int, preset: str) -> List[Dict[str, float]]:
    sys.path.insert(0, str(ROOT))
    from matseg_hub.synthetic.scenes2d import SceneConfig, generate_scene
    from matseg_hub.synthetic.sources import SceneSources

    sources = SceneSources.from_folders(natural, textures, max_side=4096)
    config = SceneConfig.from_preset(preset)
    t0 = time.perf_counter()
    rows = []
    for i in range(num):
        scene = generate_scene(seed, i, sources, config)
        rows.append(scene_stats(scene.masks, scene.annotated))
    print(f"ours ({preset}): {num} scenes in {time.perf_counter() - t0:.0f} s")
    return rows


def table(authors: Optional[Dict[str, object]], ours: Dict[str, object]) -> str:
    def cell(s, key, fmt):
        return "-" if s is None else fmt.format(s[key])

    lines = ["| per scene | authors' code | ours |", "| --- | --- | --- |"]
    lines.append(f"| scenes | {cell(authors, 'scenes', '{}')} | {ours['scenes']} |")
    lines.append("| materials 1..10 (histogram) | " + ("-" if authors is None else " ".join(map(str, authors["hist"])))
                 + " | " + " ".join(map(str, ours["hist"])) + " |")
    lines.append("| materials: mean (min-max) | "
                 + ("-" if authors is None else f"{authors['mean']:.2f} ({authors['min']}-{authors['max']})")
                 + f" | {ours['mean']:.2f} ({ours['min']}-{ours['max']}) |")
    lines.append(f"| visible materials (>0.5 on 0.2 % of pixels): mean | {cell(authors, 'visible_mean', '{:.2f}')} | "
                 f"{ours['visible_mean']:.2f} |")
    lines.append(f"| scenes without soft pixels | {cell(authors, 'no_soft', '{:.0%}')} | {ours['no_soft']:.0%} |")
    lines.append(f"| soft pixels (0.04-0.96) in the annotated region | {cell(authors, 'soft_fraction', '{:.1%}')} | "
                 f"{ours['soft_fraction']:.1%} |")
    lines.append(f"| annotated region | {cell(authors, 'annotated', '{:.1%}')} | {ours['annotated']:.1%} |")
    lines.append(f"| largest material (mean of its mask) | {cell(authors, 'largest', '{:.1%}')} | "
                 f"{ours['largest']:.1%} |")
    return "\n".join(lines)


def targets(authors: Optional[Dict[str, object]], ours: Dict[str, object]) -> List[str]:
    def mark(ok):
        return "PASS" if ok else "FAIL"

    out = [f"{mark(abs(ours['mean'] - 5.5) <= 0.7 and all(ours['hist']))}  materials mean {ours['mean']:.2f} "
           f"(target 5.5 +- 0.7), counts 1-10 all present: {all(ours['hist'])}"]
    if authors is None:
        return out + ["(no authors' run: the other targets are not checked)"]
    d = ours["no_soft"] - authors["no_soft"]
    out.append(f"{mark(abs(d) <= 0.1)}  no-soft scenes {ours['no_soft']:.0%} vs {authors['no_soft']:.0%} "
               f"(difference {d:+.2f}, target +-0.1)")
    for key, name in (("soft_fraction", "soft-pixel fraction"), ("annotated", "annotated fraction")):
        rel = ours[key] / authors[key] - 1.0 if authors[key] else float("inf")
        out.append(f"{mark(abs(rel) <= 0.3)}  {name} {ours[key]:.1%} vs {authors[key]:.1%} "
                   f"(relative {rel:+.0%}, target +-30 %)")
    return out


def print_3d(num_scenes: int) -> None:
    sys.path.insert(0, str(HERE))
    try:
        from _fidelity3d import fidelity_3d_rows
    except ImportError:
        print("\n(3D: bench/_fidelity3d.py not present; skipped)")
        return
    rows = fidelity_3d_rows(num_scenes)
    if not rows:
        return
    keys = list(rows[0])
    print(f"\n3D ({num_scenes} rendered scenes, bench/_fidelity3d.py):")
    print("\n| " + " | ".join(keys) + " |\n|" + " --- |" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


def main(argv: Optional[List[str]] = None) -> int:
    shared = ROOT.parent / "shared" / "data"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, default=HERE / "_work" / "MatSeg2D-generation-code")
    p.add_argument("--natural", type=Path, default=shared / "natural_images")
    p.add_argument("--textures", type=Path, default=shared / "textures")
    p.add_argument("--authors-scenes", type=int, default=60)
    p.add_argument("--authors-seed", type=int, default=0)
    p.add_argument("--ours-scenes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="paper")
    p.add_argument("--scenes-3d", type=int, default=20, help="scenes for the 3D rows (0: skip)")
    args = p.parse_args(argv)
    for path in (args.natural, args.textures):
        if not path.is_dir():
            print(f"error: {path} is not a folder of images (see --natural / --textures)", file=sys.stderr)
            return 2
    authors = None
    if (args.reference / "Generate_2D_Scene_And_Annotation.py").is_file() and args.authors_scenes > 0:
        authors = summarise(authors_stats(args.reference.resolve(), args.natural.resolve(), args.textures.resolve(),
                                          args.authors_scenes, args.authors_seed))
    else:
        print(f"(authors' generator not found in {args.reference}: only our side is measured)")
    ours = summarise(ours_stats(args.natural, args.textures, args.ours_scenes, args.seed, args.preset))
    print()
    print(table(authors, ours))
    print()
    print("\n".join(targets(authors, ours)))
    if args.scenes_3d > 0:
        print_3d(args.scenes_3d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
