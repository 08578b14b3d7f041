"""Datasets (N-d arrays stored as chunks), their chunks and their attributes."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .indexing import as_numpy, plan, prepare_values, read_selection
from .interop.dims import DIMS_ATTR, check_dims, dims_from_attrs
from .io import arrays
from .io.chunks import ChunkIO
from .metadata import DatasetMeta, validate_dtype
from .modes import refuses_read_only
from .namespaces import check_user_name

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import Backend
    from .connection import Connection
    from .engines.base import Engine

__all__ = ["AsType", "Attributes", "DataChunk", "Dataset", "Indexer"]


class Attributes(MutableMapping):
    """A dataset's user attributes: a dict of JSON values stored with its metadata.

    Every read fetches the stored attributes and every change is written at
    once, so other processes see changes made here.
    """

    def __init__(self, dataset: Dataset) -> None:
        self._dataset = dataset

    def _current(self) -> dict[str, Any]:
        return dict(self._dataset._fresh_meta().attrs)

    @refuses_read_only("change attributes")
    def _store(self, attrs: dict[str, Any]) -> None:
        ds = self._dataset
        meta = ds._fresh_meta().with_attrs(attrs)
        backend = ds.backend
        ds.engine.collective(lambda: backend.update_meta(ds.name, meta.to_json()))
        ds._meta = meta

    def __getitem__(self, key: str) -> Any:
        # a copy: changing what was read changes nothing stored, as with h5py
        return copy.deepcopy(self._current()[key])

    @refuses_read_only("change attributes")
    def __setitem__(self, key: str, value: Any) -> None:
        attrs = self._current()
        attrs[key] = value
        self._store(attrs)

    @refuses_read_only("change attributes")
    def __delitem__(self, key: str) -> None:
        attrs = self._current()
        del attrs[key]
        self._store(attrs)

    @refuses_read_only("change attributes")
    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # one write, not one per key
        attrs = self._current()
        attrs.update(other, **kwargs)
        self._store(attrs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"<Attributes of {self._dataset.name!r}: {self._current()!r}>"


class Dataset:
    """An N-dimensional array stored as chunks; sliced like a NumPy array.

    Obtain one from :meth:`Connection.create_dataset` or ``con[name]``.

    Examples
    --------
    >>> import dosna as dn, numpy as np
    >>> con = dn.connection('doc-dataset', backend='ram')
    >>> ds = con.create_dataset('a', shape=(4, 6), dtype='i4', chunk_size=(2, 4))
    >>> ds[1:3, ::2] = 7
    >>> ds[2]
    array([7, 0, 7, 0, 7, 0], dtype=int32)
    >>> ds.chunk_grid, ds.total_chunks
    ((2, 2), 4)
    """

    def __init__(self, connection: Connection, meta: DatasetMeta) -> None:
        self.connection = connection
        self._meta = meta

    # -- description ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self._meta.name

    @property
    def meta(self) -> DatasetMeta:
        """The dataset's metadata (shape, dtype, chunking, fill value, attributes)."""
        return self._meta

    @property
    def shape(self) -> tuple[int, ...]:
        return self._meta.shape

    @property
    def ndim(self) -> int:
        return self._meta.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._meta.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def fillvalue(self) -> Any:
        return self._meta.fillvalue

    @property
    def chunk_size(self) -> tuple[int, ...]:
        return self._meta.chunk_size

    chunks = chunk_size  # the h5py/zarr name

    @property
    def compression(self) -> str | None:
        """The chunk compression (``None``, ``"zstd"``, ``"lz4"``, ``"blosc"`` or ``"gzip"``)."""
        return self._meta.codec.compression

    @property
    def compression_opts(self) -> int | None:
        """The compression level (None without compression)."""
        return self._meta.codec.level

    @property
    def shuffle(self) -> bool:
        """Whether bytes are shuffled before compression."""
        return self._meta.codec.shuffle

    @property
    def checksum(self) -> bool:
        """Whether chunks carry crc32c checksums that every read verifies."""
        return self._meta.codec.checksum

    @property
    def nbytes_stored(self) -> int:
        """Bytes the stored chunks take in the store (encoded: compressed, with checksums)."""
        return int(self.backend.stored_bytes(self._meta))

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        return self._meta.chunk_grid

    @property
    def total_chunks(self) -> int:
        return self._meta.total_chunks

    @property
    def attrs(self) -> Attributes:
        """User attributes (JSON values), stored with the dataset."""
        return Attributes(self)

    @property
    def dims(self) -> tuple[str, ...] | None:
        """Names of the axes, e.g. ``("time", "y", "x")``, or None if none were given.

        Stored as the attribute ``_ARRAY_DIMENSIONS`` (a JSON list, the name
        xarray gives it in zarr stores), so it is kept wherever attributes are
        (clone, map, resize, copy). Assign a sequence of ``ndim`` distinct
        strings to set it, None to remove it.
        """
        return dims_from_attrs(self._fresh_meta().attrs, self.ndim)

    @dims.setter
    def dims(self, names: Any) -> None:
        attrs = self.attrs
        if names is None:
            if DIMS_ATTR in attrs:
                del attrs[DIMS_ATTR]
            return
        attrs[DIMS_ATTR] = list(check_dims(names, self.ndim))

    def to_dask(self, chunks: Any = None) -> Any:
        """A dask array reading this dataset lazily, one dask block per chunk by default.

        Parameters
        ----------
        chunks : optional
            Dask chunks; default the dataset's chunk shape. Blocks that are
            multiples of it keep every read chunk-aligned.

        Returns
        -------
        dask.array.Array
        """
        from .interop.dask import to_dask

        return to_dask(self, chunks)

    @property
    def backend(self) -> Backend:
        self.connection.ensure_connected()
        return self.connection.backend

    @property
    def engine(self) -> Engine:
        return self.connection.engine

    # MPI-style attributes, as on the connection
    mpi_rank = property(lambda self: self.connection.mpi_rank)
    mpi_size = property(lambda self: self.connection.mpi_size)
    mpi_is_root = property(lambda self: self.connection.mpi_is_root)
    mpi_comm = property(lambda self: self.connection.mpi_comm)

    def mpi_barrier(self) -> None:
        self.connection.mpi_barrier()

    def _fresh_meta(self) -> DatasetMeta:
        self._meta = arrays.current_meta(self.backend, self._meta)
        return self._meta

    def _io(self) -> ChunkIO:
        """The dataset's chunks, with the metadata as stored now (a resize elsewhere is seen)."""
        return ChunkIO(self.backend, self._fresh_meta())

    def refresh(self) -> None:
        """Read the stored metadata again (every read and write also does)."""
        self._fresh_meta()

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self) -> Iterator[Any]:
        if not self.shape:
            raise TypeError("iteration over a 0-d dataset")
        for i in range(self.shape[0]):
            yield self[i]

    def __repr__(self) -> str:
        return (
            f"<dosna.Dataset {self.name!r} shape={self.shape} dtype={self.dtype} "
            f"chunk_size={self.chunk_size} fillvalue={self.fillvalue!r} "
            f"backend={self.connection.backend.name} engine={self.engine.name}>"
        )

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        _refuse_no_copy(copy, "a dosna dataset")
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    # -- slicing ---------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        """Read a selection with NumPy's indexing: basic, integer arrays and boolean masks."""
        return arrays.read(self.engine, self._io(), key)

    def read_direct(self, dest: np.ndarray, source_sel: Any = None, dest_sel: Any = None) -> None:
        """Read ``self[source_sel]`` into ``dest[dest_sel]``, as h5py's ``read_direct``.

        Reading into memory that is already there (a buffer reused from one read
        to the next) avoids the cost of fresh pages, which on many machines is
        larger than the copy itself.

        Parameters
        ----------
        dest : numpy.ndarray
            A writeable array. Values are converted to its dtype where it
            differs from the dataset's (as NumPy's ``astype``).
        source_sel, dest_sel : index, optional
            What to read (default: everything) and where to put it (default:
            all of ``dest``); ``dest_sel`` must select a view (basic slicing).
            The two selections must have the same shape.

        Raises
        ------
        TypeError
            If ``dest`` is not a writeable NumPy array, or ``dest_sel`` would copy.
        ValueError
            If the shapes of the two selections differ.
        """
        if not isinstance(dest, np.ndarray) or not dest.flags.writeable:
            raise TypeError(f"dest must be a writeable NumPy array, not {type(dest).__name__}")
        target = dest if dest_sel is None else dest[dest_sel]
        if not isinstance(target, np.ndarray) or (target.size and not np.shares_memory(target, dest)):
            raise TypeError("dest_sel must select a view of dest (slices and integers), not a copy")
        arrays.read(self.engine, self._io(), Ellipsis if source_sel is None else source_sel, out=target)

    @property
    def oindex(self) -> Indexer:
        """Orthogonal indexing, as zarr's ``oindex``: each 1-D array selects on its own axis.

        ``ds.oindex[[0, 2], :, [1, 3]]`` has shape ``(2, ds.shape[1], 2)``;
        ints, slices, Ellipsis and ``np.newaxis`` work as usual. Get and set.
        """
        return Indexer(self, "outer")

    @property
    def vindex(self) -> Indexer:
        """Vectorised (pointwise) indexing, as zarr's ``vindex``.

        Integer arrays (and boolean masks, as their ``nonzero()``) broadcast
        together and select points; the broadcast axes come first, then the
        axes of any slices. ``ds.vindex[[0, 2], [1, 3]]`` reads two elements.
        Get and set.
        """
        return Indexer(self, "vectorized")

    def astype(self, dtype: Any) -> AsType:
        """A read-only view that converts what it reads to ``dtype``, as h5py's ``astype``.

        ``ds.astype("f4")[0:10]`` reads ten rows as float32 (NumPy's casting).
        """
        return AsType(self, dtype)

    def iter_chunks(self, sel: Any = None) -> Iterator[tuple[slice, ...]]:
        """The slices of every chunk, in C order, as h5py's ``iter_chunks``.

        With ``sel`` (a slice or tuple of unit-step slices), only the chunks it
        touches, each cut to ``sel``. ``for s in ds.iter_chunks(): ds[s]``
        reads the dataset one chunk at a time.
        """
        region = _region(sel, self.shape)
        ranges = []
        for r, c in zip(region, self.chunk_size):
            edges = range(r.start - r.start % c, r.stop, c) if r.stop > r.start else range(0)
            ranges.append([slice(max(e, r.start), min(e + c, r.stop)) for e in edges])
        yield from itertools.product(*ranges)

    get_data = __getitem__

    @refuses_read_only("write to a dataset")
    def __setitem__(self, key: Any, value: Any) -> None:
        """Write a selection; ``value`` is cast and broadcast as NumPy does."""
        arrays.write(self.engine, self._io(), key, value)

    def set_data(self, values: Any, slices: Any = Ellipsis) -> None:
        """``ds[slices] = values`` (the original DosNa spelling)."""
        self[slices] = values

    # -- whole-dataset operations ------------------------------------------------
    def chunk_indices(self) -> list[tuple[int, ...]]:
        """Every chunk index of the grid, in C order."""
        return list(itertools.product(*(range(g) for g in self.chunk_grid)))

    def chunks_for_rank(self) -> list[tuple[int, ...]]:
        """The chunk indices this process handles in collective operations.

        With the mpi engine each rank gets a contiguous, disjoint share of the
        chunk grid (together they cover it); with other engines, every chunk.
        """
        return list(self.engine.share(self.chunk_indices()))

    def slab_for_rank(self, axis: int = 0) -> tuple[slice, ...]:
        """The slab of the dataset this process should work on, split along ``axis``.

        Slabs follow chunk boundaries (so writes from different ranks never
        touch the same chunk), are disjoint and together cover the dataset. A
        rank may get an empty slab when there are fewer chunks than ranks.
        """
        if not -self.ndim <= axis < self.ndim:
            raise IndexError(f"axis {axis} is out of bounds for a {self.ndim}-d dataset")
        axis %= self.ndim
        mine = self.engine.share(list(range(self.chunk_grid[axis])))
        c, n = self.chunk_size[axis], self.shape[axis]
        start = min(mine[0] * c, n) if mine else 0
        stop = min((mine[-1] + 1) * c, n) if mine else 0
        return tuple(slice(start, stop) if a == axis else slice(None) for a in range(self.ndim))

    @refuses_read_only("load a dataset")
    def load(self, src: Any) -> None:
        """Fill the dataset from ``src`` chunk by chunk.

        ``src`` is anything with this dataset's shape that supports slicing with
        a tuple of slices (NumPy array, h5py dataset, dosna dataset, memmap,
        CPU torch tensor...). Only a few chunks of ``src`` are in memory at a
        time, so ``src`` may be far larger than memory. With the mpi engine
        every rank must call it.
        """
        arrays.load(self.engine, self._io(), as_numpy(src))

    @refuses_read_only("resize a dataset")
    def resize(self, shape: Any) -> None:
        """Change the shape (same number of axes), as h5py's ``Dataset.resize``.

        Growing exposes the fill value; shrinking deletes the chunks wholly
        outside the new shape and resets the cut-away part of the others, so
        data cut away never reappears when the dataset grows again. With the
        mpi engine every rank must call it; every rank sees the new shape on
        return. Resizing is not atomic for other processes reading at the same
        time (see the docs on concurrent appends).

        Parameters
        ----------
        shape : int or tuple of int
            The new shape.
        """
        self._meta = arrays.resize(self.engine, self._io(), shape)

    @refuses_read_only("append to a dataset")
    def append(self, values: Any, axis: int = 0) -> None:
        """Grow along ``axis`` and write ``values`` there (one element of the axis, or a block).

        ``values`` has the dataset's shape on the other axes (or one axis less,
        for a single element). With the mpi engine every rank must call it with
        the same values. Appends from several independent processes at once are
        not safe: the last resize wins; give each process its own region (e.g.
        resize once, then write slabs) or append from one process.
        """
        self._meta = arrays.append(self.engine, self._io(), values, axis)

    @refuses_read_only("write a map's output")
    def map(
        self,
        func: Callable[[np.ndarray], np.ndarray],
        output_name: str,
        dtype: Any = None,
        halo: int | tuple[int, ...] = 0,
    ) -> Dataset:
        """A new dataset ``output_name`` holding ``func`` applied to every chunk.

        ``func`` receives each chunk's valid region (edge chunks are smaller)
        and must return an array of the same shape. The new dataset appears
        only once every chunk is written; if ``func`` fails, nothing of it
        remains and the error is raised.

        With ``halo`` (elements per side, one int or one per axis) ``func``
        receives the chunk grown by that many elements from its neighbours,
        clipped at the array's edges, and only the chunk's own part of the
        result is kept. A filter whose reach is at most ``halo`` (e.g. a
        Gaussian with ``halo >= ceil(truncate * sigma)``) then gives exactly
        what it gives on the whole array.
        """
        halo_t = self._halo(halo)
        source = self._io()
        return self._derive(
            output_name, dtype, lambda target: arrays.transform(self.engine, source, target, func, halo_t)
        )

    def _halo(self, halo: int | tuple[int, ...]) -> tuple[int, ...]:
        sizes = (halo,) * self.ndim if isinstance(halo, (int, np.integer)) else tuple(halo)
        if len(sizes) != self.ndim or any(not isinstance(h, (int, np.integer)) or h < 0 for h in sizes):
            raise ValueError(f"halo must be a non-negative int or {self.ndim} of them, got {halo!r}")
        return tuple(int(h) for h in sizes)

    @refuses_read_only("apply a function to a dataset")
    def apply(self, func: Callable[[np.ndarray], np.ndarray]) -> None:
        """Replace every chunk with ``func(chunk)`` in place (see :meth:`map`)."""
        chunks = self._io()
        arrays.transform(self.engine, chunks, chunks, func)

    @refuses_read_only("clone a dataset")
    def clone(self, output_name: str, data: bool = False, dtype: Any = None) -> Dataset:
        """A new dataset with this one's shape, chunking, codec, fill value and attributes.

        Parameters
        ----------
        output_name : str
            Name of the new dataset.
        data : bool, default False
            Also copy the stored chunks (the new dataset appears once all are copied).
        dtype : dtype-like, optional
            Element type of the new dataset (default: this one's).
        """
        source = self._io()
        fill = (lambda target: arrays.copy_stored(self.engine, source, target)) if data else None
        return self._derive(output_name, dtype, fill)

    def _derive(self, name: str, dtype: Any, fill: Callable[[ChunkIO], None] | None) -> Dataset:
        check_user_name(name)
        meta = arrays.derived_meta(self._meta, name, dtype, dict(self._meta.attrs))
        created = arrays.create(self.engine, self.backend, meta, fill)
        return Dataset(self.connection, created.meta)

    @refuses_read_only("clear a dataset")
    def clear(self) -> None:
        """Delete every stored chunk: the whole dataset reads as the fill value."""
        arrays.clear(self.engine, self._io())

    def delete(self) -> None:
        """Delete the dataset and all its chunks."""
        self.connection.del_dataset(self.name)

    # -- chunks ------------------------------------------------------------------
    def get_chunk(self, idx: Any) -> DataChunk:
        """The chunk at grid position ``idx`` (whether or not it was written)."""
        return DataChunk(self, self._meta.check_chunk_index(idx))

    def has_chunk(self, idx: Any) -> bool:
        """Whether chunk ``idx`` has been written."""
        chunks = self._io()
        return chunks.backend.has_chunk(chunks.meta, chunks.meta.check_chunk_index(idx))

    @refuses_read_only("write a chunk")
    def create_chunk(self, idx: Any, data: Any = None) -> DataChunk:
        """Write chunk ``idx`` (with ``data``, or the fill value) and return it."""
        chunk = self.get_chunk(idx)
        chunk.set_data(self.fillvalue if data is None else data)
        return chunk

    @refuses_read_only("delete a chunk")
    def del_chunk(self, idx: Any) -> None:
        """Delete chunk ``idx``; it then reads as the fill value."""
        chunks = self._io()
        chunks.delete(chunks.meta.check_chunk_index(idx))

    def chunk_view(self, idx: Any) -> np.ndarray:
        """Chunk ``idx``'s valid region, read-only, without copying where the backend allows.

        hdf5 gives a memory map of the chunk file and ram the stored array;
        object stores fetch the chunk. A missing chunk reads as the fill value.
        """
        chunks = self._io()
        view = chunks.view(chunks.meta.check_chunk_index(idx))
        _check_if_missing(chunks)
        return view

    def stored_chunks(self) -> list[tuple[int, ...]]:
        """Indices of the chunks that have been written, sorted."""
        chunks = self._io()
        return sorted(chunks.backend.list_chunks(chunks.meta))


