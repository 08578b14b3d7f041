"""dosna next to its peers, in one run: zarr, TensorStore, h5py and a NumPy copy.

Workloads (the sizes of ../docs/benchmarks.md):

- W1: float32 (512, 512, 512), chunks (64, 64, 64): full write, full read, 100
  random chunk-aligned 64^3 reads, 100 random unaligned 100^3 reads, 1000 row
  reads ``ds[i, j, :]``.
- W2: float32 (1024, 1024), chunks (32, 32) (4 KiB chunks): full write, full read.
- W1z: W1's shape and chunks holding a compressible field (smooth waves plus
  noise), zstd level 3 with byte shuffling: full write, full read, and the
  compression ratio (raw bytes / stored bytes).

dosna runs with its defaults (checksums on); ``dosna-<backend>-nocrc`` is the
same with ``checksum=False``, so the cost of checksums is a ratio of two dosna
rows of one run. ``dosna-<backend>-direct`` reads with ``read_direct`` into
buffers it reuses. ``numpy-copy`` (into fresh memory) and ``numpy-copy-warm``
(into memory touched before) are the physical limits: every in-memory and file
system's write and full read is also shown as a share of both.

When the dev Ceph cluster runs (``eval "$(scripts/ceph-dev.sh env)"``), dosna's
ceph and s3 backends join, next to zarr on the same radosgw (obstore client).

Systems are interleaved, in turn forwards and backwards (A B C, C B A, A B C, ...),
so that no system always follows the same one. Between two systems the memory
freed is handed back to the operating system and pending file writes are flushed
(``os.sync``, untimed, also between a system's write and its reads): each starts
from the same state of the allocator and the disk. Every figure is the best and
the median of ``--repeat`` rounds, because this kind of machine is noisy. Ratios
are dosna / peer on best times. ``--quick`` uses small sizes (used by the test run
so that this script keeps working; its figures mean nothing).

Usage::

    python benchmarks/compare.py [--quick] [--repeat 3] [--systems dosna-hdf5,tensorstore-file]
                                 [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import dosna as dn
from dosna.bench import smooth_field


# -- systems -------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    ops: list[str]
    n_aligned: int = 100
    n_unaligned: int = 100
    unaligned: int = 100
    n_rows: int = 1000
    data: np.ndarray = field(default=None, repr=False)
    compressible: bool = False


class System:
    """One storage system under test: make an array, then write/read it."""

    name = ""
    family = ""  # "memory", "file", "object" or "codec": which peers a dosna system is compared with
    #: the workloads this system runs
    workloads: tuple[str, ...] = ("W1", "W2")

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def create(self, wl: Workload) -> None:
        raise NotImplementedError

    def write(self, data: np.ndarray) -> None:
        self.array[...] = data

    def read(self, key) -> np.ndarray:
        return np.asarray(self.array[key])

    def stored_bytes(self) -> int:
        """Bytes the array takes where it is stored (files under its directory by default)."""
        total = 0
        for root, _, files in os.walk(os.path.join(self.workdir, self.name)):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        return total

    def close(self) -> None:
        self.array = None
        path = os.path.join(self.workdir, self.name)
        shutil.rmtree(path, ignore_errors=True)


class NumpyCopy(System):
    """The physical limit of a system that copies: NumPy copying the same bytes.

    ``numpy-copy`` copies into fresh memory every time (the write into a new
    array, a read as ``array[key].copy()``): it pays the page faults a reader
    that returns new arrays pays. ``numpy-copy-warm`` copies into memory that was
    touched before (``np.copyto`` into a pre-faulted buffer): the memory
    bandwidth limit, to which dosna's ``read_direct`` can come close.
    """

    name, family = "numpy-copy", "limit"

    def __init__(self, workdir: str, warm: bool = False) -> None:
        super().__init__(workdir)
        self.warm = warm
        if warm:
            self.name = "numpy-copy-warm"

    def create(self, wl):
        self.array = np.empty(wl.shape, "f4")
        self.buffers: dict = {}
        if self.warm:
            self.array.fill(0)
            warm_buffer(self.buffers, wl.shape, self.array.dtype)  # the full read's, before it is timed

    def write(self, data):
        if not self.warm:
            self.array = np.empty(data.shape, data.dtype)
        np.copyto(self.array, data)

    def read(self, key):
        if not self.warm:
            return self.array[key].copy()
        source = self.array[key]
        out = warm_buffer(self.buffers, source.shape, source.dtype)
        np.copyto(out, source)
        return out


def warm_buffer(buffers: dict, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A buffer of ``shape`` reused from one read to the next (touched once, when made)."""
    out = buffers.get(shape)
    if out is None:
        out = buffers[shape] = np.empty(shape, dtype)
        out.fill(0)  # fault every page in now, not in the first read
    return out


