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
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MODES",
    "ArrayDim",
    "ChunkPart",
    "IntDim",
    "PointAxis",
    "Points",
    "Selection",
    "SliceDim",
    "as_numpy",
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


@dataclass(slots=True, eq=False)
class PointAxis:
    """An axis indexed by the coordinates of a :class:`Points` set (vectorised indexing)."""

    chunk_len: int


@dataclass(slots=True, eq=False)
class Points:
    """Coordinates on several axes that select points together (NumPy's broadcast index arrays).

    ``coords[i]`` holds every point's coordinate on dataset axis ``axes[i]``
    (1-D, non-negative, as long as the number of points).
    """

    axes: tuple[int, ...]
    coords: tuple[np.ndarray, ...]
    chunk_lens: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.coords[0]) if self.coords else 0

    def groups(self) -> list[tuple[tuple[int, ...], list[np.ndarray], np.ndarray]]:
        """Per chunk touched: its coordinates on ``axes``, the local coordinates and the point positions."""
        if not self.count:
            return []
        ids = [c // n for c, n in zip(self.coords, self.chunk_lens)]
        flat = ids[0] if len(ids) == 1 else np.ravel_multi_index(ids, tuple(int(i.max()) + 1 for i in ids))
        order = np.argsort(flat, kind="stable")
        bounds = np.flatnonzero(np.diff(flat[order])) + 1
        out = []
        for positions in np.split(order, bounds):
            first = positions[0]
            chunk = tuple(int(i[first]) for i in ids)
            local = [c[positions] - j * n for c, j, n in zip(self.coords, chunk, self.chunk_lens)]
            out.append((chunk, local, positions))
        return out


Dim = IntDim | SliceDim | ArrayDim | PointAxis

MODES = ("numpy", "outer", "vectorized")
"""How index arrays combine: as NumPy does (``ds[...]``), orthogonally (``ds.oindex[...]``)
or pointwise with the broadcast axes first (``ds.vindex[...]``)."""


@dataclass(slots=True, eq=False)
class Selection:
    """A normalised key for an array of a given shape and chunk shape.

    The *canonical layout* of a result has one axis per non-integer dataset
    axis, in dataset order; a set of points (vectorised index arrays) is one
    axis, the first. :meth:`to_numpy` reshapes and moves axes to give what
    NumPy (or ``oindex``/``vindex``) returns.

    Attributes
    ----------
    dims : tuple
        One dimension indexer per dataset axis.
    shape : tuple of int
        Canonical result shape.
    numpy_shape : tuple of int
        The shape NumPy gives for the same key.
    scalar : bool
        NumPy returns a scalar, not an array, for this key.
    """

    dims: tuple[Dim, ...]
    shape: tuple[int, ...]
    numpy_shape: tuple[int, ...]
    scalar: bool
    expand: tuple[int, ...] | None = None  # canonical shape with the point axis unflattened
    move: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # np.moveaxis after expanding
    moved_shape: tuple[int, ...] | None = None
    points: Points | None = None
    outer_arrays: bool = False  # several ArrayDims, combined orthogonally

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def parts(self) -> Iterator[ChunkPart]:
        """Yield, for each chunk touched, its index, its selection and the output selection."""
        if self.points is not None:
            yield from self._point_parts()
            return
        per_dim = [_dim_parts(d) for d in self.dims]
        keep = [i for i, d in enumerate(self.dims) if not isinstance(d, IntDim)]
        if not self.dims:
            yield (), (), ()
        elif self.outer_arrays:
            for combo in itertools.product(*per_dim):
                idx, chunk_sel, out_sel = zip(*combo)
                kept = tuple(out_sel[i] for i in keep)
                counts = [o.stop - o.start if isinstance(o, slice) else len(o) for o in kept]
                yield idx, _outer(chunk_sel, counts), _outer(kept, counts)
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

    def _point_parts(self) -> Iterator[ChunkPart]:
        points = self.points
        assert points is not None
        others = [i for i, d in enumerate(self.dims) if not isinstance(d, PointAxis)]
        sliced = [i for i in others if isinstance(self.dims[i], SliceDim)]
        trailing = (1,) * len(sliced)
        per_dim = [_dim_parts(self.dims[i]) for i in others]
        ndim = len(self.dims)
        for chunk, local, positions in points.groups():
            where = dict(zip(points.axes, zip(chunk, local)))
            for combo in itertools.product(*per_dim):
                idx = [0] * ndim
                sel: list[Any] = [None] * ndim
                for axis, (j, _) in where.items():
                    idx[axis] = j
                for axis, (j, csel, _) in zip(others, combo):
                    idx[axis], sel[axis] = j, csel
                out: list[Any] = [positions]
                if sliced:
                    # every entry an index array: NumPy broadcasts them to (points, *slice axes)
                    for axis, (_, c) in where.items():
                        sel[axis] = c.reshape(-1, *trailing)
                    k = 0
                    for axis, (_, csel, osel) in zip(others, combo):
                        if axis in sliced:
                            count = osel.stop - osel.start
                            shape = [1] * (len(sliced) + 1)
                            shape[k + 1] = count
                            sel[axis] = (csel.start + csel.step * np.arange(count)).reshape(shape)
                            out.append(osel)
                            k += 1
                else:
                    for axis, (_, c) in where.items():
                        sel[axis] = c
                yield tuple(idx), tuple(sel), tuple(out)

    def chunk_count(self) -> int:
        """How many chunks the selection touches."""
        count = len(self.points.groups()) if self.points is not None else 1
        for d in self.dims:
            if not isinstance(d, PointAxis):
                count *= len(_dim_parts(d))
        return count

    def to_numpy(self, canonical: np.ndarray) -> Any:
        """Turn a canonical result into what NumPy returns for the key."""
        out = canonical
        if self.expand is not None:
            out = out.reshape(self.expand)
        if self.move is not None:
            out = np.moveaxis(out, *self.move)
        if out.shape != self.numpy_shape:
            out = out.reshape(self.numpy_shape)
        return out[()] if self.scalar else out

    def from_numpy(self, value: np.ndarray, copy: bool | None = None) -> np.ndarray:
        """Turn a value shaped like NumPy's result into the canonical layout.

        With ``copy=False`` the result is a view of ``value`` (writing into it
        writes into ``value``), or ValueError where that would need a copy.
        """
        if self.move is not None:
            assert self.moved_shape is not None
            value = np.moveaxis(np.reshape(value, self.moved_shape, copy=copy), self.move[1], self.move[0])
        return np.reshape(value, self.shape, copy=copy)


def _dim_parts(d: Dim) -> list[Any]:
    assert not isinstance(d, PointAxis)  # point axes are planned together, by Points.groups
    return d.parts()


def _outer(sel: tuple, counts: Sequence[int]) -> tuple:
    """Entries as index arrays shaped for an outer product (as ``np.ix_``); ints stay.

    ``counts`` gives the length of each non-integer entry. With every entry an
    array, NumPy's advanced indexing gives the orthogonal selection in place,
    whatever engine or backend handles the tuple.
    """
    m = len(counts)
    out: list[Any] = []
    k = 0
    for s in sel:
        if isinstance(s, int):
            out.append(s)
            continue
        if isinstance(s, slice):
            arr = s.start + (1 if s.step is None else s.step) * np.arange(counts[k])
        else:
            arr = s
        shape = [1] * m
        shape[k] = counts[k]
        out.append(arr.reshape(shape))
        k += 1
    return tuple(out)


def _as_index_array(obj: Any) -> np.ndarray | None:
    """Return ``obj`` as an ndarray if it is an array-like index, else None."""
    if isinstance(obj, np.ndarray):
        return obj
    if _is_tensor(obj):
        return as_numpy(obj)
    if isinstance(obj, (list, tuple)):
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise IndexError(_INVALID_INDEX)
        if arr.size == 0:
            arr = arr.astype(np.intp)
        return arr
    return None


def _entries(key: tuple, mode: str) -> tuple[list[Any], bool]:
    """The key's entries: None, Ellipsis, int, slice or an integer/boolean ndarray."""
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
        elif arr.dtype.kind == "b" and arr.ndim == 0:
            raise IndexError("boolean scalar indices are not supported by dosna")
        elif arr.dtype.kind in "iub":
            if mode == "outer" and arr.ndim != 1:
                raise IndexError("oindex takes only 1-D integer or boolean arrays, one per axis")
            entries.append(arr if arr.dtype.kind == "b" else arr.astype(np.intp, copy=False))
        else:
            raise IndexError(_INVALID_INDEX)
    return entries, has_ellipsis


def plan(key: Any, shape: Sequence[int], chunk_size: Sequence[int], mode: str = "numpy") -> Selection:
    """Normalise ``key`` against ``shape`` and plan it over chunks of ``chunk_size``.

    ``mode`` says how index arrays combine (see :data:`MODES`): ``"numpy"``
    exactly as NumPy (integer and boolean arrays of any shape, broadcast
    together), ``"outer"`` one 1-D array per axis, independently (zarr's and
    NEP 21's ``oindex``), ``"vectorized"`` broadcast together with the
    broadcast axes first (``vindex``). Raises IndexError as NumPy does for
    out-of-range or malformed keys.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not isinstance(key, tuple):
        key = (key,)
    ndim = len(shape)
    if len(key) == ndim and mode == "numpy":
        fast = _plan_basic(key, shape, chunk_size)
        if fast is not None:
            return fast
    entries, has_ellipsis = _entries(key, mode)

    consumed = sum(
        (e.ndim if isinstance(e, np.ndarray) and e.dtype.kind == "b" else 1)
        for e in entries
        if e is not None and e is not Ellipsis
    )
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

    # one item per dataset axis (or newaxis): ("new",), ("int", i), ("slice", SliceDim), ("array", a)
    items: list[tuple[str, Any, int]] = []
    out_of_bounds: str | None = None  # index arrays are checked where they are used
    axis = 0
    for pos, e in enumerate(entries):
        where = positions[pos]
        if e is None:
            items.append(("new", None, where))
            continue
        if isinstance(e, int):
            size = shape[axis]
            if not -size <= e < size:
                raise IndexError(f"index {e} is out of bounds for axis {axis} with size {size}")
            items.append(("int", e + size if e < 0 else e, where))
            axis += 1
        elif isinstance(e, slice):
            start, stop, step = e.indices(shape[axis])
            items.append(
                ("slice", SliceDim(start, step, len(range(start, stop, step)), chunk_size[axis]), where)
            )
            axis += 1
        elif e.dtype.kind == "b":
            for k, n in enumerate(e.shape):
                if n != shape[axis + k] and n != 0:  # NumPy lets an empty mask axis pass
                    raise IndexError(
                        f"boolean index did not match indexed array along axis {axis + k}; size of axis "
                        f"is {shape[axis + k]} but size of corresponding boolean axis is {n}"
                    )
            for coords in np.nonzero(e):
                items.append(("array", coords.astype(np.intp, copy=False), where))
                axis += 1
        else:
            size = shape[axis]
            if e.size:
                bad = (e < -size) | (e >= size)
                if bad.any() and out_of_bounds is None:
                    out_of_bounds = (
                        f"index {int(e[bad].flat[0])} is out of bounds for axis {axis} with size {size}"
                    )
                e = np.where(e < 0, e + size, e)
            items.append(("array", e, where))
            axis += 1

    arrays = [it for it in items if it[0] == "array"]
    if not arrays or mode == "outer" or (mode == "numpy" and len(arrays) == 1 and arrays[0][1].ndim == 1):
        if out_of_bounds is not None:
            raise IndexError(out_of_bounds)
        return _plan_axes(items, chunk_size, has_ellipsis, mode)
    return _plan_points(items, chunk_size, mode, out_of_bounds)


def _plan_axes(items: list, chunk_size: Sequence[int], has_ellipsis: bool, mode: str) -> Selection:
    """Ints, slices and 1-D arrays that each index their own axis (orthogonally)."""
    dims: list[Dim] = []
    numpy_shape: list[int] = []
    canonical: list[int] = []
    advanced_positions: list[int] = []
    array_axis: int | None = None
    array_slot: int | None = None
    axis = 0
    for kind, value, where in items:
        if kind == "new":
            numpy_shape.append(1)
            continue
        chunk = chunk_size[axis]
        if kind == "int":
            dims.append(IntDim(value, chunk))
            advanced_positions.append(where)
        elif kind == "slice":
            dims.append(value)
            numpy_shape.append(value.length)
            canonical.append(value.length)
        else:
            dims.append(ArrayDim(value, chunk))
            advanced_positions.append(where)
            array_axis, array_slot = len(canonical), len(numpy_shape)
            numpy_shape.append(len(value))
            canonical.append(len(value))
        axis += 1
    n_arrays = sum(isinstance(d, ArrayDim) for d in dims)
    move = None
    if n_arrays == 1 and mode == "numpy":
        adjacent = advanced_positions == list(range(advanced_positions[0], advanced_positions[-1] + 1))
        if not adjacent:
            assert array_slot is not None and array_axis is not None
            numpy_shape.insert(0, numpy_shape.pop(array_slot))
            if array_axis:
                move = ((array_axis,), (0,))
    scalar = not has_ellipsis and not numpy_shape and n_arrays == 0
    moved = None
    if move is not None:
        moved = list(canonical)
        moved.insert(0, moved.pop(move[0][0]))
    return Selection(
        tuple(dims),
        tuple(canonical),
        tuple(numpy_shape),
        scalar,
        move=move,
        moved_shape=None if moved is None else tuple(moved),
        outer_arrays=n_arrays > 1,
    )


def _plan_points(items: list, chunk_size: Sequence[int], mode: str, out_of_bounds: str | None) -> Selection:
    """Index arrays broadcast together into points; ints and slices on the other axes.

    ``out_of_bounds`` is raised unless the arrays broadcast to no points at all
    (NumPy checks only the indices it uses).
    """
    arrays = [value for kind, value, _ in items if kind == "array"]
    try:
        broadcast = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = " ".join(str(a.shape) for a in arrays)
        raise IndexError(
            f"shape mismatch: indexing arrays could not be broadcast together with shapes {shapes}"
        ) from None
    if out_of_bounds is not None and math.prod(broadcast):
        raise IndexError(out_of_bounds)
    dims: list[Dim] = []
    point_axes: list[int] = []
    coords: list[np.ndarray] = []
    lens: list[int] = []
    slices: list[int] = []
    basic_before: list[int] = []  # numpy_shape entries before the first advanced entry
    basic: list[int] = []
    advanced_positions: list[int] = []
    first_advanced: int | None = None
    axis = 0
    for kind, value, where in items:
        if kind == "new":
            basic.append(1)
            continue
        chunk = chunk_size[axis]
        if kind == "slice":
            dims.append(value)
            slices.append(value.length)
            basic.append(value.length)
        else:
            if first_advanced is None:
                first_advanced = len(basic)
                basic_before = list(basic)
            advanced_positions.append(where)
            if kind == "int":
                dims.append(IntDim(value, chunk))
            else:
                dims.append(PointAxis(chunk))
                point_axes.append(axis)
                coords.append(np.broadcast_to(value, broadcast).ravel())
                lens.append(chunk)
        axis += 1
    assert first_advanced is not None
    count = math.prod(broadcast)
    canonical = (count, *slices)
    expand = (*broadcast, *slices)
    entries = sorted(set(advanced_positions))  # a boolean array over k axes is one entry
    adjacent = entries == list(range(entries[0], entries[-1] + 1))
    nb = len(broadcast)
    move = None
    if mode == "numpy" and adjacent:
        numpy_shape = (*basic_before, *broadcast, *basic[first_advanced:])
        # the canonical layout has the points first; newaxes come with the final reshape
        slice_before = _count_slices_before(items)
        if slice_before and nb:
            move = (tuple(range(nb)), tuple(range(slice_before, slice_before + nb)))
    else:
        numpy_shape = (*broadcast, *basic)
    moved = None
    if move is not None:
        moved = list(expand[nb:])
        moved[move[1][0] : move[1][0]] = list(broadcast)
    return Selection(
        tuple(dims),
        canonical,
        tuple(numpy_shape),
        False,
        expand=expand,
        move=move,
        moved_shape=None if moved is None else tuple(moved),
        points=Points(tuple(point_axes), tuple(coords), tuple(lens)),
    )


def _count_slices_before(items: list) -> int:
    """Slice axes whose entries come before the first advanced (integer or array) entry."""
    slices = 0
    for kind, _, _ in items:
        if kind in ("int", "array"):
            break
        slices += kind == "slice"
    return slices


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
    return Selection(tuple(dims), shape_t, shape_t, not shape_t)


def _split_array(sel: ChunkSel) -> tuple[ChunkSel, int, np.ndarray | None]:
    """Split a chunk selection into its basic part and its index array (if any)."""
    for pos, s in enumerate(sel):
        if s.__class__ is np.ndarray:
            basic = (*sel[:pos], slice(None), *sel[pos + 1 :])
            axis = sum(1 for t in sel[:pos] if t.__class__ is not int)
            return basic, axis, s
    return sel, 0, None


def _arrays(sel: ChunkSel) -> int:
    return sum(1 for s in sel if s.__class__ is np.ndarray)


def read_selection(chunk: np.ndarray, sel: ChunkSel) -> np.ndarray:
    """``chunk[sel]`` in the canonical layout.

    One index array stays in place; several are already shaped by the planner
    (outer or pointwise) so that NumPy's advanced indexing gives the layout.
    """
    for s in sel:
        if s.__class__ is np.ndarray:
            if _arrays(sel) > 1:
                return chunk[sel]
            basic, axis, arr = _split_array(sel)
            assert arr is not None
            return np.take(chunk[basic], arr, axis=axis)
    return chunk[sel]


def write_selection(chunk: np.ndarray, sel: ChunkSel, values: Any) -> None:
    """``chunk[sel] = values`` in the canonical layout (see :func:`read_selection`)."""
    if _arrays(sel) > 1:
        chunk[sel] = values
        return
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


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    return torch is not None and isinstance(value, torch.Tensor)


def as_numpy(value: Any) -> Any:
    """``value`` as a NumPy array if it is a torch tensor (no copy for CPU tensors); else ``value``.

    Raises TypeError for tensors NumPy cannot hold faithfully (bfloat16 and
    other dtypes without a NumPy equivalent) and for tensors not on the CPU,
    before anything is written.
    """
    if not _is_tensor(value):
        return value
    tensor = value.detach()
    if tensor.device.type != "cpu":
        raise TypeError(
            f"a tensor on {tensor.device} cannot be stored directly: move it to the CPU first (tensor.cpu())"
        )
    try:
        return tensor.resolve_conj().resolve_neg().numpy()
    except (TypeError, RuntimeError) as exc:
        raise TypeError(
            f"torch tensors of dtype {tensor.dtype} have no NumPy equivalent, so dosna cannot store them "
            "faithfully; convert first (e.g. tensor.float(): float32 holds every bfloat16 value exactly)"
        ) from exc


def prepare_values(sel: Selection, value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` cast and broadcast as NumPy would for ``a[key] = value``, in canonical layout.

    Raises the errors NumPy raises (ValueError for shapes that do not broadcast,
    OverflowError/TypeError for values that do not convert) before any I/O. Scalars
    and arrays that already have the right dtype are not copied. CPU torch
    tensors are taken as NumPy arrays (see :func:`as_numpy`).
    """
    value = as_numpy(value)
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
