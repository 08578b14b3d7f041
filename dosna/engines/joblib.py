"""The ``joblib`` engine: chunk work spread over threads or worker processes."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from ..errors import DosnaError
from .base import Engine, T, run_in_threads

try:
    import joblib
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..errors import BackendUnavailableError

    raise BackendUnavailableError("the joblib engine needs joblib: pip install 'dosna[joblib]'") from exc

__all__ = ["JoblibEngine"]

_BACKENDS = {"threading": "threading", "loky": "loky", "multiprocessing": "loky", "processes": "loky"}


class JoblibEngine(Engine):
    """Run chunk tasks on a joblib pool of threads (default) or processes.

    Parameters
    ----------
    njobs : int, optional
        Number of workers (default: the number of CPUs).
    jlbackend : {'threading', 'loky'}, default 'threading'
        Threads share this process's memory (any backend works; NumPy, h5py
        and file I/O release the GIL for much of their work); they come from a
        pool kept between calls, as starting joblib's thread pool on every
        slice would cost more than the chunks it reads. ``'loky'``
        (alias ``'multiprocessing'``) uses worker processes, for work that
        holds the GIL; it needs a backend whose data processes share, so the
        ``ram`` backend is refused.
    **parallel_options
        Passed to :class:`joblib.Parallel` (e.g. ``batch_size``, ``verbose``).
    """

    name: ClassVar[str] = "joblib"

    def __init__(
        self, njobs: int | None = None, jlbackend: str = "threading", **parallel_options: Any
    ) -> None:
        if jlbackend not in _BACKENDS:
            raise ValueError(f"jlbackend must be one of {sorted(_BACKENDS)}, not {jlbackend!r}")
        if njobs is not None and (not isinstance(njobs, int) or njobs < 1):
            raise ValueError(f"njobs must be a positive int, not {njobs!r}")
        self.njobs = njobs or os.cpu_count() or 1
        self.jlbackend = _BACKENDS[jlbackend]
        self.shares_memory = self.jlbackend == "threading"  # type: ignore[misc]
        self.parallel_options = parallel_options

    def check_backend(self, backend: Any) -> None:
        if not self.shares_memory and not backend.shared_between_processes:
            raise DosnaError(
                f"the {backend.name} backend keeps its data in one process, so worker processes "
                "would write into copies that are thrown away; use jlbackend='threading' "
                "or a backend on shared storage (hdf5, ceph, s3)"
            )

    def _parallel(self, **extra: Any) -> joblib.Parallel:
        return joblib.Parallel(
            n_jobs=self.njobs, backend=self.jlbackend, **{**self.parallel_options, **extra}
        )

    def run(self, func: Callable[[T], Any], items: Iterable[T], io_threads: int = 1) -> None:
        if self.shares_memory:
            # A persistent pool: starting joblib's thread pool on every call
            # costs more than reading a chunk.
            run_in_threads(func, items, max(self.njobs, io_threads))
            return
        # Items are taken from the iterator here, a bounded batch at a time:
        # that keeps streamed work (load) streamed, and a work generator that
        # reads another dataset never runs inside joblib's dispatch threads.
        iterator = iter(items)
        while batch := list(itertools.islice(iterator, self.njobs * 8)):
            if self.njobs == 1 or len(batch) < 2:
                super().run(func, batch, io_threads)
            else:
                self._parallel()(joblib.delayed(func)(item) for item in batch)

    def imap(self, func: Callable[[T], Any], items: Iterable[T]) -> Iterator[Any]:
        items = list(items)
        if self.njobs == 1 or len(items) < 2 or self.shares_memory:
            return map(func, items)
        return self._parallel(return_as="generator_unordered")(joblib.delayed(func)(i) for i in items)

    def __repr__(self) -> str:
        return f"<JoblibEngine {self.njobs} x {self.jlbackend}>"
