"""How a chunk's bytes are encoded: compression, byte shuffling and checksums.

Everything here is pure (no I/O). A :class:`CodecSpec` is the codec part of a
dataset's metadata, stored as JSON; :meth:`CodecSpec.compressor` gives the
object that turns a chunk array into the compressed payload and back, and
:class:`Framing` lays a payload out as the bytes an object store keeps, with
crc32c checksums that :meth:`Framing.unframe_into` verifies.

The payload of a compressed chunk is exactly what the matching HDF5 filter
pipeline produces (HDF5's shuffle filter, then zstd, lz4, blosc or deflate), so
the hdf5 backend can store it as the chunk of an ordinary HDF5 dataset that
h5py reads with :mod:`hdf5plugin` imported.

Compression uses numcodecs and hdf5plugin, checksums the crc32c package.
"""

from __future__ import annotations

import functools
import importlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CodecUnavailableError

__all__ = [
    "COMPRESSIONS",
    "Encoded",
    "CHECKSUM_BLOCK",
    "CodecError",
    "CodecSpec",
    "Compressor",
    "Framing",
    "crc32c",
]

#: Compression names ``create_dataset(compression=...)`` accepts.
COMPRESSIONS = ("zstd", "lz4", "blosc", "gzip")
#: Default level (``compression_opts``) and the accepted range, per compression.
_LEVELS: dict[str, tuple[int, int, int]] = {
    "zstd": (3, -7, 22),
    "lz4": (1, 1, 65537),  # numcodecs' "acceleration": higher is faster and compresses less
    "blosc": (5, 0, 9),
    "gzip": (4, 0, 9),
}
#: Bytes covered by one checksum of an uncompressed chunk: a partial read
#: verifies only the blocks it touches.
CHECKSUM_BLOCK = 1 << 14
_CRC = struct.Struct("<I")
#: The crc32c of any message followed by its own crc32c (little endian): the same
#: for every message, so one crc32c call over a block and its checksum verifies it.
_CRC_RESIDUE = 0x48674BC7
#: Bytes verified and then copied at a time: small enough to stay in the CPU's cache.
_CACHED_PIECE = 1 << 18
_INSTALL = "pip install 'dosna[codecs]'"


#: What :meth:`Framing.frame` gives: a NumPy array is a new read-only buffer
#: that nothing else refers to; a memoryview may be the caller's memory.
Encoded = bytes | memoryview | np.ndarray

_crc_function: Any = None
#: The CRC-32C of b"123456789", to check an implementation before trusting it.
_CRC_CHECK = 0xE3069283


def _crc_module() -> Any:
    """Load the CRC-32C function: crc32c-rs where installed (several times faster
    on blocks of a few KiB, and it lets other threads run), else the crc32c package."""
    global _crc_function
    try:
        fast = importlib.import_module("crc32c_rs").crc32c
        if fast(b"123456789") == _CRC_CHECK:
            _crc_function = fast
            return fast
    except (ImportError, AttributeError):
        pass
    try:
        module = importlib.import_module("crc32c")
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise CodecUnavailableError(f"checksums need the crc32c package: {_INSTALL}") from exc
    _crc_function = module.crc32c
    return _crc_function


def crc32c(data: Any, value: int = 0) -> int:
    """The CRC-32C (Castagnoli) of ``data`` (any buffer), continuing from ``value``."""
    return int((_crc_function or _crc_module())(data, value))


class CodecError(ValueError):
    """Stored bytes that do not decode; the I/O layer reports it as ChunkCorruptError."""


