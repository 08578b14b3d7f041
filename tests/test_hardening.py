"""Stores that are damaged or hostile, input that is refused, and threads writing one chunk.

Hostile hdf5 stores are built for real (h5py external storage, external links,
virtual datasets, symbolic links, FIFOs, directories); every access to the
directory outside the store is recorded with inotify, so "nothing outside was
read or written" is observed, not assumed.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import dosna as dn
from dosna.backends.base import parse_chunk_key
from dosna.errors import ChunkCorruptError, DatasetExistsError, MetadataCorruptError
from dosna.io.arrays import parse_meta
from dosna.metadata import MAX_NDIM, DatasetMeta

EXAMPLES = int(os.environ.get("DOSNA_HYPOTHESIS_EXAMPLES", "300"))


# -- helpers ---------------------------------------------------------------------------
class Watch:
    """Every open, read, write, create, delete or rename inside one directory (inotify)."""

    _MASK = 0x00000FFF  # IN_ALL_EVENTS
    CLOSED_DIRECTORY = 0x40000010  # IN_ISDIR | IN_CLOSE_NOWRITE

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), self._MASK) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def events(self) -> list[tuple[str, int]]:
        out = []
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            pos = 0
            while pos < len(buf):
                _, mask, _, length = struct.unpack_from("iIII", buf, pos)
                out.append((buf[pos + 16 : pos + 16 + length].rstrip(b"\0").decode(), mask))
                pos += 16 + length

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def con(tmp_path):
    with dn.Connection("store", backend="hdf5", directory=tmp_path) as con:
        yield con


@pytest.fixture
def outside(tmp_path):
    """A directory beside the store, holding a secret, watched for any access."""
    where = tmp_path / "outside"
    where.mkdir()
    np.full(4, 42.0).tofile(where / "secret.bin")
    with h5py.File(where / "other.h5", "w") as f:
        f["data"] = np.full((2, 2), 42.0)
    watch = Watch(where)
    yield where, watch
    watch.close()


@pytest.fixture(params=["ram", "hdf5"])
def any_con(request, tmp_path):
    options = {"directory": tmp_path} if request.param == "hdf5" else {}
    name = f"harden-{os.getpid()}-{time.monotonic_ns()}"
    with dn.Connection(name, backend=request.param, **options) as con:
        yield con


def at_once(func: Callable[[], Any], release: Callable[[], None], timeout: float = 20) -> Any:
    """``func()``'s result, raising what it raises; fails the test if it does not return within ``timeout``."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = func()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        release()
        thread.join(timeout)
        pytest.fail(f"did not return within {timeout} s (hangs)")
    if "error" in result:
        raise result["error"]
    return result["value"]


def chunk_dir(dataset_dir: Path) -> Path:
    """Where a dataset's chunk files are: under its uid when its metadata has one."""
    uid = json.loads((dataset_dir / ".dosna.json").read_text()).get("uid")
    return dataset_dir / uid if uid else dataset_dir


def chunk_file(tmp_path: Path, dataset: str, name: str = "0.0.h5") -> Path:
    return chunk_dir(tmp_path / "store" / dataset) / name


def small(con, checksum: bool, name: str = "d") -> Any:
    ds = con.create_dataset(name, shape=(4, 4), dtype="f8", chunk_size=(2, 2), checksum=checksum)
    ds[...] = np.arange(16.0).reshape(4, 4)
    return ds


def every_read(ds) -> list[Callable[[], Any]]:
    """Whole-chunk, small partial and view reads of chunk (0, 0), and a whole-array read."""
    return [lambda: ds[0:2, 0:2], lambda: ds[0, 1], lambda: ds.chunk_view((0, 0)), lambda: ds[...]]


