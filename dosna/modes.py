"""Open modes of a store, as h5py and zarr spell them, and the read-only guard.

====  ==========================================================
mode  meaning
====  ==========================================================
r     read only; the store must exist; every write is refused
r+    read and write; the store must exist
a     read and write; the store is created if missing (default)
w-    create a new store; fail if it exists (``x`` is the same)
w     create the store if missing, and delete every dataset in it
====  ==========================================================

Whether a store exists is the backend's :meth:`store_exists` (hdf5: the
directory; s3: the bucket, or with a prefix an object under it; ceph: the pool,
or with a prefix its dataset index). A backend without it counts a store that
holds no dataset as missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ReadOnlyError, StoreExistsError, StoreNotFoundError

__all__ = ["MODES", "check_mode", "open_store", "refuses_read_only"]

MODES = ("r", "r+", "a", "w-", "w")
_ALIASES = {"x": "w-"}
F = TypeVar("F", bound=Callable[..., Any])


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES` (``"x"`` means ``"w-"``); ValueError otherwise."""
    mode = _ALIASES.get(mode, mode) if isinstance(mode, str) else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    return mode


def _exists(backend: Any) -> bool | None:
    probe = getattr(backend, "store_exists", None)
    return None if probe is None else bool(probe())


def open_store(engine: Any, backend: Any, mode: str) -> None:
    """Connect ``backend`` as ``mode`` says. Collective under the mpi engine.

    Existence is decided once, on the root, before anything is created, so every
    rank agrees; ``"w"`` deletes the datasets on the root only.

    Raises
    ------
    StoreNotFoundError
        ``"r"`` or ``"r+"`` and the store does not exist (nothing is created).
    StoreExistsError
        ``"w-"`` and the store exists.
    """
    exists = engine.collective(lambda: _exists(backend)) if mode in ("r", "r+", "w-") else None
    _refuse(mode, exists, backend)
    backend.connect()
    if exists is None and mode in ("r", "r+", "w-"):
        try:
            _refuse(mode, bool(engine.collective(lambda: bool(backend.list_datasets()))), backend)
        except BaseException:
            backend.disconnect()
            raise
    if mode == "w":
        engine.collective(lambda: _delete_all(backend))


def _refuse(mode: str, exists: bool | None, backend: Any) -> None:
    if exists is False and mode in ("r", "r+"):
        raise StoreNotFoundError(f"store {backend.location} does not exist (mode {mode!r} never creates one)")
    if exists is True and mode == "w-":
        raise StoreExistsError(f"store {backend.location} already exists (mode 'w-' wants a new one)")


def _delete_all(backend: Any) -> None:
    for name in backend.list_datasets():
        backend.delete_dataset(name)


def _connection_of(obj: Any) -> Any:
    while not hasattr(obj, "check_writable"):
        for attr in ("connection", "dataset", "_dataset"):  # no truth tests: a connection has a len()
            if hasattr(obj, attr):
                obj = getattr(obj, attr)
                break
        else:
            raise TypeError(f"{type(obj).__name__} reaches no connection")
    return obj


def refuses_read_only(what: str) -> Callable[[F], F]:
    """Decorate a method that writes: on a read-only connection it raises ReadOnlyError first.

    The method's object is a connection, or reaches one through ``connection``,
    ``dataset`` or ``_dataset``.
    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            _connection_of(self).check_writable(what)
            return method(self, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def read_only_error(what: str, where: str) -> ReadOnlyError:
    """The error for an attempt to ``what`` on the read-only store ``where``."""
    return ReadOnlyError(f"cannot {what}: {where} is open read-only (mode 'r')")
