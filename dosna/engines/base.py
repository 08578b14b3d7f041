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

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

__all__ = ["Engine"]

T = TypeVar("T")


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

    def run(self, func: Callable[[T], Any], items: Iterable[T]) -> None:
        """Call ``func`` on every item; raise the first error once all tasks have stopped."""
        for item in items:
            func(item)

    def imap(self, func: Callable[[T], Any], items: Iterable[T]) -> Iterable[Any]:
        """Yield ``func(item)`` for every item, in any order."""
        return map(func, items)

    def share(self, items: Sequence[T]) -> Sequence[T]:
        """The items this process handles in a collective step."""
        return items

    def run_collective(self, func: Callable[[T], Any], items: Sequence[T]) -> None:
        """Every process of the job runs ``func`` on its share of ``items``."""
        self.run(func, self.share(items))

    def collective(self, func: Callable[[], T]) -> T:
        """Run ``func`` once for the job (on the root) and return its result everywhere."""
        return func()

    def barrier(self) -> None:
        """Wait until every process of the job gets here."""

    def close(self) -> None:
        """Release workers or communicators."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"
