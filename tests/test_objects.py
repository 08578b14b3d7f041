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


@pytest.mark.parametrize("checksum", [False, True])
def test_partial_reads_cut_from_the_object_agree_and_see_damage(checksum):
    """Selections read straight from a stored object (ranged, and whole-object when most of the
    chunk is selected) equal NumPy's; with checksums a flipped bit in the blocks they touch is
    ChunkCorruptError, and reads of other blocks still succeed."""
    backend = RamBackend("objects-strided")
    codec = CodecSpec.create(checksum=checksum)
    meta = DatasetMeta.create("x", (64, 64, 64), "f4", None, (64, 64, 64), codec=codec)
    chunk = random_array((64, 64, 64), "f4", 2)
    backend.write_chunk(meta, (0, 0, 0), chunk)
    keys = [
        (5, 7, slice(None)),  # a row: one block
        (slice(3, 9), slice(10, 20), slice(1, 60, 3)),  # several blocks, ranged
        (slice(0, 60), slice(2, 62), 5),  # most of the chunk: the whole object
        (np.array([1, 40, 2]), slice(None), np.array([0, 63, 1])),
    ]
    for key in keys:
        np.testing.assert_array_equal(backend.read_chunk_part(meta, (0, 0, 0), key), chunk[key])
    if not checksum:
        return
    stored = bytearray(backend._chunks(meta)[(0, 0, 0)])
    plane = 6  # one block per plane of 64 x 64 float32
    stored[plane * (16384 + 4) + 100] ^= 0x01
    backend.store(meta, (0, 0, 0), bytes(stored))
    for key in [(plane, 7, slice(None)), (slice(3, 9), slice(10, 20), slice(1, 60, 3)), keys[2]]:
        with pytest.raises(ChunkCorruptError, match=f"block {plane}"):
            backend.read_chunk_part(meta, (0, 0, 0), key)
    np.testing.assert_array_equal(
        backend.read_chunk_part(meta, (0, 0, 0), (40, 7, slice(None))), chunk[40, 7]
    )
