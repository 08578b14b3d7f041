"""The names and selection functions scripts for the original DosNa import and call."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dosna as dn


def test_modules_reachable_right_after_import():
    # a fresh interpreter: nothing imported these submodules before
    code = "import dosna as dn; print(dn.backends.AVAILABLE, dn.engines.AVAILABLE, dn.util.Timer.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("ram", "hdf5", "ceph", "s3", "cpu", "jl", "mpi", "Timer"):
        assert repr(name) in out or name in out


@pytest.mark.parametrize("backend", ["ram", "hdf5"])
@pytest.mark.parametrize("engine", ["cpu", "jl"])
def test_config_is_listed_as_available(backend, engine):
    # the original's ConnectionTest.test_config
    dn.use(backend=backend, engine=engine)
    assert backend in dn.backends.AVAILABLE
    assert engine in dn.engines.AVAILABLE


def test_names_exported_by_backends_base():
    from dosna.backends.base import (
        BackendConnection,
        BackendDataChunk,
        BackendDataset,
        ConnectionError,
        DatasetNotFoundError,
    )

    assert DatasetNotFoundError is dn.DatasetNotFoundError
    assert issubclass(ConnectionError, dn.DosnaError) and issubclass(ConnectionError, OSError)
    assert (BackendConnection, BackendDataset, BackendDataChunk) == (dn.Connection, dn.Dataset, dn.DataChunk)
    with pytest.raises(ImportError):
        from dosna.backends.base import NoSuchName  # noqa: F401


def test_util_helpers(capsys):
    from dosna.util import Timer, dtype2str, named_module, shape2str, str2shape
    from dosna.util.data import slices2shape

    with Timer("work") as timer:
        np.zeros(10).sum()
    assert timer.time >= 0 and timer.tend >= timer.tstart
    assert "[*] work -- Elapsed:" in capsys.readouterr().out
    assert str2shape(shape2str((3, 4, 5))) == (3, 4, 5)
    assert dtype2str(np.float32) == np.dtype("f4").str
    assert named_module("dosna.backends") is dn.backends
    assert slices2shape((slice(2, 5), slice(0, 1))) == (3, 1)


def test_mpi_helpers_in_a_single_process(capsys):
    from dosna.util.mpi import (
        MpiTimer,
        mpi_barrier,
        mpi_comm,
        mpi_is_root,
        mpi_rank,
        mpi_root,
        mpi_size,
        pprint,
    )

    assert (mpi_rank(), mpi_size(), mpi_is_root(), mpi_root()) == (0, 1, True, True)
    assert mpi_comm().bcast("x", root=0) == "x"
    mpi_barrier()
    pprint("everyone")
    pprint("rank 1 only", rank=1)
    with MpiTimer("timed") as timer:
        pass
    out = capsys.readouterr().out
    assert "|0) everyone" in out and "rank 1 only" not in out
    assert "|0) timed -- Elapsed:" in out and timer.time >= 0


def test_mpi_helpers_use_the_engines_communicator():
    from mpi4py import MPI

    from dosna.util.mpi import mpi_comm

    comm = MPI.COMM_SELF
    dn.use(engine="mpi", engine_kw={"comm": comm})
    assert mpi_comm() is comm
    assert dn.status().engine.params["comm"] is comm


def test_status_is_the_engine_backend_pair(capsys):
    dn.use(backend="hdf5", engine="jl", engine_kw={"njobs": 2})
    engine, backend = dn.status()
    assert (engine.name, backend.name) == ("joblib", "hdf5")
    assert engine.params["njobs"] == 2 and engine.params["jlbackend"] == "threading"
    assert capsys.readouterr().out == ""  # show=False by default
    dn.status(show=True)
    assert "hdf5" in capsys.readouterr().out
    assert dn.status().report()["backends"]["ram"] is None  # today's report, still there


def test_use_keeps_engine_options_given_earlier():
    dn.use(engine="jl", engine_kw={"njobs": 3})
    dn.use(backend="hdf5")
    assert dn.status().engine.params["njobs"] == 3
    dn.use(engine="cpu")
    assert dn.status().engine.params == {}
    dn.use(engine="jl")  # selected again: its options come back, as in the original
    assert dn.status().engine.params["njobs"] == 3
    dn.use(engine="jl", engine_kw={"jlbackend": "threading"})  # new options update them
    assert dn.status().engine.params["njobs"] == 3
    con = dn.Connection("kept", backend="ram")
    assert con.engine.njobs == 3


def test_compatible_as_the_all_backends_example_uses_it():
    dn.use(backend="ram", engine="jl", engine_kw={"jlbackend": "multiprocessing"})
    engine, backend = dn.status()
    assert not dn.compatible(engine, backend)  # worker processes cannot see this process's memory
    dn.use(engine="jl", engine_kw={"jlbackend": "threading"})
    assert dn.compatible(*dn.status())
    assert dn.compatible("cpu", "hdf5")


def test_ram_connection_accepts_a_directory(tmp_path):
    with dn.Connection("dosna-tutorial", backend="ram", directory=str(tmp_path)) as con:
        con.create_dataset("x", data=np.arange(4))
        assert "x" in con
    assert list(tmp_path.iterdir()) == []  # ignored: nothing goes to disk


def test_create_dataset_positional_order_is_the_originals():
    # create_dataset(name, shape, dtype, fillvalue, data, chunk_size)
    data = np.arange(12.0).reshape(3, 4)
    with dn.Connection("positional", backend="ram") as con:
        ds = con.create_dataset("a", None, None, 0, data, (2, 2))
        assert ds.chunk_size == (2, 2) and ds.chunk_grid == (2, 2)
        np.testing.assert_array_equal(ds[...], data)
        ds = con.create_dataset("b", (5, 5), np.float32, 7, None, 3)
        assert ds.dtype == np.float32 and ds.chunk_size == (3, 3)
        np.testing.assert_array_equal(ds[...], np.full((5, 5), 7, np.float32))
