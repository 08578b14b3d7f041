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
    chunks: dict[tuple[int, ...], bytes | memoryview] = field(default_factory=dict)


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

    def _chunks(self, dataset: str) -> dict[tuple[int, ...], bytes | memoryview]:
        stored = self._datasets.get(dataset)
        return {} if stored is None else stored.chunks

    # Listings copy under the lock: other threads may create, delete or write meanwhile.
    def list_datasets(self) -> list[str]:
        with _LOCK:
            items = list(self._datasets.items())
        return sorted(name for name, stored in items if stored.meta is not None)

    def read_meta(self, dataset: str) -> bytes | None:
        stored = self._datasets.get(dataset)
        return None if stored is None else stored.meta

    def create_meta(self, dataset: str, data: bytes) -> None:
        with _LOCK:
            stored = self._datasets.setdefault(dataset, _Stored(None))
            if stored.meta is not None:
                raise DatasetExistsError(f"dataset {dataset!r} already exists in {self.location}")
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
        data = self._chunks(meta.name).get(idx)
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
        with _LOCK:  # chunks may be written before the dataset's metadata
            stored = self._datasets.setdefault(meta.name, _Stored(None))
            stored.chunks[idx] = frozen

    def read_chunk_view(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """A read-only view of the stored bytes where they are raw; otherwise a decoded copy."""
        data = self._chunks(meta.name).get(idx)
        if data is None or meta.codec.compressed or meta.codec.checksum:
            return self.read_chunk(meta, idx) if data is not None else None
        if len(data) != meta.dtype.itemsize * int(np.prod(meta.stored_shape(idx), dtype=np.int64)):
            return self.read_chunk(meta, idx)  # raises ChunkCorruptError
        return np.frombuffer(data, meta.dtype).reshape(meta.stored_shape(idx))

    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        return idx in self._chunks(meta.name)

    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        with _LOCK:
            self._chunks(meta.name).pop(idx, None)

    def stored_bytes(self, meta: DatasetMeta) -> int:
        with _LOCK:
            values = list(self._chunks(meta.name).values())
        return sum(len(data) for data in values)

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        with _LOCK:
            return list(self._chunks(meta.name))
