"""Object-store chunk helpers: ranged reads cut exactly the selection NumPy gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from dosna.backends.objects import RangedRead, byte_span
from dosna.backends.ram import RamBackend
from dosna.errors import ChunkCorruptError
from dosna.indexing import plan, read_selection
from dosna.io.codecs import CodecSpec
from dosna.metadata import DatasetMeta
from dosna.testing import index_cases, random_array


@given(index_cases())
@settings(max_examples=2000, deadline=None)
def test_ranged_read_matches_selection(case):
    shape, chunks, dtype, key = case
    try:
        sel = plan(key, shape, chunks)
    except IndexError:
        return
    meta = DatasetMeta.create("x", shape, dtype, None, chunks)
    data = random_array(shape, dtype, 1)
    for idx, chunk_sel, _ in sel.parts():
        valid = np.ascontiguousarray(data[(*meta.chunk_region(idx), Ellipsis)]).reshape(meta.chunk_shape(idx))
        block = np.zeros(meta.stored_shape(idx), valid.dtype)  # edge chunks are stored padded
        block[tuple(slice(0, n) for n in valid.shape)] = valid
        ranged = RangedRead(meta, idx, chunk_sel)
        raw = block.tobytes()[ranged.offset : ranged.offset + ranged.length]
        assert len(raw) == ranged.length <= block.nbytes
        np.testing.assert_array_equal(ranged.cut(raw), read_selection(block, chunk_sel))


@pytest.mark.parametrize("checksum", [False, True])
def test_objects_of_the_wrong_size_are_corrupt(checksum):
    backend = RamBackend("objects-size")
    meta = DatasetMeta.create("x", (5, 5), "f4", None, (2, 2), codec=CodecSpec.create(checksum=checksum))
    good = np.arange(4, dtype="f4").reshape(2, 2)
    backend.write_chunk(meta, (0, 0), good)
    np.testing.assert_array_equal(backend.read_chunk(meta, (0, 0)), good)
    backend.store(meta, (0, 0), bytes(12))
    with pytest.raises(ChunkCorruptError, match="12 bytes, expected"):
        backend.read_chunk(meta, (0, 0))
    backend.write_chunk(meta, (2, 2), np.ones((2, 2), "f4"))  # edge chunks are stored padded
    np.testing.assert_array_equal(backend.read_chunk(meta, (2, 2)), np.ones((2, 2)))


@given(index_cases())
@settings(max_examples=500, deadline=None)
def test_byte_span_is_the_ranged_read(case):
    shape, chunks, dtype, key = case
    try:
        sel = plan(key, shape, chunks)
    except IndexError:
        return
    meta = DatasetMeta.create("x", shape, dtype, None, chunks)
    for idx, chunk_sel, _ in sel.parts():
        stored = meta.stored_shape(idx)
        if any(isinstance(s, slice) and not len(range(*s.indices(n))) for s, n in zip(chunk_sel, stored)):
            continue
        ranged = RangedRead(meta, idx, chunk_sel)
        assert byte_span(stored, meta.dtype.itemsize, chunk_sel) == (ranged.offset, ranged.length)
