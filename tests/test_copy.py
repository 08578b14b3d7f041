"""dosna.copy and `dosna copy`: dosna stores, zarr v3 and HDF5 files, chunk-streamed."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import uuid

import numpy as np
import pytest

import dosna as dn
from dosna import cli
from dosna.errors import DatasetExistsError, DatasetNotFoundError, DosnaError
from dosna.interop.endpoints import ArraySource, split_endpoint

h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")

from mpi_helpers import python_mpi, requires_mpiexec  # noqa: E402


def hdf5_store(tmp_path, name="store", engine="cpu", **kw):
    return dn.Connection(name, backend="hdf5", engine=engine, directory=str(tmp_path), **kw).connect()


def sample(shape=(37, 20, 9), dtype="f4", seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100).astype(dtype)


@pytest.mark.parametrize("dtype", ["f4", "f8", "i2", "u8", "c8", "bool"])
def test_round_trip_dosna_zarr_hdf5_dosna_keeps_everything(tmp_path, dtype):
    data = sample(dtype=dtype)
    fill = {"f": np.nan, "c": 0, "b": False}.get(np.dtype(dtype).kind, 7)
    con = hdf5_store(tmp_path)
    ds = con.create_dataset(
        "vol",
        data=data,
        chunks=(16, 8, 9),
        fillvalue=fill,
        attrs={"units": "K", "n": [1, 2]},
        compression="zstd",
    )
    ds.dims = ("z", "y", "x")
    store = os.path.join(str(tmp_path), "store")
    zpath = os.path.join(str(tmp_path), "vol.zarr")
    h5path = os.path.join(str(tmp_path), "vol.h5")

    assert dn.copy(f"{store}::vol", zpath, progress=False) == zpath
    z = zarr.open_array(zpath, mode="r")
    assert z.dtype == data.dtype and z.chunks == (16, 8, 9)
    assert tuple(z.metadata.dimension_names) == ("z", "y", "x")
    assert z.attrs.asdict() == {"units": "K", "n": [1, 2]}
    assert [type(c).__name__ for c in z.compressors] == [
        "BloscCodec",
        "Crc32cCodec",
    ]  # zstd + shuffle, checked
    np.testing.assert_array_equal(z[...], data)

    dn.copy(zpath, f"{h5path}::/group/vol", progress=False)
    with h5py.File(h5path, "r") as f:
        h = f["/group/vol"]
        assert list(f["group"]) == ["vol"]  # nothing left of the staging name
        assert h.chunks == (16, 8, 9) and h.fletcher32 and h.shuffle
        assert [d.label for d in h.dims] == ["z", "y", "x"]
        assert h.attrs["units"] == "K"
        np.testing.assert_array_equal(h[...], data)
        np.testing.assert_array_equal(h.fillvalue, fill)

    ram = dn.Connection(f"copy-{uuid.uuid4().hex}", backend="ram").connect()
    dn.copy(f"{h5path}::/group/vol", ram, name="back", progress=False)
    back = ram["back"]
    assert back.dtype == data.dtype and back.chunks == (16, 8, 9) and back.dims == ("z", "y", "x")
    np.testing.assert_array_equal(back.fillvalue, fill)
    assert back.attrs["units"] == "K" and back.attrs["n"] == [1, 2]
    assert back.compression == "zstd" and back.shuffle and back.checksum
    np.testing.assert_array_equal(back[...], data)


def test_between_dosna_backends_with_new_chunks_and_codec(tmp_path):
    data = sample((50, 40))
    src = dn.Connection(f"copy-{uuid.uuid4().hex}", backend="ram").connect()
    src.create_dataset("a", data=data, chunks=(7, 40), checksum=False)
    dst = hdf5_store(tmp_path, engine="joblib", engine_kw={"njobs": 2})
    dn.copy(src["a"], dst, chunks=(16, 16), compression="gzip", compression_opts=1, progress=False)
    out = dst["a"]
    assert out.chunks == (16, 16) and out.compression == "gzip" and out.compression_opts == 1
    assert not out.checksum  # as the source: a new compression does not change that
    np.testing.assert_array_equal(out[...], data)


def test_unwritten_chunks_stay_unwritten(tmp_path):
    con = hdf5_store(tmp_path)
    ds = con.create_dataset("sparse", shape=(64, 64), dtype="f4", chunks=16, fillvalue=np.nan)
    ds[20:24, 40:50] = 1.0
    zpath = os.path.join(str(tmp_path), "sparse.zarr")
    dn.copy(ds, zpath, progress=False)
    dn.copy(zpath, con, name="again", progress=False)
    assert con["again"].stored_chunks() == ds.stored_chunks() == [(1, 2), (1, 3)]
    np.testing.assert_array_equal(con["again"][...], ds[...])


def test_existing_target_refused_before_writing_unless_overwrite(tmp_path):
    con = hdf5_store(tmp_path)
    con.create_dataset("a", data=np.arange(10.0), chunks=4)
    con.create_dataset("b", data=np.zeros(10), chunks=4)
    zpath = os.path.join(str(tmp_path), "a.zarr")
    dn.copy(con["a"], zpath, progress=False)
    h5path = os.path.join(str(tmp_path), "f.h5")
    dn.copy(con["a"], f"{h5path}::/a", progress=False)
    for target in (f"{os.path.join(str(tmp_path), 'store')}::b", zpath, f"{h5path}::/a"):
        with pytest.raises(DatasetExistsError):
            dn.copy(np.ones(10), target, progress=False)
    np.testing.assert_array_equal(con["b"][...], 0)
    np.testing.assert_array_equal(zarr.open_array(zpath, mode="r")[...], np.arange(10.0))
    for target in (f"{os.path.join(str(tmp_path), 'store')}::b", zpath, f"{h5path}::/a"):
        dn.copy(np.ones(10), target, overwrite=True, progress=False)
    np.testing.assert_array_equal(con["b"][...], 1)
    np.testing.assert_array_equal(zarr.open_array(zpath, mode="r")[...], 1)
    with h5py.File(h5path, "r") as f:
        assert list(f) == ["a"]
        np.testing.assert_array_equal(f["a"][...], 1)


class BreaksAfter(ArraySource):
    """A source that fails on its fifth chunk, as a dying disk would."""

    def __init__(self, array, chunks):
        super().__init__(array, chunks)
        self.reads = 0

    def read(self, region):
        self.reads += 1
        if self.reads == 5:
            raise OSError("read failed")
        return super().read(region)


def test_failed_copy_leaves_nothing_visible(tmp_path):
    data = sample((40, 40))
    con = hdf5_store(tmp_path)
    zpath = os.path.join(str(tmp_path), "x.zarr")
    new_h5 = os.path.join(str(tmp_path), "new.h5")
    old_h5 = os.path.join(str(tmp_path), "old.h5")
    with h5py.File(old_h5, "w") as f:
        f["keep"] = [1, 2, 3]
    for target in (con, zpath, f"{new_h5}::/x", f"{old_h5}::/x"):
        with pytest.raises(OSError, match="read failed"):
            dn.copy(BreaksAfter(data, (10, 10)), target, name="x" if target is con else None, progress=False)
    assert "x" not in con
    assert [f for _, _, files in os.walk(os.path.join(str(tmp_path), "store")) for f in files] == []
    assert not os.path.exists(zpath) and [p for p in os.listdir(tmp_path) if "zarr" in p] == []
    assert not os.path.exists(new_h5)
    with h5py.File(old_h5, "r") as f:
        assert list(f) == ["keep"]


def test_peak_memory_is_a_few_chunks(tmp_path):
    con = hdf5_store(tmp_path)
    chunk = (32, 32, 32)  # 128 KiB of f4
    ds = con.create_dataset("big", shape=(128, 128, 256), dtype="f4", chunks=chunk)  # 128 chunks, 16 MiB
    ds.apply(lambda c: np.ones_like(c))
    chunk_bytes = 32**3 * 4
    zpath = os.path.join(str(tmp_path), "big.zarr")
    h5path = os.path.join(str(tmp_path), "big.h5")
    # a small copy of each kind first: imports and first-use caches are not the copy's memory
    small = con.create_dataset("small", data=np.ones((8, 8)), chunks=4)
    warm_z, warm_h = os.path.join(str(tmp_path), "w.zarr"), os.path.join(str(tmp_path), "w.h5")
    for src, dst in ((small, warm_z), (warm_z, f"{warm_h}::/w"), (f"{warm_h}::/w", f"{con.backend.root}::w")):
        dn.copy(src, dst, threads=2, progress=False)
    for src, dst in (
        (ds, zpath),
        (zpath, f"{h5path}::/big"),
        (f"{h5path}::/big", f"{con.backend.root}::back"),
    ):
        tracemalloc.start()
        try:
            dn.copy(src, dst, threads=2, progress=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # threads x (read + padded write) plus the queue of 4 x threads read-ahead chunks
        assert peak < 16 * chunk_bytes, (src, dst, peak / chunk_bytes)
    np.testing.assert_array_equal(con["back"][::7, ::5, ::3], 1)


def test_progress_bar_counts_chunks(tmp_path, capsys):
    pytest.importorskip("tqdm")
    con = hdf5_store(tmp_path)
    con.create_dataset("p", data=np.arange(100.0), chunks=10)
    previous = dn.set_progress(True)  # bars are shown in terminals only, unless asked for
    try:
        dn.copy(con["p"], os.path.join(str(tmp_path), "p.zarr"), progress=True)
    finally:
        dn.set_progress(previous)
    assert "10/10" in capsys.readouterr().err


def test_bad_endpoints_are_refused_before_anything_is_written(tmp_path):
    con = hdf5_store(tmp_path)
    con.create_dataset("a", data=np.arange(4.0))
    store = con.backend.root
    assert split_endpoint("x.zarr::a/b") == ("zarr", "x.zarr", "a/b")
    assert split_endpoint("f.h5::/d") == ("h5", "f.h5", "/d")
    assert split_endpoint(f"{store}::a") == ("dosna", store, "a")
    with pytest.raises(ValueError, match="name the dataset"):
        dn.copy(store, os.path.join(str(tmp_path), "o.zarr"))
    with pytest.raises(ValueError, match="inside the HDF5 file"):
        dn.copy(f"{store}::a", os.path.join(str(tmp_path), "o.h5"))
    with pytest.raises(DatasetNotFoundError):
        dn.copy(f"{store}::missing", os.path.join(str(tmp_path), "o.zarr"))
    with pytest.raises(DatasetNotFoundError):
        dn.copy(os.path.join(str(tmp_path), "none.zarr"), con, name="z")
    with pytest.raises(ValueError, match="local directories or s3://"):
        dn.copy(f"{store}::a", "gs://bucket/o.zarr")
    for bad in ("../evil", "models.m.v1"):  # unsafe, and the model store's namespace
        with pytest.raises(dn.InvalidNameError):
            dn.copy(f"{store}::a", f"{store}::{bad}")
    assert sorted(os.listdir(tmp_path)) == ["store"] and con.datasets() == ["a"]


def test_cli_copy(tmp_path, capsys):
    con = hdf5_store(tmp_path)
    data = sample((30, 30))
    con.create_dataset("v", data=data, chunks=(8, 8))
    store = con.backend.root
    zpath = os.path.join(str(tmp_path), "v.zarr")
    assert cli.main(["copy", f"{store}::v", zpath, "-q", "--chunks", "16"]) == 0
    assert zarr.open_array(zpath, mode="r").chunks == (16, 16)
    assert cli.main(["copy", f"{store}::v", zpath, "-q"]) == 1
    assert "exists" in capsys.readouterr().err
    # the real command, as a user runs it: a store without ::NAME keeps the source's name
    other = os.path.join(str(tmp_path), "other")
    os.mkdir(other)
    proc = subprocess.run(
        [sys.executable, "-m", "dosna", "copy", zpath, other, "--compression", "zstd", "--engine", "joblib"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"to {other}" in proc.stdout
    with dn.Connection("other", backend="hdf5", directory=str(tmp_path)) as c:
        assert c["v"].compression == "zstd"
        np.testing.assert_array_equal(c["v"][...], data)


def test_mpi_engine_refuses_hdf5_file_targets(tmp_path):
    class TwoRanks(dn.registry.get_engine_class("cpu")):
        size = 2

    with pytest.raises(DosnaError, match="one process"):
        dn.copy(np.ones(4), os.path.join(str(tmp_path), "f.h5::/x"), engine=TwoRanks(), progress=False)


@requires_mpiexec
def test_copy_under_mpiexec_splits_chunks_between_ranks(tmp_path):
    script = f"""
