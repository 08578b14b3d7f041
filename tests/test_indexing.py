"""Indexing maths against NumPy, without any backend: plan a key, apply it chunk by chunk."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosna.indexing import covers_chunk, plan, prepare_values, read_selection, write_selection
from dosna.testing import index_cases, outer_oracle, random_array, vectorized_key, vectorized_oracle


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


def _apply(data: np.ndarray, chunks: tuple, key, mode: str):
    """``oindex``/``vindex`` of ``data`` planned over chunks, read chunk by chunk."""
    sel = plan(key, data.shape, chunks, mode)
    blocks = split(data, chunks)
    out = np.empty(sel.shape, data.dtype)
    for idx, chunk_sel, out_sel in sel.parts():
        out[out_sel] = read_selection(blocks[idx], chunk_sel)
    return sel.to_numpy(out)


@given(case=index_cases(max_dims=4, max_len=9, mode="outer"), vectorized=st.booleans())
@settings(max_examples=1500, deadline=None)
def test_outer_and_vectorized_match_their_oracles(case, vectorized):
    shape, chunks, dtype, key = case
    mode, oracle = ("outer", outer_oracle) if not vectorized else ("vectorized", vectorized_oracle)
    if vectorized:
        key = vectorized_key(key, shape)
    data = random_array(shape, dtype, 4)
    try:
        expected = oracle(data, key)
    except IndexError:
        with pytest.raises(IndexError):
            plan(key, shape, chunks, mode)
        return
    got = _apply(data, chunks, key, mode)
    np.testing.assert_array_equal(got, expected)
    assert np.shape(got) == np.shape(expected)
    # and the canonical layout round-trips values being written
    sel = plan(key, shape, chunks, mode)
    values = random_array(np.shape(expected), dtype, 5)
    np.testing.assert_array_equal(sel.to_numpy(prepare_values(sel, values, data.dtype)), values)


def test_modes_agree_with_zarr():
    zarr = pytest.importorskip("zarr")
    data = np.arange(5 * 6 * 7, dtype="i4").reshape(5, 6, 7)
    z = zarr.create_array(store={}, shape=data.shape, chunks=(2, 4, 3), dtype=data.dtype)
    z[...] = data
    for key in [
        ([0, 1], slice(None), [2, 3]),
        ([4, 0, 0], [5, 1], [6]),
        (1, [0, 1], slice(2, 6)),
        (Ellipsis, [1, 1]),
    ]:
        np.testing.assert_array_equal(_apply(data, (2, 4, 3), key, "outer"), z.oindex[key])
    for key in [([0, 1], [2, 3], [4, 5]), (data % 2 == 0,), (1, [0, 1], [2, 3]), ([[0], [1]], [1, 2, 3], 0)]:
        got = _apply(data, (2, 4, 3), key, "vectorized")
        assert got.shape == z.vindex[key].shape
        np.testing.assert_array_equal(got, z.vindex[key])


def test_unknown_mode_and_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="mode"):
        plan(0, (3,), (2,), "diagonal")
    with pytest.raises(IndexError, match="broadcast"):
        plan(([0, 1], [0, 1, 2]), (3, 3), (2, 2))
    with pytest.raises(IndexError, match="1-D"):
        plan(np.zeros((2, 2), int), (3, 3), (2, 2), "outer")
    with pytest.raises(IndexError, match="boolean index did not match"):
        plan(np.ones((3, 2), bool), (3, 3), (2, 2))


@pytest.mark.parametrize(
    "shape,key",
    [
        ((0, 0, 1), (Ellipsis, np.zeros((0, 0), bool))),
        ((3, 1, 2), np.zeros((3, 1, 0), bool)),
        ((3, 1, 2), (np.zeros(0, bool), 1)),
        ((3, 1, 2), np.zeros((0, 1), bool)),
        ((3, 1, 2), np.zeros((2, 0), bool)),
        ((3, 1, 2), np.zeros((0, 5), bool)),
        ((0, 1, 0), (np.array([0]), np.array([], np.intp), slice(None))),  # no point uses the 0
        ((3, 4), ([7], [])),
        ((3, 4), ([[7]], [])),
        ((3, 4), (5, [])),  # integers are checked at once
        ((3, 4), ([7], [0])),
    ],
)
def test_masks_with_empty_axes_as_numpy(shape, key):
    data = random_array(shape, "i4", 1)
    try:
        expected = data[key]
    except IndexError:
        with pytest.raises(IndexError):
            plan(key, shape, (2, 2, 2))
        return
    sel = plan(key, shape, (2, 2, 2))
    assert sel.numpy_shape == expected.shape
    np.testing.assert_array_equal(sel.to_numpy(np.empty(sel.shape, "i4")), expected)
