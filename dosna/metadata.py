"""Dataset metadata: validation, the automatic chunk shape and versioned JSON.

Everything here is pure: no I/O. Backends store the bytes that
:meth:`DatasetMeta.to_json` produces and give them back to
:meth:`DatasetMeta.from_json`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import InvalidNameError
from .io.codecs import CodecSpec

__all__ = [
    "FORMAT_VERSION",
    "MAX_NAME_LENGTH",
    "MAX_NDIM",
    "chunk_area",
    "DatasetMeta",
    "auto_chunk_size",
    "normalize_shape",
    "validate_dtype",
    "validate_name",
]

#: The metadata format this dosna writes. Format 1 (no codec entry: raw
#: chunks without checksums) is still read and written as it was.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MAX_NAME_LENGTH = 200
DEFAULT_CHUNK_BYTES = 1 << 20

#: The most axes a dataset may have: NumPy's limit (backends may allow fewer).
MAX_NDIM = 64
#: The most bytes an array (the dataset, or one chunk) may span: what NumPy can address.
MAX_NBYTES = int(np.iinfo(np.intp).max)

_NAME_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,199}")
_SUPPORTED_KINDS = "biufc"  # bool, signed, unsigned, float, complex
#: Widest float and complex types: longdouble has no portable layout and no JSON fill value.
_MAX_ITEMSIZE = {"f": 8, "c": 16}
_UID_RE = re.compile(r"[0-9a-f]{32}")


def validate_name(name: object, what: str = "dataset") -> str:
    """Return ``name`` if dosna can store it, else raise :class:`InvalidNameError`.

    A name has 1 to 200 characters from letters, digits, ``.``, ``_`` and ``-``,
    and does not start with ``.``: it is safe as a file name, an object key part
    and an S3 key prefix on every backend.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} name must be a str, not {type(name).__name__}")
    if not _NAME_RE.fullmatch(name):
        if not name:
            why = "it is empty"
        elif len(name) > MAX_NAME_LENGTH:
            why = f"it has {len(name)} characters (at most {MAX_NAME_LENGTH})"
        elif name.startswith("."):
            why = "it starts with '.'"
        else:
            why = "only letters, digits, '.', '_' and '-' are allowed"
        raise InvalidNameError(f"invalid {what} name {name!r}: {why}")
    return name


def validate_dtype(dtype: Any) -> np.dtype:
    """Return the NumPy dtype for ``dtype`` if dosna stores it, else raise TypeError.

    Supported: bool, signed and unsigned integers, floats (16 to 64 bit) and
    complex numbers (64 and 128 bit), in either byte order (stored as given).
    ``longdouble`` and ``clongdouble`` are refused: their layout differs between
    platforms.
    """
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"not a NumPy dtype: {dtype!r}") from exc
    if dt.kind not in _SUPPORTED_KINDS or dt.fields is not None or dt.subdtype:
        raise TypeError(f"dtype {dt} is not supported: use bool, integer, float or complex dtypes")
    if dt.itemsize > _MAX_ITEMSIZE.get(dt.kind, 8):
        raise TypeError(
            f"dtype {dt} ({dt.itemsize * 8} bit) is not supported: its layout is not portable; "
            "use float64 or complex128"
        )
    return dt


def normalize_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError as exc:
        raise TypeError(f"shape must be an int or a sequence of ints, not {shape!r}") from exc
    out = []
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, (bool, np.bool_)):
            raise TypeError(f"shape must hold ints, got {shape!r}")
        if d < 0:
            raise ValueError(f"shape must not be negative, got {shape!r}")
        out.append(int(d))
    if len(out) > MAX_NDIM:
        raise ValueError(f"shape has {len(out)} axes; at most {MAX_NDIM} are supported")
    return tuple(out)


