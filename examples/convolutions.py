"""How chunk size drives the cost of loading and filtering a 3D volume.

    python examples/convolutions.py --out results/ [--data-sizes 128,256] [--chunk-sizes 16,32,64]
    mpiexec -n 2 python -m mpi4py examples/convolutions.py --engine mpi --connection DIR --out results/

For every data size D (a D x D x D float32 volume of smoothed noise) and chunk
size C (C x C x C chunks), ``--ntest`` times over:

- **load**: create the dataset and write the volume into it;
- **3D Gaussian**: ``Dataset.map`` with a halo of ceil(4 sigma) elements: each
  chunk is filtered together with that much of its neighbours, so the result
  equals ``scipy.ndimage.gaussian_filter`` on the whole volume (the original
  study filtered chunks in isolation and was wrong near every chunk border);
- **3 x 1D Gaussian**: three separable passes, one axis each, each with a halo
  along its own axis only.

Both results are checked against SciPy on the whole volume (max abs diff
< 1e-5). The timings go to ``OUT/convolutions.h5`` (arrays with labelled axes:
data size x chunk size x repeat), the plots to ``OUT/timings.png`` and, for a
visual check, ``OUT/slices-D.png`` (middle slice of input, both results and
the difference to SciPy). With the mpi engine every rank works on its share
of the chunks and times are wall times between barriers.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import uuid
from functools import partial

import numpy as np
from scipy import ndimage

import dosna as dn
from dosna.locations import open_connection
from dosna.progress import progress_bar

TRUNCATE = 4.0
STEPS = ("load", "conv3d", "conv1d")


def halo_for(sigma: float) -> int:
    """Elements of neighbour data a Gaussian of ``sigma`` needs: ceil(4 sigma) >= SciPy's radius."""
    return math.ceil(TRUNCATE * sigma)


