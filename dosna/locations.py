"""Connections described by text, as command lines and job scripts give them.

``--backend hdf5 --connection /data/store`` means the hdf5 connection ``store``
in the directory ``/data``; for ceph the connection is the pool, for s3 the
bucket, for ram any name. Backend and engine options come as ``k=v,k=v``.
"""

from __future__ import annotations

import os
from typing import Any

from .connection import Connection

__all__ = ["open_connection", "parse_options"]


def parse_options(text: str | None) -> dict[str, Any]:
    """``'a=1,b=x,c=true'`` → ``{'a': 1, 'b': 'x', 'c': True}`` (ints, floats, booleans converted).

    Raises ValueError for an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"option {item!r} is not of the form key=value")
        key = key.strip()
        for convert in (int, float):
            try:
                out[key] = convert(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def open_connection(
    backend: str,
    location: str,
    engine: str = "cpu",
    options: dict[str, Any] | str | None = None,
    engine_options: dict[str, Any] | str | None = None,
) -> Connection:
    """A connected :class:`Connection` for ``location`` on ``backend``.

    Parameters
    ----------
    backend : str
        ``ram``, ``hdf5``, ``ceph``, ``s3`` or a registered backend.
    location : str
        hdf5: a directory path (its parent holds it, its base name is the
        connection name); ceph: the pool; s3: the bucket; otherwise the name.
    engine : str
        ``cpu``, ``joblib``, ``mpi`` or a registered engine.
    options, engine_options : dict or str
        Backend and engine options, as a dict or as ``k=v,...`` text.
    """
    options = parse_options(options) if isinstance(options, str) or options is None else dict(options)
    engine_kw = (
        parse_options(engine_options)
        if isinstance(engine_options, str) or engine_options is None
        else dict(engine_options)
    )
    name = location
    if backend == "hdf5" and "directory" not in options:
        path = os.path.abspath(location)
        options["directory"], name = os.path.dirname(path), os.path.basename(path)
    con = Connection(name, backend=backend, engine=engine, engine_kw=engine_kw, **options)
    return con.connect()
