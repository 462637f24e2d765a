"""``matseg evaluate``: score models on the MatSeg benchmark (triplet accuracy) or a segmentation set (IoU).

Every model spec of :func:`matseg_hub.models.scorers.resolve_scorer` is accepted; each model is loaded once and scored
in every ``--mode`` (and, for a promptable model, once per ``--prompt-points`` value). A model that fails (it cannot
be loaded, or fails while scoring) is reported in one line and the other models still run; the command then ends
with status 1 after printing the table of the others and writing ``--output`` / ``--report``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

NAME = "evaluate"
HELP = ("score models on the MatSeg benchmark with triplet accuracy (default: the built-in sample, rgb, hsv and the "
        "built-in net matseg-tiny)")

TASKS = ("triplet", "iou")
MODES = ("soft", "hard", "soft_only")
TIES = ("first", "average")
#: what ``matseg evaluate`` scores without ``--model``: the two colour baselines and the net built into the package
DEFAULT_MODELS = ("rgb", "hsv", "matseg-tiny")


def _spec_help() -> str:
    from ..models.scorers import SPEC_HELP  # light: numpy only

    return SPEC_HELP


def register(parser: argparse.ArgumentParser) -> None:
    from ..models.scorers import MULTIMASK_CHOICES

    parser.add_argument("--data", default=None,
                        help="triplet: raw benchmark folder, built dataset folder or Hub dataset id (default: built-in "
                             "sample); iou: a segmentation folder, built dataset folder or Hub id (required)")
    parser.add_argument("--task", choices=TASKS, default="triplet",
                        help="triplet: triplet accuracy on the MatSeg benchmark (default); iou: point-prompted IoU on "
                             "a segmentation set (SPEC §10)")
    parser.add_argument("--model", nargs="+", default=None, metavar="SPEC",
                        help=f"one or more models: {_spec_help()} (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--mode", nargs="+", choices=MODES, default=None, metavar="MODE",
                        help="triplet: one or more of soft (the group relations used: the paper's 'all cases'; "
                             "default), hard (relations ignored), soft_only (only partially similar pairs: the paper's "
                             "'soft cases'), e.g. --mode soft soft_only")
    parser.add_argument("--format", default=None,
                        help="iou: the layout of a raw segmentation folder (masks, scenes, labpics, materialistic; "
                             "default: detected)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="iou: the fixed similarity threshold reported beside the best-threshold oracle "
                             "(default 0.5)")
    parser.add_argument("--queries", choices=["each", "joint"], default="each",
                        help="iou: 'each' (default, the authors' code): one similarity map per query disc; 'joint': "
                             "one map for all 10 discs of a region (SAM: all of them as positive prompts)")
    parser.add_argument("--max-size", type=int, default=700,
                        help="evaluation resolution, longer side in pixels (default 700; 0 = full resolution)")
    parser.add_argument("--split", default="test", help="dataset split for built/Hub datasets (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images")
    parser.add_argument("--device", default=None, help="torch device for network models (default: cuda if available)")
    parser.add_argument("--bgr", action="store_true",
                        help="feed MatSeg nets BGR like the reference Evaluate.py (cv2.imread) instead of RGB")
    parser.add_argument("--allow-pickle", action="store_true", help="read data.pkl where data.json is absent")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out photos that fail validation (listed in the results) instead of stopping")
    parser.add_argument("--layer", type=int, default=None,
                        help="features: models: the hidden state to use (index into hidden_states; default the last)")
    parser.add_argument("--prompt-points", type=int, nargs="+", default=None, metavar="K",
                        help="promptable models (sam:, materialistic:): positive prompt points per query, the anchor "
                             "plus K-1 of its group; several values score the model once per K, rows named "
                             "'SPEC (K pt)' (the paper: 1 2 4 8; default 1). Descriptor models ignore it")
    parser.add_argument("--negative-points", type=int, default=0, metavar="M",
                        help="promptable models: also M points of other groups as negative prompts (default 0)")
    parser.add_argument("--multimask", choices=MULTIMASK_CHOICES, default="auto",
                        help="sam: models: auto (the best of SAM's three masks for a one-point prompt, the single mask "
                             "otherwise; default), always, never")
    parser.add_argument("--ties", choices=TIES, default="first",
                        help="triplet: equal similarities ordered like the reference (first: numpy.argsort(s)[::-1]; "
                             "default) or scored as the average over their orders (average)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random choices (extra prompt points, IoU query discs; default 0)")
    parser.add_argument("--output", default=None,
                        help="write the results as JSON here (a new file, or one an earlier `matseg evaluate` wrote)")
    parser.add_argument("--report", default=None, metavar="DIR",
                        help="write a leaderboard report here: results.json, leaderboard.md (with the paper's "
                             "published numbers as a reference block) and leaderboard.png (a new or empty folder, or "
                             "an earlier report, whose three files are replaced)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --output file that `matseg evaluate` did not write; let --report write into a "
                             "folder that is not a report folder (only its results.json, leaderboard.md and "
                             "leaderboard.png are replaced)")


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


def _unique(values: List[Any]) -> List[Any]:
    return list(dict.fromkeys(values))


def _check_options(args: argparse.Namespace) -> None:
    from ..errors import MatSegInputError

    for k in args.prompt_points or []:
        if k < 1:
            raise MatSegInputError(f"--prompt-points must be at least 1, got {k}")
    if args.negative_points < 0:
        raise MatSegInputError(f"--negative-points must be 0 or more, got {args.negative_points}")
    if args.seed < 0:  # every random stream takes words >= 0 (matseg_hub.utils.seeds)
        raise MatSegInputError(f"--seed must be 0 or more, got {args.seed}")
    if args.limit is not None and args.limit < 1:
        raise MatSegInputError(f"--limit must be at least 1, got {args.limit}")
    from ..benchmark.format import evaluation_scale

    evaluation_scale(1, 1, args.max_size or None)  # validates --max-size once, before any model
    if args.task == "iou":
        if args.data is None:
            raise MatSegInputError("--task iou needs --data: a segmentation folder, a built segmentation dataset "
                                   "folder or a Hub dataset id")
        if args.mode is not None:
            raise MatSegInputError("--mode is for --task triplet; the IoU task reports the oracle and the "
                                   "fixed-threshold IoU (--threshold, --queries)")
        if not 0.0 <= args.threshold <= 1.0:
            raise MatSegInputError(f"--threshold must be in [0, 1], got {args.threshold}")
        from .build_segmentation import FORMATS  # light: matseg_hub.segmentation.formats.FORMATS

        if args.format is not None and args.format not in FORMATS:
            raise MatSegInputError(f"unknown --format {args.format!r}: use one of {', '.join(FORMATS)}")
    elif args.format is not None:
        raise MatSegInputError("--format is for --task iou (raw segmentation folders); the triplet task reads the "
                               "benchmark format")


def _check_data(args: argparse.Namespace) -> None:
    """Fail once, before any model runs, on data that cannot be read at all (a missing path, a folder that is not a
    benchmark), instead of once per model."""
    from pathlib import Path

    from ..errors import MatSegInputError

    if args.task == "triplet":
        from ..benchmark.dataset import load_benchmark

        items = load_benchmark(args.data, split=args.split, allow_pickle=args.allow_pickle, skip_bad=args.skip_bad,
                               on_skip=lambda image_id, reason: None)
        try:
            next(iter(items), None)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        return
    from ..hub.writer import looks_like_repo_id

    if not Path(args.data).exists() and not looks_like_repo_id(str(args.data)):
        raise MatSegInputError(f"{args.data} does not exist: give a segmentation folder, a built segmentation "
                               f"dataset folder or a Hub dataset id")
    from ..segmentation.dataset import load_segmentation

    # a folder that is no segmentation set (or a bad first image without --skip-bad) fails here once, not per model
    items = load_segmentation(args.data, format=args.format, split=args.split, skip_bad=args.skip_bad,
                              on_skip=lambda image_id, reason: None)
    try:
        next(items, None)
    finally:
        items.close()


def _evaluators(task: str):
    """(evaluate, format_table) of the task."""
    if task == "triplet":
        from ..benchmark.evaluation import evaluate_benchmark, format_table

        return evaluate_benchmark, format_table
    from ..segmentation.evaluation import evaluate_segmentation, format_iou_table

    return evaluate_segmentation, format_iou_table


def _spec_name(spec: Any) -> str:
    """How a model is named in tables and error lines: the spec as typed (``run(args)`` also takes a Scorer or a
    callable in ``args.model``: then its name)."""
    if isinstance(spec, str):
        return spec
    return str(getattr(spec, "name", None) or getattr(spec, "__name__", None) or type(spec).__name__)


def _row_name(spec: Any, k: Optional[int], negative: int) -> str:
    base = _spec_name(spec)
    if k is None:
        return base
    return f"{base} ({k} pt, {negative} neg)" if negative else f"{base} ({k} pt)"


def _score_model(spec: Any, args: argparse.Namespace, evaluate, modes: List[str],
                 runs: List[Dict[str, Any]]) -> None:
    """Every run of one model, appended to ``runs`` as each finishes: load it once, score it per prompt-point count
    (promptable models), every mode from one model pass per image."""
    from ..models.scorers import resolve_scorer

    ks = _unique(args.prompt_points or [1])
    scorer = resolve_scorer(spec, device=args.device, bgr=args.bgr, layer=args.layer, prompt_points=ks[0],
                            negative_points=args.negative_points, multimask=args.multimask)
    promptable = scorer.kind == "promptable" and scorer.takes_prompt_points
    if scorer.kind == "promptable" and not promptable:
        scorer.prompt_points = 1  # the model reads one click: other prompt points would only be left out
    for k in (ks if promptable else [None]):
        if promptable:
            scorer.prompt_points = k
        scorer.name = _row_name(spec, k, args.negative_points)  # the progress bar, describe() and the table show it
        common = dict(max_size=args.max_size or None, split=args.split, limit=args.limit, device=args.device,
                      skip_bad=args.skip_bad, seed=args.seed)
        if args.task == "triplet":
            runs.extend(evaluate(args.data, scorer, mode=list(modes), bgr=args.bgr, allow_pickle=args.allow_pickle,
                                 ties=args.ties, **common))
        else:
            runs.append(evaluate(args.data, scorer, format=args.format, threshold=args.threshold,
                                 queries=args.queries, **common))


def _failure_line(spec: str, exc: BaseException, verbose: bool) -> str:
    from ..errors import MatSegError, describe_os_error

    if isinstance(exc, MatSegError):
        return f"matseg: error: model {spec}: {exc}"
    if isinstance(exc, OSError):
        line = describe_os_error(exc)
        if line is not None:
            return f"matseg: error: model {spec}: {line}"
    hint = "" if verbose else " (run with -v for the traceback)"
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"matseg: error: model {spec} failed unexpectedly, a bug in it or in matseg-hub: " \
           f"{type(exc).__name__}: {message}{hint}"


def run(args: argparse.Namespace) -> int:
    import traceback

    from ..benchmark.report import check_report_folder, write_report
    from ..utils.files import atomic_write_text

    _check_options(args)
    if args.output:
        check_results_path(args.output, args.overwrite)
    if args.report:
        check_report_folder(args.report, overwrite=args.overwrite, sources=[args.data])
    _check_data(args)
    evaluate, format_table = _evaluators(args.task)
    models = list(args.model) if args.model else list(DEFAULT_MODELS)
    models = [m for i, m in enumerate(models) if not isinstance(m, str) or m not in models[:i]]
    modes = _unique(args.mode or ["soft"])
    verbose = bool(getattr(args, "verbose", False))
    runs: List[Dict[str, Any]] = []
    failed: List[Dict[str, str]] = []
    interrupted: Optional[str] = None
    for spec in models:
        try:
            _score_model(spec, args, evaluate, modes, runs)
        except KeyboardInterrupt:  # Ctrl-C: the runs finished so far are still printed and written
            interrupted = _spec_name(spec)
            break
        except Exception as exc:  # one model's failure must not lose the others' numbers; reported in one line
            if verbose:
                traceback.print_exc()
            line = _failure_line(_spec_name(spec), exc, verbose)
            print(line, file=sys.stderr, flush=True)
            failed.append({"model": _spec_name(spec), "error": line.split(": ", 2)[-1]})
    if not runs:
        if interrupted is not None:
            print(f"matseg: interrupted while scoring {interrupted}; no run had finished, nothing was written",
                  file=sys.stderr)
            return 130
        print("matseg: error: no model could be scored; nothing was written", file=sys.stderr)
        return 1
    source = args.data or "built-in sample (1 CC0 photo)"
    if args.task == "triplet":
        print(f"MatSeg triplet accuracy on {source} ({', '.join(modes)} mode, max size {args.max_size or 'full'})")
    else:
        print(f"Point-prompted IoU on {source} (fixed threshold {args.threshold}, max size {args.max_size or 'full'})")
    print(format_table(runs))
    for run_ in runs:
        label = f"{run_['model']} ({run_['mode']})" if len(modes) > 1 and "mode" in run_ else run_["model"]
        for bad in run_.get("bad", []):
            print(f"{label}: left out {bad['image_id']}: {bad['reason']}")
        if run_.get("skipped"):
            print(f"{label}: {len(run_['skipped'])} images had no scorable anchor: {run_['skipped'][:5]}")
    for failure in failed:
        print(f"{failure['model']}: FAILED (see the error above)")
    if args.output:
        payload = dict(runs[0]) if len(runs) == 1 else {"runs": runs}
        if failed:
            payload["failed"] = failed
        if interrupted is not None:
            payload["interrupted"] = interrupted
        payload["written_by"] = WRITTEN_BY
        atomic_write_text(args.output, json.dumps(payload, indent=2))
        print(f"wrote {args.output}")
    if args.report:
        settings = _settings(args, [_spec_name(m) for m in models], modes)
        settings["failed"] = failed
        if interrupted is not None:
            settings["interrupted"] = interrupted
        written = write_report(runs, args.report, overwrite=args.overwrite, settings=settings, sources=[args.data])
        print(f"wrote {', '.join(str(p) for p in written.values())}")
    if interrupted is not None:
        print(f"matseg: interrupted while scoring {interrupted}: the table and the files written hold the runs that "
              f"had finished; rerun the command to score the rest", file=sys.stderr)
        return 130  # 128 + SIGINT, what a shell reports for Ctrl-C
    return 1 if failed else 0


def _settings(args: argparse.Namespace, models: List[str], modes: List[str]) -> Dict[str, Any]:
    out = {"task": args.task, "data": args.data, "models": models, "split": args.split, "limit": args.limit,
           "max_size": args.max_size or None, "seed": args.seed, "skip_bad": args.skip_bad,
           "layer": args.layer, "prompt_points": _unique(args.prompt_points or [1]),
           "negative_points": args.negative_points, "multimask": args.multimask, "bgr": args.bgr}
    if args.task == "triplet":
        out.update(modes=modes, ties=args.ties, allow_pickle=args.allow_pickle)
    else:
        out.update(format=args.format, threshold=args.threshold, queries=args.queries)
    return out
