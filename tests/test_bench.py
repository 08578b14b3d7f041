"""Chunk-size benchmarking: the convolution study and ``dosna bench``."""

from __future__ import annotations

import csv
import json
import os
import sys

import h5py
import numpy as np
import pytest

from dosna import cli
from dosna.bench import PATTERNS, _keys, parse_chunk_shapes

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


@pytest.fixture(scope="module")
def convolutions():
    sys.path.insert(0, EXAMPLES)
    try:
        import convolutions

        yield convolutions
    finally:
        sys.path.remove(EXAMPLES)


@pytest.mark.parametrize("sigma", [0.6, 1.5, 2.2])
def test_halo_filters_match_scipy(convolutions, tmp_path, sigma):
    """Both chunked filters equal SciPy on the whole volume; without the halo they do not."""
    from scipy import ndimage

    import dosna as dn

    con = dn.Connection("c", backend="hdf5", directory=tmp_path).connect()
    data = convolutions.make_volume(23, seed=3)
    _, names = convolutions.run_case(con, data, 8, sigma, "t")
    diff, *_ = convolutions.check(con, data, names, sigma)
    assert diff < 1e-5
    reference = ndimage.gaussian_filter(data, sigma, truncate=4.0)
    naive = con["conv-t-data"].map(lambda b: ndimage.gaussian_filter(b, sigma), "naive")[...]
    assert np.abs(naive - reference).max() > 1e-3  # what the original study computed
    assert convolutions.halo_for(sigma) >= int(4.0 * sigma + 0.5)  # SciPy's kernel radius


