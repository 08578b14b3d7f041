"""One URL per store: ``dosna.open(url)`` and ``Connection.url``.

=================================  ================================================
URL                                store
=================================  ================================================
``/data/run1``, ``Path(...)``      hdf5: the directory ``/data/run1``
``hdf5:///data/run1``              the same (``hdf5://rel/dir`` is relative)
``s3://bucket/prefix``             s3: datasets under ``prefix/`` in ``bucket``
``ceph://pool/prefix``             ceph: datasets in namespaces ``prefix/<name>``
``ram://name``                     ram: the in-memory store ``name``
``<scheme>://...``                 the backend registered as ``<scheme>``
=================================  ================================================

Options of the backend may follow as a query, ``?endpoint_url=http://h:7480``,
typed by the backend's signature like command-line options (see
:mod:`dosna.options`). A backend from a plugin parses the rest of its URL with a
class method ``from_url(location) -> (name, options)`` if it has one (else
``scheme://name``), and formats it with a ``url`` property (else
``scheme://name``).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .connection import Connection
from .options import typed_options

__all__ = ["StoreTarget", "open", "parse_url", "store_url"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+._-]*)://")


@dataclass(frozen=True)
class StoreTarget:
    """What a URL names: a backend, a connection name and backend options."""

    backend: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)


def scheme_of(url: str | os.PathLike) -> str | None:
    """The lower-case scheme of ``url``, or None for a plain path."""
    match = _SCHEME.match(os.fspath(url)) if isinstance(url, (str, os.PathLike)) else None
    return match.group(1).lower() if match else None


def _hdf5(path: str) -> tuple[str, dict[str, Any]]:
    if not path:
        raise ValueError("an hdf5 store needs a directory path")
    full = os.path.abspath(os.path.expanduser(path))
    name = os.path.basename(full)
    if not name:
        raise ValueError(f"an hdf5 store needs a directory below {full!r}, not the root itself")
    return name, {"directory": os.path.dirname(full)}


def _bucket_and_prefix(scheme: str, rest: str) -> tuple[str, dict[str, Any]]:
    name, _, prefix = rest.partition("/")
    if not name:
        raise ValueError(
            f"a {scheme} URL names the {'bucket' if scheme == 's3' else 'pool'}: {scheme}://NAME/..."
        )
    prefix = prefix.strip("/")
    return urllib.parse.unquote(name), ({"prefix": urllib.parse.unquote(prefix)} if prefix else {})


def _plain(scheme: str, rest: str, cls: type) -> tuple[str, dict[str, Any]]:
    parse = getattr(cls, "from_url", None)
    if parse is not None:
        name, options = parse(rest)
        return name, dict(options)
    name = urllib.parse.unquote(rest.rstrip("/"))
    if "/" in name or not name:
        raise ValueError(f"a {scheme} URL is {scheme}://NAME (one name, no path), got {scheme}://{rest}")
    return name, {}


def parse_url(url: str | os.PathLike) -> StoreTarget:
    """The backend, connection name and options ``url`` names (no I/O).

    Raises
    ------
    UnknownBackendError
        For a scheme no backend is registered under.
    ValueError
        For a URL its backend cannot read.
    InvalidOptionError
        For a query option the backend does not take, or a value it cannot hold.
    """
    if not isinstance(url, (str, os.PathLike)):
        raise TypeError(f"a store URL is a str or path, got {type(url).__name__}")
    text = os.fspath(url)
    scheme = scheme_of(text)
    if scheme is None:
        name, options = _hdf5(text)
        return StoreTarget("hdf5", name, options)
    rest = text[len(scheme) + 3 :]
    rest, _, query = rest.partition("?")
    cls = registry.get_backend_class(scheme)
    if scheme == "hdf5":
        name, options = _hdf5(urllib.parse.unquote(rest))
    elif scheme in ("s3", "ceph"):
        name, options = _bucket_and_prefix(scheme, rest)
    else:
        name, options = _plain(scheme, rest, cls)
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    raw = dict(pairs)
    if len(raw) != len(pairs):
        raise ValueError(f"an option is given twice in {text!r}")
    _merge(options, typed_options(cls, raw, f"the {scheme} backend"), "the URL")
    return StoreTarget(scheme, name, options)


def _merge(into: dict[str, Any], extra: dict[str, Any], where: str) -> None:
    for key, value in extra.items():
        if key in into and into[key] != value:
            raise TypeError(f"option {key!r} is given twice, differently ({where} and the keywords)")
        into[key] = value


def open(
    url: str | os.PathLike,
    mode: str = "a",
    *,
    storage_options: dict[str, Any] | None = None,
    engine: str | None = None,
    engine_kw: dict[str, Any] | None = None,
    **options: Any,
) -> Connection:
    """Open the store at ``url`` and return the connected :class:`Connection`.

    Parameters
    ----------
    url : str or path-like
        A directory path (hdf5), or ``hdf5://``, ``s3://bucket/prefix``,
        ``ceph://pool/prefix``, ``ram://name``, or the scheme of a backend
        plugin; backend options may follow as ``?key=value&...``.
    mode : {"a", "r", "r+", "w-", "w"}, default "a"
        ``"r"``: read only, every write raises ReadOnlyError, the store must
        exist; ``"r+"``: read/write, the store must exist; ``"a"``: read/write,
        created if missing; ``"w-"`` (or ``"x"``): a new store, StoreExistsError
        if it exists; ``"w"``: created if missing, every dataset in it deleted.
    storage_options : dict, optional
        Backend options as a dict (the fsspec/zarr spelling), e.g.
        ``{"endpoint_url": "http://127.0.0.1:7480"}``; merged with ``**options``.
    engine : str, optional
        Engine of the connection (default: the one chosen with :func:`dosna.use`).
    engine_kw : dict, optional
        Engine options.
    **options
        Backend options (``conffile=`` for ceph, ``endpoint_url=`` for s3...).

    Returns
    -------
    Connection
        Connected; use it in a ``with`` block to disconnect at the end.
        ``con.url`` gives a URL that reaches the same store.

    Raises
    ------
    StoreNotFoundError
        Mode ``"r"``/``"r+"`` and the store does not exist (nothing is created).
    StoreExistsError
        Mode ``"w-"`` and the store exists.

    Examples
    --------
    >>> import dosna as dn, numpy as np
    >>> with dn.open("ram://open-example", mode="w") as con:
    ...     _ = con.create_dataset("x", data=np.arange(4))
    >>> with dn.open("ram://open-example", mode="r") as con:
    ...     int(con["x"][-1]), con.url
    (3, 'ram://open-example')
    """
    target = parse_url(url)
    storage_options = dict(storage_options or {})
    both = sorted(set(storage_options) & set(options))
    if both:
        raise TypeError(f"options {both} are given both in storage_options and as keywords")
    merged = dict(target.options)
    _merge(merged, {**storage_options, **options}, "the URL")
    con = Connection(
        target.name, backend=target.backend, engine=engine, engine_kw=engine_kw, mode=mode, **merged
    )
    return con.connect()


def store_url(backend: Any) -> str:
    """A URL that :func:`open` accepts and that reaches ``backend``'s store.

    Options that say where the store is (an S3 endpoint, a ceph configuration
    file) are part of it; credentials never are.
    """
    url = getattr(backend, "url", None)
    if isinstance(url, str):
        return url
    name = getattr(backend, "name", "")
    if name == "hdf5":
        return "hdf5://" + urllib.parse.quote(os.path.abspath(backend.root))
    return f"{name}://{urllib.parse.quote(backend.connection_name)}"