def _check_if_missing(chunks: ChunkIO) -> None:
    """A chunk read as missing may be a dataset deleted meanwhile: make sure it is not."""
    if chunks.missing_seen:
        arrays.current_meta(chunks.backend, chunks.meta)


class DataChunk:
    """One chunk of a dataset: an N-d block of at most ``chunk_size``.

    Slicing a DataChunk works like slicing a NumPy array of its (valid) shape.
    """

    def __init__(self, dataset: Dataset, idx: tuple[int, ...]) -> None:
        self.dataset = dataset
        self.idx = idx

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dataset.meta.chunk_shape(self.idx)

    @property
    def dtype(self) -> np.dtype:
        return self.dataset.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def region(self) -> tuple[slice, ...]:
        """The slices of the dataset this chunk holds."""
        return self.dataset.meta.chunk_region(self.idx)

    def exists(self) -> bool:
        return self.dataset.has_chunk(self.idx)

    def get_data(self, slices: Any = Ellipsis) -> Any:
        """Read ``chunk[slices]`` (the fill value where the chunk was never written)."""
        chunks = self.dataset._io()
        data = chunks.read_whole(self.idx)
        _check_if_missing(chunks)
        sel = plan(slices, self.shape, self.shape)
        out = np.empty(sel.shape, self.dtype)
        for _, chunk_sel, out_sel in sel.parts():
            out[out_sel] = read_selection(data, chunk_sel)
        return sel.to_numpy(out)

    @refuses_read_only("write a chunk")
    def set_data(self, values: Any, slices: Any = Ellipsis) -> None:
        """Write ``chunk[slices] = values`` (read-modify-write unless it covers the chunk)."""
        chunks = self.dataset._io()
        sel = plan(slices, self.shape, self.shape)
        prepared = prepare_values(sel, values, self.dtype)
        for _, chunk_sel, out_sel in sel.parts():
            chunks.write_part((self.idx, chunk_sel, prepared[out_sel]))

    __getitem__ = get_data

    def __setitem__(self, slices: Any, values: Any) -> None:
        self.set_data(values, slices)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        _refuse_no_copy(copy, "a dosna chunk")
        out = self.get_data()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<dosna.DataChunk {self.idx} of {self.dataset.name!r} shape={self.shape}>"


