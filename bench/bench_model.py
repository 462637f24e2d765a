"""Forward time and peak memory of MatSegModel against the ported reference forward, on the same weights and input.

For each ConvNeXt size (tiny, base) and input size (512², 1024²) a fresh child process builds a randomly
initialised reference net (``matseg_hub.models.matseg.convert_reference.ReferenceNet``, the reference's module structure with
torchvision-style ConvNeXt blocks), converts its state dict into a ``MatSegModel`` and times one warm-up plus
``--reps`` alternating forwards of each, keeping the minimum (``torch.inference_mode``, batch 1, float32,
descriptor map upsampled to the input as the reference's ``TrainMode=False``). Peak memory is the growth of the child's peak RSS during the forwards
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``; falls back to ``ru_maxrss`` where that is not
allowed). Prints wall and process-CPU seconds per forward (CPU seconds are the steadier figure on a shared machine),
the ratios ours / reference, peak MiB and the max abs difference.

    python bench/bench_model.py                       # tiny + base at 512 and 1024 (base: 1 rep), a few minutes on 2 cores
    python bench/bench_model.py --sizes tiny --resolutions 512 --reps 5
    python bench/bench_model.py --device cuda         # on a GPU: times with synchronisation, peak from torch.cuda
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
from typing import Dict

SIZES = {
    "tiny": dict(depths=(3, 3, 9, 3), widths=(96, 192, 384, 768)),
    "base": dict(depths=(3, 3, 27, 3), widths=(128, 256, 512, 1024)),
}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(size: str, resolution: int, reps: int, device: str, threads: int, seed: int) -> Dict[str, float]:
    import numpy as np
    import torch

    from matseg_hub.models.matseg.convert_reference import (REFERENCE_MEAN, REFERENCE_STD, ReferenceNet,
                                                            convert_reference)

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    spec = SIZES[size]
    reference = ReferenceNet(descriptor_depth=128, depths=spec["depths"], widths=spec["widths"])
    with torch.no_grad():  # random weights with non-trivial batch-norm statistics and layer scales
        for name, p in reference.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.2)
        for name, b in reference.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    reference.eval()
    model = convert_reference(reference.state_dict())
    reference.to(device)
    model.to(device)

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (resolution, resolution, 3)).astype(np.float32)
    normalised = torch.from_numpy(((image - np.asarray(REFERENCE_MEAN, np.float32)) / np.asarray(REFERENCE_STD, np.float32))
                                  .transpose(2, 0, 1)[None].copy()).to(device)
    zeros = np.zeros((1, resolution, resolution), np.float32)

    def run_ours():
        return model(normalised, upsample=True).upsampled_descriptor_map

    def run_reference():
        return reference(image[None], zeros, train_mode=False)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    results: Dict[str, float] = {}
    outputs = {}
    impls = (("reference", run_reference), ("ours", run_ours))
    # pass 1 (also the warm-up): peak memory of one forward of each
    for name, fn in impls:
        with torch.inference_mode():
            sync()
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
                base_mem = torch.cuda.memory_allocated()
            else:
                before = _rss_kib("VmRSS")
                resettable = _reset_peak()
                before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out = fn()
            sync()
            if device.startswith("cuda"):
                peak_mib = (torch.cuda.max_memory_allocated() - base_mem) / 2**20
            elif resettable:
                peak_mib = (_rss_kib("VmHWM") - before) / 1024
            else:
                peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_max) / 1024
            outputs[name] = out.float().cpu()
            del out
        results[f"{name}_peak_mib"] = peak_mib
    # pass 2: timings, the two implementations alternating; the minimum is kept (robust to other load)
    times = {name: [] for name, _ in impls}
    cpu_times = {name: [] for name, _ in impls}
    for _ in range(reps):
        for name, fn in impls:
            with torch.inference_mode():
                sync()
                start, cpu_start = time.perf_counter(), time.process_time()
                fn()
                sync()
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
    for name in times:
        results[f"{name}_s"] = min(times[name])
        results[f"{name}_cpu_s"] = min(cpu_times[name])
    results["max_abs_diff"] = float((outputs["ours"] - outputs["reference"]).abs().max())
    results["mean_abs_value"] = float(outputs["reference"].abs().mean())
    results["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    return results


def _child(queue, *args) -> None:
    try:
        queue.put(("ok", _measure(*args)))
    except Exception as exc:  # report to the parent instead of dying silently
        queue.put(("error", repr(exc)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=sorted(SIZES))
    parser.add_argument("--resolutions", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--reps", type=int, default=3, help="timed forwards of each implementation (minimum kept)")
    parser.add_argument("--base-reps", type=int, default=2, help="timed forwards for base (1 at 1024² and above)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")  # a fresh process per measurement: peak memory is not polluted by the previous one
    rows = []
    print(f"device={args.device} threads={args.threads} batch=1 float32, output upsampled to the input; "
          f"load average at start {os.getloadavg()[0]:.1f} (timings: minimum over alternating runs)")
    print(f"{'model':<6} {'input':>6} {'params':>8} {'reference s':>12} {'ours s':>8} {'ratio':>6} "
          f"{'ref cpu s':>10} {'ours cpu s':>11} {'cpu ratio':>9} "
          f"{'ref peak MiB':>13} {'ours peak MiB':>14} {'max abs diff':>13}")
    for size in args.sizes:
        for resolution in args.resolutions:
            reps = args.reps if size != "base" else (1 if resolution >= 1024 else args.base_reps)
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(queue, size, resolution, reps, args.device, args.threads, args.seed))
            proc.start()
            status, result = queue.get()
            proc.join()
            if status != "ok":
                print(f"{size:<6} {resolution:>5}²  failed: {result}")
                continue
            rows.append(dict(size=size, resolution=resolution, reps=reps, **result))
            print(f"{size:<6} {resolution:>5}² {result['params_m']:>7.1f}M {result['reference_s']:>12.3f} "
                  f"{result['ours_s']:>8.3f} {result['ours_s'] / result['reference_s']:>6.2f} "
                  f"{result['reference_cpu_s']:>10.2f} {result['ours_cpu_s']:>11.2f} "
                  f"{result['ours_cpu_s'] / result['reference_cpu_s']:>9.2f} "
                  f"{result['reference_peak_mib']:>13.0f} {result['ours_peak_mib']:>14.0f} {result['max_abs_diff']:>13.2e}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
