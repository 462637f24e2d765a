"""Seconds per image of the ``features:`` scorer (``matseg_hub.models.backbones``) at evaluation resolution.

For each model kind at its BASE size (random weights built from a config: nothing is downloaded) — DINOv2-base
(patch 14), DINOv2-with-registers-base (4 registers), ViT-B/8 (DINO ViT-B/8's shape), CLIP ViT-B/16 vision tower,
SigLIP base patch 16 vision tower, ConvNeXt-base through ``ConvNextBackbone`` (last stage) — one photo-sized random
image (700 x 525 by default, the benchmark's evaluation size) goes through ``set_image`` + ``descriptor_map`` once
to warm up, then ``--reps`` times; the minimum is kept. Besides the total, the model forward (resize, normalise, network,
token slicing) and the upsampling of the feature grid to the image (float32 [H, W, D]) are timed on their own.
``--max-input-size`` caps the model input's longer side (ViT-B/8 at 700 px is 5,808 tokens); ``--quick`` uses
small models (ViT-S-like width 384, 4 layers; ConvNeXt-tiny widths, 1 block per stage) so that the run takes about
a minute on 2 cores.

    python bench/bench_backbones.py --quick
    python bench/bench_backbones.py                        # base sizes, a few minutes on 2 cores
    python bench/bench_backbones.py --kinds vit_b8 --max-input-size 448
"""

from __future__ import annotations

import argparse
import gc
import time

BASE_VIT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
SMALL_VIT = dict(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536)
KINDS = ("dinov2", "dinov2_reg", "vit_b8", "clip_b16", "siglip_b16", "convnext")
LABELS = {"dinov2": "DINOv2-base /14", "dinov2_reg": "DINOv2-reg-base /14", "vit_b8": "ViT-B/8 (DINO)",
          "clip_b16": "CLIP ViT-B/16 vision", "siglip_b16": "SigLIP base /16", "convnext": "ConvNeXt-base (stage 4)"}


def build(kind: str, quick: bool):
    import torch
    import transformers as tf

    torch.manual_seed(0)
    vit = dict(SMALL_VIT if quick else BASE_VIT)
    if quick:
        LABELS.update({k: v.replace("base", "small").replace("-B/", "-S/").replace("B/16", "S/16")
                       for k, v in LABELS.items()})
    if kind == "dinov2":
        return tf.Dinov2Model(tf.Dinov2Config(**vit, patch_size=14, image_size=518))
    if kind == "dinov2_reg":
        return tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**vit, patch_size=14, image_size=518,
                                                                         num_register_tokens=4))
    if kind == "vit_b8":
        return tf.ViTModel(tf.ViTConfig(**vit, patch_size=8, image_size=224), add_pooling_layer=False)
    if kind == "clip_b16":
        return tf.CLIPVisionModel(tf.CLIPVisionConfig(**vit, patch_size=16, image_size=224))
    if kind == "siglip_b16":
        return tf.SiglipVisionModel(tf.SiglipVisionConfig(**vit, patch_size=16, image_size=224))
    if kind == "convnext":
        if quick:
            config = tf.ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[96, 192, 384, 768], out_indices=[4])
        else:
            config = tf.ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[128, 256, 512, 1024], out_indices=[4])
        return tf.ConvNextBackbone(config)
    raise SystemExit(f"unknown kind {kind!r}; choose from {KINDS}")


def measure(kind: str, args) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from matseg_hub.models.backbones import feature_scorer_from_model

    model = build(kind, args.quick)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    scorer = feature_scorer_from_model(model, name=kind, device=args.device, max_input_size=args.max_input_size)
    image = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    ih, iw = scorer.input_size(args.height, args.width)
    totals, forwards, ups = [], [], []

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for rep in range(args.reps + 1):
        t0 = time.perf_counter()
        scorer.set_image(image)
        fmap = scorer.descriptor_map()  # the whole path: resize, normalise, forward, drop tokens, upsample
        sync()
        t1 = time.perf_counter()
        grid = scorer.feature_grid(scorer.pixel_values(image))
        sync()
        t2 = time.perf_counter()
        scorer.upsample(grid, args.height, args.width)
        sync()
        t3 = time.perf_counter()
        if rep:  # the first pass warms up
            totals.append(t1 - t0)
            forwards.append(t2 - t1)
            ups.append(t3 - t2)
    assert fmap.shape[:2] == (args.height, args.width)
    up = F.interpolate(grid, size=(args.height, args.width), mode="bilinear", align_corners=False)
    assert np.allclose(up[0].permute(1, 2, 0).cpu().numpy(), fmap, atol=1e-5)
    row = dict(kind=kind, label=LABELS[kind], params_m=params, input=f"{iw}x{ih}", grid=f"{grid.shape[3]}x{grid.shape[2]}",
               dim=int(grid.shape[1]), total=min(totals), forward=min(forwards), upsample=min(ups),
               map_mib=fmap.nbytes / 2 ** 20)
    del model, scorer, grid, fmap, up
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models (about a minute on 2 cores)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--width", type=int, default=700, help="image width (default 700, the evaluation size)")
    parser.add_argument("--height", type=int, default=525, help="image height (default 525)")
    parser.add_argument("--max-input-size", type=int, default=None,
                        help="cap the model input's longer side (default: the image's own size)")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions after one warm-up (minimum kept)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"features: scorer, {args.width}x{args.height} image, device {args.device}, torch threads "
          f"{torch.get_num_threads()}, {'small' if args.quick else 'base'} models, random weights, "
          f"min of {args.reps} after 1 warm-up" + (f", input capped at {args.max_input_size} px"
                                                   if args.max_input_size else ""))
    header = (f"{'model':<26} {'params':>7} {'input':>9} {'grid':>7} {'D':>5} {'s/image':>8} {'forward':>8} "
              f"{'upsample':>9} {'map MiB':>8}")
    print(header)
    print("-" * len(header))
    for kind in args.kinds:
        r = measure(kind, args)
        print(f"{r['label']:<26} {r['params_m']:>6.1f}M {r['input']:>9} {r['grid']:>7} {r['dim']:>5} "
              f"{r['total']:>8.3f} {r['forward']:>8.3f} {r['upsample']:>9.3f} "
              f"{r['map_mib']:>8.0f}", flush=True)
    print("s/image: set_image + descriptor_map (resize, normalise, forward, drop CLS/registers, upsample to the "
          "image); forward: up to the feature grid; upsample: the grid to float32 [H, W, D] (each timed on its own).")


if __name__ == "__main__":
    main()
