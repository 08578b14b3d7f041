"""``python -m dosna.cli`` runs the ``dosna`` command."""

from . import _run

_run()