# -- corrupt metadata ----------------------------------------------------------------------
def plant_meta(con, dataset: str, changes: dict[str, Any]) -> str:
    """Store a copy of ``name``'s metadata with ``changes`` (raw JSON text for values)."""
    doc = json.loads(con.backend.read_meta(dataset))
    text = json.dumps({k: v for k, v in doc.items() if k not in changes})[:-1]
    text += "".join(f', "{k}": {v}' for k, v in changes.items() if v is not None) + "}"
    con.backend.update_meta(dataset, text.encode())
    return text


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [
        ("u1", "[1]"),
        ("u1", "300"),
        ("u8", str(2**70)),
        ("i4", '"Infinity"'),
        ("i4", '"NaN"'),
        ("i4", "0.5"),
        ("f8", "[1, 2]"),
        ("c16", "[1]"),
        ("c16", '[1, "x"]'),
        ("f8", '"zero"'),
        ("f8", "null"),
        ("f8", '{"a": 1}'),
        ("b1", "2"),
        ("f4", "1e300"),
    ],
)
def test_fill_value_of_the_wrong_kind_is_metadata_corrupt(any_con, dtype, fill):
    any_con.create_dataset("m", shape=(4,), dtype=dtype, chunk_size=2)
    plant_meta(any_con, "m", {"fillvalue": fill})
    with pytest.raises(MetadataCorruptError) as err:
        any_con["m"]
    assert err.value.path == any_con.backend.meta_location("m") and err.value.path in str(err.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"attrs": "[" * 100_000 + "]" * 100_000},
        {"attrs": '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"},
        {"shape": json.dumps([1] * (MAX_NDIM + 1)), "chunk_size": json.dumps([1] * (MAX_NDIM + 1))},
        {"shape": json.dumps([2**40, 2**40]), "chunk_size": "[1, 1]"},
        {"chunk_size": json.dumps([2**62, 2**62])},
        {"dtype": '"<f16"'},
        {"dtype": '"|O"'},
        {"dtype": '[["a", "<f8"]]'},
        {"dosna_format": "2.0"},
        {"dosna_format": "true"},
        {"attrs": "[1, 2]"},
        {"codec": None},
        {"fillvalue": None},
        {"shape": '"44"'},
        {"name": "7"},
    ],
    ids=lambda c: ",".join(c)[:40],
)
def test_malformed_metadata_is_metadata_corrupt(any_con, changes):
    any_con.create_dataset("m", shape=(4, 4), dtype="f8", chunk_size=2)
    plant_meta(any_con, "m", changes)
    with pytest.raises(MetadataCorruptError):
        any_con["m"]


