"""PyTorch adapters: dosna datasets as ``torch.utils.data`` datasets and samplers.

:class:`IterableDataset` streams batches (or samples) in the chunk-aware,
seeded order of :class:`~dosna.train.loader.BatchLoader`, split across
``DataLoader`` workers and across ranks (``torch.distributed`` or the mpi
engine): the shards are disjoint and together hold every sample exactly once
per epoch. :class:`ChunkAwareSampler` gives the same order to map-style
datasets such as :class:`MapDataset`.

>>> from torch.utils.data import DataLoader                        # doctest: +SKIP
>>> ds = IterableDataset(con["x"], con["y"], batch_size=64, seed=1)  # doctest: +SKIP
>>> loader = DataLoader(ds, batch_size=None, num_workers=2)       # doctest: +SKIP
>>> for epoch in range(10):                                       # doctest: +SKIP
...     ds.set_epoch(epoch)
...     for xb, yb in loader:
...         ...

Needs PyTorch (``pip install torch``; a CPU build is enough).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import DosnaError
from .loader import BatchLoader, epoch_order, shard_of

try:
    import torch
    from torch.utils import data as _data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dosna.train.torch needs PyTorch: pip install torch") from exc

__all__ = ["ChunkAwareSampler", "IterableDataset", "MapDataset", "rank_and_size", "to_tensor"]

#: Rows read together when samples are yielded one by one (the order is kept; rows of
#: one read are grouped by chunk, as inside a batch of the loader).
SAMPLE_READ_ROWS = 32


def rank_and_size(source: Any = None) -> tuple[int, int]:
    """This process's rank and the number of ranks: ``torch.distributed`` when it is
    initialised, else the mpi engine of ``source``'s connection, else ``(0, 1)``."""
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    engine = getattr(getattr(source, "connection", None), "engine", None)
    return (int(engine.rank), int(engine.size)) if engine is not None else (0, 1)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``array`` as a CPU tensor, without a copy where torch can share the memory."""
    array = np.asarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.writeable:
        array = array.copy()  # torch tensors are writable; never hand out a store's memory
    return torch.from_numpy(array)


def _tensors(item: Any) -> Any:
    if isinstance(item, tuple):
        return tuple(to_tensor(a) for a in item)
    return to_tensor(item)


def _refuse_process_local(sources: Sequence[Any]) -> None:
    for source in sources:
        backend = getattr(getattr(source, "connection", None), "backend", None)
        if backend is not None and not getattr(backend, "shared_between_processes", True):
            raise DosnaError(
                f"dataset {source.name!r} is on the {backend.name} backend, which keeps its data in this "
                "process's memory: DataLoader workers started with 'spawn' or 'forkserver' cannot see it. "
                "Use multiprocessing_context='fork' (the default on Linux), num_workers=0, or a backend on "
                "shared storage (hdf5, ceph, s3)"
            )


class IterableDataset(_data.IterableDataset):
    """Batches (or samples) of dosna datasets as torch tensors, for a ``DataLoader``.

    The order is :class:`~dosna.train.loader.BatchLoader`'s: chunk-aware,
    fixed by ``seed`` and the epoch (see :meth:`set_epoch`). Each rank takes
    its shard of the epoch (as the loader does); a rank's batches are then
    split into contiguous runs, one per ``DataLoader`` worker. Across ranks and
    workers every sample is yielded exactly once per epoch, and the batches a
    rank yields do not depend on the number of workers.

    Parameters
    ----------
    x, y : Dataset or array-like
        Samples along axis 0, and optional targets with as many rows.
    batch_size : int, optional
        Yield ready batches of this size: use ``DataLoader(ds, batch_size=None)``
        (fastest). None yields single samples for the ``DataLoader`` to batch.
    rows, shuffle, seed, window, drop_last, prefetch, read_threads, block_rows
        As for :class:`~dosna.train.loader.BatchLoader` (``drop_last`` drops
        each rank's short last batch).
    shard : (rank, size), optional
        This process's rank and the number of ranks. Default: from
        ``torch.distributed`` if it is initialised when the dataset is made,
        else from the mpi engine of ``x``'s connection.

    Notes
    -----
    Call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.
    Workers copy the dataset when they start, so with
    ``persistent_workers=True`` they keep the epoch they started with: leave
    it off to get a new order every epoch.

    Workers read the datasets through their own copies of the connection. On
    hdf5, ceph and s3 that works with any start method. The ``ram`` backend
    keeps its data in the memory of one process: forked workers (the Linux
    default) see the data as it was when they started; 'spawn' and
    'forkserver' workers cannot see it, and pickling the dataset for them
    raises :class:`~dosna.errors.DosnaError`.
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        *,
        batch_size: int | None = None,
        rows: tuple[int, int] | slice | None = None,
        shuffle: bool = True,
        seed: int = 0,
        window: int = 4,
        drop_last: bool = False,
        shard: tuple[int, int] | None = None,
        prefetch: int | None = None,
        read_threads: int | None = None,
        block_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.batched = batch_size is not None
        self.loader = BatchLoader(
            x,
            y,
            batch_size=SAMPLE_READ_ROWS if batch_size is None else batch_size,
            rows=rows,
            shuffle=shuffle,
            seed=seed,
            window=window,
            drop_last=drop_last and batch_size is not None,
            shard=shard if shard is not None else rank_and_size(x),
            prefetch=prefetch,
            read_threads=read_threads,
            block_rows=block_rows,
        )
        self.epoch = 0

    @property
    def shard(self) -> tuple[int, int]:
        """(rank, number of ranks)."""
        return self.loader.shard

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from the next iteration on (call it before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches (with ``batch_size``) or samples this rank yields per epoch, over all its workers."""
        return len(self.loader) if self.batched else self.loader.shard_samples()

    def worker_batches(self, epoch: int, worker: int = 0, workers: int = 1) -> list[np.ndarray]:
        """The sample rows of each batch (or read) that ``worker`` of ``workers`` yields in ``epoch``."""
        batches = self.loader.indices(epoch)
        n = len(batches)
        return batches[worker * n // workers : (worker + 1) * n // workers]

    def __iter__(self) -> Iterator[Any]:
        info = _data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        batches = self.worker_batches(self.epoch, worker, workers)
        for item in self.loader.read_batches(batches):
            if self.batched:
                yield _tensors(item)
            elif isinstance(item, tuple):
                xs, ys = _tensors(item)
                yield from zip(xs, ys)
            else:
                yield from _tensors(item)

    def __getstate__(self) -> dict[str, Any]:
        # only process pools that do not fork pickle the dataset
        _refuse_process_local([s for s in (self.loader.x, self.loader.y) if s is not None])
        return self.__dict__.copy()

    def __repr__(self) -> str:
        return f"<dosna.train.torch.IterableDataset epoch={self.epoch} {self.loader!r}>"


class ChunkAwareSampler(_data.Sampler[int]):
    """Sample indices in the loader's chunk-aware, seeded order, this rank's shard only.

    For map-style datasets (:class:`MapDataset`, a ``TensorDataset``...) in a
    ``DataLoader(dataset, sampler=..., batch_size=...)``; the ``DataLoader``
    spreads the indices over its workers. Like ``DistributedSampler``, call
    :meth:`set_epoch` before each epoch.

    Parameters
    ----------
    source : Dataset or int
        The dataset whose chunks shape the order (its chunk size along axis 0
        gives the blocks), or a number of samples (blocks of ``block_rows``).
    rows, shuffle, seed, window, block_rows
        As for :class:`~dosna.train.loader.BatchLoader`.
    shard : (rank, size), optional
        Default: from ``torch.distributed`` or the mpi engine (see :func:`rank_and_size`).
    """

    def __init__(
        self,
        source: Any,
        *,
        rows: tuple[int, int] | slice | None = None,
        shuffle: bool = True,
        seed: int = 0,
        window: int = 4,
        shard: tuple[int, int] | None = None,
        block_rows: int | None = None,
    ) -> None:
        x = np.empty((int(source), 0), np.uint8) if isinstance(source, (int, np.integer)) else source
        self._loader = BatchLoader(
            x,
            rows=rows,
            shuffle=shuffle,
            seed=seed,
            window=window,
            shard=shard if shard is not None else rank_and_size(x),
            prefetch=0,
            block_rows=block_rows,
        )
        self.epoch = 0

    @property
    def shard(self) -> tuple[int, int]:
        return self._loader.shard

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's sample indices of ``epoch`` (default: the current one), in order."""
        loader = self._loader
        order = epoch_order(
            loader.rows,
            loader.block_rows,
            loader.window,
            loader.seed,
            self.epoch if epoch is None else epoch,
            loader.shuffle,
        )
        return shard_of(order, *loader.shard)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self._loader.shard_samples()


class MapDataset(_data.Dataset):
    """Map-style access to dosna datasets: ``ds[i]`` is ``(x[i], y[i])`` (or ``x[i]``) as tensors.

    A ``DataLoader`` with automatic batching fetches a batch with one read per
    dataset (``__getitems__``), which dosna plans chunk by chunk. Pair it with
    :class:`ChunkAwareSampler` so that batches come from few chunks. The
    notes of :class:`IterableDataset` on the ``ram`` backend apply.
    """

    def __init__(self, x: Any, y: Any = None) -> None:
        n = x.shape[0]
        if y is not None and y.shape[0] != n:
            raise ValueError(f"y must have {n} rows like x, got shape {y.shape}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: int) -> Any:
        if self.y is None:
            return to_tensor(np.asarray(self.x[index]))
        return to_tensor(np.asarray(self.x[index])), to_tensor(np.asarray(self.y[index]))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        rows = np.asarray(indices, dtype=np.intp)
        xs = to_tensor(np.asarray(self.x[rows]))
        if self.y is None:
            return list(xs)
        ys = to_tensor(np.asarray(self.y[rows]))
        return list(zip(xs, ys))

    def __getstate__(self) -> dict[str, Any]:
        _refuse_process_local([s for s in (self.x, self.y) if s is not None])
        return self.__dict__.copy()
