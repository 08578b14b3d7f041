"""NumPy-exact indexing maths: which chunks a key touches and which parts of them.

Pure functions and small value objects; nothing here does I/O.

A key is first normalised into one *dimension indexer* per dataset axis
(:class:`IntDim`, :class:`SliceDim` or :class:`ArrayDim`) plus the positions of
``np.newaxis`` entries. The selection then works in a *canonical layout*: one
axis per non-integer dataset axis, in dataset order. :meth:`Selection.to_numpy`
turns a canonical result into exactly what NumPy returns for the same key
(inserting new axes and applying NumPy's rule that moves an advanced index to
the front when integer indices are not next to it), and
:meth:`Selection.from_numpy` goes the other way for values being written.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ArrayDim",
    "ChunkPart",
    "IntDim",
    "Selection",
    "SliceDim",
    "covers_chunk",
    "plan",
    "prepare_values",
    "read_selection",
    "selected_fraction",
    "write_selection",
]

ChunkSel = tuple[int | slice | np.ndarray, ...]
ChunkPart = tuple[tuple[int, ...], ChunkSel, tuple[slice | np.ndarray, ...]]
"""One chunk's share of a selection: (chunk index, selection inside the chunk,
selection in the canonical output)."""

_INVALID_INDEX = (
    "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and "
    "integer or boolean arrays are valid indices"
)


@dataclass(slots=True)
class IntDim:
    """A single integer on an axis: the axis is dropped from the result."""

    index: int
    chunk_len: int

    def parts(self) -> list[tuple[int, int, None]]:
        return [(self.index // self.chunk_len, self.index % self.chunk_len, None)]


@dataclass(slots=True)
class SliceDim:
    """A slice with a normalised start, a non-zero step and ``length`` items."""

    start: int
    step: int
    length: int
    chunk_len: int

    def parts(self) -> list[tuple[int, slice, slice]]:
        return _slice_parts(self.start, self.step, self.length, self.chunk_len)


@functools.lru_cache(maxsize=4096)
def _slice_parts(start: int, step: int, n: int, c: int) -> list[tuple[int, slice, slice]]:
    """Chunk parts of a slice (cached: repeated access patterns reuse them)."""
    if n == 0:
        return []
    if step > 0:
        return list(_ascending_parts(start, step, n, c))
    # A negative step visits the same indices as the ascending progression
    # from its last index; output positions run backwards.
    out = []
    for j, sl, osl in _ascending_parts(start + (n - 1) * step, -step, n, c):
        count = osl.stop - osl.start
        first = sl.start + (count - 1) * sl.step
        stop = sl.start - 1
        out.append((j, slice(first, stop if stop >= 0 else None, step), slice(n - osl.stop, n - osl.start)))
    return out


def _ascending_parts(start: int, step: int, n: int, c: int) -> Iterator[tuple[int, slice, slice]]:
    last = start + (n - 1) * step
    for j in range(start // c, last // c + 1):
        base = j * c
        lo = max(start, base)
        hi = min(last + 1, base + c)
        k0 = -(-(lo - start) // step)
        k1 = -(-(hi - start) // step)
        if k1 <= k0:
            continue  # the step jumps over this chunk
        first = start + k0 * step - base
        yield j, slice(first, first + (k1 - k0 - 1) * step + 1, step), slice(k0, k1)


@dataclass(slots=True, eq=False)
class ArrayDim:
    """A 1-D array of non-negative integer indices on one axis (any order, repeats allowed)."""

    indices: np.ndarray
    chunk_len: int

    @property
    def length(self) -> int:
        return len(self.indices)

    def parts(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        if len(self.indices) == 0:
            return []
        chunk_ids = self.indices // self.chunk_len
        order = np.argsort(chunk_ids, kind="stable")
        sorted_ids = chunk_ids[order]
        bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
        out = []
        for positions in np.split(order, bounds):
            j = int(chunk_ids[positions[0]])
            out.append((j, self.indices[positions] - j * self.chunk_len, positions))
        return out


Dim = IntDim | SliceDim | ArrayDim


@dataclass(slots=True, eq=False)
class Selection:
    """A normalised key for an array of a given shape and chunk shape.

    Attributes
    ----------
    dims : tuple
        One dimension indexer per dataset axis.
    shape : tuple of int
        Canonical result shape (one axis per non-integer dimension indexer).
    numpy_shape : tuple of int
        The shape NumPy gives for the same key.
    scalar : bool
        NumPy returns a scalar, not an array, for this key.
    """

    dims: tuple[Dim, ...]
    shape: tuple[int, ...]
    numpy_shape: tuple[int, ...]
    scalar: bool
    array_axis: int | None  # canonical axis of the ArrayDim, if any
    array_first: bool  # NumPy moves the array axis to the front

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def parts(self) -> Iterator[ChunkPart]:
        """Yield, for each chunk touched, its index, its selection and the output selection."""
        per_dim = [d.parts() for d in self.dims]
        keep = [i for i, d in enumerate(self.dims) if not isinstance(d, IntDim)]
        if not self.dims:
            yield (), (), ()
        elif len(keep) == len(self.dims):
            for combo in itertools.product(*per_dim):
                idx, chunk_sel, out_sel = zip(*combo)
                yield idx, chunk_sel, out_sel
        else:
            pick = operator.itemgetter(*keep) if len(keep) > 1 else None
            for combo in itertools.product(*per_dim):
                idx, chunk_sel, out_sel = zip(*combo)
                if pick is not None:
                    out_sel = pick(out_sel)
                else:
                    out_sel = (out_sel[keep[0]],) if keep else ()
                yield idx, chunk_sel, out_sel

    def chunk_count(self) -> int:
        """How many chunks the selection touches."""
        count = 1
        for d in self.dims:
            count *= len(d.parts())
        return count

    def to_numpy(self, canonical: np.ndarray) -> Any:
        """Turn a canonical result into what NumPy returns for the key."""
        out = canonical
        if self.array_first and self.array_axis is not None:
            out = np.moveaxis(out, self.array_axis, 0)
        if out.shape != self.numpy_shape:
            out = out.reshape(self.numpy_shape)
        return out[()] if self.scalar else out

    def from_numpy(self, value: np.ndarray) -> np.ndarray:
        """Turn a value shaped like NumPy's result into the canonical layout."""
        if self.array_first and self.array_axis is not None:
            moved = list(self.shape)
            moved.insert(0, moved.pop(self.array_axis))
            return np.moveaxis(value.reshape(moved), 0, self.array_axis)
        return value.reshape(self.shape)


