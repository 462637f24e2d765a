"""``matseg generate textures``: extract uniform textures from a folder of photos (resumable, parallel)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._launch import add_launcher_arguments

GROUP = "generate"
NAME = "textures"
NAME_KIND = "generate textures"  # the kind recorded in the output manifest
HELP = "extract uniform textures from a folder of natural photos (authors' file names + metadata.csv)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="folder of photos (optional licenses.json / metadata.csv "
                        "in it gives each photo's licence; default 'unknown')")
    parser.add_argument("--output", required=True, help="texture folder to write (reruns skip finished photos, retry "
                        "failed ones; the extraction parameters must stay the same); an existing folder must be "
                        "empty or this command's earlier output")
    parser.add_argument("--overwrite", action="store_true", help="start over: delete the textures and records this "
                        "command wrote to --output earlier (other files are kept), then extract")
    parser.add_argument("--cell-size", type=int, default=40, help="grid cell size in pixels (default 40; 75 suits "
                        "large SA-1B photos)")
    parser.add_argument("--min-cells", type=int, default=7, help="minimum square side in cells (default 7)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="minimum cell-pair similarity, 1 - Jensen-Shannon distance (default 0.5)")
    parser.add_argument("--max-image-size", type=int, default=2200,
                        help="analyse photos whose shorter side exceeds this shrunk to it (default 2200)")
    parser.add_argument("--max-textures", type=int, default=100, help="at most this many squares per photo")
    parser.add_argument("--all-squares", action="store_true",
                        help="keep every uniform square not inside an earlier one (like the authors), not only the "
                             "largest of each group of overlapping squares")
    parser.add_argument("--keep-textureless", action="store_true", help="do not drop flat (textureless) squares")
    parser.add_argument("--reference-geometry", action="store_true",
                        help="reproduce the authors' crops exactly (their cell sets and acceptance rule)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (results do not depend on it)")
    parser.add_argument("--preview", help="write a grid picture of some textures here (.png or .jpg)")
    parser.add_argument("--shard", type=int, default=None, help="this job's index in a job array (default 0; "
                        "with --launcher: leave it out to run every job)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of jobs in the array (default 1)")
    add_launcher_arguments(parser)


def discard_earlier_textures(output: Path) -> int:
    """Delete what ``matseg generate textures`` wrote to ``output`` (the textures its done records name, the
    records, ``metadata.csv`` and the recorded parameters); every other file is kept. Returns the count."""
    from ..materials.texture_extraction import _DONE_DIR
    from ..utils.files import RUN_PARAMS_FILE
    from ..utils.files import remove_own_files

    names = ["metadata.csv", RUN_PARAMS_FILE]
    for record in sorted((output / _DONE_DIR).glob("*.json")):
        try:
            names += [t["file"] for t in json.loads(record.read_text()).get("textures", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # an unreadable record names nothing we could know we wrote
        names.append(f"{_DONE_DIR}/{record.name}")
    return remove_own_files(output, names)


def finalize_with_single_job(args: argparse.Namespace, results) -> int:
    """After every job of a launch (``matseg generate textures|pbr|3d``): the command once more as the whole array
    in one job, without --overwrite. Every item is done, so it only writes what a job array's last job writes
    (``metadata.csv`` over every photo, the preview) and prints the totals; an item a job left undone (a photo
    that failed to read) is retried here, as a rerun would."""
    import importlib

    from ._launch import single_job

    extra = {"install_blender": False} if hasattr(args, "install_blender") else {}
    return importlib.import_module(args._run.__module__).run(single_job(args, **extra))


def check_overwrite_alone(args: argparse.Namespace) -> None:
    """``--overwrite`` starts a folder over, so it cannot be given to the jobs of an array (each would delete the
    others' results)."""
    from ..errors import MatSegInputError

    if args.overwrite and args.num_shards > 1:
        raise MatSegInputError("--overwrite deletes what earlier runs wrote to --output, so it cannot be given to "
                               "the jobs of an array: run the array into a new or empty --output instead")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..materials.texture_extraction import extract_textures_folder
    from ..utils.files import check_sources_apart, claimed_output_folder
    from ._launch import maybe_launch

    if args.preview:
        check_sources_apart(args.preview, [args.input], option="--preview")
    check_overwrite_alone(args)
    launched = maybe_launch(args, __name__, finalize_with_single_job, shard_overrides={"preview": None},
                            claim=NAME_KIND, sources=[args.input])
    if launched is not None:
        return launched
    with claimed_output_folder(args.output, NAME_KIND, sources=[args.input]) as output:
        if args.overwrite:
            discard_earlier_textures(output)
        report = extract_textures_folder(
            args.input, output, cell_size=args.cell_size, min_cells=args.min_cells, sim_threshold=args.threshold,
            max_image_size=args.max_image_size, max_textures=args.max_textures, one_per_region=not args.all_squares,
            reject_textureless=not args.keep_textureless,
            reference_geometry=args.reference_geometry, workers=args.workers, preview=args.preview,
            shard_index=args.shard, num_shards=args.num_shards)
    print(f"{report.num_textures} textures from {report.num_images} photos in {args.output} "
          f"({report.num_processed} processed now, {report.num_resumed} already done; "
          f"{len(report.no_texture)} without texture, {len(report.failed)} unreadable)")
    for name, reason in report.failed:
        print(f"  unreadable: {name}: {reason}")
        print(f"matseg: unreadable photo {name}: {reason} (retried by the next run)", file=sys.stderr)
    if report.preview:
        print(f"preview: {report.preview}")
    if report.failed and len(report.failed) == report.num_images:
        print(f"matseg: error: every photo of this run failed ({len(report.failed)})", file=sys.stderr)
        return 1
    return 0
