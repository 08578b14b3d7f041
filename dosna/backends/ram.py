"""The ``ram`` backend: datasets in this process's memory.

Connections with the same name in one process share their datasets, so a
dataset created through one connection is seen by a later one. Nothing is shared
between processes: the joblib engine with processes and the mpi engine with more
than one rank refuse this backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import DatasetExistsError, DatasetNotFoundError
from ..metadata import DatasetMeta
from .base import Backend

__all__ = ["RamBackend"]


@dataclass
class _Stored:
    meta: bytes | None  # None: chunks written for a dataset not yet created
    chunks: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)


_STORES: dict[str, dict[str, _Stored]] = {}
_LOCK = threading.Lock()


class RamBackend(Backend):
    """Datasets held in memory, shared by connections of the same name in this process.

    Parameters
    ----------
    name : str
        Connection name; connections with the same name share their datasets.
    """

    name: ClassVar[str] = "ram"
    shared_between_processes: ClassVar[bool] = False
    zero_copy_views: ClassVar[bool] = True

    def __init__(self, name: str) -> None:
        super().__init__(name)
        with _LOCK:
            self._datasets = _STORES.setdefault(name, {})

    @property
    def location(self) -> str:
        return f"ram://{self.connection_name}"

    def _chunks(self, dataset: str) -> dict[tuple[int, ...], np.ndarray]:
        stored = self._datasets.get(dataset)
        return {} if stored is None else stored.chunks

    def list_datasets(self) -> list[str]:
        return sorted(name for name, stored in self._datasets.items() if stored.meta is not None)

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

    def read_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        return self._chunks(meta.name).get(idx)

    def write_chunk(self, meta: DatasetMeta, idx: tuple[int, ...], data: np.ndarray) -> None:
        data = np.array(self.check_chunk(meta, idx, data), copy=True)
        data.flags.writeable = False  # readers get views of it
        with _LOCK:  # chunks may be written before the dataset's metadata
            stored = self._datasets.setdefault(meta.name, _Stored(None))
        stored.chunks[idx] = data

    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        return idx in self._chunks(meta.name)

    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        self._chunks(meta.name).pop(idx, None)

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        return list(self._chunks(meta.name))
