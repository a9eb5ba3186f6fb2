"""``python -m bayescale ...`` runs the command line (same as the ``bayescale`` script)."""

import sys

from .cli import main

sys.exit(main())