def _as_index_array(obj: Any) -> np.ndarray | None:
    """Return ``obj`` as an ndarray if it is an array-like index, else None."""
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, (list, tuple)):
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise IndexError(_INVALID_INDEX)
        if arr.size == 0:
            arr = arr.astype(np.intp)
        return arr
    return None


def plan(key: Any, shape: Sequence[int], chunk_size: Sequence[int]) -> Selection:
    """Normalise ``key`` against ``shape`` and plan it over chunks of ``chunk_size``.

    Raises IndexError as NumPy does for out-of-range or malformed keys; only
    one axis may take an integer or boolean array.
    """
    if not isinstance(key, tuple):
        key = (key,)
    ndim = len(shape)
    if len(key) == ndim:
        fast = _plan_basic(key, shape, chunk_size)
        if fast is not None:
            return fast
    entries: list[Any] = []
    has_ellipsis = False
    for k in key:
        if k is Ellipsis:
            if has_ellipsis:
                raise IndexError("an index can only have a single ellipsis ('...')")
            has_ellipsis = True
            entries.append(k)
            continue
        if k is None or isinstance(k, slice):
            entries.append(k)
            continue
        if isinstance(k, (bool, np.bool_)):
            raise IndexError("boolean scalar indices are not supported by dosna")
        if isinstance(k, (int, np.integer)):
            entries.append(int(k))
            continue
        arr = _as_index_array(k)
        if arr is None:
            try:
                entries.append(operator.index(k))
                continue
            except TypeError:
                raise IndexError(_INVALID_INDEX) from None
        if arr.ndim == 0 and arr.dtype.kind in "iu":
            entries.append(int(arr))
        elif arr.dtype.kind == "b" and arr.ndim == 1:
            entries.append(arr)
        elif arr.dtype.kind in "iu" and arr.ndim == 1:
            entries.append(arr.astype(np.intp, copy=False))
        elif arr.dtype.kind in "iub":
            raise IndexError("dosna supports only 1-D integer or boolean index arrays")
        else:
            raise IndexError(_INVALID_INDEX)

    consumed = sum(1 for e in entries if e is not None and e is not Ellipsis)
    if consumed > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {consumed} were indexed"
        )
    # NumPy judges whether advanced indices are adjacent on the key as written,
    # where an Ellipsis (even an empty one) or a newaxis separates them.
    positions = list(range(len(entries)))
    if has_ellipsis:
        pos = next(i for i, e in enumerate(entries) if e is Ellipsis)
        entries[pos : pos + 1] = [slice(None)] * (ndim - consumed)
        positions[pos : pos + 1] = [pos] * (ndim - consumed)
    else:
        entries.extend([slice(None)] * (ndim - consumed))
        positions.extend([len(positions)] * (ndim - consumed))

    dims: list[Dim] = []
    numpy_basic: list[int] = []  # NumPy's shape, without the advanced (array) axis
    canonical: list[int] = []
    advanced_positions: list[int] = []  # positions in `entries` of ints and arrays
    array_entry: int | None = None
    array_axis: int | None = None
    array_len = 0
    axis = 0
    for pos, e in enumerate(entries):
        if e is None:
            numpy_basic.append(1)
            continue
        size, chunk = shape[axis], chunk_size[axis]
        if isinstance(e, int):
            if not -size <= e < size:
                raise IndexError(f"index {e} is out of bounds for axis {axis} with size {size}")
            dims.append(IntDim(e + size if e < 0 else e, chunk))
            advanced_positions.append(positions[pos])
        elif isinstance(e, slice):
            start, stop, step = e.indices(size)
            n = len(range(start, stop, step))
            dims.append(SliceDim(start, step, n, chunk))
            numpy_basic.append(n)
            canonical.append(n)
        else:
            if array_entry is not None:
                raise IndexError("dosna supports integer-array indexing on one axis only")
            if e.dtype.kind == "b" and len(e) == 0:
                e = e.astype(np.intp)  # NumPy treats an empty boolean array as integers
            if e.dtype.kind == "b":
                if len(e) != size:
                    raise IndexError(
                        f"boolean index did not match indexed array along axis {axis}; "
                        f"size of axis is {size} but size of corresponding boolean axis is {len(e)}"
                    )
                e = np.flatnonzero(e)
            elif len(e):
                bad = (e < -size) | (e >= size)
                if bad.any():
                    raise IndexError(
                        f"index {int(e[bad][0])} is out of bounds for axis {axis} with size {size}"
                    )
                e = np.where(e < 0, e + size, e)
            dims.append(ArrayDim(e, chunk))
            array_entry = pos
            array_axis = len(canonical)
            array_len = len(e)
            advanced_positions.append(positions[pos])
            canonical.append(len(e))
            numpy_basic.append(-1)  # placeholder for the array axis
        axis += 1

    array_first = False
    if array_entry is None:
        numpy_shape = tuple(numpy_basic)
        scalar = not has_ellipsis and not numpy_shape
    else:
        scalar = False
        adjacent = advanced_positions == list(range(advanced_positions[0], advanced_positions[-1] + 1))
        basic = [n for n in numpy_basic if n != -1]
        if adjacent:
            numpy_shape = tuple(array_len if n == -1 else n for n in numpy_basic)
        else:
            numpy_shape = (array_len, *basic)
            array_first = array_axis != 0
    return Selection(tuple(dims), tuple(canonical), numpy_shape, scalar, array_axis, array_first)


