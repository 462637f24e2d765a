"""``matseg generate 3d``: render 3D scenes with Blender (Cycles, CPU) into the official layout."""

from __future__ import annotations

import argparse

from ._launch import add_launcher_arguments

GROUP = "generate"
NAME = "3d"
HELP = "render synthetic 3D scenes (objects sharing 2-8 pattern-mapped PBR materials) with Blender into scene folders"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", help="root folder of the scene folders (<output>/<index:06d>/)")
    parser.add_argument("--num", type=int, default=10, help="number of scenes (default 10)")
    parser.add_argument("--start", type=int, default=0, help="index of the first scene (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="run seed: scene i is drawn from (seed, i) (default 0)")
    parser.add_argument("--resolution", type=int, default=512, help="image width and height in pixels (default 512)")
    parser.add_argument("--samples", type=int, default=12,
                        help="Cycles samples per pixel, denoised (default 12: <= 5 s per 512² scene on 2 CPU "
                             "cores; 32+ for final-quality renders on GPUs)")
    parser.add_argument("--no-denoise", action="store_true", help="do not denoise the RGB (masks never are)")
    parser.add_argument("--max-bounces", type=int, default=4, help="light bounces (default 4)")
    parser.add_argument("--preset", default="paper", metavar="NAME",
                        help="scene distribution: paper (default: the authors' Blender script: 1-11 main objects "
                             "sharing 2-8 materials, 1-8 scattered objects in 20%% of scenes), spread (generator "
                             "version 2: objects set apart, each with its own materials), single (one object, "
                             "0-3 occluders)")
    parser.add_argument("--num-objects", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="annotated objects per scene (default: the preset's, 1 11 for paper, where each of the "
                             "authors' modes draws its count inside this range)")
    parser.add_argument("--materials", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="materials per scene for paper (one layout over all main objects; default 2 8), per object "
                             "for spread/single (default 2 5)")
    parser.add_argument("--occluders", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="unannotated objects per scene (default: the preset's, 1 8 for paper)")
    parser.add_argument("--workers", type=int, default=1, help="Blender processes at once (default 1)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per worker (default: usable CPUs / workers; under --launcher, the CPUs "
                             "each task reserved)")
    parser.add_argument("--shard", type=int, default=None, help="this job's index in a job array (default 0; "
                        "with --launcher: leave it out to run every job)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of jobs in the array (default 1)")
    parser.add_argument("--natural-images", help="folder of natural photos for pattern maps (and environments)")
    parser.add_argument("--textures", help="folder of RGB textures (made into PBR materials)")
    parser.add_argument("--pbr", help="folder of PBR material folders (OriginColor.jpg, Roughness.jpg, ...)")
    parser.add_argument("--hdri", help="folder of .hdr/.exr environment maps")
    parser.add_argument("--objects", help="folder of .gltf/.glb objects")
    parser.add_argument("--no-builtin", action="store_true",
                        help="do not add the built-in scikit-image photos to the given pattern/texture folders")
    parser.add_argument("--no-preview", action="store_true", help="do not write <output>/preview.jpg")
    parser.add_argument("--blender-python", help="Python with bpy (default: $MATSEG_BLENDER_PYTHON, the checkout's "
                        ".cache/blender-venv, ~/.cache/matseg_hub/blender-venv, or this Python)")
    parser.add_argument("--install-blender", action="store_true",
                        help="create the bpy environment (CPython 3.11 venv + bpy + OpenEXR) and exit unless "
                             "--output is given")
    add_launcher_arguments(parser)


def scene_config(args: argparse.Namespace):
    """The :class:`~matseg_hub.scenes3d.scene.Scene3DConfig` the options describe: ``--preset`` with the render
    settings and any range given (``--num-objects``, ``--materials``, ``--occluders``) on top."""
    from ..scenes3d.scene import Scene3DConfig

    ranges = {name: tuple(value) for name, value in (("objects", args.num_objects), ("materials", args.materials),
                                                     ("occluders", args.occluders)) if value is not None}
    return Scene3DConfig.from_preset(args.preset, width=args.resolution, height=args.resolution,
                                     samples=args.samples, denoise=not args.no_denoise,
                                     max_bounces=args.max_bounces, **ranges)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..errors import MatSegInputError
    from ..hub.writer import check_job
    from ..scenes3d import find_blender_python, generate_3d, install_instructions, setup_blender_env
    from ..scenes3d.scene import assets_from_folders
    from ._launch import maybe_launch
    from .extract_textures import finalize_with_single_job

    check_job(0 if args.shard is None else args.shard, args.num_shards)  # before installing or looking for Blender

    if args.install_blender:
        py = setup_blender_env()
        print(f"Blender Python ready: {py}")
        if not args.output:
            return 0
    if not args.output:
        raise MatSegInputError("--output is required (the folder the scene folders go to)")
    if find_blender_python(args.blender_python) is None:
        print("matseg: error: no Python with bpy found.\n" + install_instructions(), file=sys.stderr)
        return 1
    # a bad preset, range or asset folder is refused here, before any job is queued on an engine
    config = scene_config(args)
    assets = assets_from_folders(natural_images=args.natural_images, textures=args.textures, pbr=args.pbr,
                                 hdri=args.hdri, objects=args.objects, builtin=not args.no_builtin)
    launched = maybe_launch(args, __name__, finalize_with_single_job,
                            shard_overrides={"no_preview": True, "install_blender": False}, claim="generate 3d",
                            sources=[args.natural_images, args.textures, args.pbr, args.hdri, args.objects])
    if launched is not None:
        return launched
    report = generate_3d(args.output, args.num, seed=args.seed, start=args.start, assets=assets, config=config,
                         workers=args.workers, threads=args.threads, blender_python=args.blender_python,
                         shard=args.shard, num_shards=args.num_shards, preview=not args.no_preview,
                         sources=[args.natural_images, args.textures, args.pbr, args.hdri, args.objects])
    print(report.summary())
    if report.preview:
        print(f"preview: {report.preview}")
    for res in report.failed:
        print(f"failed: scene {res.index}: {res.error}", file=sys.stderr)
    return 1 if report.failed else 0
