"""The ``hdf5`` backend: a directory tree with one HDF5 file per chunk.

Layout::

    <directory>/<connection name>/<dataset>/.dosna.json   metadata (JSON)
    <directory>/<connection name>/<dataset>/3.0.12.h5     chunk (3, 0, 12), HDF5 dataset "data"

Every chunk file is an ordinary HDF5 file that h5py, HDFView or h5dump open.
dosna writes them itself from a per-shape header template (built once with
h5py) followed by the raw data, in one system call, to a temporary file that is
then renamed over the old one: a reader or a crash sees the old or the new chunk,
never a torn one. Reads memory-map the contiguous ``data`` block, so a partial
read touches only the pages it needs; mappings are kept in a bounded cache that
is checked against the file's identity (inode, size, mtime) on every use, which
keeps it correct across writes and deletes from this or any other process.
Chunk files written by other tools (compressed, chunked layouts) are read
through h5py.
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

from ..errors import (
    BackendUnavailableError,
    ChunkCorruptError,
    DatasetExistsError,
    DatasetNotFoundError,
)
from ..indexing import ChunkSel, read_selection, selected_fraction
from ..metadata import DatasetMeta
from .base import Backend, chunk_key, parse_chunk_key

try:
    import h5py
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailableError("the hdf5 backend needs h5py: pip install 'dosna[hdf5]'") from exc

__all__ = ["Hdf5Backend"]

META_FILE = ".dosna.json"
CHUNK_SUFFIX = ".h5"
_DATA = "data"


@functools.lru_cache(maxsize=256)
def _template(shape: tuple[int, ...], dtype_str: str) -> tuple[bytes, int, bytes]:
    """Header bytes, data offset and trailer bytes of a chunk file of this layout."""
    dtype = np.dtype(dtype_str)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    fid = h5py.File(f"dosna-template-{uuid.uuid4().hex}", "w", driver="core", backing_store=False)
    try:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        dcpl.set_obj_track_times(False)  # keeps the header identical for every chunk
        space = h5py.h5s.create_simple(shape) if shape else h5py.h5s.create(h5py.h5s.SCALAR)
        dset = h5py.h5d.create(fid.id, _DATA.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)
        offset = dset.get_offset()
        dset.close()
        fid.flush()
        image = fid.id.get_file_image()
    finally:
        fid.close()
    return bytes(image[:offset]), offset, bytes(image[offset + nbytes :])


def _write_all(fd: int, buffers: list) -> None:
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


class _MappedChunks:
    """A bounded LRU of read-only chunk arrays keyed by path and file identity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[tuple, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, ident: tuple) -> np.ndarray | None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry[0] != ident:
                return None
            self._entries.move_to_end(path)
            return entry[1]

    def put(self, path: str, ident: tuple, array: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[path] = (ident, array)
            self._entries.move_to_end(path)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def discard(self, path: str) -> None:
        with self._lock:
            self._entries.pop(path, None)

    def discard_under(self, prefix: str) -> None:
        with self._lock:
            for path in [p for p in self._entries if p.startswith(prefix)]:
                del self._entries[path]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Hdf5Backend(Backend):
    """Datasets as directories of HDF5 files, one file per chunk.

    Parameters
    ----------
    name : str
        Name of the directory (under ``directory``) that holds the datasets.
    directory : str or path-like, default ``'.'``
        Where the ``name`` directory lives.
    create : bool, default True
        Create the ``name`` directory on connect if it does not exist.
    fsync : bool, default False
        Flush every chunk and metadata file to disk before renaming it into
        place. Renames are atomic either way (a crashed process never leaves a
        torn chunk); fsync also protects against power loss, at a large cost.
    cache_size : int, default 4096
        How many memory-mapped chunk files to keep (0 disables the cache).
    io_threads : int, default 2
        Chunk files read or written at once by one slicing call; creating and
        renaming files waits on the filesystem, so a little concurrency pays.
    """

    name: ClassVar[str] = "hdf5"
    zero_copy_views: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        directory: str | os.PathLike = ".",
        create: bool = True,
        fsync: bool = False,
        cache_size: int = 4096,
        io_threads: int = 2,
    ) -> None:
        super().__init__(name)
        self.directory = os.fspath(directory)
        self.root = os.path.join(self.directory, name)
        self.create = create
        self.fsync = fsync
        self.cache_size = cache_size
        self.io_threads = max(1, int(io_threads))
        self._cache = _MappedChunks(cache_size)

    def __getstate__(self) -> dict:  # for process pools: options only, no mappings
        state = self.__dict__.copy()
        del state["_cache"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache = _MappedChunks(self.cache_size)

    @property
    def location(self) -> str:
        return self.root

    def connect(self) -> None:
        if self.create:
            os.makedirs(self.root, exist_ok=True)
        elif not os.path.isdir(self.root):
            raise FileNotFoundError(f"hdf5 connection directory {self.root!r} does not exist")

    def disconnect(self) -> None:
        self._cache.clear()

    # -- helpers -------------------------------------------------------------
    def _dataset_dir(self, dataset: str) -> str:
        return os.path.join(self.root, dataset)

    def meta_location(self, dataset: str) -> str:
        return os.path.join(self.root, dataset, META_FILE)

    def chunk_location(self, meta: DatasetMeta, idx: tuple[int, ...]) -> str:
        return os.path.join(self.root, meta.name, chunk_key(idx) + CHUNK_SUFFIX)

    def _write_file(self, path: str, buffers: list, exclusive: bool = False) -> None:
        """Write ``buffers`` to ``path`` through a temporary file and an atomic rename."""
        head, tail = os.path.split(path)
        tmp = os.path.join(head, f".{tail}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            try:
                _write_all(fd, buffers)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                os.link(tmp, path)  # fails if the file exists: an atomic create
            else:
                os.replace(tmp, path)
        finally:
            if exclusive or os.path.exists(tmp):
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass

    # -- datasets ----------------------------------------------------------
    def list_datasets(self) -> list[str]:
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        with entries:
            return sorted(
                e.name
                for e in entries
                if not e.name.startswith(".") and os.path.isfile(os.path.join(e.path, META_FILE))
            )

    def read_meta(self, dataset: str) -> bytes | None:
        try:
            with open(self.meta_location(dataset), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def create_meta(self, dataset: str, data: bytes) -> None:
        os.makedirs(self._dataset_dir(dataset), exist_ok=True)
        try:
            self._write_file(self.meta_location(dataset), [data], exclusive=True)
        except FileExistsError:
            raise DatasetExistsError(f"dataset {dataset!r} already exists in {self.root}") from None

    def update_meta(self, dataset: str, data: bytes) -> None:
        if not os.path.isfile(self.meta_location(dataset)):
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.root}")
        self._write_file(self.meta_location(dataset), [data])

    def delete_dataset(self, dataset: str) -> None:
        path = self._dataset_dir(dataset)
        trash = os.path.join(self.root, f".deleted-{dataset}-{uuid.uuid4().hex}")
        if not os.path.isfile(self.meta_location(dataset)):
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.root}")
        try:
            os.rename(path, trash)  # the dataset disappears at once, whole
        except FileNotFoundError:
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.root}") from None
        self._cache.discard_under(path + os.sep)
        shutil.rmtree(trash, ignore_errors=True)

    # -- chunks --------------------------------------------------------------
    def read_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """Read a whole chunk with one ``readv`` into a fresh array."""
        out = np.empty(meta.chunk_shape(idx), meta.dtype)
        return out if self.read_chunk_into(meta, idx, out) else None

    def read_chunk_into(self, meta: DatasetMeta, idx: tuple[int, ...], out: np.ndarray) -> bool:
        """Read a whole chunk with one ``readv`` straight into ``out``."""
        path = self.chunk_location(meta, idx)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        header, offset, trailer = _template(out.shape, meta.dtype.str)
        try:
            size = os.fstat(fd).st_size
            if size == offset + out.nbytes + len(trailer):
                head = bytearray(len(header))
                got = os.readv(fd, [head, out.reshape(-1).view(np.uint8)])
                if got == offset + out.nbytes and head == header:
                    return True
        finally:
            os.close(fd)
        data = self._load(meta, idx, path, size)[0]
        if data is None:
            return False
        out[...] = data
        return True

    def read_chunk_part(self, meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> np.ndarray | None:
        """Small selections come from a cached memory map; large ones from :meth:`read_chunk`."""
        shape = meta.chunk_shape(idx)
        if selected_fraction(sel, shape) > 0.25:
            data = self.read_chunk(meta, idx)
        else:
            data = self._mapped(meta, idx)
        return None if data is None else read_selection(data, sel)

    def read_chunk_view(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """A read-only memory map of the chunk file (cached), not a copy."""
        return self._mapped(meta, idx)

    def _mapped(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        path = self.chunk_location(meta, idx)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        ident = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(path, ident)
        if cached is not None:
            return cached
        array, mapped = self._load(meta, idx, path, st.st_size)
        if mapped:
            self._cache.put(path, ident, array)
        return array

    def _load(self, meta: DatasetMeta, idx: tuple[int, ...], path: str, size: int):
        """Map (or, for foreign layouts, read) a chunk file; return (array, mapped)."""
        shape = meta.chunk_shape(idx)
        header, offset, trailer = _template(shape, meta.dtype.str)
        expected = offset + meta.dtype.itemsize * math.prod(shape) + len(trailer)
        try:
            with open(path, "rb") as f:
                if f.read(len(header)) == header:
                    if size != expected:
                        raise ChunkCorruptError(meta.name, idx, path, f"{size} bytes, expected {expected}")
                    return self._map(f, offset, meta.dtype, shape), True
        except FileNotFoundError:
            return None, False
        return self._load_with_h5py(meta, idx, path, shape)

    @staticmethod
    def _map(f, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(mm, dtype=dtype, count=count, offset=offset).reshape(shape)

    def _load_with_h5py(self, meta, idx, path, shape):
        try:
            with h5py.File(path, "r") as f:
                dset = f[_DATA]
                if dset.shape != shape:
                    raise ChunkCorruptError(
                        meta.name, idx, path, f"holds shape {dset.shape}, expected {shape}"
                    )
                offset = dset.id.get_offset()
                plain = dset.chunks is None and dset.compression is None and dset.dtype == meta.dtype
                if plain and offset is not None:
                    with open(path, "rb") as raw:
                        return self._map(raw, offset, meta.dtype, shape), True
                return dset[()] if shape == () else dset[...].astype(meta.dtype, copy=False), False
        except ChunkCorruptError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ChunkCorruptError(meta.name, idx, path, f"not a readable HDF5 chunk ({exc})") from exc

    def write_chunk(self, meta: DatasetMeta, idx: tuple[int, ...], data: np.ndarray) -> None:
        data = self.check_chunk(meta, idx, data)
        header, _, trailer = _template(data.shape, meta.dtype.str)
        path = self.chunk_location(meta, idx)
        buffers = [header, data.reshape(-1).view(np.uint8), trailer]
        try:
            self._write_file(path, buffers)
        except FileNotFoundError:  # chunks may be written before the dataset's metadata
            os.makedirs(self._dataset_dir(meta.name), exist_ok=True)
            self._write_file(path, buffers)
        self._cache.discard(path)

    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        return os.path.isfile(self.chunk_location(meta, idx))

    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        path = self.chunk_location(meta, idx)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self._cache.discard(path)

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        try:
            names = os.listdir(self._dataset_dir(meta.name))
        except FileNotFoundError:
            return []
        out = []
        for fname in names:
            if fname.endswith(CHUNK_SUFFIX) and not fname.startswith("."):
                idx = parse_chunk_key(fname[: -len(CHUNK_SUFFIX)], meta.ndim)
                if idx is not None:
                    out.append(idx)
        return sorted(out)
