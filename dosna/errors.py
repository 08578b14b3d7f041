"""The exceptions dosna raises.

Every error dosna raises on purpose derives from :class:`DosnaError`. Where a
built-in exception has the same meaning, the dosna error derives from it too, so
``except KeyError`` and ``except ValueError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ChunkCorruptError",
    "CodecUnavailableError",
    "ConnectionClosedError",
    "DatasetChangedError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "DosnaError",
    "InvalidNameError",
    "InvalidOptionError",
    "MetadataCorruptError",
    "ModelFileError",
    "ModelNotFoundError",
    "ModelStateError",
    "ReadOnlyError",
    "StoreExistsError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "UnknownBackendError",
    "UnknownEngineError",
]


class DosnaError(Exception):
    """Base class of every error raised by dosna."""


class DatasetNotFoundError(DosnaError, KeyError):
    """No dataset of that name exists on the connection."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetChangedError(DosnaError, RuntimeError):
    """A dataset handle refers to a dataset that was deleted and created again differently."""


class DatasetExistsError(DosnaError, FileExistsError):
    """A dataset of that name already exists on the connection."""


class ModelNotFoundError(DosnaError, KeyError):
    """No model, or no such version of a model, is stored on the connection."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelFileError(DosnaError, ValueError):
    """A file to import as a model version is not a safetensors or npz file of tensors dosna stores."""


class ModelStateError(DosnaError, RuntimeError):
    """A model version is not in a state that allows the operation (e.g. loading a failed run)."""


class InvalidNameError(DosnaError, ValueError):
    """A dataset, connection or model name that dosna refuses to store."""


class BackendUnavailableError(DosnaError, ImportError):
    """A backend or engine needs a package that is not installed."""


class CodecUnavailableError(BackendUnavailableError):
    """A dataset's codec needs a package that is not installed (the message names the pip extra)."""


class UnknownBackendError(DosnaError, ValueError):
    """``use(backend=...)`` or ``Connection(backend=...)`` named no known backend."""


class UnknownEngineError(DosnaError, ValueError):
    """``use(engine=...)`` or ``Connection(engine=...)`` named no known engine."""


class ConnectionClosedError(DosnaError, RuntimeError):
    """An operation needs a connected connection."""


class StoreUnavailableError(DosnaError, ConnectionError):
    """The object store cannot be reached, or an operation on it failed or timed out."""


class ChunkCorruptError(DosnaError, OSError):
    """A stored chunk cannot be decoded: truncated, wrong size or damaged.

    Parameters
    ----------
    dataset : str
        Name of the dataset the chunk belongs to.
    chunk : tuple of int
        Chunk index in the chunk grid.
    path : str
        Where the chunk is stored (file path or object key).
    reason : str
        What is wrong with it.
    """

    def __init__(self, dataset: str, chunk: tuple[int, ...], path: str, reason: str):
        self.dataset = dataset
        self.chunk = tuple(chunk)
        self.path = path
        self.reason = reason
        super().__init__(f"chunk {self.chunk} of dataset {dataset!r} at {path!r} is corrupt: {reason}")

    def __reduce__(self):  # keep it transportable between worker processes
        return (type(self), (self.dataset, self.chunk, self.path, self.reason))


class MetadataCorruptError(DosnaError, OSError):
    """A dataset's metadata document cannot be parsed or is inconsistent."""

    def __init__(self, dataset: str, path: str, reason: str):
        self.dataset = dataset
        self.path = path
        self.reason = reason
        super().__init__(f"metadata of dataset {dataset!r} at {path!r} is corrupt: {reason}")

    def __reduce__(self):
        return (type(self), (self.dataset, self.path, self.reason))


class ReadOnlyError(DosnaError, PermissionError):
    """A write (create, set, delete, attributes, resize, ...) through a connection opened with ``mode="r"``."""


class StoreNotFoundError(DosnaError, FileNotFoundError):
    """The store a connection names does not exist, and the mode (``"r"``, ``"r+"``) does not create it."""


class StoreExistsError(DosnaError, FileExistsError):
    """The store exists, and the mode (``"w-"``) asks for a new one."""


class InvalidOptionError(DosnaError, ValueError):
    """A backend or engine option that its class does not take, or a value that does not fit its type."""
