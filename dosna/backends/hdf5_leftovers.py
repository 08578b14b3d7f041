"""What killed processes leave in an hdf5 store, found and removed for ``dosna fsck``.

An hdf5 connection directory holds, besides its datasets:

- temporary files ``.<file>.<pid>.<thread>.tmp``: a chunk or metadata file
  being written, renamed into place when complete (kind ``"temporary"``);
- directories ``<dataset>/<uid>/`` whose uid is not the committed dataset's:
  the chunks of a creation that has not committed its metadata, or never will
  (kind ``"uncommitted"``), and, for datasets written before uids existed,
  chunk files in a ``<dataset>/`` directory without metadata;
- directories ``.deleted-<dataset>-<hex>``: a deleted dataset moved aside but
  not yet removed (kind ``"deleted"``).

Nothing here decides what may be removed: :mod:`dosna.fsck` applies the age
rule. Symbolic links are never followed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable

from .base import Leftover

__all__ = ["find", "remove"]

_UID = re.compile(r"[0-9a-f]{32}")
_DELETED = re.compile(r"\.deleted-(?P<name>.+)-[0-9a-f]{32}")


def _temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _tree(path: str) -> tuple[float, int]:
    """(newest mtime, total bytes) of ``path`` and everything under it, without following links."""
    st = os.lstat(path)
    newest, size = st.st_mtime, 0
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(os.path.join(top, name))
                newest = max(newest, st.st_mtime)
                size += st.st_size if name in files else 0
    return newest, size


def _temporaries(dataset: str, directory: str, now: float) -> list[Leftover]:
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(directory) as entries:
        for e in entries:
            if _temporary(e.name) and e.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    st = e.stat(follow_symlinks=False)
                    found.append(Leftover("temporary", dataset, e.path, now - st.st_mtime, st.st_size))
    return found


def find(
    root: str, meta_file: str, committed_uid: Callable[[str], tuple[bool | None, str | None]]
) -> list[Leftover]:
    """Everything under ``root`` that no dataset refers to.

    ``committed_uid(name)`` tells whether dataset ``name`` exists (True,
    False, or None when its metadata cannot be read) and its uid; nothing
    under a dataset whose metadata cannot be read is reported.
    """
    now = time.time()
    found: list[Leftover] = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    for e in entries:
        deleted = _DELETED.fullmatch(e.name)
        if deleted and e.is_dir(follow_symlinks=False):
            newest, size = _tree(e.path)
            found.append(Leftover("deleted", deleted["name"], e.path, now - newest, size))
            continue
        if _temporary(e.name) or e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
            continue
        exists, uid = committed_uid(e.name)
        if exists is None:
            continue
        found.extend(_temporaries(e.name, e.path, now))
        legacy_chunks = False
        with contextlib.suppress(FileNotFoundError), os.scandir(e.path) as inner:
            for sub in inner:
                if _UID.fullmatch(sub.name) and sub.is_dir(follow_symlinks=False):
                    if exists and sub.name == uid:
                        found.extend(_temporaries(e.name, sub.path, now))
                    else:
                        newest, size = _tree(sub.path)
                        found.append(Leftover("uncommitted", e.name, sub.path, now - newest, size))
                elif not exists and sub.name != meta_file and not _temporary(sub.name):
                    legacy_chunks = True
        if not exists and legacy_chunks:
            newest, size = _tree(e.path)
            found.append(Leftover("uncommitted", e.name, e.path, now - newest, size))
    return found


def remove(root: str, meta_file: str, item: Leftover) -> None:
    """Remove ``item`` (found by :func:`find` under ``root``); gone already is fine."""
    path = item.location
    if os.path.dirname(path) not in (root, os.path.join(root, item.dataset)) and not (
        item.kind == "temporary"
        and os.path.dirname(os.path.dirname(path)) == os.path.join(root, item.dataset)
    ):
        raise ValueError(f"{path!r} is not a leftover of the store {root!r}")
    if item.kind == "temporary":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    if item.kind == "uncommitted" and path == os.path.join(root, item.dataset):
        # a dataset directory without metadata: its chunk files, then the directory if empty
        if os.path.exists(os.path.join(path, meta_file)):
            return  # committed meanwhile
        with os.scandir(path) as entries:
            for e in entries:
                if not e.is_dir(follow_symlinks=False) and e.name != meta_file:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path)
    else:
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):  # only if empty: another creation may be using it
        os.rmdir(os.path.join(root, item.dataset))
