"""The ends of a copy: dosna datasets, zarr arrays and HDF5 file datasets.

A copy endpoint is written ``LOCATION::PATH``:

==================================  ============================================
``/data/store::volume``             dataset ``volume`` of a dosna store (any
                                    store URL ``dosna.open`` accepts)
``out.zarr`` / ``out.zarr::a/b``    a zarr array: the store's root, or ``a/b``
``s3://bucket/run.zarr::a``         a zarr array in a store on S3 (options as a
                                    query, as for dosna's ``s3://`` stores:
                                    ``s3://b/run.zarr?endpoint_url=http://h:7480``)
``run.h5::/entry/data``             dataset ``/entry/data`` of an HDF5 file
==================================  ============================================

A location ending in ``.zarr`` (before any ``?query``) is zarr; one ending in
``.h5``, ``.hdf5``, ``.hdf``, ``.he5``, ``.nc`` or ``.nc4``, or an existing
file, is an HDF5 file; anything else is a dosna store. Each end describes its array as an
:class:`ArrayInfo` and maps codecs to and from dosna's :class:`CodecSpec`
where the format has a counterpart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dataset import Dataset
from ..errors import BackendUnavailableError, DatasetNotFoundError
from ..extras import require
from ..io import arrays
from ..io.chunks import ChunkIO
from ..io.codecs import CodecSpec
from ..io.interfaces import TaskEngine
from ..metadata import DatasetMeta, auto_chunk_size, validate_name
from ..namespaces import check_user_name
from .dims import DIMS_ATTR, dims_from_attrs, without_dims
from .stores import open_store

__all__ = [
    "ArrayInfo",
    "ArraySource",
    "DosnaSource",
    "DosnaTarget",
    "H5Source",
    "H5Target",
    "ObjectZarrTarget",
    "Source",
    "Target",
    "ZarrSource",
    "ZarrTarget",
    "open_source",
    "open_target",
    "split_endpoint",
]

ChunkIndex = tuple[int, ...]
Region = tuple[slice, ...]
#: ``copy_chunks(geometry, write)``: runs the chunk loop, calling ``write(idx, block)`` per target chunk.
ChunkLoop = Callable[[DatasetMeta, Callable[[ChunkIndex, np.ndarray], None]], None]

_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nc", ".nc4")


@dataclass(frozen=True)
class ArrayInfo:
    """What a copy carries over: everything about an array but its values.

    ``codec`` is None where the source's codec has no dosna counterpart (the
    target then uses its defaults).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    fillvalue: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    dims: tuple[str, ...] | None = None
    codec: CodecSpec | None = None

    def geometry(self) -> DatasetMeta:
        """Validated metadata with this shape, dtype, chunking and fill value (the chunk grid)."""
        return DatasetMeta.create("copy", self.shape, self.dtype, self.fillvalue, self.chunks)

    def dosna_attrs(self) -> dict[str, Any]:
        """The attributes with the dimension names in them, as dosna stores them."""
        attrs = without_dims(self.attrs)
        if self.dims is not None:
            attrs[DIMS_ATTR] = list(self.dims)
        return attrs


def split_endpoint(text: str) -> tuple[str, str, str]:
    """``(kind, location, path)`` of an endpoint string; kind is ``dosna``, ``zarr`` or ``h5``."""
    location, _, path = os.fspath(text).partition("::")
    if not location:
        raise ValueError(f"no location in {text!r}: write LOCATION or LOCATION::PATH")
    bare = (location.partition("?")[0] if "://" in location else location).rstrip("/").lower()
    if bare.endswith(".zarr"):
        return "zarr", location, path.strip("/")
    if bare.endswith(_H5_SUFFIXES) or os.path.isfile(location):
        return "h5", location, path
    return "dosna", location, path


