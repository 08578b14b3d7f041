"""Chunks as encoded byte objects: what the ram, ceph and s3 backends share.

A chunk object holds the chunk's encoded bytes (see
:class:`dosna.io.codecs.Framing`): for an uncompressed chunk, its valid
region as raw C-order bytes of the dataset's dtype, in checksummed blocks when
the dataset has checksums; for a compressed chunk, the payload and its
checksum. The size of an uncompressed object is known from the metadata, so a
wrong size is detected at once, and any element can be located for a ranged
read that verifies only the blocks it fetches.
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from typing import Any

import numpy as np

from ..errors import ChunkCorruptError
from ..indexing import ChunkSel, read_selection
from ..io.codecs import CodecError, CodecSpec, Encoded, Framing
from ..metadata import DatasetMeta
from .base import Backend

__all__ = ["EncodedObjectBackend", "RangedRead", "byte_span", "framing", "ranged_read"]


@functools.lru_cache(maxsize=64)
def _framing(spec: CodecSpec, dtype_str: str) -> Framing:
    return Framing(spec, np.dtype(dtype_str))


def framing(meta: DatasetMeta) -> Framing:
    """The (cached) framing of ``meta``'s chunks."""
    return _framing(meta.codec, meta.dtype.str)


class RangedRead:
    """The byte range of a raw chunk that holds a selection, and how to cut it out.

    For a selection whose bounding box starts at element ``lo`` and ends at
    ``hi`` (in C order), the bytes ``[lo, hi]`` hold every selected element; the
    box is viewed with the chunk's strides and the selection shifted into it.
    """

    def __init__(self, meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> None:
        shape = meta.stored_shape(idx)
        itemsize = meta.dtype.itemsize
        strides = _c_strides(shape, itemsize)
        offset = last_byte = 0
        box: list[int] = []
        shifted: list[Any] = []
        self.empty = False
        for s, n, stride in zip(sel, shape, strides):
            if isinstance(s, int):
                first = last = s
                shifted.append(0)
            elif isinstance(s, slice):
                start, stop, step = s.indices(n)
                count = len(range(start, stop, step))
                if not count:
                    self.empty = True
                    count = 1
                first, last = (
                    (start, start + (count - 1) * step) if step > 0 else (start + (count - 1) * step, start)
                )
                new_start = start - first
                new_stop = new_start + step * count
                shifted.append(slice(new_start, new_stop if new_stop >= 0 else None, step))
            else:
                first, last = int(s.min()), int(s.max())
                shifted.append(s - first)
            offset += first * stride
            last_byte += last * stride
            box.append(last - first + 1)
        self.offset, self.length = offset, last_byte + itemsize - offset
        self.full = strides[0] * shape[0] if shape else itemsize
        self.box, self.strides, self.sel, self.dtype = tuple(box), strides, tuple(shifted), meta.dtype

    def cut(
        self,
        raw: bytes | bytearray | memoryview | np.ndarray,
        skip: int = 0,
        strides: tuple[int, ...] | None = None,
    ) -> np.ndarray:
        """The selection from the bytes of the range, which start ``skip`` bytes into ``raw``
        (laid out with ``strides``; by default the chunk's C strides)."""
        view = np.ndarray(
            self.box, dtype=self.dtype, buffer=raw, offset=skip, strides=strides or self.strides
        )
        return read_selection(view, self.sel)


@functools.lru_cache(maxsize=256)
def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides = []
    for n in reversed(shape):
        strides.append(itemsize)
        itemsize *= n
    return tuple(reversed(strides))


def byte_span(shape: tuple[int, ...], itemsize: int, sel: ChunkSel) -> tuple[int, int]:
    """``(offset, length)`` of the C-order bytes of a chunk of ``shape`` that hold ``sel``."""
    first_byte = last_byte = 0
    stride = itemsize
    for s, n in zip(reversed(sel), reversed(shape)):
        if isinstance(s, int):
            first = last = s
        elif isinstance(s, slice):
            start, stop, step = s.indices(n)
            count = len(range(start, stop, step))
            if not count:
                return 0, 0
            end = start + (count - 1) * step
            first, last = (start, end) if step > 0 else (end, start)
        else:
            first, last = int(s.min()), int(s.max())
        first_byte += first * stride
        last_byte += last * stride
        stride *= n
    return first_byte, last_byte + itemsize - first_byte


def ranged_read(meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel, fraction: float) -> RangedRead | None:
    """A :class:`RangedRead` when its range is at most ``fraction`` of the chunk, else None."""
    if meta.codec.compressed or not sel:
        return None
    plan = RangedRead(meta, idx, sel)
    return None if plan.empty or plan.length > plan.full * fraction else plan


class EncodedObjectBackend(Backend):
    """A backend whose chunks are encoded byte objects.

    Subclasses implement :meth:`fetch` and :meth:`store` (and the listings and
    deletes of :class:`Backend`); this class encodes, decodes, verifies and
    plans ranged reads.
    """

    @abstractmethod
    def fetch(
        self, meta: DatasetMeta, idx: tuple[int, ...], byte_range: tuple[int, int]
    ) -> bytes | memoryview | None:
        """The bytes ``(offset, length)`` of chunk ``idx``'s object (fewer where the
        object ends first), or None if the chunk is missing."""

    @abstractmethod
    def store(self, meta: DatasetMeta, idx: tuple[int, ...], data: Encoded) -> None:
        """Store the encoded chunk ``idx`` atomically.

        ``data`` is what :meth:`Framing.frame` made: a NumPy array is a new
        read-only buffer the backend may keep; a memoryview may be the caller's memory.
        """

    def _corrupt(self, meta: DatasetMeta, idx: tuple[int, ...], reason: str) -> ChunkCorruptError:
        return ChunkCorruptError(meta.name, idx, self.chunk_location(meta, idx), reason)

    def read_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        out = np.empty(meta.stored_shape(idx), meta.dtype)
        return out if self.read_chunk_into(meta, idx, out) else None

    def read_chunk_into(self, meta: DatasetMeta, idx: tuple[int, ...], out: np.ndarray) -> bool:
        frames = framing(meta)
        # one byte more than the largest valid object notices one that is too long
        raw = self.fetch(meta, idx, (0, frames.max_stored_size(out.nbytes) + 1))
        if raw is None:
            return False
        try:
            frames.unframe_into(raw, out)
        except CodecError as exc:
            raise self._corrupt(meta, idx, str(exc)) from None
        return True

    def read_chunk_part(self, meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> np.ndarray | None:
        """The selection, cut straight from the fetched (and verified) bytes where the chunk's
        elements lie in its object at fixed strides; else from a decoded copy."""
        frames = framing(meta)
        shape = meta.stored_shape(idx)
        strides = frames.object_strides(shape)
        ranged = ranged_read(meta, idx, sel, self.hints.ranged_read_fraction)
        try:
            if ranged is None:
                if strides is None:
                    data = self.read_chunk(meta, idx)
                    return None if data is None else read_selection(data, sel)
                nbytes = meta.dtype.itemsize * math.prod(shape)
                raw = self.fetch(meta, idx, (0, frames.max_stored_size(nbytes) + 1))
                if raw is None:
                    return None
                if len(raw) != frames.stored_size(nbytes):
                    raise CodecError(f"{len(raw)} bytes, expected {frames.stored_size(nbytes)}")
                whole = frames.verify_range(raw, 0, nbytes)
                return read_selection(np.ndarray(shape, meta.dtype, whole, 0, strides), sel)
            raw = self.fetch(meta, idx, frames.stored_range(ranged.offset, ranged.length))
            if raw is None:
                return None
            if strides is not None:
                return ranged.cut(
                    frames.verify_range(raw, ranged.offset, ranged.length),
                    ranged.offset % frames.block if meta.codec.checksum else 0,
                    strides,
                )
            return ranged.cut(*frames.unframe_range(raw, ranged.offset, ranged.length))
        except CodecError as exc:
            raise self._corrupt(meta, idx, str(exc)) from None

    def write_chunk(self, meta: DatasetMeta, idx: tuple[int, ...], data: np.ndarray) -> None:
        # the framing copies the chunk once, from whatever strides it has
        self.store(meta, idx, framing(meta).frame(self.check_chunk(meta, idx, data, contiguous=False)))