class DosnaSystem(System):
    def __init__(self, workdir, backend, family, connection=None, suffix="", create=None, **options):
        super().__init__(workdir)
        self.name, self.family = f"dosna-{backend}{suffix}", family
        self.backend, self.options = backend, options
        self.connection = connection or f"bench-{os.getpid()}"
        self.create_options = dict(create or {})
        if family == "codec":
            self.workloads = ("W1z",)

    def create(self, wl):
        if self.backend == "hdf5":
            self.options["directory"] = os.path.join(self.workdir, self.name)
        self.con = dn.Connection(self.connection, backend=self.backend, **self.options).connect()
        with contextlib.suppress(dn.DatasetNotFoundError):
            self.con.del_dataset(wl.name)
        self.array = self.con.create_dataset(
            wl.name, shape=wl.shape, dtype="f4", chunk_size=wl.chunks, **self.create_options
        )

    def read(self, key):
        return self.array[key]

    def stored_bytes(self) -> int:
        return self.array.nbytes_stored

    def close(self):
        self.array.delete()
        self.con.disconnect()
        super().close()


class ZarrSystem(System):
    def __init__(self, workdir, local, zstd=False):
        super().__init__(workdir)
        self.local, self.zstd = local, zstd
        self.name, self.family = ("zarr-local", "file") if local else ("zarr-memory", "memory")
        if zstd:
            self.name, self.family, self.workloads = "zarr-local-zstd", "codec", ("W1z",)

    def create(self, wl):
        import zarr
        from zarr.storage import LocalStore, MemoryStore

        compressors = None
        if self.zstd:
            from zarr.codecs import ZstdCodec
            from zarr.codecs.numcodecs import Shuffle

            compressors = [Shuffle(elementsize=4), ZstdCodec(level=3)]
        store = LocalStore(os.path.join(self.workdir, self.name)) if self.local else MemoryStore()
        self.array = zarr.create_array(
            store=store, shape=wl.shape, chunks=wl.chunks, dtype="f4", compressors=compressors, fill_value=0
        )


class TensorStoreSystem(System):
    def __init__(self, workdir, file):
        super().__init__(workdir)
        self.file = file
        self.name, self.family = ("tensorstore-file", "file") if file else ("tensorstore-memory", "memory")

    def create(self, wl):
        import tensorstore as ts

        kvstore = (
            {"driver": "file", "path": os.path.join(self.workdir, self.name)}
            if self.file
            else {"driver": "memory"}
        )
        spec = {
            "driver": "zarr3",
            "kvstore": kvstore,
            "metadata": {
                "shape": list(wl.shape),
                "data_type": "float32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(wl.chunks)}},
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            },
            "create": True,
            "delete_existing": True,
        }
        context = ts.Context({"file_io_sync": False})
        self.array = ts.open(spec, context=context).result()

    def write(self, data):
        self.array[...].write(data).result()

    def read(self, key):
        return self.array[key].read().result()


class ZarrS3System(System):
    """zarr over obstore on the same radosgw as dosna's s3 backend."""

    name, family = "zarr-s3", "object"

    def create(self, wl):
        import zarr
        from objects import zarr_s3_store

        self.array = zarr.create_array(
            store=zarr_s3_store(),
            shape=wl.shape,
            chunks=wl.chunks,
            dtype="f4",
            compressors=None,
            fill_value=0,
            overwrite=True,
        )


class DosnaDirect(DosnaSystem):
    """dosna reading with ``read_direct`` into buffers reused from one read to the next."""

    def __init__(self, workdir, backend):
        super().__init__(workdir, backend, "direct", suffix="-direct")
        self.buffers: dict = {}

    def create(self, wl):
        super().create(wl)
        warm_buffer(self.buffers, wl.shape, np.dtype("f4"))  # the full read's, before it is timed

    def read(self, key):
        shape = np.broadcast_to(np.float32(0), self.array.shape)[key].shape
        out = warm_buffer(self.buffers, shape, self.array.dtype)
        self.array.read_direct(out, key)
        return out