# -- sources -------------------------------------------------------------------------------
class Source:
    """An array to copy from. ``parallel``: ``read`` may run in several threads at once."""

    parallel = True
    info: ArrayInfo
    description = ""

    def read(self, region: Region) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release what opening the source took."""


class DosnaSource(Source):
    def __init__(self, ds: Dataset, close: Callable[[], None] | None = None) -> None:
        meta = ds._fresh_meta()
        self.chunks = ChunkIO(ds.backend, meta)
        self.engine = ds.engine
        self.threads = ds.backend.hints.threads
        self.description = f"{ds.backend.location}::{meta.name}"
        self.info = ArrayInfo(
            meta.shape,
            meta.dtype,
            meta.chunk_size,
            meta.fillvalue,
            without_dims(meta.attrs),
            dims_from_attrs(meta.attrs, meta.ndim),
            meta.codec,
        )
        self._close = close

    def read(self, region: Region) -> np.ndarray:
        return self.chunks.read_region(region)

    def close(self) -> None:
        if self._close is not None:
            self._close()


class ArraySource(Source):
    """Anything with ``shape``, ``dtype`` and slicing by a tuple of slices (NumPy, memmap...)."""

    def __init__(self, array: Any, chunks: tuple[int, ...] | None = None, fillvalue: Any = 0) -> None:
        if not (hasattr(array, "shape") and hasattr(array, "dtype")):
            array = np.asarray(array)
        self.array = array
        self.parallel = isinstance(array, np.ndarray)
        shape = tuple(int(n) for n in array.shape)
        dtype = np.dtype(array.dtype)
        self.description = f"<{type(array).__name__} {shape} {dtype}>"
        self.info = ArrayInfo(shape, dtype, chunks or auto_chunk_size(shape, dtype), fillvalue)

    def read(self, region: Region) -> np.ndarray:
        return np.asarray(self.array[region])


class ZarrSource(Source):
    def __init__(self, z: Any, description: str = "") -> None:
        self.z = z
        self.description = description or f"<zarr array {z.path or '/'}>"
        attrs = dict(z.attrs)
        names = getattr(z.metadata, "dimension_names", None)
        dims = tuple(names) if names and all(isinstance(n, str) for n in names) else None
        fill = z.fill_value
        self.info = ArrayInfo(
            tuple(z.shape),
            np.dtype(z.dtype),
            tuple(getattr(z, "shards", None) or z.chunks),
            0 if fill is None else np.asarray(fill).item(),
            without_dims(attrs),
            dims or dims_from_attrs(attrs, z.ndim),
            _codec_from_zarr(z),
        )

    def read(self, region: Region) -> np.ndarray:
        return np.asarray(self.z[region])


class H5Source(Source):
    parallel = False  # h5py serialises every call on one lock: read in one thread, write from many

    def __init__(self, ds: Any, close: Callable[[], None] | None = None) -> None:
        self.ds = ds
        self.description = f"{ds.file.filename}::{ds.name}"
        shape = tuple(ds.shape)
        dtype = np.dtype(ds.dtype)
        labels = tuple(dim.label for dim in ds.dims)
        fill = ds.fillvalue
        self.info = ArrayInfo(
            shape,
            dtype,
            tuple(ds.chunks) if ds.chunks else auto_chunk_size(shape, dtype),
            0 if fill is None else np.asarray(fill).item(),
            {k: _json_value(v) for k, v in ds.attrs.items() if k not in _H5_RESERVED_ATTRS},
            labels if all(labels) and len(set(labels)) == len(labels) else None,
            _codec_from_h5(ds),
        )
        self._close = close

    def read(self, region: Region) -> np.ndarray:
        out = np.empty(tuple(s.stop - s.start for s in region), self.info.dtype)
        if out.size:
            self.ds.read_direct(out, region)
        return out

    def close(self) -> None:
        if self._close is not None:
            self._close()


def open_source(src: Any, **store_options: Any) -> Source:
    """A :class:`Source` for an endpoint string or an array object (dosna, zarr, h5py, NumPy)."""
    if isinstance(src, Source):
        return src
    if isinstance(src, Dataset):
        return DosnaSource(src)
    module = type(src).__module__
    if module.startswith("zarr"):
        return ZarrSource(src)
    if module.startswith("h5py"):
        return H5Source(src)
    if not isinstance(src, (str, os.PathLike)):
        return ArraySource(src)
    kind, location, path = split_endpoint(os.fspath(src))
    if kind == "zarr":
        zarr = _zarr()
        try:
            z = zarr.open_array(store=_zarr_store(location, read_only=True), path=path or None, mode="r")
        except FileNotFoundError as exc:
            raise DatasetNotFoundError(f"no zarr array at {src!r}") from exc
        return ZarrSource(z, os.fspath(src))
    if kind == "h5":
        h5py = _h5py()
        if not os.path.isfile(location):
            raise DatasetNotFoundError(f"no HDF5 file {location!r}")
        f = h5py.File(location, "r")
        try:
            ds = _only_dataset(f, location) if not path else f.get(path)
            if not isinstance(ds, h5py.Dataset):
                raise DatasetNotFoundError(f"no dataset {path!r} in {location!r}")
        except BaseException:
            f.close()
            raise
        return H5Source(ds, f.close)
    if not path:
        raise ValueError(f"name the dataset of the dosna store: {location}::NAME")
    con, owned = open_store(location, "r", **store_options)
    try:
        ds = con.get_dataset(path)
    except BaseException:
        if owned:
            con.disconnect()
        raise
    return DosnaSource(ds, con.disconnect if owned else None)


# -- targets -------------------------------------------------------------------------------
class Target:
    """Where a copy goes: created from an :class:`ArrayInfo` and filled chunk by chunk.

    ``parallel``: whole chunks may be written from several threads at once;
    ``mpi``: from several processes of an MPI job.
    """

    parallel = True
    mpi = True
    description = ""

    def chunks_for(self, info: ArrayInfo) -> tuple[int, ...]:
        return info.chunks

    def exists(self) -> bool:
        raise NotImplementedError

    def write_all(self, info: ArrayInfo, engine: TaskEngine, loop: ChunkLoop, overwrite: bool) -> None:
        """Create the array from ``info`` and have ``loop`` fill it; nothing half-written stays visible."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what opening the target took."""


