"""The dosna command: train, models, ls, info, show (bench has its own tests)."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import dosna as dn
from dosna import cli
from dosna.tensors import ModelStore


def location_args(con: dn.Connection) -> list[str]:
    """Command-line arguments that reach the same store as ``con``."""
    backend = con.backend
    args = ["--backend", backend.name]
    if backend.name == "hdf5":
        return [*args, "--connection", os.path.join(backend.directory, con.name)]
    options = {
        "ceph": {"conffile": getattr(backend, "conffile", None)},
        "s3": {"endpoint_url": getattr(backend, "endpoint_url", None)},
    }.get(backend.name, {})
    text = ",".join(f"{k}={v}" for k, v in options.items() if v)
    return [*args, "--connection", con.name, *(["--connection-options", text] if text else [])]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspection_commands_on_every_backend(backend_connection, capsys, tmp_path):
    con = backend_connection
    image = np.arange(6 * 40 * 30, dtype=np.float32).reshape(6, 40, 30)
    con.create_dataset("volume", data=image, chunk_size=(2, 16, 16), attrs={"units": "counts"})
    con.create_dataset("sparse", shape=(100,), dtype="i2", chunk_size=(10,)).__setitem__(slice(0, 5), 1)
    where = location_args(con)

    code, out, _ = run_cli(capsys, "ls", *where)
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert lines["volume"][1:] == ["6x40x30", "float32", "2x16x16", "28.1", "KiB"]
    assert lines["sparse"][1:4] == ["100", "int16", "10"]
    assert out.splitlines()[-1].startswith("2 datasets")

    code, out, _ = run_cli(capsys, "info", "sparse", "--json", *where)
    info = json.loads(out)
    assert info["shape"] == [100] and info["chunks_stored"] == 1 and info["stored_chunk_indices"] == [[0]]
    sparse = con["sparse"]
    assert info["codec"] == sparse.meta.codec.describe() and info["compression"] == sparse.compression
    assert info["checksum"] and info["nbytes_stored"] == sparse.nbytes_stored > 0 and info["ratio"] > 0
    code, out, _ = run_cli(capsys, "info", "volume", *where)
    assert code == 0 and '"units": "counts"' in out and "chunks_stored: 18" in out
    con.create_dataset("packed", data=np.zeros((512, 256), "f4"), chunks=(256, 256), compression="zstd")
    code, out, _ = run_cli(capsys, "info", "packed", *where)
    assert code == 0 and "codec: zstd(3)+shuffle, crc32c" in out
    ratio = float(out.split("ratio: ")[1].split("x")[0])
    assert ratio > 10  # zeros compress well

    png = tmp_path / "slice.png"
    code, out, _ = run_cli(capsys, "show", "volume", "--index", "3,:,:", "-o", str(png), *where)
    assert code == 0 and f"min {image[3].min():.6g}, max {image[3].max():.6g}" in out
    assert png.read_bytes().startswith(b"\x89PNG")

    code, _, err = run_cli(capsys, "show", "volume", "--index", "3,:,0", "-o", str(png), *where)
    assert code == 1 and "leaves 2 axes" in err
    code, _, err = run_cli(capsys, "info", "missing", *where)
    assert code == 1 and "missing" in err


def test_parse_index_errors():
    from dosna.cli.common import parse_index

    assert parse_index("..., -1") == (Ellipsis, -1)
    assert parse_index("None, ::2") == (None, slice(None, None, 2))
    for bad in ("a", "1:2:3:4", "1.5"):
        with pytest.raises(ValueError):
            parse_index(bad)


def test_train_and_models_commands(tmp_path):
    """The installed ``dosna`` command end to end, in a separate process as a user runs it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    con = dn.Connection("store", backend="hdf5", directory=tmp_path).connect()
    con.create_dataset("digits.x", data=(digits.data[order] / 16).astype(np.float32), chunk_size=(256, 64))
    con.create_dataset("digits.y", data=digits.target[order], chunk_size=(256,))
    where = ["--backend", "hdf5", "--connection", str(tmp_path / "store")]

    def dosna(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "DOSNA_PROGRESS": "1"}  # bars even though stderr is a pipe
        return subprocess.run(
            [sys.executable, "-m", "dosna", *args], capture_output=True, text=True, timeout=300, env=env
        )

    done = dosna(
        "train",
        "--x",
        "digits.x",
        "--y",
        "digits.y",
        "--learner",
        "mlp",
        "--epochs",
        "20",
        "--batch-size",
        "64",
        "--model",
        "digits-mlp",
        *where,
    )
    assert done.returncode == 0, done.stderr
    assert "460/460" in done.stderr  # the progress bar: 23 batches x 20 epochs
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("model digits-mlp version 1: test accuracy 0.9")
    assert float(summary.split("test accuracy ")[1].split(",")[0]) >= 0.95

    listing = dosna("models", "list", *where)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[1].split()[:3] == ["digits-mlp", "1", "finished"]
    shown = json.loads(dosna("models", "show", "digits-mlp", "--version", "1", *where).stdout)
    assert shown["lineage"]["datasets"][0]["name"] == "digits.x"
    out = tmp_path / "model.npz"
    assert dosna("models", "load", "digits-mlp", "-o", str(out), *where).returncode == 0
    with np.load(out, allow_pickle=False) as saved:
        stored = ModelStore(con).load("digits-mlp")
        assert all(saved[k].tobytes() == v.tobytes() for k, v in stored.items())

    bad = dosna("models", "show", "nope", *where)
    assert bad.returncode == 1 and "no model 'nope'" in bad.stderr
    bad = dosna("train", "--x", "digits.x", "--y", "digits.y", "--learner", "nope", *where)
    assert bad.returncode == 1 and "unknown learner 'nope'" in bad.stderr
    assert dosna("models", "delete", "digits-mlp", "1", *where).returncode == 0
    assert "no models" in dosna("models", "list", *where).stdout
    assert dosna("frobnicate").returncode == 2


