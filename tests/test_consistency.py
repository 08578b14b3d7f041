"""Nothing visible that was never completed; a handle never reads or writes a dataset that is not there.

Creations, clones and maps killed with SIGKILL, creations racing for one name
in two processes, handles whose dataset was deleted or re-created under them,
reads racing a delete, stores written before datasets had uids, and
``dosna fsck``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import dosna as dn
from dosna.cli import main as cli_main
from dosna.errors import DatasetChangedError, DatasetExistsError, DatasetNotFoundError, MetadataCorruptError
from dosna.fsck import check
from dosna.io import arrays
from dosna.testing import flip_stored_bit

FORMAT2 = Path(__file__).parent / "data" / "format2"
GONE = (DatasetNotFoundError, DatasetChangedError)


@pytest.fixture(params=["ram", "hdf5"])
def con(request, tmp_path):
    options = {"directory": tmp_path} if request.param == "hdf5" else {}
    name = f"consistency-{request.node.name}".replace("[", "-").replace("]", "")[:100]
    with dn.Connection(name, backend=request.param, **options) as con:
        yield con
        for ds in con.datasets():
            con.del_dataset(ds)


@pytest.fixture
def hcon(tmp_path):
    with dn.Connection("store", backend="hdf5", directory=tmp_path) as con:
        yield con


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _run_until(script: str, line: bytes, timeout: float = 60) -> subprocess.Popen:
    """Start ``script`` in a new Python process and wait until it prints ``line``."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if got.strip() == line:
            return proc
        if not got and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the process did not print {line!r}")


# -- nothing visible that was never completed ------------------------------------------------
# A child process writes part of a dataset's chunks, says so and waits; it is then killed.
_PAUSE_AFTER_WRITES = """
import sys, time
import numpy as np
import dosna as dn

con = dn.connection('store', backend='hdf5', directory={directory!r})
writes = 0
write_chunk = con.backend.write_chunk

def pausing_write(meta, idx, data):
    global writes
    write_chunk(meta, idx, data)
    if meta.name == 'out':
        writes += 1
        if writes == 5:
            print('paused', flush=True)
            time.sleep(600)

con.backend.write_chunk = pausing_write
src = con['src']
{operation}
"""


@pytest.mark.parametrize(
    "operation",
    [
        "src.clone('out', data=True)",
        "src.map(lambda x: x * 2, 'out')",
        "src.map(lambda x: -x, 'out', halo=1)",
    ],
)
def test_sigkill_during_clone_or_map_leaves_nothing_visible(tmp_path, operation):
    data = np.arange(16 * 16, dtype="f8").reshape(16, 16) + 1
    with dn.connection("store", backend="hdf5", directory=tmp_path) as con:
        con.create_dataset("src", data=data, chunk_size=4)  # 16 chunks
    proc = _run_until(_PAUSE_AFTER_WRITES.format(directory=str(tmp_path), operation=operation), b"paused")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with dn.connection("store", backend="hdf5", directory=tmp_path) as con:
        assert con.datasets() == ["src"] and "out" not in con
        with pytest.raises(DatasetNotFoundError):
            con["out"]
        report = check(con)
        assert [(item.kind, item.dataset) for item in report.leftovers] == [("uncommitted", "out")]
        assert not report.removed and not report.clean
        # the name is free: a new creation is complete and shares nothing with the killed one
        out = con["src"].clone("out", data=True)
        np.testing.assert_array_equal(out[...], data)
        assert len(out.stored_chunks()) == 16
        assert [item.kind for item in check(con, repair=True).removed] == []  # younger than min_age
        assert [item.kind for item in check(con, repair=True, min_age=0).removed] == ["uncommitted"]
        assert check(con).clean
        np.testing.assert_array_equal(con["out"][...], data)


