"""dask: Dataset.to_dask, da.store into datasets with blocks that split chunks, and the aligned store."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import dosna as dn

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from dosna.interop.dask import aligned_chunks, store  # noqa: E402


@pytest.fixture(params=["ram", "hdf5"])
def con(request, tmp_path):
    options = {"directory": str(tmp_path)} if request.param == "hdf5" else {}
    name = f"dask-{uuid.uuid4().hex}"
    with dn.Connection(name, backend=request.param, engine="cpu", **options) as c:
        yield c


def test_to_dask_has_one_block_per_chunk_and_reads_lazily(con):
    data = np.arange(30 * 20, dtype="f4").reshape(30, 20)
    ds = con.create_dataset("a", data=data, chunks=(8, 6))
    x = ds.to_dask()
    assert x.chunks == ((8, 8, 8, 6), (6, 6, 6, 2))
    assert x.dtype == ds.dtype
    ds[3:5, :] = -1  # written after to_dask: the array reads when computed, not before
    data[3:5, :] = -1
    np.testing.assert_array_equal(x.compute(), data)
    np.testing.assert_array_equal(x[10:20:3, 5].compute(), data[10:20:3, 5])
    assert ds.to_dask(chunks=(15, 20)).chunks == ((15, 15), (20,))


@pytest.mark.parametrize("rounds", range(3))
def test_da_store_with_blocks_that_split_chunks_loses_nothing(con, rounds):
    # 3 x 3 elements per block, 16 x 16 chunks: up to 36 blocks write parts of one chunk at once
    rng = np.random.default_rng(rounds)
    data = rng.integers(1, 1000, size=(64, 64)).astype("i4")
    ds = con.create_dataset("s", shape=data.shape, dtype="i4", chunks=(16, 16))
    x = da.from_array(data, chunks=(3, 3))
    assert not aligned_chunks(x.chunks, ds.chunk_size)
    with dask.config.set(scheduler="threads", num_workers=8):
        da.store(x, ds, lock=False)
    np.testing.assert_array_equal(ds[...], data)


def test_store_rechunks_to_whole_chunks(con):
    data = np.random.default_rng(1).random((40, 30))
    ds = con.create_dataset("t", shape=data.shape, dtype="f8", chunks=(16, 16))
    x = da.from_array(data, chunks=(7, 11))
    with dask.config.set(scheduler="threads"):
        store(x, ds)
    np.testing.assert_array_equal(ds[...], data)
    assert aligned_chunks(((16, 16, 8), (32,)), (16, 16))
    assert not aligned_chunks(((10, 30),), (16,))


def test_store_refuses_another_shape_before_writing(con):
    ds = con.create_dataset("u", shape=(10, 10), dtype="f8", chunks=5)
    with pytest.raises(ValueError, match="shape"):
        store(da.ones((10, 11)), ds)
    assert ds.stored_chunks() == []