@dataclass(frozen=True)
class CodecSpec:
    """The codec configuration of a dataset: what its chunks' stored bytes are.

    Attributes
    ----------
    compression : str or None
        One of :data:`COMPRESSIONS`, or None for raw bytes.
    level : int or None
        The compression level (``compression_opts``); None without compression.
    shuffle : bool
        Byte-shuffle elements before compressing (HDF5's shuffle filter).
    checksum : bool
        Store crc32c checksums and verify them on every read.
    checksum_block : int
        Bytes per checksum of an uncompressed chunk.
    """

    compression: str | None = None
    level: int | None = None
    shuffle: bool = False
    checksum: bool = False
    checksum_block: int = CHECKSUM_BLOCK

    @classmethod
    def create(
        cls,
        compression: str | None = None,
        compression_opts: Any = None,
        shuffle: bool | None = None,
        checksum: bool = True,
    ) -> CodecSpec:
        """Validate what a user asked for; raise before anything is written.

        Raises
        ------
        ValueError, TypeError
            For an unknown compression, a bad level or non-bool flags.
        CodecUnavailableError
            If the packages the codec needs are not installed.
        """
        if compression is not None and not isinstance(compression, str):
            raise TypeError(f"compression must be None or one of {COMPRESSIONS}, not {compression!r}")
        if compression is not None:
            compression = compression.lower()
            if compression == "none":
                compression = None
        if compression is not None and compression not in _LEVELS:
            raise ValueError(f"unknown compression {compression!r}: use None or one of {COMPRESSIONS}")
        level: int | None = None
        if compression is None:
            if compression_opts is not None:
                raise ValueError("compression_opts needs a compression")
            if shuffle:
                raise ValueError("shuffle needs a compression (it only helps compressors)")
        else:
            default, low, high = _LEVELS[compression]
            level = default if compression_opts is None else compression_opts
            if not isinstance(level, (int, np.integer)) or isinstance(level, (bool, np.bool_)):
                raise TypeError(f"compression_opts for {compression} must be an int level, not {level!r}")
            if not low <= level <= high:
                raise ValueError(
                    f"compression_opts for {compression} must be in [{low}, {high}], got {level}"
                )
            level = int(level)
        for flag, value in (("shuffle", shuffle), ("checksum", checksum)):
            if value is not None and not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{flag} must be True or False, not {value!r}")
        spec = cls(
            compression,
            level,
            bool(compression is not None if shuffle is None else shuffle),
            bool(checksum),
        )
        spec.require()
        return spec

    # -- JSON ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "compression": self.compression,
            "level": self.level,
            "shuffle": self.shuffle,
            "checksum": "crc32c" if self.checksum else None,
            "checksum_block": self.checksum_block,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CodecSpec:
        """Parse the codec part of a metadata document; ValueError if dosna cannot decode it."""
        if not isinstance(doc, Mapping):
            raise ValueError("the codec entry is not an object")
        compression = doc.get("compression")
        if compression is not None and compression not in _LEVELS:
            raise ValueError(f"unknown compression {compression!r}")
        checksum = doc.get("checksum")
        if checksum not in (None, "crc32c"):
            raise ValueError(f"unknown checksum {checksum!r}")
        block = doc.get("checksum_block", CHECKSUM_BLOCK)
        if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 1 << 30:
            raise ValueError(f"bad checksum_block {block!r}")
        level = doc.get("level")
        shuffle = doc.get("shuffle", False)
        if not isinstance(shuffle, bool) or (level is not None and not isinstance(level, int)):
            raise ValueError("bad shuffle or level in the codec entry")
        if compression is not None:
            _, low, high = _LEVELS[compression]
            if level is None or not low <= level <= high:
                raise ValueError(f"bad level {level!r} for {compression}")
        return cls(compression, level, shuffle, checksum == "crc32c", block)

    # -- what it takes -------------------------------------------------------------
    @property
    def compressed(self) -> bool:
        return self.compression is not None

    def require(self) -> None:
        """Raise CodecUnavailableError unless the packages this codec needs are installed."""
        if self.checksum:
            _crc_module()
        if self.compressed:
            _numcodecs()

    def compressor(self, dtype: np.dtype) -> Compressor:
        """The compressor for chunks of ``dtype`` (only for compressed specs)."""
        if self.compression is None or self.level is None:
            raise ValueError("an uncompressed codec has no compressor")
        return Compressor(self.compression, self.level, self.shuffle, np.dtype(dtype))

    def describe(self) -> str:
        """A short human-readable form, e.g. ``"zstd(3)+shuffle, crc32c"``."""
        parts = [f"{self.compression}({self.level})" + ("+shuffle" if self.shuffle else "")]
        if not self.compressed:
            parts = ["none"]
        if self.checksum:
            parts.append("crc32c")
        return ", ".join(parts)