import sys, numpy as np, dosna as dn
con = dn.Connection("src", backend="hdf5", engine="mpi", directory={str(tmp_path)!r}).connect()
data = np.arange(40 * 30, dtype="f4").reshape(40, 30)
ds = con.create_dataset("a", data=data, chunks=(8, 8))
dn.copy(ds, {os.path.join(str(tmp_path), "a.zarr")!r}, progress=False)
dn.copy({os.path.join(str(tmp_path), "a.zarr")!r}, con, name="b", progress=False)
assert np.array_equal(con["b"][...], data)
sys.stdout.write(f"copied-on-rank-{{con.mpi_rank}}\\n")
sys.stdout.flush()
"""
    result = python_mpi(2, script, timeout=120)
    assert result.returncode == 0, str(result)
    for rank in (0, 1):
        assert f"copied-on-rank-{rank}" in result.output, str(result)


# -- zarr stores on S3 (the dev cluster's radosgw) --------------------------------------------
S3_ENDPOINT = os.environ.get("DOSNA_S3_ENDPOINT")
needs_s3 = pytest.mark.skipif(
    not (S3_ENDPOINT and os.environ.get("DOSNA_S3_BUCKET")), reason="no S3 endpoint (DOSNA_S3_ENDPOINT unset)"
)


@pytest.fixture
def s3_zarr():
    """``(url, plain zarr store)`` of a fresh ``.zarr`` prefix in the test bucket, deleted after the test."""
    obstore = pytest.importorskip("obstore")
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    bucket = os.environ["DOSNA_S3_BUCKET"]
    prefix = f"copy-{uuid.uuid4().hex[:12]}/v.zarr"
    raw = S3Store(
        bucket,
        prefix=prefix,
        endpoint=S3_ENDPOINT,
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    yield f"s3://{bucket}/{prefix}?endpoint_url={S3_ENDPOINT}", raw, ObjectStore(raw, read_only=True)
    keys = [m["path"] for batch in obstore.list(raw) for m in batch]
    if keys:
        obstore.delete(raw, keys)


def s3_keys(raw):
    import obstore

    return sorted(m["path"] for batch in obstore.list(raw) for m in batch)


@pytest.mark.s3
@needs_s3
def test_zarr_on_s3_round_trip_keeps_everything(tmp_path, s3_zarr):
    url, raw, plain = s3_zarr
    data = sample((40, 30))
    con = hdf5_store(tmp_path)
    ds = con.create_dataset(
        "vol", data=data, chunks=(16, 16), fillvalue=np.nan, attrs={"units": "K"}, compression="gzip"
    )
    ds.dims = ("y", "x")
    assert split_endpoint(f"{url}::g/vol") == ("zarr", url, "g/vol")
    assert split_endpoint("s3://bucket/prefix")[0] == "dosna"

    assert dn.copy(f"{con.backend.root}::vol", f"{url}::g/vol", progress=False) == f"{url}::g/vol"
    z = zarr.open_array(store=plain, path="g/vol", mode="r")
    assert z.dtype == data.dtype and z.chunks == (16, 16) and np.isnan(z.fill_value)
    assert tuple(z.metadata.dimension_names) == ("y", "x") and z.attrs.asdict() == {"units": "K"}
    assert [type(c).__name__ for c in z.compressors] == ["BloscCodec", "Crc32cCodec"]
    np.testing.assert_array_equal(z[...], data)

    ram = dn.Connection(f"copy-{uuid.uuid4().hex}", backend="ram").connect()
    dn.copy(f"{url}::g/vol", ram, name="back", progress=False)
    back = ram["back"]
    assert back.dims == ("y", "x") and back.attrs["units"] == "K" and back.chunks == (16, 16)
    assert back.compression == "gzip" and back.shuffle and back.checksum
    np.testing.assert_array_equal(back[...], data)

    with pytest.raises(DatasetExistsError):
        dn.copy(np.ones((4, 4)), f"{url}::g/vol", progress=False)
    dn.copy(np.ones((4, 4)), f"{url}::g/vol", overwrite=True, progress=False)
    np.testing.assert_array_equal(zarr.open_array(store=plain, path="g/vol", mode="r")[...], 1)
    assert s3_keys(raw) == ["g/vol/c/0/0", "g/vol/zarr.json"]  # nothing left of the old array


@pytest.mark.s3
@needs_s3
def test_zarr_on_s3_target_is_invisible_until_complete(s3_zarr):
    url, raw, _ = s3_zarr
    seen = []

    class Watched(BreaksAfter):
        def read(self, region):
            if self.reads == 3:  # chunks are being written: no array to be found yet
                seen.append(s3_keys(raw))
            return super().read(region)

    with pytest.raises(OSError, match="read failed"):
        dn.copy(Watched(sample((40, 40)), (10, 10)), url, threads=1, progress=False)
    assert seen and seen[0] and "zarr.json" not in seen[0]  # chunks were there, the metadata not
    assert s3_keys(raw) == []
    ram = dn.Connection(f"copy-{uuid.uuid4().hex}", backend="ram").connect()
    with pytest.raises(DatasetNotFoundError):
        dn.copy(url, ram)
    dn.copy(np.arange(6), url, progress=False)
    dn.copy(url, ram, progress=False)  # named after the store, not its options
    assert ram.datasets() == ["v"]
