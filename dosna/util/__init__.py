"""The original DosNa's ``dosna.util`` helpers, for scripts written against it.

``Timer`` times a ``with`` block and prints the elapsed seconds;
``shape2str``/``str2shape``/``dtype2str`` and ``named_module`` are the small
conversions the original exported. MPI helpers are in :mod:`dosna.util.mpi`.

Examples
--------
>>> from dosna.util import Timer, shape2str, str2shape
>>> str2shape(shape2str((4, 5)))
(4, 5)
>>> with Timer('nothing') as t:  # doctest: +ELLIPSIS
...     pass
[*] nothing -- Elapsed: ... seconds
>>> t.time >= 0
True
"""

from __future__ import annotations

import importlib
import time
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["Timer", "dtype2str", "named_module", "shape2str", "str2shape"]


def shape2str(dims: Any, sep: str = "::") -> str:
    """``(4, 5)`` -> ``'4::5'``."""
    return sep.join(map(str, dims))


def str2shape(string: str, sep: str = "::") -> tuple[int, ...]:
    """``'4::5'`` -> ``(4, 5)``."""
    return tuple(int(n) for n in string.split(sep))


def dtype2str(dtype: Any) -> str:
    """The NumPy type string of ``dtype``, e.g. ``'<f4'``."""
    return np.dtype(dtype).str


def named_module(name: str) -> ModuleType:
    """Import the module called ``name``."""
    return importlib.import_module(name)


class Timer:
    """Time a ``with`` block; print ``[*] name -- Elapsed: S seconds`` at its end.

    Parameters
    ----------
    name : str
        What is timed, for the printed line.

    Attributes
    ----------
    tstart, tend, time : float
        Start and end (``time.time()``) and the elapsed seconds (set at the end).
    """

    def __init__(self, name: str = "Timer") -> None:
        self.name = name
        self.tstart = -1.0
        self.tend = -1.0
        self.time = 0.0

    def __enter__(self) -> Timer:
        self.tstart = time.time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.tend = time.time()
        self.time = self.tend - self.tstart
        print(f"[*] {self.name} -- Elapsed: {self.time:.4f} seconds")
