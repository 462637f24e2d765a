"""``python -m matseg_hub`` is the ``matseg`` command."""

import sys

from .cli import main

sys.exit(main())
