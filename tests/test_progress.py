"""Progress bars of whole-dataset operations: in a terminal by default, never in a pipe,
root only under MPI, and a setting that turns them off."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap

import pytest
from mpi_helpers import python_mpi, requires_mpiexec

pytest.importorskip("tqdm")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORK = """
import sys, numpy as np, dosna as dn, dosna.progress
dosna.progress.AUTO_DELAY = 0  # the operations here are quick; show their bars at once
backend = sys.argv[1] if len(sys.argv) > 1 else 'ram'
options = {'directory': sys.argv[2]} if backend == 'hdf5' else {}
if len(sys.argv) > 3:
    dn.set_progress(sys.argv[3] == 'on')
engine = sys.argv[4] if len(sys.argv) > 4 else 'cpu'
with dn.Connection('bars', backend=backend, engine=engine, **options) as con:
    ds = con.create_dataset('src', data=np.arange(4096.0).reshape(64, 64), chunk_size=8)
    m = ds.map(np.sqrt, 'mapped')
    ds.apply(np.negative)
    c = ds.clone('copy', data=True)
    c.clear()
    assert np.array_equal(m[...], np.sqrt(np.arange(4096.0).reshape(64, 64)))
print('done')
"""
OPERATIONS = ("load src", "map src -> mapped", "apply src", "clone src -> copy", "clear copy")


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WORK, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
    )


def test_no_bars_when_stderr_is_not_a_terminal():
    done = _run(env={"DOSNA_PROGRESS": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done" and done.stderr == ""


def test_bars_in_a_terminal_by_default():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    env = {k: v for k, v in os.environ.items() if k != "DOSNA_PROGRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORK],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**env, "PYTHONPATH": ROOT},
    )
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            pytest.fail(f"no output for 60 s; so far: {seen!r}")
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        seen += data
    assert proc.wait(timeout=60) == 0
    os.close(master)
    text = seen.decode(errors="replace")
    for what in OPERATIONS:
        assert what in text, text
    assert "/64" in text  # the bar counts chunks


@pytest.mark.parametrize("backend,engine", [("ram", "cpu"), ("hdf5", "jl")])
def test_forced_on_shows_every_operation(tmp_path, backend, engine):
    done = _run(backend, str(tmp_path), "on", engine, env={"DOSNA_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr
    for what in OPERATIONS:
        assert what in done.stderr, done.stderr


def test_setting_turns_bars_off(tmp_path):
    done = _run("hdf5", str(tmp_path), "off", env={"DOSNA_PROGRESS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_environment_turns_bars_on():
    done = _run(env={"DOSNA_PROGRESS": "1"})
    assert done.returncode == 0 and "load src" in done.stderr, done.stderr


@requires_mpiexec
def test_only_the_root_rank_shows_bars(tmp_path):
    script = WORK.replace("engine = sys.argv[4] if len(sys.argv) > 4 else 'cpu'", "engine = 'mpi'")
    result = python_mpi(2, textwrap.dedent(script), "hdf5", str(tmp_path), env={"DOSNA_PROGRESS": "1"})
    assert result.returncode == 0, str(result)
    # bars end lines with carriage returns: split the output at the rank prefixes instead of lines
    pieces = re.split(r"\[(\d+)\] ", result.output)
    said = {
        rank: "".join(pieces[i + 1] for i in range(1, len(pieces), 2) if pieces[i] == rank) for rank in "01"
    }
    for what in OPERATIONS:
        assert what in said["0"], str(result)
    assert "chunk/s" not in said["1"] and "done" in said["1"], str(result)