def object_store_systems(workdir: str) -> list[System]:
    """dosna on ceph and s3 (checksums on and off), and zarr on the same S3 endpoint, when the
    dev cluster runs (``eval "$(scripts/ceph-dev.sh env)"``)."""
    env = os.environ
    found: list[tuple[str, str, dict]] = []
    if env.get("DOSNA_CEPH_CONF") and env.get("DOSNA_CEPH_POOL"):
        found.append(("ceph", env["DOSNA_CEPH_POOL"], {"conffile": env["DOSNA_CEPH_CONF"]}))
    if env.get("DOSNA_S3_ENDPOINT") and env.get("DOSNA_S3_BUCKET"):
        found.append(("s3", env["DOSNA_S3_BUCKET"], {"endpoint_url": env["DOSNA_S3_ENDPOINT"]}))
    systems: list[System] = [
        DosnaSystem(workdir, backend, family, where, suffix=suffix, create=create, **options)
        for backend, where, options in found
        for suffix, family, create in (("", "object", {}), ("-nocrc", "nocrc", {"checksum": False}))
    ]
    if any(backend == "s3" for backend, _, _ in found):
        systems.append(ZarrS3System(workdir))
    return systems


class H5pySystem(System):
    name, family = "h5py", "file"

    def __init__(self, workdir, zstd=False):
        super().__init__(workdir)
        self.zstd = zstd
        if zstd:
            self.name, self.family, self.workloads = "h5py-zstd", "codec", ("W1z",)

    def create(self, wl):
        import h5py

        filters = {}
        if self.zstd:
            import hdf5plugin

            filters = {"compression": hdf5plugin.Zstd(clevel=3), "shuffle": True}
        os.makedirs(os.path.join(self.workdir, self.name), exist_ok=True)
        self.file = h5py.File(os.path.join(self.workdir, self.name, "bench.h5"), "w")
        self.array = self.file.create_dataset("d", shape=wl.shape, dtype="f4", chunks=wl.chunks, **filters)

    def stored_bytes(self) -> int:
        self.file.flush()
        return super().stored_bytes()

    def close(self):
        self.file.close()
        super().close()


def make_systems(workdir: str, wanted: list[str] | None) -> list[System]:
    nocrc = {"checksum": False}
    zstd = {"compression": "zstd", "compression_opts": 3, "shuffle": True}
    systems: list[System] = [
        NumpyCopy(workdir),
        NumpyCopy(workdir, warm=True),
        DosnaSystem(workdir, "ram", "memory"),
        DosnaSystem(workdir, "ram", "nocrc", suffix="-nocrc", create=nocrc),
        DosnaDirect(workdir, "ram"),
        ZarrSystem(workdir, local=False),
        TensorStoreSystem(workdir, file=False),
        DosnaSystem(workdir, "hdf5", "file"),
        DosnaSystem(workdir, "hdf5", "nocrc", suffix="-nocrc", create=nocrc),
        DosnaDirect(workdir, "hdf5"),
        ZarrSystem(workdir, local=True),
        TensorStoreSystem(workdir, file=True),
        H5pySystem(workdir),
        *object_store_systems(workdir),
        DosnaSystem(workdir, "hdf5", "codec", suffix="-zstd", create=zstd),
        ZarrSystem(workdir, local=True, zstd=True),
        H5pySystem(workdir, zstd=True),
    ]
    if wanted:
        systems = [s for s in systems if s.name in wanted]
    usable = []
    for s in systems:
        try:
            if s.name.startswith(("zarr", "tensorstore", "h5py")):
                __import__(s.name.split("-")[0])
            if s.family == "codec":
                __import__("hdf5plugin")
                __import__("numcodecs")
            if s.name == "zarr-s3":
                __import__("obstore")
            usable.append(s)
        except ImportError as exc:
            print(f"skipping {s.name}: {exc}", file=sys.stderr)
    return usable


# -- workloads -----------------------------------------------------------------
OPS = ["write", "read", "aligned", "unaligned", "rows", "ratio"]


