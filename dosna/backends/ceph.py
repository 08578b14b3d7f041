"""The ``ceph`` backend: datasets as objects in a RADOS pool, through librados.

Layout in the pool given as the connection name:

- each dataset lives in its own RADOS *namespace* (the dataset name): its
  metadata object ``dosna.meta`` (JSON) and one object per chunk, named like
  ``<uid>/3.0.12`` (the dataset's uid, so that a re-created or half-created
  dataset never shares a chunk with another; ``3.0.12`` for datasets written
  before uids existed), holding the chunk's encoded bytes;
- the object ``dosna.datasets`` in the default namespace lists the datasets in
  its omap, so listing them never scans the pool.

With a store prefix (``ceph://pool/runs/1`` has the prefix ``runs/1``) a
dataset's namespace is ``<prefix>/<dataset>`` and the index object lives in the
namespace ``<prefix>/``, so several stores share a pool without seeing each
other's datasets (dataset names never hold ``/``).

Whole chunks are written with one ``write_full`` (atomic in RADOS); partial
reads fetch only the byte range that holds the selection. Deleting a dataset
removes its chunks by name from the chunk grid, without listing the pool.
Every librados call runs under the connection's timeouts, so a dead cluster
gives :class:`~dosna.errors.StoreUnavailableError` within them, never a hang.

The ``rados`` module comes from the system (Debian: ``python3-rados``, built for
CPython 3.11); ``scripts/venv.sh`` shows how a virtualenv can import it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from ..errors import (
    BackendUnavailableError,
    DatasetExistsError,
    DatasetNotFoundError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from ..io.codecs import Encoded
from ..metadata import DatasetMeta
from .base import IOHints, chunk_key, parse_chunk_key
from .objects import EncodedObjectBackend
from .prefixes import validate_prefix

try:
    import rados
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailableError(
        "the ceph backend needs the librados Python binding 'rados' (Debian/Ubuntu: "
        "apt-get install python3-rados; in a virtualenv see scripts/venv.sh: dosna_link_rados)"
    ) from exc

__all__ = ["CephBackend"]


def _object(meta: DatasetMeta, idx: tuple[int, ...]) -> str:
    """The name of chunk ``idx``'s object in its dataset's namespace."""
    return chunk_key(idx) if meta.uid is None else f"{meta.uid}/{chunk_key(idx)}"


def _parse_object(meta: DatasetMeta, key: str) -> tuple[int, ...] | None:
    """Inverse of :func:`_object`; None for objects of other incarnations and other objects."""
    if meta.uid is not None:
        head, sep, key = key.partition("/")
        if not sep or head != meta.uid:
            return None
    return parse_chunk_key(key, meta.ndim, meta.chunk_grid)


INDEX_OBJECT = "dosna.datasets"
META_OBJECT = "dosna.meta"
_MAX_META = 1 << 20
_LIST_INSTEAD_OF_GRID = 100_000  # above this many grid cells, delete by listing the namespace
# Backends unpickled in worker processes share one connected backend per
# process and configuration: connecting to the cluster for every task is slow.
_WORKER_BACKENDS: dict[tuple, CephBackend] = {}
_WORKER_LOCK = threading.Lock()


class CephBackend(EncodedObjectBackend):
    """Datasets in a Ceph pool (one namespace each), chunks as objects.

    Parameters
    ----------
    name : str
        The pool; it must exist (pools are an administrator's decision).
    prefix : str, default ``''``
        The store's part of the pool: its datasets live in the RADOS
        namespaces ``<prefix>/<dataset>``, so several stores share a pool.
    conffile : str, default ``'ceph.conf'``
        Ceph configuration file (monitor addresses, keyring location).
    timeout : float, default 5
        Seconds to reach the cluster (``client_mount_timeout``).
    client_id : str, optional
        Ceph user, e.g. ``'client.dosna'`` or ``'dosna'`` (default: admin).
    keyring : str, optional
        Keyring file, if not the one the configuration names.
    op_timeout : float, default 30
        Seconds any single operation may take (``rados_osd_op_timeout`` and
        ``rados_mon_op_timeout``).
    io_threads : int, default 4
        Chunk writes (and small reads) in flight at once for one call.
    """

    name: ClassVar[str] = "ceph"

    def __init__(
        self,
        name: str,
        prefix: str = "",
        conffile: str | os.PathLike = "ceph.conf",
        timeout: float = 5,
        client_id: str | None = None,
        keyring: str | None = None,
        op_timeout: float = 30,
        io_threads: int = 4,
    ) -> None:
        super().__init__(name)
        self.prefix = validate_prefix(prefix)
        self.conffile = os.fspath(conffile)
        self.timeout = float(timeout)
        self.client_id = (
            client_id[len("client.") :] if client_id and client_id.startswith("client.") else client_id
        )
        self.keyring = keyring
        self.op_timeout = float(op_timeout)
        self.io_threads = max(1, int(io_threads))
        self._reset()

    def _reset(self) -> None:
        self._cluster: Any = None
        self._ioctx: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # worker processes reconnect with the same options
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        key = tuple(sorted((k, str(v)) for k, v in state.items()))
        with _WORKER_LOCK:
            shared = _WORKER_BACKENDS.get(key)
            if shared is None:
                self._reset()
                shared = _WORKER_BACKENDS[key] = self
        if shared is not self:  # use the process's connection and I/O contexts
            self._cluster, self._ioctx, self._lock = shared._cluster, shared._ioctx, shared._lock
            self._shared_with = shared

    def _ensure_connected(self) -> None:
        owner = getattr(self, "_shared_with", self)
        if owner._cluster is None:
            owner.connect()
            self._cluster = owner._cluster

    @property
    def location(self) -> str:
        return f"ceph://{self.connection_name}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def url(self) -> str:
        """``ceph://pool/prefix?conffile=...`` (and the user and keyring file, if given)."""
        query = {
            k: v
            for k, v in (
                ("conffile", os.path.abspath(self.conffile)),
                ("client_id", self.client_id),
                ("keyring", self.keyring),
            )
            if v
        }
        return f"{self.location}?{urllib.parse.urlencode(query)}"

    def _ns(self, dataset: str) -> str:
        """The RADOS namespace of ``dataset``."""
        return f"{self.prefix}/{dataset}" if self.prefix else dataset

    @property
    def _index_ns(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def store_exists(self) -> bool:
        """Whether the pool exists and, with a prefix, a dataset was ever created under it.

        Connects to the cluster; a missing pool raises the error :meth:`connect` gives.
        """
        self.connect()
        if not self.prefix:
            return True
        with self._failures("look up the dataset index"):
            try:
                self._ctx(self._index_ns).stat(INDEX_OBJECT)
            except rados.ObjectNotFound:
                return False
        return True

    # -- connection --------------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            if self._cluster is not None:
                return
            if not os.path.isfile(self.conffile):
                raise FileNotFoundError(f"ceph configuration file {self.conffile!r} does not exist")
            conf = {
                "client_mount_timeout": f"{self.timeout:g}",
                "rados_osd_op_timeout": f"{self.op_timeout:g}",
                "rados_mon_op_timeout": f"{self.op_timeout:g}",
            }
            if self.keyring:
                conf["keyring"] = self.keyring
            cluster = rados.Rados(conffile=self.conffile, rados_id=self.client_id, conf=conf)
            try:
                cluster.connect(timeout=self.timeout)
            except rados.Error as exc:
                with contextlib.suppress(Exception):
                    cluster.shutdown()
                raise StoreUnavailableError(
                    f"cannot reach the ceph cluster of {self.conffile!r} within {self.timeout:g} s: {exc}"
                ) from None
            try:
                exists = cluster.pool_exists(self.connection_name)
            except rados.Error as exc:
                cluster.shutdown()
                raise StoreUnavailableError(
                    f"ceph: cannot look up pool {self.connection_name!r}: {exc}"
                ) from None
            if not exists:
                cluster.shutdown()
                raise StoreNotFoundError(
                    f"ceph pool {self.connection_name!r} does not exist; an administrator creates it with "
                    f"`ceph osd pool create {self.connection_name}`"
                )
            self._cluster = cluster

    def disconnect(self) -> None:
        with self._lock:
            for ioctx in self._ioctx.values():
                with contextlib.suppress(Exception):
                    ioctx.close()
            if self._cluster is not None:
                with contextlib.suppress(Exception):
                    self._cluster.shutdown()
            self._cluster, self._ioctx = None, {}

    def _ctx(self, namespace: str) -> Any:
        """An I/O context on the pool for one namespace (cached; librados ones are thread-safe)."""
        ioctx = self._ioctx.get(namespace)
        if ioctx is None:
            if self._cluster is None:
                self._ensure_connected()  # a worker process that received a pickled backend
            with self._lock:
                ioctx = self._ioctx.get(namespace)
                if ioctx is None:
                    with self._failures("open pool"):
                        ioctx = self._cluster.open_ioctx(self.connection_name)
                    ioctx.set_namespace(namespace)
                    self._ioctx[namespace] = ioctx
        return ioctx

    @contextlib.contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        try:
            yield
        except (rados.ObjectNotFound, rados.ObjectExists):
            raise
        except rados.Error as exc:
            raise StoreUnavailableError(f"ceph pool {self.connection_name!r}: {what} failed: {exc}") from None

    # -- datasets ------------------------------------------------------------------
    def list_datasets(self) -> list[str]:
        ioctx = self._ctx(self._index_ns)
        names: list[str] = []
        start = ""
        with self._failures("list datasets"):
            while True:
                with rados.ReadOpCtx() as op:
                    it, _ = ioctx.get_omap_keys(op, start, 1000)
                    try:
                        ioctx.operate_read_op(op, INDEX_OBJECT)
                    except rados.ObjectNotFound:
                        return []
                    page = [key for key, _ in it]
                names.extend(page)
                if len(page) < 1000:
                    return sorted(names)
                start = page[-1]

    def _set_index(self, dataset: str, present: bool) -> None:
        ioctx = self._ctx(self._index_ns)
        with self._failures("update the dataset index"), rados.WriteOpCtx() as op:
            if present:
                ioctx.set_omap(op, (dataset,), (b"",))
            else:
                ioctx.remove_omap_keys(op, (dataset,))
            ioctx.operate_write_op(op, INDEX_OBJECT)

    def read_meta(self, dataset: str) -> bytes | None:
        ioctx = self._ctx(self._ns(dataset))
        with self._failures(f"read metadata of {dataset!r}"):
            try:
                data = ioctx.read(META_OBJECT, _MAX_META)
            except rados.ObjectNotFound:
                return None
            if len(data) == _MAX_META:
                size, _ = ioctx.stat(META_OBJECT)
                data = ioctx.read(META_OBJECT, size)
        return data

    def create_meta(self, dataset: str, data: bytes) -> None:
        ioctx = self._ctx(self._ns(dataset))
        op = ioctx.create_write_op()
        try:
            op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
            op.write_full(bytes(data))
            with self._failures(f"create dataset {dataset!r}"):
                ioctx.operate_write_op(op, META_OBJECT)
        except rados.ObjectExists:
            raise DatasetExistsError(f"dataset {dataset!r} already exists in {self.location}") from None
        finally:
            ioctx.release_write_op(op)
        self._set_index(dataset, True)

    def update_meta(self, dataset: str, data: bytes) -> None:
        if self.read_meta(dataset) is None:
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.location}")
        with self._failures(f"update metadata of {dataset!r}"):
            self._ctx(self._ns(dataset)).write_full(META_OBJECT, bytes(data))

    def delete_dataset(self, dataset: str) -> None:
        raw = self.read_meta(dataset)
        if raw is None:
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.location}")
        ioctx = self._ctx(self._ns(dataset))
        with self._failures(f"delete dataset {dataset!r}"):
            ioctx.remove_object(META_OBJECT)  # from here on the dataset does not exist
        self._set_index(dataset, False)
        try:
            meta = DatasetMeta.from_json(raw)
        except (ValueError, TypeError, KeyError):
            meta = None
        if meta is not None and meta.total_chunks <= _LIST_INSTEAD_OF_GRID:
            keys: Iterable[str] = (
                _object(meta, i) for i in itertools.product(*(range(g) for g in meta.chunk_grid))
            )
        else:
            keys = [o.key for o in ioctx.list_objects()]
        self._remove_many(ioctx, keys)

    def _remove_many(self, ioctx: Any, keys: Iterable[str]) -> None:
        """Remove objects with asynchronous requests, a bounded number in flight."""
        in_flight: list = []
        with self._failures("delete chunks"):
            for key in keys:
                in_flight.append(ioctx.aio_remove(key))
                if len(in_flight) >= 64:
                    for completion in in_flight:
                        completion.wait_for_complete()
                    in_flight = []
            for completion in in_flight:
                completion.wait_for_complete()

    # -- chunks ----------------------------------------------------------------------
    def chunk_location(self, meta: DatasetMeta, idx: tuple[int, ...]) -> str:
        return f"{self.location}/{meta.name}/{_object(meta, idx)}"

    def fetch(self, meta: DatasetMeta, idx: tuple[int, ...], byte_range: tuple[int, int]) -> bytes | None:
        with self._failures(f"read chunk {idx} of {meta.name!r}"):
            try:
                return self._ctx(self._ns(meta.name)).read(_object(meta, idx), byte_range[1], byte_range[0])
            except rados.ObjectNotFound:
                return None

    @property
    def hints(self) -> IOHints:
        # Large reads are bound by the CPU the client and the OSD share; small
        # ones by round trips, which concurrency hides.
        return IOHints(threads=self.io_threads, parallel_min_part=0, parallel_max_part=1 << 18)

    def store(self, meta: DatasetMeta, idx: tuple[int, ...], data: Encoded) -> None:
        with self._failures(f"write chunk {idx} of {meta.name!r}"):
            self._ctx(self._ns(meta.name)).write_full(_object(meta, idx), bytes(data))

    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        with self._failures(f"stat chunk {idx} of {meta.name!r}"):
            try:
                self._ctx(self._ns(meta.name)).stat(_object(meta, idx))
            except rados.ObjectNotFound:
                return False
        return True

    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        with (
            self._failures(f"delete chunk {idx} of {meta.name!r}"),
            contextlib.suppress(rados.ObjectNotFound),
        ):
            self._ctx(self._ns(meta.name)).remove_object(_object(meta, idx))

    def stored_bytes(self, meta: DatasetMeta) -> int:
        total = 0
        with self._failures(f"stat chunks of {meta.name!r}"):
            ioctx = self._ctx(self._ns(meta.name))
            for idx in self.list_chunks(meta):
                with contextlib.suppress(rados.ObjectNotFound):
                    total += int(ioctx.stat(_object(meta, idx))[0])
        return total

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        with self._failures(f"list chunks of {meta.name!r}"):
            keys = [o.key for o in self._ctx(self._ns(meta.name)).list_objects()]
        return sorted(idx for idx in (_parse_object(meta, k) for k in keys) if idx is not None)
