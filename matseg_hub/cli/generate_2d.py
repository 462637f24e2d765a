"""``matseg generate 2d``: write 2D MatSeg scenes as official-layout folders or as a Hub dataset (Parquet)."""

from __future__ import annotations

import argparse

from ._launch import add_launcher_arguments

GROUP = "generate"
NAME = "2d"
HELP = "generate 2D MatSeg scenes (natural-image patterns implanted as materials)"

EPILOG = """sources (--natural-images, --textures): a folder of images, hub:<dataset id>[:split[:column]] (streamed),
or 'builtin' (photos shipped with scikit-image; works offline on a fresh machine).

examples:
  matseg generate 2d --num 1000 --seed 0 --size 512 --output scenes/ --preview grid.png
  matseg generate 2d --num 100000 --min-size 400 --max-size 999 --workers 8 --format parquet --output matseg-2d \\
      --natural-images photos/ --textures hub:me/matseg-textures
  # a job array: job i of 16 (rerun a job to resume it)
  matseg generate 2d --num 1000000 --shard $i --num-shards 16 --format parquet --output matseg-2d
  # every job of the array on a Ray cluster (or --launcher slurm --slurm-partition cpu), then finalised once
  matseg generate 2d --num 1000000 --num-shards 64 --format parquet --output matseg-2d --launcher ray \\
      --ray-address auto
"""


def _size(text: str):
    parts = text.lower().replace("x", " ").split()
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 16:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with sides >= 16, got {text!r}")
    return tuple(values)


