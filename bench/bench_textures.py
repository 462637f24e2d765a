#!/usr/bin/env python
"""Texture extraction, texture -> PBR and PBR mixing: seconds per item, ours vs the authors' code.

    python bench/bench_textures.py [--images ../shared/data/natural_images] [--textures ../shared/data/textures]
                                   [--reference bench/_work/texture-ref] [--limit N] [--pbr-repeats 20]

``--reference`` is a checkout of ``sagieppel/Unsupervised-extraction-of-textures-and-PBR-materials-from-images``
(never committed; ``bench/_work/`` is git-ignored), e.g.::

    git clone https://github.com/sagieppel/Unsupervised-extraction-of-textures-and-PBR-materials-from-images \
        bench/_work/texture-ref

Its functions are loaded from ``Extract_Textures.py`` / ``Turn_Texture_To_PBR.py`` without running their
module-level loops (only imports and ``def`` blocks are executed; a missing ``sklearn``, imported but unused, is
stubbed). Both sides run on the same photos with the same settings (cell 40 px, 7 cells, threshold 0.5, shorter
side capped at 2200 px); image decoding is not timed. Without ``--reference`` only our figures are printed.

Agreement: ``extract_textures(..., reference_geometry=True, one_per_region=False, reject_textureless=False)``
must return the reference's regions exactly (position, size, the 4 score digits of its file names); the
default mode (verified-square crops, one per region, textureless rejected) is timed too.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from matseg_hub.pbr import mix_materials, texture_to_pbr  # noqa: E402
from matseg_hub.textures import extract_textures, list_images  # noqa: E402
from matseg_hub.utils.images import read_image  # noqa: E402


def load_reference_functions(path: Path) -> dict:
    """Execute only the imports and function definitions of a reference script; return its namespace."""
    if "sklearn" not in sys.modules:
        try:
            import sklearn  # noqa: F401
        except ImportError:  # imported (cosine_similarity) but never used by the code we call
            for name in ("sklearn", "sklearn.metrics", "sklearn.metrics.pairwise"):
                sys.modules[name] = types.ModuleType(name)
            sys.modules["sklearn.metrics.pairwise"].cosine_similarity = None
    tree = ast.parse(path.read_text(), filename=str(path))
    tree.body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
    namespace: dict = {"__name__": "reference"}
    exec(compile(tree, str(path), "exec"), namespace)
    return namespace


def bench_extraction(args) -> None:
    import cv2

    photos = list_images(args.images)[: args.limit or None]
    ref = None
    if args.reference:
        script = Path(args.reference) / "Extract_Textures.py"
        if script.is_file():
            ref = load_reference_functions(script)
        else:
            print(f"reference not found at {script}: skipping the side-by-side part")
    else:
        print("no --reference given: skipping the side-by-side part")
    kw = dict(cell_size=args.cell_size, min_cells=args.min_cells, sim_threshold=args.threshold)
    ours_t, exact_t, ref_t, same, compared = [], [], [], 0, 0
    print(f"\n== texture extraction: cell {args.cell_size} px, {args.min_cells} cells, threshold {args.threshold}")
    print("   ours = default (verified-square crops, one per region, textureless rejected);")
    print("   ours-ref = reference_geometry=True, no textureless filter: the reference's exact regions")
    print(f"{'photo':<22}{'size':>11}{'ours s':>8}{'#tex':>5}{'ours-ref s':>11}{'#reg':>5}"
          + (f"{'ref s':>9}{'#reg':>5}{'same':>6}" if ref else ""))
    for photo in photos:
        rgb = read_image(photo)
        t0 = time.perf_counter()
        kept = extract_textures(rgb, photo.stem, **kw)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        exact = extract_textures(rgb, photo.stem, one_per_region=False, reject_textureless=False,
                                 reference_geometry=True, **kw)
        exact_t.append(time.perf_counter() - t0)
        line = (f"{photo.name[:21]:<22}{rgb.shape[1]:>5}x{rgb.shape[0]:<5}{ours_t[-1]:>8.3f}{len(kept.textures):>5}"
                f"{exact_t[-1]:>11.3f}{len(exact.textures):>5}")
        big = max(rgb.shape[:2]) > args.reference_max_side
        if ref is not None and big:
            line += f"{'(reference skipped: longer side > ' + str(args.reference_max_side) + ')':>30}"
        elif ref is not None:
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            r = 2200 / min(bgr.shape[:2])
            t0 = time.perf_counter()
            im = cv2.resize(bgr, [int(bgr.shape[1] * r), int(bgr.shape[0] * r)]) if r < 1 else bgr
            with contextlib.redirect_stdout(io.StringIO()):
                maps = ref["get_prop_maps"](im, ["RGB", "GRAD"])
                regions = ref["get_box_sim_maps"](maps, args.cell_size, args.min_cells, args.threshold, im,
                                                  max_regions_per_img=100)
            ref_t.append((time.perf_counter() - t0, ours_t[-1], exact_t[-1]))
            scale = 1.0 if r >= 1 else r
            theirs = [(int(g["x1"] / scale), int(g["y1"] / scale), int(g["size"] / scale), str(g["score"])[2:6])
                      for g in regions]
            mine = [(t.box[0], t.box[1], t.box[2], str(t.score)[2:6]) for t in exact.textures]
            compared += 1
            same += theirs == mine
            line += f"{ref_t[-1][0]:>9.3f}{len(regions):>5}{'yes' if theirs == mine else 'NO':>6}"
        print(line, flush=True)
    print(f"ours (default): median {statistics.median(ours_t):.3f} s/image, mean {statistics.mean(ours_t):.3f} "
          f"({len(ours_t)} photos)")
    print(f"ours (reference geometry): median {statistics.median(exact_t):.3f} s/image, "
          f"mean {statistics.mean(exact_t):.3f}")
    if ref_t:
        rt = [t[0] for t in ref_t]
        print(f"on the {len(rt)} photos run by both: reference median {statistics.median(rt):.3f} s/image, mean "
              f"{statistics.mean(rt):.3f}; ours default median {statistics.median(t[1] for t in ref_t):.3f}, "
              f"reference geometry median {statistics.median(t[2] for t in ref_t):.3f}")
        for k, label in ((1, "default"), (2, "reference geometry")):
            print(f"ratio reference/ours ({label}): median of per-photo ratios "
                  f"{statistics.median(t[0] / t[k] for t in ref_t):.1f}x, total time "
                  f"{sum(rt) / sum(t[k] for t in ref_t):.1f}x")
        print(f"identical regions (position, size, 4-digit score) to the reference: {same}/{compared} photos")


def bench_pbr(args) -> None:
    textures = [read_image(p) for p in list_images(args.textures)]
    if not textures:
        print(f"no textures in {args.textures}: skipping the PBR part")
        return
    rng = np.random.default_rng(0)
    times, mats = [], []
    for k in range(args.pbr_repeats):
        tex = textures[k % len(textures)]
        t0 = time.perf_counter()
        mats.append(texture_to_pbr(tex, rng=rng))
        times.append(time.perf_counter() - t0)
    print(f"\n== texture -> PBR ({textures[0].shape[1]}-px textures): ours median {statistics.median(times):.4f} s")
    mt = []
    for k in range(args.pbr_repeats):
        t0 = time.perf_counter()
        mix_materials([mats[k], mats[(k + 1) % len(mats)]], rng=rng)
        mt.append(time.perf_counter() - t0)
    print(f"== mixing two materials: ours median {statistics.median(mt):.4f} s")
    script = Path(args.reference) / "Turn_Texture_To_PBR.py" if args.reference else None
    if script is not None and script.is_file():
        ref = load_reference_functions(script)
        np.random.seed(0)
        rt = []
        for k in range(args.pbr_repeats):
            bgr = np.ascontiguousarray(textures[k % len(textures)][:, :, ::-1])
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                ref["turn_texture_to_PBR"](bgr)
            rt.append(time.perf_counter() - t0)
        print(f"== texture -> PBR: reference median {statistics.median(rt):.4f} s "
              f"(ratio {statistics.median(rt) / statistics.median(times):.1f}x)")


def main() -> None:
    data = REPO.parent / "shared" / "data"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default=str(data / "natural_images"))
    ap.add_argument("--textures", default=str(data / "textures"))
    ap.add_argument("--reference", default=None, help="checkout of the authors' repository (bench/_work/...)")
    ap.add_argument("--limit", type=int, default=0, help="first N photos only (0: all)")
    ap.add_argument("--cell-size", type=int, default=40)
    ap.add_argument("--min-cells", type=int, default=7)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--pbr-repeats", type=int, default=20)
    ap.add_argument("--reference-max-side", type=int, default=100000,
                    help="skip the reference (minutes per photo) on photos with a longer side above this")
    ap.add_argument("--skip-extraction", action="store_true")
    args = ap.parse_args()
    if not args.skip_extraction:
        bench_extraction(args)
    bench_pbr(args)


if __name__ == "__main__":
    main()