def test_models_load_writes_any_tensor_name_and_train_takes_resume(tmp_path, capsys):
    """`models load` of a tensor named like np.savez's own argument, and `train --resume`."""
    con = dn.Connection("store", backend="hdf5", directory=tmp_path).connect()
    weights = {"file": np.arange(6.0).reshape(2, 3), "allow_pickle": np.ones(2, "f4")}
    ModelStore(con).save("odd-names", weights)
    where = ["--backend", "hdf5", "--connection", str(tmp_path / "store")]
    out = tmp_path / "odd.npz"
    code, printed, err = run_cli(capsys, "models", "load", "odd-names", "-o", str(out), *where)
    assert code == 0, err
    with np.load(out, allow_pickle=False) as loaded:
        assert sorted(loaded.files) == ["allow_pickle", "file"]
        np.testing.assert_array_equal(loaded["file"], weights["file"])
    x = np.random.default_rng(1).standard_normal((64, 4)).astype("f4")
    con.create_dataset("r.x", data=x, chunk_size=(16, 4))
    con.create_dataset("r.y", data=(x[:, 0] > 0).astype("i8"), chunk_size=(16,))
    args = ["train", "--x", "r.x", "--y", "r.y", "--learner", "softmax", "--epochs", "2", "--model", "r"]
    code, printed, err = run_cli(capsys, *args, "--resume", "--no-progress", *where)
    assert code == 0, err
    assert "model r version 1" in printed


@pytest.fixture
def small_store(tmp_path):
    """An hdf5 store with a 3-d dataset ``v`` and labels ``y``; the arguments that reach it."""
    con = dn.Connection("store", backend="hdf5", directory=tmp_path).connect()
    con.create_dataset("v", data=np.arange(24.0).reshape(2, 3, 4), chunk_size=2)
    con.create_dataset("y", data=np.arange(2) % 2)
    return tmp_path, ["--backend", "hdf5", "--connection", str(tmp_path / "store")]


