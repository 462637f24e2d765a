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
    parser.add_argument("--output", default=None,
                        help="write the results as JSON here (a new file, or one an earlier `matseg evaluate` wrote)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --output file that `matseg evaluate` did not write")


WRITTEN_BY = "matseg evaluate"  # the results file's "written_by": marks it as this command's own


def check_results_path(path: str, overwrite: bool) -> None:
    """Before any scoring: refuse an ``--output`` that is a folder, or a file this command did not write (unless
    ``overwrite``), and one whose folder cannot be written, so that an hour of scoring never ends in that error."""
    import tempfile
    from pathlib import Path

    from ..errors import MatSegOutputError
    from ..utils.files import cannot_write

    target = Path(path)
    if target.is_dir():
        raise MatSegOutputError(f"--output {target} is a folder; give a file name such as {target / 'results.json'}",
                                path=target)
    if target.exists() and not overwrite:
        try:
            ours = json.loads(target.read_text(encoding="utf-8")).get("written_by") == WRITTEN_BY
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise MatSegOutputError(f"--output {target} exists and was not written by `{WRITTEN_BY}`; nothing was "
                                    "changed. Choose another file name, or pass --overwrite to replace it", path=target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise cannot_write(target, exc) from exc


def run(args: argparse.Namespace) -> int:
    from ..benchmark.evaluation import evaluate_benchmark, format_table
    from ..utils.files import atomic_write_text

    if args.output:
        check_results_path(args.output, args.overwrite)
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
        payload = dict(runs[0]) if len(runs) == 1 else {"runs": runs}
        payload["written_by"] = WRITTEN_BY
        atomic_write_text(args.output, json.dumps(payload, indent=2))
        print(f"wrote {args.output}")
    return 0