class DosnaTarget(Target):
    def __init__(self, con: Any, name: str, owned: bool) -> None:
        self.con = con
        self.name = validate_name(name)
        check_user_name(self.name)
        self.owned = owned
        self.threads = con.backend.hints.threads
        self.description = f"{con.backend.location}::{name}"

    def exists(self) -> bool:
        return bool(self.con.has_dataset(self.name))

    def write_all(self, info: ArrayInfo, engine: TaskEngine, loop: ChunkLoop, overwrite: bool) -> None:
        codec = info.codec if info.codec is not None else CodecSpec.create()
        meta = DatasetMeta.create(
            self.name, info.shape, info.dtype, info.fillvalue, info.chunks, info.dosna_attrs(), codec
        )
        if overwrite and self.exists():
            self.con.del_dataset(self.name)
        arrays.create(engine, self.con.backend, meta, lambda chunks: loop(meta, chunks.write_whole))

    def close(self) -> None:
        if self.owned:
            self.con.disconnect()


class ZarrTarget(Target):
    """A zarr v3 array in a local directory store, written beside its place and renamed into it."""

    def __init__(self, location: str, path: str) -> None:
        self.root = os.path.abspath(location)
        self.path = path
        self.final = os.path.join(self.root, *path.split("/")) if path else self.root
        self.description = f"{location}::{path}" if path else location

    def exists(self) -> bool:
        return os.path.exists(os.path.join(self.final, "zarr.json")) or os.path.exists(
            os.path.join(self.final, ".zarray")
        )

    def write_all(self, info: ArrayInfo, engine: TaskEngine, loop: ChunkLoop, overwrite: bool) -> None:
        zarr = _zarr()
        parent, base = os.path.split(self.final)
        staging = os.path.join(parent, f".{base}.partial-{engine.collective(lambda: uuid.uuid4().hex[:12])}")

        def create() -> None:
            os.makedirs(parent, exist_ok=True)
            zarr.create_array(store=_zarr_local(staging), **_zarr_array_args(info))

        def commit() -> None:
            if overwrite and os.path.isdir(self.final):
                shutil.rmtree(self.final)
            os.rename(staging, self.final)

        try:
            engine.collective(create)
            _fill_zarr(zarr.open_array(store=_zarr_local(staging), mode="r+"), info, loop)
            engine.collective(commit)
        except BaseException:
            with contextlib.suppress(Exception):
                engine.collective(lambda: shutil.rmtree(staging, ignore_errors=True))
            raise


