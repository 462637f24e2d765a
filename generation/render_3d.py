#!/usr/bin/env python3
"""Render synthetic 3D MatSeg scenes with Blender (Cycles, CPU) into the official layout.

    python generation/render_3d.py --num 100 --seed 0 --resolution 512 --samples 32 --workers 2 --output out/3d

Same options as ``matseg generate 3d`` (``--help``); ``--install-blender`` creates the bpy environment.
Resumable: finished scenes are skipped, unfinished ones redone.
"""

import sys

from matseg_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", "3d", *sys.argv[1:]]))
