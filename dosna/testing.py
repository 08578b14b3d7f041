"""A reusable conformance suite that every backend × engine combination must pass.

Use it from pytest by subclassing :class:`ConformanceSuite` and providing a
``connection`` fixture that yields a *connected* :class:`dosna.Connection`::

    import pytest, dosna as dn
    from dosna.testing import ConformanceSuite

    class TestMyBackend(ConformanceSuite):
        @pytest.fixture
        def connection(self, tmp_path):
            with dn.Connection('t', backend='mine', root=tmp_path) as con:
                yield con

The suite needs pytest, and hypothesis for the NumPy-oracle property tests
(``pip install 'dosna[test]'``; ``DOSNA_HYPOTHESIS_EXAMPLES`` sets how many cases
each of those runs).
"""

from __future__ import annotations

import itertools
import math
import os
import zlib
from functools import partial
from typing import Any

import numpy as np

try:
    import pytest
except ImportError as exc:
    from .errors import BackendUnavailableError

    raise BackendUnavailableError(
        "dosna.testing needs pytest (and hypothesis for its property tests): pip install 'dosna[test]'"
    ) from exc

from .connection import Connection
from .errors import (
    ChunkCorruptError,
    ConnectionClosedError,
    DatasetExistsError,
    DatasetNotFoundError,
    DosnaError,
    InvalidNameError,
)

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None  # type: ignore[assignment]

__all__ = [
    "CODECS",
    "ConformanceSuite",
    "CodecCyclingConnection",
    "flip_stored_bit",
    "index_cases",
    "make_connection",
    "outer_oracle",
    "random_array",
    "under_mpiexec",
    "vectorized_key",
    "vectorized_oracle",
]

#: The compressions the suite cycles through (checksums on with every one).
CODECS: tuple[str | None, ...] = (None, "zstd", "lz4", "blosc", "gzip")


def codec_for(name: str) -> str | None:
    """The compression the suite gives dataset ``name`` (the same on every MPI rank)."""
    return CODECS[zlib.crc32(name.encode()) % len(CODECS)]


class CodecCyclingConnection(Connection):
    """A connection whose datasets get compressions in turn (by name), checksums on.

    The conformance suite runs on it, so every behaviour is checked with every
    codec; a test that asks for a compression gets that one.
    """

    def create_dataset(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if "compression" not in kwargs and isinstance(name, str):
            kwargs["compression"] = codec_for(name)
        return super().create_dataset(name, *args, **kwargs)


def flip_stored_bit(connection: Connection, name: str, idx: tuple[int, ...], position: float = 0.5) -> str:
    """Flip one bit of chunk ``idx`` of dataset ``name`` as stored, at ``position`` (0..1) of its bytes.

    Works below the dataset layer, on what the backend keeps (a file or an
    object). Returns the chunk's location. Call it on one process only.
    """
    from .backends.objects import EncodedObjectBackend

    backend = connection.backend
    meta = connection[name].meta
    where = backend.chunk_location(meta, idx)
    if isinstance(backend, EncodedObjectBackend):
        from .backends.objects import framing

        nbytes = int(np.prod(meta.stored_shape(idx), dtype=np.int64)) * meta.dtype.itemsize
        raw = bytearray(backend.fetch(meta, idx, (0, framing(meta).max_stored_size(nbytes))) or b"")
        at = min(len(raw) - 1, int(position * len(raw)))
        raw[at] ^= 1 << (at % 8)
        backend.store(meta, idx, bytes(raw))
    else:
        with open(where, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            at = min(size - 1, int(position * size))
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ (1 << (at % 8))]))
    return where


BAD_NAMES = ["", ".hidden", "../x", "a/b", "a\0b", "x" * 201, "sp ace", "é", "a\\b", None, 3]
DTYPES = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16", ">i4", ">f8"]


def box_sum(array: np.ndarray, radius: tuple[int, ...]) -> np.ndarray:
    """Sum over a box of ``2 r + 1`` elements per axis, edges repeated: a filter that reaches ``radius``."""
    out = np.asarray(array, dtype=np.float64)
    for axis, r in enumerate(radius):
        if r:
            padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in range(out.ndim)], mode="edge")
            n = out.shape[axis]
            out = np.sum([np.take(padded, range(k, k + n), axis=axis) for k in range(2 * r + 1)], axis=0)
    return out