def test_document_nested_too_deeply_is_metadata_corrupt(any_con):
    any_con.create_dataset("m", shape=(4,), chunk_size=2)
    any_con.backend.update_meta("m", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(MetadataCorruptError):
        any_con["m"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
# what broke parsers before: wrong kinds, out of range, nested, empty
_nasty = st.sampled_from([[], [1], [1, 2, 3], 300, 2**64, 2**70, -1, 0.5, "Infinity", "NaN", "", {}, [[1]]])
_KEYS = ("dosna_format", "name", "shape", "dtype", "chunk_size", "fillvalue", "attrs", "codec")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from(["u1", "i2", "<u8", "f2", ">f4", "f8", "c8", "c16", "?"]),
    changes=st.dictionaries(st.sampled_from(_KEYS), _nasty | _json | st.just("drop"), max_size=3),
)
@example(dtype="u1", changes={"fillvalue": []})
@example(dtype="u1", changes={"fillvalue": 300})
@example(dtype="i2", changes={"fillvalue": "Infinity", "attrs": [1]})
def test_any_damage_to_metadata_is_metadata_corrupt_or_a_valid_dataset(dtype, changes):
    backend = dn.Connection("fuzz", backend="ram").backend
    doc = json.loads(DatasetMeta.create("m", (5, 3), dtype, None, (2, 2)).to_json())
    for key, value in changes.items():
        if value == "drop":
            doc.pop(key, None)
        else:
            doc[key] = value
    try:
        meta = parse_meta(backend, "m", json.dumps(doc).encode())
    except MetadataCorruptError:
        return
    # what parses is a dataset dosna can store and read back as it is
    assert DatasetMeta.from_json(meta.to_json()).to_json() == meta.to_json()


def test_metadata_file_that_is_a_directory_or_fifo_is_metadata_corrupt(con, tmp_path):
    for name, plant in (("dir", os.mkdir), ("fifo", os.mkfifo)):
        con.create_dataset(name, shape=(4,), chunk_size=2)
        meta = tmp_path / "store" / name / ".dosna.json"
        meta.unlink()
        plant(meta)
        release = (
            (lambda m=meta: os.close(os.open(m, os.O_WRONLY | os.O_NONBLOCK))) if name == "fifo" else None
        )
        with pytest.raises(MetadataCorruptError) as err:
            at_once(lambda n=name: con[n], release or (lambda: None))
        assert str(meta) in str(err.value)
        assert name in con.datasets()  # listed: opening it says what is wrong
        del con[name]  # and it can be removed
        assert not (tmp_path / "store" / name).exists()


# -- corrupt chunks ---------------------------------------------------------------------------
@pytest.mark.parametrize("checksum", [False, True])
def test_chunk_that_is_a_fifo_raises_at_once(con, tmp_path, checksum):
    ds = small(con, checksum)
    path = chunk_file(tmp_path, "d")
    path.unlink()
    os.mkfifo(path)

    def release() -> None:  # lets a reader blocked in open() go
        for _ in range(8):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    for read in every_read(ds):
        with pytest.raises(ChunkCorruptError, match="FIFO") as err:
            at_once(read, release)
        assert str(path) in str(err.value)
    with pytest.raises(ChunkCorruptError):
        at_once(lambda: ds.__setitem__((0, 0), 5.0), release)  # a partial write reads first
    ds.clear()  # a FIFO at a chunk's name is removed like a chunk
    assert not path.exists()


@pytest.mark.parametrize("checksum", [False, True])
def test_chunk_that_is_a_directory_raises(con, tmp_path, checksum):
    ds = small(con, checksum)
    path = chunk_file(tmp_path, "d")
    path.unlink()
    path.mkdir()
    (path / "inside").write_bytes(b"x")
    for read in every_read(ds):
        with pytest.raises(ChunkCorruptError, match="directory"):
            read()
    with pytest.raises(ChunkCorruptError, match="directory"):
        ds[0:2, 0:2] = 1.0  # a whole-chunk write does not replace a directory
    np.testing.assert_array_equal(ds[2:, 2:], [[10, 11], [14, 15]])
    with pytest.raises(ChunkCorruptError, match="directory"):
        ds.clear()  # the other chunks are removed; a directory dosna did not make is not
    assert (path / "inside").read_bytes() == b"x"


def write_foreign(path: Path, build: Callable[[h5py.File], None]) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        build(f)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda f: f.create_group("data"), id="group"),
        pytest.param(lambda f: f.create_dataset("data", data=np.ones((2, 2), "f4")), id="f4"),
        pytest.param(lambda f: f.create_dataset("data", data=np.ones((2, 2), "i8")), id="i8"),
        pytest.param(
            lambda f: f.create_dataset("data", data=np.ones((2, 2), [("x", "<f8")])), id="compound-1-field"
        ),
        pytest.param(
            lambda f: f.create_dataset("data", data=np.ones((2, 2), [("x", "<f4"), ("y", "<f4")])),
            id="compound",
        ),
        pytest.param(
            lambda f: f.create_dataset("data", data=np.ones((2, 2), "f4"), chunks=(1, 2), compression="gzip"),
            id="f4-gzip",
        ),
        pytest.param(lambda f: f.create_dataset("data", data=np.ones((2, 2, 1))), id="shape"),
        pytest.param(lambda f: f.create_dataset("other", data=np.ones((2, 2))), id="no-data"),
    ],
)
def test_foreign_chunk_of_another_type_or_kind_raises(con, tmp_path, build):
    ds = small(con, checksum=False)
    write_foreign(chunk_file(tmp_path, "d"), build)
    for read in every_read(ds):
        with pytest.raises(ChunkCorruptError):
            read()
    np.testing.assert_array_equal(ds[2:, :2], [[8, 9], [12, 13]])


