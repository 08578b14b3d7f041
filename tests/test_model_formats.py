"""Model versions meet PyTorch: state_dicts in and out, safetensors and npz files through the CLI."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import dosna as dn
from dosna.cli import main
from dosna.errors import InvalidOptionError, ModelFileError
from dosna.tensors import ModelStore

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")


def _module():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    module.train()
    module(torch.randn(8, 4))  # running stats and num_batches_tracked move
    return module.eval()


@pytest.fixture(params=["ram", "hdf5"])
def con(request, tmp_path):
    kwargs = {"directory": str(tmp_path)} if request.param == "hdf5" else {}
    with dn.Connection(f"m-{tmp_path.name}", backend=request.param, **kwargs) as c:
        yield c


def _state(module):
    state = dict(module.state_dict())
    state["half"] = torch.randn(5, 2).to(torch.bfloat16)
    return state


def test_state_dict_round_trips_through_torch_format(con):
    module = _module()
    state = _state(module)
    assert state["1.num_batches_tracked"].dtype == torch.int64
    store = ModelStore(con)
    store.save("net", state)
    loaded = store.load("net", format="torch")
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape
        assert torch.equal(loaded[name], tensor), name
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    half = loaded.pop("half")
    fresh.load_state_dict(loaded)
    x = torch.randn(6, 4)
    assert torch.equal(fresh(x), module(x))
    assert half.view(torch.int16).tolist() == state["half"].view(torch.int16).tolist()
    # NumPy has no bfloat16: the default format says so, and names the way out
    with pytest.raises(TypeError, match="format='torch'"):
        store.load("net")


def test_bad_values_and_formats_are_typed_errors_that_write_nothing(con):
    store = ModelStore(con)
    for bad in ({"w": {"nested": torch.ones(2)}}, {"w": None}, {"w": "text"}, {"": torch.ones(1)}):
        with pytest.raises(TypeError):
            store.save("net", bad)
    assert list(con.datasets()) == []
    store.save("net", {"w": torch.ones(2)})
    with pytest.raises(InvalidOptionError, match="unknown format 'jax'") as info:
        store.load("net", format="jax")
    assert isinstance(info.value, ValueError)


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def where(tmp_path):
    with dn.Connection("store", backend="hdf5", directory=str(tmp_path)) as c:
        yield c, ["--backend", "hdf5", "--connection", str(tmp_path / "store")]


@pytest.mark.parametrize("suffix", ["safetensors", "npz"])
def test_export_import_round_trip_through_the_cli(where, tmp_path, capsys, suffix):
    con, loc = where
    store = ModelStore(con)
    state = _state(_module())
    store.save("net", {"w": torch.zeros(1)})
    store.save("net", state, lineage={"data": "digits"}, metrics={"acc": 0.5}, parent=1)
    path = tmp_path / f"net.{suffix}"
    code, out, err = _cli(capsys, "models", "export", "net", "-o", str(path), "--json", *loc)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["version"] == 2 and summary["format"] == suffix
    assert {"name": "half", "shape": [5, 2], "dtype": "bfloat16"} in summary["tensors"]

    if suffix == "safetensors":
        from safetensors.numpy import load_file as load_numpy
        from safetensors.torch import load_file

        read = load_file(str(path))
        assert read["half"].dtype == torch.bfloat16 and torch.equal(read["half"], state["half"])
        assert all(torch.equal(read[n], t) for n, t in state.items())
        without = tmp_path / "plain.safetensors"
        store.save("plain", {"w": np.arange(3.0)})
        assert _cli(capsys, "models", "export", "plain", "-o", str(without), *loc)[0] == 0
        assert load_numpy(str(without))["w"].tolist() == [0.0, 1.0, 2.0]
    else:
        with np.load(path, allow_pickle=False) as npz:
            assert npz["0.weight"].tobytes() == state["0.weight"].numpy().tobytes()
            assert npz["half"].dtype == np.uint16

    code, out, err = _cli(capsys, "models", "import", str(path), "--name", "copy", *loc)
    assert code == 0 and "imported copy version 1" in out, err
    loaded = store.load("copy", format="torch")
    assert sorted(loaded) == sorted(state)  # safetensors files keep their own order
    assert all(loaded[n].dtype == t.dtype and torch.equal(loaded[n], t) for n, t in state.items())
    manifest = store.manifest("copy")
    assert manifest["lineage"]["data"] == "digits" and manifest["metrics"] == {"acc": 0.5}
    origin = manifest["lineage"]["imported_from"]
    assert (origin["model"], origin["version"], origin["parent"], origin["format"]) == ("net", 2, 1, suffix)
    assert manifest["parent"] is None


def _foreign_files(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("not a model")
    png = tmp_path / "image.npz"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, w=np.array([{"a": 1}], dtype=object))
    twice = tmp_path / "twice.npz"
    with zipfile.ZipFile(twice, "w") as zf:
        for member in ("w.npy", "w"):
            with zf.open(member, "w") as f:
                np.lib.format.write_array(f, np.ones(2))
    truncated = tmp_path / "cut.safetensors"
    from safetensors.numpy import save_file

    save_file({"w": np.ones(100)}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:-50])
    header = b'{"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}'
    dup = tmp_path / "dup.safetensors"
    dup.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    return [text, png, pickled, twice, truncated, dup]


def test_foreign_or_corrupt_files_are_refused_before_anything_is_written(where, tmp_path, capsys):
    con, loc = where
    for path in _foreign_files(tmp_path):
        code, out, err = _cli(capsys, "models", "import", str(path), "--name", "x", *loc)
        assert code == 1 and out == "", path
        assert len(err.splitlines()) == 1 and err.startswith("dosna models: error: "), err
        assert list(con.datasets()) == [], path
        from dosna.model_files import import_model

        with pytest.raises(ModelFileError):
            import_model(ModelStore(con), path, "x")
    code, _, err = _cli(capsys, "models", "import", str(tmp_path / "cut.safetensors"), "--name", "a.b", *loc)
    assert code == 1 and "invalid model name" in err
    code, _, err = _cli(capsys, "models", "import", str(tmp_path / "twice.npz"), "--name", "x", "--format", "npz", *loc)
    assert code == 1 and "more than once" in err
    unknown = tmp_path / "w.pt"
    unknown.write_bytes(b"x")
    code, _, err = _cli(capsys, "models", "import", str(unknown), "--name", "x", *loc)
    assert code == 1 and "give the format" in err
    assert list(con.datasets()) == []


def test_a_tensor_named_like_the_npz_document_is_refused_on_export(where, tmp_path, capsys):
    con, loc = where
    ModelStore(con).save("net", {"dosna-model.json": np.ones(1)})
    code, _, err = _cli(capsys, "models", "export", "net", "-o", str(tmp_path / "n.npz"), *loc)
    assert code == 1 and "the name is taken" in err and not (tmp_path / "n.npz").exists()
    assert _cli(capsys, "models", "export", "net", "-o", str(tmp_path / "n.safetensors"), *loc)[0] == 0
