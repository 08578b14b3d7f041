"""The xarray backend (``engine="dosna"``) and :func:`to_dosna`, its writing counterpart.

``xr.open_dataset(store, engine="dosna")`` opens every dataset of a dosna
store as a variable, lazily: nothing is read until values are needed, and with
``chunks={}`` the variables are dask arrays with one block per dosna chunk.
``xr.open_dataarray("STORE::NAME", engine="dosna")`` opens one dataset with its
coordinates. Axis names come from :attr:`dosna.Dataset.dims`; a dataset whose
name is one of its own dimension names is that dimension's coordinate, as in
netCDF and zarr; other coordinates are named by the CF ``coordinates``
attribute that :func:`to_dosna` writes.

The dosna fill value is where nothing was written, not a mask: xarray masks
values only by a ``_FillValue`` (or ``missing_value``) attribute, as CF says.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..connection import Connection
from ..dataset import Dataset
from ..errors import DatasetExistsError
from ..io.codecs import CodecSpec
from ..metadata import DatasetMeta, auto_chunk_size, validate_name
from ..namespaces import check_user_name
from .copy import copy
from .dims import dims_from_attrs, without_dims
from .endpoints import ArrayInfo, Source, _json_value
from .stores import open_store

try:
    import xarray as xr
    from xarray.backends import BackendArray, BackendEntrypoint
    from xarray.backends.common import AbstractDataStore
    from xarray.backends.store import StoreBackendEntrypoint
    from xarray.core import indexing
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..errors import BackendUnavailableError

    raise BackendUnavailableError("the xarray backend needs xarray: pip install 'dosna[xarray]'") from exc

__all__ = [
    "DosnaAccessor",
    "DosnaBackendArray",
    "DosnaBackendEntrypoint",
    "DosnaStore",
    "open_datasets",
    "to_dosna",
]


class DosnaBackendArray(BackendArray):
    """A dosna dataset as xarray's lazily indexed array: outer indexing, one array axis."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.shape = ds.shape
        self.dtype = ds.dtype

    def __getitem__(self, key: Any) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._getitem
        )

    def _getitem(self, key: tuple) -> np.ndarray:
        return np.asarray(self.ds[key])


def _resolve(
    target: Any, storage_options: Mapping[str, Any] | None
) -> tuple[Connection, list[str] | None, bool]:
    """(connection, dataset names or None for all, whether to disconnect it) for what was opened."""
    if isinstance(target, Dataset):
        return target.connection, [target.name], False
    name = None
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if "::" in text:
            text, _, name = text.partition("::")
        target = text
    con, owned = open_store(target, "r", **dict(storage_options or {}))
    return con, ([name] if name else None), owned


def open_datasets(con: Connection, names: Iterable[str] | None) -> list[Dataset]:
    """The datasets asked for (every one if ``names`` is None) plus the coordinates they name."""
    if names is None:
        return [con.get_dataset(n) for n in con.datasets()]
    chosen = {n: con.get_dataset(n) for n in names}
    for ds in list(chosen.values()):
        wanted = list(dims_from_attrs(ds.attrs, ds.ndim) or ())
        wanted += str(ds.attrs.get("coordinates", "")).split()
        for coord in wanted:
            if coord not in chosen and con.has_dataset(coord):
                chosen[coord] = con.get_dataset(coord)
    return list(chosen.values())


