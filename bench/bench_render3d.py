#!/usr/bin/env python3
"""Seconds per 3D scene, split into scene build and render, at 256² and 512² (Cycles on CPU).

    python bench/bench_render3d.py                      # 3 scenes per size, 32 samples, all CPU threads
    python bench/bench_render3d.py --sizes 512 --samples 16 --num 5

Steps, per scene (one persistent Blender worker, started before timing):
  sample   the plain-Python scene model (sample_scene)
  prepare  pattern maps and PBR maps written for the worker (prepare_job)
  build    the Blender scene built from the job (bpy: meshes, node trees, world, camera)
  render   Cycles: sync + path tracing + denoising, RGB and AOV mask passes in one render
  write    worker output: EXR passes -> npz, RGB PNG
  finish   masks, occlusion check, official layout written (finish_scene)
"scene build" = sample + prepare + build; "render" = render + write + finish. ``render cpu`` is the worker's CPU
time while rendering (user + system over all its threads): on a shared machine it says more than wall time.
The load average is printed because other processes share the CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from matseg_hub.scenes3d import BlenderWorker, finish_scene, prepare_job, require_blender_python
from matseg_hub.scenes3d.blender_env import check_blender_python
from matseg_hub.scenes3d.scene import Scene3DConfig, sample_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--num", type=int, default=3, help="scenes per size (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-denoise", action="store_true")
    args = ap.parse_args()

    python = require_blender_python()
    print(f"Blender {check_blender_python(python)} via {python}; {os.cpu_count()} CPUs, {args.threads} render threads, "
          f"{args.samples} samples, denoise {'off' if args.no_denoise else 'on'}; load average "
          f"{os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_render3d."))
    rows = []
    try:
        with BlenderWorker(python) as worker:
            t0 = time.perf_counter()
            warm = sample_scene(args.seed, 10_000, config=Scene3DConfig(width=32, height=32, samples=1))
            worker.render(prepare_job(warm, tmp / "warm" / "job", threads=args.threads), tmp / "warm" / "render")
            print(f"worker start + first tiny scene: {time.perf_counter() - t0:.2f} s (not counted below)")
            for size in args.sizes:
                config = Scene3DConfig(width=size, height=size, samples=args.samples, denoise=not args.no_denoise)
                per = []
                for index in range(args.num):
                    t = {}
                    a = time.perf_counter()
                    scene = sample_scene(args.seed, index, config=config)
                    t["sample"] = time.perf_counter() - a
                    a = time.perf_counter()
                    job = prepare_job(scene, tmp / f"{size}_{index}" / "job", threads=args.threads)
                    t["prepare"] = time.perf_counter() - a
                    res = worker.render(job, tmp / f"{size}_{index}" / "render")["timings"]
                    t["build"], t["render"], t["write"] = res["build_s"], res["render_s"], res["write_s"]
                    t["render_cpu"] = res["render_cpu_s"]
                    a = time.perf_counter()
                    try:
                        finish_scene(scene, tmp / f"{size}_{index}" / "render", tmp / "out" / f"{size}_{index}")
                    except Exception as exc:  # noqa: BLE001 - a hidden-material scene still counts for timing
                        print(f"  scene {index}: {exc}")
                    t["finish"] = time.perf_counter() - a
                    t["scene_build"] = t["sample"] + t["prepare"] + t["build"]
                    t["render_total"] = t["render"] + t["write"] + t["finish"]
                    t["total"] = t["scene_build"] + t["render_total"]
                    per.append(t)
                    print(f"  {size}² scene {index}: build {t['scene_build']:.2f} s, render {t['render_total']:.2f} s "
                          f"(Cycles {t['render']:.2f} s wall, {t['render_cpu']:.2f} s CPU), load "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
                    shutil.rmtree(tmp / f"{size}_{index}", ignore_errors=True)
                rows.append((size, {k: statistics.mean(p[k] for p in per) for k in per[0]}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    keys = ["sample", "prepare", "build", "scene_build", "render", "write", "finish", "render_total", "total",
            "render_cpu"]
    print(f"\nmean seconds per scene ({args.num} scenes each, {args.samples} samples):")
    print("size  " + " ".join(f"{k:>12}" for k in keys))
    for size, m in rows:
        print(f"{size:<5} " + " ".join(f"{m[k]:12.2f}" for k in keys))
    print(f"load average after: {os.getloadavg()[0]:.1f} (2-core machine shared with other jobs: wall times "
          "are upper bounds)")


if __name__ == "__main__":
    main()
