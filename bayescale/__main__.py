"""``python -m bayescale ...`` runs the command line (same as the ``bayescale`` script)."""

from .cli import run

run()
