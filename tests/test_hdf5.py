"""hdf5 backend specifics: file layout, corruption, foreign files, caching, crashes, memory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

import dosna as dn
from dosna.errors import ChunkCorruptError, MetadataCorruptError


def chunk_file(ds, idx):
    """The file that holds chunk ``idx`` of ``ds``."""
    return Path(ds.backend.chunk_location(ds.meta, idx))


@pytest.fixture
def con(tmp_path):
    with dn.Connection("store", backend="hdf5", directory=tmp_path) as con:
        yield con


def test_layout_is_plain_hdf5_and_json(con, tmp_path):
    data = np.arange(30, dtype="i2").reshape(5, 6)
    con.create_dataset("grid", data=data, chunk_size=(2, 4), fillvalue=-1, attrs={"u": "K"})
    root = tmp_path / "store" / "grid"
    meta = json.loads((root / ".dosna.json").read_text())
    assert meta["shape"] == [5, 6] and meta["chunk_size"] == [2, 4] and meta["dtype"] == "<i2"
    assert meta["fillvalue"] == -1 and meta["attrs"] == {"u": "K"} and meta["dosna_format"] == 2
    assert meta["codec"] == {
        "compression": None,
        "level": None,
        "shuffle": False,
        "checksum": "crc32c",
        "checksum_block": 16384,
    }
    assert re.fullmatch("[0-9a-f]{32}", meta["uid"])
    assert sorted(p.name for p in root.iterdir()) == sorted([".dosna.json", meta["uid"]])
    files = sorted(p.name for p in (root / meta["uid"]).iterdir())
    assert files == sorted(f"{i}.{j}.h5" for i in range(3) for j in range(2))
    with h5py.File(
        root / meta["uid"] / "2.1.h5", "r"
    ) as f:  # an edge chunk: full size, padded with the fill value
        assert f["data"].shape == (2, 4) and f["data"].dtype == np.dtype("i2") and f.userblock_size == 512
        np.testing.assert_array_equal(f["data"][...], [[28, 29, -1, -1], [-1, -1, -1, -1]])


@pytest.mark.parametrize("compression", ["zstd", "lz4", "blosc", "gzip"])
def test_compressed_chunk_files_are_hdf5_with_filters(con, tmp_path, compression):
    import hdf5plugin  # noqa: F401  (h5py needs it for zstd, lz4 and blosc)

    data = np.linspace(0, 1, 400 * 300, dtype="f4").reshape(400, 300)
    ds = con.create_dataset("z", data=data, chunks=(160, 160), compression=compression)
    assert ds.compression == compression and ds.shuffle and ds.checksum
    with h5py.File(chunk_file(ds, (1, 1)), "r") as f:
        assert f["data"].chunks == (160, 160) and f["data"].shuffle == (compression != "blosc")
        np.testing.assert_array_equal(f["data"][...][:, :140], data[160:320, 160:300])
    np.testing.assert_array_equal(ds[...], data)
    assert ds.nbytes_stored < data.nbytes


def test_truncated_or_garbage_chunk_raises_with_path(con, tmp_path):
    ds = con.create_dataset("c", data=np.ones((8, 8)), chunk_size=4)
    path = chunk_file(ds, (1, 0))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 10])
    with pytest.raises(ChunkCorruptError) as err:
        ds[4:, :4]
    assert str(path) in str(err.value) and "(1, 0)" in str(err.value) and "'c'" in str(err.value)
    path.write_bytes(b"\0" * len(raw))
    with pytest.raises(ChunkCorruptError):
        ds[...]
    path.write_bytes(b"")
    with pytest.raises(ChunkCorruptError):
        ds[5, 1]
    np.testing.assert_array_equal(ds[:4], np.ones((4, 8)))  # the other chunks still read
    ds[4:8, 0:4] = 2  # a whole-chunk write replaces the damaged file without reading it
    np.testing.assert_array_equal(ds[4:, :4], np.full((4, 4), 2.0))


def test_wrong_shape_chunk_file_is_corrupt(con, tmp_path):
    ds = con.create_dataset("s", shape=(4, 4), dtype="f4", chunk_size=2)
    with h5py.File(chunk_file(ds, (0, 0)), "w") as f:
        f["data"] = np.zeros((3, 2), "f4")
    with pytest.raises(ChunkCorruptError, match="shape"):
        ds[0, 0]


def test_corrupt_metadata_raises_with_path(con, tmp_path):
    con.create_dataset("m", shape=(2,))
    path = tmp_path / "store" / "m" / ".dosna.json"
    path.write_text("{not json")
    with pytest.raises(MetadataCorruptError) as err:
        con["m"]
    assert str(path) in str(err.value)
    path.write_text(json.dumps({"dosna_format": 99}))
    with pytest.raises(MetadataCorruptError, match="format 99"):
        con["m"]


def test_foreign_chunk_files_are_read(con, tmp_path):
    ds = con.create_dataset("f", shape=(4, 6), dtype="f8", chunk_size=(4, 3), checksum=False)
    a, b = np.arange(12.0).reshape(4, 3), -np.arange(12.0).reshape(4, 3)
    with h5py.File(chunk_file(ds, (0, 0)), "w") as f:
        f.create_dataset("data", data=a, compression="gzip", chunks=(2, 3))
    with h5py.File(chunk_file(ds, (0, 1)), "w") as f:
        f.create_dataset("data", data=b.astype(">f8"))  # contiguous, other byte order
    np.testing.assert_array_equal(ds[...], np.hstack([a, b]))
    np.testing.assert_array_equal(ds[1:3, 2:5], np.hstack([a, b])[1:3, 2:5])
    checked = con.create_dataset("g", shape=(4, 3), dtype="f8", chunk_size=(4, 3))
    with h5py.File(chunk_file(checked, (0, 0)), "w") as f:
        f.create_dataset("data", data=a)
    with pytest.raises(ChunkCorruptError, match="checksums"):  # unverifiable: refused
        checked[...]


def test_cache_follows_writes_and_deletes_from_other_connections(tmp_path):
    a = dn.connection("shared", backend="hdf5", directory=tmp_path)
    b = dn.connection("shared", backend="hdf5", directory=tmp_path)
    ds_a = a.create_dataset("x", data=np.zeros((4, 4)), chunk_size=2)
    ds_b = b["x"]
    assert ds_a[0, 0] == 0  # now mapped and cached by a
    ds_b[0:2, 0:2] = 7
    assert ds_a[0, 0] == 7
    ds_b.del_chunk((0, 0))
    assert ds_a[0, 0] == 0 and not ds_a.has_chunk((0, 0))
    script = f"""
