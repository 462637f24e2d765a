"""``matseg generate pbr``: PBR materials from textures, some mixed (seeded, resumable, parallel)."""

from __future__ import annotations

import argparse

GROUP = "generate"
NAME = "pbr"
HELP = "make PBR/SVBRDF materials from textures in the authors' folder layout (seeded, resumable, parallel)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--textures", required=True,
                        help="texture folder, built textures dataset folder or Hub dataset id")
    parser.add_argument("--num", type=int, required=True, help="number of materials")
    parser.add_argument("--seed", type=int, default=0, help="material i depends only on (seed, i) (default 0)")
    parser.add_argument("--output", required=True, help="folder of material folders (reruns skip finished ones; seed, mix ratio and "
                        "textures must stay the same)")
    parser.add_argument("--mix-ratio", type=float, default=0.3,
                        help="fraction of materials that mix two materials (default 0.3)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (results do not depend on it)")
    parser.add_argument("--preview", help="write a picture of some materials here (.png or .jpg)")
    parser.add_argument("--shard", type=int, default=0, help="this job's index in a job array (default 0)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of jobs in the array (default 1)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..pbr import generate_pbr_folder

    report = generate_pbr_folder(args.textures, args.output, args.num, seed=args.seed, mix_ratio=args.mix_ratio,
                                 workers=args.workers, preview=args.preview, shard_index=args.shard,
                                 num_shards=args.num_shards)
    print(f"{report.num_items} materials in {args.output} ({report.num_written} written now, "
          f"{report.num_resumed} already done; {len(report.bad_textures)} unreadable textures skipped)")
    for name, error in report.bad_textures.items():
        print(f"matseg: skipped unreadable texture {name}: {error}", file=sys.stderr)
    if report.preview:
        print(f"preview: {report.preview}")
    return 0
