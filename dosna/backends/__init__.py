"""Backends: where chunks are stored (see :mod:`dosna.backends.base`).

``AVAILABLE`` lists the registered backend names, as in the original DosNa.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "AVAILABLE":
        from ..registry import available

        return list(available()["backends"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