import dosna as dn
con = dn.connection('shared', backend='hdf5', directory={str(tmp_path)!r})
con['x'][0:2, 0:2] = 5
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert ds_a[1, 1] == 5


def test_no_temporary_files_left(con, tmp_path):
    ds = con.create_dataset("t", shape=(10, 10), chunk_size=3)
    for i in range(10):
        ds[i] = i
    names = os.listdir(chunk_file(ds, (0, 0)).parent)
    assert not [n for n in names if n.endswith(".tmp")]
    assert len(ds.stored_chunks()) == 16


def test_create_false_needs_existing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        dn.Connection("absent", backend="hdf5", directory=tmp_path, create=False).connect()


def test_sigkill_during_writes_never_tears_a_chunk(tmp_path):
    """A writer killed at a random moment leaves every chunk old or new, never mixed."""
    shape, chunks = (64, 64, 64), (32, 32, 32)
    with dn.connection("crash", backend="hdf5", directory=tmp_path) as con:
        con.create_dataset("d", shape=shape, dtype="i4", chunk_size=chunks)
    writer = textwrap.dedent(f"""
        import numpy as np, dosna as dn, sys
        con = dn.connection('crash', backend='hdf5', directory={str(tmp_path)!r})
        ds = con['d']
        print('ready', flush=True)
        value = 0
        while True:
            value += 1
            ds[...] = np.full({shape}, value, 'i4')
    """)
    for delay in (0.15, 0.3, 0.45):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with dn.connection("crash", backend="hdf5", directory=tmp_path) as con:
            ds = con["d"]
            for idx in ds.chunk_indices():
                block = ds.get_chunk(idx).get_data()
                assert (block == block.flat[0]).all(), f"chunk {idx} is torn"
            assert len(np.unique(ds[...])) <= 2  # old and new values only


def test_load_from_h5py_streams_with_bounded_memory(con, tmp_path):
    src_path = tmp_path / "big.h5"
    shape, chunk = (256, 256, 128), (32, 32, 32)  # 32 MiB source, 128 KiB chunks
    with h5py.File(src_path, "w") as f:
        d = f.create_dataset("big", shape=shape, dtype="f4", chunks=chunk)
        for i in range(0, shape[0], 32):
            d[i : i + 32] = np.random.default_rng(i).standard_normal((32, *shape[1:]), dtype="f4")
    with h5py.File(src_path, "r") as f:
        src = f["big"]
        ds = con.create_dataset("loaded", shape=shape, dtype="f4", chunk_size=chunk)
        tracemalloc.start()
        ds.load(src)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 8 * 128 * 1024, f"peak {peak} bytes for 128 KiB chunks"  # a few chunks
        for i in range(0, shape[0], 64):
            np.testing.assert_array_equal(ds[i : i + 64], src[i : i + 64])


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_kept_directory_descriptors_are_bounded_and_closed_with_their_dataset(tmp_path):
    con = dn.Connection("fds", backend="hdf5", directory=str(tmp_path)).connect()
    before = _open_fds()
    datasets = [con.create_dataset(f"d{i}", data=np.full((4, 4), i), chunk_size=2) for i in range(80)]
    for ds in datasets:  # whole chunks: read, not kept mapped
        np.testing.assert_array_equal(ds[...], np.full((4, 4), int(ds.name[1:])))
    kept = _open_fds() - before
    assert 0 < kept <= 64  # at most one per chunk directory, and at most 64 of them
    for ds in datasets:
        con.del_dataset(ds.name)
    assert _open_fds() == before
    moved = con.create_dataset("m", data=np.ones((4, 4)), chunk_size=2)
    assert moved[...].all()
    area = tmp_path / "fds" / "m"
    os.rename(area, tmp_path / "elsewhere")  # the dataset leaves the store: its chunks are not read there
    os.mkdir(area)
    with pytest.raises(dn.DatasetNotFoundError):
        moved[...]
    assert con.backend.read_chunk(moved.meta, (0, 0)) is None
    con.disconnect()
    assert _open_fds() == before
