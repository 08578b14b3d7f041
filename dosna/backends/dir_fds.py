"""Directory descriptors kept open between chunk operations, shared by threads.

Opening a chunk directory without following links costs one ``openat`` per
path component, more than reading a small chunk. The hdf5 backend keeps the
descriptors of chunk directories named by a dataset's uid open here: a uid
names one incarnation of a dataset, so its directory is never replaced by
another one's, and a descriptor kept open keeps pointing at the right one
(or at a directory that was deleted, where no file can be found or made).

Before a kept descriptor is used, the kernel's name for it
(``/proc/self/fd/N``) must still be the one it had when it was opened, which
was checked component by component without following links: a directory
moved away (out of the store, say) and replaced by a link is opened again
the careful way, and refused. Where ``/proc`` is not mounted nothing is kept.

A descriptor is closed only when no thread uses it, so a number is never
reused for another file while a thread still holds it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DirDescriptors"]


class _Held:
    __slots__ = ("dropped", "fd", "path", "users")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self.users = 0
        self.dropped = False


def _kernel_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


class DirDescriptors:
    """A bounded LRU of open directory descriptors, keyed by the directory's area name."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._lock = threading.Lock()

    def use(self, area: str, open_dir: Callable[[], int | None]) -> tuple[int | None, Callable[[], None]]:
        """``(fd, done)``: the descriptor of ``area`` (opened with ``open_dir`` when not held)
        and what to call when the caller no longer uses it. ``fd`` is None if the
        directory does not exist."""
        with self._lock:
            held = self._held.get(area)
            if held is not None:
                if _kernel_path(held.fd) == held.path:
                    self._held.move_to_end(area)
                    held.users += 1
                    return held.fd, lambda: self._release(held)
                self._drop(self._held.pop(area))  # moved, replaced or deleted since
        fd = open_dir()
        if fd is None:
            return None, _nothing
        path = _kernel_path(fd)
        with self._lock:
            if path is None or area in self._held or not self._make_room():
                return fd, lambda: os.close(fd)  # no /proc, another thread was quicker, or all busy
            held = self._held[area] = _Held(fd, path)
            held.users = 1
        return fd, lambda: self._release(held)

    def discard_under(self, prefix: str) -> None:
        """Forget the directories whose area starts with ``prefix`` (deleted or about to be)."""
        with self._lock:
            for area in [a for a in self._held if a.startswith(prefix)]:
                self._drop(self._held.pop(area))

    def clear(self) -> None:
        self.discard_under("")

    def _make_room(self) -> bool:
        while len(self._held) >= self.capacity:
            idle = next((a for a, h in self._held.items() if h.users == 0), None)
            if idle is None:
                return False
            self._drop(self._held.pop(idle))
        return True

    def _release(self, held: _Held) -> None:
        with self._lock:
            held.users -= 1
            if held.dropped and held.users == 0:
                os.close(held.fd)

    @staticmethod
    def _drop(held: _Held) -> None:
        held.dropped = True
        if held.users == 0:
            os.close(held.fd)


def _nothing() -> None:
    return None
