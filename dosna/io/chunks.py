"""One dataset's chunks on one backend: the unit of work engines run.

:class:`ChunkIO` is the only place that knows the rules that hold for every
chunk: a chunk that was never written reads as the fill value; an edge chunk is
stored at its full size (format 2), padded with the fill value, and callers see
only its valid region; a write that does not cover a chunk reads, modifies and
writes it. A ChunkIO holds a backend and the dataset's metadata and nothing
else, so it pickles and the same task runs inline, in a thread, in a worker
process (joblib with loky) or on an MPI rank.

Every write of a chunk holds that chunk's lock for this process (see
:func:`chunk_lock`): two threads writing parts of one chunk at once both land,
whichever thread, engine or library (joblib, dask) they come from. Processes do
not share these locks; see the user guide on concurrent writes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..indexing import ChunkPart, ChunkSel, covers_chunk, plan, write_selection
from ..metadata import DatasetMeta, chunk_area
from .interfaces import ChunkBackend

__all__ = ["DIRECT_READ_BYTES", "ChunkIO", "chunk_lock"]

ChunkIndex = tuple[int, ...]

#: Whole chunks at least this large are read straight into the caller's buffer
#: (whatever its strides), without a buffer of their own.
DIRECT_READ_BYTES = 1 << 16

# Chunk locks are striped: a fixed set shared by hashing, so memory stays bounded
# however many chunks are written. Two chunks that share a stripe only wait for
# each other; a writer never holds more than one stripe, so none can deadlock.
_STRIPES = 1024
_locks = [threading.Lock() for _ in range(_STRIPES)]


def _new_locks() -> None:  # a forked child may inherit locks held by threads it does not have
    _locks[:] = [threading.Lock() for _ in range(_STRIPES)]


os.register_at_fork(after_in_child=_new_locks)


def chunk_lock(location: str, dataset: str, idx: ChunkIndex) -> threading.Lock:
    """The lock this process holds while it writes chunk ``idx`` of ``dataset`` at ``location``.

    The same store, dataset and chunk give the same lock, whatever connection
    or :class:`ChunkIO` the write goes through.
    """
    return _locks[hash((location, dataset, idx)) % _STRIPES]


class ChunkIO:
    """Read and write the chunks of dataset ``meta`` on ``backend``.

    Parameters
    ----------
    backend : ChunkBackend
        Where the chunks are stored.
    meta : DatasetMeta
        The dataset's metadata (shape, dtype, chunking, fill value, codec).
    """

    def __init__(self, backend: ChunkBackend, meta: DatasetMeta) -> None:
        self.backend = backend
        self.meta = meta
        #: Whether a read in this process found a chunk missing (and gave the
        #: fill value): the caller then checks that the dataset is still there
        #: (:func:`dosna.io.identity.current_meta`), as a delete also removes chunks.
        self.missing_seen = False

    def __repr__(self) -> str:
        return f"<ChunkIO {self.meta.name!r} on {self.backend!r}>"

    def _lock(self, idx: ChunkIndex) -> threading.Lock:
        return chunk_lock(self.backend.location, chunk_area(self.meta), idx)

    # -- reading ---------------------------------------------------------------------
    def _valid(self, idx: ChunkIndex, stored: np.ndarray) -> np.ndarray:
        shape = self.meta.chunk_shape(idx)
        if stored.shape == shape:
            return stored
        return stored[tuple(slice(0, n) for n in shape)]

    def fill(self, idx: ChunkIndex) -> np.ndarray:
        """A chunk of the fill value (valid shape), for a chunk that was read as missing."""
        self.missing_seen = True
        return np.full(self.meta.chunk_shape(idx), self.meta.fillvalue, self.meta.dtype)

    def read_whole(self, idx: ChunkIndex) -> np.ndarray:
        """Chunk ``idx``'s valid region, or the fill value if it was never written (may be read-only)."""
        data = self.backend.read_chunk(self.meta, idx)
        return self.fill(idx) if data is None else self._valid(idx, data)

    def view(self, idx: ChunkIndex) -> np.ndarray:
        """Chunk ``idx``'s valid region without copying where the backend allows (read-only)."""
        data = self.backend.read_chunk_view(self.meta, idx)
        return self.fill(idx) if data is None else self._valid(idx, data)

    def read_part(self, part: ChunkPart) -> tuple[Any, np.ndarray]:
        """``(output selection, chunk[selection])`` of one part: for engines that return results."""
        idx, chunk_sel, out_sel = part
        data = self.backend.read_chunk_part(self.meta, idx, chunk_sel)
        if data is None:  # broadcast over the output selection
            self.missing_seen = True
            data = np.asarray(self.meta.fillvalue, self.meta.dtype)
        return out_sel, data

    def read_part_into(self, out: np.ndarray, part: ChunkPart) -> None:
        """Read one chunk's share of a selection straight into ``out``: for engines that share memory."""
        idx, chunk_sel, out_sel = part
        target = out[out_sel]
        meta = self.meta
        if target.nbytes >= DIRECT_READ_BYTES:
            shape = meta.chunk_shape(idx)
            if shape == meta.stored_shape(idx) and covers_chunk(chunk_sel, shape):
                if not self.backend.read_chunk_into(meta, idx, target.reshape(shape)):
                    self.missing_seen = True
                    target[...] = meta.fillvalue
                return
        data = self.backend.read_chunk_part(meta, idx, chunk_sel)
        if data is None:
            self.missing_seen = True
        out[out_sel] = meta.fillvalue if data is None else data

    def read_region(self, region: tuple[slice, ...]) -> np.ndarray:
        """The array's values in ``region`` (unit-step slices), read part by part."""
        out = np.empty(tuple(s.stop - s.start for s in region), self.meta.dtype)
        for part in plan(region, self.meta.shape, self.meta.chunk_size).parts():
            self.read_part_into(out, part)
        return out

    # -- writing ---------------------------------------------------------------------
    # Whole-chunk writes and deletes take the lock too: a read-modify-write that
    # overlapped one would otherwise put back what the chunk held before it.
    def write_whole(self, idx: ChunkIndex, values: Any) -> None:
        """Store ``values`` (the chunk's valid shape) as chunk ``idx``, cast and padded as stored."""
        with self._lock(idx):
            self._store(idx, values)

    def _store(self, idx: ChunkIndex, values: Any) -> None:
        meta = self.meta
        block = np.asarray(values)
        if block.dtype != meta.dtype:
            block = block.astype(meta.dtype)
        stored = meta.stored_shape(idx)
        if block.shape != stored:
            padded = np.full(stored, meta.fillvalue, meta.dtype)
            padded[tuple(slice(0, n) for n in block.shape)] = block
            block = padded
        self.backend.write_chunk(meta, idx, block)

    def write_item(self, item: tuple[ChunkIndex, Any]) -> None:
        """:meth:`write_whole` of an ``(index, values)`` pair (what ``load`` streams)."""
        self.write_whole(*item)

    def write_part(self, item: tuple[ChunkIndex, ChunkSel, np.ndarray]) -> None:
        """Write ``values`` into ``chunk[chunk_sel]``: directly if it covers the chunk, else read-modify-write."""
        idx, chunk_sel, values = item
        shape = self.meta.chunk_shape(idx)
        if covers_chunk(chunk_sel, shape):
            self.write_whole(idx, np.reshape(values, shape))
            return
        with self._lock(idx):
            buf = np.array(self.read_whole(idx))
            write_selection(buf, chunk_sel, values)
            self._store(idx, buf)

    def trim(self, idx: ChunkIndex, keep: tuple[int, ...]) -> None:
        """Reset what lies beyond ``keep`` (a shape, from the chunk's origin) to the fill value."""
        with self._lock(idx):
            data = self.backend.read_chunk(self.meta, idx)
            if data is None:
                return
            buf = np.array(data)
            inside = tuple(slice(0, k) for k in keep)
            kept = buf[inside].copy()
            buf[...] = self.meta.fillvalue
            buf[inside] = kept
            self.backend.write_chunk(self.meta, idx, buf)

    def delete(self, idx: ChunkIndex) -> None:
        with self._lock(idx):
            self.backend.delete_chunk(self.meta, idx)

    # -- chunk to chunk ------------------------------------------------------------------
    def transform(self, func: Callable[[np.ndarray], Any], target: ChunkIO, idx: ChunkIndex) -> None:
        """Write ``func(chunk)`` of chunk ``idx`` into ``target``'s chunk ``idx``."""
        data = np.array(self.read_whole(idx))
        result = np.asarray(func(data))
        if result.shape != data.shape:
            raise ValueError(
                f"function returned shape {result.shape} for chunk {idx} of shape {data.shape}; "
                "map/apply functions must keep the shape"
            )
        target.write_whole(idx, result)

    def transform_with_halo(
        self, func: Callable[[np.ndarray], Any], target: ChunkIO, halo: tuple[int, ...], idx: ChunkIndex
    ) -> None:
        """Write the core of ``func(block)`` into ``target``'s chunk ``idx``.

        ``block`` is chunk ``idx`` grown by ``halo`` elements on each side
        (clipped at the array's edges), read from the neighbouring chunks.
        """
        meta = self.meta
        core = meta.chunk_region(idx)
        grown = tuple(
            slice(max(0, s.start - h), min(n, s.stop + h)) for s, h, n in zip(core, halo, meta.shape)
        )
        block = self.read_region(grown)
        result = np.asarray(func(block))
        if result.shape != block.shape:
            raise ValueError(
                f"function returned shape {result.shape} for the block of chunk {idx} with its halo, "
                f"of shape {block.shape}; map functions must keep the shape"
            )
        inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(core, grown))
        target.write_whole(idx, np.ascontiguousarray(result[inner]))

    def copy_to(self, target: ChunkIO, idx: ChunkIndex) -> None:
        """Copy chunk ``idx`` to ``target`` if it was written."""
        data = self.backend.read_chunk(self.meta, idx)
        if data is not None:
            target.write_whole(idx, self._valid(idx, data))
