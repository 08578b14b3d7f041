"""Store prefixes: several dosna stores in one S3 bucket or one ceph pool."""

from __future__ import annotations

import re

from ..errors import InvalidNameError

__all__ = ["validate_prefix"]

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def validate_prefix(prefix: str) -> str:
    """``prefix`` without surrounding ``/`` if every ``/``-separated part is a valid name, else InvalidNameError.

    A part holds letters, digits and ``._-``, does not start with ``.`` and is at
    most 200 characters long; the empty prefix is the top of the bucket or pool.

    Examples
    --------
    >>> validate_prefix("/runs/2024-06/")
    'runs/2024-06'
    """
    if not isinstance(prefix, str):
        raise InvalidNameError(f"a store prefix is text, got {type(prefix).__name__}")
    stripped = prefix.strip("/")
    if stripped and not all(_SEGMENT.fullmatch(part) for part in stripped.split("/")):
        raise InvalidNameError(
            f"invalid store prefix {prefix!r}: parts separated by '/' of letters, digits and '._-', "
            "not starting with '.'"
        )
    return stripped
