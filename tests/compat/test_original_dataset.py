"""Connections and datasets driven as the original DosNa's tests, README and examples drove them.

Every test runs on ram and hdf5 with the cpu and joblib ('jl') engines, with the
selection made by ``dn.use`` and the connection built from a config dict.
"""

from __future__ import annotations

import numpy as np
import pytest

import dosna as dn
from dosna.backends.base import DatasetNotFoundError
from dosna.util import Timer

DATA_SIZE = (100, 100, 100)
DATA_CHUNK_SIZE = (32, 32, 32)


@pytest.fixture
def handle(original_config):
    backend, engine, config = original_config
    dn.use(backend=backend, engine=engine)
    handle = dn.Connection(**config)
    handle.connect()
    yield handle
    handle.disconnect()


@pytest.fixture
def data():
    return np.random.default_rng(0).integers(-10000, 10000, DATA_SIZE, endpoint=True)


@pytest.fixture
def dataset(handle, data):
    ds = handle.create_dataset("NotADataset", data=data, chunk_size=DATA_CHUNK_SIZE)
    yield ds
    if handle.has_dataset("NotADataset"):
        handle.del_dataset("NotADataset")


def test_connect_and_disconnect(original_config):
    backend, engine, config = original_config
    dn.use(backend=backend, engine=engine)
    handle = dn.Connection(**config)
    assert handle is not None and not handle.connected
    handle.connect()
    assert handle.connected
    handle.disconnect()
    assert not handle.connected


def test_existing(handle, dataset):
    assert handle.has_dataset("NotADataset")
    assert not handle.has_dataset("NonExistantDataset")


def test_chunk_grid(dataset):
    assert list(dataset.chunk_grid) == [4, 4, 4]


@pytest.mark.parametrize(
    "key",
    [
        (50, slice(0, 32), slice(0, 32)),
        (50, slice(0, 32), slice(0, 33)),
        (slice(0, 50), slice(0, 32), slice(0, 33)),
        (slice(None), slice(0, 66), slice(50, 96)),
        slice(None),
        Ellipsis,
    ],
)
def test_slice_content(dataset, data, key):
    np.testing.assert_array_equal(dataset[key], data[key])


def test_clear(dataset):
    dataset.clear()
    np.testing.assert_array_equal(dataset[...], dataset.fillvalue)


def test_map(handle, dataset):
    mapped = dataset.map(lambda x: x + 1, "NotADataset2")
    np.testing.assert_array_equal(mapped[...], dataset[...] + 1)
    handle.del_dataset(mapped.name)


def test_apply(dataset, data):
    dataset.apply(lambda x: x + 1)
    np.testing.assert_array_equal(dataset[...], data + 1)


def test_sequential_set(dataset, data):
    parts = 3
    for part in range(parts):
        start = part * DATA_SIZE[0] // parts
        stop = DATA_SIZE[0] if part == parts - 1 else (part + 1) * DATA_SIZE[0] // parts
        dataset[start:stop] = data[start:stop] * 3 + 5
    np.testing.assert_array_equal(dataset[...], data * 3 + 5)


def test_missing_dataset_raises_the_originals_error(handle):
    with pytest.raises(DatasetNotFoundError):
        handle.del_dataset("ThisDoesNotExist")
    with pytest.raises(DatasetNotFoundError):
        handle.get_dataset("ThisDoesNotExist")


def test_readme_tutorial(original_config):
    backend, engine, config = original_config
    dn.use(backend=backend, engine=engine)
    options = {k: v for k, v in config.items() if k != "name"}
    data = np.random.randn(100, 100, 100)

    con = dn.Connection("dosna-tutorial", **options)
    con.connect()
    ds = con.create_dataset("data", data=data, chunk_size=(32, 32, 32))
    np.testing.assert_array_equal(ds[0, 0, :10], data[0, 0, :10])
    assert np.allclose(ds[...], data)
    con.disconnect()

    with dn.connection("dosna-tutorial", **options) as con:
        ds = con["data"]
        np.testing.assert_array_equal(ds[0, 0, :10], data[0, 0, :10])
        ds[36:80, 89:, :56] = data[36:80, 89:, :56] * 2
        assert np.allclose(ds[36:80, 89:, :56], data[36:80, 89:, :56] * 2)
        expected = data.copy()
        expected[36:80, 89:, :56] *= 2
        np.testing.assert_array_equal(ds[...], expected)  # and nothing else changed
        ds.delete()


def _chunk_blocks(ds):
    """Chunk-aligned blocks, visited as the original's convolution examples did."""
    for z in range(ds.chunk_grid[0]):
        for y in range(ds.chunk_grid[1]):
            for x in range(ds.chunk_grid[2]):
                yield tuple(
                    slice(i * c, min((i + 1) * c, n)) for i, c, n in zip((z, y, x), ds.chunk_size, ds.shape)
                )


def test_sequential_convolution_example(original_config, capsys):
    """The flow of examples/sequential_convolution.py: clone, fill block by block, time, delete."""
    backend, engine, config = original_config
    dn.use(backend=backend, engine=engine)
    rng = np.random.default_rng(1)
    source = rng.random((40, 40, 40)).astype(np.float32)

    def smooth(block):  # any per-block function; the example used scipy's gaussian_filter
        return block * 0.5 + block.mean()

    with dn.Connection(**config) as connection:
        dataset = connection.create_dataset("data", data=source, chunk_size=(16, 16, 16))
        out = dataset.clone("gaussian_3d")
        assert out.shape == dataset.shape and out.chunk_size == dataset.chunk_size
        np.testing.assert_array_equal(out[...], 0)  # clone() copies the layout, not the data
        timer = Timer("Separable 3D convolution")
        with timer:
            for block in _chunk_blocks(dataset):
                out[block] = smooth(dataset[block])
        expected = np.empty_like(source)
        for block in _chunk_blocks(dataset):
            expected[block] = smooth(source[block])
        np.testing.assert_allclose(out[...], expected, rtol=1e-6)
        assert timer.time > 0 and "Separable 3D convolution -- Elapsed" in capsys.readouterr().out

        for axis in range(3):  # the three 1-D passes, one chunk-thick slab at a time
            slab_out = dataset.clone(f"gaussian_{'zyx'[axis]}")
            expected = np.empty_like(source)
            for i in range(dataset.chunk_grid[axis]):
                c = dataset.chunk_size[axis]
                key = (slice(None),) * axis + (slice(i * c, min((i + 1) * c, dataset.shape[axis])),)
                slab_out[key] = np.cumsum(dataset[key], axis=axis)
                expected[key] = np.cumsum(source[key], axis=axis)
            np.testing.assert_allclose(slab_out[...], expected, rtol=1e-5)
            slab_out.delete()

        out.delete()
        dataset.delete()
        assert list(connection) == []


def test_clone_then_load(handle, dataset, data):
    copy = dataset.clone("NotADataset_clone")
    copy.load(dataset[...])
    np.testing.assert_array_equal(copy[...], data)
    copy.delete()
    assert not handle.has_dataset("NotADataset_clone")
