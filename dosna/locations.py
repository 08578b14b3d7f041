"""Connections described by text, as command lines and job scripts give them.

A store is a URL (``s3://bucket/run1``, ``/data/store``; see :mod:`dosna.urls`),
or the older pair ``--backend hdf5 --connection /data/store``: for hdf5 the
connection is a directory (its parent holds it), for ceph the pool, for s3 the
bucket, for ram any name. Backend and engine options come as ``k=v,k=v``, typed
by the parameters of the backend's or engine's class (see :mod:`dosna.options`).
"""

from __future__ import annotations

import os
from typing import Any

from . import registry
from .connection import Connection
from .options import parse_options
from .urls import open as open_url
from .urls import scheme_of

__all__ = ["location_url", "open_connection", "parse_options"]


def location_url(backend: str | None, location: str | os.PathLike) -> str:
    """The URL of ``location`` on ``backend`` (a URL is returned as it is).

    Raises
    ------
    ValueError
        If ``location`` is a URL of another backend than ``backend``.
    """
    text = os.fspath(location)
    scheme = scheme_of(text)
    if scheme is not None:
        if backend is not None and backend != scheme:
            raise ValueError(f"the store {text!r} is a {scheme} URL, but the backend given is {backend!r}")
        return text
    if backend in (None, "hdf5"):
        return text
    return f"{backend}://{text}"


def open_connection(
    backend: str | None,
    location: str | os.PathLike,
    engine: str | None = "cpu",
    options: dict[str, Any] | str | None = None,
    engine_options: dict[str, Any] | str | None = None,
    mode: str = "a",
) -> Connection:
    """A connected :class:`Connection` for ``location`` on ``backend``.

    Parameters
    ----------
    backend : str or None
        ``ram``, ``hdf5``, ``ceph``, ``s3`` or a registered backend; None: the
        scheme of ``location``, or hdf5 for a path.
    location : str or path-like
        A URL, or hdf5: a directory path (its parent holds it, its base name is
        the connection name); ceph: the pool (``pool/prefix``); s3: the bucket
        (``bucket/prefix``); otherwise the name.
    engine : str, optional
        ``cpu``, ``joblib``, ``mpi`` or a registered engine (None: the one
        chosen with :func:`dosna.use`).
    options, engine_options : dict or str
        Backend and engine options, as a dict or as ``k=v,...`` text.
    mode : {"a", "r", "r+", "w-", "w"}, default "a"
        As for :func:`dosna.open`; read-only commands use ``"r"``.
    """
    url = location_url(backend, location)
    backend_name = scheme_of(url) or "hdf5"
    if isinstance(options, str) or options is None:
        options = parse_options(
            options, registry.get_backend_class(backend_name), f"the {backend_name} backend"
        )
    else:
        options = dict(options)
    if backend_name == "hdf5" and "directory" in options and scheme_of(url) is None:
        # the original spelling: the connection name and, apart, the directory that holds it
        url = os.path.join(os.fspath(options.pop("directory")), url)
    if isinstance(engine_options, str) or engine_options is None:
        engine_name = engine or registry.selected()[1]
        engine_kw = parse_options(
            engine_options, registry.get_engine_class(engine_name), f"the {engine_name} engine"
        )
    else:
        engine_kw = dict(engine_options)
    return open_url(url, mode, engine=engine, engine_kw=engine_kw, **options)