def test_foreign_chunk_in_the_other_byte_order_reads(con, tmp_path):
    ds = small(con, checksum=False)
    values = np.array([[1.5, -2], [3, 4]], ">f8")
    write_foreign(chunk_file(tmp_path, "d"), lambda f: f.create_dataset("data", data=values))
    np.testing.assert_array_equal(ds[0:2, 0:2], values)
    np.testing.assert_array_equal(ds[0, 1], -2)


# -- nothing outside the store is read or written -----------------------------------------
def test_the_watch_sees_reads_and_writes(outside):
    where, watch = outside
    (where / "secret.bin").read_bytes()
    (where / "new").write_bytes(b"x")
    names = {name for name, _ in watch.events()}
    assert {"secret.bin", "new"} <= names


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda f, o: f.create_dataset("data", (2, 2), "f8", external=[(str(o / "secret.bin"), 0, 32)]),
            id="external-storage",
        ),
        pytest.param(
            lambda f, o: f.__setitem__("data", h5py.ExternalLink(str(o / "other.h5"), "/data")),
            id="external-link",
        ),
        pytest.param(lambda f, o: _virtual(f, o / "other.h5"), id="virtual-dataset"),
        pytest.param(
            lambda f, o: (
                f.create_dataset("real", data=np.zeros((2, 2))),
                f.__setitem__("data", h5py.SoftLink("/real")),
            ),
            id="soft-link",
        ),
    ],
)
def test_chunk_file_pointing_at_other_files_is_refused(con, tmp_path, outside, build):
    where, watch = outside
    ds = small(con, checksum=False)
    write_foreign(chunk_file(tmp_path, "d"), lambda f: build(f, where))
    watch.events()
    for read in every_read(ds):
        with pytest.raises(ChunkCorruptError):
            read()
    with pytest.raises(ChunkCorruptError):
        ds[0, 0] = 1.0
    assert watch.events() == []


def _virtual(f: h5py.File, source: Path) -> None:
    layout = h5py.VirtualLayout((2, 2), "f8")
    layout[...] = h5py.VirtualSource(str(source), "data", shape=(2, 2))
    f.create_virtual_dataset("data", layout, fillvalue=0)


@pytest.mark.parametrize("checksum", [False, True])
def test_chunk_file_that_is_a_symlink_is_not_followed(con, tmp_path, outside, checksum):
    where, watch = outside
    ds = small(con, checksum)
    path = chunk_file(tmp_path, "d")
    shutil.move(path, where / "moved.h5")  # a genuine chunk file, outside the store
    path.symlink_to(where / "moved.h5")
    before = (where / "moved.h5").read_bytes()
    watch.events()
    for read in every_read(ds):
        with pytest.raises(ChunkCorruptError, match="symbolic link"):
            read()
    with pytest.raises(ChunkCorruptError, match="symbolic link"):
        ds[0, 0] = -1.0  # a partial write reads the chunk first
    assert ds.has_chunk((0, 0)) and (0, 0) in ds.stored_chunks()
    ds[0:2, 0:2] = 7.0  # a whole-chunk write replaces the link with a file in the store
    assert not path.is_symlink() and path.is_file()
    np.testing.assert_array_equal(ds[0:2, 0:2], np.full((2, 2), 7.0))
    ds.del_chunk((0, 1))
    assert watch.events() == []
    assert (where / "moved.h5").read_bytes() == before


