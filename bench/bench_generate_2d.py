"""Benchmark: 2D scene generation, scenes per second per core, side by side with the authors' reference.

    python bench/bench_generate_2d.py --reference bench/_work/MatSeg2D-generation-code

The reference (``sagieppel/MatSeg2D-generation-code``) is not part of this project: check it out into a git-ignored
folder first, e.g.::

    git clone https://github.com/sagieppel/MatSeg2D-generation-code bench/_work/MatSeg2D-generation-code

Without ``--reference`` (or when the folder is absent) the side-by-side part is skipped with a message.

What is measured (one process, OpenCV limited to one thread, so figures are per core):

* ours: ``generate_scene`` alone, and ``generate_scene`` + ``write_scene`` (JPEG + PNG masks + Finished.txt, the
  same work as the reference's per-scene function); the one-time loading of the source pool is reported apart;
  the process keeps freed memory for reuse as the generator's worker processes do
  (:func:`matseg_hub.utils.memory.keep_freed_memory`, ``MATSEG_MALLOC_TUNING=0`` to compare without);
* reference: its per-scene function ``generate_segmentation`` for one more scene (it reads the images from disk,
  generates, and writes the folder), on the same natural images and textures, with ``numpy.random.seed`` fixed;
  at 512x512 its size draw ``np.random.randint(400, 1000)`` is pinned to 512 (nothing else is changed);
* the two are interleaved (one reference scene, then ``--ours-per-ref`` of ours) so that both see the same load
  on a shared machine; wall-clock and CPU seconds of this process are both reported (CPU time is what one core
  spends; wall time adds waits for the disk and for other tenants of the machine);
* both write under ``--scratch`` (default: the system's temporary folder); the script first prints what creating
  one file costs there, since a scene folder is 8-12 new files: on the 2-core VM of the README's figures, that
  cost on its ext4 disk grew from 0.015 ms to 0.14-0.8 ms of kernel CPU as folders were filled and emptied
  (a RAM disk, ``--scratch /dev/shm/...``, stays at 0.01 ms), which alone moves our 512x512 figure by 1-6 ms;
* a ``torch.utils.data.DataLoader`` with 2 workers over ``scene_stream`` at 512x512 (scenes/s, wall clock), for Hub
  rows (encoded, decoded by datasets) and for array rows (``encoded=False``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

from _authors2d import import_authors_generator  # bench/ is on sys.path when a bench runs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _one_thread():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)


def _stats(times):
    return {"n": len(times), "median_s": statistics.median(times), "mean_s": statistics.mean(times),
            "per_s": len(times) / sum(times)}


class Ours:
    """Our generator, sources loaded once; ``step(i)`` makes and writes scene ``i`` and returns the two timings."""

    def __init__(self, natural, textures, size, seed=0, scratch=None):
        from matseg_hub.synthetic.scenes2d import SceneConfig
        from matseg_hub.synthetic.sources import SceneSources
        from matseg_hub.utils.memory import keep_freed_memory

        keep_freed_memory()  # as in the generator's worker processes (matseg generate 2d, DataLoader workers)
        t0 = time.perf_counter()
        self.sources = SceneSources.from_folders(natural, textures)
        self.load_s = time.perf_counter() - t0
        self.config = SceneConfig(size=(size, size)) if size else SceneConfig(min_size=400, max_size=999)
        self.seed = seed
        self.out = tempfile.mkdtemp(prefix="bench-ours-", dir=scratch)

    def step(self, i):
        from matseg_hub.synthetic.scenes2d import generate_scene
        from matseg_hub.synthetic.layout import write_scene

        c0, t0 = time.process_time(), time.perf_counter()
        scene = generate_scene(self.seed, i, self.sources, self.config)
        t1 = time.perf_counter()
        write_scene(Path(self.out) / str(i), scene)
        return t1 - t0, time.perf_counter() - t0, time.process_time() - c0

    def close(self):
        shutil.rmtree(self.out, ignore_errors=True)


class _PinnedSizeNumpy(types.ModuleType):
    """Stands in for ``numpy`` inside the reference module: ``random.randint(400, 1000)`` returns ``size``."""

    def __init__(self, np, size):
        super().__init__("numpy")
        self._np, self._size = np, size
        outer = self

        class _Random:
            def __getattr__(self, name):
                return getattr(np.random, name)

            def randint(self, low, high=None, *args, **kwargs):
                if (low, high) == (400, 1000) and not args and not kwargs:
                    return outer._size
                return np.random.randint(low, high, *args, **kwargs)

        self.random = _Random()

    def __getattr__(self, name):
        return getattr(self._np, name)


class Reference:
    """The reference's per-scene function: ``step(i)`` runs ``generate_segmentation`` for scene ``i`` only."""

    def __init__(self, path, natural, textures, size, seed=0, scratch=None):
        import numpy as np

        self.np = np
        path = Path(path).resolve()
        self.ref = import_authors_generator(path)
        self.ref.np = _PinnedSizeNumpy(np, size) if size else np
        np.random.seed(seed)
        self.natural, self.textures = str(natural), str(textures)
        self.tmp = tempfile.mkdtemp(prefix="bench-ref-", dir=scratch)
        self.out = str(Path(self.tmp) / "scenes")

    def step(self, i):
        with contextlib.redirect_stdout(io.StringIO()):
            c0, t0 = time.process_time(), time.perf_counter()
            self.ref.generate_segmentation(self.natural, [self.textures], self.out, i + 1)
            return time.perf_counter() - t0, time.process_time() - c0

    def close(self):
        self.ref.np = self.np
        shutil.rmtree(self.tmp, ignore_errors=True)


