"""The library logs through the ``dosna`` logger: likely mistakes at WARNING, decisions at DEBUG."""

from __future__ import annotations

import importlib
import logging
import textwrap

import numpy as np
from mpi_helpers import python_mpi, requires_mpiexec

import dosna as dn


def test_library_loggers_are_children_of_dosna_and_silent_by_default():
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("dosna").handlers)
    for name in ("dosna.connection", "dosna.backends.hdf5", "dosna.engines.mpi", "dosna.progress"):
        assert importlib.import_module(name).log.name == name


def test_thousands_of_tiny_chunks_warn_at_create(caplog):
    with dn.Connection("logs", backend="ram", engine="cpu") as con, caplog.at_level(logging.WARNING, "dosna"):
        con.create_dataset("tiny", shape=(200, 200), dtype="f4", chunk_size=5)  # 1600 chunks of 100 B
        con.create_dataset("fine", shape=(200, 200), dtype="f4")  # automatic chunks
        con.create_dataset("few", shape=(20, 20), dtype="f4", chunk_size=1)  # 400 chunks: not thousands
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name == "dosna.connection"
    assert "'tiny' gets 1600 chunks of 100 bytes" in warnings[0].getMessage()


def test_ram_backend_logs_the_directory_it_ignores(caplog):
    with caplog.at_level(logging.DEBUG, "dosna"):
        dn.Connection("logs", backend="ram", directory="/nowhere")
    assert any("directory='/nowhere' ignored" in r.getMessage() for r in caplog.records)


def test_hdf5_cache_decisions_at_debug(tmp_path, caplog):
    with dn.Connection("c", backend="hdf5", engine="cpu", directory=str(tmp_path), cache_size=1) as con:
        ds = con.create_dataset("d", data=np.arange(400.0).reshape(20, 20), chunk_size=10)
        with caplog.at_level(logging.DEBUG, "dosna"):
            assert ds[0, 0] == 0 and ds[0, 15] == 15  # small reads: memory maps, one fits
    assert any("mapped-chunk cache full (1 files)" in r.getMessage() for r in caplog.records)


@requires_mpiexec
def test_mpi_waits_at_debug(tmp_path):
    script = textwrap.dedent("""
        import logging, os, sys, time, dosna as dn
        logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s', stream=sys.stdout)
        con = dn.connection('w', backend='hdf5', engine='mpi', directory=sys.argv[1])
        if con.mpi_rank == 0:
            time.sleep(0.5)
        con.mpi_barrier()
        sys.stdout.flush()
    """)
    result = python_mpi(2, script, str(tmp_path))
    assert result.returncode == 0, str(result)
    waiting = [line for line in result.rank_lines(1) if "waiting for every rank in a barrier" in line]
    assert waiting and waiting[0].startswith("dosna.engines.mpi rank 1:"), str(result)
    assert any("waited" in line for line in result.rank_lines(1)), str(result)