def timed(func: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def run_ops(system: System, wl: Workload, rng_seed: int) -> dict[str, tuple[float, float]]:
    """Run every op of ``wl`` once on ``system``: {op: (seconds, amount)}."""
    rng = np.random.default_rng(rng_seed)
    nbytes = wl.data.nbytes
    out: dict[str, tuple[float, float]] = {}
    system.create(wl)
    try:
        out["write"] = (timed(lambda: system.write(wl.data)), nbytes)
        os.sync()  # (untimed) the reads that follow do not compete with the write-back of this write
        if wl.compressible:
            out["ratio"] = (1.0, nbytes / system.stored_bytes())
        box: list[np.ndarray] = []
        out["read"] = (timed(lambda: box.append(system.read(Ellipsis))), nbytes)
        if not np.array_equal(box.pop(), wl.data):
            raise AssertionError(f"{system.name} read back wrong data")
        if "aligned" in wl.ops:
            grid = [s // c for s, c in zip(wl.shape, wl.chunks)]
            keys = [
                tuple(slice(int(i) * c, (int(i) + 1) * c) for i, c in zip(rng.integers(0, grid), wl.chunks))
                for _ in range(wl.n_aligned)
            ]
            amount = wl.n_aligned * int(np.prod(wl.chunks)) * 4
            out["aligned"] = (timed(lambda: [system.read(k) for k in keys]), amount)
        if "unaligned" in wl.ops:
            u = wl.unaligned
            keys = [
                tuple(slice(int(i), int(i) + u) for i in rng.integers(0, [s - u for s in wl.shape]))
                for _ in range(wl.n_unaligned)
            ]
            amount = wl.n_unaligned * u ** len(wl.shape) * 4
            out["unaligned"] = (timed(lambda: [system.read(k) for k in keys]), amount)
        if "rows" in wl.ops:
            keys = [(int(i), int(j), slice(None)) for i, j in rng.integers(0, wl.shape[:2], (wl.n_rows, 2))]
            amount = wl.n_rows * wl.shape[2] * 4
            out["rows"] = (timed(lambda: [system.read(k) for k in keys]), amount)
    finally:
        system.close()
        release_freed_memory()
    return out


def release_freed_memory() -> None:
    """Collect garbage and give the heap's free memory back to the system (glibc's
    ``malloc_trim``), so that the next system does not inherit pages faulted in by
    this one: otherwise whichever system runs second is measured on warm memory."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    os.sync()  # and the files it deleted are gone from the disk's queue


#: the physical limits every in-memory and file system is shown against (write and full read)
LIMITS = ["numpy-copy", "numpy-copy-warm"]

PEERS = {
    "memory": ["tensorstore-memory", "zarr-memory"],
    "file": ["tensorstore-file", "zarr-local", "h5py"],
    "object": ["zarr-s3"],
    "codec": ["zarr-local-zstd", "h5py-zstd"],
}


def compressible_field(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The compressible field ``dosna bench --codecs`` uses (see :func:`dosna.bench.smooth_field`)."""
    return smooth_field(shape, "f4", seed)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--systems", default="", help="comma-separated subset of systems")
    parser.add_argument("--workloads", default="W1,W2,W1z", help="a subset of W1,W2,W1z")
    parser.add_argument("--workdir", default=None, help="where file-based stores go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--plot", default=None, help="write a bar chart of the ratios here (PNG)")
    args = parser.parse_args(argv)

    if args.quick:
        w1 = Workload("W1", (64, 64, 64), (16, 16, 16), ["aligned", "unaligned", "rows"], 10, 10, 20, 50)
        w2 = Workload("W2", (128, 128), (32, 32), [])
        w1z = Workload("W1z", (64, 64, 64), (16, 16, 16), [], compressible=True)
        args.repeat = 1
    else:
        w1 = Workload("W1", (512, 512, 512), (64, 64, 64), ["aligned", "unaligned", "rows"])
        w2 = Workload("W2", (1024, 1024), (32, 32), [])
        w1z = Workload("W1z", (512, 512, 512), (64, 64, 64), [], compressible=True)
    workloads = [w for w in (w1, w2, w1z) if w.name in args.workloads.split(",")]
    workdir = args.workdir or tempfile.mkdtemp(prefix="dosna-bench-")
    systems = make_systems(workdir, [s for s in args.systems.split(",") if s] or None)

    times: dict = {}
    try:
        for wl in workloads:
            if wl.compressible:
                wl.data = compressible_field(wl.shape)
            else:
                wl.data = np.random.default_rng(0).standard_normal(wl.shape, dtype="f4")
            for rnd in range(args.repeat):
                in_turn = [s for s in systems if wl.name in s.workloads]
                for system in in_turn if rnd % 2 == 0 else in_turn[::-1]:
                    print(
                        f"{wl.name} round {rnd + 1}/{args.repeat}: {system.name}", file=sys.stderr, flush=True
                    )
                    for op, (sec, amount) in run_ops(system, wl, rnd).items():
                        times.setdefault(wl.name, {}).setdefault(system.name, {}).setdefault(op, []).append(
                            (sec, amount)
                        )
            wl.data = None
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    report = summarise(times, systems, workloads)
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        plot(report, args.plot)
    return report


def rate(amount: float, sec: float, op: str, wl: Workload) -> float:
    """MB/s, or chunks/s for W2; the compression ratio as it is."""
    if op == "ratio":
        return amount
    if wl.name == "W2":
        return (amount / (int(np.prod(wl.chunks)) * 4)) / sec
    return amount / sec / 1e6


def summarise(times: dict, systems: list[System], workloads: list[Workload]) -> dict:
    families = {s.name: s.family for s in systems}
    report: dict = {"unit": {"W1": "MB/s", "W2": "chunks/s", "W1z": "MB/s"}, "rates": {}, "ratios": {}}
    for wl in workloads:
        per = times.get(wl.name, {})
        rates = {}
        for name, ops in per.items():
            rates[name] = {}
            for op, runs in ops.items():
                values = [rate(a, s, op, wl) for s, a in runs]
                rates[name][op] = {"best": max(values), "median": statistics.median(values)}
        report["rates"][wl.name] = rates
        ratios = {}
        for name in rates:
            if not name.startswith("dosna-"):
                continue
            if families[name] == "nocrc":  # checksums on / off, the same dosna in the same run
                on = name.removesuffix("-nocrc")
                if on in rates:
                    ratios[f"{on} / {name}"] = {
                        op: rates[on][op]["best"] / rates[name][op]["best"]
                        for op in rates[on]
                        if op in rates[name]
                    }
                continue
            for limit in LIMITS:  # the share of the physical limit, for each memory and file system
                if limit in rates and families[name] in ("memory", "file", "direct"):
                    ratios[f"{name} / {limit}"] = {
                        op: rates[name][op]["best"] / rates[limit][op]["best"]
                        for op in ("write", "read")
                        if op in rates[name] and op in rates[limit]
                    }
            for peer in PEERS.get(families[name], []):
                if peer not in rates:
                    continue
                ratios[f"{name} / {peer}"] = {
                    op: rates[name][op]["best"] / rates[peer][op]["best"]
                    for op in rates[name]
                    if op in rates[peer]
                }
        report["ratios"][wl.name] = ratios
    return report


def print_report(report: dict) -> None:
    for wl, rates in report["rates"].items():
        ops = sorted(
            {op for r in rates.values() for op in r},
            key=OPS.index,
        )
        print(f"\n{wl} ({report['unit'][wl]}, best / median)")
        print(f"{'system':22}" + "".join(f"{op:>22}" for op in ops))
        for name, r in rates.items():
            cells = "".join(
                f"{r[op]['best']:>12,.1f} / {r[op]['median']:<7,.1f}" if op in r else f"{'':>22}"
                for op in ops
            )
            print(f"{name:22}{cells}")
        print(f"\n{wl} ratios (dosna / peer, best times)")
        for pair, r in report["ratios"][wl].items():
            print(f"{pair:42}" + "".join(f"{op}={v:7.2f}x " for op, v in r.items()))


def plot(report: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    panels = [(wl, pair, r) for wl, pairs in report["ratios"].items() for pair, r in pairs.items()]
    fig, axes = plt.subplots(len(report["ratios"]), 1, figsize=(10, 4 * len(report["ratios"])), squeeze=False)
    for ax, wl in zip(axes[:, 0], report["ratios"]):
        pairs = [(pair, r) for w, pair, r in panels if w == wl]
        ops = sorted({op for _, r in pairs for op in r}, key=OPS.index)
        width = 0.8 / max(1, len(pairs))
        for k, (pair, r) in enumerate(pairs):
            ax.bar([i + k * width for i in range(len(ops))], [r.get(op, 0) for op in ops], width, label=pair)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks([i + width * (len(pairs) - 1) / 2 for i in range(len(ops))], ops)
        ax.set_ylabel("dosna / peer (higher is better)")
        ax.set_title(f"{wl}: throughput ratio")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
