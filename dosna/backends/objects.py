"""Chunks as raw byte objects: what the object-store backends (ceph, s3) share.

A chunk object holds the chunk's valid region as raw C-order bytes of the
dataset's dtype, nothing else: its size is known from the metadata, so a wrong
size is detected at once, and any element can be located for a ranged read.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np

from ..errors import ChunkCorruptError
from ..indexing import ChunkSel, read_selection
from ..metadata import DatasetMeta
from .base import Backend

__all__ = ["RangedRead", "RawObjectBackend", "decode", "encode", "ranged_read"]


def encode(data: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous chunk (no copy)."""
    return memoryview(np.ascontiguousarray(data)).cast("B") if data.ndim else memoryview(data.tobytes())


def decode(
    meta: DatasetMeta, idx: tuple[int, ...], raw: bytes | bytearray | memoryview, where: str
) -> np.ndarray:
    """A chunk array from its object bytes; ChunkCorruptError if the size is wrong."""
    shape = meta.chunk_shape(idx)
    expected = math.prod(shape) * meta.dtype.itemsize
    if len(raw) != expected:
        raise ChunkCorruptError(meta.name, idx, where, f"{len(raw)} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=meta.dtype).reshape(shape)


class RangedRead:
    """The byte range of a chunk object that holds a selection, and how to cut it out.

    For a selection whose bounding box starts at element ``lo`` and ends at
    ``hi`` (in C order), the bytes ``[lo, hi]`` hold every selected element; the
    box is viewed with the chunk's strides and the selection shifted into it.
    """

    def __init__(self, meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> None:
        shape = meta.chunk_shape(idx)
        itemsize = meta.dtype.itemsize
        strides = [itemsize * math.prod(shape[a + 1 :]) for a in range(len(shape))]
        lo, hi, box, shifted = [], [], [], []
        for s, n in zip(sel, shape):
            if isinstance(s, int):
                first, last = s, s
                shifted.append(0)
            elif isinstance(s, slice):
                start, stop, step = s.indices(n)
                count = len(range(start, stop, step))
                first, last = (
                    (start, start + (count - 1) * step) if step > 0 else (start + (count - 1) * step, start)
                )
                new_start = start - first
                new_stop = new_start + step * count
                shifted.append(slice(new_start, new_stop if new_stop >= 0 else None, step))
            else:
                first, last = int(s.min()), int(s.max())
                shifted.append(s - first)
            lo.append(first)
            hi.append(last)
            box.append(last - first + 1)
        self.offset = sum(i * st for i, st in zip(lo, strides))
        self.length = sum(i * st for i, st in zip(hi, strides)) + itemsize - self.offset
        self.box, self.strides, self.sel, self.dtype = tuple(box), tuple(strides), tuple(shifted), meta.dtype

    def cut(self, raw: bytes | bytearray | memoryview) -> np.ndarray:
        """The selection from the bytes of the range."""
        view = np.ndarray(self.box, dtype=self.dtype, buffer=raw, strides=self.strides)
        return read_selection(view, self.sel)


def ranged_read(meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> RangedRead | None:
    """A :class:`RangedRead` when reading a range saves at least half the chunk, else None."""
    if not sel or any(
        isinstance(s, slice) and len(range(*s.indices(n))) == 0 for s, n in zip(sel, meta.chunk_shape(idx))
    ):
        return None
    plan = RangedRead(meta, idx, sel)
    full = math.prod(meta.chunk_shape(idx)) * meta.dtype.itemsize
    return plan if plan.length * 2 <= full else None


class RawObjectBackend(Backend):
    """A backend whose chunks are raw-byte objects: reads, whole or ranged, done once.

    Subclasses implement :meth:`fetch` (and the writes and listings of :class:`Backend`).
    """

    @abstractmethod
    def fetch(
        self, meta: DatasetMeta, idx: tuple[int, ...], byte_range: tuple[int, int] | None
    ) -> bytes | None:
        """The bytes of chunk ``idx`` — all of them (at least one more than expected if
        the object is longer), or ``(offset, length)`` of them — or None if missing."""

    def read_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        raw = self.fetch(meta, idx, None)
        return None if raw is None else decode(meta, idx, raw, self.chunk_location(meta, idx))

    def read_chunk_part(self, meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> np.ndarray | None:
        ranged = ranged_read(meta, idx, sel)
        if ranged is None:
            data = self.read_chunk(meta, idx)
            return None if data is None else read_selection(data, sel)
        raw = self.fetch(meta, idx, (ranged.offset, ranged.length))
        if raw is None:
            return None
        if len(raw) != ranged.length:
            raise ChunkCorruptError(
                meta.name,
                idx,
                self.chunk_location(meta, idx),
                f"shorter than the {ranged.offset + ranged.length} bytes read",
            )
        return ranged.cut(raw)
