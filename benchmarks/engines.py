"""Parallel engines against the sequential one, on the hdf5 backend.

- joblib threading (2 jobs) vs cpu: a compute-bound map (scipy's gaussian_filter
  on every chunk) and a full read of W1 (float32 512^3, 64^3 chunks).
- mpi ``-n 2`` vs ``-n 1``: load + the same map, timed on the root between barriers.

The cpu engine already asks the hdf5 backend for 2 concurrent chunk reads
(``io_threads=2``); the table also shows it with ``io_threads=1``, the strictly
sequential baseline. Each figure is the best of ``--repeat`` runs, interleaved.

Usage::

    python benchmarks/engines.py [--quick] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import dosna as dn

SIGMA = 2.0


def smooth(chunk: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(chunk, SIGMA)


def best_time(func, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def joblib_vs_cpu(workdir: str, shape_read, shape_map, chunk, repeat: int) -> dict:
    engines = {
        "cpu (io_threads=1)": ({"engine": "cpu"}, {"io_threads": 1}),
        "cpu": ({"engine": "cpu"}, {}),
        "joblib threading x2": ({"engine": "joblib", "engine_kw": {"njobs": 2}}, {"io_threads": 1}),
    }
    data_read = np.random.default_rng(0).standard_normal(shape_read, dtype="f4")
    data_map = np.random.default_rng(1).standard_normal(shape_map, dtype="f4")
    setup = dn.connection("bench", backend="hdf5", directory=workdir)
    for name, d in (("read", data_read), ("map", data_map)):
        if name in setup:
            setup.del_dataset(name)
        setup.create_dataset(name, data=d, chunk_size=chunk)
    times: dict = {name: {"read": float("inf"), "map": float("inf")} for name in engines}
    for _ in range(repeat):  # interleaved rounds
        for name, (engine, backend_opts) in engines.items():
            con = dn.connection("bench", backend="hdf5", directory=workdir, **engine, **backend_opts)
            ds = con["read"]
            times[name]["read"] = min(times[name]["read"], best_time(lambda: ds[...], 1))  # noqa: B023
            src = con["map"]

            def run_map() -> None:
                src.map(smooth, "mapped")  # noqa: B023
                con.del_dataset("mapped")  # noqa: B023

            times[name]["map"] = min(times[name]["map"], best_time(run_map, 1))
    return {
        "seconds": times,
        "read_MBps": {n: data_read.nbytes / 1e6 / t["read"] for n, t in times.items()},
        "ratios": {
            "joblib x2 / cpu(io_threads=1)": {
                op: times["cpu (io_threads=1)"][op] / times["joblib threading x2"][op]
                for op in ("read", "map")
            },
            "joblib x2 / cpu": {
                op: times["cpu"][op] / times["joblib threading x2"][op] for op in ("read", "map")
            },
        },
    }


def mpi_worker(workdir: str, shape, chunk, repeat: int) -> None:
    """Run under mpiexec: time load + map on the root, between barriers."""
    con = dn.connection("bench-mpi", backend="hdf5", directory=workdir, engine="mpi")
    data = np.random.default_rng(2).standard_normal(shape, dtype="f4")
    best = {"load": float("inf"), "map": float("inf")}
    for _ in range(repeat):
        for name in ("d", "mapped"):
            if name in con:
                con.del_dataset(name)
        ds = con.create_dataset("d", shape=shape, dtype="f4", chunk_size=chunk)
        con.mpi_barrier()
        start = time.perf_counter()
        ds.load(data)
        con.mpi_barrier()
        loaded = time.perf_counter()
        ds.map(smooth, "mapped")
        con.mpi_barrier()
        done = time.perf_counter()
        best["load"] = min(best["load"], loaded - start)
        best["map"] = min(best["map"], done - loaded)
    if con.mpi_is_root:
        print(json.dumps({"ranks": con.mpi_size, **best}), flush=True)


def mpi_scaling(workdir: str, shape, chunk, repeat: int) -> dict:
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if mpiexec is None:
        return {"skipped": "mpiexec not found"}
    results = {}
    for ranks in (1, 2):
        cmd = [
            mpiexec,
            "-n",
            str(ranks),
            sys.executable,
            "-m",
            "mpi4py",
            __file__,
            "--mpi-worker",
            "--workdir",
            workdir,
            "--shape",
            *map(str, shape),
            "--chunk",
            *map(str, chunk),
            "--repeat",
            str(repeat),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True).stdout
        results[ranks] = json.loads(out.strip().splitlines()[-1])
    t1 = results[1]["load"] + results[1]["map"]
    t2 = results[2]["load"] + results[2]["map"]
    return {
        "runs": results,
        "ratio n2/n1 (load+map)": t1 / t2,
        "ratio n2/n1 (map)": results[1]["map"] / results[2]["map"],
        "ratio n2/n1 (load)": results[1]["load"] / results[2]["load"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--mpi-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs="+", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mpi_worker:
        mpi_worker(args.workdir, tuple(args.shape), tuple(args.chunk), args.repeat)
        return {}

    if args.quick:
        shape_read, shape_map, chunk, args.repeat = (64, 64, 64), (64, 64, 64), (32, 32, 32), 1
    else:
        shape_read, shape_map, chunk = (512, 512, 512), (256, 256, 256), (64, 64, 64)
    workdir = tempfile.mkdtemp(prefix="dosna-engines-")
    try:
        report = {
            "joblib": joblib_vs_cpu(workdir, shape_read, shape_map, chunk, args.repeat),
            "mpi": mpi_scaling(workdir, shape_map, chunk, args.repeat),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    jb = report["joblib"]
    print(f"joblib vs cpu on hdf5 (best of {args.repeat})")
    for name, t in jb["seconds"].items():
        print(f"  {name:22} full read {jb['read_MBps'][name]:8.0f} MB/s   gaussian map {t['map']:7.2f} s")
    for pair, r in jb["ratios"].items():
        print(f"  {pair:32} read {r['read']:.2f}x   map {r['map']:.2f}x")
    mp = report["mpi"]
    if "runs" in mp:
        for ranks, r in mp["runs"].items():
            print(f"mpi -n {ranks}: load {r['load']:.2f} s, map {r['map']:.2f} s")
        print(
            f"mpi -n 2 vs -n 1, load + map: {mp['ratio n2/n1 (load+map)']:.2f}x "
            f"(load {mp['ratio n2/n1 (load)']:.2f}x, map {mp['ratio n2/n1 (map)']:.2f}x)"
        )
    else:
        print(f"mpi: {mp['skipped']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return report


if __name__ == "__main__":
    main()