def check_nbytes(shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
    """Raise ValueError if an array of ``shape`` and ``dtype`` spans more bytes than NumPy addresses."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_NBYTES:
        raise ValueError(
            f"{what} {shape} of {dtype} would span {nbytes} bytes; at most {MAX_NBYTES} are supported"
        )


def auto_chunk_size(
    shape: Sequence[int], dtype: np.dtype, target_bytes: int = DEFAULT_CHUNK_BYTES
) -> tuple[int, ...]:
    """Choose a chunk shape of at most ``target_bytes`` (1 MiB by default).

    Starts from the whole shape and halves the largest axis until the chunk fits,
    so chunks stay close to cubes, which suits access along any axis.

    Examples
    --------
    >>> auto_chunk_size((512, 512, 512), np.dtype('f4'))
    (64, 64, 64)
    """
    chunk = [max(1, int(d)) for d in shape]
    itemsize = np.dtype(dtype).itemsize
    while chunk and math.prod(chunk) * itemsize > target_bytes:
        axis = max(range(len(chunk)), key=lambda i: chunk[i])
        if chunk[axis] == 1:
            break
        chunk[axis] = (chunk[axis] + 1) // 2
    return tuple(chunk)


def _validate_chunk_size(chunk_size: Any, shape: tuple[int, ...], dtype: np.dtype):
    if chunk_size is None:
        return auto_chunk_size(shape, dtype)
    if isinstance(chunk_size, (int, np.integer)) and not isinstance(chunk_size, bool):
        chunk_size = (int(chunk_size),) * len(shape)
    try:
        chunks = tuple(chunk_size)
    except TypeError as exc:
        raise TypeError(f"chunk_size must be an int, a tuple of ints or None, not {chunk_size!r}") from exc
    if len(chunks) != len(shape):
        raise ValueError(f"chunk_size {chunks} has {len(chunks)} axes but the shape {shape} has {len(shape)}")
    for c in chunks:
        if not isinstance(c, (int, np.integer)) or isinstance(c, (bool, np.bool_)) or c < 1:
            raise ValueError(f"chunk_size must hold positive ints, got {chunk_size!r}")
    out = tuple(int(c) for c in chunks)
    check_nbytes(out, dtype, "a chunk of shape")
    return out


def _cast_fillvalue(fillvalue: Any, dtype: np.dtype) -> Any:
    """The fill value as a Python scalar of ``dtype``; refuse values that do not fit."""
    if fillvalue is None:
        return dtype.type(0).item()
    value = np.asarray(fillvalue)
    if value.ndim != 0 or value.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"fillvalue must be a scalar number or bool, not {fillvalue!r}")
    v = value.item()
    bad = ValueError(f"fillvalue {fillvalue!r} does not fit dtype {dtype}")
    if dtype.kind in "biu":
        if isinstance(v, complex) or (isinstance(v, float) and not v.is_integer()):
            raise bad
        v = int(v)
        if dtype.kind == "b":
            if v not in (0, 1):
                raise bad
            return bool(v)
        info = np.iinfo(dtype)
        if not info.min <= v <= info.max:
            raise bad
        return v
    if dtype.kind == "f":
        if isinstance(v, complex):
            if v.imag != 0:
                raise bad
            v = v.real
        with np.errstate(over="ignore"):
            cast = dtype.type(v)
        if math.isfinite(v) and not np.isfinite(cast):
            raise bad
        return cast.item()
    return dtype.type(v).item()


def _fill_to_json(value: Any) -> Any:
    if isinstance(value, complex):
        return [_fill_to_json(value.real), _fill_to_json(value.imag)]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _fill_from_json(value: Any, dtype: np.dtype) -> Any:
    """The stored fill value as a Python number; ValueError unless it is one that ``dtype`` can hold.

    What :func:`_fill_to_json` writes is read back; the number is then checked
    against the dtype by :func:`_cast_fillvalue`, as a user's fill value is.
    """

    def number(v: Any) -> Any:
        if isinstance(v, str) and v in _NON_FINITE:
            return _NON_FINITE[v]
        if isinstance(v, (bool, int, float)):
            return v
        raise ValueError(f"fillvalue {value!r} is not a number")

    if isinstance(value, list):
        if dtype.kind != "c" or len(value) != 2:
            raise ValueError(f"fillvalue {value!r} is not a number of dtype {dtype}")
        real, imag = (number(v) for v in value)
        if isinstance(real, bool) or isinstance(imag, bool):
            raise ValueError(f"fillvalue {value!r} is not a complex number")
        return complex(real, imag)
    return number(value)


@dataclass(frozen=True)
class DatasetMeta:
    """What a dataset is: everything but its chunks.

    Attributes
    ----------
    name : str
        Dataset name (validated).
    shape : tuple of int
        Array shape.
    dtype : numpy.dtype
        Element type.
    chunk_size : tuple of int
        Shape of every full chunk; edge chunks are cut to the array.
    fillvalue : scalar
        What unwritten elements read as.
    attrs : dict
        User attributes (JSON values).
    codec : CodecSpec
        How chunks are encoded (compression, shuffle, checksums).
    format : int
        The metadata format version the dataset was written in.
    uid : str or None
        What tells this incarnation of the name from any other: 32 random hex
        digits written when the dataset is created (format 2). Its chunks are
        stored under it, so a re-created or half-created dataset never shares
        a chunk with another. None for datasets written before uids existed
        (their chunks keep the layout they were written with).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_size: tuple[int, ...]
    fillvalue: Any = 0
    attrs: Mapping[str, Any] = field(default_factory=dict)
    codec: CodecSpec = field(default_factory=CodecSpec)
    format: int = FORMAT_VERSION
    uid: str | None = None

    @classmethod
    def create(
        cls,
        name: str,
        shape: Any,
        dtype: Any = "f8",
        fillvalue: Any = None,
        chunk_size: Any = None,
        attrs: Mapping[str, Any] | None = None,
        codec: CodecSpec | None = None,
    ) -> DatasetMeta:
        """Validate user input and build the metadata; raise before any I/O.

        ``codec`` defaults to uncompressed chunks with checksums.
        """
        validate_name(name)
        shape_t = normalize_shape(shape)
        dt = validate_dtype(dtype)
        check_nbytes(shape_t, dt, "shape")
        chunks = _validate_chunk_size(chunk_size, shape_t, dt)
        fill = _cast_fillvalue(fillvalue, dt)
        attrs_d = json_attrs(attrs or {})
        return cls(name, shape_t, dt, chunks, fill, attrs_d, CodecSpec.create() if codec is None else codec)

    # -- derived geometry ------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunk_size))

    @property
    def total_chunks(self) -> int:
        return math.prod(self.chunk_grid)

    def chunk_shape(self, idx: Sequence[int]) -> tuple[int, ...]:
        """The valid (in-array) shape of chunk ``idx``; edge chunks are smaller."""
        return tuple(min(c, s - i * c) for i, c, s in zip(idx, self.chunk_size, self.shape))

    @property
    def pads_edge_chunks(self) -> bool:
        """Whether edge chunks are stored at the full chunk size, padded with the fill value.

        From format 2 on they are (as zarr does), so resizing never rewrites a
        chunk's geometry; format 1 stored the valid region only.
        """
        return self.format >= 2

    def stored_shape(self, idx: Sequence[int]) -> tuple[int, ...]:
        """The shape chunk ``idx`` is stored with (see :attr:`pads_edge_chunks`)."""
        return tuple(self.chunk_size) if self.pads_edge_chunks else self.chunk_shape(idx)

    def chunk_region(self, idx: Sequence[int]) -> tuple[slice, ...]:
        """The slices of the array that chunk ``idx`` holds."""
        return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, self.chunk_size, self.shape))

    def check_chunk_index(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Return ``idx`` as a tuple of ints if it names a chunk, else raise IndexError."""
        try:
            t = tuple(int(i) for i in idx)
        except TypeError:
            t = (int(idx),)  # type: ignore[call-overload]
        grid = self.chunk_grid
        if len(t) != len(grid) or any(not 0 <= i < g for i, g in zip(t, grid)):
            raise IndexError(f"chunk index {t} is outside the chunk grid {grid}")
        return t

    def with_attrs(self, attrs: Mapping[str, Any]) -> DatasetMeta:
        return replace(self, attrs=json_attrs(attrs))

    def with_shape(self, shape: Any) -> DatasetMeta:
        """The same dataset with another shape (same number of axes)."""
        new = normalize_shape(shape)
        if len(new) != self.ndim:
            raise ValueError(f"cannot resize a {self.ndim}-d dataset to the {len(new)}-d shape {new}")
        return replace(self, shape=new)

    # -- JSON ------------------------------------------------------------------
    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "dosna_format": self.format,
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "chunk_size": list(self.chunk_size),
            "fillvalue": _fill_to_json(self.fillvalue),
            "attrs": self.attrs,
        }
        if self.format >= 2:
            doc["codec"] = self.codec.to_json()
            if self.uid is not None:
                doc["uid"] = self.uid
        return json.dumps(doc, indent=1, allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> DatasetMeta:
        """Parse a metadata document; raise ValueError on anything inconsistent.

        The document is untrusted input: whatever it holds, the only error is a
        ValueError (or a TypeError from the checks :meth:`create` makes).
        """
        try:
            doc = json.loads(data)
        except RecursionError:
            raise ValueError("the document is nested too deeply") from None
        if not isinstance(doc, dict) or "dosna_format" not in doc:
            raise ValueError("not a dosna metadata document")
        version = doc["dosna_format"]
        if type(version) is not int or version not in READABLE_FORMATS:
            raise ValueError(
                f"metadata format {version!r} is not supported (this dosna reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}; a newer dosna wrote it: upgrade dosna)"
            )
        missing = [key for key in ("name", "shape", "dtype", "chunk_size", "fillvalue") if key not in doc]
        if version >= 2 and "codec" not in doc:
            missing.append("codec")
        if missing:
            raise ValueError(f"the document has no {', '.join(missing)}")
        attrs = doc.get("attrs") or {}
        if not isinstance(attrs, dict):
            raise ValueError("attrs is not an object")
        dt = validate_dtype(doc["dtype"])
        # Format 1 had no codec entry: raw chunks, no checksums.
        codec = CodecSpec.from_json(doc["codec"]) if version >= 2 else CodecSpec()
        meta = cls.create(
            doc["name"],
            doc["shape"],
            dt,
            _fill_from_json(doc["fillvalue"], dt),
            doc["chunk_size"],
            attrs,
            codec,
        )
        uid = doc.get("uid") if version >= 2 else None
        if uid is not None and not (isinstance(uid, str) and _UID_RE.fullmatch(uid)):
            raise ValueError(f"uid {uid!r} is not 32 lowercase hex digits")
        return replace(meta, format=version, uid=uid)


def check_attrs(attrs: Mapping[str, Any]) -> None:
    """Raise TypeError unless ``attrs`` is a str-keyed mapping of JSON values."""
    for key in attrs:
        if not isinstance(key, str):
            raise TypeError(f"attribute names must be str, not {type(key).__name__}")
    try:
        json.dumps(dict(attrs), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"attributes must be JSON values (no NaN/inf): {exc}") from exc


def chunk_area(meta: DatasetMeta) -> str:
    """Where ``meta``'s chunks live inside the store: ``"name/uid"``, or ``"name"`` without a uid.

    Every incarnation of a name has its own area, so chunks written for a
    dataset that was deleted, re-created or never committed are never read
    as another incarnation's. Datasets written before uids existed keep
    their chunks directly under the name.
    """
    return meta.name if meta.uid is None else f"{meta.name}/{meta.uid}"


#: NumPy arrays with at most this many elements are stored in attributes as (nested) lists.
MAX_ATTR_ARRAY_SIZE = 4096


def _to_json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size > MAX_ATTR_ARRAY_SIZE:
            raise TypeError(
                f"attribute arrays may hold at most {MAX_ATTR_ARRAY_SIZE} elements (got {value.size}); "
                "store larger arrays as a dataset"
            )
        if value.dtype.kind not in "biuf":
            raise TypeError(f"attribute arrays must be bool, integer or float, not {value.dtype}")
        return value.tolist()
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biufU":
            raise TypeError(f"NumPy {value.dtype} values cannot be stored as JSON attributes")
        return value.item()
    if isinstance(value, Mapping):
        return {k: _to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v) for v in value]
    return value


def json_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` as a dict of JSON values: NumPy scalars become Python numbers and small
    arrays nested lists; raise TypeError for anything else that is not JSON (or NaN/inf)."""
    if not isinstance(attrs, Mapping):
        raise TypeError(f"attributes must be a mapping, not {type(attrs).__name__}")
    out = {key: _to_json_value(value) for key, value in attrs.items()}
    check_attrs(out)
    return out