def test_dataset_directory_that_is_a_symlink_is_not_followed(con, tmp_path, outside):
    where, _ = outside
    ds = small(con, checksum=True)
    elsewhere = where / "store-elsewhere"
    shutil.move(tmp_path / "store" / "d", elsewhere)
    (tmp_path / "store" / "d").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "store" / "e").symlink_to(where, target_is_directory=True)
    before = {str(p): p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}
    chunks_elsewhere = chunk_dir(elsewhere)
    watches = [Watch(elsewhere), Watch(chunks_elsewhere), Watch(where)]
    try:
        with pytest.raises(MetadataCorruptError, match="symbolic link"):
            con["d"]
        assert con.datasets() == []
        for write in (lambda: ds.__setitem__(..., 1.0), lambda: ds.attrs.update(a=1), ds.clear):
            with pytest.raises(MetadataCorruptError, match="symbolic link"):
                write()  # an old handle
        with pytest.raises(MetadataCorruptError, match="symbolic link"):
            con.backend.write_chunk(ds.meta, (1, 1), np.ones((2, 2)))  # even below the handle
        with pytest.raises((MetadataCorruptError, DatasetExistsError)):
            con.create_dataset("e", data=np.ones((4, 4)), chunk_size=2)
        with pytest.raises(MetadataCorruptError):
            del con["d"]
        for watch in watches:
            # A descriptor of the chunk directory, opened while it was in the store, may
            # be closed once dosna sees it moved: that close alone reads nothing (any
            # open, read or write would show as its own event).
            assert [e for e in watch.events() if e[1] != Watch.CLOSED_DIRECTORY] == []
    finally:
        for watch in watches:
            watch.close()
    assert {str(p): p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in where.iterdir()) == ["other.h5", "secret.bin", "store-elsewhere"]


def test_planted_temporary_file_link_does_not_redirect_writes(tmp_path, outside):
    where, watch = outside
    victim = where / "victim.txt"
    victim.write_bytes(b"precious")
    watch.events()
    # one I/O thread: the writes happen in this thread, whose temporary file names are known
    with dn.Connection("store", backend="hdf5", directory=tmp_path, io_threads=1) as con:
        root = tmp_path / "store" / "d"
        root.mkdir()
        tail = f"{os.getpid()}.{threading.get_ident()}.tmp"
        (root / f".dosna.json.{tail}").symlink_to(victim)
        ds = con.create_dataset("d", shape=(4, 4), dtype="f8", chunk_size=(2, 2))  # exclusive create
        chunks = chunk_dir(root)
        for name in ("0.0.h5", "1.1.h5"):
            (chunks / f".{name}.{tail}").symlink_to(victim)
        ds[0:2, 0:2] = 3.0  # a whole chunk
        ds[3, 3] = 4.0  # read-modify-write
        ds.attrs["units"] = "K"  # metadata replaced
    assert watch.events() == []
    assert victim.read_bytes() == b"precious"
    planted = f".dosna.json.{tail}"  # a planted link that was never written through may stay
    assert sorted(p.name for p in root.iterdir() if p.name != planted) == sorted([".dosna.json", chunks.name])
    assert sorted(p.name for p in chunks.iterdir()) == ["0.0.h5", "1.1.h5"]
    with dn.Connection("store", backend="hdf5", directory=tmp_path) as con:
        np.testing.assert_array_equal(con["d"][0:2, 0:2], np.full((2, 2), 3.0))
        assert con["d"][3, 3] == 4.0 and con["d"].attrs["units"] == "K"


# -- names that are not chunks -------------------------------------------------------------
def test_chunk_keys_are_only_the_canonical_names_inside_the_grid():
    assert parse_chunk_key("3.0.12", 3) == (3, 0, 12)
    assert parse_chunk_key("1.1", 2, (2, 2)) == (1, 1)
    assert parse_chunk_key("0", 0) == ()
    for key in (
        "00.1",
        "1.01",
        "2.0",
        "1.2",
        "٣.0",
        "².0",
        "1.-1",
        "+1.0",
        " 1.0",
        "1.0.",
        "",
        "1..0",
        "1_0.0",
    ):
        assert parse_chunk_key(key, 2, (2, 2)) is None, key