def register(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--num", type=int, required=True, help="number of scenes (indices 0 .. NUM-1)")
    parser.add_argument("--seed", type=int, default=0, help="stream seed; scene i is a function of (seed, i)")
    parser.add_argument("--output", required=True, help="output folder (an existing one must be empty or this "
                        "command's earlier output of the same --format)")
    parser.add_argument("--overwrite", action="store_true", help="replace this command's earlier output in "
                        "--output (only the files it wrote; other files are kept); --format folders: as --no-resume")
    parser.add_argument("--format", choices=("folders", "parquet"), default="folders",
                        help="official-layout scene folders (default) or a Hub dataset folder of Parquet shards")
    parser.add_argument("--size", type=_size, default=None, help="fixed scene size N or HxW (default: random sides "
                        "in [--min-size, --max-size])")
    parser.add_argument("--preset", default="paper", metavar="NAME",
                        help="scene distribution to start from: a name of matseg_hub.synthetic.scenes2d.SCENE_PRESETS "
                             "('paper': the authors' 2D distribution, default; 'dense'); the options below override it")
    parser.add_argument("--min-size", type=int, default=None, help="smallest random side (default: the preset's)")
    parser.add_argument("--max-size", type=int, default=None, help="largest random side (default: the preset's)")
    parser.add_argument("--min-materials", type=int, default=None, help="fewest materials (default: the preset's)")
    parser.add_argument("--max-materials", type=int, default=None, help="most materials (default: the preset's)")
    parser.add_argument("--natural-images", default="builtin", help="folder | hub:<id>[:split[:column]] | builtin")
    parser.add_argument("--textures", default="builtin", help="folder | hub:<id>[:split[:column]] | builtin")
    parser.add_argument("--source-limit", type=int, default=1000, help="at most this many source images per pool")
    parser.add_argument("--max-source-side", type=int, default=None,
                        help="downscale sources to this longer side once (default: twice the largest scene side)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--shard", type=int, default=None, help="this job's index in a job array (default 0; "
                        "with --launcher: leave it out to run every job)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of jobs in the array")
    parser.add_argument("--max-shard-size", default="500MB", help="Parquet shard size (--format parquet)")
    parser.add_argument("--preview", default=None, help="write a picture grid of the first scenes to this PNG")
    parser.add_argument("--preview-count", type=int, default=8, help="scenes in the preview grid (--format parquet: "
                        "the job that finalizes the dataset adds preview.png of this many scenes; 0: none)")
    parser.add_argument("--no-resume", action="store_true", help="discard what an earlier run wrote to --output "
                        "(needed to reuse an output folder with other settings) instead of resuming it")
    parser.add_argument("--source-license", default=None, help="licence of the --natural-images/--textures images "
                        "(recorded in each row's license column; built-in sources are known; default: unknown)")
    parser.add_argument("--strict", action="store_true", help="stop on an unreadable source image instead of "
                        "skipping it with a warning")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_launcher_arguments(parser)


def _config(args: argparse.Namespace):
    """The :class:`~matseg_hub.synthetic.scenes2d.SceneConfig` the options describe: ``--preset`` with the size and
    material-count options that were given on top."""
    from ..synthetic.scenes2d import SceneConfig

    overrides = {name: getattr(args, name) for name in ("size", "min_size", "max_size", "min_materials",
                                                         "max_materials") if getattr(args, name) is not None}
    return SceneConfig.from_preset(args.preset, **overrides)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import MatSegInputError
    from ..synthetic.scenes2d import generate_scene
    from ..synthetic.sources import SceneSources
    from ..synthetic.dataset import generate_folders, generate_parquet, job_indices, preview_png
    from ..utils.files import cannot_write, check_output_folder, check_sources_apart
    from ..utils.logging import disable_progress_bars, get_logger
    from ._launch import maybe_launch

    logger = get_logger("matseg_hub.cli.generate_2d")
    if args.no_progress:
        disable_progress_bars()
    if args.num < 0 or args.workers < 1:
        raise MatSegInputError("--num must be >= 0 and --workers >= 1")
    config = _config(args)
    source_folders = [spec for spec in (args.natural_images, args.textures) if Path(spec).is_dir()]
    check_output_folder(args.output, f"generate 2d --format {args.format}", sources=source_folders)  # before loading
    launched = maybe_launch(args, __name__, _finalize, shard_overrides={"preview": None},
                            shard_done=_shard_done(args), sources=source_folders,
                            claim="generate 2d --format folders" if args.format == "folders" else None,
                            finished_dataset=args.format == "parquet")
    if launched is not None:
        return launched
    max_side = args.max_source_side or max(256, 2 * config.largest_side)
    sources = SceneSources.from_spec(args.natural_images, args.textures, max_side=max_side, limit=args.source_limit,
                                     on_error="raise" if args.strict else "warn")
    logger.info("sources: %d natural images, %d textures", len(sources.natural),
                len(sources.textures) if sources.textures is not None else 0)
    preview = None
    if args.preview:  # only when asked (a job of a Parquet array renders nothing it was not asked for)
        check_sources_apart(args.preview, source_folders, option="--preview")
        first = job_indices(args.num, args.shard, args.num_shards)[: max(0, args.preview_count)]
        if first:
            preview = preview_png([generate_scene(args.seed, i, sources, config) for i in first])
    try:
        if args.format == "folders":
            stats = generate_folders(args.output, args.num, seed=args.seed, sources=sources, config=config,
                                     workers=args.workers, shard_index=args.shard, num_shards=args.num_shards,
                                     resume=not (args.no_resume or args.overwrite), source_folders=source_folders)
            logger.info("%d scenes written, %d already finished, in %s", stats["written"], stats["skipped"],
                        args.output)
        else:
            out = generate_parquet(args.output, args.num, seed=args.seed, sources=sources, config=config,
                                   workers=args.workers, shard_index=args.shard, num_shards=args.num_shards,
                                   max_shard_size=args.max_shard_size, preview=None,
                                   preview_count=max(0, args.preview_count), resume=not args.no_resume,
                                   overwrite=args.overwrite, source_license=args.source_license,
                                   source_folders=source_folders)
            logger.info("wrote %s" if out else "job done; the last job of the array finalizes %s",
                        out or args.output)
    except OSError as exc:
        raise cannot_write(args.output, exc) from exc
    if args.preview and preview is not None:
        _write_preview(args.preview, preview)
    return 0


def _write_preview(path: str, png: bytes) -> None:
    """Write the preview grid (atomically); an unwritable path is a one-line error naming it."""
    from ..utils.files import atomic_write_bytes, cannot_write
    from ..utils.logging import get_logger

    try:
        atomic_write_bytes(path, png)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    get_logger("matseg_hub.cli.generate_2d").info("preview grid: %s", path)


def _shard_done(args: argparse.Namespace):
    """Whether job ``i`` of a launch is finished (checked for jobs that another launch of the same job ran)."""
    from pathlib import Path

    from ..synthetic.dataset import job_indices
    from ..synthetic.layout import is_complete_scene
    from ._launch import dataset_shard_done

    if args.format == "parquet":
        return dataset_shard_done(args.output, args.num_shards)
    return lambda shard: all(is_complete_scene(Path(args.output) / str(i))
                             for i in job_indices(args.num, shard, args.num_shards))


def _finalize(args: argparse.Namespace, results) -> int:
    """After every job of a launch: check that every scene is there once (a typed error naming the jobs that
    are not), then write --preview (the run's first scenes)."""
    from pathlib import Path

    from ..errors import MatSegOutputError
    from ..synthetic.dataset import preview_png
    from ..synthetic.layout import is_complete_scene
    from ..synthetic.scenes2d import generate_scene
    from ..synthetic.sources import SceneSources
    from ..utils.files import check_sources_apart
    from ..utils.launchers import describe_missing
    from ..utils.logging import get_logger
    from ._launch import check_dataset_finalized, check_keys

    logger = get_logger("matseg_hub.cli.generate_2d")
    out, n = Path(args.output), args.num_shards
    if args.format == "folders":
        missing = sorted({i % n for i in range(args.num) if not is_complete_scene(out / str(i))})
        if missing:
            raise MatSegOutputError(f"{out}: scenes of {describe_missing(missing)} of {n} are missing; rerun the "
                                    "same command to finish them", path=out)
    else:
        check_dataset_finalized(args.output, n)
        check_keys(args.output, "index", list(range(args.num)), "scene indices", n)
    logger.info("%d scenes of %d jobs (--launcher %s) in %s", args.num, n, args.launcher, out)
    if args.preview and args.preview_count > 0 and args.num > 0:
        source_folders = [spec for spec in (args.natural_images, args.textures) if Path(spec).is_dir()]
        check_sources_apart(args.preview, source_folders, option="--preview")
        config = _config(args)
        sources = SceneSources.from_spec(args.natural_images, args.textures,
                                         max_side=args.max_source_side or max(256, 2 * config.largest_side),
                                         limit=args.source_limit, on_error="raise" if args.strict else "warn")
        picture = preview_png([generate_scene(args.seed, i, sources, config)
                               for i in range(min(args.num, args.preview_count))])
        _write_preview(args.preview, picture)
    return 0