_RACE_TO_CREATE = """
import os, sys, time
import numpy as np
import dosna as dn
from dosna.errors import DatasetExistsError

me, directory = {me}, {directory!r}
con = dn.connection('store', backend='hdf5', directory=directory)
writes = 0
write_chunk = con.backend.write_chunk

def meeting_write(meta, idx, data):
    global writes
    write_chunk(meta, idx, data)
    writes += 1
    if writes == 8:  # half-way: wait for the other process to get there too
        open(os.path.join(directory, f'half-{{me}}'), 'w').close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(directory, f'half-{{1 - me}}')):
            assert time.monotonic() < deadline
            time.sleep(0.005)

con.backend.write_chunk = meeting_write
try:
    con.create_dataset('x', data=np.full((8, 8), me + 1, 'i4'), chunk_size=2)  # 16 chunks
    print('won', flush=True)
except DatasetExistsError:
    print('exists', flush=True)
"""


def test_two_processes_creating_one_name_one_fails_and_leaves_the_winner_untouched(tmp_path):
    store = tmp_path / "store"
    for attempt in range(3):
        flags = tmp_path / f"flags-{attempt}"
        flags.mkdir()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _RACE_TO_CREATE.format(me=me, directory=str(tmp_path))],
                stdout=subprocess.PIPE,
                cwd=flags,
            )
            for me in (0, 1)
        ]
        outcomes = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert sorted(outcomes) == ["exists", "won"], outcomes
        winner = outcomes.index("won") + 1
        with dn.connection("store", backend="hdf5", directory=tmp_path) as con:
            np.testing.assert_array_equal(con["x"][...], np.full((8, 8), winner))
            assert len(con["x"].stored_chunks()) == 16
            assert check(con).clean  # the loser removed its own chunks, nothing else
            uid = con["x"].meta.uid
            assert _files(store / "x") == sorted(
                [".dosna.json", uid] + [f"{uid}/{i}.{j}.h5" for i in range(4) for j in range(4)]
            )
            con.del_dataset("x")
        for me in (0, 1):
            (tmp_path / f"half-{me}").unlink()


