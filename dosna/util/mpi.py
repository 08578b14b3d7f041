"""The original DosNa's ``dosna.util.mpi``: rank, size, barrier and printing helpers.

The communicator is the one given to the mpi engine (``dn.use(engine='mpi',
engine_kw={'comm': comm})``), else ``MPI.COMM_WORLD``. Importing this module
without mpi4py raises an ImportError that names the extra to install, so the
original's ``try: from dosna.util.mpi import ... except ImportError`` still
works. Barriers wait with the mpi engine's deadline (``$DOSNA_MPI_TIMEOUT``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import registry
from ..engines.mpi import MPI, MpiEngine

__all__ = [
    "MpiMixin",
    "MpiTimer",
    "mpi_barrier",
    "mpi_comm",
    "mpi_is_root",
    "mpi_rank",
    "mpi_root",
    "mpi_size",
    "pprint",
]

log = logging.getLogger(__name__)


def mpi_comm() -> Any:
    """The communicator of the selected mpi engine, else ``MPI.COMM_WORLD``."""
    _, engine, options = registry.selected()
    comm = options.get("comm") if engine == "mpi" else None
    return MPI.COMM_WORLD if comm is None else comm


def mpi_rank(comm: Any = None) -> int:
    """This process's rank in ``comm`` (default :func:`mpi_comm`)."""
    return int((comm or mpi_comm()).Get_rank())


def mpi_size(comm: Any = None) -> int:
    """The number of processes in ``comm`` (default :func:`mpi_comm`)."""
    return int((comm or mpi_comm()).Get_size())


def mpi_is_root(comm: Any = None) -> bool:
    """Whether this process is rank 0."""
    return mpi_rank(comm) == 0


mpi_root = mpi_is_root


def mpi_barrier(comm: Any = None) -> None:
    """Wait until every process of ``comm`` gets here (the job is aborted after the mpi timeout)."""
    MpiEngine(comm or mpi_comm()).barrier()


def pprint(*args: Any, rank: int | None = None, comm: Any = None, **kwargs: Any) -> None:
    """``print`` prefixed with ``|rank)``; with ``rank=``, only on that rank."""
    me = mpi_rank(comm)
    if rank is None or rank == me:
        width = len(str(max(mpi_size(comm) - 1, 0)))
        sep, end = kwargs.pop("sep", " "), kwargs.pop("end", "\n")
        # one string with its end, one write: lines of different ranks do not interleave
        print(sep.join([f"|{me:{width}d})", *map(str, args)]) + end, end="", **kwargs)


class MpiTimer:
    """Time a ``with`` block across ranks: a barrier at its end, then one line on ``rank``.

    Attributes
    ----------
    time : float
        Elapsed seconds, set at the end of the block (on every rank).
    """

    def __init__(self, name: str = "Timer", rank: int = 0) -> None:
        self.name = name
        self.rank = rank
        self.tstart = -1.0
        self.tend = -1.0
        self.time = 0.0

    def __enter__(self) -> MpiTimer:
        self.tstart = time.time()
        return self

    def __exit__(self, *exc: Any) -> None:
        log.debug("MpiTimer %r: waiting for every rank", self.name)
        mpi_barrier()
        self.tend = time.time()
        self.time = self.tend - self.tstart
        pprint(f"{self.name} -- Elapsed: {self.time:.4f} seconds", rank=self.rank)


class MpiMixin:
    """``mpi_comm``, ``mpi_size``, ``mpi_rank``, ``mpi_is_root`` and ``mpi_barrier()`` for a class."""

    def __init__(self, mpi_comm_: Any) -> None:
        self.mpi_comm = mpi_comm_
        self.mpi_size = mpi_comm_.Get_size()
        self.mpi_rank = mpi_comm_.Get_rank()
        self.mpi_is_root = self.mpi_rank == 0

    def mpi_barrier(self) -> None:
        mpi_barrier(self.mpi_comm)
