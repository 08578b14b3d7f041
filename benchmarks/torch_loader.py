"""A PyTorch DataLoader over dosna's IterableDataset against one over an in-memory TensorDataset.

Data: ``--samples`` rows of ``--features`` float32 features plus int64 labels.
Both loaders run a training step per batch (an MLP forward and backward pass
with Adam, on one torch thread per process) and use ``--workers`` DataLoader
worker processes (default 2):

- **memory**: ``DataLoader(TensorDataset(x, y), batch_size=B, shuffle=True)``
  over tensors held in memory (each batch gathered sample by sample and
  collated, as a ``TensorDataset`` is);
- **dosna**: ``DataLoader(IterableDataset(x, y, batch_size=B), batch_size=None)``
  reading the same data from the hdf5 backend (one HDF5 file per ~1 MiB chunk)
  in the chunk-aware, seeded order.

The figure is samples per second over an epoch (workers started, data read,
steps done), best of ``--repeat`` interleaved rounds. The machine is shared:
treat the ratio as indicative.

Usage::

    python benchmarks/torch_loader.py [--quick] [--samples N] [--features F] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import dosna as dn
from dosna.train.torch import IterableDataset


def make_step(features: int, hidden: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    model = torch.nn.Sequential(
        torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()

    return step


def epoch_rate(loader: DataLoader, step: Callable, samples: int) -> float:
    start = time.perf_counter()
    seen = 0
    for xb, yb in loader:
        step(xb, yb)
        seen += len(xb)
    assert seen == samples, (seen, samples)
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.repeat = 20_000, 1
    torch.set_num_threads(1)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, args.features), dtype=np.float32)
    y = rng.integers(0, 10, args.samples).astype(np.int64)
    rows_per_chunk = max(1, (1 << 20) // (4 * args.features))
    step = make_step(args.features, args.hidden)
    results: dict[str, list[float]] = {"memory": [], "dosna": []}
    with (
        tempfile.TemporaryDirectory(prefix="dosna-torch-bench-") as directory,
        dn.Connection("bench", backend="hdf5", directory=directory) as con,
    ):
        dx = con.create_dataset("x", data=x, chunk_size=(rows_per_chunk, args.features))
        dy = con.create_dataset("y", data=y, chunk_size=(rows_per_chunk,))
        memory = DataLoader(
            TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
        )
        streamed = IterableDataset(dx, dy, batch_size=args.batch_size, seed=0)
        dosna_loader = DataLoader(streamed, batch_size=None, num_workers=args.workers)
        for epoch in range(args.repeat):  # interleaved: A B A B
            results["memory"].append(epoch_rate(memory, step, args.samples))
            streamed.set_epoch(epoch)
            results["dosna"].append(epoch_rate(dosna_loader, step, args.samples))
    best = {k: max(v) for k, v in results.items()}
    ratio = best["dosna"] / best["memory"]
    summary = {
        "samples": args.samples,
        "features": args.features,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "samples_per_s": results,
        "best": best,
        "ratio_dosna_to_memory": ratio,
    }
    for name, rates in results.items():
        print(f"{name:7} samples/s: best {max(rates):,.0f}  all {', '.join(f'{r:,.0f}' for r in rates)}")
    print(f"dosna IterableDataset (hdf5) / in-memory TensorDataset: {ratio:.2f}x (target >= 0.9x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
