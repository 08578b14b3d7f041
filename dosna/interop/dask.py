"""dask arrays from dosna datasets, and dask arrays stored into them chunk-aligned.

``da.from_array(ds)`` and ``da.store(x, ds)`` work as they do for h5py and
zarr. A block of ``x`` that covers only part of a dosna chunk is written by
reading, modifying and writing that chunk; two such blocks of one chunk written
at once by threads of one process are serialised by the chunk I/O layer, so
``da.store(x, ds, lock=False)`` is safe with dask's threaded and synchronous
schedulers whatever the blocks. Worker *processes* (dask's ``processes``
scheduler, distributed) cannot share that lock: :func:`store` rechunks ``x``
to the dataset's chunk grid first, so no two blocks ever share a chunk.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from ..dataset import Dataset

__all__ = ["aligned_chunks", "store", "to_dask"]


def _dask_array() -> Any:
    try:
        import dask.array as da
    except ImportError as exc:
        raise BackendUnavailableError(
            "this needs dask: pip install 'dosna[xarray]' (or 'dask[array]')"
        ) from exc
    return da


def to_dask(ds: Dataset, chunks: Any = None) -> Any:
    """A lazy dask array over ``ds``, one block per dosna chunk unless ``chunks`` says otherwise.

    Parameters
    ----------
    ds : Dataset
        The dataset; each block is read with ``ds[region]`` when computed.
    chunks : optional
        Any dask chunk specification; default ``ds.chunk_size``.

    Returns
    -------
    dask.array.Array
    """
    da = _dask_array()
    # a fresh name per call: the data may change between calls, so a cached result would be stale
    return da.from_array(
        ds,
        chunks=ds.chunk_size if chunks is None else chunks,
        name=f"dosna-{ds.name}-{uuid.uuid4().hex}",
        lock=False,
        asarray=True,
        fancy=False,
        meta=np.empty((0,) * ds.ndim, ds.dtype),
    )


def aligned_chunks(array_chunks: tuple[tuple[int, ...], ...], chunk_size: tuple[int, ...]) -> bool:
    """Whether every block boundary of dask ``array_chunks`` falls on a dosna chunk boundary."""
    for blocks, size in zip(array_chunks, chunk_size):
        edge = 0
        for block in blocks[:-1]:
            edge += block
            if edge % size:
                return False
    return True


def store(x: Any, ds: Dataset, *, compute: bool = True, **kwargs: Any) -> Any:
    """``da.store(x, ds)`` with ``x`` rechunked to whole dosna chunks: safe on any scheduler.

    Parameters
    ----------
    x : dask.array.Array or array-like
        Values of ``ds``'s shape (anything else is wrapped with ``da.asarray``).
    ds : Dataset
        The target.
    compute : bool, default True
        As for ``da.store``: False returns a delayed object.
    **kwargs
        Passed on to ``da.store`` (``lock`` defaults to False: blocks never share a chunk).

    Raises
    ------
    ValueError
        If ``x``'s shape is not ``ds``'s (before anything is written).
    """
    da = _dask_array()
    x = da.asarray(x)
    if tuple(x.shape) != ds.shape:
        raise ValueError(
            f"cannot store an array of shape {tuple(x.shape)} into a dataset of shape {ds.shape}"
        )
    if not aligned_chunks(x.chunks, ds.chunk_size):
        x = x.rechunk(ds.chunk_size)
    kwargs.setdefault("lock", False)
    return da.store(x, ds, compute=compute, **kwargs)
