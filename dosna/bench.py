"""Measure access patterns over a range of chunk shapes (the library behind ``dosna bench``).

For each chunk shape a fresh dataset is created (and filled, for read
patterns), the pattern is timed ``repeat`` times, and the dataset is deleted.
Results go to JSON, CSV and a PNG plot; the best chunk shape for the pattern
is printed.

Patterns (``B`` is ``--block``, ``n`` is ``--count``):

========== ==================================================================
full-write write the whole array
full-read  read the whole array
aligned    read ``n`` blocks of shape ``B`` at multiples of ``B``
unaligned  read ``n`` blocks of shape ``B`` at random offsets
rows       read ``n`` rows along the last axis (``x[i, j, :]``)
columns    read ``n`` columns along the first axis (``x[:, j, k]``)
batches    read ``n`` training batches: ``B[0]`` random samples along axis 0
========== ==================================================================

With the mpi engine every rank takes part: full reads and writes are split in
slabs, the random patterns are drawn per rank, and the time is the job's wall
time between barriers.

The ``dosna bench`` command itself (its options and printing) is in
:mod:`dosna.cli.bench`.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import platform
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .metadata import normalize_shape, validate_dtype
from .progress import progress_bar

__all__ = [
    "PATTERNS",
    "BenchResult",
    "best_result",
    "parse_chunk_shapes",
    "run_sweep",
    "smooth_field",
    "sweep_config",
    "write_outputs",
]

PATTERNS = ("full-write", "full-read", "aligned", "unaligned", "rows", "columns", "batches")


@dataclass
class BenchResult:
    """Timings of one chunk shape."""

    chunk_shape: tuple[int, ...]
    chunk_bytes: int
    chunks: int
    bytes_moved: int
    seconds: list[float]
    codec: str = "none"
    #: raw bytes of the stored chunks / bytes they take (compression ratio)
    ratio: float | None = None

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_moved / self.best / 1e6

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            chunk_shape="x".join(map(str, self.chunk_shape)),
            best_s=self.best,
            median_s=float(np.median(self.seconds)),
            mb_per_s=self.mb_per_s,
        )
        return out


def smooth_field(shape: Sequence[int], dtype: Any = "f4", seed: int = 0) -> np.ndarray:
    """Compressible test data: smooth waves plus a little noise, digitised in steps of 1/1024.

    Like a measured or simulated field stored at the precision it has: float
    mantissas whose last bits are zero, neighbours that differ a little.
    """
    shape = normalize_shape(shape)
    dt = np.dtype(dtype)
    axes = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij", sparse=True)
    field = np.zeros(shape, "f8")
    for k, ax in enumerate(axes):
        field = field + np.sin((3 + 2 * k) * np.pi * ax)
    field += np.random.default_rng(seed).standard_normal(shape) * 0.01
    field = np.round(field * 1024) / 1024
    if dt.kind in "iub":
        return (field * 20 + 50).astype(dt)
    return field.astype(dt)


def parse_codecs(text: str) -> list[str | None]:
    """``"none,zstd,lz4"`` → ``[None, "zstd", "lz4"]`` (checked when datasets are created)."""
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names:
        raise ValueError("no codecs given")
    return [None if n == "none" else n for n in names]


def parse_chunk_shapes(text: str, ndim: int) -> list[tuple[int, ...]]:
    """``"32,64"`` → cubes ``(32,)*ndim`` and ``(64,)*ndim``; ``"16x64x64;32x32x32"`` → those shapes."""
    shapes = []
    for item in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        dims = tuple(int(d) for d in item.split("x"))
        if len(dims) == 1:
            dims *= ndim
        if len(dims) != ndim or min(dims) < 1:
            raise ValueError(f"chunk shape {item!r} does not fit a {ndim}-d array")
        shapes.append(dims)
    if not shapes:
        raise ValueError("no chunk shapes given")
    return shapes


def _keys(
    pattern: str, shape: tuple[int, ...], block: tuple[int, ...], count: int, rng: np.random.Generator
) -> list[Any]:
    """The selections a random pattern reads (pure; no I/O)."""
    keys: list[Any] = []
    for _ in range(count):
        if pattern in ("aligned", "unaligned"):
            starts = []
            for n, b in zip(shape, block):
                if pattern == "aligned":
                    starts.append(int(rng.integers(0, max(1, n // b))) * b)
                else:
                    starts.append(int(rng.integers(0, max(1, n - b + 1))))
            keys.append(tuple(slice(s, min(s + b, n)) for s, b, n in zip(starts, block, shape)))
        elif pattern == "rows":
            keys.append((*(int(rng.integers(0, n)) for n in shape[:-1]), slice(None)))
        elif pattern == "columns":
            keys.append((slice(None), *(int(rng.integers(0, n)) for n in shape[1:])))
        elif pattern == "batches":
            samples = np.sort(rng.choice(shape[0], size=min(block[0], shape[0]), replace=False))
            keys.append((samples,))
        else:
            raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")
    return keys


def _timed(engine: Any, work: Callable[[], int]) -> tuple[float, int]:
    engine.barrier()
    start = time.perf_counter()
    moved = work()
    engine.barrier()
    seconds = time.perf_counter() - start
    total = engine.allreduce(np.array([moved], dtype=np.float64))
    return seconds, int(total[0])


def run_sweep(
    con: Any,
    shape: Sequence[int],
    dtype: Any,
    chunk_shapes: Sequence[tuple[int, ...]],
    pattern: str,
    block: Sequence[int] | None = None,
    count: int = 32,
    repeat: int = 3,
    seed: int = 0,
    progress: bool = True,
    codecs: Sequence[str | None] = (None,),
    smooth: bool | None = None,
) -> list[BenchResult]:
    """Time ``pattern`` on ``con`` for every codec × chunk shape; datasets are removed afterwards.

    ``codecs`` are compressions (None for raw chunks); every result records the
    compression ratio of the stored chunks. The data are uniform random numbers,
    or with ``smooth`` (the default when a codec compresses) :func:`smooth_field`.
    """
    shape = normalize_shape(shape)
    dtype = validate_dtype(dtype)
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")
    if not shape:
        raise ValueError("bench needs an array with at least one axis")
    block = tuple(block) if block else tuple(min(64, n) for n in shape)
    if len(block) != len(shape) and pattern != "batches":
        raise ValueError(f"block {block} does not fit a {len(shape)}-d array")
    engine = con.engine
    if smooth is None:
        smooth = any(c is not None for c in codecs)
    rng_data = np.random.default_rng(seed)
    if smooth:
        data = smooth_field(shape, dtype, seed)
    elif dtype.kind in "fc":
        data = rng_data.random(shape).astype(dtype)
    else:
        data = rng_data.integers(0, 100, shape).astype(dtype)
    token = engine.collective(lambda: uuid.uuid4().hex[:8])
    runs = len(codecs) * len(chunk_shapes) * repeat
    bar = progress_bar(progress and engine.is_root, runs, pattern, unit="run")
    results = []
    try:
        for codec, chunks in itertools.product(codecs, chunk_shapes):
            label = codec or "none"
            name = f"bench-{token}-{label}-{'x'.join(map(str, chunks))}"
            ds = con.create_dataset(name, shape=shape, dtype=dtype, chunk_size=chunks, compression=codec)
            try:
                if pattern != "full-write":
                    ds.load(data)
                seconds, moved = [], 0
                for r in range(repeat):
                    work = _work(
                        ds, data, pattern, block, count, np.random.default_rng([seed, r, engine.rank])
                    )
                    elapsed, moved = _timed(engine, work)
                    seconds.append(elapsed)
                    bar.update(1)
                chunk_bytes = int(np.prod(chunks)) * dtype.itemsize
                stored = ds.nbytes_stored
                ratio = len(ds.stored_chunks()) * chunk_bytes / stored if stored else None
                results.append(
                    BenchResult(tuple(chunks), chunk_bytes, ds.total_chunks, moved, seconds, label, ratio)
                )
            finally:
                con.del_dataset(name)
    finally:
        bar.close()
    return results


def _work(
    ds: Any, data: np.ndarray, pattern: str, block: tuple[int, ...], count: int, rng: np.random.Generator
) -> Callable[[], int]:
    if pattern in ("full-read", "full-write"):
        slab = ds.slab_for_rank(0)
        if pattern == "full-read":
            return lambda: ds[slab].nbytes
        part = data[slab]

        def write() -> int:
            ds[slab] = part
            return part.nbytes

        return write
    keys = _keys(pattern, ds.shape, block, count, rng)
    return lambda: sum(ds[key].nbytes for key in keys)


def best_result(results: Sequence[BenchResult]) -> BenchResult:
    """The chunk shape's timings with the highest throughput.

    Parameters
    ----------
    results : sequence of BenchResult
        What :func:`run_sweep` returned; not empty.

    Returns
    -------
    BenchResult
        The first of the fastest (highest :attr:`BenchResult.mb_per_s`).
    """
    return max(results, key=lambda r: r.mb_per_s)


def sweep_config(
    con: Any,
    shape: Sequence[int],
    dtype: Any,
    pattern: str,
    block: Sequence[int] | None,
    count: int,
    repeat: int,
    backend: str,
    engine: str,
) -> dict[str, Any]:
    """The description of a sweep that :func:`write_outputs` records and plots.

    Parameters
    ----------
    con : Connection
        The connection the sweep ran on (for the number of ranks).
    shape, dtype, pattern, block, count, repeat
        The arguments given to :func:`run_sweep`.
    backend, engine : str
        The backend and engine names, as the user gave them.

    Returns
    -------
    dict
        JSON values: the arguments, the number of ranks, the host name, its
        CPU count and the local time.
    """
    return {
        "shape": list(shape),
        "dtype": np.dtype(dtype).str,
        "pattern": pattern,
        "block": list(block) if block else None,
        "count": count,
        "repeat": repeat,
        "backend": backend,
        "engine": engine,
        "ranks": con.engine.size,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_outputs(results: Sequence[BenchResult], config: dict[str, Any], out_dir: str) -> dict[str, str]:
    """Write ``bench.json``, ``bench.csv`` and ``bench.png`` into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, f"bench.{kind}") for kind in ("json", "csv", "png")}
    rows = [r.row() for r in results]
    best = best_result(results)
    with open(paths["json"], "w") as f:
        json.dump({"config": config, "results": rows, "best": best.row()}, f, indent=2)
    with open(paths["csv"], "w", newline="") as f:
        fields = [
            "codec",
            "chunk_shape",
            "chunk_bytes",
            "chunks",
            "bytes_moved",
            "best_s",
            "median_s",
            "mb_per_s",
            "ratio",
        ]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    _plot(results, best, config, paths["png"])
    return paths