def test_stray_files_are_not_chunks(con, tmp_path):
    ds = small(con, checksum=True)
    store = chunk_dir(tmp_path / "store" / "d")
    genuine = (store / "1.1.h5").read_bytes()
    strays = [
        "99.99.h5",
        "00.0.h5",
        "0.00.h5",
        "٣.0.h5",
        "².0.h5",
        "2.0.h5",
        "1.1.1.h5",
        "-1.0.h5",
        "1.1.h5x",
    ]
    for name in strays:
        (store / name).write_bytes(genuine)
    grid = [(i, j) for i in range(2) for j in range(2)]
    assert ds.stored_chunks() == grid
    assert ds.nbytes_stored == 4 * len(genuine)
    copy = ds.clone("copy", data=True)
    np.testing.assert_array_equal(copy[...], ds[...])
    assert copy.stored_chunks() == grid
    ds.clear()
    assert ds.stored_chunks() == [] and sorted(p.name for p in store.iterdir()) == sorted(strays)
    np.testing.assert_array_equal(ds[...], np.zeros((4, 4)))


# -- bad input refused before anything is written -----------------------------------------------
def store_contents(con) -> list[str]:
    root = getattr(con.backend, "root", None)
    return sorted(os.listdir(root)) if root else con.datasets()


def test_more_axes_than_numpy_supports_are_refused(any_con):
    with pytest.raises(ValueError, match="axes"):
        any_con.create_dataset("deep", shape=(1,) * (MAX_NDIM + 1))
    with pytest.raises(ValueError, match="axes"):
        any_con.create_dataset("deep", shape=(2,) * 70, dtype="u1", chunk_size=1)
    assert "deep" not in any_con and store_contents(any_con) == []


def test_hdf5_refuses_more_axes_than_hdf5_supports(con, tmp_path):
    with pytest.raises(ValueError, match="32 axes"):
        con.create_dataset("deep", shape=(1,) * 33, dtype="i2")
    with pytest.raises(ValueError, match="32 axes"):
        con.create_dataset("deep", data=np.ones((1,) * 33))
    assert os.listdir(tmp_path / "store") == []
    ds = con.create_dataset("ok", data=np.full((1,) * 32, 5, "i2"))
    np.testing.assert_array_equal(ds[...], np.full((1,) * 32, 5, "i2"))


def test_hdf5_refuses_compressed_chunks_hdf5_cannot_hold(con, tmp_path):
    pytest.importorskip("numcodecs")
    with pytest.raises(ValueError, match="chunk limit"):
        con.create_dataset("z", shape=(2**16, 2**16), dtype="f8", chunk_size=2**16, compression="zstd")
    assert os.listdir(tmp_path / "store") == []
    # uncompressed, a chunk file holds one contiguous block of any size
    con.create_dataset("raw", shape=(2**16, 2**16), dtype="f8", chunk_size=2**16)


def test_the_most_axes_numpy_supports_work(any_con):
    if any_con.backend.name == "hdf5":
        pytest.skip("hdf5 stores at most 32 axes")
    ds = any_con.create_dataset("deep", shape=(2,) + (1,) * (MAX_NDIM - 1), dtype="i1", chunk_size=1)
    ds[1] = 3
    assert ds[...].shape == ds.shape and ds[1].sum() == 3 and ds[0].sum() == 0


@pytest.mark.parametrize(
    ("shape", "dtype"), [((2**40, 2**40), "f8"), ((2**62, 4), "u1"), ((2**63,), "u1"), ((2**61,), "f4")]
)
def test_shapes_whose_size_overflows_are_refused(any_con, shape, dtype):
    with pytest.raises(ValueError, match="bytes"):
        any_con.create_dataset("huge", shape=shape, dtype=dtype)
    assert store_contents(any_con) == []