def reference_available(path) -> bool:
    return path is not None and (Path(path) / "Generate_2D_Scene_And_Annotation.py").is_file()


def bench_side_by_side(natural, textures, reference, ref_num, ours_per_ref, size, scratch=None):
    """Interleaved rounds (one reference scene, then ``ours_per_ref`` of ours) so both see the same machine load;
    both write their scene folders under ``scratch`` (default: the system's temporary folder)."""
    ours = Ours(natural, textures, size, scratch=scratch)
    ref = Reference(reference, natural, textures, size, scratch=scratch) if reference_available(reference) else None
    gen, total, cpu, ref_times, ref_cpu = [], [], [], [], []
    try:
        j = 0
        for i in range(ref_num):
            if ref is not None:
                wall, c = ref.step(i)
                ref_times.append(wall)
                ref_cpu.append(c)
            for _ in range(ours_per_ref):
                g, t, c = ours.step(j)
                gen.append(g)
                total.append(t)
                cpu.append(c)
                j += 1
    finally:
        ours.close()
        if ref is not None:
            ref.close()
    return {"load_s": ours.load_s, "generate": _stats(gen), "generate_and_write": _stats(total),
            "generate_and_write_cpu": _stats(cpu), "reference": _stats(ref_times) if ref_times else None,
            "reference_cpu": _stats(ref_cpu) if ref_cpu else None}


def bench_dataloader(natural, textures, num, size, workers, seed=0, encoded=True):
    import torch

    from matseg_hub.synthetic.scenes2d import SceneConfig
    from matseg_hub.synthetic.sources import SceneSources
    from matseg_hub.synthetic.streaming import scene_stream, scene_tensors

    sources = SceneSources.from_folders(natural, textures)
    ds = scene_stream(seed, sources, SceneConfig(size=(size, size)), num=num, encoded=encoded)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, collate_fn=scene_tensors)
    t0 = time.perf_counter()
    first = None
    n = 0
    for item in loader:
        n += 1
        if first is None:
            first = time.perf_counter()
            assert item["image"].shape == (3, size, size)
    t1 = time.perf_counter()
    return {"n": n, "wall_s": t1 - t0, "per_s": n / (t1 - t0),
            "per_s_after_first": (n - 1) / (t1 - first) if n > 1 else float("nan")}


