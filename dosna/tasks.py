"""Chunk tasks: the unit of work engines run, as plain module-level functions.

Each takes the backend and the dataset metadata explicitly, so the same task
runs inline, in a thread, in a worker process (joblib with loky) or on an MPI
rank. Nothing here knows which engine runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .indexing import ChunkPart, ChunkSel, covers_chunk, plan, write_selection
from .metadata import DatasetMeta

__all__ = [
    "copy_chunk",
    "read_part",
    "read_part_into",
    "read_whole",
    "transform_chunk",
    "write_part",
    "write_whole",
]

#: Chunk parts at least this large are worth a thread or a direct read.
DIRECT_READ_BYTES = 1 << 16


def read_whole(backend: Any, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray:
    """A whole chunk, or the fill value if it was never written (may be read-only)."""
    data = backend.read_chunk(meta, idx)
    if data is None:
        return np.full(meta.chunk_shape(idx), meta.fillvalue, meta.dtype)
    return data


def read_part(backend: Any, meta: DatasetMeta, part: ChunkPart) -> tuple[Any, np.ndarray | None]:
    """(output selection, ``chunk[selection]`` or None if missing): for engines that return data."""
    idx, chunk_sel, out_sel = part
    return out_sel, backend.read_chunk_part(meta, idx, chunk_sel)


def read_part_into(backend: Any, meta: DatasetMeta, out: np.ndarray, part: ChunkPart) -> None:
    """Read one chunk's share of a selection straight into ``out`` (shared-memory engines)."""
    idx, chunk_sel, out_sel = part
    target = out[out_sel]
    if target.nbytes >= DIRECT_READ_BYTES and target.flags.c_contiguous:
        shape = meta.chunk_shape(idx)
        if covers_chunk(chunk_sel, shape):
            if not backend.read_chunk_into(meta, idx, target.reshape(shape)):
                target[...] = meta.fillvalue
            return
    data = backend.read_chunk_part(meta, idx, chunk_sel)
    out[out_sel] = meta.fillvalue if data is None else data


def write_part(
    backend: Any, meta: DatasetMeta, idx: tuple[int, ...], chunk_sel: ChunkSel, values: np.ndarray
) -> None:
    """Write ``values`` into ``chunk[chunk_sel]``: directly if it covers the chunk, else read-modify-write."""
    shape = meta.chunk_shape(idx)
    if covers_chunk(chunk_sel, shape):
        backend.write_chunk(meta, idx, np.reshape(values, shape))
        return
    current = backend.read_chunk(meta, idx)
    buf = np.full(shape, meta.fillvalue, meta.dtype) if current is None else np.array(current)
    write_selection(buf, chunk_sel, values)
    backend.write_chunk(meta, idx, buf)


def write_whole(backend: Any, meta: DatasetMeta, item: tuple[tuple[int, ...], np.ndarray]) -> None:
    """Write a whole chunk given as ``(index, data)``, casting to the dataset's dtype."""
    idx, block = item
    block = np.asarray(block)
    if block.dtype != meta.dtype:
        block = block.astype(meta.dtype)
    backend.write_chunk(meta, idx, block)


def transform_chunk(
    backend: Any, meta: DatasetMeta, target: DatasetMeta, func: Callable, idx: tuple[int, ...]
) -> None:
    """Write ``func(chunk)`` of ``meta``'s chunk ``idx`` into ``target``'s chunk ``idx``."""
    data = np.array(read_whole(backend, meta, idx))
    result = np.asarray(func(data))
    if result.shape != data.shape:
        raise ValueError(
            f"function returned shape {result.shape} for chunk {idx} of shape {data.shape}; "
            "map/apply functions must keep the shape"
        )
    backend.write_chunk(target, idx, result.astype(target.dtype, copy=False))


def read_region(backend: Any, meta: DatasetMeta, region: tuple[slice, ...]) -> np.ndarray:
    """The array's values in ``region`` (a tuple of unit-step slices), read chunk part by chunk part."""
    out = np.empty(tuple(s.stop - s.start for s in region), meta.dtype)
    for part in plan(region, meta.shape, meta.chunk_size).parts():
        read_part_into(backend, meta, out, part)
    return out


def transform_chunk_with_halo(
    backend: Any,
    meta: DatasetMeta,
    target: DatasetMeta,
    func: Callable,
    halo: tuple[int, ...],
    idx: tuple[int, ...],
) -> None:
    """Write ``func(block)``'s core into ``target``'s chunk ``idx``.

    ``block`` is chunk ``idx`` of ``meta`` grown by ``halo`` elements on each
    side (clipped at the array's edges), read from the neighbouring chunks.
    """
    core = meta.chunk_region(idx)
    grown = tuple(slice(max(0, s.start - h), min(n, s.stop + h)) for s, h, n in zip(core, halo, meta.shape))
    block = read_region(backend, meta, grown)
    result = np.asarray(func(block))
    if result.shape != block.shape:
        raise ValueError(
            f"function returned shape {result.shape} for the block of chunk {idx} with its halo, "
            f"of shape {block.shape}; map functions must keep the shape"
        )
    inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(core, grown))
    backend.write_chunk(target, idx, np.ascontiguousarray(result[inner]).astype(target.dtype, copy=False))


def copy_chunk(backend: Any, meta: DatasetMeta, target: DatasetMeta, idx: tuple[int, ...]) -> None:
    """Copy chunk ``idx`` of ``meta`` to ``target`` if it was written."""
    data = backend.read_chunk(meta, idx)
    if data is not None:
        backend.write_chunk(target, idx, np.asarray(data).astype(target.dtype, copy=False))
