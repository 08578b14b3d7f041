"""Optional packages: check that one is installed, or say which pip extra brings it."""

from __future__ import annotations

import importlib

from .errors import BackendUnavailableError

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> None:
    """Raise BackendUnavailableError naming ``pip install 'dosna[extra]'`` unless ``module`` imports.

    Commands call it before doing any work, so that a missing package never
    stops them half-way through their output.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"matplotlib"``.
    extra : str
        The extra of the dosna package that installs it, e.g. ``"plots"``.
    what : str
        What needs it, for the message (``"dosna show"``).

    Examples
    --------
    >>> require("json", "none", "this example")
    >>> require("no_such_module_here", "plots", "dosna show")
    Traceback (most recent call last):
    ...
    dosna.errors.BackendUnavailableError: dosna show needs no_such_module_here, which is not installed: pip install 'dosna[plots]'
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{what} needs {module}, which is not installed: pip install 'dosna[{extra}]'"
        ) from exc
