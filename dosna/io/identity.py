"""Which dataset a handle refers to: its stored metadata, checked against the handle's.

A handle (a :class:`dosna.Dataset`, a :class:`~dosna.io.chunks.ChunkIO`)
remembers the metadata it was opened with, uid included. Before it reads or
writes, and again whenever a chunk it reads turns out to be missing, the
stored metadata is read back: a dataset that is gone raises
DatasetNotFoundError, one created again under the same name (another uid, or
another dtype, chunking or codec) raises DatasetChangedError. A handle thus
never reads fill values where a deleted dataset's data was, and never writes
into a dataset it was not opened on.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DatasetChangedError, DatasetNotFoundError, MetadataCorruptError
from ..metadata import DatasetMeta
from .interfaces import ChunkBackend

__all__ = ["current_meta", "parse_meta"]


def parse_meta(backend: ChunkBackend, name: str, raw: bytes) -> DatasetMeta:
    """Parse ``name``'s stored metadata; MetadataCorruptError (with its location) if it is bad."""
    try:
        meta = _from_json(bytes(raw))
    except (ValueError, TypeError, KeyError) as exc:
        raise MetadataCorruptError(name, backend.meta_location(name), str(exc)) from exc
    if meta.name != name:
        raise MetadataCorruptError(name, backend.meta_location(name), f"it names dataset {meta.name!r}")
    return meta


@functools.lru_cache(maxsize=256)
def _from_json(raw: bytes) -> DatasetMeta:
    # Handles re-read the metadata before every operation; the same bytes are
    # parsed once. DatasetMeta is frozen and its attrs are only ever copied.
    return DatasetMeta.from_json(raw)


def current_meta(backend: ChunkBackend, meta: DatasetMeta) -> DatasetMeta:
    """The dataset's metadata as stored now, for a handle that holds ``meta``.

    A new shape or new attributes are taken over; a dataset that was deleted
    raises DatasetNotFoundError, one deleted and created again (another uid,
    dtype, chunking or codec) raises DatasetChangedError.
    """
    raw = backend.read_meta(meta.name)
    if raw is None:
        raise DatasetNotFoundError(f"dataset {meta.name!r} no longer exists in {backend.location}")
    now = parse_meta(backend, meta.name, raw)
    if now is meta:
        return meta
    same_fill = bool(np.array_equal(np.asarray(now.fillvalue), np.asarray(meta.fillvalue), equal_nan=True))
    if (now.uid, now.dtype, now.chunk_size, now.codec, now.format) != (
        meta.uid,
        meta.dtype,
        meta.chunk_size,
        meta.codec,
        meta.format,
    ) or not same_fill:
        raise DatasetChangedError(
            f"dataset {meta.name!r} in {backend.location} was deleted and created again "
            f"(now {now.dtype}, chunks {now.chunk_size}, {now.codec.describe()}); open it again"
        )
    return now
