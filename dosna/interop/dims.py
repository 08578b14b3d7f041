"""Dimension names of a dataset, kept in its attributes (no metadata format change)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DIMS_ATTR", "check_dims", "dims_from_attrs", "without_dims"]

#: The attribute holding the axis names: a JSON list of str, as xarray writes in zarr stores.
DIMS_ATTR = "_ARRAY_DIMENSIONS"


def check_dims(names: Any, ndim: int) -> tuple[str, ...]:
    """``names`` as a tuple of ``ndim`` distinct non-empty str; TypeError or ValueError otherwise."""
    if isinstance(names, str):
        names = (names,)
    try:
        dims = tuple(names)
    except TypeError:
        raise TypeError(f"dims must be a sequence of str, not {names!r}") from None
    if not all(isinstance(d, str) and d for d in dims):
        raise TypeError(f"dims must be non-empty str, got {dims!r}")
    if len(dims) != ndim:
        raise ValueError(f"{len(dims)} dimension names {dims!r} for {ndim} axes")
    if len(set(dims)) != len(dims):
        raise ValueError(f"dimension names must be distinct, got {dims!r}")
    return dims


def dims_from_attrs(attrs: Mapping[str, Any], ndim: int) -> tuple[str, ...] | None:
    """The axis names stored in ``attrs``, or None if there are none (or they do not fit ``ndim``)."""
    raw = attrs.get(DIMS_ATTR)
    if raw is None:
        return None
    try:
        return check_dims(raw, ndim)
    except (TypeError, ValueError):
        return None


def without_dims(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` less the axis names (for targets that store them on their own)."""
    return {k: v for k, v in attrs.items() if k != DIMS_ATTR}