def random_array(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> np.ndarray:
    """Deterministic test data of any supported dtype (values that fit the dtype)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return np.asarray(rng.integers(0, 2, shape), dtype=dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.asarray(
            rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True), dtype=dt
        )
    values = rng.standard_normal(shape) * 100
    if dt.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return np.asarray(values, dtype=dt)


def _same(a: Any, b: Any) -> bool:
    """Equal values, dtype and shape; NaN equals NaN; a scalar only equals a scalar."""
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
        return False
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def outer_oracle(data: np.ndarray, key: Any) -> np.ndarray:
    """What ``oindex[key]`` gives, computed axis by axis with NumPy (each array on its own axis)."""
    key = list(key) if isinstance(key, tuple) else [key]
    if any(k is Ellipsis for k in key):
        pos = next(i for i, k in enumerate(key) if k is Ellipsis)
        used = sum(1 for k in key if k is not None and k is not Ellipsis)
        key[pos : pos + 1] = [slice(None)] * (data.ndim - used)
    out, axis = data, 0
    for k in key:
        if k is None:
            out = np.expand_dims(out, axis)
            axis += 1
        elif isinstance(k, slice):
            out = out[(slice(None),) * axis + (k,)]
            axis += 1
        elif isinstance(k, (int, np.integer)):
            if not -out.shape[axis] <= k < out.shape[axis]:
                raise IndexError(f"index {k} is out of bounds")
            out = out[(slice(None),) * axis + (k, Ellipsis)]  # a 0-d array, not a native scalar
        else:
            arr = np.asarray(k)
            if arr.dtype == bool:
                if len(arr) not in (out.shape[axis], 0):  # NumPy lets an empty mask pass
                    raise IndexError("boolean index did not match")
                arr = np.flatnonzero(arr)
            size = out.shape[axis]
            if arr.size and not (-size <= arr.min() and arr.max() < size):  # np.take lets it pass on empty arrays
                raise IndexError(f"index out of bounds for axis {axis} with size {size}")
            out = np.take(out, arr.astype(np.intp), axis=axis)
            axis += 1
    return out


def vectorized_key(key: Any, shape: tuple[int, ...]) -> Any:
    """An ``outer`` case turned into a vectorised one: 1-D arrays cut to a common length."""
    entries = key if isinstance(key, tuple) else (key,)
    arrays = [e for e in entries if isinstance(e, np.ndarray)]
    if not arrays:
        return key
    n = min(int(e.sum()) if e.dtype == bool else len(e) for e in arrays)
    out = tuple(
        (np.flatnonzero(e)[:n] if e.dtype == bool else e[:n]) if isinstance(e, np.ndarray) else e
        for e in entries
    )
    return out if isinstance(key, tuple) else out[0]


def vectorized_oracle(data: np.ndarray, key: Any) -> np.ndarray:
    """What ``vindex[key]`` gives: NumPy's result with the broadcast index axes moved to the front."""
    result = data[key]
    key = key if isinstance(key, tuple) else (key,)
    advanced = [
        i
        for i, k in enumerate(key)
        if isinstance(k, (int, np.integer, np.ndarray)) and not isinstance(k, bool)
    ]
    arrays = [np.asarray(key[i]) for i in advanced if isinstance(key[i], np.ndarray)]
    if not arrays:
        return result
    nb = len(np.broadcast_shapes(*((int(a.sum()),) if a.dtype == bool else a.shape for a in arrays)))
    if advanced != list(range(advanced[0], advanced[-1] + 1)):
        return result  # NumPy puts them first already
    used = sum(
        k.ndim if isinstance(k, np.ndarray) and k.dtype == bool else 1
        for k in key
        if k is not None and k is not Ellipsis
    )
    before = 0
    for k in key[: advanced[0]]:
        before += data.ndim - used if k is Ellipsis else 1
    return np.moveaxis(result, list(range(before, before + nb)), list(range(nb)))


if st is not None:

    @st.composite
    def index_cases(
        draw: Any,
        max_dims: int = 4,
        max_len: int = 7,
        mode: str = "numpy",
        min_len: int = 0,
        max_chunks: int | None = None,
    ) -> tuple:
        """(shape, chunk_size, dtype, key): a random array layout and an index key.

        ``mode`` ``"numpy"`` and ``"vectorized"`` draw integer arrays that
        broadcast together (of up to 2 dimensions) and boolean masks over one
        or more axes; ``"outer"`` draws 1-D arrays and masks on any axes.
        ``min_len=1`` leaves out empty axes (no chunk I/O); ``max_chunks`` bounds the
        number of chunks (edge chunks still come in every size).
        """
        ndim = draw(st.integers(0, max_dims))
        shape = tuple(draw(st.lists(st.integers(min_len, max_len), min_size=ndim, max_size=ndim)))
        per_axis = max(1, int(max_chunks ** (1 / ndim) + 1e-9)) if max_chunks and ndim else None
        chunks = tuple(
            draw(st.integers(max(1, -(-n // per_axis)) if per_axis else 1, max(1, n + 1))) for n in shape
        )
        dtype = draw(st.sampled_from(DTYPES))
        broadcast = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
        max_arrays = draw(st.integers(0, 3))
        entries: list[Any] = []
        masks: list[int] = []
        arrays = 0
        axis = 0
        while axis < ndim:
            n = shape[axis]
            kinds = ["slice", "slice", "full"]
            if n:
                kinds += ["int", "int"]
            if arrays < max_arrays:
                kinds += ["array", "array", "mask"]
            kind = draw(st.sampled_from(kinds))
            if kind == "int":
                entries.append(draw(st.integers(-n, n - 1)))
            elif kind == "full":
                entries.append(slice(None))
            elif kind == "slice":
                bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
                step = st.one_of(st.none(), st.integers(-4, 4).filter(bool))
                entries.append(slice(draw(bound), draw(bound), draw(step)))
            elif kind == "array":
                arrays += 1
                if mode == "outer":
                    idx = draw(st.lists(st.integers(-n, n - 1), max_size=6)) if n else []
                    entries.append(np.array(idx, dtype=np.intp))
                else:
                    entries.append(("array", n))  # drawn below, once the broadcast shape is known
            else:
                arrays += 1
                k = 1 if mode == "outer" else draw(st.integers(1, ndim - axis))
                mshape = shape[axis : axis + k]
                flat = draw(st.lists(st.booleans(), min_size=math.prod(mshape), max_size=math.prod(mshape)))
                mask = np.array(flat, dtype=bool).reshape(mshape)
                masks.append(int(mask.sum()))
                entries.append(mask)
                axis += k
                continue
            axis += 1
        if masks:
            broadcast = (masks[0],)  # so that arrays broadcast with the first mask
        for i, e in enumerate(entries):
            if isinstance(e, tuple):
                n = e[1]
                drop = draw(st.integers(0, len(broadcast)))
                ashape = tuple(1 if draw(st.booleans()) else m for m in broadcast[drop:])
                size = math.prod(ashape)
                values = draw(st.lists(st.integers(-n, n - 1), min_size=size, max_size=size)) if n else []
                entries[i] = (
                    np.array(values, dtype=np.intp).reshape(ashape)
                    if n or not size
                    else np.zeros(ashape, np.intp)
                )
        # drop trailing axes sometimes (NumPy fills them with ':')
        entries = entries[: draw(st.integers(0, len(entries)))] if draw(st.booleans()) else entries
        if draw(st.booleans()):  # an Ellipsis replacing a run of ':' entries
            pos = draw(st.integers(0, len(entries)))
            entries.insert(pos, Ellipsis)
        for _ in range(draw(st.integers(0, 2))):  # np.newaxis anywhere
            entries.insert(draw(st.integers(0, len(entries))), None)
        if draw(st.integers(0, 20)) == 0 and shape and shape[0]:  # out-of-range int
            entries = [shape[0] + draw(st.integers(0, 3)), *entries[1:]]
        key = entries[0] if len(entries) == 1 and draw(st.booleans()) else tuple(entries)
        return shape, chunks, dtype, key

else:  # pragma: no cover
    index_cases = None


def make_connection(
    backend: str,
    engine: str,
    workdir: str | os.PathLike,
    connection: str | None = None,
    options: dict[str, Any] | None = None,
    engine_kw: dict[str, Any] | None = None,
    token: str = "",
) -> Connection:
    """A fresh, unconnected connection for tests of ``backend`` × ``engine``.

    ``connection`` is what ``run_tests.sh --connection`` passes: a directory for
    ``hdf5`` (default ``workdir``), a pool or bucket for object stores, a name
    prefix for ``ram``. Each call gets its own namespace where the backend allows;
    ``token`` (the same on every MPI rank) keeps runs in a reused directory apart.
    """
    options = dict(options or {})
    unique = f"test-{token}{'-' if token else ''}{next(ConformanceSuite._counter)}"
    if backend == "ram":
        name = f"{connection}-{unique}" if connection else unique
    elif backend == "hdf5":
        options.setdefault("directory", os.fspath(connection or workdir))
        name = unique
    else:
        if not connection:
            raise ValueError(f"the {backend} backend needs a connection name (pool or bucket)")
        name = connection
    return CodecCyclingConnection(name, backend=backend, engine=engine, engine_kw=engine_kw or {}, **options)


def _examples() -> int:
    return int(os.environ.get("DOSNA_HYPOTHESIS_EXAMPLES", "300"))


def under_mpiexec() -> bool:
    """Whether this process was started by mpiexec (MPICH or Open MPI)."""
    return any(v in os.environ for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"))


# Under mpiexec every rank must draw the same cases, in the same order.
_HYPOTHESIS_MPI: dict[str, Any] = {"derandomize": True, "database": None} if under_mpiexec() else {}


class ConformanceSuite:
    """Behaviour every backend × engine must show. Needs a ``connection`` fixture."""

    # -- helpers ---------------------------------------------------------------
    _counter = itertools.count()

    def new_name(self, base: str = "ds") -> str:
        return f"{base}-{next(self._counter)}"

    @staticmethod
    def sync(connection: Connection) -> None:
        """Wait for every rank after a write (with the mpi engine every rank writes the same)."""
        connection.mpi_barrier()

    # -- creation and description -------------------------------------------
    def test_create_from_data_and_describe(self, connection: Connection) -> None:
        data = random_array((10, 7, 5), "f8", 1)
        ds = connection.create_dataset("described", data=data, chunk_size=(4, 3, 5))
        assert ds.shape == (10, 7, 5) and ds.ndim == 3 and ds.dtype == np.dtype("f8")
        assert ds.chunk_size == (4, 3, 5) and ds.chunk_grid == (3, 3, 1) and ds.total_chunks == 9
        assert len(ds) == 10 and ds.size == 350 and ds.nbytes == 350 * 8
        assert ds.fillvalue == 0
        assert "described" in repr(ds) and "(10, 7, 5)" in repr(ds)
        assert _same(ds[...], data)
        assert _same(np.asarray(ds), data)
        assert np.asarray(ds, dtype="f4").dtype == np.dtype("f4")
        reopened = connection.get_dataset("described")
        assert reopened.shape == ds.shape and reopened.chunk_size == ds.chunk_size
        assert _same(reopened[...], data)

    def test_readme_example(self, connection: Connection) -> None:
        data = random_array((100, 100, 100), "f8", 2)
        ds = connection.create_dataset("data", data=data, chunk_size=(32, 32, 32))
        assert _same(ds[0, 0, :10], data[0, 0, :10])
        assert np.allclose(ds[...], data)
        ds = connection["data"]
        block = random_array((44, 11, 56), "f8", 3)
        self.sync(connection)
        ds[36:80, 89:, :56] = block
        data[36:80, 89:, :56] = block
        assert _same(ds[36:80, 89:, :56], block)
        assert _same(ds[...], data)

    def test_set_middle_axis_with_2d_value(self, connection: Connection) -> None:
        # the original wrote wrong values for ds[:, 9, :] = v2d
        data = random_array((20, 20, 20), "i4", 4)
        ds = connection.create_dataset("mid", data=data, chunk_size=(6, 7, 8))
        v2d = random_array((20, 20), "i4", 5)
        self.sync(connection)
        ds[:, 9, :] = v2d
        data[:, 9, :] = v2d
        assert _same(ds[...], data)

    def test_shape_only_reads_fill_and_creates_no_chunk(self, connection: Connection) -> None:
        ds = connection.create_dataset("empty", shape=(9, 9), dtype="i2", fillvalue=-7, chunk_size=4)
        assert _same(ds[...], np.full((9, 9), -7, "i2"))
        assert _same(ds[3, 4], np.int16(-7))
        assert ds.stored_chunks() == []
        assert not ds.has_chunk((0, 0))

    @pytest.mark.parametrize(
        "dtype,fill",
        [
            ("f4", float("nan")),
            ("f8", float("-inf")),
            ("c16", 1 - 2j),
            ("?", True),
            ("u8", 2**64 - 1),
            ("i1", -128),
        ],
    )
    def test_fillvalue_round_trip(self, connection: Connection, dtype: str, fill: Any) -> None:
        name = self.new_name("fill")
        connection.create_dataset(name, shape=(5,), dtype=dtype, fillvalue=fill, chunk_size=2)
        ds = connection[name]
        expected = np.full(5, fill, dtype)
        assert _same(ds[...], expected)
        assert _same(np.asarray(ds.fillvalue, dtype), np.asarray(fill, dtype))

    def test_auto_chunk_size(self, connection: Connection) -> None:
        ds = connection.create_dataset("auto", shape=(512, 512, 16), dtype="f4")
        nbytes = int(np.prod(ds.chunk_size)) * 4
        assert 256 * 1024 <= nbytes <= 1 << 20
        ds2 = connection.create_dataset("auto-int", shape=(10, 10), dtype="u1", chunk_size=4)
        assert ds2.chunk_size == (4, 4)

    def test_zero_dim_and_empty(self, connection: Connection) -> None:
        ds = connection.create_dataset("scalar", data=np.float32(2.5))
        assert ds.shape == () and ds.total_chunks == 1
        assert _same(ds[()], np.float32(2.5)), repr(ds[()])
        assert _same(ds[...], np.array(2.5, "f4")), repr(ds[...])
        self.sync(connection)
        ds[()] = 4
        self.sync(connection)
        assert ds[()] == 4
        with pytest.raises(TypeError):
            len(ds)
        empty = connection.create_dataset("size0", shape=(0, 5), dtype="i4", chunk_size=2)
        assert empty.total_chunks == 0 and empty[...].shape == (0, 5)
        empty[...] = 1  # writes nothing, raises nothing
        assert empty.stored_chunks() == []

    # -- slicing ---------------------------------------------------------------
    def test_indexing_varieties(self, connection: Connection) -> None:
        data = random_array((11, 9, 6), "f8", 6)
        ds = connection.create_dataset("idx", data=data, chunk_size=(4, 4, 4))
        keys = [
            (slice(None, None, -1),),
            (slice(10, 0, -3), Ellipsis, 2),
            (-1, -1, -1),
            (np.int64(3),),
            (None, 2, None, slice(1, 8, 2)),
            (Ellipsis, None),
            ([1, 1, 10, 0],),
            (slice(None), [5, 0, 2]),
            (0, slice(None), [1, 3]),
            (np.arange(11) % 2 == 0, 3),
            (Ellipsis, np.array([-1, 0])),
            (slice(20, 30),),
            (slice(3, 3),),
            (2, Ellipsis, 1),
            (np.uint8(1), slice(None, None, 4)),
            ([0, 10, 3], slice(None), [5, 0, 1]),  # several arrays: pointwise, as NumPy
            (slice(2, 9), [[0, 8], [3, 3]], [1, 5]),
            (data > 0,),  # a full-shape mask
            ((data > 0)[:, :, 0], slice(None, None, -2)),  # a mask over two axes
            (np.arange(11) % 3 == 0, slice(None), np.arange(6) > 1),
        ]
        for key in keys:
            assert _same(ds[key], data[key]), key
        assert _same(ds.oindex[[1, 4, 1], 2:7, [5, 0]], data[[1, 4, 1]][:, 2:7][:, :, [5, 0]])
        assert _same(ds.oindex[np.arange(11) > 6, 3, [0]], data[7:, 3][:, [0]])
        assert _same(ds.vindex[[0, 10], [8, 1], [5, 2]], data[[0, 10], [8, 1], [5, 2]])
        assert _same(ds.vindex[1:3, [0, 2], [4, 5]], np.moveaxis(data[1:3, [0, 2], [4, 5]], 1, 0))
        assert _same(ds.vindex[data < 0], data[data < 0])

    def test_oindex_vindex_set(self, connection: Connection) -> None:
        data = random_array((9, 8, 5), "i4", 13)
        ds = connection.create_dataset(self.new_name("ovset"), data=data, chunk_size=(4, 3, 2))
        self.sync(connection)
        ds.oindex[[0, 8, 3], 1:7, [4, 0]] = -1
        data[np.ix_([0, 8, 3], range(1, 7), [4, 0])] = -1
        self.sync(connection)
        ds.vindex[[1, 2, 7], [0, 7, 3]] = np.array([[10], [20], [30]])
        data[[1, 2, 7], [0, 7, 3]] = np.array([[10], [20], [30]])
        self.sync(connection)
        ds[data % 7 == 0] = 0
        data[data % 7 == 0] = 0
        self.sync(connection)
        assert _same(ds[...], data)
        with pytest.raises(IndexError):
            ds.vindex[[0, 1], [0, 1, 2]]  # shapes that do not broadcast
        with pytest.raises(IndexError):
            ds.oindex[[[0, 1]], 0]  # oindex takes 1-D arrays only

    def test_read_direct_fills_the_callers_buffer(self, connection: Connection) -> None:
        data = random_array((9, 7, 4), "f4", 15)
        ds = connection.create_dataset(self.new_name("direct"), data=data, chunk_size=(4, 3, 2))
        buffer = np.full(data.shape, -1, "f4")
        ds.read_direct(buffer)
        assert _same(buffer, data)
        keys: list[Any] = [
            np.s_[2:7, ::2, 1],
            np.s_[::-2, [0, 5, 2], :],
            (slice(1, 3), [1, 4], [0, 3]),  # advanced indices apart: NumPy moves their axis first
            (Ellipsis, np.array([True, False, True, True])),
            np.s_[3, 4, 2],
        ]
        for key in keys:
            out = np.full(data[key].shape, -1, "f4")
            ds.read_direct(out, key)
            assert _same(out, np.asarray(data[key])), key
        reused = np.zeros((12, 12, 12), "f8")  # another dtype, into part of a larger array
        ds.read_direct(reused, np.s_[1:4, 2:6, :], np.s_[5:8, 0:4, 3:7])
        assert _same(reused[5:8, 0:4, 3:7], data[1:4, 2:6, :].astype("f8"))
        assert not reused[:5].any() and not reused[8:].any()
        strided = np.zeros((18, 7, 4), "f4")[::2]  # not contiguous: filled in place all the same
        ds.read_direct(strided)
        assert _same(strided, data)
        untouched = np.full((2, 2), 7, "f4")
        with pytest.raises(ValueError):
            ds.read_direct(untouched, np.s_[:3, :3, 0])
        with pytest.raises(TypeError):
            ds.read_direct(untouched, np.s_[:2, :2, 0], ([0, 1], slice(None)))
        with pytest.raises(TypeError):
            ds.read_direct(data.tolist())
        assert (untouched == 7).all()

    def test_astype_iter_chunks_and_no_copy(self, connection: Connection) -> None:
        data = random_array((7, 5), "f8", 14)
        ds = connection.create_dataset(self.new_name("astype"), data=data, chunk_size=(3, 2))
        view = ds.astype("f2")
        assert _same(view[2:5, ::2], data[2:5, ::2].astype("f2"))
        assert _same(view[1, 1], np.float16(data[1, 1]))
        assert _same(np.asarray(view), data.astype("f2"))
        assert len(view) == 7 and view.shape == (7, 5) and view.dtype == np.dtype("f2")
        assert _same(ds.astype("i8")[...], data.astype("i8"))
        with pytest.raises(TypeError):
            ds.astype("U3")
        slices = list(ds.iter_chunks())
        assert len(slices) == ds.total_chunks and slices[0] == (slice(0, 3), slice(0, 2))
        assert slices[-1] == (slice(6, 7), slice(4, 5))
        rebuilt = np.zeros_like(data)
        for s in slices:
            rebuilt[s] = ds[s]
        assert _same(rebuilt, data)
        assert list(ds.iter_chunks((slice(2, 4), slice(1, 3)))) == [
            (slice(2, 3), slice(1, 2)),
            (slice(2, 3), slice(2, 3)),
            (slice(3, 4), slice(1, 2)),
            (slice(3, 4), slice(2, 3)),
        ]
        assert list(ds.iter_chunks(slice(3, 3))) == []
        with pytest.raises(ValueError):
            list(ds.iter_chunks(slice(0, 7, 2)))
        with pytest.raises(ValueError):
            np.asarray(ds, copy=False)
        with pytest.raises(ValueError):
            np.asarray(ds.get_chunk((0, 0)), copy=False)
        assert _same(np.asarray(ds, copy=True), data) and _same(np.array(ds), data)

    def test_index_errors(self, connection: Connection) -> None:
        ds = connection.create_dataset("err", shape=(4, 5), dtype="i4", chunk_size=2)
        for key in [(4,), (0, -6), (0, 0, 0), (1.5,), ("a",), (Ellipsis, Ellipsis), ([0, 9],)]:
            with pytest.raises(IndexError):
                ds[key]
            with pytest.raises(IndexError):
                ds[key] = 1
        assert ds.stored_chunks() == []

    def test_set_broadcast_and_cast(self, connection: Connection) -> None:
        data = np.zeros((6, 8), "i4")
        ds = connection.create_dataset("bc", data=data, chunk_size=(4, 3))
        self.sync(connection)
        ds[1:5] = np.arange(8)  # row broadcast
        data[1:5] = np.arange(8)
        self.sync(connection)
        ds[:, 2] = 9.7  # float into int truncates, as NumPy
        data[:, 2] = 9.7
        self.sync(connection)
        ds[::2, ::-3] = np.array([[1], [2], [3]])
        data[::2, ::-3] = np.array([[1], [2], [3]])
        self.sync(connection)
        ds[[0, 5], 1:3] = -1
        data[[0, 5], 1:3] = -1
        assert _same(ds[...], data)
        before = ds.stored_chunks()
        with pytest.raises(ValueError):
            ds[0:3] = np.ones((2, 8))
        assert ds.stored_chunks() == before and _same(ds[...], data)

    def test_bad_value_writes_nothing(self, connection: Connection) -> None:
        ds = connection.create_dataset("bad-value", shape=(4, 4), dtype="u1", chunk_size=2)
        with pytest.raises((ValueError, OverflowError, TypeError)):
            ds[...] = 300
        with pytest.raises((ValueError, OverflowError, TypeError)):
            ds[0] = np.ones(3)
        assert ds.stored_chunks() == []

    def test_whole_chunk_write_does_not_read(self, connection: Connection, monkeypatch) -> None:
        ds = connection.create_dataset("noread", shape=(8, 8), dtype="f4", chunk_size=4)
        reads: list = []
        backend = connection.backend
        original = backend.read_chunk

        def counting(m: Any, i: tuple[int, ...]) -> Any:
            reads.append(i)
            return original(m, i)

        monkeypatch.setattr(backend, "read_chunk", counting)
        self.sync(connection)
        ds[...] = 1
        self.sync(connection)
        ds[0:4, 4:8] = 2
        self.sync(connection)
        assert reads == []
        self.sync(connection)
        ds[0, 0] = 3  # partial: one read-modify-write
        self.sync(connection)
        if connection.engine.shares_memory:  # worker processes have their own backend copy
            assert reads == [(0, 0)]

    # -- datasets on a connection ---------------------------------------------
    def test_dataset_management(self, connection: Connection) -> None:
        assert "m1" not in connection and not connection.has_dataset("m1")
        connection.create_dataset("m1", shape=(2,), dtype="i4")
        connection.create_dataset("m2", shape=(2,), dtype="i4")
        assert "m1" in connection and connection.has_dataset("m1")
        assert {"m1", "m2"} <= set(connection) and {"m1", "m2"} <= set(connection.datasets())
        with pytest.raises(DatasetExistsError):
            connection.create_dataset("m1", shape=(3,))
        connection.del_dataset("m1")
        assert "m1" not in connection
        with pytest.raises(DatasetNotFoundError):
            connection["m1"]
        with pytest.raises(KeyError):
            connection.get_dataset("m1")
        with pytest.raises(DatasetNotFoundError):
            connection.del_dataset("m1")
        ds = connection["m2"]
        ds.delete()
        assert "m2" not in connection
        assert 5 not in connection

    @pytest.mark.parametrize("bad", BAD_NAMES)
    def test_bad_names_refused_before_io(self, connection: Connection, bad: Any) -> None:
        before = connection.datasets()
        with pytest.raises(InvalidNameError):
            connection.create_dataset(bad, shape=(2,))
        with pytest.raises(InvalidNameError):
            connection.get_dataset(bad)
        with pytest.raises(InvalidNameError):
            connection.del_dataset(bad)
        assert bad not in connection
        assert connection.datasets() == before

    @pytest.mark.parametrize(
        "kwargs,error",
        [
            ({"shape": (-1, 2)}, ValueError),
            ({"shape": (2.5,)}, TypeError),
            ({"shape": (4,), "dtype": "U3"}, TypeError),
            ({"shape": (4,), "dtype": object}, TypeError),
            ({"shape": (4,), "dtype": "u1", "fillvalue": 256}, ValueError),
            ({"shape": (4,), "dtype": "i4", "fillvalue": 0.5}, ValueError),
            ({"shape": (4,), "dtype": "i4", "fillvalue": float("nan")}, ValueError),
            ({"shape": (4,), "dtype": "f4", "fillvalue": 1 + 1j}, ValueError),
            ({"shape": (4,), "dtype": "f4", "fillvalue": "x"}, TypeError),
            ({"shape": (4,), "chunk_size": 0}, ValueError),
            ({"shape": (4, 4), "chunk_size": (2,)}, ValueError),
            ({"shape": (4,), "chunk_size": (2.0,)}, ValueError),
            ({"shape": (3,), "data": np.zeros(4)}, ValueError),
            ({"attrs": {"x": object()}, "shape": (2,)}, TypeError),
            ({}, TypeError),
        ],
    )
    def test_bad_creation_input_writes_nothing(
        self, connection: Connection, kwargs: dict, error: type
    ) -> None:
        with pytest.raises(error):
            connection.create_dataset("refused", **kwargs)
        assert "refused" not in connection

    def test_attrs_persist(self, connection: Connection) -> None:
        ds = connection.create_dataset("attrs", shape=(3,), attrs={"units": "m"})
        ds.attrs["scale"] = 0.5
        ds.attrs.update(tags=["a", "b"], nested={"k": [1, 2]})
        assert dict(connection["attrs"].attrs) == {
            "units": "m",
            "scale": 0.5,
            "tags": ["a", "b"],
            "nested": {"k": [1, 2]},
        }
        del ds.attrs["units"]
        assert "units" not in connection["attrs"].attrs
        with pytest.raises(TypeError):
            ds.attrs["bad"] = object()
        with pytest.raises(TypeError):
            ds.attrs["nan"] = float("nan")
        with pytest.raises(TypeError):
            ds.attrs["nan"] = np.array([1.0, np.nan])
        with pytest.raises(TypeError):
            ds.attrs["big"] = np.zeros(100_000)  # a dataset's job
        assert set(connection["attrs"].attrs) == {"scale", "tags", "nested"}

    def test_numpy_values_in_attrs_become_json(self, connection: Connection) -> None:
        attrs = {"f": np.float32(0.5), "i": np.int64(-3), "b": np.bool_(True), "u": np.uint8(200)}
        ds = connection.create_dataset(self.new_name("npattrs"), shape=(2,), attrs=attrs)
        ds.attrs["grid"] = np.arange(6, dtype="i2").reshape(2, 3)
        ds.attrs.update(nested={"scale": np.float64(2.0), "list": [np.int32(1), np.arange(2.0)]})
        stored = dict(connection[ds.name].attrs)
        assert stored == {
            "f": 0.5,
            "i": -3,
            "b": True,
            "u": 200,
            "grid": [[0, 1, 2], [3, 4, 5]],
            "nested": {"scale": 2.0, "list": [1, [0.0, 1.0]]},
        }
        assert type(stored["f"]) is float and type(stored["i"]) is int and type(stored["b"]) is bool

    def test_disconnected_refuses(self, connection: Connection) -> None:
        ds = connection.create_dataset("closed", shape=(3,))
        connection.disconnect()
        try:
            for call in (
                lambda: connection.create_dataset("x", shape=(1,)),
                lambda: connection["closed"],
                lambda: list(connection),
                lambda: ds[0],
                lambda: ds.__setitem__(0, 1),
            ):
                with pytest.raises(ConnectionClosedError):
                    call()
        finally:
            connection.connect()
        assert ds[0] == 0

    # -- whole-dataset operations ----------------------------------------------
    def test_load(self, connection: Connection) -> None:
        data = random_array((13, 6), "i8", 7)
        ds = connection.create_dataset("load", shape=(13, 6), dtype="i8", chunk_size=(5, 4))
        ds.load(data)
        assert _same(ds[...], data)
        other = connection.create_dataset("load2", shape=(13, 6), dtype="f4", chunk_size=(3, 3))
        other.load(ds)  # from another dataset, with a cast
        assert _same(other[...], data.astype("f4"))
        with pytest.raises(ValueError):
            ds.load(np.zeros((13, 5)))

    def test_map_apply_clone_clear(self, connection: Connection) -> None:
        data = random_array((10, 7), "f8", 8)
        ds = connection.create_dataset("ops", data=data, chunk_size=(4, 4), attrs={"a": 1})
        seen: list = []

        def double(chunk: np.ndarray) -> np.ndarray:
            seen.append(chunk.shape)
            return chunk * 2

        mapped = ds.map(double, "ops-mapped")
        assert _same(mapped[...], data * 2)
        if connection.engine.shares_memory and connection.engine.size == 1:
            assert sorted(seen) == sorted([(4, 4), (4, 3), (4, 4), (4, 3), (2, 4), (2, 3)])
        assert dict(mapped.attrs) == {"a": 1}
        ds.apply(lambda c: c + 1)
        assert _same(ds[...], data + 1)
        empty = ds.clone("ops-clone")
        assert empty.shape == ds.shape and empty.chunk_size == ds.chunk_size and empty.stored_chunks() == []
        full = ds.clone("ops-copy", data=True)
        assert _same(full[...], data + 1)
        ds.clear()
        assert ds.stored_chunks() == [] and _same(ds[...], np.zeros_like(data))
        assert _same(full[...], data + 1)  # the copy is independent

    def test_map_with_halo_equals_whole_array_filter(self, connection: Connection) -> None:
        data = random_array((13, 11, 6), "f8", 12)
        ds = connection.create_dataset("halo", data=data, chunk_size=(4, 3, 5))
        radius = (2, 1, 0)
        expected = box_sum(data, radius)
        assert _same(ds.map(partial(box_sum, radius=radius), "halo-out", halo=radius)[...], expected)
        # halo 1 is too little along axis 0: wrong values near chunk borders
        short = ds.map(partial(box_sum, radius=radius), "halo-short", halo=(1, 1, 0))[...]
        assert not np.allclose(short, expected)
        with pytest.raises(ValueError, match="halo"):
            ds.map(np.negative, "halo-bad", halo=(1, 2))
        assert "halo-bad" not in connection

    def test_map_failure_leaves_nothing(self, connection: Connection) -> None:
        ds = connection.create_dataset("mapfail", data=np.ones((6, 6)), chunk_size=3)
        with pytest.raises(ValueError):
            ds.map(lambda c: c[:1], "mapfail-out")
        assert "mapfail-out" not in connection

        def boom(chunk: np.ndarray) -> np.ndarray:
            raise RuntimeError("boom")

        with pytest.raises((RuntimeError, DosnaError)):
            ds.map(boom, "mapfail-out2")
        assert "mapfail-out2" not in connection

    def test_failed_load_leaves_no_dataset(self, connection: Connection) -> None:
        class BreaksHalfway:
            """An array-like source whose reads fail after a few chunks."""

            shape, dtype = (8, 8), np.dtype("f8")

            def __init__(self) -> None:
                self.reads = 0

            def __getitem__(self, key: Any) -> np.ndarray:
                self.reads += 1
                if self.reads > 2:
                    raise OSError("source went away")
                return np.ones((8, 8))[key]

        with pytest.raises((OSError, DosnaError)):
            connection.create_dataset("half", data=BreaksHalfway(), chunk_size=2)
        self.sync(connection)
        assert "half" not in connection
        ds = connection.create_dataset("half", shape=(8, 8), chunk_size=2)
        assert _same(ds[...], np.zeros((8, 8)))  # no leftovers of the failed attempt

    # -- chunks ------------------------------------------------------------------
    def test_chunk_api(self, connection: Connection) -> None:
        ds = connection.create_dataset("chunks", shape=(5, 5), dtype="i4", fillvalue=3, chunk_size=(2, 4))
        chunk = ds.get_chunk((2, 1))
        assert chunk.shape == (1, 1) and not chunk.exists()
        assert _same(chunk.get_data(), np.full((1, 1), 3, "i4"))
        self.sync(connection)
        ds.create_chunk((0, 0), np.arange(8).reshape(2, 4))
        self.sync(connection)
        assert ds.has_chunk((0, 0)) and _same(ds[0:2, 0:4], np.arange(8, dtype="i4").reshape(2, 4))
        c = ds.get_chunk((0, 0))
        assert _same(c[1, ::-1], np.array([7, 6, 5, 4], "i4"))
        self.sync(connection)
        c[0, 1:3] = 0
        self.sync(connection)
        assert _same(ds[0, :4], np.array([0, 0, 0, 3], "i4"))
        self.sync(connection)
        ds.create_chunk((1, 1))
        self.sync(connection)
        assert ds.has_chunk((1, 1)) and _same(ds[2:4, 4], np.full(2, 3, "i4"))
        self.sync(connection)
        ds.del_chunk((0, 0))
        self.sync(connection)
        assert not ds.has_chunk((0, 0)) and _same(ds[0:2, 0:4], np.full((2, 4), 3, "i4"))
        for bad in [(3, 0), (0, 2), (0,), (-1, 0)]:
            with pytest.raises(IndexError):
                ds.get_chunk(bad)

    # -- codecs and checksums --------------------------------------------------
    @pytest.mark.parametrize("compression", CODECS)
    def test_codecs_round_trip_and_report(self, connection: Connection, compression: str | None) -> None:
        name = self.new_name("codec")
        data = (
            np.linspace(0, 1, 30 * 20 * 10).reshape(30, 20, 10) + random_array((30, 20, 10), "f4", 3) * 1e-3
        ).astype("f4")
        ds = connection.create_dataset(name, data=data, chunks=(16, 8, 10), compression=compression)
        assert ds.compression == compression and ds.checksum
        assert ds.shuffle == (compression is not None)
        assert (ds.compression_opts is None) == (compression is None)
        assert _same(connection[name][...], data)
        assert _same(ds[3:27:2, 5, ::-1], data[3:27:2, 5, ::-1])
        self.sync(connection)
        ds[1:5, 1:5, 1:5] = -1  # partial writes go through decode and encode
        data[1:5, 1:5, 1:5] = -1
        self.sync(connection)
        assert _same(ds[...], data)
        assert ds.nbytes_stored > 0 and len(ds.stored_chunks()) == 6
        other = connection[name]
        assert (other.compression, other.compression_opts, other.shuffle) == (
            ds.compression,
            ds.compression_opts,
            ds.shuffle,
        )

    @pytest.mark.parametrize("compression", [None, "zstd"])
    @pytest.mark.parametrize("position", [0.0, 0.3, 0.999])
    def test_flipped_bit_raises_chunk_corrupt(
        self, connection: Connection, compression: str | None, position: float
    ) -> None:
        name = self.new_name("flip")
        data = random_array((40, 30), "f8", 5)
        ds = connection.create_dataset(name, data=data, chunks=(20, 30), compression=compression)
        self.sync(connection)
        where = ""
        if connection.mpi_is_root:
            where = flip_stored_bit(connection, name, (1, 0), position)
        self.sync(connection)
        for key in [(slice(20, 40),), (Ellipsis,), (slice(None), 3)] + ([(39, 29)] if position > 0.9 else []):
            with pytest.raises(ChunkCorruptError) as err:
                ds[key]
            assert name in str(err.value) and "(1, 0)" in str(err.value)
            if where:
                assert where in str(err.value)
        assert _same(ds[:20], data[:20])  # the other chunk is intact

    def test_unknown_codec_in_metadata_is_corrupt(self, connection: Connection) -> None:
        import json

        from .errors import MetadataCorruptError

        name = self.new_name("badcodec")
        ds = connection.create_dataset(name, shape=(4,), chunks=2)
        doc = json.loads(ds.meta.to_json())
        doc["codec"]["compression"] = "snappy-9000"
        self.sync(connection)
        if connection.mpi_is_root:
            connection.backend.update_meta(name, json.dumps(doc).encode())
        self.sync(connection)
        with pytest.raises(MetadataCorruptError, match="snappy-9000"):
            connection[name]

    # -- resize and append (NumPy as the oracle) ------------------------------------
    def test_resize_grow_shrink_regrow(self, connection: Connection) -> None:
        name = self.new_name("resize")
        data = random_array((10, 7), "i4", 11)
        ds = connection.create_dataset(name, data=data, chunks=(4, 3), fillvalue=-5)
        expected = np.full((13, 9), -5, "i4")
        expected[:10, :7] = data
        ds.resize((13, 9))
        assert ds.shape == (13, 9) and _same(ds[...], expected)
        ds.resize((5, 2))  # cuts through chunks on both axes and drops whole ones
        assert ds.shape == (5, 2) and _same(ds[...], data[:5, :2])
        assert all(i * 4 < 5 and j * 3 < 2 for i, j in ds.stored_chunks())
        ds.resize((10, 7))  # what was cut away never comes back
        expected = np.full((10, 7), -5, "i4")
        expected[:5, :2] = data[:5, :2]
        assert _same(ds[...], expected) and _same(connection[name][...], expected)
        ds.resize((0, 7))
        assert ds.shape == (0, 7) and ds[...].shape == (0, 7) and ds.stored_chunks() == []
        ds.resize((3, 1))
        assert _same(ds[...], np.full((3, 1), -5, "i4"))
        for bad in [(3,), (3, 1, 1), (-1, 2)]:
            with pytest.raises(ValueError):
                ds.resize(bad)

    @pytest.mark.parametrize("axis", [0, 1, 2, -1])
    def test_append_on_every_axis(self, connection: Connection, axis: int) -> None:
        name = self.new_name("append")
        data = random_array((5, 4, 3), "f4", 12)
        ds = connection.create_dataset(name, data=data, chunks=(2, 3, 2))
        expected = data
        for step in range(3):
            shape = list(expected.shape)
            shape[axis] = step + 1
            block = random_array(tuple(shape), "f4", 20 + step)
            ds.append(block, axis=axis)
            expected = np.concatenate([expected, block], axis=axis)
            assert ds.shape == expected.shape and _same(ds[...], expected)
        one = np.take(expected, [0], axis=axis).squeeze(axis)  # one element of the axis
        ds.append(one, axis=axis)
        expected = np.concatenate([expected, np.expand_dims(one, axis)], axis=axis)
        assert _same(connection[name][...], expected)
        with pytest.raises(ValueError):
            ds.append(np.zeros((9, 9, 9)), axis=axis)
        with pytest.raises(ValueError):
            ds.append(
                np.array(["x"]).repeat(expected.size // expected.shape[axis]).reshape(one.shape), axis=axis
            )
        assert ds.shape == expected.shape  # refused before anything changed

    def test_append_to_empty_axis(self, connection: Connection) -> None:
        name = self.new_name("grow")
        ds = connection.create_dataset(name, shape=(0, 3), dtype="i8", chunks=(4, 3))
        rows = np.arange(30).reshape(10, 3)
        for i in range(0, 10, 3):
            ds.append(rows[i : i + 3])
        assert ds.shape == (10, 3) and _same(ds[...], rows)

    def test_stale_handle_sees_resize(self, connection: Connection) -> None:
        name = self.new_name("stale")
        ds = connection.create_dataset(name, data=np.arange(10.0), chunks=4)
        other = connection[name]
        ds.resize((4,))
        assert _same(other[...], np.arange(4.0)) and other.shape == (4,)
        with pytest.raises(IndexError):
            other[7]
        ds.append(np.ones(3))
        assert other[...].shape == (7,)

    # -- NumPy oracle (hypothesis) ---------------------------------------------
    def oracle_plan(self, connection: Connection, mode: str = "numpy") -> tuple[int, Any]:
        """``(cases, strategy)`` of the NumPy-oracle property tests on ``connection``.

        By default ``DOSNA_HYPOTHESIS_EXAMPLES`` cases drawn by :func:`index_cases`.
        A subclass may run fewer, sharper cases (``index_cases(min_len=1,
        max_chunks=64)``) on combinations whose indexing path another one covers.
        """
        return _examples(), index_cases(mode=mode)

    def _oracle(self, connection: Connection, check: Any, mode: str = "numpy", **strategies: Any) -> None:
        """Run ``check(case=..., **drawn)`` on the planned number of hypothesis cases of ``mode``
        (see :func:`index_cases`)."""
        examples, cases = self.oracle_plan(connection, mode)

        @given(case=cases, **strategies)
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.differing_executors,
            ],
            **_HYPOTHESIS_MPI,
        )
        def run(**drawn: Any) -> None:
            check(connection, **drawn)

        run()

    def test_numpy_oracle_oindex_vindex(self, connection: Connection) -> None:
        if st is None:  # pragma: no cover
            pytest.skip("needs hypothesis")
        self._oracle(
            connection,
            self._check_oindex_vindex,
            mode="outer",
            indexing=st.sampled_from(["outer", "vectorized"]),
        )

    def _check_oindex_vindex(self, connection: Connection, case: tuple, indexing: str) -> None:
        shape, chunks, dtype, key = case
        if indexing == "vectorized":  # arrays that broadcast, masks over several axes
            key = vectorized_key(key, shape)
        oracle = outer_oracle if indexing == "outer" else vectorized_oracle
        data = random_array(shape, dtype, 11)
        name = self.new_name(indexing)
        ds = connection.create_dataset(name, data=data, chunk_size=chunks)
        indexer = ds.oindex if indexing == "outer" else ds.vindex
        try:
            try:
                expected = oracle(data, key)
            except IndexError:
                with pytest.raises(IndexError):
                    indexer[key]
                with pytest.raises(IndexError):
                    indexer[key] = 0
                return
            got = indexer[key]
            # 0-d results as scalars: NumPy gives scalars in native byte order
            assert _same(np.asarray(got)[()], np.asarray(expected)[()]), (indexing, shape, chunks, key)
            # set: every selected element gets its value (where an element is selected
            # twice, the last one, as NumPy does)
            where = oracle(np.arange(data.size).reshape(shape), key)
            value = random_array(np.shape(where), dtype, 12)
            flat = data.reshape(-1).copy()
            flat[np.ravel(where)] = np.ravel(value)
            self.sync(connection)
            indexer[key] = value
            self.sync(connection)
            assert _same(ds[...], flat.reshape(shape)), (indexing, shape, chunks, key)
        finally:
            connection.del_dataset(name)

    def test_numpy_oracle_get(self, connection: Connection) -> None:
        if st is None:  # pragma: no cover
            pytest.skip("needs hypothesis")
        self._oracle(connection, self._check_get)

    def test_numpy_oracle_set(self, connection: Connection) -> None:
        if st is None:  # pragma: no cover
            pytest.skip("needs hypothesis")
        self._oracle(connection, self._check_set, seed=st.integers(0, 2**16))

    def _check_get(self, connection: Connection, case: tuple) -> None:
        shape, chunks, dtype, key = case
        data = random_array(shape, dtype, 9)
        name = self.new_name("get")
        ds = connection.create_dataset(name, data=data, chunk_size=chunks)
        try:
            try:
                expected = data[key]
            except IndexError:
                with pytest.raises(IndexError):
                    ds[key]
                return
            assert _same(ds[key], expected), (shape, chunks, key)
        finally:
            connection.del_dataset(name)

    def _check_set(self, connection: Connection, case: tuple, seed: int) -> None:
        shape, chunks, dtype, key = case
        data = random_array(shape, dtype, 10)
        name = self.new_name("set")
        ds = connection.create_dataset(name, shape=shape, dtype=dtype, fillvalue=1, chunk_size=chunks)
        try:
            ds.load(data)
            try:
                target_shape = data[key].shape
            except IndexError:
                with pytest.raises(IndexError):
                    ds[key] = 0
                return
            rng = np.random.default_rng(seed)
            # a value of the target shape, or one that broadcasts to it
            vshape = tuple(1 if rng.random() < 0.3 else n for n in target_shape)
            vshape = vshape[int(rng.integers(0, len(vshape) + 1)) :] if rng.random() < 0.3 else vshape
            value = random_array(vshape, dtype, seed)
            data[key] = value
            self.sync(connection)
            ds[key] = value
            self.sync(connection)
            assert _same(ds[...], data), (shape, chunks, key, vshape)
        finally:
            connection.del_dataset(name)
