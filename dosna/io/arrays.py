"""Whole-array operations on chunks: slicing, load, map/apply/clone/clear, create, resize.

Every decision about how chunk I/O is driven is made here, from the backend's
:class:`~dosna.backends.base.IOHints` and the engine: how many chunk requests
run at once, which steps are collective, and in which order chunks and
metadata are written so that nothing is visible before it is complete (a new
dataset's metadata is written after all its chunks; a failed creation removes
what it wrote). The functions take an engine, a backend and metadata
explicitly; :class:`dosna.Dataset` and :class:`dosna.Connection` are thin
facades over them.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from ..errors import DatasetExistsError, DatasetNotFoundError, MetadataCorruptError
from ..indexing import Selection, plan, prepare_values
from ..metadata import DatasetMeta
from ..progress import track
from .chunks import ChunkIO
from .identity import current_meta, parse_meta
from .interfaces import ChunkBackend, TaskEngine

__all__ = [
    "append",
    "clear",
    "copy_stored",
    "create",
    "current_meta",
    "delete_quietly",
    "load",
    "new_uid",
    "parse_meta",
    "read",
    "resize",
    "still_there",
    "stored_chunks",
    "transform",
    "write",
]

ChunkIndex = tuple[int, ...]


# -- concurrency -----------------------------------------------------------------------
def _threads(backend: ChunkBackend) -> int:
    return backend.hints.threads


def _read_threads(backend: ChunkBackend, nbytes: int, parts: int) -> int:
    return backend.hints.read_threads(nbytes / max(1, parts))


def _all_chunks(meta: DatasetMeta) -> list[ChunkIndex]:
    return list(itertools.product(*(range(g) for g in meta.chunk_grid)))


# -- slicing -------------------------------------------------------------------------------
def read(
    engine: TaskEngine, chunks: ChunkIO, key: Any, mode: str = "numpy", out: np.ndarray | None = None
) -> Any:
    """``array[key]`` with NumPy's indexing, or ``oindex``/``vindex`` (``mode``, see :func:`~dosna.indexing.plan`).

    With ``out`` (an array of the selection's shape) the values are read into
    it, in place where its dtype and layout allow (else through one copy,
    converted as NumPy's ``astype``), and ``out`` is returned.
    """
    meta = chunks.meta
    sel = plan(key, meta.shape, meta.chunk_size, mode)
    if out is None:
        return _read_new(engine, chunks, sel)
    if out.shape != sel.numpy_shape:
        raise ValueError(f"the selection is {sel.numpy_shape}, out is {out.shape}")
    target = _canonical_view(sel, out) if out.dtype == meta.dtype else None
    if target is None:  # another dtype, or a layout the chunks cannot be written into
        out[...] = _read_new(engine, chunks, sel)
    else:
        _gather(engine, chunks, sel, target)
    return out


def _read_new(engine: TaskEngine, chunks: ChunkIO, sel: Selection) -> Any:
    """Selection ``sel`` as a new array (a scalar for an element), as NumPy returns it."""
    result = np.empty(sel.shape, chunks.meta.dtype)
    _gather(engine, chunks, sel, result)
    return sel.to_numpy(result)


def _canonical_view(sel: Selection, out: np.ndarray) -> np.ndarray | None:
    """``out`` seen in ``sel``'s canonical layout without a copy, or None where that needs one."""
    try:
        return sel.from_numpy(out, copy=False)
    except ValueError:
        return None


def _gather(engine: TaskEngine, chunks: ChunkIO, sel: Selection, out: np.ndarray) -> None:
    """Read selection ``sel`` into ``out`` (its canonical layout)."""
    meta = chunks.meta
    if sel.size:
        threads = _read_threads(chunks.backend, sel.size * meta.dtype.itemsize, sel.chunk_count())
        chunks.missing_seen = False
        engine.gather(out, chunks, sel.parts(), threads)
        # workers in other processes cannot tell us whether they found a chunk missing
        if chunks.missing_seen or not getattr(engine, "shares_memory", False):
            current_meta(chunks.backend, meta)


def still_there(engine: TaskEngine, chunks: ChunkIO) -> None:
    """Raise unless ``chunks``' dataset still exists as the same incarnation; collective.

    Called after an operation read chunks (some of which may have read as
    missing because the dataset was being deleted): what it read was the
    dataset's data only if the dataset is still there afterwards.
    """

    def check() -> None:
        current_meta(chunks.backend, chunks.meta)

    engine.collective(check)


def write(engine: TaskEngine, chunks: ChunkIO, key: Any, value: Any, mode: str = "numpy") -> None:
    """``array[key] = value``, cast and broadcast as NumPy does; bad values write nothing."""
    meta = chunks.meta
    sel = plan(key, meta.shape, meta.chunk_size, mode)
    values = prepare_values(sel, value, meta.dtype)
    if sel.size:
        work = ((idx, chunk_sel, values[out_sel]) for idx, chunk_sel, out_sel in sel.parts())
        engine.run(chunks.write_part, work, _threads(chunks.backend))


# -- whole-dataset operations ----------------------------------------------------------
def load(engine: TaskEngine, chunks: ChunkIO, src: Any) -> None:
    """Fill every chunk from ``src`` (anything with the shape that slices with a tuple of slices).

    Only a few chunks of ``src`` are in memory at a time; with the mpi engine
    every rank loads its share.
    """
    meta = chunks.meta
    if not hasattr(src, "shape"):
        src = np.asarray(src)
    if tuple(src.shape) != meta.shape:
        raise ValueError(f"cannot load data of shape {tuple(src.shape)} into {meta.shape}")
    # h5py and similar sources are not thread-safe: read them here, write from workers
    threads = _threads(chunks.backend) if isinstance(src, np.ndarray) else 1
    todo = track(_all_chunks(meta), f"load {meta.name}", engine.is_root)
    work = ((idx, src[meta.chunk_region(idx)]) for idx in engine.share(todo))
    engine.run_and_agree(chunks.write_item, work, threads)


def transform(
    engine: TaskEngine,
    source: ChunkIO,
    target: ChunkIO,
    func: Callable[[np.ndarray], Any],
    halo: tuple[int, ...] = (),
) -> None:
    """Write ``func`` of every chunk of ``source`` into ``target`` (the same grid); collective."""
    if any(halo):
        task = partial(source.transform_with_halo, func, target, halo)
    else:
        task = partial(source.transform, func, target)
    name = source.meta.name
    what = f"apply {name}" if target is source else f"map {name} -> {target.meta.name}"
    engine.run_collective(task, track(_all_chunks(source.meta), what, engine.is_root))
    still_there(engine, source)


def stored_chunks(engine: TaskEngine, chunks: ChunkIO) -> list[ChunkIndex]:
    """The stored chunks as the root sees them, so that every rank shares one list."""

    def listing() -> list[list[int]]:
        return [list(idx) for idx in sorted(chunks.backend.list_chunks(chunks.meta))]

    return [tuple(idx) for idx in engine.collective(listing)]


def copy_stored(engine: TaskEngine, source: ChunkIO, target: ChunkIO) -> None:
    """Copy every stored chunk of ``source`` to ``target``; collective."""
    what = f"clone {source.meta.name} -> {target.meta.name}"
    todo = track(stored_chunks(engine, source), what, engine.is_root)
    engine.run_collective(partial(source.copy_to, target), todo, _threads(source.backend))
    still_there(engine, source)


def clear(engine: TaskEngine, chunks: ChunkIO) -> None:
    """Delete every stored chunk; collective."""
    todo = track(stored_chunks(engine, chunks), f"clear {chunks.meta.name}", engine.is_root)
    engine.run_collective(chunks.delete, todo, _threads(chunks.backend))


# -- creating and deleting -------------------------------------------------------------
def delete_quietly(engine: TaskEngine, backend: ChunkBackend, name: str) -> None:
    """Delete a dataset being rolled back; a missing one is fine. Collective."""

    def delete() -> None:
        with contextlib.suppress(DatasetNotFoundError):
            backend.delete_dataset(name)

    engine.collective(delete)


def create(
    engine: TaskEngine,
    backend: ChunkBackend,
    meta: DatasetMeta,
    fill: Callable[[ChunkIO], None] | None = None,
) -> ChunkIO:
    """Create dataset ``meta``; ``fill(chunks)`` writes its first content. Collective.

    The dataset gets a fresh uid, and its chunks go to the private area that
    uid names; the metadata is committed last, with a create-exclusive write.
    A dataset thus appears only with all its chunks; a fill that fails, a
    store that goes away or a creation that loses a race with another
    process for the name removes its own chunks and nothing else; a process
    killed before the commit leaves chunks nobody reads (``dosna fsck``
    removes them).

    Raises
    ------
    DatasetExistsError
        If a dataset of that name exists (checked before anything is written,
        and again when the metadata is committed).
    """
    if meta.format >= 2 and meta.uid is None:
        meta = replace(meta, uid=engine.collective(new_uid))
    backend.check_meta(meta)
    chunks = ChunkIO(backend, meta)

    def prepare() -> None:
        if backend.read_meta(meta.name) is not None:
            raise DatasetExistsError(f"dataset {meta.name!r} already exists in {backend.location}")
        backend.prepare_create(meta)

    engine.collective(prepare)
    try:
        if fill is not None:
            fill(chunks)
        engine.collective(lambda: backend.create_meta(meta.name, meta.to_json()))
    except BaseException:
        with contextlib.suppress(Exception):
            engine.collective(lambda: _roll_back(backend, meta))
        raise
    return chunks


def _roll_back(backend: ChunkBackend, meta: DatasetMeta) -> None:
    """Remove the chunks of a creation that failed, unless its metadata did get committed.

    A commit that reported a failure (a timeout) may still have happened;
    the chunks of a dataset whose metadata names this creation's uid stay.
    """
    raw = backend.read_meta(meta.name)
    if raw is not None:
        if meta.uid is None:
            return  # an older layout shares one area: another dataset's chunks would go too
        with contextlib.suppress(MetadataCorruptError):
            if parse_meta(backend, meta.name, raw).uid == meta.uid:
                return
    backend.purge_uncommitted(meta)


def new_uid() -> str:
    """A fresh dataset uid: 32 random hex digits."""
    return secrets.token_hex(16)


def derived_meta(source: DatasetMeta, name: str, dtype: Any, attrs: dict[str, Any]) -> DatasetMeta:
    """The metadata of a dataset like ``source`` (shape, chunking, codec, fill value) named ``name``.

    The fill value is checked against the new dtype as ``create_dataset``
    checks it (ValueError if it does not fit), never cast.
    """
    dt = source.dtype if dtype is None else dtype
    # a copy of a format-1 dataset (raw, no checksums by necessity) gets today's defaults
    codec = source.codec if source.format >= 2 else None
    return DatasetMeta.create(name, source.shape, dt, source.fillvalue, source.chunk_size, attrs, codec)


# -- resizing ----------------------------------------------------------------------------
def resize(engine: TaskEngine, chunks: ChunkIO, shape: Any) -> DatasetMeta:
    """Give the dataset ``shape`` (same number of axes); collective. Returns the new metadata.

    Growing exposes the fill value. Shrinking first deletes the chunks wholly
    outside the new shape and resets the cut-away part of the others to the
    fill value, then writes the metadata: data cut away never reappears when
    the dataset grows again.
    """
    old = current_meta(chunks.backend, chunks.meta)
    new = old.with_shape(shape)
    if not old.pads_edge_chunks and new.shape != old.shape:
        raise MetadataCorruptError(
            old.name,
            chunks.backend.meta_location(old.name),
            "it was written by an older dosna (metadata format 1, edge chunks not padded) and cannot be "
            "resized; copy it with clone(name, data=True) to get a resizable dataset",
        )
    stale = ChunkIO(chunks.backend, old)
    stored = stored_chunks(engine, stale)
    if any(n < o for n, o in zip(new.shape, old.shape)):
        outside = [
            idx for idx in stored if any(i * c >= n for i, c, n in zip(idx, new.chunk_size, new.shape))
        ]
        engine.run_collective(stale.delete, outside, _threads(chunks.backend))
        dropped = set(outside)
        cut = [
            idx
            for idx in stored
            if idx not in dropped
            and any(
                (i + 1) * c > n and n < o for i, c, n, o in zip(idx, new.chunk_size, new.shape, old.shape)
            )
        ]
        keep = partial(_trim_to, stale, new)
        engine.run_collective(keep, cut, _threads(chunks.backend))
    engine.collective(lambda: chunks.backend.update_meta(new.name, replace(old, shape=new.shape).to_json()))
    return replace(old, shape=new.shape)


def _trim_to(chunks: ChunkIO, new: DatasetMeta, idx: ChunkIndex) -> None:
    chunks.trim(idx, new.chunk_shape(idx))


def append(engine: TaskEngine, chunks: ChunkIO, values: Any, axis: int = 0) -> DatasetMeta:
    """Grow along ``axis`` by ``values``' length there and write them; collective. Returns the new metadata."""
    meta = current_meta(chunks.backend, chunks.meta)
    if not -meta.ndim <= axis < meta.ndim:
        raise IndexError(f"axis {axis} is out of bounds for a {meta.ndim}-d dataset")
    axis %= meta.ndim
    block = np.asarray(values)
    if block.ndim == meta.ndim - 1:
        block = np.expand_dims(block, axis)
    expected = meta.shape[:axis] + meta.shape[axis + 1 :]
    if block.ndim != meta.ndim or block.shape[:axis] + block.shape[axis + 1 :] != expected:
        raise ValueError(
            f"cannot append values of shape {np.shape(values)} along axis {axis} of a dataset of shape {meta.shape}"
        )
    start = meta.shape[axis]
    grown = list(meta.shape)
    grown[axis] += block.shape[axis]
    region = tuple(slice(start, None) if a == axis else slice(None) for a in range(meta.ndim))
    target = meta.with_shape(grown)
    # plan and cast before anything changes: a bad value must not leave the dataset grown
    sel = plan(region, target.shape, target.chunk_size)
    cast = prepare_values(sel, block, meta.dtype)
    new = resize(engine, ChunkIO(chunks.backend, meta), target.shape)
    written = ChunkIO(chunks.backend, new)
    # each part is one chunk: ranks write disjoint shares
    work = [(idx, chunk_sel, cast[out_sel]) for idx, chunk_sel, out_sel in engine.share(list(sel.parts()))]
    engine.run_and_agree(written.write_part, work, _threads(chunks.backend))
    return new