class DosnaStore(AbstractDataStore):
    """The datasets of a dosna store as an xarray data store (read only)."""

    def __init__(self, con: Connection, datasets: list[Dataset], owned: bool) -> None:
        self.con = con
        self.datasets = datasets
        self.owned = owned

    def _dims(self, ds: Dataset) -> tuple[str, ...]:
        stored = dims_from_attrs(ds.attrs, ds.ndim)
        if stored is not None:
            return stored
        prefix = "" if len(self.datasets) == 1 else f"{ds.name}_"
        return tuple(f"{prefix}dim_{i}" for i in range(ds.ndim))

    def get_variables(self) -> dict[str, Any]:
        out = {}
        for ds in self.datasets:
            dims = self._dims(ds)
            encoding = {
                "chunks": ds.chunk_size,
                "preferred_chunks": dict(zip(dims, ds.chunk_size)),
                "fill_value": ds.fillvalue,
                "compression": ds.compression,
                "compression_opts": ds.compression_opts,
                "shuffle": ds.shuffle,
                "checksum": ds.checksum,
            }
            data = indexing.LazilyIndexedArray(DosnaBackendArray(ds))
            out[ds.name] = xr.Variable(dims, data, without_dims(ds.attrs), encoding)
        return out

    def get_attrs(self) -> dict[str, Any]:
        return {}

    def get_dimensions(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for ds in self.datasets:
            sizes.update(zip(self._dims(ds), ds.shape))
        return sizes

    def close(self) -> None:
        if self.owned:
            self.con.disconnect()


class DosnaBackendEntrypoint(BackendEntrypoint):
    """``engine="dosna"``: open a dosna store, or one dataset of it, lazily.

    ``filename_or_obj`` is a store (a Connection, or a URL / hdf5 directory
    path), ``STORE::NAME`` for one dataset and its coordinates, or a
    :class:`dosna.Dataset`. ``datasets=[...]`` opens several by name.
    """

    description = "Open dosna stores (chunked arrays in HDF5 directories, Ceph, S3) lazily"
    url = "https://github.com/DiamondLightSource/DosNa"
    open_dataset_parameters = (
        "filename_or_obj",
        "mask_and_scale",
        "decode_times",
        "concat_characters",
        "decode_coords",
        "drop_variables",
        "use_cftime",
        "decode_timedelta",
        "datasets",
        "storage_options",
    )

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        mask_and_scale: bool = True,
        decode_times: bool = True,
        concat_characters: bool = True,
        decode_coords: bool = True,
        drop_variables: Any = None,
        use_cftime: Any = None,
        decode_timedelta: Any = None,
        datasets: Iterable[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Any:
        con, names, owned = _resolve(filename_or_obj, storage_options)
        try:
            if datasets is not None:
                if names is not None:
                    raise TypeError("give the dataset in the URL (STORE::NAME) or datasets=, not both")
                names = [datasets] if isinstance(datasets, str) else list(datasets)
            store = DosnaStore(con, open_datasets(con, names), owned)
            return StoreBackendEntrypoint().open_dataset(
                store,
                mask_and_scale=mask_and_scale,
                decode_times=decode_times,
                concat_characters=concat_characters,
                decode_coords=decode_coords,
                drop_variables=drop_variables,
                use_cftime=use_cftime,
                decode_timedelta=decode_timedelta,
            )
        except BaseException:
            if owned:
                con.disconnect()
            raise

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        return isinstance(filename_or_obj, (Connection, Dataset))


# -- writing ---------------------------------------------------------------------------------
class _VariableSource(Source):
    """One encoded xarray variable as a copy source (values read a chunk region at a time)."""

    def __init__(self, name: str, var: Any, info: ArrayInfo) -> None:
        self.var = var
        self.info = info
        self.description = name
        data = var.data
        # NumPy and dask data can be read from threads; lazily opened files may not
        self.parallel = isinstance(data, np.ndarray) or type(data).__module__.startswith("dask")

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self.var[region].values)


def _chunks_for(var: Any, chunks: Any) -> tuple[int, ...]:
    shape, dims = var.shape, var.dims
    if isinstance(chunks, Mapping):
        return tuple(int(chunks.get(d, n) or 1) if n else 1 for d, n in zip(dims, shape))
    if chunks is not None:
        return tuple(chunks) if not isinstance(chunks, int) else (chunks,) * len(shape)
    enc = var.encoding.get("chunks")
    if enc is not None and len(enc) == len(shape):
        return tuple(int(c) for c in enc)
    if var.chunks is not None:  # dask: the first block of each axis
        return tuple(max(1, int(c[0])) for c in var.chunks)
    return auto_chunk_size(shape, var.dtype)


def _variable_info(var: Any, chunks: Any, codec: CodecSpec | None) -> ArrayInfo:
    attrs = {k: _json_value(v) for k, v in var.attrs.items()}
    fill = var.encoding.get("fill_value", 0)
    marker = attrs.get("_FillValue")
    if isinstance(marker, str) and var.dtype.kind == "f":
        # a NaN mask needs no attribute: the values are NaN already
        attrs.pop("_FillValue")
        fill = float(marker)
    elif marker is not None:
        fill = marker
    if codec is None and var.encoding.get("checksum") is not None:
        with contextlib.suppress(ValueError, TypeError):
            codec = CodecSpec.create(
                var.encoding.get("compression"),
                var.encoding.get("compression_opts"),
                var.encoding.get("shuffle") if var.encoding.get("compression") else None,
                bool(var.encoding.get("checksum")),
            )
    return ArrayInfo(
        tuple(var.shape),
        np.dtype(var.dtype),
        _chunks_for(var, chunks),
        fill,
        attrs,
        tuple(str(d) for d in var.dims),
        codec,
    )


def to_dosna(
    obj: Any,
    store: Any,
    *,
    chunks: Any = None,
    compression: str | None = None,
    compression_opts: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write an xarray Dataset or DataArray into a dosna store, one dosna dataset per variable.

    Coordinates are datasets too; dimension names, attributes and CF encodings
    (times, ``_FillValue``) are kept, so ``xr.open_dataset(store,
    engine="dosna")`` gives the same object back. Values stream chunk by
    chunk (dask-backed variables are computed a chunk at a time).

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        What to write; a DataArray needs a name. Dataset-level attributes
        cannot be kept (a dosna store has none) and are refused.
    store : Connection, str or path-like
        The target store (a URL, an hdf5 directory, or a Connection).
    chunks : dict, tuple or int, optional
        Chunk shape of every variable (a dict maps dimension names to sizes);
        default each variable's ``encoding["chunks"]``, else its dask blocks,
        else about 1 MiB.
    compression, compression_opts : optional
        Chunk compression of every dataset (default: the variables' encoding,
        else none).
    overwrite : bool, default False
        Replace datasets that exist; without it an existing one raises
        DatasetExistsError before anything is written.
    progress : bool, default False
        Show a progress bar per variable.

    Raises
    ------
    DatasetExistsError, InvalidNameError, TypeError, ValueError
        Before anything is written.
    """
    if isinstance(obj, xr.DataArray):
        if obj.name is None:
            raise ValueError("name the DataArray (da.rename('name')) before writing it to dosna")
        obj = obj.to_dataset()
    if not isinstance(obj, xr.Dataset):
        raise TypeError(f"to_dosna writes xarray Datasets and DataArrays, not {type(obj).__name__}")
    if obj.attrs:
        raise ValueError(
            f"dataset attributes {sorted(obj.attrs)} cannot be stored (a dosna store has no attributes "
            "of its own): move them to a variable's attrs or drop them (obj.attrs = {})"
        )
    from xarray.conventions import cf_encoder, encode_dataset_coordinates

    variables, _ = cf_encoder(*encode_dataset_coordinates(obj))
    codec = None if compression is None else CodecSpec.create(compression, compression_opts)
    plans = []
    for name, var in variables.items():
        if not isinstance(name, str):
            raise TypeError(f"variable names must be str to become dosna dataset names, got {name!r}")
        check_user_name(validate_name(name))
        info = _variable_info(var, chunks, codec)
        DatasetMeta.create(name, info.shape, info.dtype, info.fillvalue, info.chunks, info.dosna_attrs())
        plans.append((name, var, info))
    con, owned = open_store(store, "a", **dict(storage_options or {}))
    try:
        if not overwrite:
            existing = [name for name, _, _ in plans if con.has_dataset(name)]
            if existing:
                raise DatasetExistsError(
                    f"datasets {existing} exist in {con.backend.location}: pass overwrite=True to replace them"
                )
        for name, var, info in plans:
            copy(_VariableSource(name, var, info), con, name=name, overwrite=overwrite, progress=progress)
    finally:
        if owned:
            con.disconnect()


@xr.register_dataset_accessor("dosna")
@xr.register_dataarray_accessor("dosna")
class DosnaAccessor:
    """``obj.dosna.to_dosna(store, ...)``: :func:`to_dosna` as a method of xarray objects."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def to_dosna(self, store: Any, **kwargs: Any) -> None:
        """Write the object into ``store``; see :func:`dosna.interop.xarray.to_dosna`."""
        to_dosna(self._obj, store, **kwargs)
