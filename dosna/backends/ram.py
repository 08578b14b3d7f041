"""The ``ram`` backend: datasets in this process's memory.

Connections with the same name in one process share their datasets, so a
dataset created through one connection is seen by a later one. Nothing is shared
between processes: the joblib engine with processes and the mpi engine with more
than one rank refuse this backend.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import DatasetExistsError, DatasetNotFoundError
from ..io.codecs import Encoded
from ..metadata import DatasetMeta
from .objects import EncodedObjectBackend

__all__ = ["RamBackend"]

log = logging.getLogger(__name__)


@dataclass
class _Stored:
    meta: bytes | None  # None: chunks written for a dataset not yet created
    chunks: dict[tuple[int, ...], bytes | memoryview] = field(default_factory=dict)  # datasets without a uid
    areas: dict[str, dict[tuple[int, ...], bytes | memoryview]] = field(default_factory=dict)  # by uid


_STORES: dict[str, dict[str, _Stored]] = {}
_LOCK = threading.Lock()


class RamBackend(EncodedObjectBackend):
    """Datasets held in memory, shared by connections of the same name in this process.

    Each chunk is kept as its encoded bytes (compressed and checksummed as the
    dataset says), exactly as an object store would keep it.

    Parameters
    ----------
    name : str
        Connection name; connections with the same name share their datasets.
    directory : str, optional
        Ignored (accepted so that ``Connection(name, directory=...)`` works for
        every backend, as in the original DosNa).
    """

    name: ClassVar[str] = "ram"
    shared_between_processes: ClassVar[bool] = False

    def __init__(self, name: str, directory: str | None = None) -> None:
        super().__init__(name)
        if directory is not None:
            log.debug("ram backend: directory=%r ignored (nothing is stored on disk)", directory)
        with _LOCK:
            self._datasets = _STORES.setdefault(name, {})

    @property
    def location(self) -> str:
        return f"ram://{self.connection_name}"

    def _chunks(self, meta: DatasetMeta) -> dict[tuple[int, ...], bytes | memoryview]:
        stored = self._datasets.get(meta.name)
        if stored is None:
            return {}
        return stored.chunks if meta.uid is None else stored.areas.get(meta.uid, {})

    def prepare_create(self, meta: DatasetMeta) -> None:
        if meta.uid is None:
            super().prepare_create(meta)
            return
        with _LOCK:
            self._datasets.setdefault(meta.name, _Stored(None)).areas.setdefault(meta.uid, {})

    def purge_uncommitted(self, meta: DatasetMeta) -> None:
        if meta.uid is None:
            super().purge_uncommitted(meta)
            return
        with _LOCK:
            stored = self._datasets.get(meta.name)
            if stored is not None:
                stored.areas.pop(meta.uid, None)
                if stored.meta is None and not stored.areas and not stored.chunks:
                    del self._datasets[meta.name]

    # Listings copy under the lock: other threads may create, delete or write meanwhile.
    def list_datasets(self) -> list[str]:
        with _LOCK:
            items = list(self._datasets.items())
        return sorted(name for name, stored in items if stored.meta is not None)

    def read_meta(self, dataset: str) -> bytes | None:
        stored = self._datasets.get(dataset)
        return None if stored is None else stored.meta

    def create_meta(self, dataset: str, data: bytes) -> None:
        uid = DatasetMeta.from_json(data).uid
        with _LOCK:
            stored = self._datasets.setdefault(dataset, _Stored(None))
            if stored.meta is not None:
                raise DatasetExistsError(f"dataset {dataset!r} already exists in {self.location}")
            if uid is not None and uid not in stored.areas:
                raise DatasetNotFoundError(
                    f"dataset {dataset!r} in {self.location} was deleted while it was being created"
                )
            stored.meta = bytes(data)

    def update_meta(self, dataset: str, data: bytes) -> None:
        stored = self._datasets.get(dataset)
        if stored is None or stored.meta is None:
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.location}")
        stored.meta = bytes(data)

    def delete_dataset(self, dataset: str) -> None:
        with _LOCK:
            stored = self._datasets.get(dataset)
            if stored is None or stored.meta is None:
                raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.location}")
            del self._datasets[dataset]

    def fetch(
        self, meta: DatasetMeta, idx: tuple[int, ...], byte_range: tuple[int, int]
    ) -> bytes | memoryview | None:
        data = self._chunks(meta).get(idx)
        if data is None:
            return None
        offset, length = byte_range
        return memoryview(data)[offset : offset + length]

    def store(self, meta: DatasetMeta, idx: tuple[int, ...], data: Encoded) -> None:
        # never changed once stored (readers get views of it); an array the
        # encoder made is ours already, a memoryview may be the caller's memory
        frozen = (
            data.data if isinstance(data, np.ndarray) else data if isinstance(data, bytes) else bytes(data)
        )
        with _LOCK:
            if meta.uid is None:  # chunks may be written before the dataset's metadata
                area: dict | None = self._datasets.setdefault(meta.name, _Stored(None)).chunks
            else:  # never after the dataset was deleted
                stored = self._datasets.get(meta.name)
                area = None if stored is None else stored.areas.get(meta.uid)
            if area is not None:
                area[idx] = frozen
        if area is None:
            raise DatasetNotFoundError(f"dataset {meta.name!r} no longer exists in {self.location}")

    def read_chunk_view(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """A read-only view of the stored bytes where they are raw; otherwise a decoded copy."""
        data = self._chunks(meta).get(idx)
        if data is None or meta.codec.compressed or meta.codec.checksum:
            return self.read_chunk(meta, idx) if data is not None else None
        if len(data) != meta.dtype.itemsize * int(np.prod(meta.stored_shape(idx), dtype=np.int64)):
            return self.read_chunk(meta, idx)  # raises ChunkCorruptError
        return np.frombuffer(data, meta.dtype).reshape(meta.stored_shape(idx))

    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        return idx in self._chunks(meta)

    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        with _LOCK:
            self._chunks(meta).pop(idx, None)

    def stored_bytes(self, meta: DatasetMeta) -> int:
        with _LOCK:
            values = list(self._chunks(meta).values())
        return sum(len(data) for data in values)

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        with _LOCK:
            return list(self._chunks(meta))