def _numcodecs() -> Any:
    try:
        importlib.import_module("hdf5plugin")  # HDF5 readers of compressed chunk files need it
        return importlib.import_module("numcodecs")
    except ImportError as exc:
        raise CodecUnavailableError(f"compression needs numcodecs and hdf5plugin: {_INSTALL}") from exc


class Compressor:
    """Shuffle and compress a chunk array into a payload, and back.

    The payload is what HDF5's filter pipeline (shuffle, then the compression
    filter) would store for the chunk.
    """

    def __init__(self, compression: str, level: int, shuffle: bool, dtype: np.dtype) -> None:
        nc = _numcodecs()
        self.compression, self.level, self.shuffle, self.dtype = compression, level, shuffle, dtype
        # HDF5's shuffle filter: a strided NumPy copy shuffles fastest, numcodecs unshuffles fastest
        self._shuffle = shuffle and compression != "blosc" and dtype.itemsize > 1
        self._unshuffle = nc.Shuffle(elementsize=dtype.itemsize)
        if compression == "zstd":
            self._codec = nc.Zstd(level=level)
        elif compression == "lz4":
            self._codec = nc.LZ4(acceleration=level)
        elif compression == "gzip":
            self._codec = nc.Zlib(level=level)  # HDF5's "gzip" filter is deflate in zlib format
        else:
            self._codec = nc.Blosc(
                cname="lz4", clevel=level, shuffle=nc.Blosc.SHUFFLE if shuffle else nc.Blosc.NOSHUFFLE
            )

    def compress(self, data: np.ndarray) -> bytes:
        """The payload of a C-contiguous chunk array."""
        flat = np.ascontiguousarray(data).reshape(-1)
        if self.compression == "blosc":
            return bytes(self._codec.encode(flat))
        raw: Any = flat.view(np.uint8)
        if self._shuffle:
            raw = np.ascontiguousarray(raw.reshape(-1, self.dtype.itemsize).T)
        payload = self._codec.encode(raw)
        if self.compression == "lz4":
            payload = _lz4_to_hdf5(bytes(payload), flat.nbytes)
        return bytes(payload)

    def decompress(self, payload: Any, out: np.ndarray) -> None:
        """Decode ``payload`` into the C-contiguous array ``out``; CodecError if it does not fit."""
        flat = out.reshape(-1).view(np.uint8)
        if not flat.size:
            return
        try:
            if self.compression == "lz4":
                payload = _lz4_from_hdf5(payload, flat.nbytes)
            if self.compression == "blosc":
                head = memoryview(payload).cast("B")
                size = int.from_bytes(head[4:8], "little") if len(head) >= 16 else -1  # blosc1 header: nbytes
                if size != flat.size:
                    raise CodecError(f"decodes to {size} bytes, expected {flat.size}")
                self._codec.decode(payload, out=flat)
                return
            # zstd fills a larger buffer without complaint: decode, then check the size
            raw = np.frombuffer(self._codec.decode(payload), np.uint8)
            if raw.size != flat.size:
                raise CodecError(f"decodes to {raw.size} bytes, expected {flat.size}")
            if self._shuffle:
                self._unshuffle.decode(raw, out=flat)
            else:
                flat[...] = raw
        except CodecError:
            raise
        except Exception as exc:  # every codec library has its own error types
            raise CodecError(f"{self.compression} payload does not decode ({exc})") from exc


# HDF5's lz4 filter (id 32004) frames the data as: original size (u64, big
# endian), block size (u32), then per block its compressed size (u32) and the
# block; numcodecs' LZ4 prefixes one block with its size (u32, little endian).
_LZ4_HEAD = struct.Struct(">QI")
_LZ4_BLOCK = struct.Struct(">I")


def _lz4_to_hdf5(numcodecs_payload: bytes, nbytes: int) -> bytes:
    block = numcodecs_payload[4:]
    return _LZ4_HEAD.pack(nbytes, nbytes) + _LZ4_BLOCK.pack(len(block)) + block


