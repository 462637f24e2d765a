"""Generate 2D MatSeg scenes: ``python generation/generate_2d.py --num 100 --size 512 --output scenes/``.

The same as ``matseg generate 2d`` (see ``--help``); the work is done by :mod:`matseg_hub.scenes2d` and
:mod:`matseg_hub.synthetic_dataset`.
"""

import sys

from matseg_hub.cli.generate_2d import main

if __name__ == "__main__":
    sys.exit(main())
