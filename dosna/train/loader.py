"""Mini-batches from dosna datasets, read ahead in background threads.

The sample axis is axis 0. Rows are grouped into *blocks* that follow the
dataset's chunk boundaries along that axis, so a block is read with whole-chunk
requests. An epoch's order is *chunk-aware*: the block order is shuffled, then
the samples inside each window of ``window`` consecutive blocks; every block is
therefore read once per epoch while batches still mix samples from several
chunks. The order depends only on the seed, the epoch and the rows, not on how
many shards share the work.

Shards (MPI ranks or workers) take disjoint contiguous stretches of that order,
so together they cover every sample exactly once per epoch.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["BatchLoader", "epoch_order", "shard_of"]

_DEFAULT_BLOCK_ROWS = 1024  # rows per block when the source is not chunked (NumPy arrays)
_POLL = 0.1  # seconds between checks of the stop flag while the queue is full
_WHOLE_Y_BYTES = 64 << 20  # targets up to this size are read whole once per epoch


def epoch_order(
    rows: tuple[int, int], block_rows: int, window: int, seed: int, epoch: int, shuffle: bool = True
) -> np.ndarray:
    """The order in which the samples of ``rows`` are visited in ``epoch``.

    Parameters
    ----------
    rows : (start, stop)
        The sample rows used.
    block_rows : int
        Rows per block; blocks start at multiples of ``block_rows`` (chunk
        boundaries), clipped to ``rows``.
    window : int
        Blocks whose samples are shuffled together.
    seed, epoch : int
        Together they fix the order.
    shuffle : bool
        False gives the rows in ascending order.

    Returns
    -------
    numpy.ndarray of int64
        A permutation of ``range(start, stop)``.
    """
    start, stop = rows
    if not shuffle or stop <= start:
        return np.arange(start, stop, dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(epoch)])
    edges = np.unique(np.r_[start, np.arange((start // block_rows + 1) * block_rows, stop, block_rows), stop])
    blocks = rng.permutation(len(edges) - 1)
    parts = []
    for first in range(0, len(blocks), window):
        members = blocks[first : first + window]
        samples = np.concatenate([np.arange(edges[b], edges[b + 1], dtype=np.int64) for b in members])
        parts.append(rng.permutation(samples))
    return np.concatenate(parts)


def shard_of(order: np.ndarray, index: int, count: int) -> np.ndarray:
    """Shard ``index`` of ``count``: a contiguous stretch of ``order``; sizes differ by at most one."""
    n = len(order)
    return order[index * n // count : (index + 1) * n // count]


class BatchLoader:
    """Mini-batches ``(x, y)`` (or ``x`` alone) from datasets, read ahead in threads.

    Parameters
    ----------
    x : Dataset or array-like
        Samples along axis 0: a dosna dataset on any backend, or anything that
        slices like a NumPy array.
    y : Dataset or array-like, optional
        Targets, with as many rows as ``x``.
    batch_size : int
        Samples per batch.
    rows : (start, stop) or slice, optional
        The rows used (default: all), e.g. a training split.
    shuffle : bool
        Chunk-aware shuffling (see :func:`epoch_order`); False keeps row order.
    seed : int
        Fixes the order of every epoch.
    window : int
        Chunks (blocks) whose samples are mixed; larger mixes more and holds
        more in memory.
    drop_last : bool
        Drop each shard's last batch when it is smaller than ``batch_size``.
    shard : (index, count), optional
        Which shard of the samples this loader yields. Default: the MPI rank and
        size of ``x``'s connection (one shard without MPI).
    prefetch : int, optional
        Batches prepared ahead in a background thread (default: a window's
        worth plus one). 0 reads in the calling thread.
    read_threads : int, optional
        Blocks read concurrently (default: what the backend serves best, at least 2).
    block_rows : int, optional
        Rows per block (default: ``x``'s chunk size along axis 0).

    Examples
    --------
    >>> loader = BatchLoader(con["x"], con["y"], batch_size=64, seed=1)   # doctest: +SKIP
    >>> for epoch in range(3):                                          # doctest: +SKIP
    ...     for xb, yb in loader.epoch(epoch):
    ...         ...
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        *,
        batch_size: int = 64,
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
        if not getattr(x, "shape", ()):
            raise ValueError("x must have a sample axis (at least one dimension)")
        n = x.shape[0]
        if y is not None and (not getattr(y, "shape", ()) or y.shape[0] != n):
            raise ValueError(f"y must have {n} rows like x, got shape {getattr(y, 'shape', None)}")
        self.x, self.y = x, y
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.window = _positive_int(window, "window")
        self.rows = _normalize_rows(rows, n)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        chunk_rows = getattr(x, "chunk_size", (None,))[0]
        self.block_rows = _positive_int(block_rows or chunk_rows or _DEFAULT_BLOCK_ROWS, "block_rows")
        self.shard = _normalize_shard(shard, x)
        backend_threads = getattr(getattr(x, "backend", None), "io_threads", 2)
        self.read_threads = _positive_int(read_threads or max(2, backend_threads), "read_threads")
        if prefetch is None:
            prefetch = math.ceil(self.window * self.block_rows / self.batch_size) + 1
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.prefetch = int(prefetch)
        self._next_epoch = 0

    # -- sizes -------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """Samples in the rows used (over all shards)."""
        return self.rows[1] - self.rows[0]

    def shard_samples(self, index: int | None = None) -> int:
        """Samples per epoch in shard ``index`` (default: this loader's shard)."""
        index = self.shard[0] if index is None else index
        count = self.shard[1]
        return (index + 1) * self.num_samples // count - index * self.num_samples // count

    def batches_in_shard(self, index: int | None = None) -> int:
        """Batches per epoch in shard ``index`` (default: this loader's shard)."""
        n = self.shard_samples(index)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def max_batches(self) -> int:
        """The most batches any shard yields per epoch (steps of a data-parallel epoch)."""
        return max(self.batches_in_shard(i) for i in range(self.shard[1]))

    def __len__(self) -> int:
        return self.batches_in_shard()

    # -- order -------------------------------------------------------------------
    def indices(self, epoch: int) -> list[np.ndarray]:
        """The sample rows of each batch this shard yields in ``epoch``."""
        order = epoch_order(self.rows, self.block_rows, self.window, self.seed, epoch, self.shuffle)
        mine = shard_of(order, *self.shard)
        stop = len(mine) - len(mine) % self.batch_size if self.drop_last else len(mine)
        mine = mine[:stop]
        # Inside a batch, rows are grouped by block (the batch's members are what the
        # shuffle decides; their order within it does not matter to training), so a
        # batch is gathered with one copy per block.
        batch_number = np.arange(len(mine)) // self.batch_size
        mine = mine[np.lexsort((mine // self.block_rows, batch_number))]
        return [mine[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]

    # -- iteration ---------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        """The next epoch: the first ``iter()`` gives epoch 0, the next epoch 1, ..."""
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        return self.epoch(epoch)

    def epoch(self, epoch: int) -> Iterator[Any]:
        """Iterate over the batches of ``epoch`` (any epoch, in any order)."""
        return self.read_batches(self.indices(epoch))

    def read_batches(self, batches: Sequence[np.ndarray]) -> Iterator[Any]:
        """Iterate over ``batches`` (sample rows of each batch, e.g. a part of :meth:`indices`)."""
        if self.prefetch == 0:
            with _BlockReader(self) as reader:
                for group in reader.groups(batches):
                    yield from group
            return
        yield from self._prefetched(batches)

    def _prefetched(self, batches: Sequence[np.ndarray]) -> Iterator[Any]:
        # Batches travel in small groups: one hand-over between threads costs
        # about as much as gathering a small batch.
        group = max(1, min(8, self.prefetch // 2))
        ready: queue.Queue = queue.Queue(maxsize=max(1, math.ceil(self.prefetch / group)))
        stop = threading.Event()
        done = object()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=_POLL)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                with _BlockReader(self) as reader:
                    for batch_group in reader.groups(batches, group):
                        if not put(batch_group):
                            return
                put(done)
            except BaseException as exc:  # handed to the consumer, raised there
                put(exc)

        thread = threading.Thread(target=produce, name="dosna-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:
            stop.set()
            thread.join()

    def __repr__(self) -> str:
        return (
            f"<BatchLoader {self.num_samples} samples rows={self.rows} batch_size={self.batch_size} "
            f"shard={self.shard} shuffle={self.shuffle} seed={self.seed} window={self.window}>"
        )


class _BlockReader:
    """Reads each block once, hands out batches, forgets blocks after their last use."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader
        # Blocks that come as views of memory or of mapped files are taken inline;
        # real reads (object stores, copies) go to a small pool so they overlap.
        cheap = all(_zero_copy(s) for s in (loader.x, loader.y) if s is not None)
        self.pool = (
            None if cheap else ThreadPoolExecutor(loader.read_threads, thread_name_prefix="dosna-read")
        )
        self.blocks: dict[int, tuple[int, np.ndarray, np.ndarray | None]] = {}
        # Small targets (labels) are read whole once per epoch and gathered for all
        # batches in one go, instead of block by block with the samples.
        y = loader.y
        row_bytes = 0 if y is None else math.prod(y.shape[1:]) * np.dtype(y.dtype).itemsize
        self.whole_y = y is not None and loader.num_samples * row_bytes <= _WHOLE_Y_BYTES

    def __enter__(self) -> _BlockReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _read(self, block: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        loader = self.loader
        start = max(block * loader.block_rows, loader.rows[0])
        stop = min((block + 1) * loader.block_rows, loader.rows[1])
        x = _rows(loader.x, start, stop)
        y = None if loader.y is None or self.whole_y else _rows(loader.y, start, stop)
        return start, x, y

    def _plan(self, batches: Sequence[np.ndarray]) -> list[tuple[list[int], list, list[int]]]:
        """Per batch: blocks to read first, its runs, blocks to forget after it.

        A run ``(block, lo, hi, local)`` says rows ``lo:hi`` of the batch are
        rows ``local`` of ``block``. Worked out once per epoch, vectorised.
        """
        if not batches:
            return []
        loader = self.loader
        rows = np.concatenate(batches)
        owner = rows // loader.block_rows
        local = rows - np.maximum(owner * loader.block_rows, loader.rows[0])
        cuts = np.union1d(np.flatnonzero(np.diff(owner)) + 1, np.arange(0, len(rows), loader.batch_size))
        ends = np.append(cuts[1:], len(rows))
        plan: list[tuple[list[int], list, list[int]]] = [([], [], []) for _ in batches]
        first_use: dict[int, int] = {}
        last_use: dict[int, int] = {}
        for lo, hi, b in zip(cuts.tolist(), ends.tolist(), owner[cuts].tolist()):
            i = lo // loader.batch_size
            base = i * loader.batch_size
            plan[i][1].append((b, lo - base, hi - base, local[lo:hi]))
            first_use.setdefault(b, i)
            last_use[b] = i
        for b, i in first_use.items():
            plan[i][0].append(b)
        for b, i in last_use.items():
            plan[i][2].append(b)
        return plan

    def groups(self, batches: Sequence[np.ndarray], group: int = 1) -> Iterator[list[Any]]:
        """Lists of up to ``group`` consecutive batches.

        The batches of a list are views of one buffer: one allocation per
        group instead of one per batch (fresh memory costs page faults).
        """
        blocks = self.blocks
        plan = self._plan(batches)
        labels = None
        if self.whole_y and batches:
            start, stop = self.loader.rows
            labels = np.asarray(self.loader.y[start:stop]).take(np.concatenate(batches) - start, axis=0)
        position = 0
        for first in range(0, len(batches), group):
            members = range(first, min(first + group, len(batches)))
            xs = ys = None
            out = []
            offset = 0
            for i in members:
                new, runs, done = plan[i]
                if new:
                    reads = map(self._read, new) if self.pool is None else self.pool.map(self._read, new)
                    blocks.update(zip(new, reads))
                if xs is None:
                    xs, ys = self._buffers(sum(len(batches[j]) for j in members), runs)
                size = len(batches[i])
                xb = xs[offset : offset + size]
                yb: np.ndarray | None
                if labels is not None:
                    yb = labels[position : position + size]
                else:
                    yb = None if ys is None else ys[offset : offset + size]
                offset += size
                position += size
                for b, lo, hi, local in runs:
                    _, x, y = blocks[b]
                    x.take(local, axis=0, out=xb[lo:hi])
                    if y is not None and yb is not None:
                        y.take(local, axis=0, out=yb[lo:hi])
                out.append(xb if yb is None else (xb, yb))
                for b in done:
                    del blocks[b]
            yield out

    def _buffers(self, rows: int, runs: list) -> tuple[np.ndarray, np.ndarray | None]:
        _, x0, y0 = self.blocks[runs[0][0]]
        xs = np.empty((rows, *x0.shape[1:]), dtype=x0.dtype)
        ys = None if y0 is None else np.empty((rows, *y0.shape[1:]), dtype=y0.dtype)
        return xs, ys


def _zero_copy(source: Any) -> bool:
    if isinstance(source, np.ndarray):
        return True
    return bool(getattr(getattr(source, "backend", None), "zero_copy_views", False))


def _rows(source: Any, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``source``; a read-only view of the stored chunk where possible.

    When the rows lie in one chunk that spans the other axes, the chunk is
    taken as it is stored (memory-mapped on hdf5, shared on ram): no copy is
    made before the batch gather.
    """
    chunk_size = getattr(source, "chunk_size", None)
    if (
        chunk_size
        and hasattr(source, "chunk_view")
        and tuple(source.chunk_grid[1:]) == (1,) * (source.ndim - 1)
    ):
        first = start // chunk_size[0]
        if (stop - 1) // chunk_size[0] == first:
            offset = first * chunk_size[0]
            return source.chunk_view((first,) + (0,) * (source.ndim - 1))[start - offset : stop - offset]
    return np.asarray(source[start:stop])


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _normalize_rows(rows: Any, n: int) -> tuple[int, int]:
    if rows is None:
        return 0, n
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n)
        if step != 1:
            raise ValueError("rows must be a contiguous range (slice step 1)")
        return start, max(start, stop)
    start, stop = (int(v) for v in rows)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows ({start}, {stop}) are outside 0..{n}")
    return start, stop


def _normalize_shard(shard: Any, x: Any) -> tuple[int, int]:
    if shard is None:
        engine = getattr(getattr(x, "connection", None), "engine", None)
        return (engine.rank, engine.size) if engine is not None else (0, 1)
    index, count = (int(v) for v in shard)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    return index, count
