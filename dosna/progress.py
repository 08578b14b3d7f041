"""Progress bars for long work: tqdm when it is installed, silence otherwise.

Whole-dataset operations (``load``, ``create_dataset(data=...)``, ``map``,
``apply``, ``clone``, ``clear``) and the ``train`` and ``bench`` commands show a
bar on stderr when it is a terminal and the work takes more than half a
second; under MPI only the root rank shows one, for its share of the chunks.

Turn bars off (or on, even without a terminal) with :func:`set_progress`, or
with the environment variable ``DOSNA_PROGRESS=0`` (``1``)::

    import dosna as dn
    dn.set_progress(False)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, overload

__all__ = ["progress_bar", "progress_enabled", "set_progress", "track"]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: None: decide from the environment and the terminal; True/False: the user's choice.
_setting: bool | None = None
#: Seconds a bar waits before it appears when it was not asked for explicitly.
AUTO_DELAY = 0.5


def set_progress(enabled: bool | None) -> bool | None:
    """Show progress bars always (True), never (False) or in a terminal only (None, the default).

    Returns the previous setting, so that it can be restored.
    """
    global _setting
    previous, _setting = _setting, enabled
    return previous


def _explicit() -> bool | None:
    if _setting is not None:
        return _setting
    env = os.environ.get("DOSNA_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return None


def progress_enabled() -> bool:
    """Whether bars are shown now: the setting, else ``$DOSNA_PROGRESS``, else whether stderr is a terminal."""
    explicit = _explicit()
    if explicit is not None:
        return explicit
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(show: bool, total: int, desc: str, unit: str = "it", leave: bool = True) -> Any:
    """A tqdm bar (``update``, ``set_postfix``, ``close``), or a silent stand-in.

    Pass ``show=False`` on MPI ranks other than the root and when the user
    asked for quiet output; with ``show=True`` the bar still follows
    :func:`progress_enabled`. Without tqdm (``pip install 'dosna[progress]'``)
    nothing is shown.
    """
    if not show or not progress_enabled():
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        log.debug("no progress bar for %s: tqdm is not installed", desc)
        return _Silent()
    delay = 0.0 if _explicit() else AUTO_DELAY
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, delay=delay, leave=leave)


class track(Sequence[T]):
    """``items`` that advance a progress bar as they are taken, for chunk work.

    Slicing gives a tracked slice (engines hand each process its share by
    slicing), so under MPI a rank's bar counts its own share. The bar appears
    when iteration starts and closes when it ends, however it ends.

    Parameters
    ----------
    items : sequence
        The work items (chunk indices).
    desc : str
        What the bar says, e.g. ``"load data"``.
    show : bool, default True
        False for processes that must stay quiet (MPI ranks other than the root).
    """

    def __init__(self, items: Sequence[T], desc: str, show: bool = True) -> None:
        self._items = items
        self.desc = desc
        self.show = show

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> track[T]: ...

    def __getitem__(self, index: int | slice) -> T | track[T]:
        if isinstance(index, slice):
            return track(self._items[index], self.desc, self.show)
        return self._items[index]

    def __iter__(self) -> Iterator[T]:
        if len(self._items) < 2:
            yield from self._items
            return
        bar = progress_bar(self.show, len(self._items), self.desc, unit="chunk", leave=False)
        try:
            for item in self._items:
                yield item
                bar.update()
        finally:
            bar.close()