BROKEN_LEARNER = "raise RuntimeError('the learner file is broken')\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "v", "--index", "999,:,:"], "index 999 is out of bounds for axis 0 with size 2"),
        (["show", "v", "--index=-3,:,:"], "index -3 is out of bounds"),
        (["show", "v", "--index", "0,:,:,:,:"], "too many indices"),
        (["show", "v", "--index", "0,:,:", "--cmap", "no-such-map"], "no-such-map"),
        (["show", "v", "--index", "0:x"], "bad slice"),
        (["info", "missing"], "dataset 'missing' does not exist"),
        (["models", "show", "nope"], "no model 'nope'"),
        (["models", "load", "nope", "-o", "out.npz"], "no model 'nope'"),
        (["train", "--x", "v", "--y", "y", "--learner", "{dir}/broken.py:make"], "RuntimeError: the learner"),
        (["train", "--x", "v", "--y", "y", "--hyper", "bogus=1", "--no-progress"], "bogus"),
    ],
)
def test_user_errors_are_one_line_on_stderr_with_status_1(small_store, capsys, args, message):
    directory, where = small_store
    (directory / "broken.py").write_text(BROKEN_LEARNER)
    args = [a.replace("{dir}", str(directory)) for a in args]
    code, out, err = run_cli(capsys, *args, *where)
    command = args[0]
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"dosna {command}: error: "), err
    assert message in err and "Traceback" not in err


def test_the_installed_command_fails_in_one_line_and_debug_shows_the_traceback(small_store):
    directory, where = small_store

    def dosna(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dosna", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )

    show = ["show", "v", "--index", "999,:,:", *where]
    plain = dosna(*show, DOSNA_DEBUG="")
    assert plain.returncode == 1 and plain.stdout == ""
    assert plain.stderr.splitlines() == [
        "dosna show: error: index 999 is out of bounds for axis 0 with size 2"
    ]
    for debugged in (dosna("--debug", *show), dosna(*show, "--debug"), dosna(*show, DOSNA_DEBUG="1")):
        assert debugged.returncode == 1
        assert debugged.stderr.startswith("Traceback") and "IndexError" in debugged.stderr
        assert debugged.stderr.splitlines()[-1].startswith("dosna show: error: index 999")
    assert not (directory / "v.png").exists()


def test_models_commands_skip_foreign_datasets_named_like_manifests(tmp_path, capsys, caplog):
    from dosna.namespaces import owned_by

    con = dn.Connection("store", backend="hdf5", directory=tmp_path).connect()
    ModelStore(con).save("net", {"file": np.ones(2)})
    with owned_by("models."):  # left by another program: not the store's
        con.create_dataset("models.net.v2", data=np.arange(3), attrs={"manifest": {"format": "x"}})
        con.create_dataset("models.other.v1", shape=(1,))
    where = ["--backend", "hdf5", "--connection", str(tmp_path / "store")]
    code, out, err = run_cli(capsys, "models", "list", *where)
    assert code == 0, err
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [["net", "1", "finished"]]
    code, out, err = run_cli(capsys, "models", "show", "net", "--version", "2", *where)
    assert code == 1 and len(err.splitlines()) == 1 and "is corrupt at manifest" in err
    code, out, err = run_cli(capsys, "models", "load", "net", "-o", str(tmp_path / "w.npz"), *where)
    assert code == 0 and "wrote 1 tensors" in out


def _imported_modules(path: pathlib.Path, package: str) -> set[str]:
    """Absolute names of the modules a source file imports (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_library_modules_do_not_import_the_command_line():
    """Only dosna/cli/ (and the ``python -m dosna`` entry point) may import ``dosna.cli``."""
    root = pathlib.Path(dn.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        if relative.parts[:2] == ("dosna", "cli") or relative == pathlib.Path("dosna", "__main__.py"):
            continue
        package = ".".join(relative.parent.parts)  # what a relative import starts from
        bad = {m for m in _imported_modules(path, package) if m == "dosna.cli" or m.startswith("dosna.cli.")}
        if bad:
            offenders.append(f"{relative}: {', '.join(sorted(bad))}")
    assert not offenders, "library modules import the command line:\n" + "\n".join(offenders)