def _plot(results: Sequence[BenchResult], best: BenchResult, config: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = "x".join(map(str, config["shape"]))
    title = f"{config['pattern']} on {shape} {config['dtype']}, {config['backend']} / {config['engine']}"
    codecs = list(dict.fromkeys(r.codec for r in results))
    if len(codecs) == 1:
        labels = ["x".join(map(str, r.chunk_shape)) for r in results]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(results) + 2), 4.5), dpi=100)
        colours = ["tab:orange" if r is best else "tab:blue" for r in results]
        ax.bar(range(len(results)), [r.mb_per_s for r in results], color=colours)
        ax.set_xticks(range(len(results)), labels, rotation=30, ha="right")
        ax.set_xlabel("chunk shape")
        ax.set_ylabel("MB/s (best of repeats)")
        ax.set_title(title)
    else:
        shapes = list(dict.fromkeys(r.chunk_shape for r in results))
        by_key = {(r.codec, r.chunk_shape): r for r in results}
        fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(shapes) + 6), 4.5), dpi=100)
        width = 0.8 / len(codecs)
        for k, codec in enumerate(codecs):
            xs = [i + k * width for i in range(len(shapes))]
            found = [by_key.get((codec, s)) for s in shapes]
            ax.bar(xs, [r.mb_per_s if r else 0 for r in found], width, label=codec)
            ax_ratio.bar(xs, [r.ratio or 0 if r else 0 for r in found], width, label=codec)
        ticks = [i + width * (len(codecs) - 1) / 2 for i in range(len(shapes))]
        for axis, ylabel in ((ax, "MB/s (best of repeats)"), (ax_ratio, "compression ratio")):
            axis.set_xticks(ticks, ["x".join(map(str, s)) for s in shapes], rotation=30, ha="right")
            axis.set_xlabel("chunk shape")
            axis.set_ylabel(ylabel)
        ax.legend(title="codec", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax_ratio.set_title("raw chunk bytes / stored bytes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
