"""The model store: versions, bit-exact round trips on every backend, states, lineage, errors."""

from __future__ import annotations

import numpy as np
import pytest

import dosna as dn
from dosna.tensors import FAILED, FINISHED, RUNNING, ModelStore, dataset_fingerprint


def sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "encoder.weight": rng.standard_normal((700, 600)).astype(np.float32),  # 1.6 MiB: several chunks
        "encoder.bias": rng.standard_normal(600),
        "counts": rng.integers(-(2**62), 2**62, (5, 3), dtype=np.int64),
        "mask": rng.random(17) > 0.5,
        "phase": (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64),
        "half": rng.standard_normal(9).astype(np.float16),
        "big-endian": rng.standard_normal(3).astype(">f8"),
        "step": np.array(12345, dtype=np.int32),  # 0-d
        "nan and inf": np.array([np.nan, np.inf, -np.inf, -0.0]),
    }


def assert_bit_exact(loaded: dict, saved: dict) -> None:
    assert list(loaded) == list(saved)
    for name, array in saved.items():
        got = loaded[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        assert got.tobytes() == array.tobytes(), name


def test_round_trip_versions_and_delete(backend_connection):
    store = ModelStore(backend_connection)
    tensors = sample_tensors()
    assert store.save("net", tensors, lineage={"note": "first"}, metrics={"acc": 0.5}) == 1
    changed = {**tensors, "encoder.bias": tensors["encoder.bias"] + 1}
    assert store.save("net", changed) == 2
    assert store.save("other_model", {"w": np.ones(3)}) == 1

    assert store.models() == ["net", "other_model"]
    assert store.versions("net") == [1, 2]
    assert_bit_exact(store.load("net"), changed)  # latest
    assert_bit_exact(store.load("net", 1), tensors)
    weight = store.manifest("net", 1)["tensors"][0]
    assert weight["name"] == "encoder.weight" and weight["shape"] == [700, 600]
    assert np.prod(weight["chunk_size"]) * 4 <= 1 << 20  # chunked, not one 1.6 MiB object
    assert store.manifest("net", 1)["metrics"] == {"acc": 0.5}

    store.delete("net", 1)
    assert store.versions("net") == [2]
    with pytest.raises(dn.ModelNotFoundError, match="no version 1"):
        store.load("net", 1)
    assert_bit_exact(store.load("net", 2), changed)
    assert not [n for n in backend_connection.datasets() if n.startswith("models.net.v1")]


def test_manifest_records_state_times_lineage_and_parent(tmp_path):
    con = dn.Connection("m", backend="hdf5", directory=tmp_path).connect()
    store = ModelStore(con)
    store.save("net", {"w": np.zeros(2)})
    with store.begin("net", lineage={"datasets": ["x"], "rows": [0, 10]}, parent=1) as run:
        assert run.manifest["state"] == RUNNING
        run.update(metrics={"epoch": 1}, shards=[[0, 5], [5, 10]])
        run.finish({"w": np.ones(2)}, metrics={"acc": 0.9})
    manifest = store.manifest("net", 2)
    assert manifest["state"] == FINISHED and manifest["parent"] == 1
    assert manifest["lineage"] == {"datasets": ["x"], "rows": [0, 10], "shards": [[0, 5], [5, 10]]}
    assert manifest["metrics"] == {"epoch": 1, "acc": 0.9}
    assert manifest["dosna_version"] == dn.__version__
    assert manifest["created_at"] <= manifest["finished_at"]
    with pytest.raises(dn.ModelNotFoundError):
        store.begin("net", parent=7)


def test_failed_run_keeps_earlier_versions(tmp_path):
    con = dn.Connection("m", backend="hdf5", directory=tmp_path).connect()
    store = ModelStore(con)
    store.save("net", {"w": np.arange(3.0)})
    with pytest.raises(ZeroDivisionError), store.begin("net") as run:
        1 / 0  # noqa: B018
    assert run.version == 2
    failed = store.manifest("net", 2)
    assert failed["state"] == FAILED and "ZeroDivisionError" in failed["error"]
    with pytest.raises(dn.ModelStateError, match="failed"):
        store.load("net", 2)
    np.testing.assert_array_equal(store.load("net")["w"], np.arange(3.0))  # latest finished
    # a run that ends without saving is failed too
    with store.begin("net"):
        pass
    assert store.manifest("net", 3)["state"] == FAILED
    assert store.save("net", {"w": np.zeros(1)}) == 4


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.save("bad.name", {"w": np.ones(1)}), dn.InvalidNameError),
        (lambda s: s.save("bad/name", {"w": np.ones(1)}), dn.InvalidNameError),
        (lambda s: s.save("", {"w": np.ones(1)}), dn.InvalidNameError),
        (lambda s: s.save("net", {"w": np.array(["text"])}), TypeError),
        (lambda s: s.save("net", {"w": np.array([object()])}), TypeError),
        (lambda s: s.save("net", {3: np.ones(1)}), TypeError),
        (lambda s: s.save("net", [np.ones(1)]), TypeError),
        (lambda s: s.save("net", {"w": np.ones(1)}, lineage={"f": object()}), TypeError),
        (lambda s: s.load("missing"), dn.ModelNotFoundError),
        (lambda s: s.load("net", "newest"), TypeError),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, call, error):
    con = dn.Connection("m", backend="hdf5", directory=tmp_path).connect()
    store = ModelStore(con)
    with pytest.raises(error):
        call(store)
    assert con.datasets() == []


def test_unknown_names_and_versions_are_key_errors(tmp_path):
    con = dn.Connection("m", backend="hdf5", directory=tmp_path).connect()
    store = ModelStore(con)
    store.save("net", {"w": np.ones(1)})
    with pytest.raises(KeyError, match=r"no model 'nope'.*models: net"):
        store.versions("nope")
    with pytest.raises(KeyError, match=r"no version 5 \(versions: \[1\]\)"):
        store.load("net", 5)


def test_fingerprint_follows_content_not_layout(tmp_path):
    con = dn.Connection("m", backend="hdf5", directory=tmp_path).connect()
    data = np.random.default_rng(1).standard_normal((50, 7))
    a = con.create_dataset("a", data=data, chunk_size=(8, 7))
    b = con.create_dataset("b", data=data, chunk_size=(50, 3))
    assert dataset_fingerprint(a) == dataset_fingerprint(b)
    b[49, 6] = np.nextafter(data[49, 6], 1)
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    c = con.create_dataset("c", data=data.astype(np.float32), chunk_size=(8, 7))
    assert dataset_fingerprint(c) != dataset_fingerprint(a)


def test_torch_tensors_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    con = dn.Connection("m", backend="hdf5", directory=tmp_path).connect()
    module = torch.nn.Linear(5, 3)
    ModelStore(con).save("lin", module.state_dict())
    loaded = ModelStore(con).load("lin")
    for name, tensor in module.state_dict().items():
        assert loaded[name].tobytes() == tensor.numpy().tobytes()
    with pytest.raises(TypeError, match="float32"):
        ModelStore(con).save("lin", {"w": torch.ones(2, dtype=torch.bfloat16)})