def gaussian3d(block: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(block, sigma, truncate=TRUNCATE)


def gaussian1d(block: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    return ndimage.gaussian_filter1d(block, sigma, axis=axis, truncate=TRUNCATE)


def make_volume(size: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal((size,) * 3, dtype=np.float32)
    return ndimage.uniform_filter(noise, 3)  # some structure, for the slice images


def timed(engine, func):
    engine.barrier()
    start = time.perf_counter()
    result = func()
    engine.barrier()
    return time.perf_counter() - start, result


def run_case(con, data: np.ndarray, chunk: int, sigma: float, tag: str):
    """Times of load, 3D filter and 3 x 1D filters, and the two results' names."""
    engine = con.engine
    halo = halo_for(sigma)
    names = {k: f"conv-{tag}-{k}" for k in ("data", "3d", "x", "xy", "xyz")}
    t_load, ds = timed(engine, lambda: con.create_dataset(names["data"], data=data, chunk_size=chunk))
    t_3d, _ = timed(engine, lambda: ds.map(partial(gaussian3d, sigma=sigma), names["3d"], halo=halo))

    def separable():
        current = ds
        for axis, key in enumerate(("x", "xy", "xyz")):
            reach = tuple(halo if a == axis else 0 for a in range(3))
            current = current.map(partial(gaussian1d, sigma=sigma, axis=axis), names[key], halo=reach)
            if axis > 0:
                con.del_dataset(names[("x", "xy")[axis - 1]])
        return current

    t_1d, _ = timed(engine, separable)
    return {"load": t_load, "conv3d": t_3d, "conv1d": t_1d}, names


def check(
    con, data: np.ndarray, names: dict, sigma: float
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Max abs difference of both results to SciPy on the whole volume, and the arrays."""
    reference = ndimage.gaussian_filter(data, sigma, truncate=TRUNCATE)
    out3d, out1d = con[names["3d"]][...], con[names["xyz"]][...]
    diff = max(float(np.abs(out3d - reference).max()), float(np.abs(out1d - reference).max()))
    return diff, reference, out3d, out1d


def cleanup(con, names: dict) -> None:
    for name in names.values():
        if con.has_dataset(name):
            con.del_dataset(name)


def save_results(path: str, args, times: np.ndarray, diffs: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        data_sizes = f.create_dataset("data_size", data=np.array(args.data_sizes))
        chunk_sizes = f.create_dataset("chunk_size", data=np.array(args.chunk_sizes))
        repeats = f.create_dataset("repeat", data=np.arange(args.ntest))
        for scale, label in (
            (data_sizes, "data size (elements per axis)"),
            (chunk_sizes, "chunk size (elements per axis)"),
            (repeats, "repeat"),
        ):
            scale.make_scale(scale.name.strip("/"))
            scale.attrs["description"] = label
        for i, step in enumerate(STEPS):
            dset = f.create_dataset(f"times/{step}", data=times[:, :, :, i])
            dset.attrs["units"] = "seconds"
            for axis, scale in enumerate((data_sizes, chunk_sizes, repeats)):
                dset.dims[axis].attach_scale(scale)
                dset.dims[axis].label = scale.name.strip("/")
        err = f.create_dataset("max_abs_diff", data=diffs)
        err.attrs["description"] = (
            "max |result - scipy.ndimage.gaussian_filter(whole volume)| over both filters"
        )
        for axis, scale in enumerate((data_sizes, chunk_sizes)):
            err.dims[axis].attach_scale(scale)
            err.dims[axis].label = scale.name.strip("/")
        f.attrs.update(
            sigma=args.sigma,
            halo=halo_for(args.sigma),
            backend=args.backend,
            engine=args.engine,
            dtype="float32",
            dosna_version=dn.__version__,
        )


def plot_times(path: str, args, times: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"load": "load (write)", "conv3d": "3D Gaussian (halo)", "conv1d": "3 x 1D Gaussian (halo)"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=100, sharey=False)
    for i, step in enumerate(STEPS):
        ax = axes[i]
        for d, size in enumerate(args.data_sizes):
            best = times[d, :, :, i].min(axis=1)
            ax.plot(args.chunk_sizes, best, marker="o", label=f"{size}³")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(args.chunk_sizes, [str(c) for c in args.chunk_sizes])
        ax.set_xlabel("chunk size (elements per axis)")
        ax.set_ylabel("seconds (best of repeats)")
        ax.set_title(titles[step])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="data")
    fig.suptitle(f"sigma {args.sigma}, {args.backend} backend, {args.engine} engine")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_slices(path: str, data, out3d, out1d, reference, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = data.shape[0] // 2
    panels = [
        ("input", data[mid]),
        ("3D Gaussian, chunked", out3d[mid]),
        ("3 x 1D Gaussian, chunked", out1d[mid]),
        ("|3D - scipy|", np.abs(out3d[mid] - reference[mid])),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), dpi=100)
    for ax, (label, image) in zip(axes, panels):
        shown = ax.imshow(image, cmap="magma" if label.startswith("|") else "gray")
        ax.set_title(label)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_sizes(text: str) -> list[int]:
    sizes = [int(v) for v in text.split(",") if v.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive ints separated by commas, got {text!r}")
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="hdf5", help="ram, hdf5, ceph, s3 (default hdf5)")
    parser.add_argument("--engine", default="cpu", help="cpu, joblib, mpi (default cpu)")
    parser.add_argument(
        "--connection", help="hdf5: a directory (default: a temporary one); ceph: pool; s3: bucket"
    )
    parser.add_argument("--connection-options", default="", metavar="K=V,...")
    parser.add_argument("--engine-options", default="", metavar="K=V,...")
    parser.add_argument("--out", required=True, help="directory for convolutions.h5 and the plots")
    parser.add_argument("--data-sizes", type=parse_sizes, default=[128, 256], help="e.g. 128,256")
    parser.add_argument("--chunk-sizes", type=parse_sizes, default=[16, 32, 64, 128], help="e.g. 16,32,64")
    parser.add_argument("--sigma", type=float, default=1.5)
    parser.add_argument("--ntest", type=int, default=3, help="repeats per case")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with SciPy")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.sigma <= 0 or args.ntest < 1:
        parser.error("--sigma must be > 0 and --ntest >= 1")
    location = args.connection
    if location is None:
        if args.backend != "hdf5" or args.engine == "mpi":
            parser.error("--connection is needed for this backend/engine")
        location = os.path.join(tempfile.mkdtemp(prefix="dosna-conv-"), "conv")

    con = open_connection(args.backend, location, args.engine, args.connection_options, args.engine_options)
    engine = con.engine
    root = engine.is_root
    tag = engine.collective(lambda: uuid.uuid4().hex[:8])
    times = np.full((len(args.data_sizes), len(args.chunk_sizes), args.ntest, len(STEPS)), np.nan)
    diffs = np.full((len(args.data_sizes), len(args.chunk_sizes)), np.nan)
    if root:
        os.makedirs(args.out, exist_ok=True)
    total = len(args.data_sizes) * len(args.chunk_sizes) * args.ntest
    bar = progress_bar(root and not args.no_progress, total, "convolutions", unit="run")
    failures = []
    with con:
        for d, size in enumerate(args.data_sizes):
            data = make_volume(size)
            for c, chunk in enumerate(args.chunk_sizes):
                for r in range(args.ntest):
                    step_times, names = run_case(con, data, chunk, args.sigma, f"{tag}-{size}-{chunk}-{r}")
                    times[d, c, r] = [step_times[s] for s in STEPS]
                    if r == 0 and not args.no_check:
                        diff, reference, out3d, out1d = check(con, data, names, args.sigma)
                        diffs[d, c] = diff
                        if diff >= 1e-5:
                            failures.append(f"{size}^3 in {chunk}^3 chunks: max abs diff {diff:.3g}")
                        if root and c == len(args.chunk_sizes) - 1:
                            plot_slices(
                                os.path.join(args.out, f"slices-{size}.png"),
                                data,
                                out3d,
                                out1d,
                                reference,
                                f"{size}³ volume in {chunk}³ chunks, sigma {args.sigma}",
                            )
                    cleanup(con, names)
                    bar.update(1)
        bar.close()
    if root:
        save_results(os.path.join(args.out, "convolutions.h5"), args, times, diffs)
        plot_times(os.path.join(args.out, "timings.png"), args, times)
        print(f"{'data':>6} {'chunk':>6} {'load s':>9} {'3D s':>9} {'3x1D s':>9} {'max diff':>10}")
        for d, size in enumerate(args.data_sizes):
            for c, chunk in enumerate(args.chunk_sizes):
                best = times[d, c].min(axis=0)
                print(
                    f"{size:>6} {chunk:>6} {best[0]:>9.3f} {best[1]:>9.3f} {best[2]:>9.3f} {diffs[d, c]:>10.2e}"
                )
        print(f"wrote {args.out}/convolutions.h5, timings.png and slices-*.png")
        for failure in failures:
            print(f"MISMATCH: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
