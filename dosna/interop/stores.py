"""Where a dosna store named by text or an object is opened (the one place that resolves them)."""

from __future__ import annotations

import os
from typing import Any

from ..connection import Connection
from ..errors import DatasetNotFoundError

__all__ = ["open_store"]


def open_store(store: Any, mode: str = "r", **options: Any) -> tuple[Connection, bool]:
    """The connected :class:`Connection` for ``store``, and whether the caller must disconnect it.

    Parameters
    ----------
    store : Connection, str or path-like
        An open connection (used as it is), or a store URL: what
        ``dosna.open`` accepts where it exists, else the directory of an hdf5
        store.
    mode : {"r", "a"}
        ``"r"``: the store must exist and is only read; ``"a"``: it is created
        if missing.
    **options
        Backend options, passed on to ``dosna.open``.
    """
    if isinstance(store, Connection):
        store.connect()
        return store, False
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"a dosna store is a Connection, a URL or a directory, not {type(store).__name__}")
    import dosna

    opener = getattr(dosna, "open", None)
    if opener is not None:
        return opener(store, mode=mode, **options), True
    from ..locations import open_connection

    path = os.fspath(store)
    if mode == "r" and not os.path.isdir(path):
        raise DatasetNotFoundError(f"no dosna store at {path!r}")
    return open_connection("hdf5", path, options=options), True