def file_creation_ms(folder=None, n=300) -> float:
    """CPU milliseconds to create, write (1 kB) and close one new file in ``folder``: the floor of a scene
    folder's cost on that file system (both generators write 7-12 files a scene)."""
    tmp = tempfile.mkdtemp(prefix="bench-files-", dir=folder)
    try:
        c0 = time.process_time()
        for i in range(n):
            fd = os.open(os.path.join(tmp, f"f{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b"x" * 1000)
            os.close(fd)
        return 1000 * (time.process_time() - c0) / n
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--natural-images", type=Path, default=SHARED / "natural_images")
    parser.add_argument("--textures", type=Path, default=SHARED / "textures")
    parser.add_argument("--reference", type=Path, default=REPO / "bench" / "_work" / "MatSeg2D-generation-code")
    parser.add_argument("--ref-num", type=int, default=15, help="reference scenes per size")
    parser.add_argument("--ours-per-ref", type=int, default=4, help="our scenes per reference scene")
    parser.add_argument("--loader-num", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for both generators' scene folders (default: the system's temporary folder)")
    args = parser.parse_args(argv)
    if not args.natural_images.is_dir() or not args.textures.is_dir():
        print(f"source folders not found: {args.natural_images}, {args.textures}")
        return 1
    _one_thread()
    from matseg_hub.utils.logging import disable_progress_bars

    disable_progress_bars()
    print(f"natural images: {args.natural_images} ({len(list(args.natural_images.iterdir()))} files); "
          f"textures: {args.textures} ({len(list(args.textures.iterdir()))} files)")
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    print(f"scene folders written under {args.scratch or tempfile.gettempdir()}: creating a file there costs "
          f"{file_creation_ms(args.scratch):.3f} ms of CPU")
    for label, size in (("512x512", 512), ("400-999 px (reference range)", None)):
        res = bench_side_by_side(args.natural_images, args.textures, args.reference, args.ref_num,
                                 args.ours_per_ref, size, args.scratch)
        print(f"\n== {label}, one core (interleaved: 1 reference scene, then {args.ours_per_ref} of ours) ==")
        print(f"ours: pool loaded once in {res['load_s']:.2f} s")
        g, gw, ref = res["generate"], res["generate_and_write"], res["reference"]
        print(f"ours generate:          {g['per_s']:7.2f} scenes/s  (median {1000 * g['median_s']:.1f} ms, "
              f"mean {1000 * g['mean_s']:.1f} ms, n={g['n']})")
        print(f"ours generate + write:  {gw['per_s']:7.2f} scenes/s  (median {1000 * gw['median_s']:.1f} ms, "
              f"mean {1000 * gw['mean_s']:.1f} ms)")
        if ref is None:
            print(f"reference: skipped (no checkout at {args.reference}; see this script's docstring)")
        else:
            print(f"reference (per scene):  {ref['per_s']:7.2f} scenes/s  (median {1000 * ref['median_s']:.1f} ms, "
                  f"mean {1000 * ref['mean_s']:.1f} ms, n={ref['n']})")
            print(f"ratio ours (generate + write) / reference: {gw['per_s'] / ref['per_s']:.1f}x by mean, "
                  f"{ref['median_s'] / gw['median_s']:.1f}x by median (wall clock)")
            oc, rc = res["generate_and_write_cpu"], res["reference_cpu"]
            print(f"same in CPU seconds of this process (what one core spends; excludes waits for the disk and for "
                  f"other tenants): ours {1000 * oc['median_s']:.1f} ms, reference {1000 * rc['median_s']:.1f} ms "
                  f"median: {oc['per_s'] / rc['per_s']:.1f}x by mean, {rc['median_s'] / oc['median_s']:.1f}x by median")
    if args.loader_num > 0:
        for encoded in (True, False):
            dl = bench_dataloader(args.natural_images, args.textures, args.loader_num, 512, args.workers,
                                  encoded=encoded)
            kind = "Hub rows (JPEG/PNG encoded, decoded by datasets)" if encoded else "array rows (encoded=False)"
            print(f"\n== DataLoader, {args.workers} workers, 512x512, scene_stream {kind} + scene_tensors ==")
            print(f"{dl['n']} scenes in {dl['wall_s']:.2f} s: {dl['per_s']:.1f} scenes/s "
                  f"({dl['per_s_after_first']:.1f} scenes/s after the first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
