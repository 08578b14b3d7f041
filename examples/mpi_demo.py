"""A batch-job script for the mpi engine: every rank writes its slab, then map/apply run in parallel.

    mpiexec -n 4 python -m mpi4py examples/mpi_demo.py --backend hdf5 --directory /tmp/x

Each rank writes the slab of the dataset it owns (chunk-aligned, so no two ranks
touch the same chunk), then ``map`` and ``apply`` split the chunks between ranks,
and the root checks everything against NumPy and prints a summary.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import dosna as dn


def expected_data(shape: tuple[int, ...]) -> np.ndarray:
    """The array every rank writes a part of: its value encodes the position."""
    return np.fromfunction(lambda i, j, k: i * 1e4 + j * 1e2 + k, shape, dtype="f8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="hdf5")
    parser.add_argument("--directory", default=None, help="shared directory (hdf5 backend)")
    parser.add_argument("--connection", default="mpi-demo", help="connection name (pool, bucket...)")
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 64, 64])
    parser.add_argument("--chunks", type=int, nargs=3, default=[16, 32, 32])
    args = parser.parse_args()

    options = {}
    if args.backend == "hdf5":
        from mpi4py import MPI

        directory = args.directory or MPI.COMM_WORLD.bcast(tempfile.mkdtemp(prefix="dosna-mpi-demo-"))
        options["directory"] = directory
    dn.use(backend=args.backend, engine="mpi")
    shape = tuple(args.shape)
    start = time.perf_counter()
    with dn.connection(args.connection, **options) as con:
        for name in ("field", "field-scaled"):
            if name in con:
                con.del_dataset(name)  # collective: root deletes, everyone waits
        ds = con.create_dataset("field", shape=shape, dtype="f8", chunk_size=tuple(args.chunks))

        slab = ds.slab_for_rank(axis=0)  # this rank's chunk-aligned share
        ds[slab] = expected_data(shape)[slab]
        print(f"rank {con.mpi_rank}/{con.mpi_size}: wrote rows {slab[0].start}:{slab[0].stop}", flush=True)
        con.mpi_barrier()

        scaled = ds.map(lambda chunk: chunk * 2, "field-scaled")  # chunks split across ranks
        ds.apply(np.sqrt)
        con.mpi_barrier()

        if con.mpi_is_root:
            truth = expected_data(shape)
            assert np.array_equal(scaled[...], truth * 2), "map gave wrong values"
            assert np.array_equal(ds[...], np.sqrt(truth)), "apply gave wrong values"
            elapsed = time.perf_counter() - start
            print(
                f"verified against NumPy: {ds.total_chunks} chunks of {ds.chunk_size} written by "
                f"{con.mpi_size} ranks, map and apply split across ranks, {elapsed:.2f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
