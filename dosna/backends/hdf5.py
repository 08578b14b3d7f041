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
import errno
import functools
import logging
import math
import mmap
import os
import shutil
import stat
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import (
    BackendUnavailableError,
    ChunkCorruptError,
    DatasetExistsError,
    DatasetNotFoundError,
    MetadataCorruptError,
)
from ..indexing import ChunkSel, read_selection, selected_fraction
from ..io.codecs import CodecError, CodecSpec, Framing, crc32c
from ..metadata import DatasetMeta
from . import hdf5_leftovers
from .base import Backend, IOHints, Leftover, chunk_area, chunk_key, parse_chunk_key
from .dir_fds import DirDescriptors
from .objects import byte_span, framing

try:
    import h5py
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailableError("the hdf5 backend needs h5py: pip install 'dosna[hdf5]'") from exc

__all__ = ["Hdf5Backend"]

log = logging.getLogger(__name__)

META_FILE = ".dosna.json"
CHUNK_SUFFIX = ".h5"
_DATA = "data"
_MAX_RANK = 32  # H5S_MAX_RANK
_MAX_HDF5_CHUNK = 1 << 32  # an HDF5 chunk holds less than 4 GiB

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a planted FIFO must not block
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
    head = _UB_HEAD.unpack_from(view)
    _check_userblock_head(head, view, kind)
    return head[3], head[4], view[_UB_HEAD.size :]


def _check_userblock_head(head: tuple, ub: Any, kind: int) -> None:
    """Check the magic, the user block's own crc and its kind (``head``: what :data:`_UB_HEAD` unpacked)."""
    magic, crc, stored_kind = head[:3]
    if magic != _UB_MAGIC:
        raise CodecError("no dosna user block with checksums")
    if crc != crc32c(memoryview(ub)[12:]):
        raise CodecError("checksum mismatch in the user block")
    if stored_kind != kind:
        raise CodecError(f"user block of kind {stored_kind}, expected {kind}")


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
    try:
        values = _raw_userblock_struct(nbytes, meta.codec.checksum_block).unpack_from(ub)
    except struct.error:
        raise CodecError("no dosna user block with checksums") from None
    _check_userblock_head(values, ub, _KIND_RAW)
    if values[3] != nbytes:
        raise CodecError("the user block does not describe this chunk")
    return values[5:]


