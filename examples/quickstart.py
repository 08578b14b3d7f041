"""dosna in two minutes: the original DosNa tutorial on the hdf5 backend.

    python examples/quickstart.py [--directory DIR]

Creates a (100, 100, 100) dataset in 32^3 chunks (one HDF5 file each) under
DIR (default: a temporary directory), reads and writes slices, uses attributes,
map and clone, and checks everything against NumPy.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile

import numpy as np

import dosna as dn


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--directory", default=None, help="where the data goes (default: a temp dir)")
    args = parser.parse_args()
    directory = args.directory
    if directory is None:
        directory = tempfile.mkdtemp(prefix="dosna-quickstart-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        print(f"data in {directory}, a temporary directory removed at the end (--directory DIR keeps it)")

    dn.use(backend="hdf5", engine="cpu")
    data = np.random.default_rng(0).standard_normal((100, 100, 100))

    con = dn.Connection("dosna-tutorial", directory=directory)
    con.connect()
    if "data" in con:
        con.del_dataset("data")
    ds = con.create_dataset("data", data=data, chunk_size=(32, 32, 32))
    print(ds)
    print("ds[0, 0, :10] =", np.round(ds[0, 0, :10], 3))
    assert np.allclose(ds[...], data)
    con.disconnect()

    with dn.connection("dosna-tutorial", directory=directory) as con:
        ds = con["data"]  # an existing dataset
        ds[36:80, 89:, :56] = data[36:80, 89:, :56] * 2
        data[36:80, 89:, :56] *= 2
        assert np.allclose(ds[36:80, 89:, :56], data[36:80, 89:, :56])
        ds.attrs["units"] = "kelvin"

        for name in ("data-squared", "data-copy"):
            if name in con:
                con.del_dataset(name)
        squared = ds.map(lambda chunk: chunk**2, "data-squared")
        copy = ds.clone("data-copy", data=True)
        assert np.allclose(squared[...], data**2) and np.allclose(copy[...], data)

        chunk_files = len(
            [f for f in os.listdir(os.path.join(directory, "dosna-tutorial", "data")) if f.endswith(".h5")]
        )
        print(f"datasets: {list(con)}; 'data' has {ds.total_chunks} chunks in {chunk_files} HDF5 files")
        print(
            f"attrs: {dict(ds.attrs)}; grid {ds.chunk_grid}; edge chunk shape {ds.get_chunk((3, 3, 3)).shape}"
        )
    print(f"all checks against NumPy passed; data in {directory}")


if __name__ == "__main__":
    main()
