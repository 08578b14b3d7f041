"""Connections: a named place (directory, pool, bucket) that holds datasets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import modes, registry
from .backends.base import Backend
from .dataset import Dataset
from .engines.base import Engine
from .errors import ConnectionClosedError, DatasetNotFoundError
from .indexing import as_numpy
from .io import arrays
from .io.codecs import CodecSpec
from .metadata import DatasetMeta, normalize_shape, validate_name
from .namespaces import check_user_name

__all__ = ["Connection", "connection"]

log = logging.getLogger(__name__)

#: create_dataset warns when a dataset has at least this many chunks ...
MANY_CHUNKS = 1000
#: ... each smaller than this many bytes: per-chunk overhead would dominate its I/O.
TINY_CHUNK_BYTES = 16 * 1024


class Connection:
    """A connection to a store of datasets.

    Parameters
    ----------
    name : str
        What to connect to: a directory name (``hdf5``), a pool (``ceph``), a
        bucket (``s3``) or a label (``ram``).
    backend : str, optional
        Backend for this connection; default: the one chosen with :func:`dosna.use`.
    engine : str, optional
        Engine for this connection; default: the one chosen with :func:`dosna.use`.
    engine_kw : dict, optional
        Engine options (e.g. ``{'njobs': 4}``); default: those given to :func:`dosna.use`.
    mode : {"a", "r", "r+", "w-", "w"}, default "a"
        How :meth:`connect` opens the store: ``"r"`` refuses every write with
        ReadOnlyError and, like ``"r+"``, needs the store to exist; ``"a"``
        creates it if missing; ``"w-"`` fails if it exists; ``"w"`` deletes
        every dataset in it (see :func:`dosna.open`).
    **options
        Backend options, e.g. ``directory='/data'`` for ``hdf5``.

    Examples
    --------
    >>> import dosna as dn, numpy as np
    >>> with dn.Connection('demo', backend='ram') as con:
    ...     ds = con.create_dataset('x', data=np.arange(10), chunk_size=4)
    ...     int(ds[-1])
    9
    """

    def __init__(
        self,
        name: str,
        backend: str | None = None,
        engine: str | None = None,
        engine_kw: dict[str, Any] | None = None,
        *,
        mode: str = "a",
        **options: Any,
    ) -> None:
        self.name = validate_name(name, "connection")
        self.mode = modes.check_mode(mode)
        self._opened = False
        default_backend, default_engine, default_kw = registry.selected()
        backend_cls = registry.get_backend_class(backend or default_backend)
        engine_cls = registry.get_engine_class(engine or default_engine)
        if engine_kw is None:
            same_engine = engine is None or engine_cls is registry.get_engine_class(default_engine)
            engine_kw = default_kw if same_engine else {}
        self.backend: Backend = backend_cls(name, **options)
        self.engine: Engine = engine_cls(**engine_kw)
        self.connected = False

    # -- lifecycle -----------------------------------------------------------
    def connect(self) -> Connection:
        """Connect (idempotent) and return the connection itself."""
        if not self.connected:
            self.engine.check_backend(self.backend)
            if self._opened:  # existence was settled on the first connect; "w" clears only then
                modes.open_store(self.engine, self.backend, "a" if self.mode in ("w", "w-") else self.mode)
            else:
                modes.open_store(self.engine, self.backend, self.mode)
                self._opened = True
            self.connected = True
        return self

    def disconnect(self) -> None:
        """Disconnect (idempotent); datasets opened from it stop working."""
        if self.connected:
            self.connected = False
            self.backend.disconnect()

    def __enter__(self) -> Connection:
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    @property
    def read_only(self) -> bool:
        """Whether the connection was opened with ``mode="r"``."""
        return self.mode == "r"

    @property
    def url(self) -> str:
        """A URL for :func:`dosna.open` that reaches this store (no credentials in it)."""
        from .urls import store_url

        return store_url(self.backend)

    def check_writable(self, what: str = "write") -> None:
        """Raise ReadOnlyError if the connection is read-only (before any I/O)."""
        if self.mode == "r":
            raise modes.read_only_error(what, self.backend.location)

    def ensure_connected(self) -> None:
        """Raise ConnectionClosedError unless the connection is connected."""
        if not self.connected:
            raise ConnectionClosedError(
                f"connection {self.name!r} is not connected: call connect() or use it in a with block"
            )

    # -- MPI-style attributes (meaningful with the mpi engine) ---------------
    @property
    def mpi_rank(self) -> int:
        return self.engine.rank

    @property
    def mpi_size(self) -> int:
        return self.engine.size

    @property
    def mpi_is_root(self) -> bool:
        return self.engine.is_root

    @property
    def mpi_comm(self) -> Any:
        return getattr(self.engine, "comm", None)

    def mpi_barrier(self) -> None:
        self.engine.barrier()

    # -- datasets --------------------------------------------------------------
    @modes.refuses_read_only("create a dataset")
    def create_dataset(
        self,
        name: str,
        shape: Any = None,
        dtype: Any = None,
        fillvalue: Any = None,
        data: Any = None,
        chunk_size: Any = None,
        attrs: dict[str, Any] | None = None,
        *,
        chunks: Any = None,
        fill_value: Any = None,
        compression: str | None = None,
        compression_opts: int | None = None,
        shuffle: bool | None = None,
        checksum: bool = True,
    ) -> Dataset:
        """Create a dataset, optionally filled from ``data``.

        The positional order, ``(name, shape, dtype, fillvalue, data,
        chunk_size)``, is the original DosNa's.

        Parameters
        ----------
        name : str
            Dataset name: 1-200 characters from letters, digits, ``._-``, not
            starting with ``.`` nor with ``models.`` (the model store's).
        shape : int or tuple of int, optional
            Array shape; taken from ``data`` when omitted.
        dtype : dtype-like, optional
            Element type; default ``data.dtype`` or float64.
        fillvalue : scalar, optional
            What unwritten elements read as (default 0). ``fill_value=`` is
            accepted too (the zarr spelling).
        data : array-like, optional
            Initial content (NumPy array, h5py dataset, another dosna dataset,
            CPU torch tensor...), loaded chunk by chunk.
        chunk_size : int, tuple of int or None
            Chunk shape; an int applies to every axis; None picks ~1 MiB chunks.
            ``chunks=`` is accepted too (the h5py/zarr spelling).
        attrs : dict, optional
            Initial user attributes (JSON values; NumPy scalars and small arrays are converted).
        compression : {None, "zstd", "lz4", "blosc", "gzip"}, default None
            Compress every chunk (needs ``pip install 'dosna[codecs]'``). On the
            hdf5 backend each chunk file stays an HDF5 file with the matching
            filter, readable by h5py with ``import hdf5plugin``.
        compression_opts : int, optional
            The level: zstd -7..22 (default 3), gzip and blosc 0..9 (4 and 5),
            lz4 the acceleration 1.. (default 1, higher is faster).
        shuffle : bool, optional
            Byte-shuffle elements before compressing; default True when compressing.
        checksum : bool, default True
            Store a crc32c checksum with every chunk and verify it on every read:
            a damaged chunk raises ChunkCorruptError instead of returning wrong data.

        Returns
        -------
        Dataset

        Raises
        ------
        DatasetExistsError
            If a dataset of that name exists.
        InvalidNameError, ValueError, TypeError
            For bad input, before anything is written.
        CodecUnavailableError
            If the codec's package is not installed, before anything is written.
        """
        self.ensure_connected()
        check_user_name(name)
        chunk_size = _alias("chunk_size", chunk_size, "chunks", chunks)
        fillvalue = _alias("fillvalue", fillvalue, "fill_value", fill_value)
        if data is not None:
            data = as_numpy(data)  # CPU torch tensors, without a copy
            if not hasattr(data, "shape") or not hasattr(data, "dtype"):
                data = np.asarray(data)
            if shape is not None and normalize_shape(shape) != tuple(data.shape):
                raise ValueError(f"shape {shape} does not match the data's shape {data.shape}")
            shape = data.shape
            dtype = data.dtype if dtype is None else dtype
        if shape is None:
            raise TypeError("create_dataset needs a shape or data")
        codec = CodecSpec.create(compression, compression_opts, shuffle, checksum)
        meta = DatasetMeta.create(
            name, shape, "f8" if dtype is None else dtype, fillvalue, chunk_size, attrs, codec
        )
        if self.engine.is_root:
            _warn_if_tiny_chunks(meta)
        fill = None if data is None else (lambda target: arrays.load(self.engine, target, data))
        created = arrays.create(self.engine, self.backend, meta, fill)
        return Dataset(self, created.meta)

    def get_dataset(self, name: str) -> Dataset:
        """Open an existing dataset; raise DatasetNotFoundError (a KeyError) if missing."""
        self.ensure_connected()
        validate_name(name)
        raw = self.backend.read_meta(name)
        if raw is None:
            raise DatasetNotFoundError(f"dataset {name!r} does not exist in {self.backend.location}")
        return Dataset(self, arrays.parse_meta(self.backend, name, raw))

    def has_dataset(self, name: str) -> bool:
        """Whether a dataset of that name exists (False for names dosna would refuse)."""
        self.ensure_connected()
        try:
            validate_name(name)
        except ValueError:
            return False
        return self.backend.read_meta(name) is not None

    @modes.refuses_read_only("delete a dataset")
    def del_dataset(self, name: str) -> None:
        """Delete a dataset and all its chunks; raise DatasetNotFoundError if missing."""
        self.ensure_connected()
        validate_name(name)
        self.engine.collective(lambda: self.backend.delete_dataset(name))

    def datasets(self) -> list[str]:
        """Names of all datasets, sorted."""
        self.ensure_connected()
        return self.backend.list_datasets()

    keys = datasets

    def __getitem__(self, name: str) -> Dataset:
        return self.get_dataset(name)

    def __delitem__(self, name: str) -> None:
        self.del_dataset(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has_dataset(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.datasets())

    def __len__(self) -> int:
        return len(self.datasets())

    def __repr__(self) -> str:
        state = ("connected" if self.connected else "not connected") + (
            ", read-only" if self.read_only else ""
        )
        return (
            f"<dosna.Connection {self.name!r} backend={self.backend.name} "
            f"engine={self.engine.name} at {self.backend.location!r} ({state})>"
        )


def _warn_if_tiny_chunks(meta: DatasetMeta) -> None:
    chunk_bytes = meta.dtype.itemsize * int(np.prod(meta.chunk_size, dtype=np.int64))
    total = int(np.prod(meta.chunk_grid, dtype=np.int64))
    if total >= MANY_CHUNKS and chunk_bytes < TINY_CHUNK_BYTES:
        log.warning(
            "dataset %r gets %d chunks of %d bytes each: every chunk is a separate object or file, "
            "so per-chunk overhead will dominate its I/O; larger chunks (chunk_size=None picks about "
            "1 MiB) are usually much faster",
            meta.name,
            total,
            chunk_bytes,
        )


def _alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if alias_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {name}= or {alias}=, not both")
    return alias_value


def connection(name: str, **kwargs: Any) -> Connection:
    """Create a :class:`Connection` and connect it; use it in a ``with`` block.

    Examples
    --------
    >>> import dosna as dn
    >>> with dn.connection('tutorial', backend='ram') as con:
    ...     'nothing' in con
    False
    """
    return Connection(name, **kwargs).connect()