@functools.lru_cache(maxsize=256)
def _raw_userblock_struct(nbytes: int, block: int) -> struct.Struct:
    """The head of a raw chunk's user block followed by its block crcs, unpacked in one call."""
    return struct.Struct(_UB_HEAD.format + f"{math.ceil(nbytes / block)}I")


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

    def __init__(self, crcs: tuple[int, ...], frames: Framing, array: np.ndarray) -> None:
        self.crcs = crcs
        self.block = frames.block
        self.raw = array.data.cast("B")  # the mapped bytes, sliced per block without NumPy
        self.done = bytearray(len(crcs))
        self.pending = len(crcs)

    @property
    def complete(self) -> bool:
        """Every block checked: reads skip the bookkeeping."""
        return not self.pending

    def check(self, offset: int, length: int) -> None:
        """Verify the blocks holding bytes ``[offset, offset + length)``; CodecError if one is damaged."""
        if length <= 0 or not self.pending:
            return
        block, done, raw = self.block, self.done, self.raw
        for i in range(offset // block, (offset + length - 1) // block + 1):
            if not done[i]:
                if crc32c(raw[i * block : (i + 1) * block]) != self.crcs[i]:
                    raise CodecError(f"checksum mismatch in block {i}")
                done[i] = 1
                self.pending -= 1


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
                evicted, _ = self._entries.popitem(last=False)
                log.debug("mapped-chunk cache full (%d files): dropping %s", self.capacity, evicted)

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
        self.root = os.path.abspath(os.path.join(self.directory, name))
        self.create = create
        self.fsync = fsync
        self.cache_size = cache_size
        self.io_threads = max(1, int(io_threads))
        self._cache = _MappedChunks(cache_size)
        self._dir_fds = DirDescriptors()

    @property
    def hints(self) -> IOHints:
        return IOHints(threads=self.io_threads, ranged_read_fraction=0.25, zero_copy_views=True)

    def __getstate__(self) -> dict:  # for process pools: options only, no mappings
        state = self.__dict__.copy()
        del state["_cache"], state["_dir_fds"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache = _MappedChunks(self.cache_size)
        self._dir_fds = DirDescriptors()

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
        self._dir_fds.clear()

    # -- paths -----------------------------------------------------------------
    # Every file is opened relative to its dataset's directory, which is opened
    # without following a symbolic link, and no file is opened through a link:
    # nothing that was planted in the store can make dosna read or write outside it.
    def _dataset_dir(self, dataset: str) -> str:
        return os.path.join(self.root, dataset)

    def meta_location(self, dataset: str) -> str:
        return os.path.join(self.root, dataset, META_FILE)

    def _chunk_dir(self, meta: DatasetMeta) -> str:
        return os.path.join(self.root, *chunk_area(meta).split("/"))

    def chunk_location(self, meta: DatasetMeta, idx: tuple[int, ...]) -> str:
        return os.path.join(self._chunk_dir(meta), _chunk_name(idx))

    def _open_dir(self, area: str, create: bool) -> int | None:
        """A descriptor of the directory ``area`` (a dataset, or ``"dataset/uid"``); None if it does
        not exist (and ``create`` is false). No component is followed through a link."""
        dataset = area.split("/", 1)[0]
        try:
            parent = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
            os.makedirs(self.root, exist_ok=True)  # the connection's directory went away: make it again
            parent = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        here = self.root
        try:
            for name in area.split("/"):
                here = os.path.join(here, name)
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                except FileNotFoundError:
                    if not create:
                        os.close(parent)
                        return None
                    with contextlib.suppress(FileExistsError):  # made meanwhile, by another writer
                        os.mkdir(name, dir_fd=parent)
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                os.close(parent)
                parent = fd
        except OSError as exc:
            os.close(parent)
            raise self._bad_dir(dataset, here, exc) from None
        return parent

    @staticmethod
    def _bad_dir(dataset: str, path: str, exc: OSError) -> OSError:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            return exc
        what = "a symbolic link" if os.path.islink(path) else "not a directory"
        return MetadataCorruptError(
            dataset, path, f"the dataset's directory is {what} (dosna never follows links out of the store)"
        )

    @contextlib.contextmanager
    def _dir(self, area: str, create: bool = False) -> Iterator[int | None]:
        if "/" in area:  # "dataset/uid": one incarnation's chunks, its descriptor can be kept
            fd, done = self._dir_fds.use(area, lambda: self._open_dir(area, create))
        else:  # a dataset's directory: the name may be deleted and created again
            fd = self._open_dir(area, create)
            done = (lambda: os.close(fd)) if fd is not None else (lambda: None)
        try:
            yield fd
        finally:
            done()

    def _write_file(self, dir_fd: int, name: str, buffers: list, exclusive: bool = False) -> None:
        """Write ``buffers`` to ``name`` in ``dir_fd`` through a temporary file and an atomic rename."""
        tmp = f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, _TMP_FLAGS, 0o644, dir_fd=dir_fd)
        except FileExistsError:
            # left by a killed writer that had this process and thread id, or planted:
            # never written through, only removed (unlinking a link leaves its target alone)
            os.unlink(tmp, dir_fd=dir_fd)
            fd = os.open(tmp, _TMP_FLAGS, 0o644, dir_fd=dir_fd)
        renamed = False
        try:
            try:
                _write_all(fd, buffers)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:  # a hard link fails if the name exists: an atomic create
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                renamed = True
        finally:
            if not renamed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)

    # -- datasets ----------------------------------------------------------
    def list_datasets(self) -> list[str]:
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        with entries:
            # a real directory with a metadata entry (of whatever kind: opening tells if it is damaged)
            return sorted(
                e.name
                for e in entries
                if not e.name.startswith(".")
                and e.is_dir(follow_symlinks=False)
                and os.path.lexists(os.path.join(e.path, META_FILE))
            )

    def read_meta(self, dataset: str) -> bytes | None:
        with self._dir(dataset) as dir_fd:
            if dir_fd is None:
                return None
            try:
                opened = _open_regular(dir_fd, META_FILE)
            except _Refused as exc:
                raise MetadataCorruptError(dataset, self.meta_location(dataset), str(exc)) from None
        if opened is None:
            return None
        with os.fdopen(opened[0], "rb") as f:
            return f.read()

    def create_meta(self, dataset: str, data: bytes) -> None:
        meta = DatasetMeta.from_json(data)
        if meta.uid is not None:
            with self._dir(chunk_area(meta)) as area_fd:
                if area_fd is None:  # prepare_create made it: the dataset was deleted meanwhile
                    raise DatasetNotFoundError(
                        f"dataset {dataset!r} in {self.root} was deleted while it was being created"
                    )
        with self._dir(dataset, create=meta.uid is None) as dir_fd:
            if dir_fd is None:
                raise DatasetNotFoundError(
                    f"dataset {dataset!r} in {self.root} was deleted while it was being created"
                )
            try:
                self._write_file(dir_fd, META_FILE, [data], exclusive=True)
            except FileExistsError:
                raise DatasetExistsError(f"dataset {dataset!r} already exists in {self.root}") from None

    def prepare_create(self, meta: DatasetMeta) -> None:
        super().prepare_create(meta)
        with self._dir(chunk_area(meta), create=True):
            pass

    def purge_uncommitted(self, meta: DatasetMeta) -> None:
        if meta.uid is None:
            super().purge_uncommitted(meta)
        else:
            self._dir_fds.discard_under(chunk_area(meta))
            shutil.rmtree(self._chunk_dir(meta), ignore_errors=True)  # never follows links
            self._cache.discard_under(self._chunk_dir(meta) + os.sep)
        with contextlib.suppress(OSError):  # only if empty: another creation may be using it
            os.rmdir(self._dataset_dir(meta.name))

    def update_meta(self, dataset: str, data: bytes) -> None:
        with self._dir(dataset) as dir_fd:
            st = None if dir_fd is None else _lstat(dir_fd, META_FILE)
            if dir_fd is None or st is None:
                raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.root}")
            if not stat.S_ISREG(st.st_mode):
                raise MetadataCorruptError(dataset, self.meta_location(dataset), f"it is {_kind(st.st_mode)}")
            self._write_file(dir_fd, META_FILE, [data])

    def delete_dataset(self, dataset: str) -> None:
        path = self._dataset_dir(dataset)
        trash = os.path.join(self.root, f".deleted-{dataset}-{uuid.uuid4().hex}")
        with self._dir(dataset) as dir_fd:
            if dir_fd is None or _lstat(dir_fd, META_FILE) is None:
                raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.root}")
        try:
            os.rename(path, trash)  # the dataset disappears at once, whole
        except FileNotFoundError:
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.root}") from None
        self._cache.discard_under(path + os.sep)
        self._dir_fds.discard_under(dataset + "/")
        shutil.rmtree(trash, ignore_errors=True)  # never follows links

    # -- store maintenance -----------------------------------------------------
    def leftovers(self) -> list[Leftover]:
        return hdf5_leftovers.find(self.root, META_FILE, self._committed_uid)

    def remove_leftover(self, item: Leftover) -> None:
        hdf5_leftovers.remove(self.root, META_FILE, item)
        self._cache.discard_under(item.location)
        self._dir_fds.discard_under(os.path.relpath(item.location, self.root).replace(os.sep, "/"))

    def _committed_uid(self, dataset: str) -> tuple[bool | None, str | None]:
        try:
            raw = self.read_meta(dataset)
            return (False, None) if raw is None else (True, DatasetMeta.from_json(raw).uid)
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return None, None

    # -- chunks --------------------------------------------------------------
    def check_meta(self, meta: DatasetMeta) -> None:
        if meta.ndim > _MAX_RANK:
            raise ValueError(
                f"the hdf5 backend stores at most {_MAX_RANK} axes (HDF5's limit); shape {meta.shape} has {meta.ndim}"
            )
        nbytes = math.prod(meta.chunk_size) * meta.dtype.itemsize
        if _compressed(meta) and nbytes >= _MAX_HDF5_CHUNK:
            raise ValueError(
                f"compressed chunks of {nbytes} bytes do not fit HDF5's chunk limit of {_MAX_HDF5_CHUNK - 1} bytes; "
                "use a smaller chunk_size"
            )

    def _corrupt(self, meta: DatasetMeta, idx: tuple[int, ...], path: str, reason: str) -> ChunkCorruptError:
        return ChunkCorruptError(meta.name, idx, path, reason)

    def _open_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> tuple[int, os.stat_result] | None:
        """The chunk file open for reading, and its status; None if it is missing."""
        with self._dir(chunk_area(meta)) as dir_fd:
            if dir_fd is None:
                return None
            try:
                return _open_regular(dir_fd, _chunk_name(idx))
            except _Refused as exc:
                raise self._corrupt(meta, idx, self.chunk_location(meta, idx), str(exc)) from None

    def read_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """Read a whole chunk with one ``readv`` into a fresh array."""
        out = np.empty(meta.stored_shape(idx), meta.dtype)
        return out if self.read_chunk_into(meta, idx, out) else None

    def read_chunk_into(self, meta: DatasetMeta, idx: tuple[int, ...], out: np.ndarray) -> bool:
        """Read a whole chunk with one ``readv`` straight into ``out`` (when C-contiguous)."""
        if not out.flags.c_contiguous:
            return super().read_chunk_into(meta, idx, out)
        opened = self._open_chunk(meta, idx)
        if opened is None:
            return False
        fd, st = opened
        try:
            size = st.st_size
            if _compressed(meta):
                self._read_compressed(meta, idx, self.chunk_location(meta, idx), fd, size, out)
                return True
            header, offset, trailer = _template(out.shape, meta.dtype.str)
            ub_size = _raw_userblock_size(meta, out.nbytes)
            if size == ub_size + offset + out.nbytes + len(trailer):
                ub, head, tail = bytearray(ub_size), bytearray(len(header)), bytearray(len(trailer))
                got = os.readv(fd, [ub, head, out.data, tail])
                if got == size and head == header:
                    if not meta.codec.checksum:
                        return True
                    try:
                        crcs = _raw_crcs(meta, out.nbytes, ub)
                        if tail != trailer:
                            raise CodecError("the HDF5 trailer differs from dosna's")
                        if (
                            crc32c(out) != crcs[0]
                            if len(crcs) == 1
                            else framing(meta).first_bad_block(out, crcs) is not None
                        ):
                            raise CodecError("checksum mismatch in the chunk data")
                    except CodecError as exc:
                        raise self._corrupt(meta, idx, self.chunk_location(meta, idx), str(exc)) from None
                    return True
            out[...] = self._load(meta, idx, self.chunk_location(meta, idx), fd, size)[0]
            return True
        finally:
            os.close(fd)

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
                out[...] = self._load_with_h5py(meta, idx, path, fd, out.shape)[0]
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
            verified.check(offset, length)
        except CodecError as exc:
            raise self._corrupt(meta, idx, self.chunk_location(meta, idx), str(exc)) from None

    def _mapped(self, meta: DatasetMeta, idx: tuple[int, ...]) -> tuple[np.ndarray, _Verified | None] | None:
        path = self.chunk_location(meta, idx)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            st = None  # the dataset's directory is not one: opening says so
        if st is not None and stat.S_ISREG(st.st_mode):
            # a mapping is only ever made from a file opened safely; the same inode is the same file
            cached = self._cache.get(path, _identity(st))
            if cached is not None:
                return cached
        opened = self._open_chunk(meta, idx)
        if opened is None:
            return None
        fd, st = opened
        try:
            array, mapped, verified = self._load(meta, idx, path, fd, st.st_size)
        finally:
            os.close(fd)
        if mapped:
            self._cache.put(path, _identity(st), (array, verified))
        return array, verified

    def _load(
        self, meta: DatasetMeta, idx: tuple[int, ...], path: str, fd: int, size: int
    ) -> tuple[np.ndarray, bool, _Verified | None]:
        """Map (or, for foreign layouts, read) an open raw chunk file; return (array, mapped, verified)."""
        shape = meta.stored_shape(idx)
        header, offset, trailer = _template(shape, meta.dtype.str)
        nbytes = meta.dtype.itemsize * math.prod(shape)
        ub_size = _raw_userblock_size(meta, nbytes)
        expected = ub_size + offset + nbytes + len(trailer)
        ub = os.pread(fd, ub_size, 0)
        if os.pread(fd, len(header), ub_size) == header:
            if size != expected:
                raise self._corrupt(meta, idx, path, f"{size} bytes, expected {expected}")
            crcs: tuple[int, ...] = ()
            if meta.codec.checksum:
                try:
                    crcs = _raw_crcs(meta, nbytes, ub)
                    if os.pread(fd, len(trailer), size - len(trailer)) != trailer:
                        raise CodecError("the HDF5 trailer differs from dosna's")
                except CodecError as exc:
                    raise self._corrupt(meta, idx, path, str(exc)) from None
            array = self._map(fd, ub_size + offset, meta.dtype, shape)
            return array, True, _Verified(crcs, framing(meta), array) if meta.codec.checksum else None
        if meta.codec.checksum:
            raise self._corrupt(meta, idx, path, "not a dosna chunk file with checksums (damaged header)")
        log.debug("%s is not in dosna's raw layout: reading it with h5py", path)
        return (*self._load_with_h5py(meta, idx, path, fd, shape), None)

    @staticmethod
    def _map(fd: int, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(mm, dtype=dtype, count=count, offset=offset).reshape(shape)

    def _load_with_h5py(
        self, meta: DatasetMeta, idx: tuple[int, ...], path: str, fd: int, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, bool]:
        """Read a chunk file another tool wrote, through h5py, from the open file ``fd``.

        Only a dataset ``data`` stored in the file itself, of the dataset's
        shape and dtype, is read: links, external storage and virtual datasets
        (data in other files) and other types are refused, never followed or cast.
        """

        def refuse(reason: str) -> ChunkCorruptError:
            return ChunkCorruptError(meta.name, idx, path, reason)

        try:
            if meta.codec.compressed:
                import hdf5plugin  # noqa: F401  (registers the filters h5py needs)
            with os.fdopen(os.dup(fd), "rb") as raw, h5py.File(raw, "r") as f:
                link = f.get(_DATA, getlink=True)
                if link is None:
                    raise refuse(f"it has no dataset {_DATA!r}")
                if not isinstance(link, h5py.HardLink):
                    raise refuse(
                        f"its {_DATA!r} is a link ({type(link).__name__}); dosna does not follow links"
                    )
                dset = f[_DATA]
                if not isinstance(dset, h5py.Dataset):
                    raise refuse(f"its {_DATA!r} is a {type(dset).__name__}, not a dataset")
                if dset.is_virtual or dset.id.get_create_plist().get_external_count():
                    raise refuse(
                        f"its {_DATA!r} keeps its data in other files; dosna reads only the chunk file"
                    )
                if dset.shape != shape:
                    raise refuse(f"holds shape {dset.shape}, expected {shape}")
                if dset.dtype.newbyteorder("<") != meta.dtype.newbyteorder("<"):
                    raise refuse(f"holds {dset.dtype} data, the dataset is {meta.dtype}")
                offset = dset.id.get_offset()
                if dset.chunks is None and dset.dtype == meta.dtype and offset is not None:
                    return self._map(fd, offset, meta.dtype, shape), True
                data = np.asarray(dset[()]).astype(meta.dtype, copy=False)  # byte order only: same type
                return data.reshape(shape), False
        except ChunkCorruptError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise refuse(f"not a readable HDF5 chunk ({exc})") from exc

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
        with self._dir(chunk_area(meta)) as dir_fd:
            if dir_fd is None:  # prepare_create made the directory: the dataset was deleted
                raise DatasetNotFoundError(f"dataset {meta.name!r} no longer exists in {self.root}")
            try:
                self._write_file(dir_fd, _chunk_name(idx), buffers)
            except IsADirectoryError:
                raise self._corrupt(meta, idx, path, "it is a directory, not a chunk file") from None
        self._cache.discard(path)

    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        with self._dir(chunk_area(meta)) as dir_fd:
            return dir_fd is not None and _lstat(dir_fd, _chunk_name(idx)) is not None

    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        path = self.chunk_location(meta, idx)
        with self._dir(chunk_area(meta)) as dir_fd:
            if dir_fd is not None:
                try:
                    os.unlink(_chunk_name(idx), dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
                except IsADirectoryError:
                    raise self._corrupt(
                        meta, idx, path, "it is a directory, not a chunk file (dosna removes only files)"
                    ) from None
        self._cache.discard(path)

    def stored_bytes(self, meta: DatasetMeta) -> int:
        with self._dir(chunk_area(meta)) as dir_fd:
            if dir_fd is None:
                return 0
            sizes = (_lstat(dir_fd, _chunk_name(idx)) for idx in self._chunk_indices(meta, dir_fd))
            return sum(st.st_size for st in sizes if st is not None and stat.S_ISREG(st.st_mode))

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        with self._dir(chunk_area(meta)) as dir_fd:
            return [] if dir_fd is None else self._chunk_indices(meta, dir_fd)

    @staticmethod
    def _chunk_indices(meta: DatasetMeta, dir_fd: int) -> list[tuple[int, ...]]:
        out = []
        for fname in os.listdir(dir_fd):
            if fname.endswith(CHUNK_SUFFIX) and not fname.startswith("."):
                idx = parse_chunk_key(fname[: -len(CHUNK_SUFFIX)], meta.ndim, meta.chunk_grid)
                if idx is not None:
                    out.append(idx)
        return sorted(out)


def _chunk_name(idx: tuple[int, ...]) -> str:
    return chunk_key(idx) + CHUNK_SUFFIX


def _identity(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


class _Refused(Exception):
    """A name in the store that holds something dosna does not read: a link, a directory, a FIFO..."""


def _kind(mode: int) -> str:
    for test, what in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a regular file"


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_regular(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """``name`` in ``dir_fd`` open for reading, and its status; None if missing.

    Raises _Refused unless it is a regular file: a link is not followed, and a
    FIFO is not waited on (it is opened without blocking, then refused).
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused("it is a symbolic link (dosna never follows links out of the store)") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            st = _lstat(dir_fd, name)
            raise _Refused(f"it is {_kind(st.st_mode) if st else 'not a regular file'}, not a file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _Refused(f"it is {_kind(st.st_mode)}, not a file")
    return fd, st
