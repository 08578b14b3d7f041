"""The ``cpu`` engine: everything runs sequentially in the calling thread."""

from __future__ import annotations

from .base import Engine

__all__ = ["CpuEngine"]


class CpuEngine(Engine):
    """Sequential execution; the default engine."""

    name = "cpu"
