"""The small interface every storage backend implements.

A backend stores, for one connection, a JSON metadata document per dataset and
one object per chunk. It knows nothing about slicing beyond
:meth:`Backend.read_chunk_part`, whose default applies the selection to a whole
chunk; backends that can read part of a stored chunk cheaply override it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import DatasetNotFoundError as DatasetNotFoundError
from ..errors import StoreUnavailableError
from ..indexing import ChunkSel, read_selection
from ..metadata import DatasetMeta, chunk_area

__all__ = ["Backend", "IOHints", "Leftover", "chunk_area", "chunk_key", "parse_chunk_key"]

# The names the original DosNa exported from this module, mapped onto today's
# classes: ``from dosna.backends.base import DatasetNotFoundError`` keeps working.
ConnectionError = StoreUnavailableError
_ORIGINAL_NAMES = {
    "BackendConnection": ("..connection", "Connection"),
    "BackendDataset": ("..dataset", "Dataset"),
    "BackendDataChunk": ("..dataset", "DataChunk"),
}


def __getattr__(name: str) -> Any:  # imported lazily: connection.py imports this module
    if name in _ORIGINAL_NAMES:
        import importlib

        module, attr = _ORIGINAL_NAMES[name]
        return getattr(importlib.import_module(module, __package__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class IOHints:
    """How a backend's chunk I/O is best driven: one value the I/O layer decides from.

    Attributes
    ----------
    threads : int
        Concurrent chunk requests the backend serves best.
    parallel_min_part : int
        Chunk parts smaller than this many bytes are read in the calling
        thread: per-chunk Python work dominates and threads would contend for
        the GIL.
    parallel_max_part : int or None
        Parts larger than this are read one at a time too (a backend bound by
        the CPU it shares with its server); None: no limit.
    ranged_read_fraction : float
        A partial read of at most this fraction of a chunk fetches only the
        bytes it needs.
    zero_copy_views : bool
        :meth:`Backend.read_chunk_view` returns views of memory or mapped
        files (no I/O to wait for).
    """

    threads: int = 1
    parallel_min_part: int = 1 << 16
    parallel_max_part: int | None = None
    ranged_read_fraction: float = 0.5
    zero_copy_views: bool = False

    def read_threads(self, part_nbytes: float) -> int:
        """How many concurrent reads pay off when each reads about ``part_nbytes``."""
        if part_nbytes < self.parallel_min_part:
            return 1
        if self.parallel_max_part is not None and part_nbytes > self.parallel_max_part:
            return 1
        return self.threads


@dataclass(frozen=True)
class Leftover:
    """Something in a store that no dataset refers to: what a killed process left behind.

    Attributes
    ----------
    kind : str
        ``"temporary"``: a chunk or metadata file being written (a writer
        renames it into place when done); ``"uncommitted"``: the chunks of a
        creation that never committed its metadata (killed, or still running);
        ``"deleted"``: what a deletion had moved aside but not yet removed.
    dataset : str
        The dataset name it is stored under.
    location : str
        Where it is (path, key prefix or object), for messages.
    age : float
        Seconds since it last changed (the newest of its parts).
    size : int
        Bytes it takes.
    """

    kind: str
    dataset: str
    location: str
    age: float
    size: int


def chunk_key(idx: tuple[int, ...]) -> str:
    """The name of chunk ``idx`` inside its dataset: ``"3.0.12"`` (``"0"`` for 0-d)."""
    return ".".join(map(str, idx)) if idx else "0"


_CANONICAL_INDEX = re.compile(r"0|[1-9][0-9]*")


def parse_chunk_key(key: str, ndim: int, grid: Sequence[int] | None = None) -> tuple[int, ...] | None:
    """Inverse of :func:`chunk_key`; None if ``key`` names no chunk of an ``ndim``-d dataset.

    Only the exact names :func:`chunk_key` gives are chunks: ASCII digits, no
    leading zeros, and (with ``grid``, the dataset's chunk grid) inside the grid.
    Anything else found in a store (``00.1``, ``99.99`` in a 2 x 2 grid, other
    scripts' digits) is not a chunk of the dataset and is ignored.
    """
    if ndim == 0:
        return () if key == "0" else None
    parts = key.split(".")
    if len(parts) != ndim or not all(_CANONICAL_INDEX.fullmatch(p) for p in parts):
        return None
    idx = tuple(int(p) for p in parts)
    if grid is not None and any(i >= g for i, g in zip(idx, grid)):
        return None
    return idx


class Backend(ABC):
    """Storage for one connection: dataset metadata documents and chunks.

    Parameters
    ----------
    name : str
        The connection name (a directory, pool or bucket, depending on the backend).
    **options
        Backend-specific options, documented on each subclass.

    Notes
    -----
    Chunk arrays passed to :meth:`write_chunk` have the chunk's stored shape
    (``meta.stored_shape(idx)``: the full chunk size, or the valid region for
    format-1 datasets) and the dataset's dtype. Arrays returned by
    :meth:`read_chunk` may be read-only views: callers copy before modifying.
    """

    #: Name under which the backend is registered.
    name: ClassVar[str] = ""
    #: Whether separate processes share what this backend stores.
    shared_between_processes: ClassVar[bool] = True
    #: Concurrent chunk requests the backend serves best (see :class:`IOHints`;
    #: user functions never run concurrently because of it).
    io_threads: int = 1

    def __init__(self, name: str, **options: Any) -> None:
        self.connection_name = name

    # -- lifecycle ---------------------------------------------------------
    def connect(self) -> None:
        """Open whatever the backend needs (called by ``Connection.connect``)."""

    def disconnect(self) -> None:
        """Release resources (called by ``Connection.disconnect``)."""

    @property
    def location(self) -> str:
        """Where the data lives, for messages and ``repr``."""
        return self.connection_name

    # -- datasets ----------------------------------------------------------
    @abstractmethod
    def list_datasets(self) -> list[str]:
        """Names of the datasets stored on this connection, sorted."""

    @abstractmethod
    def read_meta(self, dataset: str) -> bytes | None:
        """The metadata document of ``dataset``, or None if it does not exist."""

    @abstractmethod
    def create_meta(self, dataset: str, data: bytes) -> None:
        """Store a new dataset's metadata; raise DatasetExistsError if it exists."""

    @abstractmethod
    def update_meta(self, dataset: str, data: bytes) -> None:
        """Replace an existing dataset's metadata atomically."""

    @abstractmethod
    def delete_dataset(self, dataset: str) -> None:
        """Remove a dataset's metadata and all its chunks; raise DatasetNotFoundError."""

    def meta_location(self, dataset: str) -> str:
        """Where ``dataset``'s metadata is stored, for error messages."""
        return f"{self.location}/{dataset}"

    # -- chunks ------------------------------------------------------------
    @abstractmethod
    def read_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """The whole chunk ``idx`` (valid shape), or None if it was never written."""

    def read_chunk_part(self, meta: DatasetMeta, idx: tuple[int, ...], sel: ChunkSel) -> np.ndarray | None:
        """``chunk[sel]`` in the canonical layout, or None if the chunk is missing."""
        data = self.read_chunk(meta, idx)
        return None if data is None else read_selection(data, sel)

    def read_chunk_view(self, meta: DatasetMeta, idx: tuple[int, ...]) -> np.ndarray | None:
        """The whole chunk ``idx``, possibly as a read-only view of the stored bytes (no copy).

        Backends that can hand out their storage without copying (memory,
        memory-mapped files) override this; the default is :meth:`read_chunk`.
        """
        return self.read_chunk(meta, idx)

    def read_chunk_into(self, meta: DatasetMeta, idx: tuple[int, ...], out: np.ndarray) -> bool:
        """Read the whole chunk ``idx`` into ``out`` (its stored shape, any strides); False if missing."""
        data = self.read_chunk(meta, idx)
        if data is None:
            return False
        out[...] = data
        return True

    @abstractmethod
    def write_chunk(self, meta: DatasetMeta, idx: tuple[int, ...], data: np.ndarray) -> None:
        """Store the whole chunk ``idx`` atomically: readers see the old or the new data."""

    @abstractmethod
    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        """Whether chunk ``idx`` has been written."""

    @abstractmethod
    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        """Remove chunk ``idx`` if it exists (it then reads as the fill value)."""

    @abstractmethod
    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        """Indices of the chunks that have been written."""

    @abstractmethod
    def stored_bytes(self, meta: DatasetMeta) -> int:
        """Bytes the stored chunks of ``meta`` take (what ``Dataset.nbytes_stored`` reports)."""

    def check_meta(self, meta: DatasetMeta) -> None:
        """Refuse (ValueError) a dataset this backend cannot store; called before anything is written.

        The limits every backend shares are checked by
        :meth:`DatasetMeta.create`; this is for a backend's own (the hdf5
        backend's 32 axes, for instance). The default accepts everything.
        """

    def prepare_create(self, meta: DatasetMeta) -> None:
        """Get ready to store the chunks of ``meta``, a dataset about to be created.

        Called once, before any chunk is written, when no dataset of that name
        exists. A dataset without a uid (an older format) shares its area with
        earlier failed creations, whose chunks are removed first.
        """
        if meta.uid is None:
            self.purge_uncommitted(meta)

    def purge_uncommitted(self, meta: DatasetMeta) -> None:
        """Remove the chunks of ``meta``, a creation that did not commit its metadata.

        Only ``meta``'s own area (:func:`chunk_area`) is touched: a dataset of
        the same name another process committed keeps all its chunks.
        """
        for idx in list(self.list_chunks(meta)):
            self.delete_chunk(meta, idx)

    # -- store maintenance (dosna fsck) ----------------------------------------------
    def leftovers(self) -> list[Leftover]:
        """Everything stored that no dataset refers to (see :class:`Leftover`).

        Raises NotImplementedError on backends that cannot list them.
        """
        raise NotImplementedError(f"the {self.name} backend cannot list what killed processes left behind")

    def remove_leftover(self, item: Leftover) -> None:
        """Remove ``item``, found by :meth:`leftovers`; gone already is fine."""
        raise NotImplementedError(f"the {self.name} backend cannot remove leftovers")

    @property
    def hints(self) -> IOHints:
        """How this backend's chunk I/O is best driven."""
        return IOHints(threads=self.io_threads)

    @property
    def zero_copy_views(self) -> bool:
        return self.hints.zero_copy_views

    def chunk_location(self, meta: DatasetMeta, idx: tuple[int, ...]) -> str:
        """Where chunk ``idx`` is stored, for error messages."""
        return f"{self.meta_location(meta.name)}/{chunk_key(idx)}"

    def check_chunk(
        self, meta: DatasetMeta, idx: tuple[int, ...], data: np.ndarray, contiguous: bool = True
    ) -> np.ndarray:
        """Return ``data`` as a chunk of the right shape and dtype (C-contiguous unless told otherwise)."""
        shape = meta.stored_shape(idx)
        if data.shape != shape:
            raise ValueError(f"chunk {idx} has shape {shape}, got data of shape {data.shape}")
        return np.asarray(data, dtype=meta.dtype, order="C" if contiguous else "K")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location!r}>"