def test_largest_addressable_shape_is_accepted_and_sized_right(any_con):
    ds = any_con.create_dataset("big", shape=(2**31, 2**31), dtype="u1", chunk_size=(1024, 1024))
    assert ds.size == 2**62 and ds.nbytes == 2**62
    ds[-1, -1] = 9
    assert ds[-1, -2:].tolist() == [0, 9] and ds.stored_chunks() == [(2**21 - 1, 2**21 - 1)]


def test_chunks_whose_size_overflows_are_refused(any_con):
    with pytest.raises(ValueError, match="chunk"):
        any_con.create_dataset("c", shape=(4, 4), dtype="f8", chunk_size=(2**32, 2**32))
    assert store_contents(any_con) == []


@pytest.mark.parametrize("dtype", ["g", "G", np.longdouble, np.clongdouble])
def test_longdouble_is_refused_before_anything_is_written(any_con, dtype):
    with pytest.raises(TypeError, match="not supported"):
        any_con.create_dataset("ld", data=np.ones((4, 4), dtype), chunk_size=2)
    with pytest.raises(TypeError, match="not supported"):
        any_con.create_dataset("ld", shape=(4,), dtype=dtype)
    assert "ld" not in any_con and store_contents(any_con) == []


@pytest.mark.parametrize(
    ("dtype", "fill", "new_dtype"),
    [
        ("f8", np.nan, "i4"),
        ("i4", -1, "u1"),
        ("f8", 0.5, "i8"),
        ("i8", 300, "u1"),
        ("c16", 1j, "f8"),
        ("f8", 1e300, "f4"),
    ],
)
@pytest.mark.parametrize("how", ["clone", "clone-data", "map"])
def test_clone_and_map_refuse_a_fill_value_the_new_dtype_cannot_hold(any_con, dtype, fill, new_dtype, how):
    ds = any_con.create_dataset("src", shape=(4,), dtype=dtype, fillvalue=fill, chunk_size=2)
    ds[:2] = 1
    before = store_contents(any_con)
    with pytest.raises(ValueError, match="does not fit"):
        if how == "map":
            ds.map(lambda x: x, "out", dtype=new_dtype)
        else:
            ds.clone("out", data=how == "clone-data", dtype=new_dtype)
    assert "out" not in any_con and store_contents(any_con) == before


def test_clone_and_map_keep_a_fill_value_that_fits(any_con):
    ds = any_con.create_dataset("src", shape=(4,), dtype="f8", fillvalue=7.0, chunk_size=2)
    assert ds.clone("a", dtype="u1").fillvalue == 7
    assert ds.map(lambda x: x, "b", dtype="c8").fillvalue == 7 + 0j