class Indexer:
    """``ds.oindex`` / ``ds.vindex``: get and set with orthogonal or vectorised index arrays."""

    def __init__(self, dataset: Dataset, mode: str) -> None:
        self.dataset = dataset
        self.mode = mode

    def __getitem__(self, key: Any) -> Any:
        ds = self.dataset
        return arrays.read(ds.engine, ds._io(), key, self.mode)

    @refuses_read_only("write to a dataset")
    def __setitem__(self, key: Any, value: Any) -> None:
        ds = self.dataset
        arrays.write(ds.engine, ds._io(), key, value, self.mode)


class AsType:
    """A read-only view of a dataset whose reads are converted to another dtype (see :meth:`Dataset.astype`)."""

    def __init__(self, dataset: Dataset, dtype: Any) -> None:
        self.dataset = dataset
        self.dtype = validate_dtype(dtype)

    shape = property(lambda self: self.dataset.shape)
    ndim = property(lambda self: self.dataset.ndim)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        out = self.dataset[key]
        if isinstance(out, np.ndarray):
            return out.astype(self.dtype, copy=False)
        return np.asarray(out).astype(self.dtype)[()]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        _refuse_no_copy(copy, "a dosna astype view")
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<dosna.AsType {self.dataset.name!r} as {self.dtype}>"


def _refuse_no_copy(copy: bool | None, what: str) -> None:
    # NumPy 2: __array__(copy=False) must raise when the result cannot be a view
    if copy is False:
        raise ValueError(
            f"{what} is read from its chunks, so np.asarray(..., copy=False) cannot avoid a copy"
        )


def _region(sel: Any, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``sel`` (None, a slice or a tuple of slices) as unit-step slices with bounds."""
    if sel is None:
        sel = ()
    if not isinstance(sel, tuple):
        sel = (sel,)
    if len(sel) > len(shape) or not all(isinstance(s, slice) for s in sel):
        raise TypeError(f"iter_chunks takes a slice or a tuple of at most {len(shape)} slices, got {sel!r}")
    out = []
    for s, n in zip(sel + (slice(None),) * (len(shape) - len(sel)), shape):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError(f"iter_chunks needs slices with step 1, got {s!r}")
        out.append(slice(start, max(start, stop)))
    return tuple(out)
