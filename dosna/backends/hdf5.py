"""The ``hdf5`` backend: a directory tree with one HDF5 file per chunk.

Layout::

    <directory>/<connection name>/<dataset>/.dosna.json         metadata (JSON)
    <directory>/<connection name>/<dataset>/<uid>/3.0.12.h5     chunk (3, 0, 12), HDF5 dataset "data"

``<uid>`` is the dataset's uid (see :attr:`dosna.metadata.DatasetMeta.uid`);
datasets written before uids existed keep their chunks directly in
``<dataset>/``.

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

Datasets with checksums (the default) put a 512-byte (or larger) HDF5 user
block in front of each chunk file: HDF5 readers skip it, dosna keeps the
crc32c of every 16 KiB block of the data there (and checks the HDF5 header and
trailer against the template), so a damaged byte anywhere raises
ChunkCorruptError. A compressed chunk file holds one HDF5 chunk with the
filter pipeline of its codec (shuffle, then zstd, lz4, blosc or deflate): h5py
reads it with ``import hdf5plugin``; dosna writes the payload that numcodecs
produced behind a header built once per layout, and reads it back without
h5py, checking the crc32c of everything after the user block.
"""

from __future__ import annotations

import contextlib
import functools
import math
import mmap
import os
import shutil
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import (
    BackendUnavailableError,
    ChunkCorruptError,
    DatasetExistsError,
    DatasetNotFoundError,
)
from ..indexing import ChunkSel, read_selection, selected_fraction
from ..io.codecs import CodecError, CodecSpec, Framing, crc32c
from ..metadata import DatasetMeta
from . import hdf5_leftovers
from .base import Backend, IOHints, Leftover, chunk_area, chunk_key, parse_chunk_key
from .objects import byte_span, framing

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


_UB_MAGIC = b"DOSNAck\x01"
_UB_HEAD = struct.Struct("<8sIIQI")  # magic, crc of the rest, kind, payload length, crc of the payload
_KIND_RAW, _KIND_COMPRESSED = 1, 2
_COMPRESSED_USERBLOCK = 512


def _userblock_size(nbytes_crcs: int) -> int:
    size = 512
    while size < _UB_HEAD.size + nbytes_crcs:
        size *= 2
    return size


def _userblock(size: int, kind: int, length: int, payload_crc: int, crcs: bytes = b"") -> bytearray:
    ub = bytearray(size)
    ub[_UB_HEAD.size : _UB_HEAD.size + len(crcs)] = crcs
    _UB_HEAD.pack_into(ub, 0, _UB_MAGIC, 0, kind, length, payload_crc)
    struct.pack_into("<I", ub, 8, crc32c(memoryview(ub)[12:]))
    return ub


def _parse_userblock(ub: Any, kind: int) -> tuple[int, int, memoryview]:
    """(payload length, payload crc, the rest) of a user block; CodecError if it is damaged."""
    view = memoryview(ub)
    if len(view) < _UB_HEAD.size:
        raise CodecError("the file is too short for its user block")
    magic, crc, stored_kind, length, payload_crc = _UB_HEAD.unpack_from(view)
    if magic != _UB_MAGIC:
        raise CodecError("no dosna user block with checksums")
    if crc != crc32c(view[12:]):
        raise CodecError("checksum mismatch in the user block")
    if stored_kind != kind:
        raise CodecError(f"user block of kind {stored_kind}, expected {kind}")
    return length, payload_crc, view[_UB_HEAD.size :]


def _filters(dcpl: Any, spec: CodecSpec, dtype: np.dtype) -> None:
    """Set the HDF5 filter pipeline that decodes ``spec``'s payloads."""
    import hdf5plugin

    if spec.shuffle and spec.compression != "blosc":
        dcpl.set_shuffle()
    if spec.compression == "gzip":
        dcpl.set_deflate(spec.level)
        return
    if spec.compression == "zstd":
        plugin = hdf5plugin.Zstd(clevel=int(spec.level or 0))
    elif spec.compression == "lz4":
        plugin = hdf5plugin.LZ4()
    else:
        shuffle = hdf5plugin.Blosc.SHUFFLE if spec.shuffle else hdf5plugin.Blosc.NOSHUFFLE
        plugin = hdf5plugin.Blosc(cname="lz4", clevel=int(spec.level or 0), shuffle=shuffle)
    dcpl.set_filter(plugin.filter_id, h5py.h5z.FLAG_OPTIONAL, plugin.filter_options)