def test_convolution_study_writes_labelled_results_and_plots(convolutions, tmp_path, capsys):
    out = tmp_path / "out"
    code = convolutions.main(
        [
            "--out",
            str(out),
            "--connection",
            str(tmp_path / "store"),
            "--data-sizes",
            "16,24",
            "--chunk-sizes",
            "8,16",
            "--sigma",
            "1.0",
            "--ntest",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    with h5py.File(out / "convolutions.h5") as f:
        assert list(f["data_size"][:]) == [16, 24] and list(f["chunk_size"][:]) == [8, 16]
        for step in ("load", "conv3d", "conv1d"):
            times = f[f"times/{step}"]
            assert times.shape == (2, 2, 2) and times.attrs["units"] == "seconds"
            assert [d.label for d in times.dims] == ["data_size", "chunk_size", "repeat"]
            assert np.all(times[...] > 0)
        assert np.all(f["max_abs_diff"][...] < 1e-5)
        assert f.attrs["halo"] == 4 and f.attrs["backend"] == "hdf5"
    for name in ("timings.png", "slices-16.png", "slices-24.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert "wrote" in capsys.readouterr().out
    assert not any(n.startswith("conv-") for n in os.listdir(tmp_path / "store"))  # cleaned up


def test_convolution_study_under_mpiexec(tmp_path):
    from mpi_helpers import MPIEXEC, run_mpi

    if MPIEXEC is None:
        pytest.skip("mpiexec not found")
    result = run_mpi(
        2,
        [
            sys.executable,
            "-m",
            "mpi4py",
            os.path.join(EXAMPLES, "convolutions.py"),
            "--engine",
            "mpi",
            "--connection",
            str(tmp_path / "store"),
            "--out",
            str(tmp_path / "out"),
            "--data-sizes",
            "20",
            "--chunk-sizes",
            "8",
            "--ntest",
            "1",
            "--no-progress",
        ],
        timeout=180,
    )
    assert result.returncode == 0, str(result)
    with h5py.File(tmp_path / "out" / "convolutions.h5") as f:
        assert f["max_abs_diff"][0, 0] < 1e-5 and f.attrs["engine"] == "mpi"


# -- dosna bench -----------------------------------------------------------------------


def test_pattern_selections_are_inside_and_shaped():
    rng = np.random.default_rng(0)
    shape = (100, 60, 30)
    for key in _keys("aligned", shape, (16, 16, 16), 50, rng):
        assert all(s.start % 16 == 0 and s.stop <= n for s, n in zip(key, shape))
    for key in _keys("unaligned", shape, (16, 16, 16), 50, rng):
        assert all(s.stop - s.start == 16 and s.stop <= n for s, n in zip(key, shape))
    assert all(k[-1] == slice(None) for k in _keys("rows", shape, (1,), 5, rng))
    assert all(k[0] == slice(None) for k in _keys("columns", shape, (1,), 5, rng))
    for (rows,) in _keys("batches", shape, (32,), 5, rng):
        assert len(rows) == 32 and np.all(np.diff(rows) > 0)
    assert parse_chunk_shapes("8,16", 3) == [(8, 8, 8), (16, 16, 16)]
    assert parse_chunk_shapes("4x8x16;8x8x8", 3) == [(4, 8, 16), (8, 8, 8)]
    with pytest.raises(ValueError):
        parse_chunk_shapes("4x8", 3)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_bench_writes_json_csv_plot_and_best(tmp_path, capsys, pattern):
    out = tmp_path / "bench"
    code = cli.main(
        [
            "bench",
            "--shape",
            "64,48,40",
            "--chunks",
            "8,16x16x40;32",
            "--pattern",
            pattern,
            "--repeat",
            "2",
            "--count",
            "4",
            "--block",
            "16,16,16",
            "--out",
            str(out),
            "--no-progress",
            "--backend",
            "hdf5",
            "--connection",
            str(tmp_path / "store"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["config"]["pattern"] == pattern and report["config"]["shape"] == [64, 48, 40]
    rows = report["results"]
    assert [r["chunk_shape"] for r in rows] == ["8x8x8", "16x16x40", "32x32x32"]
    for r in rows:
        assert len(r["seconds"]) == 2 and r["mb_per_s"] > 0 and r["bytes_moved"] > 0
    assert report["best"]["chunk_shape"] == max(rows, key=lambda r: r["mb_per_s"])["chunk_shape"]
    with open(out / "bench.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["chunk_shape"] for t in table] == ["8x8x8", "16x16x40", "32x32x32"]
    assert (out / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert f"best chunk shape for {pattern}: {report['best']['chunk_shape']}" in printed
    if pattern.startswith("full"):
        assert rows[0]["bytes_moved"] == 64 * 48 * 40 * 4
    assert os.listdir(tmp_path / "store") == []  # benchmark datasets removed


def test_bench_on_every_backend(backend_connection, tmp_path, capsys):
    from test_cli import location_args

    code = cli.main(
        [
            "bench",
            "--shape",
            "32,32",
            "--chunks",
            "8,16",
            "--pattern",
            "rows",
            "--repeat",
            "1",
            "--count",
            "3",
            "--out",
            str(tmp_path),
            "--no-progress",
            *location_args(backend_connection),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (
        json.loads((tmp_path / "bench.json").read_text())["config"]["backend"]
        == backend_connection.backend.name
    )
    assert backend_connection.datasets() == []


def test_bench_refuses_bad_input(tmp_path, capsys):
    where = ["--backend", "hdf5", "--connection", str(tmp_path / "s")]
    assert cli.main(["bench", "--shape", "10,10", "--chunks", "4x4x4", *where]) == 1
    assert "does not fit" in capsys.readouterr().err
    assert cli.main(["bench", "--shape", "10,10", "--chunks", "4", "--dtype", "U3", *where]) == 1


@pytest.mark.parametrize("pattern", ["full-write", "full-read", "rows"])
def test_bench_sweeps_codecs(tmp_path, capsys, pattern):
    out = tmp_path / "bench"
    argv = ["bench", "--shape", "64,64,32", "--chunks", "16,32", "--codecs", "none,zstd,lz4,blosc,gzip"]
    argv += ["--pattern", pattern, "--repeat", "1", "--count", "3", "--out", str(out), "--no-progress"]
    code = cli.main([*argv, "--backend", "hdf5", "--connection", str(tmp_path / "store")])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    rows = report["results"]
    assert [(r["codec"], r["chunk_shape"]) for r in rows] == [
        (c, s) for c in ("none", "zstd", "lz4", "blosc", "gzip") for s in ("16x16x16", "32x32x32")
    ]
    ratios = {(r["codec"], r["chunk_shape"]): r["ratio"] for r in rows}
    assert ratios["none", "32x32x32"] < 1 < ratios["zstd", "32x32x32"]  # smooth data compresses
    with open(out / "bench.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0].keys() >= {"codec", "ratio", "mb_per_s"} and len(table) == 10
    assert (out / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert "with " in printed.splitlines()[-1] and " zstd " in printed
    bad = [
        "bench",
        "--shape",
        "8",
        "--chunks",
        "4",
        "--codecs",
        "snappy",
        "--backend",
        "ram",
        "--connection",
        "x",
    ]
    assert cli.main([*bad, "--no-progress", "--out", str(out)]) == 1
    assert "snappy" in capsys.readouterr().err
