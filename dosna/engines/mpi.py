"""The ``mpi`` engine: processes started by ``mpiexec``, one dosna connection each.

Creating and deleting datasets happens on the root rank, and every rank waits
for it; ``load``, ``map``, ``apply``, ``clear`` and ``clone`` split the chunks
between ranks; slicing is local (each rank reads and writes what it asks for).

No collective step can hang: every one of them polls non-blocking MPI calls
against a deadline (``timeout``), and every rank learns whether any rank failed.
An error on one rank makes the same call raise on every rank; a rank that never
arrives makes the others abort the job with a message after ``timeout`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import errors
from .base import Engine, T

try:
    from mpi4py import MPI
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise errors.BackendUnavailableError(
        "the mpi engine needs mpi4py: pip install 'dosna[mpi]' (against the MPI installed here) "
        "or 'dosna[mpi-wheel]' (with the MPICH wheel and its mpiexec)"
    ) from exc

__all__ = ["MpiEngine", "RankFailedError"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = float(os.environ.get("DOSNA_MPI_TIMEOUT", "600"))


class RankFailedError(errors.DosnaError):
    """Another rank failed in a collective step this rank took part in."""


def _error_types() -> dict[str, type[BaseException]]:
    import builtins

    known = {n: getattr(errors, n) for n in errors.__all__}
    known.update(
        {
            n: getattr(builtins, n)
            for n in ("KeyError", "ValueError", "TypeError", "IndexError", "OSError", "RuntimeError")
        }
    )
    return known


class MpiEngine(Engine):
    """Collective dataset management and chunk work split across MPI ranks.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        Communicator (default ``MPI.COMM_WORLD``).
    timeout : float, optional
        Seconds a collective step waits for every rank before the job is
        aborted with a message (default 600, or ``$DOSNA_MPI_TIMEOUT``).
    """

    name: ClassVar[str] = "mpi"

    def __init__(self, comm: Any = None, timeout: float | None = None) -> None:
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)

    def check_backend(self, backend: Any) -> None:
        problem = None
        if self.size > 1 and not backend.shared_between_processes:
            problem = (
                f"the {backend.name} backend keeps its data in each process's memory, so {self.size} "
                "MPI ranks would each see different data; use a backend on shared storage "
                "(hdf5 on a shared filesystem, ceph, s3)"
            )
        self._agree(problem, "connect")

    # -- waiting with a deadline ---------------------------------------------
    def _wait(self, request: Any, what: str) -> None:
        if request.Test():
            return
        start = time.monotonic()
        deadline = start + self.timeout
        log.debug("rank %d: waiting for every rank in %s (up to %g s)", self.rank, what, self.timeout)
        pause = 1e-5
        while not request.Test():
            if time.monotonic() > deadline:
                self._abort(f"rank {self.rank}: gave up waiting {self.timeout:g} s for all ranks in {what}")
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        log.debug("rank %d: waited %.3f s in %s", self.rank, time.monotonic() - start, what)

    def _abort(self, message: str) -> None:
        sys.stderr.write(f"dosna mpi: {message}; aborting the job\n")
        sys.stderr.flush()
        time.sleep(0.5)  # let mpiexec forward the message before the job is torn down
        self.comm.Abort(1)

    def barrier(self) -> None:
        """Wait until every rank gets here (or abort the job after ``timeout``)."""
        if self.size > 1:
            self._wait(self.comm.Ibarrier(), "a barrier")

    def allreduce(self, values: np.ndarray, problem: BaseException | None = None) -> np.ndarray:
        send = np.zeros(np.size(values) + 1, dtype=np.float64)
        if problem is None:
            send[:-1] = np.ravel(values)
        else:
            send[-1] = self.rank + 1  # ranks that failed say so in the same message
        total = np.empty_like(send)
        if self.size > 1:
            self._wait(self.comm.Iallreduce(send, total, op=MPI.SUM), "an allreduce")
        else:
            total[:] = send
        if problem is not None:
            raise problem
        if total[-1]:
            raise RankFailedError("another rank failed during an allreduce; see its error message")
        return total[:-1].reshape(np.shape(values))

    def _agree(self, problem: BaseException | str | None, what: str) -> None:
        """Every rank says whether it failed; if any did, every rank raises."""
        if self.size == 1:
            if isinstance(problem, BaseException):
                raise problem
            if problem:
                raise errors.DosnaError(problem)
            return
        failed = np.array([self.rank if problem is not None else -1], dtype=np.int64)
        first = np.empty(1, dtype=np.int64)
        self._wait(self.comm.Iallreduce(failed, first, op=MPI.MAX), what)
        if first[0] < 0:
            return
        if isinstance(problem, BaseException):
            raise problem
        if problem:
            raise errors.DosnaError(problem)
        raise RankFailedError(f"rank {int(first[0])} failed in {what}; see its error message")

    def _bcast_json(self, payload: str | None, what: str) -> str:
        """Broadcast a JSON text from the root with a deadline (no pickling)."""
        data = (
            np.frombuffer(payload.encode(), dtype=np.uint8) if self.is_root and payload is not None else None
        )
        length = np.array([len(data) if data is not None else 0], dtype=np.int64)
        self._wait(self.comm.Ibcast(length, root=0), what)
        buf = data.copy() if data is not None else np.empty(int(length[0]), dtype=np.uint8)
        self._wait(self.comm.Ibcast(buf, root=0), what)
        return buf.tobytes().decode()

    # -- the engine interface ---------------------------------------------------
    def share(self, items: Sequence[T]) -> Sequence[T]:
        """A contiguous block of ``items`` per rank; blocks differ by at most one item."""
        n = len(items)
        start = self.rank * n // self.size
        stop = (self.rank + 1) * n // self.size
        return items[start:stop]

    def run_and_agree(self, func: Callable[[T], Any], local_items: Iterable[T], io_threads: int = 1) -> None:
        self.barrier()  # nobody changes data another rank may still be reading
        problem: BaseException | None = None
        try:
            self.run(func, local_items, io_threads)
        except Exception as exc:
            problem = exc
        self._agree(
            problem,
            str(
                getattr(func, "__name__", None)
                or getattr(getattr(func, "func", None), "__name__", "a collective step")
            ),
        )

    def collective(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the root; every rank returns its result or raises its error."""
        if self.size == 1:
            return func()
        self.barrier()  # the root acts only once every rank has finished what came before
        payload = None
        if self.is_root:
            try:
                payload = json.dumps({"ok": True, "result": func()})
            except Exception as exc:
                payload = json.dumps({"ok": False, "type": type(exc).__name__, "message": str(exc)})
        answer = json.loads(self._bcast_json(payload, "a collective step"))
        if answer["ok"]:
            return answer["result"]
        error_type = _error_types().get(answer["type"], errors.DosnaError)
        try:
            error = error_type(answer["message"])
        except TypeError:  # errors whose constructor takes structured arguments
            error = errors.DosnaError(f"{answer['type']} on rank 0: {answer['message']}")
        raise error

    def __repr__(self) -> str:
        return f"<MpiEngine rank {self.rank} of {self.size}>"