class ObjectZarrTarget(Target):
    """A zarr v3 array in a store on S3, its ``zarr.json`` written only once every chunk is.

    Object stores cannot rename, so the array is written in its place: chunks
    first, then the metadata that makes it an array. Until then readers find no
    array there, and a failed copy deletes the chunks it wrote. An array being
    replaced (``overwrite``) is deleted before the copy starts.
    """

    def __init__(self, location: str, path: str) -> None:
        self.store = _zarr_store(location)
        self.path = path
        self.prefix = f"{path}/" if path else ""
        self.description = f"{location}::{path}" if path else location

    def exists(self) -> bool:
        return any(_object_exists(self.store, self._key(name)) for name in ("zarr.json", ".zarray"))

    def write_all(self, info: ArrayInfo, engine: TaskEngine, loop: ChunkLoop, overwrite: bool) -> None:
        zarr = _zarr()
        from zarr.storage import MemoryStore, StorePath

        # the metadata is made in memory; the array object writes its chunks to the store
        staged: dict[str, Any] = {}
        made = zarr.create_array(store=MemoryStore(staged), name=self.path or None, **_zarr_array_args(info))
        metadata = staged[f"{self.prefix}zarr.json"].to_bytes()
        z = zarr.Array(zarr.AsyncArray(made.metadata, StorePath(self.store, self.path)))
        try:
            if overwrite:
                engine.collective(self._remove)
            _fill_zarr(z, info, loop)
            engine.collective(lambda: _obstore().put(self.store.store, self._key("zarr.json"), metadata))
        except BaseException:
            with contextlib.suppress(Exception):
                engine.collective(self._remove)
            raise

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _remove(self) -> None:
        """Delete the array here: its metadata first (it stops being an array), then its chunks."""
        obs = _obstore()
        keys = _object_keys(self.store, self.path)
        meta = [k for k in keys if k in (self._key("zarr.json"), self._key(".zarray"))]
        if meta:
            obs.delete(self.store.store, meta)
        rest = [k for k in keys if k not in meta]
        if rest:
            obs.delete(self.store.store, rest)


def _zarr_array_args(info: ArrayInfo) -> dict[str, Any]:
    """``zarr.create_array`` keywords for an array described by ``info``."""
    return {
        "shape": info.shape,
        "chunks": info.chunks,
        "dtype": info.dtype,
        "fill_value": info.fillvalue,
        "compressors": _codec_to_zarr(info.codec, info.dtype),
        "attributes": without_dims(info.attrs),
        "dimension_names": info.dims,
        "zarr_format": 3,
    }


def _fill_zarr(z: Any, info: ArrayInfo, loop: ChunkLoop) -> None:
    """Run ``loop`` over the chunk grid of ``info``, writing each block into the open array ``z``."""
    geometry = info.geometry()

    def write(idx: ChunkIndex, block: np.ndarray) -> None:
        z[geometry.chunk_region(idx)] = block

    loop(geometry, write)


class H5Target(Target):
    """A dataset in an HDF5 file (created if missing), written under a temporary name and moved."""

    parallel = False
    mpi = False

    def __init__(self, location: str, path: str) -> None:
        if not path or path.strip("/") == "":
            raise ValueError(f"name the dataset inside the HDF5 file: {location}::/path/in/file")
        self.location = location
        self.path = "/" + path.strip("/")
        self.description = f"{location}::{self.path}"

    def exists(self) -> bool:
        if not os.path.isfile(self.location):
            return False
        with _h5py().File(self.location, "r") as f:
            return self.path in f

    def write_all(self, info: ArrayInfo, engine: TaskEngine, loop: ChunkLoop, overwrite: bool) -> None:
        h5py = _h5py()
        new_file = not os.path.exists(self.location)
        parent, _, base = self.path.rpartition("/")
        staging = f"{parent}/.{base}.partial-{uuid.uuid4().hex[:12]}"
        try:
            with h5py.File(self.location, "a") as f:
                ds = f.create_dataset(
                    staging,
                    shape=info.shape,
                    dtype=info.dtype,
                    chunks=info.chunks if all(info.shape) else None,
                    fillvalue=info.fillvalue,
                    **_codec_to_h5(info.codec),
                )
                for key, value in without_dims(info.attrs).items():
                    ds.attrs[key] = _h5_value(value)
                if info.dims is not None:
                    for dim, label in zip(ds.dims, info.dims):
                        dim.label = label
                geometry = info.geometry()

                def write(idx: ChunkIndex, block: np.ndarray) -> None:
                    ds.write_direct(np.ascontiguousarray(block), dest_sel=geometry.chunk_region(idx))

                loop(geometry, write)
                if overwrite and self.path in f:
                    del f[self.path]
                f.move(staging, self.path)
        except BaseException:
            if new_file:
                with contextlib.suppress(OSError):
                    os.remove(self.location)
            else:
                with contextlib.suppress(Exception), h5py.File(self.location, "a") as f:
                    if staging in f:
                        del f[staging]
            raise


