"""Time the SAM scorer (matseg_hub.models.sam): all anchors of an image through the mask decoder in one batched
call (the point-batch dimension) against one decoder call per anchor, and the whole scorer per image.

A 700 px image (the evaluation size), 40 anchors, prompts of 1 point and of 4 points (anchor + 3 of its group, the
paper's protocol). The image embedding is computed once and excluded from the decoder timings; it is included in
the per-image figure (set_image + the 40 anchors' maps + disc means, as ``matseg evaluate`` runs them).
Default: SAM ViT-B at its published size (``SamConfig()`` defaults, 1024 px input) with random weights (nothing is
downloaded); ``--quick``: a tiny config (64 px input) that runs in seconds.

    python bench/bench_sam.py --quick
    python bench/bench_sam.py                 # ViT-B, ~1-2 minutes on 2 CPU cores
    python bench/bench_sam.py --device cuda

Reference run (2 shared CPU cores, torch 2 threads, other jobs running; 700x525 image, 40 anchors), batched vs one
decoder call per anchor:
    --quick       decoder 6.1 ms vs 97.9 ms (16.0x, 1 pt), 6.3 ms vs 92.2 ms (14.6x, 4 pt); 0.4-0.6 s per image
    SAM ViT-B     decoder 11.4 s vs 45.5 s (4.0x, 1 pt), 8.5 s vs 27.7 s (3.3x, 4 pt); embedding 247 s once per
                  image; whole scorer 225 s per image (1 pt). On CPU the ViT-B decoder is compute-bound: each prompt
                  updates its own copy of the 64x64 image tokens and upscales them, so batching removes only the
                  per-call overhead (max |diff| batched vs per anchor: 3e-8 logits, 6e-8 maps).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from matseg_hub.models.sam import SamScorer
from matseg_hub.models.scorers import anchor_prompts, point_similarities


def build(quick: bool, device: str, seed: int):
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    torch.manual_seed(seed)
    if quick:
        size = 64
        config = SamConfig(
            vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=size,
                               patch_size=8, window_size=4, global_attn_indexes=[1], output_channels=32,
                               num_pos_feats=16, mlp_dim=64),
            prompt_encoder_config=dict(hidden_size=32, image_size=size, patch_size=8, mask_input_channels=4),
            mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                     iou_head_hidden_dim=32))
    else:
        config = SamConfig()  # ViT-B image encoder, 256-d prompt encoder / mask decoder, 1024 px input
        size = config.vision_config.image_size
    model = SamModel(config).eval().to(device)
    processor = SamProcessor(SamImageProcessor(size={"longest_edge": size}, pad_size={"height": size, "width": size}))
    return model, processor, size


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config instead of SAM ViT-B")
    parser.add_argument("--size", type=int, default=700, help="longest side of the image (default 700)")
    parser.add_argument("--anchors", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=None, help="best of N runs (default 5 quick, 2 ViT-B)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 2)
    rng = np.random.default_rng(args.seed)
    height, width = int(args.size * 0.75), args.size
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[:, : width // 2] //= 2
    points = np.stack([rng.integers(0, width, args.anchors), rng.integers(0, height, args.anchors),
                       rng.integers(3, 10, args.anchors)], axis=1)
    groups = (points[:, 0] >= width // 2).astype(np.int64) + 2 * (points[:, 1] >= height // 2)

    model, processor, input_size = build(args.quick, args.device, args.seed)
    scorer = SamScorer(model, processor, name="sam-bench")
    label = "tiny (64 px input)" if args.quick else "SAM ViT-B (random weights, 1024 px input)"
    print(f"{label}, {args.device}, torch threads {torch.get_num_threads()}, image {width}x{height}, "
          f"{args.anchors} anchors, best of {repeats}")
    t0 = time.perf_counter()
    scorer.set_image(image)
    t_embed = time.perf_counter() - t0
    print(f"image embedding (once per image, excluded below): {t_embed:.3f} s")
    print(f"{'prompt':<10} {'part':<26} {'batched':>10} {'per anchor':>11} {'ratio':>7} {'max |diff|':>11}")
    for k in (1, 4):
        prompts, _ = anchor_prompts(points, groups, prompt_points=k, rng=np.random.default_rng(args.seed))
        lb, _ = scorer.decoder_logits(prompts, batched=True)
        lp, _ = scorer.decoder_logits(prompts, batched=False)
        t_b = timed(lambda: scorer.decoder_logits(prompts, batched=True), repeats)
        t_p = timed(lambda: scorer.decoder_logits(prompts, batched=False), repeats)
        print(f"{k} pt{'':<6} {'prompt enc + mask decoder':<26} {t_b * 1e3:8.1f}ms {t_p * 1e3:9.1f}ms "
              f"{t_p / t_b:6.1f}x {float((lb - lp).abs().max()):11.2e}")
        mb = scorer.similarity_maps(prompts)
        mp = scorer.per_prompt_similarity_maps(prompts)
        t_b = timed(lambda: scorer.similarity_maps(prompts), repeats)
        t_p = timed(lambda: scorer.per_prompt_similarity_maps(prompts), repeats)
        print(f"{k} pt{'':<6} {'+ post-processing (maps)':<26} {t_b * 1e3:8.1f}ms {t_p * 1e3:9.1f}ms "
              f"{t_p / t_b:6.1f}x {float(np.abs(mb - mp).max()):11.2e}")
    for k in (1, 4):
        scorer.prompt_points = k

        def whole():
            scorer.set_image(image)
            point_similarities(scorer, points, groups, rng=np.random.default_rng(args.seed))

        t_whole = timed(whole, 1 if not args.quick else repeats)
        print(f"whole scorer, {k} pt: {t_whole:.2f} s per image (embedding + {args.anchors} maps + disc means)")


if __name__ == "__main__":
    main()
