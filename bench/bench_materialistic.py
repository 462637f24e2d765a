"""Materialistic: converter check against the authors' forward pass, and CPU speed of the scorer.

1. Builds the authors' ``Transformer`` (``prafull7/materialistic``, ``src/models/transformer.py``) with a DINO ViT-B/8
   built locally with random weights (``torch.hub.load`` is stubbed with DINO's own ``vision_transformer.vit_base``;
   ``Tensor.cuda`` is stubbed so their hard-coded ``.cuda()`` runs on CPU), perturbs every weight (so that biases and
   norms are not at their init values), saves it as a Lightning-style checkpoint, converts it with
   ``matseg_hub.models.materialistic.convert`` and runs both on the same 512x512 input with two clicks: prints the
   max abs difference of the score maps (must be <= 1e-4).
2. Times :class:`MaterialisticScorer` (random ViT-B/8 weights, CPU) on a 700x700 image with 40 clicks
   (``set_image`` once + ``similarity_maps``), next to the authors' way (a full forward per click).

Third-party code (not committed; their repository has no licence, DINO's is Apache-2.0)::

    # with the session's fetch tool: github:prafull7/materialistic and github:facebookresearch/dino, then
    git -C /work/.mirror/prafull7+materialistic/repo archive HEAD src | tar -x -C bench/_work/materialistic
    git -C /work/.mirror/facebookresearch+dino/repo archive HEAD vision_transformer.py utils.py | tar -x -C bench/_work/dino
    # (or: git clone https://github.com/prafull7/materialistic bench/_work/materialistic, same for dino)

Run: ``python bench/bench_materialistic.py [--clicks 40] [--size 700] [--skip-speed]``. Skips with a message when
the third-party code is absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
AUTHORS = ROOT / "_work" / "materialistic"
DINO = ROOT / "_work" / "dino"


def build_authors_model(seed: int = 0):
    """The authors' Transformer with a random DINO ViT-B/8 and perturbed weights (CPU, eval)."""
    sys.path.insert(0, str(DINO))
    sys.path.insert(0, str(AUTHORS))
    import vision_transformer as dino_vit  # DINO's own ViT (Apache-2.0)

    torch.manual_seed(seed)
    real_hub_load = torch.hub.load
    torch.hub.load = lambda repo, name, pretrained=True, **kw: dino_vit.vit_base(patch_size=8, num_classes=0)
    try:
        from src.models.transformer import Transformer

        net = Transformer().eval()
    finally:
        torch.hub.load = real_hub_load
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            scale = 0.02 if name.startswith("dino_model.") else 0.05
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return net


def check_conversion() -> float:
    from matseg_hub.models.materialistic.convert import convert_authors_state_dict, load_authors_checkpoint

    torch.Tensor.cuda = lambda self, *a, **k: self  # their ReferenceEmbedding calls .cuda()
    net = build_authors_model()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "last.ckpt"
        torch.save({"state_dict": {"net." + k: v for k, v in net.state_dict().items()}, "epoch": 0}, ckpt)
        ours = convert_authors_state_dict(load_authors_checkpoint(ckpt)).eval()
    print(f"converted: {sum(p.numel() for p in ours.parameters()) / 1e6:.1f} M parameters, dropped keys: "
          f"{ours.conversion_dropped_keys}")
    ours.backbone.config._attn_implementation = "eager"  # DINO's explicit softmax attention, as theirs
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 512, 512, generator=gen).repeat(2, 1, 1, 1)
    rows_cols = torch.tensor([[100, 377], [511, 6]])  # theirs: (row, column)
    t0 = time.perf_counter()
    with torch.no_grad():
        theirs = net(x, rows_cols)[0]  # [B, H, W]
    t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        mine = ours(x, rows_cols.flip(1)).score_map[:, 0]  # ours: (x, y)
    t_ours = time.perf_counter() - t0
    diff = float((theirs - mine).abs().max())
    print(f"authors' forward vs converted model, float32, 512x512, 2 clicks: max abs diff {diff:.3g} "
          f"(scores {float(theirs.min()):.3f}..{float(theirs.max()):.3f}, mean |diff| {float((theirs - mine).abs().mean()):.2g}; "
          f"the two clicks' maps differ by up to {float((theirs[0] - theirs[1]).abs().max()):.3f})")
    print(f"  time (batch of 2): authors {t_theirs:.1f} s, ours {t_ours:.1f} s")
    ours.backbone.config._attn_implementation = "sdpa"
    with torch.no_grad():
        sdpa = ours(x, rows_cols.flip(1)).score_map[:, 0]
    print(f"  with transformers' default SDPA attention instead: max abs diff {float((theirs - sdpa).abs().max()):.3g} "
          f"(float32 rounding, amplified by the saturated logits of random weights)")
    net, ours = net.double(), ours.double()  # SDPA: eager attention's softmax runs in float32 even for float64
    with torch.no_grad():
        theirs64 = net(x[:1].double(), rows_cols[:1])[0]
        mine64 = ours(x[:1].double(), rows_cols[:1].flip(1)).score_map[:, 0]
    diff64 = float((theirs64 - mine64).abs().max())
    print(f"authors' forward vs converted model, float64, 1 click: max abs diff {diff64:.3g}")
    print(f"conversion check: {'OK' if diff <= 1e-4 and diff64 <= 1e-10 else 'FAIL'} (float32 <= 1e-4, float64 <= 1e-10)")
    diff = max(diff, diff64 * 1e6)
    return diff


def time_scorer(size: int, clicks: int) -> None:
    from matseg_hub.models.materialistic import MaterialisticConfig, MaterialisticModel, MaterialisticScorer
    from matseg_hub.models.scorers import Prompt

    torch.manual_seed(0)
    model = MaterialisticModel(MaterialisticConfig()).eval()
    scorer = MaterialisticScorer(model, device="cpu", prompt_batch_size=4)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    prompts = [Prompt.of([[int(rng.integers(size)), int(rng.integers(size)), 5]]) for _ in range(clicks)]
    t0 = time.perf_counter()
    scorer.set_image(image)
    t_image = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = scorer.similarity_maps(prompts)
    t_clicks = time.perf_counter() - t0
    per_click = t_clicks / clicks
    # the authors' way: a full forward (backbone included) per click
    pixel_values = torch.zeros(1, 3, *scorer._embeddings.input_size)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(pixel_values, [[10, 10]])
    t_full = time.perf_counter() - t0
    print(f"scorer, ViT-B/8 random weights, CPU ({torch.get_num_threads()} threads), {size}x{size} image -> "
          f"{scorer._embeddings.input_size} input, {clicks} clicks: set_image {t_image:.1f} s + clicks {t_clicks:.1f} s "
          f"({per_click:.2f} s/click) = {t_image + t_clicks:.1f} s per image; maps {maps.shape}")
    print(f"  one full forward (backbone + 1 click) {t_full:.1f} s -> a forward per click: {t_full * clicks:.1f} s per "
          f"image; cached backbone saves x{t_full * clicks / (t_image + t_clicks):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=40)
    parser.add_argument("--size", type=int, default=700)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-check", action="store_true")
    args = parser.parse_args()
    if not args.skip_check:
        if not (AUTHORS / "src" / "models" / "transformer.py").is_file() or not (DINO / "vision_transformer.py").is_file():
            print(f"SKIP conversion check: put the authors' code in {AUTHORS} and DINO's vision_transformer.py + utils.py "
                  f"in {DINO} (see this script's docstring)")
        else:
            diff = check_conversion()
            if not diff <= 1e-4:
                return 1
    if not args.skip_speed:
        time_scorer(args.size, args.clicks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
