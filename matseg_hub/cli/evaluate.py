"""``matseg evaluate``: score models on the MatSeg benchmark with triplet accuracy."""

from __future__ import annotations

import argparse
import json

NAME = "evaluate"
HELP = "score models on the MatSeg benchmark with triplet accuracy (default: the built-in sample, rgb and hsv)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None,
                        help="raw benchmark folder, built dataset folder or Hub dataset id (default: built-in sample)")
    parser.add_argument("--model", nargs="+", default=None,
                        help="'rgb', 'hsv', a MatSeg model folder or a Hub model id; several allowed "
                             "(default: rgb hsv)")
    parser.add_argument("--mode", choices=["soft", "hard", "soft_only"], default="soft",
                        help="soft: use the group relations (the paper's numbers; default); hard: ignore them; "
                             "soft_only: only partially similar pairs")
    parser.add_argument("--max-size", type=int, default=700,
                        help="evaluation resolution, longer side in pixels (default 700; 0 = full resolution)")
    parser.add_argument("--split", default="test", help="dataset split for built/Hub datasets (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images")
    parser.add_argument("--device", default=None, help="torch device for network models (default: cuda if available)")
    parser.add_argument("--bgr", action="store_true",
                        help="feed networks BGR like the reference Evaluate.py (cv2.imread) instead of RGB")
    parser.add_argument("--allow-pickle", action="store_true", help="read data.pkl where data.json is absent")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out photos that fail validation (listed in the results) instead of stopping")
    parser.add_argument("--output", default=None, help="write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_benchmark, format_table
    from ..utils.files import atomic_write_text

    models = args.model or ["rgb", "hsv"]
    runs = [evaluate_benchmark(args.data, model, mode=args.mode, max_size=args.max_size or None, split=args.split,
                               limit=args.limit, device=args.device, bgr=args.bgr, allow_pickle=args.allow_pickle,
                               skip_bad=args.skip_bad)
            for model in models]
    source = args.data or "built-in sample (1 CC0 photo)"
    print(f"MatSeg triplet accuracy on {source} ({args.mode} mode, max size {args.max_size or 'full'})")
    print(format_table(runs))
    for run_ in runs:
        for bad in run_["bad"]:
            print(f"{run_['model']}: left out {bad['image_id']}: {bad['reason']}")
        if run_["skipped"]:
            print(f"{run_['model']}: {len(run_['skipped'])} images had no scorable anchor: {run_['skipped'][:5]}")
    if args.output:
        payload = runs[0] if len(runs) == 1 else {"runs": runs}
        atomic_write_text(args.output, json.dumps(payload, indent=2))
        print(f"wrote {args.output}")
    return 0