def _plan_basic(key: tuple, shape: Sequence[int], chunk_size: Sequence[int]) -> Selection | None:
    """The common case, planned quickly: one int or slice per axis. None otherwise."""
    dims: list[Dim] = []
    out: list[int] = []
    for k, size, chunk in zip(key, shape, chunk_size):
        kind = type(k)
        if kind is int:
            if not -size <= k < size:
                return None  # let the general path raise NumPy's error
            dims.append(IntDim(k + size if k < 0 else k, chunk))
        elif kind is slice:
            start, stop, step = k.indices(size)
            n = len(range(start, stop, step))
            dims.append(SliceDim(start, step, n, chunk))
            out.append(n)
        else:
            return None
    shape_t = tuple(out)
    return Selection(tuple(dims), shape_t, shape_t, not shape_t, None, False)


def _split_array(sel: ChunkSel) -> tuple[ChunkSel, int, np.ndarray | None]:
    """Split a chunk selection into its basic part and its index array (if any)."""
    for pos, s in enumerate(sel):
        if s.__class__ is np.ndarray:
            basic = (*sel[:pos], slice(None), *sel[pos + 1 :])
            axis = sum(1 for t in sel[:pos] if t.__class__ is not int)
            return basic, axis, s
    return sel, 0, None


def read_selection(chunk: np.ndarray, sel: ChunkSel) -> np.ndarray:
    """``chunk[sel]`` in the canonical layout (an index array stays in place)."""
    for s in sel:
        if s.__class__ is np.ndarray:
            basic, axis, arr = _split_array(sel)
            assert arr is not None
            return np.take(chunk[basic], arr, axis=axis)
    return chunk[sel]