def _compressed_image(shape: tuple[int, ...], dtype: np.dtype, spec: CodecSpec, payload: bytes) -> bytes:
    """An HDF5 file image holding ``payload`` as the one chunk of dataset ``data`` (h5py builds it)."""
    fid = h5py.File(f"dosna-template-{uuid.uuid4().hex}", "w", driver="core", backing_store=False)
    try:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(shape)
        dcpl.set_obj_track_times(False)
        _filters(dcpl, spec, dtype)
        space = h5py.h5s.create_simple(shape)
        dset = h5py.h5d.create(fid.id, _DATA.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)
        dset.write_direct_chunk((0,) * len(shape), payload)
        dset.close()
        fid.flush()
        return bytes(fid.id.get_file_image())
    finally:
        fid.close()


@dataclass(frozen=True)
class _CompressedTemplate:
    """The HDF5 bytes in front of a compressed chunk's payload, for any payload size.

    Only a few fields depend on the payload size (the end-of-file address, the
    chunk's size in the chunk index); they are found by building the image for
    two sizes and comparing, and the result is checked against h5py's own image
    for a third size.
    """

    prefix: bytes
    fields: tuple[tuple[int, int, int], ...]  # (position, width, value minus payload size)

    def render(self, size: int) -> bytes:
        head = bytearray(self.prefix)
        for pos, width, base in self.fields:
            head[pos : pos + width] = (base + size).to_bytes(width, "little")
        return bytes(head)


@functools.lru_cache(maxsize=256)
def _compressed_template(shape: tuple[int, ...], dtype_str: str, spec: CodecSpec) -> _CompressedTemplate:
    dtype = np.dtype(dtype_str)
    sizes = (1000, 1000 + 0x010101)
    images = [_compressed_image(shape, dtype, spec, bytes(n)) for n in sizes]
    heads = [image[: len(image) - n] for image, n in zip(images, sizes)]
    if len(heads[0]) != len(heads[1]) or any(
        image[len(h) :] != bytes(n) for image, h, n in zip(images, heads, sizes)
    ):
        raise RuntimeError("HDF5 did not put the chunk at the end of the file")
    fields: list[tuple[int, int, int]] = []
    covered = -1
    for pos in range(len(heads[0])):
        if heads[0][pos] == heads[1][pos] or pos <= covered:
            continue
        for width in (8, 4):
            a = int.from_bytes(heads[0][pos : pos + width], "little") - sizes[0]
            b = int.from_bytes(heads[1][pos : pos + width], "little") - sizes[1]
            if a == b and pos + width <= len(heads[0]):
                fields.append((pos, width, a))
                covered = pos + width - 1
                break
        else:
            raise RuntimeError(f"cannot place the payload size at byte {pos} of the HDF5 header")
    template = _CompressedTemplate(heads[0], tuple(fields))
    check = 3 * 0x10000 + 7
    if _compressed_image(shape, dtype, spec, bytes(check))[:-check] != template.render(check):
        raise RuntimeError("the HDF5 header template does not reproduce h5py's image")
    return template


def _compressed(meta: DatasetMeta) -> bool:
    """Whether ``meta``'s chunk files hold compressed HDF5 chunks (0-d chunks cannot be chunked in HDF5)."""
    return meta.codec.compressed and meta.ndim > 0


def _raw_userblock_size(meta: DatasetMeta, nbytes: int) -> int:
    """The user block in front of an uncompressed chunk file: none without checksums."""
    if not meta.codec.checksum:
        return 0
    return _userblock_size(4 * math.ceil(nbytes / meta.codec.checksum_block))


def _raw_crcs(meta: DatasetMeta, nbytes: int, ub: Any) -> tuple[int, ...]:
    """The block checksums an uncompressed chunk file's user block holds; CodecError if damaged."""
    length, _, rest = _parse_userblock(ub, _KIND_RAW)
    count = math.ceil(nbytes / meta.codec.checksum_block)
    if length != nbytes or len(rest) < 4 * count:
        raise CodecError("the user block does not describe this chunk")
    return struct.unpack_from(f"<{count}I", rest)


