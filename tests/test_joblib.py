"""The joblib engine: threads and worker processes, refusal of ram with processes, concurrent writers."""

from __future__ import annotations

import numpy as np
import pytest

import dosna as dn
from dosna.engines.joblib import JoblibEngine


def test_options_and_aliases():
    dn.use(engine="jl", njobs=3)
    try:
        con = dn.Connection("jl-alias", backend="ram")
        assert con.engine.name == "joblib" and con.engine.njobs == 3 and con.engine.shares_memory
    finally:
        dn.use(engine="cpu")
    assert JoblibEngine(jlbackend="multiprocessing").jlbackend == "loky"
    assert not JoblibEngine(jlbackend="loky").shares_memory
    with pytest.raises(ValueError, match="jlbackend"):
        JoblibEngine(jlbackend="dask")
    with pytest.raises(ValueError, match="njobs"):
        JoblibEngine(njobs=0)
    con = dn.Connection(
        "jl-kw", backend="ram", engine="joblib", engine_kw={"njobs": 2, "jlbackend": "threading"}
    )
    assert con.engine.njobs == 2


def test_ram_with_processes_is_refused_clearly():
    con = dn.Connection("jl-ram", backend="ram", engine="joblib", engine_kw={"jlbackend": "loky"})
    with pytest.raises(dn.DosnaError, match="ram backend keeps its data in one process"):
        con.connect()


def _write_block(directory: str, value: int, region: tuple) -> None:
    con = dn.connection("conc", backend="hdf5", directory=directory)
    con["d"][region] = value


def test_worker_processes_write_disjoint_chunks_at_once(tmp_path):
    """Many loky workers write chunk-aligned blocks simultaneously: nothing is lost."""
    import joblib

    shape, chunk = (64, 64), (8, 16)
    with dn.connection("conc", backend="hdf5", directory=tmp_path) as con:
        ds = con.create_dataset("d", shape=shape, dtype="i4", fillvalue=-1, chunk_size=chunk)
        regions = [(slice(i, i + 8), slice(j, j + 16)) for i in range(0, 64, 8) for j in range(0, 64, 16)]
        joblib.Parallel(n_jobs=4, backend="loky")(
            joblib.delayed(_write_block)(str(tmp_path), k, r) for k, r in enumerate(regions)
        )
        expected = np.empty(shape, "i4")
        for k, r in enumerate(regions):
            expected[r] = k
        np.testing.assert_array_equal(ds[...], expected)


def test_processes_run_map_and_load_in_workers(tmp_path):
    data = np.arange(20 * 12, dtype="f8").reshape(20, 12)
    with dn.connection(
        "procs",
        backend="hdf5",
        directory=tmp_path,
        engine="joblib",
        engine_kw={"njobs": 2, "jlbackend": "loky"},
    ) as con:
        ds = con.create_dataset("d", data=data, chunk_size=(5, 5))
        out = ds.map(lambda c: c + 1, "plus")  # a lambda, shipped to worker processes
        np.testing.assert_array_equal(out[...], data + 1)
        copy = con.create_dataset("copy", shape=data.shape, dtype="f4", chunk_size=(3, 7))
        copy.load(ds)  # a dosna source read while workers write
        np.testing.assert_array_equal(copy[...], data.astype("f4"))
