"""Indexing maths against NumPy, without any backend: plan a key, apply it chunk by chunk."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings

from dosna.indexing import covers_chunk, plan, prepare_values, read_selection, write_selection
from dosna.testing import index_cases, random_array


def split(data: np.ndarray, chunks: tuple) -> dict:
    grid = [range(-(-s // c)) for s, c in zip(data.shape, chunks)]
    return {
        idx: data[tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks))].copy()
        for idx in itertools.product(*grid)
    }


def join(blocks: dict, shape: tuple, chunks: tuple, dtype) -> np.ndarray:
    out = np.empty(shape, dtype)
    for idx, block in blocks.items():
        out[tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks))] = block
    return out


@given(case=index_cases(max_dims=4, max_len=9))
@settings(max_examples=3000, deadline=None)
def test_get_matches_numpy(case):
    shape, chunks, dtype, key = case
    data = random_array(shape, dtype, 1)
    try:
        expected = data[key]
    except IndexError:
        with pytest.raises(IndexError):
            plan(key, shape, chunks)
        return
    sel = plan(key, shape, chunks)
    blocks = split(data, chunks)
    out = np.empty(sel.shape, data.dtype)
    touched = 0
    for idx, chunk_sel, out_sel in sel.parts():
        out[out_sel] = read_selection(blocks[idx], chunk_sel)
        touched += 1
    assert touched == sel.chunk_count()
    result = sel.to_numpy(out)
    assert type(result) is type(expected) or (np.isscalar(result) and np.isscalar(expected))
    np.testing.assert_array_equal(result, expected)
    assert np.shape(result) == expected.shape


@given(case=index_cases(max_dims=4, max_len=9))
@settings(max_examples=3000, deadline=None)
def test_set_matches_numpy(case):
    shape, chunks, dtype, key = case
    data = random_array(shape, dtype, 2)
    try:
        target = data[key]
    except IndexError:
        return
    value = random_array(np.shape(target), dtype, 3)
    sel = plan(key, shape, chunks)
    blocks = split(data, chunks)
    values = prepare_values(sel, value, data.dtype)
    for idx, chunk_sel, out_sel in sel.parts():
        if covers_chunk(chunk_sel, blocks[idx].shape):
            blocks[idx] = np.reshape(values[out_sel], blocks[idx].shape)
        else:
            write_selection(blocks[idx], chunk_sel, values[out_sel])
    data[key] = value
    np.testing.assert_array_equal(join(blocks, shape, chunks, data.dtype), data)


def test_slice_parts_skip_chunks_a_step_jumps_over():
    sel = plan(slice(1, 100, 25), (100,), (10,))
    assert [p[0] for p in sel.parts()] == [(0,), (2,), (5,), (7,)]
    assert sel.chunk_count() == 4


def test_prepare_values_does_not_copy_scalars_or_matching_arrays():
    sel = plan(Ellipsis, (1000, 1000), (10, 10))
    v = prepare_values(sel, 3.0, np.dtype("f8"))
    assert v.strides == (0, 0)  # a broadcast view, not a 8 MB array
    arr = np.ones((1000, 1000))
    assert np.shares_memory(prepare_values(sel, arr, np.dtype("f8")), arr)