def open_target(dst: Any, name: str | None, default_name: str, **store_options: Any) -> Target:
    """A :class:`Target` for an endpoint string, or a dosna Connection (``name`` or ``default_name``)."""
    if isinstance(dst, Target):
        return dst
    from ..connection import Connection

    if isinstance(dst, Connection):
        con, owned = open_store(dst)
        return DosnaTarget(con, name or default_name, owned)
    if not isinstance(dst, (str, os.PathLike)):
        raise TypeError(f"copy targets are endpoint strings or dosna Connections, not {type(dst).__name__}")
    kind, location, path = split_endpoint(os.fspath(dst))
    if name is not None:
        raise TypeError("name= is for a Connection target; put the name in the endpoint (LOCATION::NAME)")
    if kind == "zarr":
        return ObjectZarrTarget(location, path) if "://" in location else ZarrTarget(location, path)
    if kind == "h5":
        return H5Target(location, path)
    con, owned = open_store(location, "a", **store_options)
    return DosnaTarget(con, path or default_name, owned)


# -- codecs --------------------------------------------------------------------------------
def _codec_from_zarr(z: Any) -> CodecSpec | None:
    compression, level, shuffle, checksum = None, None, False, False
    for codec in getattr(z, "compressors", ()) or ():
        kind = type(codec).__name__
        if kind == "ZstdCodec":
            compression, level = "zstd", int(codec.level)
        elif kind == "GzipCodec":
            compression, level = "gzip", int(codec.level)
        elif kind == "BloscCodec":
            cname = getattr(codec.cname, "value", codec.cname)
            compression = {"zstd": "zstd", "lz4": "blosc", "zlib": "gzip"}.get(cname, "blosc")
            level = int(codec.clevel)
            shuffle = getattr(codec.shuffle, "value", codec.shuffle) != "noshuffle"
        elif kind == "Crc32cCodec":
            checksum = True
        else:
            return None
    try:
        return CodecSpec.create(compression, level, shuffle if compression else None, checksum)
    except (ValueError, TypeError, BackendUnavailableError):
        return None


def _codec_to_zarr(codec: CodecSpec | None, dtype: np.dtype) -> list[Any]:
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

    if codec is None:
        return [ZstdCodec(level=0)]  # zarr's own default
    out: list[Any] = []
    level = codec.level if codec.level is not None else 0
    if codec.compression == "zstd" and not codec.shuffle:
        out.append(ZstdCodec(level=level))
    elif codec.compression == "gzip" and not codec.shuffle:
        out.append(GzipCodec(level=level))
    elif codec.compression is not None:
        # shuffle + compressor in one standard codec: blosc
        cname: Any = {"zstd": "zstd", "gzip": "zlib"}.get(codec.compression, "lz4")
        clevel = min(max(level, 1), 9) if codec.compression in ("zstd", "gzip", "blosc") else 5
        out.append(
            BloscCodec(
                cname=cname,
                clevel=clevel,
                shuffle="shuffle" if codec.shuffle else "noshuffle",
                typesize=dtype.itemsize,
            )
        )
    if codec.checksum:
        out.append(Crc32cCodec())
    return out


_H5_PLUGINS = {"32015": "zstd", "32004": "lz4", "32001": "blosc"}
_H5_RESERVED_ATTRS = (
    "DIMENSION_LIST",
    "DIMENSION_LABELS",
    "REFERENCE_LIST",
    "CLASS",
    "NAME",
    "_Netcdf4Dimid",
)


def _codec_from_h5(ds: Any) -> CodecSpec | None:
    filters = dict(ds._filters) if hasattr(ds, "_filters") else {}
    compression: str | None = None
    level = None
    if ds.compression == "gzip":
        compression, level = "gzip", ds.compression_opts
    else:
        for fid, name in _H5_PLUGINS.items():
            if fid in filters:
                compression = name
                break
    try:
        return CodecSpec.create(
            compression, level, bool(ds.shuffle) if compression else None, bool(ds.fletcher32)
        )
    except (ValueError, TypeError, BackendUnavailableError):
        return None


