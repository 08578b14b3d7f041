"""Check a store and, when asked, repair it: what ``dosna fsck`` runs.

A check opens every dataset (its metadata must parse), optionally reads every
stored chunk (checksums are verified on the way), and lists what killed
processes left behind (see :class:`dosna.backends.base.Leftover`). A repair
removes those leftovers, under one rule: **nothing that changed in the last
``min_age`` seconds is removed** (default one hour). A chunk write takes well
under a second and a creation writes its chunks continuously, so anything
older belongs to a process that is gone; the rule needs no process ids and
holds on storage shared between hosts. Moved-aside deletions are removed
whatever their age: no process reads them. Damaged chunks and metadata are
reported, never changed: only their owner knows what they should hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .backends.base import Leftover
from .errors import ChunkCorruptError, DosnaError, MetadataCorruptError
from .io.chunks import ChunkIO

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

__all__ = ["DEFAULT_MIN_AGE", "Problem", "Report", "check"]

#: Seconds a leftover must have been unchanged before a repair removes it.
DEFAULT_MIN_AGE = 3600.0


@dataclass(frozen=True)
class Problem:
    """Damage a repair cannot undo: unreadable metadata or a corrupt chunk."""

    dataset: str
    message: str


@dataclass
class Report:
    """What :func:`check` found and did.

    Attributes
    ----------
    datasets : list of str
        The datasets checked.
    problems : list of Problem
        Damaged metadata and chunks (never changed).
    leftovers : list of Leftover
        What killed processes left behind, removed or not.
    removed : list of Leftover
        The leftovers a repair removed.
    leftovers_supported : bool
        False when the backend cannot list leftovers (only datasets were checked).
    """

    datasets: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    removed: list[Leftover] = field(default_factory=list)
    leftovers_supported: bool = True

    @property
    def kept(self) -> list[Leftover]:
        """Leftovers still in the store."""
        return [item for item in self.leftovers if item not in self.removed]

    @property
    def clean(self) -> bool:
        """Whether the store holds no damage and no leftovers (any more)."""
        return not self.problems and not self.kept


def removable(item: Leftover, min_age: float) -> bool:
    """Whether a repair may remove ``item`` (see the module's rule)."""
    return item.kind == "deleted" or item.age >= min_age


def check(
    connection: Connection, repair: bool = False, min_age: float = DEFAULT_MIN_AGE, chunks: bool = False
) -> Report:
    """Check the store of ``connection``; with ``repair``, remove old leftovers.

    Parameters
    ----------
    connection : Connection
        An open connection (run this on one process).
    repair : bool, default False
        Remove the leftovers unchanged for at least ``min_age`` seconds.
    min_age : float, default :data:`DEFAULT_MIN_AGE`
        See the module's rule; 0 removes every leftover (only safe when no
        other process uses the store).
    chunks : bool, default False
        Also read every stored chunk of every dataset.

    Returns
    -------
    Report
    """
    if min_age < 0:
        raise ValueError(f"min_age must not be negative, got {min_age}")
    report = Report()
    backend = connection.backend
    for name in connection.datasets():
        report.datasets.append(name)
        try:
            ds = connection.get_dataset(name)
        except MetadataCorruptError as exc:
            report.problems.append(Problem(name, str(exc)))
            continue
        if chunks:
            io = ChunkIO(backend, ds.meta)
            for idx in ds.stored_chunks():
                try:
                    io.read_whole(idx)
                except ChunkCorruptError as exc:
                    report.problems.append(Problem(name, str(exc)))
    try:
        report.leftovers = backend.leftovers()
    except NotImplementedError:
        report.leftovers_supported = False
        return report
    if repair:
        for item in report.leftovers:
            if removable(item, min_age):
                try:
                    backend.remove_leftover(item)
                except (DosnaError, OSError, ValueError) as exc:
                    report.problems.append(Problem(item.dataset, f"cannot remove {item.location}: {exc}"))
                else:
                    report.removed.append(item)
    return report
