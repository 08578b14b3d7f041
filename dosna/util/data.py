"""The original DosNa's ``dosna.util.data``."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["slices2shape"]


def slices2shape(slices: Iterable[slice]) -> tuple[int, ...]:
    """The shape a tuple of ``slice(start, stop)`` (explicit bounds, step 1) selects."""
    return tuple(s.stop - s.start for s in slices)
