"""``--json`` on ``dosna ls``, ``models list``, ``bench`` and ``train``: the same facts as the text."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dosna as dn
from dosna.cli import main
from dosna.tensors import ModelStore

pytest.importorskip("h5py")


@pytest.fixture
def store(tmp_path):
    where = ["--backend", "hdf5", "--connection", str(tmp_path / "store")]
    with dn.Connection("store", backend="hdf5", engine="cpu", directory=str(tmp_path)) as con:
        yield con, where


def _json(capsys, *argv: str):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_ls_json(store, capsys):
    con, where = store
    assert _json(capsys, "ls", "--json", *where) == []
    con.create_dataset("cube", data=np.zeros((4, 6), "f4"), chunk_size=(2, 3))
    (entry,) = _json(capsys, "ls", "--json", *where)
    assert entry == {"name": "cube", "shape": [4, 6], "dtype": "<f4", "chunk_size": [2, 3], "nbytes": 96}


def test_models_list_json(store, capsys):
    con, where = store
    ModelStore(con).save("lin", {"w": np.ones(3)})
    ModelStore(con).save("lin", {"w": np.zeros(3), "b": np.zeros(1)})
    listed = _json(capsys, "models", "list", "--json", *where)
    assert [(m["model"], m["version"], m["tensors"]) for m in listed] == [("lin", 1, 1), ("lin", 2, 2)]
    assert all({"state", "metrics", "created_at"} <= set(m) for m in listed)


def test_train_json(store, capsys):
    con, where = store
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype("f4")
    con.create_dataset("x", data=x, chunk_size=(50, 4))
    con.create_dataset("y", data=(x[:, 0] > 0).astype("i8"), chunk_size=50)
    out = _json(
        capsys, "train", "--x", "x", "--y", "y", "--learner", "softmax", "--epochs", "2", "--json", *where
    )
    assert out["model"] == "x-softmax" and out["version"] == 1
    assert 0 <= out["metrics"]["test_accuracy"] <= 1 and out["metrics"]["epochs"] == 2


def test_bench_json(store, capsys, tmp_path):
    _, where = store
    out = _json(
        capsys,
        "bench",
        "--shape",
        "16,16",
        "--chunks",
        "4,8",
        "--repeat",
        "1",
        "--out",
        str(tmp_path / "b"),
        "--json",
        *where,
    )
    assert [r["chunk_shape"] for r in out["results"]] == ["4x4", "8x8"]
    assert out["best"] in out["results"] and out["config"]["shape"] == [16, 16]
    with open(out["outputs"]["json"]) as f:
        assert json.load(f)["best"] == out["best"]
