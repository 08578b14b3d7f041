"""Dataset names reserved for dosna's own stores.

The model store (:mod:`dosna.tensors`) keeps every model version in datasets
named ``models.<model>.v<version>...``. Those names are its namespace: users
cannot create a dataset there (:func:`check_user_name` raises
:class:`~dosna.errors.InvalidNameError` in ``create_dataset``, ``clone`` and
``map``), so a user dataset can never be taken for a model, and a model can
never be blocked by a user dataset. Only code running inside :func:`owned_by`
creates datasets in a reserved namespace.

Datasets already stored under such names (written by an older dosna, or by
another program) can still be opened, read and deleted; the model store
validates everything it reads there.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from .errors import InvalidNameError

__all__ = ["RESERVED", "check_user_name", "owned_by"]

#: Reserved name prefixes and who owns them.
RESERVED = {"models.": "the model store (dosna.tensors)"}

_writer: contextvars.ContextVar[str | None] = contextvars.ContextVar("dosna_namespace_writer", default=None)


def check_user_name(name: str) -> None:
    """Raise :class:`InvalidNameError` if a new dataset may not be called ``name`` here.

    A name in a reserved namespace is allowed only inside :func:`owned_by` for
    that namespace.
    """
    for prefix, owner in RESERVED.items():
        if isinstance(name, str) and name.startswith(prefix) and _writer.get() != prefix:
            raise InvalidNameError(
                f"invalid dataset name {name!r}: names starting with {prefix!r} are reserved for {owner}"
            )


@contextlib.contextmanager
def owned_by(prefix: str) -> Iterator[None]:
    """Let the calling code (this thread or task) create datasets whose names start with ``prefix``."""
    if prefix not in RESERVED:
        raise ValueError(f"{prefix!r} is not a reserved namespace")
    token = _writer.set(prefix)
    try:
        yield
    finally:
        _writer.reset(token)
