"""Engines: how work on many chunks is executed (see :mod:`dosna.engines.base`).

``AVAILABLE`` lists the registered engine names, and ``'jl'`` (the original
DosNa's name of the joblib engine).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "AVAILABLE":
        from ..registry import available

        names = list(available()["engines"])
        return [*names, "jl"] if "joblib" in names and "jl" not in names else names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
