"""``--json``: machine-readable output for the commands that print tables or summaries."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

__all__ = ["add_json_argument", "print_json"]


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` to a sub-command's parser."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _plain(value: Any) -> Any:
    if isinstance(value, np.dtype):
        return value.str
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON (NumPy scalars, dtypes and arrays as plain JSON values)."""
    print(json.dumps(value, indent=2, default=_plain))
