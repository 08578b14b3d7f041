"""The xarray backend (engine="dosna"), to_dosna and Dataset.dims."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

import dosna as dn
from dosna.errors import ChunkCorruptError, DatasetExistsError

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")

from dosna.interop.xarray import DosnaBackendEntrypoint, to_dosna  # noqa: E402

ENGINE = DosnaBackendEntrypoint  # the class itself: works before the package's entry point is installed


def hdf5_store(tmp_path, name="store"):
    return dn.Connection(name, backend="hdf5", engine="cpu", directory=str(tmp_path)).connect()


def weather(chunked=False):
    rng = np.random.default_rng(0)
    temp = rng.random((6, 5, 4)).astype("f4")
    temp[0, 0, 0] = np.nan
    ds = xr.Dataset(
        {
            "temp": (("time", "y", "x"), temp, {"units": "K", "long_name": "air temperature"}),
            "mask": (("y", "x"), rng.random((5, 4)) > 0.5),
            "count": (("time",), np.arange(6, dtype="i2")),
        },
        coords={
            "time": pd.date_range("2020-01-01", periods=6),
            "y": np.arange(5.0) * 2,
            "x": np.arange(4),
            "lat": (("y", "x"), rng.random((5, 4))),
        },
    )
    return ds.chunk({"time": 2}) if chunked else ds


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_to_dosna_and_open_dataset_round_trip(tmp_path, chunked):
    original = weather(chunked)
    store = os.path.join(str(tmp_path), "store")
    to_dosna(original, store)
    con = hdf5_store(tmp_path)
    assert con.datasets() == ["count", "lat", "mask", "temp", "time", "x", "y"]  # coordinates are datasets
    assert con["temp"].dims == ("time", "y", "x")
    if chunked:
        assert con["temp"].chunks == (2, 5, 4)
    back = xr.open_dataset(store, engine=ENGINE)
    xr.testing.assert_identical(back.load(), original.compute())
    back.close()


def test_open_is_lazy_and_reads_only_the_chunks_needed(tmp_path):
    con = hdf5_store(tmp_path)
    ds = con.create_dataset("v", data=np.arange(64.0 * 64).reshape(64, 64), chunks=(16, 16))
    ds.dims = ("row", "col")
    opened = xr.open_dataset(con, engine=ENGINE)
    ds[...] = -1.0  # written after opening: opening read nothing
    # damage a chunk outside the selection: the selection still reads
    with open(con.backend.chunk_location(ds.meta, (3, 3)), "r+b") as f:
        f.seek(-64, os.SEEK_END)
        f.write(b"\xff" * 64)
    np.testing.assert_array_equal(opened["v"][:16, 10:30].values, -1.0)
    np.testing.assert_array_equal(opened["v"][[1, 5], 3].values, -1.0)
    with pytest.raises(ChunkCorruptError):
        opened["v"].values  # noqa: B018


def test_dask_chunks_follow_dosna_chunks(tmp_path):
    pytest.importorskip("dask")
    con = hdf5_store(tmp_path)
    con.create_dataset("v", data=np.ones((50, 30)), chunks=(16, 8))
    opened = xr.open_dataset(con, engine=ENGINE, chunks={})
    assert opened["v"].chunks == ((16, 16, 16, 2), (8, 8, 8, 6))
    assert float(opened["v"].sum()) == 1500.0


def test_open_dataarray_of_one_dataset_brings_its_coordinates(tmp_path):
    to_dosna(weather(), os.path.join(str(tmp_path), "store"))
    da = xr.open_dataarray(os.path.join(str(tmp_path), "store") + "::temp", engine=ENGINE)
    assert da.name == "temp" and da.dims == ("time", "y", "x")
    assert set(da.coords) == {"time", "y", "x", "lat"}
    assert da.attrs == {"units": "K", "long_name": "air temperature"}
    assert da.encoding["chunks"] == (6, 5, 4)
    only = xr.open_dataset(hdf5_store(tmp_path), engine=ENGINE, datasets=["count"])
    assert list(only.data_vars) == ["count"]


def test_datasets_without_dims_get_default_names(tmp_path):
    con = hdf5_store(tmp_path)
    con.create_dataset("a", data=np.zeros((3, 4)))
    con.create_dataset("b", data=np.zeros(7))
    assert xr.open_dataset(con, engine=ENGINE, datasets="a")["a"].dims == ("dim_0", "dim_1")
    both = xr.open_dataset(con, engine=ENGINE)
    assert both["a"].dims == ("a_dim_0", "a_dim_1") and both["b"].dims == ("b_dim_0",)


def test_fill_value_is_not_a_mask_but_fill_value_attribute_is(tmp_path):
    con = hdf5_store(tmp_path)
    ds = con.create_dataset("i", shape=(4,), dtype="i4", fillvalue=0, attrs={"_FillValue": -9})
    ds[:2] = [-9, 5]
    values = xr.open_dataset(con, engine=ENGINE)["i"].values
    np.testing.assert_array_equal(values, [np.nan, 5, 0, 0])


def test_to_dosna_refuses_before_writing(tmp_path):
    store = os.path.join(str(tmp_path), "store")
    con = hdf5_store(tmp_path)
    con.create_dataset("temp", data=np.zeros(3))
    with pytest.raises(DatasetExistsError):
        to_dosna(weather(), store)
    with_attrs = weather()
    with_attrs.attrs["title"] = "run 1"
    with pytest.raises(ValueError, match="dataset attributes"):
        to_dosna(with_attrs, store)
    with pytest.raises(ValueError, match="name the DataArray"):
        to_dosna(xr.DataArray(np.ones(3)), store)
    with pytest.raises(TypeError, match="not supported"):
        to_dosna(xr.Dataset({"s": ("n", np.array(["a", "b"]))}), store)
    for bad in ("a/b", "models.m.v1"):
        with pytest.raises(dn.InvalidNameError):
            to_dosna(xr.Dataset({"ok": ("n", np.ones(2)), bad: ("n", np.ones(2))}), store)
    assert con.datasets() == ["temp"]
    to_dosna(weather(), store, overwrite=True, chunks={"time": 3})
    assert con["temp"].chunks == (3, 5, 4)


def test_accessor_writes_a_dataarray(tmp_path):
    con = dn.Connection(f"xr-{uuid.uuid4().hex}", backend="ram").connect()
    arr = xr.DataArray(np.arange(12.0).reshape(3, 4), dims=("a", "b"), name="grid", attrs={"k": 1})
    arr.dosna.to_dosna(con, compression="zstd")
    assert con["grid"].compression == "zstd" and con["grid"].dims == ("a", "b")
    xr.testing.assert_identical(xr.open_dataarray(con, engine=ENGINE).load(), arr)


def test_engine_name_from_the_installed_entry_point(tmp_path):
    from importlib.metadata import entry_points

    points = [ep for ep in entry_points(group="xarray.backends") if ep.name == "dosna"]
    if not points or points[0].value != "dosna.interop.xarray:DosnaBackendEntrypoint":
        pytest.skip("dosna's xarray entry point is not installed (pip install -e . again to register it)")
    con = hdf5_store(tmp_path)
    con.create_dataset("v", data=np.arange(5.0))
    assert xr.open_dataset(con.backend.root, engine="dosna")["v"].values.tolist() == [0, 1, 2, 3, 4]


# -- Dataset.dims ------------------------------------------------------------------------------
def test_dims_are_persisted_in_attributes_as_json(tmp_path):
    con = hdf5_store(tmp_path)
    ds = con.create_dataset("d", shape=(2, 3), dtype="f4")
    assert ds.dims is None
    ds.dims = ("y", "x")
    assert hdf5_store(tmp_path)["d"].dims == ("y", "x")
    assert ds.attrs["_ARRAY_DIMENSIONS"] == ["y", "x"]
    assert ds.clone("c").dims == ("y", "x")
    for bad, error in (
        (("y",), ValueError),
        (("y", "y"), ValueError),
        ((1, 2), TypeError),
        (("", "x"), TypeError),
    ):
        with pytest.raises(error):
            ds.dims = bad
    assert ds.dims == ("y", "x")
    ds.dims = None
    assert ds.dims is None and "_ARRAY_DIMENSIONS" not in ds.attrs
