"""dn.open: one URL per store, open modes (read-only refuses every write before any I/O), typed options."""

from __future__ import annotations

import os
import pathlib
import uuid
from typing import ClassVar

import numpy as np
import pytest

import dosna as dn
from dosna import cli, registry
from dosna.backends.ram import RamBackend
from dosna.errors import InvalidNameError, InvalidOptionError
from dosna.locations import open_connection
from dosna.options import parse_options, split_options
from dosna.urls import parse_url


def tree(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root`` with its size and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.stat()
        out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- URLs ----------------------------------------------------------------------------------
def test_paths_and_hdf5_urls_reach_the_same_store(tmp_path):
    data = np.arange(30.0).reshape(5, 6)
    with dn.open(tmp_path / "store") as con:  # a pathlib.Path
        con.create_dataset("x", data=data, chunk_size=(2, 4))
        url = con.url
    assert url == f"hdf5://{tmp_path}/store"
    for again in (url, str(tmp_path / "store"), f"hdf5://{tmp_path}/store/"):
        with dn.open(again, mode="r") as con:
            np.testing.assert_array_equal(con["x"][...], data)
            assert con.url == url


def test_relative_paths_and_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with dn.open("rel/store") as con:
        con.create_dataset("x", data=np.arange(3))
        assert con.url == f"hdf5://{tmp_path}/rel/store"
    with dn.open("hdf5://rel/store", mode="r") as con:
        assert list(con) == ["x"]


def test_url_with_characters_that_need_quoting(tmp_path):
    where = tmp_path / "a dir?#%" / "store"
    with dn.open(where) as con:
        con.create_dataset("x", data=np.arange(3))
        url = con.url
    assert "?" not in url and "#" not in url
    with dn.open(url, mode="r") as con:
        assert list(con) == ["x"] and con.backend.root == str(where)


def test_ram_urls_round_trip():
    name = unique("ram-open")
    with dn.open(f"ram://{name}") as con:
        con.create_dataset("x", data=np.arange(5))
        assert con.url == f"ram://{name}"
    with dn.open(con.url, mode="r") as again:
        assert int(again["x"][4]) == 4


def test_url_query_options_are_typed_by_the_backend(tmp_path):
    with dn.open(f"hdf5://{tmp_path}/s?fsync=true&cache_size=0&io_threads=3") as con:
        assert con.backend.fsync is True and con.backend.cache_size == 0 and con.backend.io_threads == 3
    with pytest.raises(InvalidOptionError, match="takes no option 'fsnyc'"):
        dn.open(f"hdf5://{tmp_path}/s?fsnyc=true")
    with pytest.raises(InvalidOptionError, match="expected bool"):
        dn.open(f"hdf5://{tmp_path}/s?fsync=perhaps")


def test_storage_options_and_keywords(tmp_path):
    with dn.open(tmp_path / "s", storage_options={"fsync": True}, cache_size=0) as con:
        assert con.backend.fsync is True and con.backend.cache_size == 0
    with pytest.raises(TypeError, match="both"):
        dn.open(tmp_path / "s", storage_options={"fsync": True}, fsync=False)
    with pytest.raises(TypeError, match="given twice"):
        dn.open(f"hdf5://{tmp_path}/s?fsync=true", fsync=False)
    with pytest.raises(TypeError, match="given twice"):
        dn.open(tmp_path / "s", directory="/elsewhere")


def test_object_store_urls_parse_without_io():
    if dn.available()["backends"]["s3"] or dn.available()["backends"]["ceph"]:
        pytest.skip("boto3 or the rados module is not importable here")
    target = parse_url("s3://bucket/runs/1/?endpoint_url=http://127.0.0.1:7480&create=no&timeout=2")
    assert (target.backend, target.name) == ("s3", "bucket")
    assert target.options == {
        "prefix": "runs/1",
        "endpoint_url": "http://127.0.0.1:7480",
        "create": False,
        "timeout": 2.0,
    }
    target = parse_url("ceph://pool/ns?conffile=/etc/ceph/ceph.conf&client_id=dosna")
    assert (target.backend, target.name) == ("ceph", "pool")
    assert target.options == {"prefix": "ns", "conffile": "/etc/ceph/ceph.conf", "client_id": "dosna"}
    assert parse_url("ceph://pool").options == {}
    with pytest.raises(dn.UnknownBackendError):
        parse_url("nosuchscheme://x")
    with pytest.raises(ValueError, match="one name"):
        parse_url("ram://a/b")


def test_s3_url_round_trips_and_prefixes_are_checked():
    pytest.importorskip("boto3")
    con = dn.Connection("bucket", backend="s3", prefix="/runs/1/", endpoint_url="http://127.0.0.1:7480")
    assert (
        con.backend.prefix == "runs/1"
        and con.backend._key("data", ".dosna.json") == "runs/1/data/.dosna.json"
    )
    assert con.url == "s3://bucket/runs/1?endpoint_url=http%3A%2F%2F127.0.0.1%3A7480"
    target = parse_url(con.url)
    assert target.options == {"prefix": "runs/1", "endpoint_url": "http://127.0.0.1:7480"}
    plain = dn.Connection("bucket", backend="s3")
    assert plain.url == "s3://bucket" and plain.backend._key("data", "0.0") == "data/0.0"
    for bad in ("../x", "a//b", "a/.hidden", "a b"):
        with pytest.raises(InvalidNameError):
            dn.Connection("bucket", backend="s3", prefix=bad)


def test_ceph_url_round_trips():
    if dn.available()["backends"].get("ceph"):
        pytest.skip("the rados module is not importable here")
    con = dn.Connection("pool", backend="ceph", prefix="runs/1", conffile="/etc/ceph/ceph.conf")
    assert con.backend._ns("data") == "runs/1/data" and con.backend._index_ns == "runs/1/"
    assert parse_url(con.url).options == {"prefix": "runs/1", "conffile": "/etc/ceph/ceph.conf"}
    plain = dn.Connection("pool", backend="ceph", conffile="/etc/ceph/ceph.conf")
    assert plain.backend._ns("data") == "data" and plain.backend._index_ns == ""


# -- modes ---------------------------------------------------------------------------------
def test_read_only_on_a_missing_store_creates_nothing(tmp_path):
    for mode in ("r", "r+"):
        with pytest.raises(dn.StoreNotFoundError, match="does not exist") as info:
            dn.open(tmp_path / "typo", mode=mode)
        assert isinstance(info.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(dn.StoreNotFoundError):
        dn.open(f"ram://{unique('never-made')}", mode="r")
    with pytest.raises(dn.StoreNotFoundError):
        dn.Connection("typo", backend="hdf5", directory=tmp_path, mode="r").connect()
    assert list(tmp_path.iterdir()) == []


def test_write_modes(tmp_path):
    where = tmp_path / "s"
    with dn.open(where, mode="w-") as con:
        con.create_dataset("a", data=np.arange(3))
        con.create_dataset("b", data=np.arange(3))
    for mode in ("w-", "x"):
        with pytest.raises(dn.StoreExistsError):
            dn.open(where, mode=mode)
    with dn.open(where, mode="r+") as con:
        con["a"][0] = 7
        assert sorted(con) == ["a", "b"]
    with dn.open(where) as con:  # "a": as it is
        assert int(con["a"][0]) == 7
    with dn.open(where, mode="w") as con:
        assert list(con) == []
        con.create_dataset("c", data=np.arange(2))
        con.disconnect()
        con.connect()  # reconnecting does not clear again
        assert list(con) == ["c"]
    with dn.open(tmp_path / "new", mode="w") as con:
        assert list(con) == []
    with pytest.raises(ValueError, match="mode must be one of"):
        dn.open(where, mode="rw")


class RecordingBackend(RamBackend):
    """A ram backend that records every call made to it."""

    name = "recording"
    calls: ClassVar[list[str]] = []

    def __getattribute__(self, attr):
        value = super().__getattribute__(attr)
        if callable(value) and not attr.startswith("_"):
            RecordingBackend.calls.append(attr)
        return value


@pytest.fixture
def recording():
    registry.register_backend("recording", RecordingBackend, clobber=True)
    name = unique("ro")
    with dn.open(f"recording://{name}") as con:
        ds = con.create_dataset("x", data=np.arange(20.0).reshape(4, 5), chunk_size=(2, 2), attrs={"a": 1})
        con.create_dataset("y", data=np.arange(4), chunk_size=2)
        before = {k: (v.meta, dict(v.chunks)) for k, v in ds.backend._datasets.items()}
    yield name, before
    registry._BACKENDS.pop("recording", None)


WRITES = {
    "create_dataset": lambda con, ds: con.create_dataset("z", shape=(3,)),
    "create_dataset(data=)": lambda con, ds: con.create_dataset("z", data=np.arange(3)),
    "del_dataset": lambda con, ds: con.del_dataset("y"),
    "del con[]": lambda con, ds: con.__delitem__("y"),
    "ds.delete": lambda con, ds: ds.delete(),
    "ds[...] =": lambda con, ds: ds.__setitem__((0, 0), 5),
    "set_data": lambda con, ds: ds.set_data(np.zeros((4, 5))),
    "attrs[k] =": lambda con, ds: ds.attrs.__setitem__("b", 2),
    "del attrs[k]": lambda con, ds: ds.attrs.__delitem__("a"),
    "attrs.update": lambda con, ds: ds.attrs.update(b=2),
    "resize": lambda con, ds: ds.resize((8, 5)),
    "append": lambda con, ds: ds.append(np.zeros(5)),
    "load": lambda con, ds: ds.load(np.zeros((4, 5))),
    "map": lambda con, ds: ds.map(lambda c: c, "out"),
    "apply": lambda con, ds: ds.apply(lambda c: c),
    "clone": lambda con, ds: ds.clone("out", data=True),
    "clear": lambda con, ds: ds.clear(),
    "create_chunk": lambda con, ds: ds.create_chunk((0, 0)),
    "del_chunk": lambda con, ds: ds.del_chunk((0, 0)),
    "chunk[...] =": lambda con, ds: ds.get_chunk((0, 0)).__setitem__(Ellipsis, 1),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_read_only_refuses_every_write_before_any_io(recording, write):
    name, before = recording
    with dn.open(f"recording://{name}", mode="r") as con:
        assert con.read_only and "read-only" in repr(con)
        ds = con["x"]
        np.testing.assert_array_equal(ds[...], np.arange(20.0).reshape(4, 5))  # reads work
        RecordingBackend.calls.clear()
        with pytest.raises(dn.ReadOnlyError, match="read-only") as info:
            WRITES[write](con, ds)
        assert isinstance(info.value, PermissionError)
        assert RecordingBackend.calls == []  # refused before the store was touched
        after = {k: (v.meta, dict(v.chunks)) for k, v in con.backend._datasets.items()}
    assert after == before


@pytest.mark.parametrize("mode", ["r+", "a"])
def test_writable_modes_allow_the_same_writes(mode):
    for write in WRITES.values():
        name = unique("rw")
        with dn.open(f"ram://{name}") as con:
            con.create_dataset("x", data=np.arange(20.0).reshape(4, 5), chunk_size=(2, 2), attrs={"a": 1})
            con.create_dataset("y", data=np.arange(4), chunk_size=2)
        with dn.open(f"ram://{name}", mode=mode) as con:
            write(con, con["x"])


def test_connection_keeps_its_documented_signature(tmp_path):
    dn.use(backend="hdf5", engine="cpu")
    try:
        with dn.Connection("store", directory=tmp_path) as con:  # default mode "a" creates it
            con.create_dataset("x", data=np.arange(3))
        with dn.connection("store", directory=tmp_path, mode="r") as con:
            assert list(con) == ["x"]
            with pytest.raises(dn.ReadOnlyError):
                con["x"][0] = 1
    finally:
        dn.use(backend="ram", engine="cpu")


# -- option text -----------------------------------------------------------------------------
def test_option_text_is_parsed_unambiguously():
    from dosna.backends.hdf5 import Hdf5Backend

    assert split_options('a=1, b="x,y", c=[1,2], d={"k": 1}') == {
        "a": "1",
        "b": '"x,y"',
        "c": "[1,2]",
        "d": '{"k": 1}',
    }
    typed = parse_options("directory=123,create=no,fsync=yes,cache_size=8", Hdf5Backend, "the hdf5 backend")
    assert typed == {"directory": "123", "create": False, "fsync": True, "cache_size": 8}
    assert parse_options('directory="007"', Hdf5Backend) == {"directory": "007"}
    # without a signature: JSON values, else the text itself
    assert parse_options('n=128,lr=1e-3,on=true,off=null,name=relu,q="12"') == {
        "n": 128,
        "lr": 0.001,
        "on": True,
        "off": None,
        "name": "relu",
        "q": "12",
    }
    for bad in ("create=maybe", "cache_size=1.5", "nope=1"):
        with pytest.raises(InvalidOptionError):
            parse_options(bad, Hdf5Backend, "the hdf5 backend")
    with pytest.raises(InvalidOptionError, match="twice"):
        parse_options("a=1,a=2")
    with pytest.raises(InvalidOptionError, match="key=value"):
        parse_options("a")


def test_connection_option_values_keep_their_types(tmp_path, monkeypatch):
    """``directory=123`` is a directory named 123, ``create=no`` does not create."""
    monkeypatch.chdir(tmp_path)
    with open_connection("hdf5", "store", options="directory=123") as con:
        assert con.backend.directory == str(tmp_path / "123") and (tmp_path / "123" / "store").is_dir()
    with pytest.raises(FileNotFoundError):
        open_connection("hdf5", str(tmp_path / "absent"), options="create=no")
    assert not (tmp_path / "absent").exists()
    with open_connection("ram", unique("eng"), "joblib", engine_options="njobs=2") as con:
        assert con.engine.njobs == 2
    with pytest.raises(InvalidOptionError, match="njobs"):
        open_connection("ram", unique("eng"), "joblib", engine_options="njobs=two")


# -- the command line ------------------------------------------------------------------------
def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_read_only_commands_never_create_a_store(tmp_path, capsys):
    typo = tmp_path / "tyop"
    for args in (
        ["ls", str(typo)],
        ["ls", "--backend", "hdf5", "--connection", str(typo)],
        ["info", str(typo), "x"],
        ["info", "x", "--connection", str(typo)],
        ["show", str(typo), "x", "--index", "0,:"],
        ["models", "list", str(typo)],
        ["models", "delete", str(typo), "m", "1"],
    ):
        code, _, err = run_cli(capsys, *args)
        assert code == 1, args
        assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_cli_takes_urls_where_it_took_backend_and_connection(tmp_path, capsys):
    with dn.open(tmp_path / "store") as con:
        con.create_dataset("volume", data=np.arange(24.0).reshape(2, 3, 4), chunk_size=2)
        url = con.url
    listings = []
    for where in (
        [str(tmp_path / "store")],
        [url],
        ["--connection", url],
        ["--backend", "hdf5", "--connection", str(tmp_path / "store")],
        ["--connection", "store", "--connection-options", f"directory={tmp_path}"],
    ):
        code, out, err = run_cli(capsys, "ls", *where)
        assert code == 0, err
        listings.append(out)
    assert len(set(listings)) == 1 and "volume" in listings[0]
    code, out, err = run_cli(capsys, "info", url, "volume", "--json")
    assert code == 0 and '"shape": [\n    2,' in out
    code, _, err = run_cli(capsys, "ls")
    assert code == 2 and "give the store" in err
    code, _, err = run_cli(capsys, "ls", url, "--connection", url)
    assert code == 2 and "not both" in err
    code, _, err = run_cli(capsys, "ls", url, "--backend", "s3")
    assert code == 1 and "hdf5 URL" in err
    code, _, err = run_cli(capsys, "ls", url, "--connection-options", "create=perhaps")
    assert code == 1 and "expected bool" in err and err.count("\n") == 1


def test_cli_ls_of_a_missing_ram_store_fails(capsys):
    code, _, err = run_cli(capsys, "ls", f"ram://{unique('nothing')}")
    assert code == 1 and "does not exist" in err


def test_open_is_exported():
    assert dn.open is dn.urls.open and os.open is not dn.open


MPI_MODES = r"""
import sys
import numpy as np
import dosna as dn

where = sys.argv[1]


def say(*words):  # one write per line: the ranks' lines do not interleave
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()
    sys.stdout.flush()


try:
    dn.open(where, mode="r", engine="mpi")
except dn.StoreNotFoundError:
    say("missing")
con = dn.open(where, mode="w-", engine="mpi")  # the root decides: no rank sees another's creation
con.create_dataset("x", data=np.arange(4))
con.disconnect()
try:
    dn.open(where, mode="w-", engine="mpi")
except dn.StoreExistsError:
    say("exists")
with dn.open(where, mode="w", engine="mpi") as con:
    say("after w", list(con))
    con.create_dataset("y", data=np.arange(4))
with dn.open(where, mode="r", engine="mpi") as con:
    try:
        con["y"][0] = 1
    except dn.ReadOnlyError:
        say("read-only", list(con), int(con["y"][3]))
"""


def test_modes_under_mpiexec(tmp_path):
    from mpi_helpers import python_mpi, requires_mpiexec

    if requires_mpiexec.args[0]:
        pytest.skip(requires_mpiexec.kwargs["reason"])
    result = python_mpi(2, MPI_MODES, str(tmp_path / "store"))
    assert result.returncode == 0, str(result)
    expected = ["missing", "exists", "after w []", "read-only ['y'] 3"]
    for rank in (0, 1):
        assert result.rank_lines(rank) == expected, str(result)
