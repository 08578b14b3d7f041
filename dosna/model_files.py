"""Model versions to and from files: safetensors and ``.npz``, without pickle.

:func:`export_model` writes one version's tensors with its lineage;
:func:`import_model` reads such a file (or any safetensors or npz file of
tensors) and saves it as a new version. The file format is given or inferred
from the suffix (``.safetensors``, ``.npz``).

What survives the round trip: tensor names, shapes, dtypes (bfloat16
included) and values (in the file's order: safetensors writers choose theirs), and a JSON document ``{"format": "dosna-model-export",
"model", "version", "parent", "lineage", "metrics", "dosna_version"}``. In a
safetensors file it is the header metadata value ``"dosna"`` (safetensors
stores bfloat16 itself, as ``BF16``); in an npz file it is the member
``dosna-model.json``, which also lists the bfloat16 tensors (stored as their
``uint16`` bit patterns). The imported version's lineage is the original
lineage plus ``imported_from`` (the file, its format and BLAKE2b digest, and
the original model, version and parent); its parent stays unset, since version
numbers belong to the store that gave them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InvalidOptionError, ModelFileError
from .extras import require
from .metadata import validate_dtype
from .tensors import LOGICAL_DTYPES, ModelStore, export_npz, logical_dtypes, to_torch, validate_model_name

__all__ = ["FILE_FORMATS", "export_model", "file_format", "import_model", "read_tensor_file"]

FILE_FORMATS = ("safetensors", "npz")
EXPORT_FORMAT = "dosna-model-export"
NPZ_MEMBER = "dosna-model.json"
#: safetensors dtypes and how the store keeps them (BF16: its bit pattern)
_SAFETENSORS = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "U64": "<u8", "I32": "<i4",
    "U32": "<u4", "I16": "<i2", "U16": "<u2", "I8": "|i1", "U8": "|u1", "BOOL": "|b1",
    "C64": "<c8", "BF16": "<u2",
}  # fmt: skip


def file_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """``format`` if given, else the one the suffix of ``path`` names; InvalidOptionError otherwise."""
    if format is None:
        suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
        if suffix not in FILE_FORMATS:
            raise InvalidOptionError(
                f"cannot tell the format of {os.fspath(path)!r} from its suffix: "
                f"give the format ({', '.join(FILE_FORMATS)})"
            )
        return suffix
    if format not in FILE_FORMATS:
        raise InvalidOptionError(f"unknown model file format {format!r}: use one of {', '.join(FILE_FORMATS)}")
    return format


def _document(manifest: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("model", "version", "parent", "lineage", "metrics", "dosna_version")
    return {"format": EXPORT_FORMAT, **{k: manifest[k] for k in keys}}


def export_model(
    store: ModelStore,
    model: str,
    path: str | os.PathLike[str],
    version: int | str = "latest",
    format: str | None = None,
) -> dict[str, Any]:
    """Write a finished version to a safetensors or npz file, complete or not at all.

    Returns a summary: ``{"model", "version", "path", "format", "tensors"}``.
    Exporting bfloat16 tensors to safetensors needs PyTorch.
    """
    fmt = file_format(path, format)
    manifest, arrays = store.load_stored(model, version)
    logical = logical_dtypes(manifest)
    doc = _document(manifest)
    path = os.fspath(path)
    if fmt == "npz":
        if NPZ_MEMBER in arrays:
            raise InvalidOptionError(f"a tensor named {NPZ_MEMBER!r} cannot be exported to npz: the name is taken")
        path = export_npz(path, arrays, extra={NPZ_MEMBER: json.dumps({**doc, "bfloat16": sorted(logical)})})
    else:
        _write_safetensors(path, arrays, logical, {"dosna": json.dumps(doc)})
    tensors = [
        {"name": e["name"], "shape": e["shape"], "dtype": e.get("logical_dtype", e["dtype"])}
        for e in manifest["tensors"]
    ]
    return {"model": model, "version": manifest["version"], "path": path, "format": fmt, "tensors": tensors}


def _write_safetensors(
    path: str, arrays: Mapping[str, np.ndarray], logical: Mapping[str, str], metadata: dict[str, str]
) -> None:
    require("safetensors", "safetensors", "safetensors export")
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".export-", suffix=".safetensors.tmp", dir=directory)
    os.close(fd)
    try:
        if logical:  # NumPy has no bfloat16: torch writes BF16
            require("torch", "torch", "exporting bfloat16 tensors to safetensors")
            from safetensors.torch import save_file as save_torch

            save_torch({n: to_torch(a, logical.get(n)).contiguous() for n, a in arrays.items()}, temporary, metadata)
        else:
            from safetensors.numpy import save_file

            save_file({n: np.ascontiguousarray(a) for n, a in arrays.items()}, temporary, metadata)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def read_tensor_file(
    path: str | os.PathLike[str], format: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, Any] | None]:
    """Read and check a whole file: ``(arrays as stored, logical dtypes, dosna document or None)``.

    Raises :class:`~dosna.errors.ModelFileError` for a file that is not a
    valid file of that format, holds a tensor name twice, a dtype or shape
    dosna does not store, pickled objects, or a malformed dosna document.
    """
    fmt = file_format(path, format)
    path = os.fspath(path)
    return _parse_tensor_file(path, fmt, _file_bytes(path, fmt))


def _file_bytes(path: str, fmt: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ModelFileError(f"{path!r} is not a valid {fmt} file of tensors: {exc}") from exc


def _parse_tensor_file(
    path: str, fmt: str, data: bytes
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, Any] | None]:
    """:func:`read_tensor_file` of the bytes ``data`` read from ``path``."""
    try:
        if fmt == "npz":
            arrays, logical, doc = _read_npz(path, data)
        else:
            arrays, logical, doc = _read_safetensors(path, data)
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path!r} is not a valid {fmt} file of tensors: {exc}") from exc
    for name, array in arrays.items():
        if not isinstance(name, str) or not name:
            raise ModelFileError(f"{path!r}: tensor names must be non-empty strings, got {name!r}")
        try:
            validate_dtype(array.dtype)
        except TypeError as exc:
            raise ModelFileError(f"{path!r}: tensor {name!r}: {exc}") from exc
    if doc is not None:
        _check_document(path, doc)
    return arrays, logical, doc


def _read_npz(path: str, data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, Any] | None]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{path!r} is a single .npy array, not an npz archive of named tensors")
        names = npz.files
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ModelFileError(f"{path!r}: tensor name(s) {twice} appear more than once")
        doc = None
        arrays: dict[str, np.ndarray] = {}
        for name in names:
            if name == NPZ_MEMBER:
                assert npz.zip is not None  # open inside the with block
                doc = json.loads(npz.zip.read(NPZ_MEMBER))
                continue
            value = npz[name]
            if not isinstance(value, np.ndarray):
                raise ModelFileError(f"{path!r}: member {name!r} is not a .npy array")
            else:
                arrays[name] = value
    logical: dict[str, str] = {}
    if doc is not None:
        bf16 = doc.pop("bfloat16", [])
        if not isinstance(bf16, list) or any(n not in arrays for n in bf16):
            raise ModelFileError(f"{path!r}: {NPZ_MEMBER}['bfloat16'] must list tensors of the file")
        for name in bf16:
            if arrays[name].dtype.str != LOGICAL_DTYPES["bfloat16"]:
                raise ModelFileError(f"{path!r}: bfloat16 tensor {name!r} is not stored as uint16")
            logical[name] = "bfloat16"
    return arrays, logical, doc


def _read_safetensors(
    path: str, data: bytes
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, Any] | None]:
    require("safetensors", "safetensors", "safetensors import")
    import safetensors

    if len(data) < 8:
        raise ModelFileError(f"{path!r} is not a safetensors file: {len(data)} bytes")
    header_len = int.from_bytes(data[:8], "little")
    # json.loads keeps the last of repeated keys; a hook sees them all
    pairs: list[list[str]] = []

    def keep(items: list[tuple[str, Any]]) -> dict[str, Any]:
        pairs.append([k for k, _ in items])
        return dict(items)

    header = json.loads(data[8 : 8 + header_len].decode("utf-8"), object_pairs_hook=keep)
    top = pairs[-1] if pairs else []
    if len(set(top)) != len(top):
        raise ModelFileError(f"{path!r}: a tensor name appears more than once in the header")
    try:
        tensors = safetensors.deserialize(data)
    except safetensors.SafetensorError as exc:
        raise ModelFileError(f"{path!r} is not a valid safetensors file: {exc}") from exc
    order = [k for k in top if k != "__metadata__"]
    found = dict(tensors)
    arrays: dict[str, np.ndarray] = {}
    logical: dict[str, str] = {}
    for name in order:  # the file's order, which torch keeps as the state_dict's
        spec = found[name]
        dtype = _SAFETENSORS.get(spec["dtype"])
        if dtype is None:
            raise ModelFileError(f"{path!r}: tensor {name!r} has dtype {spec['dtype']}, which dosna does not store")
        arrays[name] = np.frombuffer(spec["data"], dtype=dtype).reshape(spec["shape"])
        if spec["dtype"] == "BF16":
            logical[name] = "bfloat16"
    metadata = header.get("__metadata__") or {}
    doc = json.loads(metadata["dosna"]) if "dosna" in metadata else None
    return arrays, logical, doc


def _check_document(path: str, doc: Any) -> None:
    problem = None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        problem = f"expected an object with format {EXPORT_FORMAT!r}"
    elif not isinstance(doc.get("lineage"), dict) or not isinstance(doc.get("metrics"), dict):
        problem = "lineage and metrics must be objects"
    if problem:
        raise ModelFileError(f"{path!r}: the dosna document is malformed: {problem}")


def import_model(
    store: ModelStore, path: str | os.PathLike[str], name: str, format: str | None = None
) -> dict[str, Any]:
    """Save the tensors of a file as a new version of ``name``; return a summary like :func:`export_model`.

    The whole file is read and checked first: a file that is not valid writes
    nothing. Importing into an existing model adds its next version.
    """
    fmt = file_format(path, format)
    validate_model_name(name)
    path = os.fspath(path)
    data = _file_bytes(path, fmt)  # read once: parsed and digested
    arrays, logical, doc = _parse_tensor_file(path, fmt, data)
    origin: dict[str, Any] = {
        "path": os.path.abspath(path),
        "format": fmt,
        "digest": "blake2b-128:" + hashlib.blake2b(data, digest_size=16).hexdigest(),
    }
    lineage: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if doc is not None:
        lineage, metrics = dict(doc["lineage"]), dict(doc["metrics"])
        origin.update({k: doc.get(k) for k in ("model", "version", "parent", "dosna_version")})
    lineage["imported_from"] = origin
    version = store._save_stored(name, arrays, logical, lineage=lineage, metrics=metrics)
    tensors = [
        {"name": n, "shape": list(a.shape), "dtype": logical.get(n, a.dtype.str)} for n, a in arrays.items()
    ]
    return {"model": name, "version": version, "path": origin["path"], "format": fmt, "tensors": tensors}
