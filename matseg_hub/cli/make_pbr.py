"""``matseg generate pbr``: PBR materials from textures, some mixed (seeded, resumable, parallel)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._launch import add_launcher_arguments

GROUP = "generate"
NAME = "pbr"
HELP = "make PBR/SVBRDF materials from textures in the authors' folder layout (seeded, resumable, parallel)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--textures", required=True,
                        help="texture folder, built textures dataset folder or Hub dataset id")
    parser.add_argument("--num", type=int, required=True, help="number of materials")
    parser.add_argument("--seed", type=int, default=0, help="material i depends only on (seed, i) (default 0)")
    parser.add_argument("--output", required=True, help="folder of material folders (reruns skip finished ones; "
                        "seed, mix ratio and textures must stay the same); an existing folder must be empty or this "
                        "command's earlier output")
    parser.add_argument("--overwrite", action="store_true", help="start over: delete the materials this command "
                        "wrote to --output earlier (other files are kept), then make them")
    parser.add_argument("--mix-ratio", type=float, default=0.3,
                        help="fraction of materials that mix two materials (default 0.3)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (results do not depend on it)")
    parser.add_argument("--preview", help="write a picture of some materials here (.png or .jpg)")
    parser.add_argument("--shard", type=int, default=None, help="this job's index in a job array (default 0; "
                        "with --launcher: leave it out to run every job)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of jobs in the array (default 1)")
    add_launcher_arguments(parser)


def discard_earlier_materials(output: Path) -> int:
    """Delete what ``matseg generate pbr`` wrote to ``output``: in each material folder (``<item:07d>_<name>/``
    holding ``Finished.txt``) the JPEG maps, ``material.json`` and ``Finished.txt`` (a folder left empty goes),
    and the recorded parameters; every other file is kept. Returns how many files were deleted."""
    from ..materials.datasets import PBR_MAP_COLUMNS
    from ..materials.pbr import FINISHED, METADATA_FILE
    from ..utils.files import RUN_PARAMS_FILE
    from ..utils.files import remove_own_files

    names = [RUN_PARAMS_FILE]
    for folder in sorted(output.iterdir()):
        head = folder.name.split("_", 1)[0]
        if folder.is_dir() and len(head) == 7 and head.isdigit() and (folder / FINISHED).is_file():
            names += [f"{folder.name}/{f}" for f in (FINISHED, METADATA_FILE)]
            names += [f"{folder.name}/{stem}.jpg" for stem in PBR_MAP_COLUMNS.values()]  # what write_pbr_folder writes
    return remove_own_files(output, names)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..materials.pbr_generation import generate_pbr_folder
    from ..utils.files import check_sources_apart, claimed_output_folder
    from ._launch import maybe_launch
    from .extract_textures import check_overwrite_alone, finalize_with_single_job

    if args.preview:
        check_sources_apart(args.preview, [args.textures], option="--preview")
    check_overwrite_alone(args)
    launched = maybe_launch(args, __name__, finalize_with_single_job, shard_overrides={"preview": None},
                            claim="generate pbr", sources=[args.textures])
    if launched is not None:
        return launched
    with claimed_output_folder(args.output, "generate pbr", sources=[args.textures]) as output:
        if args.overwrite:
            discard_earlier_materials(output)
        report = generate_pbr_folder(args.textures, output, args.num, seed=args.seed, mix_ratio=args.mix_ratio,
                                     workers=args.workers, preview=args.preview, shard_index=args.shard,
                                     num_shards=args.num_shards)
    print(f"{report.num_items} materials in {args.output} ({report.num_written} written now, "
          f"{report.num_resumed} already done; {len(report.bad_textures)} unreadable textures skipped)")
    for name, error in report.bad_textures.items():
        print(f"matseg: skipped unreadable texture {name}: {error}", file=sys.stderr)
    if report.preview:
        print(f"preview: {report.preview}")
    return 0
