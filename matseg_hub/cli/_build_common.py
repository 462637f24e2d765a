"""Arguments and finishing steps shared by every ``matseg build ...`` command (one definition for all builders)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ._launch import add_launcher_arguments


def add_build_arguments(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """``--output``, ``--overwrite``, ``--max-shard-size``, ``--skip-bad``, ``--shard/--num-shards``, ``--no-resume``,
    ``--push-to-hub``."""
    parser.add_argument("--output", required=True, help="dataset folder to write (a Hub dataset repository); an "
                        "existing folder must be empty or this command's earlier output")
    parser.add_argument("--overwrite", action="store_true", help="rebuild over this command's finished output "
                        "(only the files it wrote there are replaced; other files are kept)")
    parser.add_argument("--max-shard-size", default="500MB", help="Parquet shard size bound (default: 500MB)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report and leave out bad items (listed in the card) instead of stopping")
    parser.add_argument("--shard", type=int, default=None, help="this job's index in a job array (default 0; "
                        "with --launcher: leave it out to run every job)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of jobs in the array (default 1)")
    if resume:
        parser.add_argument("--no-resume", action="store_true", help="discard an interrupted build instead of resuming")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the finished folder to this dataset repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    add_launcher_arguments(parser)


def launch_build(args: argparse.Namespace, module_name: str, what: str) -> Optional[int]:
    """With ``--launcher``: every job of the build on the engine (none pushes), then once here the check that the
    dataset was finalised (a typed error naming the jobs that did not finish) and the push. ``None`` without
    ``--launcher`` (the build runs job ``--shard`` as before)."""
    from ._launch import check_dataset_finalized, dataset_shard_done, maybe_launch

    def finalize(args: argparse.Namespace, results) -> int:
        return finish_build(check_dataset_finalized(args.output, args.num_shards), args, what)

    return maybe_launch(args, module_name, finalize, shard_overrides={"push_to_hub": None},
                        shard_done=dataset_shard_done(args.output, args.num_shards), finished_dataset=True)


def finish_build(out: Optional[Path], args: argparse.Namespace, what: str) -> int:
    """Report the built folder (or that another job of the array finalizes it) and push it when asked."""
    if out is None:
        print(f"job {args.shard} of {args.num_shards} finished; the last job of the array writes the card")
        return 0
    print(f"wrote {out}")
    if args.push_to_hub:
        from ..hub.publish import publish_folder

        url = publish_folder(out, args.push_to_hub, repo_type="dataset", private=args.private,
                             commit_message=f"Upload {what} (matseg build)")
        print(f"pushed to {url}")
    return 0