def _write_all(fd: int, buffers: list) -> None:
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


class _Verified:
    """The block checksums of a mapped chunk and which blocks were already checked."""

    def __init__(self, crcs: tuple[int, ...], frames: Framing) -> None:
        self.crcs = crcs
        self.frames = frames
        self.done = np.zeros(len(crcs), dtype=bool)
        self.complete = False  # every block checked: reads skip the bookkeeping

    def check(self, array: np.ndarray, offset: int, length: int) -> None:
        """Verify the blocks holding bytes ``[offset, offset + length)``; CodecError if one is damaged."""
        block = self.frames.block
        first, last = offset // block, (offset + length - 1) // block
        if length <= 0 or self.done[first : last + 1].all():
            return
        raw = array.reshape(-1).view(np.uint8)
        for i in range(first, last + 1):
            if not self.done[i]:
                if crc32c(raw[i * block : (i + 1) * block]) != self.crcs[i]:
                    raise CodecError(f"checksum mismatch in block {i}")
                self.done[i] = True
        self.complete = bool(self.done.all())


class _MappedChunks:
    """A bounded LRU of read-only chunk arrays keyed by path and file identity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[tuple, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, ident: tuple) -> Any:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry[0] != ident:
                return None
            self._entries.move_to_end(path)
            return entry[1]

    def put(self, path: str, ident: tuple, array: Any) -> None:
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

    @property
    def hints(self) -> IOHints:
        return IOHints(threads=self.io_threads, ranged_read_fraction=0.25, zero_copy_views=True)

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

    def store_exists(self) -> bool:
        """Whether the store's directory exists (checked before :meth:`connect` would create it)."""
        return os.path.isdir(self.root)

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

    def _chunk_dir(self, meta: DatasetMeta) -> str:
        return os.path.join(self.root, *chunk_area(meta).split("/"))

    def chunk_location(self, meta: DatasetMeta, idx: tuple[int, ...]) -> str:
        return os.path.join(self._chunk_dir(meta), chunk_key(idx) + CHUNK_SUFFIX)

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
        meta = DatasetMeta.from_json(data)
        if meta.uid is None:
            os.makedirs(self._dataset_dir(dataset), exist_ok=True)
        elif not os.path.isdir(self._chunk_dir(meta)):
            raise DatasetNotFoundError(
                f"dataset {dataset!r} in {self.root} was deleted while it was being created"
            )
        try:
            self._write_file(self.meta_location(dataset), [data], exclusive=True)
        except FileExistsError:
            raise DatasetExistsError(f"dataset {dataset!r} already exists in {self.root}") from None
        except FileNotFoundError:  # prepare_create made it: the dataset was deleted meanwhile
            raise DatasetNotFoundError(
                f"dataset {dataset!r} in {self.root} was deleted while it was being created"
            ) from None

    def prepare_create(self, meta: DatasetMeta) -> None:
        super().prepare_create(meta)
        os.makedirs(self._chunk_dir(meta), exist_ok=True)

    def purge_uncommitted(self, meta: DatasetMeta) -> None:
        if meta.uid is None:
            super().purge_uncommitted(meta)
        else:
            shutil.rmtree(self._chunk_dir(meta), ignore_errors=True)
            self._cache.discard_under(self._chunk_dir(meta) + os.sep)
        with contextlib.suppress(OSError):  # only if empty: another creation may be using it
            os.rmdir(self._dataset_dir(meta.name))

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

    # -- store maintenance -----------------------------------------------------
    def leftovers(self) -> list[Leftover]:
        return hdf5_leftovers.find(self.root, META_FILE, self._committed_uid)

    def remove_leftover(self, item: Leftover) -> None:
        hdf5_leftovers.remove(self.root, META_FILE, item)
        self._cache.discard_under(item.location)

    def _committed_uid(self, dataset: str) -> tuple[bool | None, str | None]:
        try:
            raw = self.read_meta(dataset)
            return (False, None) if raw is None else (True, DatasetMeta.from_json(raw).uid)
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return None, None

    # -- chunks --------------------------------------------------------------
    def _corrupt(self, meta: DatasetMeta, idx: tuple[int, ...], path: str, reason: str) -> ChunkCorruptError:
        return ChunkCorruptError(meta.name, idx, path, reason)

    def read_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """Read a whole chunk with one ``readv`` into a fresh array."""
        out = np.empty(meta.stored_shape(idx), meta.dtype)
        return out if self.read_chunk_into(meta, idx, out) else None

    def read_chunk_into(self, meta: DatasetMeta, idx: tuple[int, ...], out: np.ndarray) -> bool:
        """Read a whole chunk with one ``readv`` straight into ``out``."""
        path = self.chunk_location(meta, idx)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            if _compressed(meta):
                self._read_compressed(meta, idx, path, fd, size, out)
                return True
            header, offset, trailer = _template(out.shape, meta.dtype.str)
            ub_size = _raw_userblock_size(meta, out.nbytes)
            if size == ub_size + offset + out.nbytes + len(trailer):
                ub, head, tail = bytearray(ub_size), bytearray(len(header)), bytearray(len(trailer))
                got = os.readv(fd, [ub, head, out.reshape(-1).view(np.uint8).data, tail])
                if got == size and head == header:
                    if not meta.codec.checksum:
                        return True
                    try:
                        crcs = _raw_crcs(meta, out.nbytes, ub)
                        if tail != trailer:
                            raise CodecError("the HDF5 trailer differs from dosna's")
                        data = out.reshape(-1).view(np.uint8)
                        if (
                            crc32c(data) != crcs[0]
                            if len(crcs) == 1
                            else framing(meta).first_bad_block(data, crcs) is not None
                        ):
                            raise CodecError("checksum mismatch in the chunk data")
                    except CodecError as exc:
                        raise self._corrupt(meta, idx, path, str(exc)) from None
                    return True
        finally:
            os.close(fd)
        data = self._load(meta, idx, path, size)[0]
        if data is None:
            return False
        out[...] = data
        return True

    def _read_compressed(
        self, meta: DatasetMeta, idx: tuple[int, ...], path: str, fd: int, size: int, out: np.ndarray
    ) -> None:
        """Decode a compressed chunk file (dosna's own layout) into ``out``."""
        raw = bytearray(size)
        got = os.readv(fd, [raw])
        view = memoryview(raw)[:got]
        try:
            if view[: len(_UB_MAGIC)] != _UB_MAGIC:
                if meta.codec.checksum:
                    raise CodecError("no dosna user block with checksums")
                out[...] = self._load_with_h5py(meta, idx, path, out.shape)[0]
                return
            ub_size = _COMPRESSED_USERBLOCK
            length, crc, _ = _parse_userblock(view[:ub_size], _KIND_COMPRESSED)
            if length > got - ub_size:
                raise CodecError(f"{got} bytes, too short for a payload of {length}")
            if meta.codec.checksum and crc32c(view[ub_size:]) != crc:
                raise CodecError("checksum mismatch")
            framing(meta).compressor.decompress(view[got - length :], out)  # type: ignore[union-attr]
        except CodecError as exc:
            raise self._corrupt(meta, idx, path, str(exc)) from None

    def read_chunk_part(self, meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> np.ndarray | None:
        """Small selections come from a cached memory map; large ones from :meth:`read_chunk`."""
        shape = meta.stored_shape(idx)
        if _compressed(meta) or selected_fraction(sel, shape) > self.hints.ranged_read_fraction:
            data = self.read_chunk(meta, idx)
            return None if data is None else read_selection(data, sel)
        mapped = self._mapped(meta, idx)
        if mapped is None:
            return None
        array, verified = mapped
        if verified is not None and not verified.complete:
            self._verify(meta, idx, array, verified, *byte_span(array.shape, array.itemsize, sel))
        return read_selection(array, sel)

    def read_chunk_view(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """A read-only memory map of the chunk file (cached), not a copy; compressed chunks are decoded."""
        if _compressed(meta):
            return self.read_chunk(meta, idx)
        mapped = self._mapped(meta, idx)
        if mapped is None:
            return None
        array, verified = mapped
        if verified is not None:
            self._verify(meta, idx, array, verified, 0, array.nbytes)
        return array

    def _verify(
        self,
        meta: DatasetMeta,
        idx: tuple[int, ...],
        array: np.ndarray,
        verified: _Verified,
        offset: int,
        length: int,
    ) -> None:
        try:
            verified.check(array, offset, length)
        except CodecError as exc:
            raise self._corrupt(meta, idx, self.chunk_location(meta, idx), str(exc)) from None

    def _mapped(self, meta: DatasetMeta, idx: tuple[int, ...]) -> tuple[np.ndarray, _Verified | None] | None:
        path = self.chunk_location(meta, idx)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        ident = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(path, ident)
        if cached is not None:
            return cached
        array, mapped, verified = self._load(meta, idx, path, st.st_size)
        if array is None:
            return None
        if mapped:
            self._cache.put(path, ident, (array, verified))
        return array, verified

    def _load(self, meta: DatasetMeta, idx: tuple[int, ...], path: str, size: int):
        """Map (or, for foreign layouts, read) a raw chunk file; return (array, mapped, verified)."""
        shape = meta.stored_shape(idx)
        header, offset, trailer = _template(shape, meta.dtype.str)
        nbytes = meta.dtype.itemsize * math.prod(shape)
        ub_size = _raw_userblock_size(meta, nbytes)
        expected = ub_size + offset + nbytes + len(trailer)
        try:
            with open(path, "rb") as f:
                ub = f.read(ub_size)
                if f.read(len(header)) == header:
                    if size != expected:
                        raise self._corrupt(meta, idx, path, f"{size} bytes, expected {expected}")
                    verified = None
                    if meta.codec.checksum:
                        f.seek(size - len(trailer))
                        try:
                            crcs = _raw_crcs(meta, nbytes, ub)
                            if f.read() != trailer:
                                raise CodecError("the HDF5 trailer differs from dosna's")
                        except CodecError as exc:
                            raise self._corrupt(meta, idx, path, str(exc)) from None
                        verified = _Verified(crcs, framing(meta))
                    return self._map(f, ub_size + offset, meta.dtype, shape), True, verified
        except FileNotFoundError:
            return None, False, None
        if meta.codec.checksum:
            raise self._corrupt(meta, idx, path, "not a dosna chunk file with checksums (damaged header)")
        return (*self._load_with_h5py(meta, idx, path, shape), None)

    @staticmethod
    def _map(f, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(mm, dtype=dtype, count=count, offset=offset).reshape(shape)

    def _load_with_h5py(self, meta, idx, path, shape):
        try:
            if meta.codec.compressed:
                import hdf5plugin  # noqa: F401  (registers the filters h5py needs)
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
        raw = data.reshape(-1).view(np.uint8)
        buffers: list[Any]
        if _compressed(meta):
            payload = framing(meta).compressor.compress(data)  # type: ignore[union-attr]
            head = _compressed_template(data.shape, meta.dtype.str, meta.codec).render(len(payload))
            crc = crc32c(payload, crc32c(head))
            buffers = [_userblock(_COMPRESSED_USERBLOCK, _KIND_COMPRESSED, len(payload), crc), head, payload]
        else:
            header, _, trailer = _template(data.shape, meta.dtype.str)
            buffers = [header, raw, trailer]
            if meta.codec.checksum:
                crcs = framing(meta).block_crcs(raw).tobytes()
                ub = _userblock(_raw_userblock_size(meta, raw.nbytes), _KIND_RAW, raw.nbytes, 0, crcs)
                buffers.insert(0, ub)
        path = self.chunk_location(meta, idx)
        try:
            self._write_file(path, buffers)
        except FileNotFoundError:  # prepare_create made the directory: the dataset was deleted
            raise DatasetNotFoundError(f"dataset {meta.name!r} no longer exists in {self.root}") from None
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

    def stored_bytes(self, meta: DatasetMeta) -> int:
        total = 0
        for idx in self.list_chunks(meta):
            try:
                total += os.stat(self.chunk_location(meta, idx)).st_size
            except FileNotFoundError:
                pass
        return total

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        try:
            names = os.listdir(self._chunk_dir(meta))
        except FileNotFoundError:
            return []
        out = []
        for fname in names:
            if fname.endswith(CHUNK_SUFFIX) and not fname.startswith("."):
                idx = parse_chunk_key(fname[: -len(CHUNK_SUFFIX)], meta.ndim)
                if idx is not None:
                    out.append(idx)
        return sorted(out)