def _lz4_from_hdf5(payload: Any, nbytes: int) -> bytes:
    view = memoryview(payload).cast("B")
    if len(view) < _LZ4_HEAD.size + _LZ4_BLOCK.size:
        raise CodecError("lz4 payload too short")
    total, block = _LZ4_HEAD.unpack_from(view)
    (size,) = _LZ4_BLOCK.unpack_from(view, _LZ4_HEAD.size)
    if total != nbytes or block != nbytes or size != len(view) - _LZ4_HEAD.size - _LZ4_BLOCK.size:
        raise CodecError("lz4 payload framing does not match the chunk")
    return struct.pack("<I", nbytes) + bytes(view[_LZ4_HEAD.size + _LZ4_BLOCK.size :])


@functools.lru_cache(maxsize=1024)
def _intact_crc(block: int, full: int, tail: int) -> int:
    """The crc32c of any undamaged interleaved object of ``full`` whole blocks and a last block of ``tail`` bytes.

    CRC-32C of a message followed by its own CRC (little endian) is one
    constant whatever the message, so after each block and its checksum the
    CRC state is the same as for a block of zeros: the object's crc32c is that
    of the zero-filled object of the same layout.
    """
    zeros = bytes(block)
    segment = zeros + _CRC.pack(crc32c(zeros))
    value = 0
    for _ in range(full):
        value = crc32c(segment, value)
    if tail:
        value = crc32c(zeros[:tail] + _CRC.pack(crc32c(zeros[:tail])), value)
    return value


