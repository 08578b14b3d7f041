"""What an engine is: a way to run many chunk tasks, and the collective steps.

An engine never touches a backend. The dataset layer hands it plain callables:

- :meth:`Engine.run` runs a task on every item *in this process's view*
  (get/set of a slice): in parallel where the engine can.
- :meth:`Engine.run_collective` runs a task on every item *across all
  processes of the job*: each process takes its share (load, map, apply,
  clear, clone). Errors are agreed on, so every process raises.
- :meth:`Engine.collective` runs a step once for the whole job (create or
  delete a dataset) and gives every process its result.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, ClassVar, TypeVar

import numpy as np

__all__ = ["Engine", "run_in_threads"]

T = TypeVar("T")

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_in_pool = threading.local()


def _mark_pool_thread() -> None:
    _in_pool.active = True


def _thread_pool(size: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(
                size, thread_name_prefix=f"dosna-{size}", initializer=_mark_pool_thread
            )
        return pool


def _forget_pools() -> None:  # a forked child has the objects but not the threads
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools)


def run_in_threads(func: Callable[[T], Any], items: Iterable[T], threads: int) -> None:
    """Call ``func`` on every item from a pool of ``threads`` threads.

    Items are taken from ``items`` in the calling thread as workers free up (at
    most ``4 * threads`` in flight), so a generator that reads data stays
    streamed. After an error no new items start; once the running ones finish,
    the first error is raised. Called from a pool thread, it runs inline, so
    nested parallel calls cannot deadlock the pool.
    """
    if getattr(_in_pool, "active", False) or threads < 2:
        for item in items:
            func(item)
        return
    pool = _thread_pool(threads)
    pending: set = set()
    errors: list[BaseException] = []
    try:
        for item in items:  # the iterator itself may fail (a source that breaks)
            pending.add(pool.submit(func, item))
            if len(pending) >= 4 * threads:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                errors.extend(e for e in (f.exception() for f in done) if e is not None)
                if errors:
                    break
    finally:
        done, _ = wait(pending)  # never return while tasks still run
    errors.extend(e for e in (f.exception() for f in done) if e is not None)
    if errors:
        raise errors[0]


class Engine:
    """The sequential engine; parallel engines override a few methods.

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of processes in the job.
    is_root : bool
        Whether this process performs collective steps.
    """

    name: ClassVar[str] = "cpu"
    #: Tasks run in this process's memory (threads or inline), so they may
    #: write their results straight into a shared output array.
    shares_memory: ClassVar[bool] = True
    rank: int = 0
    size: int = 1

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"the {self.name} engine takes no options, got {sorted(options)}")

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def check_backend(self, backend: Any) -> None:
        """Refuse a backend this engine cannot work with (raise DosnaError)."""

    def run(self, func: Callable[[T], Any], items: Iterable[T], io_threads: int = 1) -> None:
        """Call ``func`` on every item; raise the first error once all tasks have stopped.

        ``io_threads`` > 1 says the tasks are chunk I/O that the backend serves
        best with that many concurrent requests; the tasks are then thread-safe.
        """
        run_in_threads(func, items, io_threads)

    def imap(self, func: Callable[[T], Any], items: Iterable[T]) -> Iterable[Any]:
        """Yield ``func(item)`` for every item, in any order."""
        return map(func, items)

    def gather(self, out: np.ndarray, task: Any, parts: Iterable[Any], io_threads: int = 1) -> None:
        """Fill ``out`` with what ``task`` reads for every part (a :class:`dosna.io.interfaces.PartReader`).

        Engines whose tasks share this process's memory let each task write its
        part in place; others bring the parts back and place them here.
        """
        if self.shares_memory:
            self.run(functools.partial(task.read_part_into, out), parts, io_threads)
        else:
            for out_sel, data in self.imap(task.read_part, parts):
                out[out_sel] = data

    def share(self, items: Sequence[T]) -> Sequence[T]:
        """The items this process handles in a collective step."""
        return items

    def run_collective(self, func: Callable[[T], Any], items: Sequence[T], io_threads: int = 1) -> None:
        """Every process of the job runs ``func`` on its share of ``items``; errors are agreed on."""
        self.run_and_agree(func, self.share(items), io_threads)

    def run_and_agree(self, func: Callable[[T], Any], local_items: Iterable[T], io_threads: int = 1) -> None:
        """Run ``func`` on this process's items, then make every process raise if any failed."""
        self.run(func, local_items, io_threads)

    def collective(self, func: Callable[[], T]) -> T:
        """Run ``func`` once for the job (on the root) and return its result everywhere.

        The result must be JSON-serialisable (it travels between processes as JSON).
        """
        return func()

    def barrier(self) -> None:
        """Wait until every process of the job gets here."""

    def allreduce(self, values: np.ndarray, problem: BaseException | None = None) -> np.ndarray:
        """The element-wise sum of ``values`` over every process of the job.

        Every process must call it with an array of the same shape. A process
        that failed passes its exception as ``problem`` (``values`` may then be
        anything of the right shape): every process then raises instead of
        waiting for a result, the failed one its own error.
        """
        if problem is not None:
            raise problem
        return np.array(values, dtype=np.float64, copy=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"