# -- concurrency ---------------------------------------------------------------------------------
@pytest.fixture
def busy_switching():
    """Switch threads as often as possible, so that races show."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_ram_listing_while_other_threads_create_and_delete(busy_switching):
    con = dn.Connection(f"churn-{os.getpid()}", backend="ram").connect()
    for i in range(50):
        con.create_dataset(f"keep{i}", shape=(1,))
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                name = f"t{worker}-{i}"
                ds = con.create_dataset(name, shape=(4,), chunk_size=1)
                ds[...] = 1
                del con[name]
                i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    try:
        keep = con["keep0"]
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            names = con.datasets()
            assert all(f"keep{i}" in names for i in range(50))
            assert len(con) >= 50 and keep.stored_chunks() == [] and keep.nbytes_stored == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []


def unaligned_blocks(shape: tuple[int, int], block: tuple[int, int]) -> list[tuple[slice, slice]]:
    return [
        (slice(i, i + block[0]), slice(j, j + block[1]))
        for i in range(0, shape[0], block[0])
        for j in range(0, shape[1], block[1])
    ]


@pytest.mark.parametrize("chunks", [(64, 64), (32, 48)])
def test_threads_writing_parts_of_one_chunk_lose_nothing(any_con, busy_switching, chunks):
    from joblib import Parallel, delayed

    expected = np.arange(64 * 64, dtype="i4").reshape(64, 64)
    for run in range(20):
        ds = any_con.create_dataset(f"t{run}", shape=(64, 64), dtype="i4", chunk_size=chunks)

        def write(region: tuple[slice, slice], ds=ds) -> None:
            ds[region] = expected[region]

        Parallel(n_jobs=8, prefer="threads")(delayed(write)(r) for r in unaligned_blocks((64, 64), (4, 16)))
        np.testing.assert_array_equal(ds[...], expected, err_msg=f"run {run}")


def test_dask_store_without_a_lock_loses_nothing(any_con, busy_switching):
    da = pytest.importorskip("dask.array")
    import dask

    expected = np.arange(64 * 96, dtype="f4").reshape(64, 96)
    source = da.from_array(expected, chunks=(8, 12))  # blocks much smaller than a chunk
    for run in range(20):
        ds = any_con.create_dataset(f"d{run}", shape=(64, 96), dtype="f4", chunk_size=(32, 48))
        with dask.config.set(scheduler="threads", num_workers=8):
            da.store(source, ds, lock=False)
        np.testing.assert_array_equal(ds[...], expected, err_msg=f"run {run}")


def test_chunk_writes_from_the_joblib_engine_and_user_threads_at_once(tmp_path, busy_switching):
    """Writes a joblib-engine call makes from its pool and writes from the caller's threads share locks."""
    expected = np.arange(32 * 32, dtype="i8").reshape(32, 32)
    with dn.Connection(
        "store", backend="hdf5", directory=tmp_path, engine="joblib", engine_kw={"njobs": 4}
    ) as con:
        for run in range(5):
            ds = con.create_dataset(f"j{run}", shape=(32, 32), dtype="i8", chunk_size=(16, 16))
            columns = [
                threading.Thread(target=ds.__setitem__, args=((slice(None), j), expected[:, j]))
                for j in range(32)
            ]
            for t in columns:
                t.start()
            for t in columns:
                t.join()
            np.testing.assert_array_equal(ds[...], expected, err_msg=f"run {run}")


def test_a_connection_directory_reached_through_a_link_works(tmp_path):
    """Only links inside the store are refused: where the store itself lives is the user's choice."""
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    with dn.Connection("store", backend="hdf5", directory=tmp_path / "linked") as con:
        ds = con.create_dataset("d", data=np.arange(16.0).reshape(4, 4), chunk_size=2)
        ds[1, 1] = -1
        assert con.datasets() == ["d"] and ds[1, 1] == -1 and len(ds.stored_chunks()) == 4
    assert (chunk_dir(tmp_path / "real" / "store" / "d") / "0.0.h5").is_file()


def test_foreign_chunk_of_a_compressed_dataset_reads_and_links_are_refused(con, tmp_path, outside):
    pytest.importorskip("numcodecs")
    where, watch = outside
    ds = con.create_dataset(
        "z", shape=(4, 6), dtype="f8", chunk_size=(4, 3), compression="gzip", checksum=False
    )
    a = np.arange(12.0).reshape(4, 3)
    with h5py.File(chunk_file(tmp_path, "z"), "w") as f:
        f.create_dataset("data", data=a, compression="gzip", chunks=(2, 3))
    np.testing.assert_array_equal(ds[:, :3], a)
    with h5py.File(chunk_file(tmp_path, "z", "0.1.h5"), "w") as f:
        f["data"] = h5py.ExternalLink(str(where / "other.h5"), "/data")
    watch.events()
    with pytest.raises(ChunkCorruptError, match="link"):
        ds[:, 3:]
    assert watch.events() == []
