"""Launch real mpiexec jobs from tests: own process group, hard timeout, per-rank output."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
requires_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install 'dosna[mpi]')")
_INHERITED = ("PMI_", "PMIX_", "OMPI_", "PRTE_", "HYDRA_", "MPIR_", "I_MPI_")


class MpiResult:
    def __init__(self, returncode: int, output: str, seconds: float) -> None:
        self.returncode, self.output, self.seconds = returncode, output, seconds

    def rank_lines(self, rank: int) -> list[str]:
        return [m.group(1) for m in re.finditer(rf"^\[{rank}\] (.*)$", self.output, re.M)]

    def __str__(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f} s; what the ranks said:\n{self.output}"


def run_mpi(n: int, args: list[str], timeout: float = 300, env: dict | None = None) -> MpiResult:
    """Run ``mpiexec -n n <args>`` with every output line prefixed by its rank.

    The job runs in its own process group; past ``timeout`` the whole group is
    killed and the test fails with everything the ranks printed.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    # Given no HWLOC_XMLFILE, MPICH's mpiexec exports the topology to
    # /tmp/hydra_hwloc_xmlfile_* and leaves it there when a job aborts; with one named
    # (not there: each process then reads the topology itself) it writes none.
    clean.setdefault("HWLOC_XMLFILE", os.path.join(tempfile.gettempdir(), "dosna-tests-no-hwloc-file.xml"))
    clean.update(env or {})
    cmd = [MPIEXEC, "-prepend-rank", "-n", str(n), *args]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=clean
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {n} timed out after {timeout} s and was killed; what the ranks said:\n{out}")
    return MpiResult(proc.returncode, out, time.monotonic() - start)


def python_mpi(n: int, script: str, *args: str, timeout: float = 120, env: dict | None = None) -> MpiResult:
    """Run a Python script (given as text) on ``n`` ranks with ``python -m mpi4py``."""
    return run_mpi(n, [sys.executable, "-m", "mpi4py", "-c", script, *args], timeout=timeout, env=env)
