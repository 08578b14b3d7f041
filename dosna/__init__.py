"""dosna: N-dimensional arrays stored as independent chunks in object stores.

>>> import dosna as dn, numpy as np
>>> dn.use(backend='ram', engine='cpu')
>>> with dn.connection('example') as con:
...     ds = con.create_dataset('data', data=np.arange(24.).reshape(2, 3, 4), chunk_size=2)
...     ds[1, :, ::3].tolist()
[[12.0, 15.0], [16.0, 19.0], [20.0, 23.0]]
"""

from __future__ import annotations

import logging

from . import backends, engines, util
from .connection import Connection, connection
from .dataset import Attributes, DataChunk, Dataset
from .errors import (
    BackendUnavailableError,
    ChunkCorruptError,
    ConnectionClosedError,
    DatasetExistsError,
    DatasetNotFoundError,
    DosnaError,
    InvalidNameError,
    MetadataCorruptError,
    ModelNotFoundError,
    ModelStateError,
    ReadOnlyError,
    StoreExistsError,
    StoreNotFoundError,
    StoreUnavailableError,
    UnknownBackendError,
    UnknownEngineError,
)
from .interop.copy import copy
from .metadata import auto_chunk_size
from .progress import set_progress
from .registry import available, register_backend, register_engine, use
from .urls import open
from .util.selection import compatible, status

# The library logs through the "dosna" logger and its children; applications decide what is shown.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Attributes",
    "BackendUnavailableError",
    "ChunkCorruptError",
    "Connection",
    "ConnectionClosedError",
    "DataChunk",
    "Dataset",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "DosnaError",
    "InvalidNameError",
    "MetadataCorruptError",
    "ModelNotFoundError",
    "ModelStateError",
    "ReadOnlyError",
    "StoreExistsError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "UnknownBackendError",
    "UnknownEngineError",
    "__version__",
    "auto_chunk_size",
    "available",
    "backends",
    "compatible",
    "connection",
    "copy",
    "open",
    "engines",
    "register_backend",
    "register_engine",
    "set_progress",
    "status",
    "use",
    "util",
]
