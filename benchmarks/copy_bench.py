"""``dosna copy`` against a hand-written threaded per-chunk loop, hdf5 -> zarr LocalStore -> hdf5.

W1: float32 (512, 512, 512) = 512 MiB in 64^3 chunks on the hdf5 backend
(uncompressed, crc32c checksums: dosna's defaults). Each round copies it

- into a zarr v3 LocalStore and back into a new hdf5 dataset with
  :func:`dosna.copy` (what ``dosna copy`` runs), and
- the same way by hand: a zarr array with the same metadata (and the dosna
  dataset with the same codec), then ``z[region] = ds[region]`` per chunk from a
  thread pool of the same size (the ``zarr.copy``-style loop users write).

The two are interleaved (A B A B) and each figure is the best and the median
of ``--repeat`` rounds; the target is ratio >= 0.8 in both directions. The
machine's noise (see the peer baselines) makes single-run differences under
~2x indicative only.

Usage::

    python benchmarks/copy_bench.py [--quick] [--repeat 2] [--threads 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zarr
from zarr.storage import LocalStore

import dosna as dn
from dosna.interop.endpoints import _codec_to_zarr


def regions(shape, chunks):
    grid = [range(0, n, c) for n, c in zip(shape, chunks)]
    for origin in np.ndindex(*(len(g) for g in grid)):
        yield tuple(slice(g[i], min(g[i] + c, n)) for g, i, c, n in zip(grid, origin, chunks, shape))


def by_hand(ds, con, zpath, threads):
    """hdf5 -> zarr and back with threads, one chunk per task (creating the targets is timed too)."""
    start = time.perf_counter()
    z = zarr.create_array(
        store=LocalStore(zpath),
        shape=ds.shape,
        chunks=ds.chunks,
        dtype=ds.dtype,
        fill_value=ds.fillvalue,
        compressors=_codec_to_zarr(ds.meta.codec, ds.dtype),
        zarr_format=3,
    )
    with ThreadPoolExecutor(threads) as pool:

        def out(region):
            z[region] = ds[region]

        list(pool.map(out, regions(ds.shape, ds.chunks)))
    there = time.perf_counter() - start
    back = con.create_dataset(
        "hand", shape=ds.shape, dtype=ds.dtype, chunks=ds.chunks, fillvalue=ds.fillvalue
    )
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:

        def home(region):
            back[region] = z[region]

        list(pool.map(home, regions(ds.shape, ds.chunks)))
    return there, time.perf_counter() - start


def with_copy(ds, con, zpath, threads):
    start = time.perf_counter()
    dn.copy(ds, zpath, threads=threads, progress=False)
    there = time.perf_counter() - start
    start = time.perf_counter()
    dn.copy(zpath, con, name="copied", threads=threads, progress=False)
    return there, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="128^3 instead of 512^3 (a smoke run)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    side = 128 if args.quick else 512
    shape, chunks = (side,) * 3, (64,) * 3
    workdir = tempfile.mkdtemp(prefix="dosna-copy-bench-", dir=args.dir)
    try:
        con = dn.Connection("w1", backend="hdf5", engine="cpu", directory=workdir).connect()
        ds = con.create_dataset("w1", shape=shape, dtype="f4", chunks=chunks)
        rng = np.random.default_rng(0)
        ds.apply(lambda c: rng.standard_normal(c.shape, dtype="f4"))
        mb = ds.nbytes / 1e6
        times: dict[str, list[float]] = {k: [] for k in ("copy out", "hand out", "copy back", "hand back")}
        for _ in range(args.repeat):
            for kind, run in (("copy", with_copy), ("hand", by_hand)):
                zpath = os.path.join(workdir, f"{kind}.zarr")
                out, back = run(ds, con, zpath, args.threads)
                times[f"{kind} out"].append(out)
                times[f"{kind} back"].append(back)
                shutil.rmtree(zpath)
                con.del_dataset("copied" if kind == "copy" else "hand")
        rows = {
            k: {"best_s": min(v), "median_s": statistics.median(v), "best_MBps": mb / min(v)}
            for k, v in times.items()
        }
        ratios = {
            direction: times[f"hand {direction}"]
            and min(times[f"hand {direction}"]) / min(times[f"copy {direction}"])
            for direction in ("out", "back")
        }
        print(f"W1 {shape} f4, chunks {chunks}, {args.threads} threads, {args.repeat} rounds interleaved")
        print(f"{'':>10}  {'best s':>7}  {'median s':>8}  {'best MB/s':>9}")
        for k, r in rows.items():
            print(f"{k:>10}  {r['best_s']:7.2f}  {r['median_s']:8.2f}  {r['best_MBps']:9.0f}")
        for direction, ratio in ratios.items():
            name = "hdf5 -> zarr" if direction == "out" else "zarr -> hdf5"
            print(f"{name}: dosna.copy = {ratio:.2f}x the hand-written loop (target >= 0.8)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    {
                        "shape": shape,
                        "chunks": chunks,
                        "threads": args.threads,
                        "rows": rows,
                        "ratios": ratios,
                    },
                    f,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