def _codec_to_h5(codec: CodecSpec | None) -> dict[str, Any]:
    if codec is None:
        return {}
    out: dict[str, Any] = {"fletcher32": codec.checksum}
    if codec.compression == "gzip":
        out.update(compression="gzip", compression_opts=codec.level)
    elif codec.compression is not None:
        try:
            import hdf5plugin
        except ImportError:
            return out  # the file format has no such filter without the plugin: stored uncompressed
        level = codec.level if codec.level is not None else 3
        plugin = {
            "zstd": lambda: hdf5plugin.Zstd(clevel=level),
            "lz4": lambda: hdf5plugin.LZ4(),
            "blosc": lambda: hdf5plugin.Blosc(cname="lz4", clevel=level, shuffle=0),
        }[codec.compression]()
        out.update(plugin)
    if codec.compression is not None and codec.shuffle and codec.compression != "blosc":
        out["shuffle"] = True
    return out


# -- attributes ----------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    """An HDF5 attribute as a JSON value: NumPy scalars and arrays converted, bytes decoded."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()] if value.ndim else _json_value(value.item())
    if isinstance(value, np.generic):
        return _json_value(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _h5_value(value: Any) -> Any:
    """A JSON value as an HDF5 attribute: mappings, None and mixed lists as JSON text."""
    if isinstance(value, (dict, type(None))):
        return json.dumps(value)
    if isinstance(value, list):
        try:
            arr = np.asarray(value)
        except ValueError:
            return json.dumps(value)
        return json.dumps(value) if arr.dtype == object else arr
    return value


# -- helpers -------------------------------------------------------------------------------
def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise BackendUnavailableError("zarr endpoints need zarr>=3: pip install 'dosna[xarray]'") from exc
    if int(zarr.__version__.split(".")[0]) < 3:
        raise BackendUnavailableError(f"zarr endpoints need zarr>=3, this is zarr {zarr.__version__}")
    return zarr


def _zarr_local(path: str, read_only: bool = False) -> Any:
    from zarr.storage import LocalStore

    return LocalStore(path, read_only=read_only)


def _zarr_store(location: str, read_only: bool = False) -> Any:
    """The zarr store at ``location``: a local directory, or ``s3://bucket/prefix.zarr[?options]``.

    Other URLs are left to zarr (and fsspec) to open, for reading only.

    The S3 options are those of dosna's s3 backend that S3 clients share
    (``endpoint_url``, ``region_name``, ``addressing_style``, ``verify``);
    credentials come from the environment (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``) as they do for the backend.
    """
    if "://" not in location:
        return _zarr_local(location, read_only)
    from ..urls import parse_url, scheme_of

    if scheme_of(location) != "s3":
        if read_only:
            return location  # another URL: zarr opens it itself, through fsspec
        raise ValueError(f"zarr targets are local directories or s3:// URLs, not {location!r}")
    where = parse_url(location)
    _obstore()
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    options = where.options
    endpoint = options.get("endpoint_url")
    client: Any = {}  # obstore's ClientConfig, a TypedDict
    if endpoint and endpoint.startswith("http://"):
        client["allow_http"] = True
    if options.get("verify") is False:
        client["allow_invalid_certificates"] = True
    extra: dict[str, Any] = {"endpoint": endpoint} if endpoint else {}
    store = S3Store(
        where.name,
        prefix=options.get("prefix") or None,
        region=options.get("region_name") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        virtual_hosted_style_request=options.get("addressing_style", "path") == "virtual",
        client_options=client or None,
        **extra,
    )
    return ObjectStore(store, read_only=read_only)


def _obstore() -> Any:
    require("obstore", "xarray", "a zarr store on S3")
    import obstore

    return obstore


def _object_keys(store: Any, prefix: str) -> list[str]:
    """The keys below ``prefix`` (every key for ``""``) in the object store behind the zarr store."""
    return [meta["path"] for batch in _obstore().list(store.store, prefix=prefix or None) for meta in batch]


def _object_exists(store: Any, key: str) -> bool:
    try:
        _obstore().head(store.store, key)
    except FileNotFoundError:
        return False
    return True


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise BackendUnavailableError("HDF5 file endpoints need h5py: pip install 'dosna[hdf5]'") from exc
    return h5py


def _only_dataset(f: Any, location: str) -> Any:
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(name) if hasattr(obj, "shape") else None)
    if len(found) != 1:
        raise ValueError(f"{location!r} holds {len(found)} datasets; name one: {location}::/path/in/file")
    return f[found[0]]