@functools.lru_cache(maxsize=256)
def _object_strides(shape: tuple[int, ...], itemsize: int, block: int) -> tuple[int, ...] | None:
    """See :meth:`Framing.object_strides` (``block`` 0: no checksums)."""
    strides = []
    inner = itemsize
    for n in reversed(shape):
        strides.append(inner)
        inner *= n
    strides.reverse()
    if not block or inner <= block:
        return tuple(strides)
    step = block + _CRC.size
    for axis in range(len(shape)):
        if strides[axis] == block:  # one index of ``axis`` per block
            return (*(s // block * step for s in strides[:axis]), step, *strides[axis + 1 :])
    return None


@functools.lru_cache(maxsize=256)
def _rows_in_blocks(
    shape: tuple[int, ...], itemsize: int, block: int
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Where a chunk's elements lie in its interleaved object, when every block holds whole rows.

    When ``block`` bytes are ``d`` whole rows of some axis ``j`` (``d`` dividing
    ``shape[j]``), splitting that axis into ``(shape[j] // d, d)`` gives a shape
    and strides (in bytes, into the object) that place every element after the
    checksums of the blocks before it. None for other layouts.
    """
    step = block + _CRC.size
    inner = itemsize  # bytes below axis j
    for j in range(len(shape) - 1, -1, -1):
        if inner * shape[j] >= block:
            rows, rem = divmod(block, inner)
            if rem or shape[j] % rows:
                return None
            outer = (*shape[:j], shape[j] // rows)
            inside = (rows, *shape[j + 1 :])
            inside_strides = tuple(itemsize * math.prod(inside[a + 1 :]) for a in range(len(inside)))
            outer_strides = tuple(step * math.prod(outer[a + 1 :]) for a in range(len(outer)))
            return (*outer, *inside), outer_strides + inside_strides
        inner *= shape[j]
    return None


class Framing:
    """The bytes an object store keeps for a chunk: the payload and its checksums.

    - Uncompressed, with checksums: the raw bytes in blocks of ``checksum_block``,
      each followed by its crc32c (4 bytes, little endian); a byte range of the
      chunk maps to one range of the object that carries its own checksums.
    - Compressed, with checksums: the payload followed by its crc32c.
    - Without checksums: the raw bytes or the payload alone.
    """

    def __init__(self, spec: CodecSpec, dtype: np.dtype) -> None:
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.block = spec.checksum_block
        self.compressor = spec.compressor(dtype) if spec.compressed else None
        self._crc = _crc_function or _crc_module() if spec.checksum else crc32c

    # -- geometry of uncompressed objects -----------------------------------------
    def stored_size(self, nbytes: int) -> int | None:
        """The object size of an uncompressed chunk of ``nbytes`` (None when compressed)."""
        if self.compressor is not None:
            return None
        if not self.spec.checksum:
            return nbytes
        return nbytes + _CRC.size * math.ceil(nbytes / self.block)

    def stored_range(self, offset: int, length: int) -> tuple[int, int]:
        """The object range ``(start, length)`` holding the raw bytes ``[offset, offset + length)``.

        With checksums it covers whole blocks and their checksums.
        """
        if not self.spec.checksum:
            return offset, length
        first, last = offset // self.block, (offset + length - 1) // self.block
        start = first * (self.block + _CRC.size)
        stop = (last + 1) * (self.block + _CRC.size)
        return start, stop - start

    def object_strides(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The strides (bytes) at which an uncompressed chunk of ``shape`` lies in its object.

        Without checksums, or in a single block, they are C strides; with
        checksums too when each block holds exactly one index of some axis (a
        64^3 float32 chunk in blocks of 16 KiB: one block per plane), the
        checksums only widen the strides of the outer axes. None otherwise
        (compressed, or blocks that split or join indices): then the data must
        be copied out of the object.
        """
        if self.compressor is not None:
            return None
        return _object_strides(shape, self.dtype.itemsize, self.block if self.spec.checksum else 0)

    def verify_range(self, stored: Any, offset: int, length: int) -> memoryview:
        """Check the object range :meth:`stored_range` gave for the raw bytes ``[offset, offset + length)``.

        Returns the range as bytes; CodecError if it is damaged or of the wrong size.
        """
        view = memoryview(stored).cast("B")
        if not self.spec.checksum:
            if len(view) != length:
                raise CodecError(f"range of {len(view)} bytes, expected {length}")
            return view
        block, step = self.block, self.block + _CRC.size
        if len(view) <= step and offset % block + length + _CRC.size <= len(view):  # one block: a row
            if self._crc(view) != _CRC_RESIDUE:
                raise CodecError(f"checksum mismatch in block {offset // block}")
            return view
        whole, rest = divmod(len(view), step)
        if 0 < rest <= _CRC.size:
            raise CodecError(f"{len(view)} stored bytes end inside a checksum")
        nbytes = whole * block + max(rest - _CRC.size, 0)
        if nbytes < offset % block + length:
            raise CodecError(f"range of {len(view)} bytes, expected {self.stored_range(offset, length)[1]}")
        self._verify_blocks(view, nbytes, offset // block)
        return view

    # -- encoding --------------------------------------------------------------------
    def frame(self, data: np.ndarray) -> Encoded:
        """The stored bytes of a chunk array (of any strides).

        A NumPy array returned is a new read-only buffer that nothing else refers
        to; a memoryview is the caller's memory (no checksums, no compression).
        """
        if self.compressor is not None:
            payload = self.compressor.compress(np.ascontiguousarray(data))
            return payload + _CRC.pack(crc32c(payload)) if self.spec.checksum else payload
        if not self.spec.checksum:
            return np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
        if 0 < data.nbytes <= self.block:  # one block: most small chunks
            raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
            return bytes(raw) + _CRC.pack(self._crc(raw))
        return self._interleave(data)

    def _interleave(self, data: np.ndarray) -> np.ndarray:
        n, block, step = data.nbytes, self.block, self.block + _CRC.size
        out = np.empty(self.stored_size(n) or 0, np.uint8)
        full = n // block
        layout = _rows_in_blocks(data.shape, data.dtype.itemsize, block)
        if layout is not None:
            # every block holds whole rows: copy the chunk straight into place, from any strides
            shape, strides = layout
            np.ndarray(shape, data.dtype, out, 0, strides)[...] = data.reshape(shape)
            grid = out.reshape(full, step)
            grid[:, block:] = self._row_crcs(grid[:, :block]).view(np.uint8).reshape(full, _CRC.size)
            out.flags.writeable = False
            return out
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
        if full:
            grid = out[: full * step].reshape(full, step)
            grid[:, :block] = np.frombuffer(raw, np.uint8, full * block).reshape(full, block)
            grid[:, block:] = self.block_crcs(raw[: full * block]).view(np.uint8).reshape(full, _CRC.size)
        if n % block:
            tail = raw[full * block :]
            start = full * step
            out[start : start + len(tail)] = np.frombuffer(tail, np.uint8)
            out[start + len(tail) :] = np.frombuffer(_CRC.pack(crc32c(tail)), np.uint8)
        out.flags.writeable = False
        return out

    def block_crcs(self, raw: Any) -> np.ndarray:
        """The crc32c of every ``checksum_block`` bytes of ``raw`` (any C-contiguous buffer), as little-endian uint32."""
        return np.array(self._crc_list(raw), dtype="<u4")

    def _row_crcs(self, rows: np.ndarray) -> np.ndarray:
        """The crc32c of every row of the 2-D uint8 array ``rows`` (each a whole block)."""
        crc = self._crc
        return np.array([crc(row) for row in rows], dtype="<u4")

    def _crc_list(self, raw: Any) -> list[int]:
        crc = self._crc
        view = memoryview(raw).cast("B")
        block = self.block
        return [crc(view[i : i + block]) for i in range(0, len(view), block)]

    def first_bad_block(self, raw: Any, expected: Any) -> int | None:
        """The first block of ``raw`` whose crc32c differs from ``expected`` (a sequence), or None."""
        actual = self._crc_list(raw)
        wanted = expected.tolist() if isinstance(expected, np.ndarray) else list(expected)
        if actual == wanted:
            return None
        return next(
            (i for i, (a, e) in enumerate(zip(actual, wanted)) if a != e), min(len(actual), len(wanted))
        )

    # -- decoding -------------------------------------------------------------------
    def max_stored_size(self, nbytes: int) -> int:
        """An upper bound of the object size of a chunk of ``nbytes`` raw bytes."""
        exact = self.stored_size(nbytes)
        # compressors expand incompressible data by well under 1 % plus a header
        return exact if exact is not None else nbytes + nbytes // 64 + 4096

    def unframe_into(self, stored: Any, out: np.ndarray) -> None:
        """Verify and decode a whole stored chunk into ``out`` (any strides); CodecError if damaged.

        Checksums are verified on the stored bytes before anything is copied, and
        the data then goes into ``out`` in one copy, wherever ``out`` lies.
        """
        view = memoryview(stored).cast("B")
        if self.compressor is not None:
            if self.spec.checksum:
                if len(view) < _CRC.size:
                    raise CodecError(f"{len(view)} bytes, too short for a checksum")
                payload, (expected,) = view[: -_CRC.size], _CRC.unpack_from(view, len(view) - _CRC.size)
                if self._crc(payload) != expected:
                    raise CodecError("checksum mismatch")
                view = payload
            if out.flags.c_contiguous:
                self.compressor.decompress(view, out)
            else:
                decoded = np.empty(out.shape, out.dtype)
                self.compressor.decompress(view, decoded)
                out[...] = decoded
            return
        size = self.stored_size(out.nbytes)
        if len(view) != size:
            raise CodecError(f"{len(view)} bytes, expected {size}")
        if not self.spec.checksum:
            out[...] = np.frombuffer(view, out.dtype).reshape(out.shape)
            return
        if 0 < out.nbytes <= self.block:  # one block: every small chunk
            if self._crc(view) != _CRC_RESIDUE:
                raise CodecError("checksum mismatch in block 0")
            out[...] = np.frombuffer(view, out.dtype, out.size).reshape(out.shape)
            return
        layout = _rows_in_blocks(out.shape, out.dtype.itemsize, self.block)
        if layout is not None and out.flags.c_contiguous:
            # the data lie in place in the object: verify and copy piece by piece
            shape, strides = layout
            self._verify_and_copy(view, out.reshape(shape), np.ndarray(shape, out.dtype, view, 0, strides))
            return
        self._verify_blocks(view, out.nbytes)
        if layout is not None:  # one strided copy into wherever ``out`` lies
            shape, strides = layout
            out.reshape(shape)[...] = np.ndarray(shape, out.dtype, view, 0, strides)
        elif out.flags.c_contiguous:
            self._copy_blocks(view, out.reshape(-1).view(np.uint8))
        else:
            flat = np.empty(out.nbytes, np.uint8)
            self._copy_blocks(view, flat)
            out[...] = flat.view(out.dtype).reshape(out.shape)

    def _verify_and_copy(self, view: memoryview, dst: np.ndarray, src: np.ndarray) -> None:
        """Verify the object ``view`` and copy ``src`` (its data, in place) to ``dst``, in pieces.

        Each piece is verified, then copied while it is still in the CPU's cache,
        so the data cross the memory bus once, as in a copy without checksums.
        (Into a strided ``dst`` one whole copy is faster: there the writes dominate.)
        """
        per_index = src.strides[0]  # bytes of the object per index of the first axis
        count = max(1, _CACHED_PIECE // per_index)
        blocks = per_index // (self.block + _CRC.size)
        intact = _intact_crc(self.block, count * blocks, 0)
        for a in range(0, len(src), count):
            b = min(len(src), a + count)
            piece = view[a * per_index : b * per_index]
            if self._crc(piece) != (
                intact if b - a == count else _intact_crc(self.block, (b - a) * blocks, 0)
            ):
                self._verify_blocks(view, dst.nbytes)  # raises, naming the damaged block
            dst[a:b] = src[a:b]

    def _verify_blocks(self, view: memoryview, nbytes: int, first_block: int = 0) -> None:
        """Check every block's crc32c in the interleaved object ``view`` holding ``nbytes`` data bytes.

        One crc32c over the whole object does it: a block followed by its own
        crc32c always leaves the same CRC state, so an object whose checksums all
        match has a crc32c that depends on its layout alone (see
        :func:`_intact_crc`), and damage to any one block changes it. The blocks
        are checked one by one only to say which one is damaged.
        """
        block, step = self.block, self.block + _CRC.size
        full, tail = divmod(nbytes, block)
        if len(view) != full * step + (tail + _CRC.size if tail else 0):
            raise CodecError(f"{len(view)} stored bytes do not hold {nbytes} data bytes")
        if self._crc(view) == _intact_crc(block, full, tail):
            return
        crc = self._crc
        for i in range(full + bool(tail)):
            start = i * step
            size = block if i < full else tail
            if crc(view[start : start + size]) != int.from_bytes(
                view[start + size : start + size + _CRC.size], "little"
            ):
                raise CodecError(f"checksum mismatch in block {first_block + i}")
        raise CodecError("checksum mismatch")  # pragma: no cover - damage that cancels out over blocks

    def _copy_blocks(self, view: memoryview, out: np.ndarray) -> None:
        """Copy the data of the (verified) interleaved object ``view`` into the uint8 array ``out``."""
        block, step = self.block, self.block + _CRC.size
        full = out.size // block
        if full:
            grid = np.frombuffer(view, np.uint8, full * step).reshape(full, step)
            out[: full * block].reshape(full, block)[...] = grid[:, :block]
        if out.size > full * block:
            start = full * step
            out[full * block :] = np.frombuffer(view, np.uint8, out.size - full * block, start)

    def unframe_range(self, stored: Any, offset: int, length: int) -> tuple[Any, int]:
        """The raw bytes ``[offset, offset + length)`` from the object range :meth:`stored_range` gave.

        Returns ``(buffer, skip)``: the bytes start ``skip`` bytes into ``buffer``
        (a view of ``stored`` where that needs no copy).
        """
        view = memoryview(stored).cast("B")
        if not self.spec.checksum:
            if len(view) != length:
                raise CodecError(f"range of {len(view)} bytes, expected {length}")
            return view, 0
        block = self.block
        first = offset // block
        skip = offset - first * block
        size = len(view)
        if size <= block + _CRC.size:  # one block (a row, a few elements): no copy
            if size < _CRC.size + skip + length:
                raise CodecError(f"range of {size} bytes, expected {self.stored_range(offset, length)[1]}")
            if self._crc(view) != _CRC_RESIDUE:
                raise CodecError(f"checksum mismatch in block {first}")
            return view, skip
        expected = self.stored_range(offset, length)[1]
        if size > expected:
            raise CodecError(f"range of {size} bytes, expected {expected}")
        whole, rest = divmod(size, block + _CRC.size)
        if 0 < rest <= _CRC.size:
            raise CodecError(f"{size} stored bytes end inside a checksum")
        out = np.empty(whole * block + max(rest - _CRC.size, 0), np.uint8)
        self._verify_blocks(view, out.size, first)
        self._copy_blocks(view, out)
        if skip + length > out.size:
            raise CodecError("the object is shorter than the chunk")
        return out, skip
