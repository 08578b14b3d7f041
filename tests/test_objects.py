"""Object-store chunk helpers: ranged reads cut exactly the selection NumPy gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from dosna.backends.objects import RangedRead, decode, encode
from dosna.errors import ChunkCorruptError
from dosna.indexing import plan, read_selection
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
        block = np.ascontiguousarray(data[(*meta.chunk_region(idx), Ellipsis)]).reshape(meta.chunk_shape(idx))
        ranged = RangedRead(meta, idx, chunk_sel)
        raw = block.tobytes()[ranged.offset : ranged.offset + ranged.length]
        assert len(raw) == ranged.length <= block.nbytes
        np.testing.assert_array_equal(ranged.cut(raw), read_selection(block, chunk_sel))


def test_decode_checks_size():
    meta = DatasetMeta.create("x", (5, 5), "f4", None, (2, 2))
    good = np.arange(4, dtype="f4").reshape(2, 2)
    np.testing.assert_array_equal(decode(meta, (0, 0), bytes(encode(good)), "k"), good)
    with pytest.raises(ChunkCorruptError, match="12 bytes, expected 16"):
        decode(meta, (0, 0), bytes(12), "pool/x/0.0")
    np.testing.assert_array_equal(decode(meta, (2, 2), bytes(encode(np.ones((1, 1), "f4"))), "k"), [[1]])
