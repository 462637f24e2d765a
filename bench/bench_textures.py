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
side capped at 2200 px, the resize timed on both sides); image decoding is not timed. Figures are CPU seconds of
this process (fair on a shared machine; both sides are single-threaded numpy), wall seconds in brackets.
Without ``--reference`` only our figures are printed.

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

from matseg_hub.materials.pbr import mix_materials, texture_to_pbr  # noqa: E402
from matseg_hub.materials.textures import extract_textures  # noqa: E402
from matseg_hub.utils.images import list_images  # noqa: E402
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


class _Timer:
    """Wall-clock and CPU seconds of a block (CPU time is the fairer figure on a shared machine)."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w0, time.process_time() - self.c0


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
    extract_textures(read_image(photos[0])[:400, :400].copy(), "warm-up", **kw)  # imports, first allocations
    rows = []  # (photo, ours default, ours reference geometry, reference or None), each a _Timer
    same = compared = 0
    print(f"\n== texture extraction: cell {args.cell_size} px, {args.min_cells} cells, threshold {args.threshold}")
    print("   ours = default (verified-square crops, one per region, textureless rejected);")
    print("   ours-ref = reference_geometry=True, no textureless filter: the reference's exact regions")
    print("   seconds are CPU seconds (wall in brackets)")
    print(f"{'photo':<22}{'size':>11}{'ours s':>16}{'#tex':>5}{'ours-ref s':>16}{'#reg':>5}"
          + (f"{'ref s':>18}{'#reg':>5}{'same':>6}" if ref else ""))
    for photo in photos:
        rgb = read_image(photo)
        with _Timer() as t_ours:
            kept = extract_textures(rgb, photo.stem, **kw)
        with _Timer() as t_exact:
            exact = extract_textures(rgb, photo.stem, one_per_region=False, reject_textureless=False,
                                     reference_geometry=True, **kw)
        line = (f"{photo.name[:21]:<22}{rgb.shape[1]:>5}x{rgb.shape[0]:<5}{t_ours.cpu:>8.3f} ({t_ours.wall:5.2f})"
                f"{len(kept.textures):>5}{t_exact.cpu:>8.3f} ({t_exact.wall:5.2f}){len(exact.textures):>5}")
        t_ref = None
        if ref is not None and max(rgb.shape[:2]) > args.reference_max_side:
            line += f"   (reference skipped: longer side > {args.reference_max_side})"
        elif ref is not None:
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            r = 2200 / min(bgr.shape[:2])
            with _Timer() as t_ref, contextlib.redirect_stdout(io.StringIO()):
                im = cv2.resize(bgr, [int(bgr.shape[1] * r), int(bgr.shape[0] * r)]) if r < 1 else bgr
                maps = ref["get_prop_maps"](im, ["RGB", "GRAD"])
                regions = ref["get_box_sim_maps"](maps, args.cell_size, args.min_cells, args.threshold, im,
                                                  max_regions_per_img=100)
            scale = 1.0 if r >= 1 else r
            theirs = [(int(g["x1"] / scale), int(g["y1"] / scale), int(g["size"] / scale), str(g["score"])[2:6])
                      for g in regions]
            mine = [(t.box[0], t.box[1], t.box[2], str(t.score)[2:6]) for t in exact.textures]
            compared += 1
            same += theirs == mine
            line += f"{t_ref.cpu:>9.3f} ({t_ref.wall:6.2f}){len(regions):>5}{'yes' if theirs == mine else 'NO':>6}"
        rows.append((photo.name, t_ours, t_exact, t_ref))
        print(line, flush=True)
    med = statistics.median
    print(f"ours (default): median {med(r[1].cpu for r in rows):.3f} CPU s/image "
          f"(wall {med(r[1].wall for r in rows):.3f}), {len(rows)} photos")
    print(f"ours (reference geometry): median {med(r[2].cpu for r in rows):.3f} CPU s/image "
          f"(wall {med(r[2].wall for r in rows):.3f})")
    both = [r for r in rows if r[3] is not None]
    if both:
        print(f"on the {len(both)} photos run by both: reference median {med(r[3].cpu for r in both):.3f} CPU s/image "
              f"(wall {med(r[3].wall for r in both):.3f}), mean {statistics.mean(r[3].cpu for r in both):.3f}")
        for k, label in ((1, "default"), (2, "reference geometry")):
            ratios = [r[3].cpu / r[k].cpu for r in both]
            print(f"ratio reference/ours ({label}), CPU time: median of per-photo ratios {med(ratios):.1f}x, "
                  f"min {min(ratios):.1f}x, total {sum(r[3].cpu for r in both) / sum(r[k].cpu for r in both):.1f}x; "
                  f"wall: median {med(r[3].wall / r[k].wall for r in both):.1f}x")
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
        t0 = time.process_time()
        mats.append(texture_to_pbr(tex, rng=rng))
        times.append(time.process_time() - t0)
    print(f"\n== texture -> PBR ({textures[0].shape[1]}-px textures): ours median {statistics.median(times):.4f} CPU s")
    mt = []
    for k in range(args.pbr_repeats):
        t0 = time.process_time()
        mix_materials([mats[k], mats[(k + 1) % len(mats)]], rng=rng)
        mt.append(time.process_time() - t0)
    print(f"== mixing two materials: ours median {statistics.median(mt):.4f} CPU s (the reference's Mix_PBRS.py is a "
          f"script without a function to time)")
    script = Path(args.reference) / "Turn_Texture_To_PBR.py" if args.reference else None
    if script is not None and script.is_file():
        ref = load_reference_functions(script)
        np.random.seed(0)
        rt = []
        for k in range(args.pbr_repeats):
            bgr = np.ascontiguousarray(textures[k % len(textures)][:, :, ::-1])
            t0 = time.process_time()
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
                ref["turn_texture_to_PBR"](bgr)
            rt.append(time.process_time() - t0)
        print(f"== texture -> PBR: reference median {statistics.median(rt):.4f} CPU s "
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
