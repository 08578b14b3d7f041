"""``python -m dosna`` runs the ``dosna`` command."""

from .cli import _run

_run()
