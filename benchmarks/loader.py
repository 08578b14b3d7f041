"""The training loader against an in-memory NumPy loader, with and without compute.

Data: ``--samples`` rows of ``--features`` float32 features plus int64 labels,
stored on the hdf5 backend in ~1 MiB chunks (1,024 rows). Both loaders visit
the same chunk-aware shuffled order (:func:`dosna.train.epoch_order`) in
batches of ``--batch-size``:

- **numpy**: the arrays are in memory; a batch is ``x[rows], y[rows]``.
- **dosna**: :class:`dosna.train.BatchLoader` reading from the hdf5 files with
  background prefetch.
- **dosna, no prefetch**: the same loader reading in the consumer's thread.

"With compute" adds a step per batch that costs about as much as dosna's
reading (calibrated in the same run: a stack of float32 matrix products, on
one BLAS thread so that the loader has the other core), the case in which
prefetching should hide the I/O. Each figure is the best
of ``--repeat`` interleaved rounds.

Usage::

    python benchmarks/loader.py [--quick] [--samples N] [--features F] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np

import dosna as dn
from dosna.train import BatchLoader, epoch_order

#: What the loader should reach, as dosna / in-memory NumPy throughput (in the JSON report too).
TARGETS = {"ratio_no_compute": 0.5, "ratio_with_compute": 0.9}


def numpy_batches(x: np.ndarray, y: np.ndarray, batch: int, block_rows: int, epoch: int) -> Iterator:
    order = epoch_order((0, len(x)), block_rows, 4, seed=0, epoch=epoch)
    for i in range(0, len(order), batch):
        rows = order[i : i + batch]
        yield x[rows], y[rows]


def make_compute(weights: np.ndarray) -> Callable[[np.ndarray], float]:
    """A step whose cost grows with the number of columns of ``weights``."""

    def step(xb: np.ndarray) -> float:
        return float(np.tanh(xb @ weights)[0, 0])

    return step


def epoch_rate(batches: Callable[[int], Iterator], compute, repeat: int, n: int) -> float:
    best = float("inf")
    for epoch in range(repeat):
        start = time.perf_counter()
        for xb, _ in batches(epoch):
            if compute is not None:
                compute(xb)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=262_144)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--compute-factor",
        type=float,
        default=1.0,
        help="the compute step costs this many times dosna's reading of a batch (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--plot", help="write a bar chart here (PNG)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.repeat = 32_768, 2

    n, f, batch = args.samples, args.features, args.batch_size
    # The compute step gets one core (one BLAS thread), the loader's reading the other:
    # the setting in which a prefetching loader is meant to hide I/O.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, f), dtype=np.float32)
    y = rng.integers(0, 10, n)
    block_rows = max(1, (1 << 20) // (4 * f))
    with tempfile.TemporaryDirectory(prefix="dosna-loader-") as workdir:
        con = dn.Connection("bench", backend="hdf5", directory=workdir).connect()
        xs = con.create_dataset("x", data=x, chunk_size=(block_rows, f))
        ys = con.create_dataset("y", data=y, chunk_size=(block_rows * 4,))
        loaders = {
            "numpy (in memory)": lambda e: numpy_batches(x, y, batch, block_rows, e),
            "dosna, prefetch": lambda e: BatchLoader(
                xs, ys, batch_size=batch, seed=0, block_rows=block_rows
            ).epoch(e),
            "dosna, no prefetch": lambda e: BatchLoader(
                xs, ys, batch_size=batch, seed=0, prefetch=0, block_rows=block_rows
            ).epoch(e),
        }
        # calibrate the compute step to dosna's reading cost per batch
        io_per_batch = batch / epoch_rate(loaders["dosna, no prefetch"], None, args.repeat, n)
        weights = (rng.standard_normal((f, f)) / np.sqrt(f)).astype(np.float32)
        probes = [x[i * batch : (i + 1) * batch] for i in range(50)]
        make_compute(weights)(probes[0])  # warm up
        start = time.perf_counter()
        for probe in probes:
            make_compute(weights)(probe)
        per_rep = (time.perf_counter() - start) / len(probes)
        columns = int(np.clip(round(args.compute_factor * f * io_per_batch / per_rep), 4, 64 * f))
        compute = make_compute(np.ascontiguousarray(np.resize(weights, (f, columns))))

        results: dict[str, dict[str, float]] = {}
        # interleaved rounds (A B C, A B C, ...): a noisy spell hits every loader alike
        for _ in range(args.repeat):
            for mode, step in (("no compute", None), ("with compute", compute)):
                for label, batches in loaders.items():
                    rate = epoch_rate(batches, step, 1, n)
                    entry = results.setdefault(label, {})
                    entry[mode] = max(entry.get(mode, 0.0), rate)
        results["compute alone"] = {
            "with compute": epoch_rate(lambda e: numpy_batches(x, y, batch, block_rows, e), compute, 1, n)
        }

    base = results["numpy (in memory)"]
    print(
        f"{n:,} samples x {f} float32 features, batch {batch}, {block_rows}-row chunks on hdf5; "
        f"compute step: a ({batch}x{f}) @ ({f}x{columns}) product ~ dosna's {io_per_batch * 1e3:.2f} ms/batch of reading"
    )
    print(f"{'loader':<22}{'no compute':>16}{'ratio':>8}{'with compute':>16}{'ratio':>8}")
    for label, rates in results.items():
        if label == "compute alone":
            continue
        print(
            f"{label:<22}{rates['no compute']:>14,.0f}/s{rates['no compute'] / base['no compute']:>8.2f}"
            f"{rates['with compute']:>14,.0f}/s{rates['with compute'] / base['with compute']:>8.2f}"
        )
    summary = {
        "samples": n,
        "features": f,
        "batch_size": batch,
        "block_rows": block_rows,
        "compute_columns": columns,
        "compute_factor": args.compute_factor,
        "results": results,
        "ratio_no_compute": results["dosna, prefetch"]["no compute"] / base["no compute"],
        "ratio_with_compute": results["dosna, prefetch"]["with compute"] / base["with compute"],
        "targets": TARGETS,
    }
    print(
        f"dosna / numpy: {summary['ratio_no_compute']:.2f}x without compute "
        f"(target >= {TARGETS['ratio_no_compute']}), "
        f"{summary['ratio_with_compute']:.2f}x with compute (target >= {TARGETS['ratio_with_compute']})"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    if args.plot:
        plot(results, args.plot)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [k for k in results if k != "compute alone"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    width = 0.38
    for i, mode in enumerate(("no compute", "with compute")):
        ax.bar(
            np.arange(len(labels)) + (i - 0.5) * width, [results[k][mode] for k in labels], width, label=mode
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("samples / s (best epoch)")
    ax.set_title("training loader throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