def test_two_threads_creating_one_name_on_ram():
    with dn.connection("race-ram", backend="ram") as con:
        meeting = threading.Barrier(2, timeout=30)
        create_meta = con.backend.create_meta

        def meeting_create_meta(dataset, data):
            meeting.wait()  # both have written all their chunks; neither has committed
            create_meta(dataset, data)

        con.backend.create_meta = meeting_create_meta  # type: ignore[method-assign]
        outcomes: list[object] = [None, None]

        def create(me: int) -> None:
            try:
                con.create_dataset("x", data=np.full((8, 8), me + 1, "i4"), chunk_size=2)
                outcomes[me] = "won"
            except DatasetExistsError:
                outcomes[me] = "exists"

        threads = [threading.Thread(target=create, args=(me,)) for me in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(map(str, outcomes)) == ["exists", "won"]
        winner = outcomes.index("won") + 1
        np.testing.assert_array_equal(con["x"][...], np.full((8, 8), winner))
        assert list(con.backend._datasets["x"].areas) == [con["x"].meta.uid]  # the loser's chunks are gone
        con.del_dataset("x")


class _FailingSource:
    """An array-like source that fails after a few chunks have been read from it."""

    shape, dtype = (8, 8), np.dtype("f8")

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        if self.reads > 3:
            raise OSError("the source went away")
        return np.ones((2, 2))


def test_failed_create_leaves_nothing_behind(con):
    with pytest.raises(OSError, match="went away"):
        con.create_dataset("x", data=_FailingSource(), chunk_size=2)
    assert "x" not in con and con.datasets() == []
    if con.backend.name == "hdf5":
        assert os.listdir(con.backend.root) == []  # no empty dataset directory either
    else:
        assert "x" not in con.backend._datasets
    src = con.create_dataset("src", shape=(8, 8), chunk_size=2)
    with pytest.raises(ValueError, match="must keep the shape"):
        src.map(lambda x: x[:1], "m")
    assert con.datasets() == ["src"]
    if con.backend.name == "hdf5":
        assert os.listdir(con.backend.root) == ["src"]


def test_a_commit_that_loses_removes_only_its_own_chunks(con):
    """A creation whose metadata commit finds the name taken rolls back its own area only."""
    first = con.create_dataset("x", data=np.full((4, 4), 1.0), chunk_size=2)
    meta = arrays.derived_meta(first.meta, "x", None, {})
    # as a second process would after the first committed between its check and its commit
    late = arrays.ChunkIO(con.backend, meta.__class__(**{**meta.__dict__, "uid": arrays.new_uid()}))
    con.backend.prepare_create(late.meta)
    late.write_whole((0, 0), np.full((2, 2), 9.0))
    with pytest.raises(DatasetExistsError):
        con.backend.create_meta("x", late.meta.to_json())
    arrays._roll_back(con.backend, late.meta)
    np.testing.assert_array_equal(con["x"][...], np.full((4, 4), 1.0))
    assert not con.backend.has_chunk(late.meta, (0, 0)) and len(first.stored_chunks()) == 4


# -- a handle never reads or writes a dataset that is not there -------------------------------
def test_handle_of_a_deleted_dataset_raises_and_never_recreates_it(con):
    ds = con.create_dataset("x", data=np.arange(16.0).reshape(4, 4), chunk_size=2)
    io = ds._io()  # what an operation holds once it has checked the metadata
    con.del_dataset("x")
    for read in (
        lambda: ds[...],
        lambda: ds[0, 0],
        lambda: ds.get_chunk((0, 0))[...],
        lambda: ds.chunk_view((1, 1)),
    ):
        with pytest.raises(DatasetNotFoundError):
            read()
    for write in (lambda: ds.__setitem__((0, 0), 5), lambda: ds.__setitem__(slice(None), 5)):
        with pytest.raises(DatasetNotFoundError):
            write()
    # a delete that lands between an operation's check and its chunk I/O
    with pytest.raises(DatasetNotFoundError):
        arrays.read(con.engine, io, ...)
    with pytest.raises(DatasetNotFoundError):
        arrays.write(con.engine, io, (slice(0, 2), slice(0, 2)), 5)  # whole chunks
    with pytest.raises(DatasetNotFoundError):
        arrays.write(con.engine, io, (0, 0), 5)  # read-modify-write
    assert con.datasets() == [] and "x" not in con
    if con.backend.name == "hdf5":
        assert os.listdir(con.backend.root) == []  # no directory, no orphan chunks
    else:
        assert "x" not in con.backend._datasets


@pytest.mark.parametrize("dtype", ["f8", "u1"])
def test_handle_of_a_recreated_dataset_is_refused(con, dtype):
    old = con.create_dataset("x", data=np.full((4, 4), 300.7), chunk_size=2)
    io = old._io()
    con.del_dataset("x")
    new = con.create_dataset("x", data=np.full((4, 4), 44, dtype), chunk_size=2)
    for op in (lambda: old[...], lambda: old.__setitem__((0, 0), 300.7), lambda: old.attrs.update(a=1)):
        with pytest.raises(DatasetChangedError):
            op()
    with pytest.raises(GONE):  # a re-creation between an operation's check and its chunk I/O
        arrays.write(con.engine, io, (0, 0), 300.7)
    with pytest.raises(GONE):
        arrays.write(con.engine, io, ..., 300.7)
    with pytest.raises(GONE):
        arrays.read(con.engine, io, ...)
    np.testing.assert_array_equal(new[...], np.full((4, 4), 44, dtype))
    assert dict(new.attrs) == {}


def test_reads_racing_delete_and_recreate_return_all_data_or_raise(con):
    """Every read gives one incarnation's data, whole, or raises: never data mixed with fill values."""
    shape = (16, 16)
    con.create_dataset("r", data=np.full(shape, 1.0), chunk_size=2, fillvalue=-1)
    stop = threading.Event()
    problems: list[str] = []
    reads = {"whole": 0, "refused": 0}

    def reader() -> None:
        while not stop.is_set():
            try:
                ds = con["r"]
                values = ds[...]
            except (KeyError, DatasetChangedError, DatasetNotFoundError):
                reads["refused"] += 1
                continue
            if (values == -1).any() or len(np.unique(values)) != 1:
                problems.append(f"mixed read: {np.unique(values)}")
            reads["whole"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 2.0
        k = 1
        while time.monotonic() < deadline and not problems:
            con.del_dataset("r")
            k += 1
            con.create_dataset("r", data=np.full(shape, float(k)), chunk_size=2, fillvalue=-1)
            time.sleep(0.002 * (k % 3))  # now and then, time for a whole read
    finally:
        stop.set()
        thread.join(30)
    assert not problems, problems[:3]
    assert reads["whole"] > 0


def test_clone_racing_a_delete_of_its_source_is_not_created(con):
    src = con.create_dataset("src", data=np.ones((8, 8)), chunk_size=2)
    source = src._io()
    con.del_dataset("src")
    with pytest.raises(DatasetNotFoundError):
        arrays.create(
            con.engine,
            con.backend,
            arrays.derived_meta(source.meta, "out", None, {}),
            lambda target: arrays.copy_stored(con.engine, source, target),
        )
    with pytest.raises(DatasetNotFoundError):
        arrays.create(
            con.engine,
            con.backend,
            arrays.derived_meta(source.meta, "out", None, {}),
            lambda target: arrays.transform(con.engine, source, target, lambda x: x),
        )
    assert con.datasets() == []


# -- stores written before datasets had uids ------------------------------------------------
def test_format2_store_without_uids_keeps_its_layout(tmp_path):
    shutil.copytree(FORMAT2, tmp_path / "old")
    root = tmp_path / "old" / "store"
    before = _files(root)
    with dn.Connection("store", backend="hdf5", directory=tmp_path / "old") as con:
        assert con.datasets() == ["grid", "packed"]
        grid = con["grid"]
        assert grid.meta.format == 2 and grid.meta.uid is None and grid.checksum
        expected = np.arange(30.0).reshape(5, 6)
        expected[4:, 4:] = -1  # chunk (2, 1) was deleted: fill value
        np.testing.assert_array_equal(grid[...], expected)
        grid[4, 5] = 7.0  # writes the missing chunk in the old place
        expected[4, 5] = 7.0
        grid.attrs["more"] = 1
        grid.resize((6, 6))
        expected = np.vstack([expected, np.full((1, 6), -1.0)])
        again = dn.Connection("store", backend="hdf5", directory=tmp_path / "old").connect()
        np.testing.assert_array_equal(again["grid"][...], expected)
        assert _files(root) == sorted([*before, "grid/2.1.h5"])
        doc = json.loads((root / "grid" / ".dosna.json").read_text())
        assert "uid" not in doc and doc["attrs"] == {"units": "m", "more": 1}
        assert check(con, chunks=True).clean
        copy = grid.clone("copy", data=True)  # a copy gets a uid
        assert copy.meta.uid is not None
        np.testing.assert_array_equal(copy[...], expected)
        con.del_dataset("grid")
        with pytest.raises(DatasetNotFoundError):
            grid[0, 0] = 1
        assert not (root / "grid").exists()
        con.create_dataset("grid", shape=(2,))  # re-created with a uid: the old handle is refused
        with pytest.raises(DatasetChangedError):
            grid[0, 0]


def test_packed_format2_dataset_without_uid_reads(tmp_path):
    pytest.importorskip("numcodecs")
    shutil.copytree(FORMAT2, tmp_path / "old")
    with dn.Connection("store", backend="hdf5", directory=tmp_path / "old") as con:
        packed = con["packed"]
        assert packed.compression == "zstd" and packed.meta.uid is None
        np.testing.assert_array_equal(packed[...], np.arange(20))
        packed[19] = -5
        assert packed[19] == -5


def test_bad_uid_is_corrupt_metadata(hcon, tmp_path):
    hcon.create_dataset("x", shape=(2,))
    path = tmp_path / "store" / "x" / ".dosna.json"
    doc = json.loads(path.read_text())
    for bad in ("../../etc", "A" * 32, 7):
        doc["uid"] = bad
        path.write_text(json.dumps(doc))
        with pytest.raises(MetadataCorruptError, match="uid"):
            hcon["x"]


# -- dosna fsck ------------------------------------------------------------------------------
def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_fsck_finds_and_repairs_what_killed_processes_left(hcon, tmp_path, capsys):
    root = tmp_path / "store"
    data = np.arange(36.0).reshape(6, 6)
    ds = hcon.create_dataset("d", data=data, chunk_size=3)
    chunk_dir = Path(hcon.backend.chunk_location(ds.meta, (0, 0))).parent
    old_tmp = chunk_dir / ".0.0.h5.4242.139872.tmp"  # a writer killed between write and rename
    old_tmp.write_bytes(b"x" * 100)
    _age(old_tmp, 7200)
    young_tmp = chunk_dir / ".0.1.h5.4343.139872.tmp"  # possibly a writer at work
    young_tmp.write_bytes(b"y")
    meta_tmp = root / "d" / "..dosna.json.4242.1.tmp"
    meta_tmp.write_bytes(b"{}")
    _age(meta_tmp, 7200)
    trash = root / f".deleted-e-{'0' * 32}"  # a delete killed while removing
    (trash / "sub").mkdir(parents=True)
    (trash / "sub" / "0.h5").write_bytes(b"z")
    orphan = root / "f" / ("a" * 32)  # a creation killed before its commit
    orphan.mkdir(parents=True)
    (orphan / "0.h5").write_bytes(b"w" * 10)
    for p in (orphan / "0.h5", orphan, orphan.parent):
        _age(p, 7200)
    legacy = root / "g"  # the same, by a dosna that wrote no uids
    legacy.mkdir()
    (legacy / "0.0.h5").write_bytes(b"v")
    _age(legacy / "0.0.h5", 7200)
    _age(legacy, 7200)
    args = ["fsck", "--backend", "hdf5", "--connection", str(root)]

    assert cli_main(args) == 1
    out = capsys.readouterr().out
    for shown in (old_tmp, young_tmp, meta_tmp, trash, orphan, legacy):
        assert str(shown) in out
    assert "1 datasets checked: 0 damaged, 6 leftovers (0 removed)" in out
    assert old_tmp.exists() and trash.exists() and orphan.exists()  # a check changes nothing

    assert cli_main([*args, "--repair"]) == 1  # the young temporary file stays
    out = capsys.readouterr().out
    assert "6 leftovers (5 removed)" in out and "kept: changed" in out
    assert _files(root) == sorted(
        ["d", "d/.dosna.json", f"d/{ds.meta.uid}", f"d/{ds.meta.uid}/{young_tmp.name}"]
        + [f"d/{ds.meta.uid}/{i}.{j}.h5" for i in range(2) for j in range(2)]
    )
    assert cli_main([*args, "--repair", "--min-age", "0"]) == 0
    assert "1 leftovers (1 removed)" in capsys.readouterr().out
    assert cli_main(args) == 0
    np.testing.assert_array_equal(hcon["d"][...], data)  # the dataset was never touched


def test_fsck_reports_damage_and_leaves_it(hcon, capsys):
    hcon.create_dataset("d", data=np.arange(36.0).reshape(6, 6), chunk_size=3)
    hcon.create_dataset("m", shape=(3,))
    where = flip_stored_bit(hcon, "d", (1, 0), 0.7)
    Path(hcon.backend.meta_location("m")).write_text("{broken")
    report = check(hcon, repair=True, min_age=0, chunks=True)
    assert sorted(p.dataset for p in report.problems) == ["d", "m"]
    assert any(where in p.message for p in report.problems)
    assert not report.clean and not report.removed
    root = str(Path(hcon.backend.root))
    assert cli_main(["fsck", "--chunks", "--backend", "hdf5", "--connection", root]) == 1
    assert "2 datasets and chunks checked: 2 damaged" in capsys.readouterr().out
    assert Path(hcon.backend.meta_location("m")).read_text() == "{broken"


def test_fsck_on_ram_checks_datasets_only(capsys):
    with dn.connection("fsck-ram", backend="ram") as con:
        con.create_dataset("x", shape=(3,))
        report = check(con, chunks=True)
        assert report.datasets == ["x"] and not report.leftovers_supported and report.clean
        con.del_dataset("x")