def write_selection(chunk: np.ndarray, sel: ChunkSel, values: Any) -> None:
    """``chunk[sel] = values`` in the canonical layout (an index array stays in place)."""
    basic, axis, arr = _split_array(sel)
    if arr is None:
        chunk[basic] = values
    else:
        view = chunk[basic]
        view[(slice(None),) * axis + (arr,)] = values


def selected_fraction(sel: ChunkSel, chunk_shape: Sequence[int]) -> float:
    """Which fraction of a chunk the bounding box of ``sel`` spans (0 to 1)."""
    fraction = 1.0
    for s, n in zip(sel, chunk_shape):
        if s.__class__ is int:
            extent = 1
        elif s.__class__ is slice:
            first, stop, step = s.indices(n)
            count = len(range(first, stop, step))
            extent = (count - 1) * abs(step) + 1 if count else 0
        else:
            arr = np.asarray(s)
            extent = int(arr.max() - arr.min() + 1) if arr.size else 0
        fraction *= extent / n if n else 0.0
    return fraction


def covers_chunk(sel: ChunkSel, chunk_shape: Sequence[int]) -> bool:
    """True if ``sel`` selects every element of a chunk of ``chunk_shape`` once, in order."""
    for s, n in zip(sel, chunk_shape):
        if isinstance(s, slice):
            if s.step != 1 or s.start != 0 or s.stop != n:
                return False
        elif isinstance(s, int):
            if n != 1:
                return False
        else:
            return False
    return True


def prepare_values(sel: Selection, value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` cast and broadcast as NumPy would for ``a[key] = value``, in canonical layout.

    Raises the errors NumPy raises (ValueError for shapes that do not broadcast,
    OverflowError/TypeError for values that do not convert) before any I/O. Scalars
    and arrays that already have the right dtype are not copied.
    """
    if isinstance(value, np.ndarray):
        arr = value
        if arr.dtype != dtype:
            arr = np.empty(value.shape, dtype)
            arr[...] = value  # NumPy's assignment casting
    else:
        arr = np.asarray(value)
        if arr.dtype != dtype:
            arr = np.asarray(value, dtype=dtype)  # raises like NumPy for out-of-range ints
    target = sel.numpy_shape
    while arr.ndim > len(target) and arr.shape[0] == 1:
        arr = arr[0]  # NumPy drops leading length-1 axes of the value
    try:
        arr = np.broadcast_to(arr, target)
    except ValueError:
        raise ValueError(
            f"could not broadcast input array from shape {np.shape(value)} into shape {target}"
        ) from None
    return sel.from_numpy(arr)
