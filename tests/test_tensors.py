"""The model store: versions, bit-exact round trips on every backend, states, lineage, errors."""

from __future__ import annotations

import numpy as np
import pytest

import dosna as dn
from dosna.namespaces import owned_by
from dosna.tensors import (
    FAILED,
    FINISHED,
    RUNNING,
    ModelCorruptError,
    ModelStore,
    dataset_fingerprint,
    export_npz,
)


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
    with pytest.raises(TypeError, match="format='torch'"):  # stored, but NumPy has no bfloat16
        ModelStore(con).save("half", {"w": torch.ones(2, dtype=torch.bfloat16)})
        ModelStore(con).load("half")


# -- the store's own namespace and manifest validation --------------------------------


def _store(tmp_path) -> tuple[dn.Connection, ModelStore]:
    con = dn.Connection("m", backend="hdf5", directory=tmp_path).connect()
    return con, ModelStore(con)


def _foreign(con, name: str, **kwargs):
    """A dataset in the store's namespace that the store did not write.

    Users cannot create one any more; a store may still hold one from before the
    namespace was reserved, or from another program.
    """
    with owned_by("models."):
        return con.create_dataset(name, **kwargs)


def _edit_manifest(con, name: str, change) -> None:
    ds = con.get_dataset(name)
    manifest = ds.attrs["manifest"]
    change(manifest)
    ds.attrs["manifest"] = manifest


def test_a_manifest_pointing_at_another_dataset_is_refused(tmp_path):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.arange(6.0).reshape(2, 3)})
    con.create_dataset("secret", data=np.full((2, 3), 42.0))

    def point_at_secret(m):
        m["tensors"][0]["dataset"] = "secret"

    _edit_manifest(con, "models.net.v1", point_at_secret)
    with pytest.raises(ModelCorruptError, match=r"manifest\['tensors'\]\[0\]\['dataset'\]"):
        store.load("net", 1)


def test_a_tensor_dataset_replaced_by_a_user_dataset_is_refused(tmp_path):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.arange(6.0).reshape(2, 3)})
    con.del_dataset("models.net.v1.t0")
    _foreign(con, "models.net.v1.t0", data=np.zeros(1000))  # same name, not the store's
    with pytest.raises(ModelCorruptError, match="not written by this version"):
        store.load("net", 1)


def test_a_tensor_whose_shape_or_dtype_differs_from_the_manifest_is_refused(tmp_path):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.arange(6.0).reshape(2, 3)})

    def lie_about_shape(m):
        m["tensors"][0]["shape"] = [3, 2]

    _edit_manifest(con, "models.net.v1", lie_about_shape)
    with pytest.raises(ModelCorruptError, match=r"holds <f8 \[2, 3\], the manifest records <f8 \[3, 2\]"):
        store.load("net", 1)

    def lie_about_dtype(m):
        m["tensors"][0]["shape"], m["tensors"][0]["dtype"] = [2, 3], "<f4"

    _edit_manifest(con, "models.net.v1", lie_about_dtype)
    with pytest.raises(ModelCorruptError, match="the manifest records <f4"):
        store.load("net", 1)


def _set(path, value):
    def change(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(path):
    def change(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


@pytest.mark.parametrize(
    ("change", "location"),
    [
        (lambda m: m.clear(), "manifest"),
        (_drop(["tensors"]), "manifest"),
        (_set(["surprise"], 1), "manifest"),
        (_set(["format"], "other"), "manifest['format']"),
        (_set(["format_version"], True), "manifest['format_version']"),
        (_set(["model"], "other"), "manifest['model']"),
        (_set(["version"], "1"), "manifest['version']"),
        (_set(["run_id"], 7), "manifest['run_id']"),
        (_set(["state"], "done"), "manifest['state']"),
        (_set(["state"], ["finished"]), "manifest['state']"),
        (_set(["created_at"], 5), "manifest['created_at']"),
        (_set(["error"], {"x": 1}), "manifest['error']"),
        (_set(["parent"], 1), "manifest['parent']"),  # not an earlier version
        (_set(["parent"], 2**70), "manifest['parent']"),
        (_set(["metrics"], []), "manifest['metrics']"),
        (_set(["lineage"], None), "manifest['lineage']"),
        (_set(["tensors"], {"w": 1}), "manifest['tensors']"),
        (_set(["tensors", 0], "w"), "manifest['tensors'][0]"),
        (_drop(["tensors", 0, "name"]), "manifest['tensors'][0]"),
        (_set(["tensors", 0, "name"], ""), "manifest['tensors'][0]['name']"),
        (_set(["tensors", 0, "name"], 3), "manifest['tensors'][0]['name']"),
        (_set(["tensors", 1, "name"], "w"), "manifest['tensors'][1]['name']"),
        (_set(["tensors", 0, "shape"], "abc"), "manifest['tensors'][0]['shape']"),
        (_set(["tensors", 0, "shape"], [2, -3]), "manifest['tensors'][0]['shape'][1]"),
        (_set(["tensors", 0, "shape"], [2, 3.0]), "manifest['tensors'][0]['shape'][1]"),
        (_set(["tensors", 0, "shape"], [1] * 65), "manifest['tensors'][0]['shape']"),
        (_set(["tensors", 0, "chunk_size"], [2]), "manifest['tensors'][0]['chunk_size']"),
        (_set(["tensors", 0, "chunk_size"], [2, 0]), "manifest['tensors'][0]['chunk_size'][1]"),
        (_set(["tensors", 0, "dtype"], "O"), "manifest['tensors'][0]['dtype']"),
        (_set(["tensors", 0, "dtype"], "no such type"), "manifest['tensors'][0]['dtype']"),
        (_set(["tensors", 0, "dtype"], None), "manifest['tensors'][0]['dtype']"),
        (_set(["tensors", 0, "dataset"], "models.net.v1.t1"), "manifest['tensors'][0]['dataset']"),
        (_set(["checkpoint"], []), "manifest['checkpoint']"),
        (_set(["checkpoint"], {"epoch": 0, "tensors": [], "values": {}}), "manifest['checkpoint']['epoch']"),
        (_set(["stale"], ["user-data"]), "manifest['stale'][0]"),
        (_set(["stale"], "models.net.v1.t0"), "manifest['stale']"),
    ],
)
def test_malformed_manifests_are_typed_errors_naming_the_location(tmp_path, change, location):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.arange(6.0).reshape(2, 3), "b": np.zeros(3)})
    _edit_manifest(con, "models.net.v1", change)
    for call in (
        lambda: store.load("net", 1),
        lambda: store.manifest("net", 1),
        lambda: store.delete("net", 1),
    ):
        with pytest.raises(ModelCorruptError) as caught:
            call()
        assert caught.value.location == location
        assert "m:models.net.v1" in str(caught.value)
    assert con.has_dataset("models.net.v1.t0")  # a refused delete deletes nothing


def test_a_manifest_dataset_without_manifest_is_a_typed_error(tmp_path):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.ones(2)})
    con.get_dataset("models.net.v1").attrs.clear()
    with pytest.raises(ModelCorruptError, match=r"attrs\['manifest'\]"):
        store.load("net", 1)


def test_delete_removes_only_what_the_version_owns(tmp_path):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.ones(2), "b": np.zeros(2)})
    store.save("net", {"w": np.ones(2)})
    users = [
        "models.net.v1.t2",
        "models.net.v1.tmp",
        "models.net.v1.t0x",
        "models.net.v10",
        "models.net.v1-x",
    ]
    for name in users:
        _foreign(con, name, data=np.arange(3))
    store.delete("net", 1)
    remaining = set(con.datasets())
    assert set(users) <= remaining
    assert not {"models.net.v1", "models.net.v1.t0", "models.net.v1.t1"} & remaining
    assert store.load("net", 2)["w"].tolist() == [1, 1]


def test_delete_keeps_a_listed_dataset_that_lacks_the_marker(tmp_path, caplog):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.ones(2)})
    con.del_dataset("models.net.v1.t0")
    _foreign(con, "models.net.v1.t0", data=np.arange(3))  # a user's, under the store's name
    store.delete("net", 1)
    assert con.get_dataset("models.net.v1.t0")[:].tolist() == [0, 1, 2]
    assert "not deleting 'models.net.v1.t0'" in caplog.text
    assert "models.net.v1" not in con.datasets()


def test_saving_never_writes_over_a_user_dataset(tmp_path):
    con, store = _store(tmp_path)
    _foreign(con, "models.net.v1.t0", data=np.arange(3))
    with pytest.raises(dn.ModelStateError, match="not written by the model store"):
        store.save("net", {"w": np.ones(2)})
    assert con.get_dataset("models.net.v1.t0")[:].tolist() == [0, 1, 2]
    assert store.manifest("net", 1)["state"] == FAILED


def test_an_orphan_of_a_killed_writer_is_replaced(tmp_path):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.ones(2)})
    manifest = con.get_dataset("models.net.v1").attrs["manifest"]
    con.del_dataset("models.net.v1")  # as if the version was deleted and its tensors left behind
    assert con.get_dataset("models.net.v1.t0").attrs["dosna_model"]["run"] == manifest["run_id"]
    assert store.save("net", {"w": np.full(4, 7.0)}) == 1
    assert store.load("net", 1)["w"].tolist() == [7.0] * 4


@pytest.mark.parametrize(
    "name",
    ["models.bogus.v1", "models.net.v2", "models.net.v0", "models.net.v01", "models.x-y.v3"],
)
def test_datasets_named_like_manifests_do_not_break_listing(tmp_path, caplog, name):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.ones(2)})
    _foreign(con, name, data=np.arange(3), attrs={"manifest": {"format": "dosna-model"}})
    assert store.models() == ["net"]
    assert [m["version"] for m in store.history("net")] == [1]
    assert store.versions("net") == [1]
    assert store.resolve("net") == 1
    if name in ("models.bogus.v1", "models.net.v2", "models.x-y.v3"):
        assert f"ignoring dataset {name!r}" in caplog.text
    assert store.save("net", {"w": np.zeros(2)}) == (3 if name == "models.net.v2" else 2)


def test_a_corrupt_newest_version_does_not_hide_the_finished_one(tmp_path):
    con, store = _store(tmp_path)
    store.save("net", {"w": np.ones(2)})
    store.save("net", {"w": np.zeros(2)})
    _edit_manifest(con, "models.net.v2", _set(["tensors"], None))
    assert store.load("net")["w"].tolist() == [1, 1]
    with pytest.raises(ModelCorruptError):
        store.load("net", 2)


@pytest.mark.parametrize("names", [["file"], ["file", "allow_pickle", "args", "kwds"], ["a/b", "x.npy"]])
def test_export_npz_takes_any_tensor_name(tmp_path, names):
    tensors = {n: np.arange(i + 2, dtype=np.float32) for i, n in enumerate(names)}
    written = export_npz(tmp_path / "weights", tensors)
    assert written == str(tmp_path / "weights.npz")
    with np.load(written, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(names)
        for name, array in tensors.items():
            assert npz[name].tobytes() == array.tobytes() and npz[name].dtype == array.dtype
    assert [p.name for p in tmp_path.iterdir()] == ["weights.npz"]  # no temporary left behind


def test_a_model_with_a_tensor_named_file_round_trips_to_npz(tmp_path):
    _, store = _store(tmp_path)
    store.save("net", {"file": np.ones(3), "w": np.zeros((2, 2))})
    path = export_npz(tmp_path / "out.npz", store.load("net"))
    with np.load(path) as npz:
        assert npz["file"].tolist() == [1, 1, 1] and npz["w"].shape == (2, 2)


@pytest.mark.parametrize("backend", ["ram", "hdf5"])
def test_users_cannot_create_datasets_in_the_model_namespace(tmp_path, backend):
    where = {"directory": tmp_path} if backend == "hdf5" else {}
    con = dn.Connection(f"ns-{tmp_path.name}", backend=backend, **where).connect()
    source = con.create_dataset("source", data=np.arange(6.0), chunk_size=2)
    for create in (
        lambda: con.create_dataset("models.net.v1.t0", data=np.zeros(3)),
        lambda: con.create_dataset("models.net.v1", shape=(0,), dtype="u1", attrs={"manifest": {}}),
        lambda: con.create_dataset("models.anything", shape=(2,)),
        lambda: source.clone("models.net.v1.t0", data=True),
        lambda: source.map(lambda c: c * 2, "models.net.v2"),
    ):
        with pytest.raises(dn.InvalidNameError, match="reserved for the model store"):
            create()
    assert con.datasets() == ["source"]  # refused before anything was written
    for fine in ("models", "models-x", "my.models.x", "Models.x"):
        con.create_dataset(fine, shape=(1,))
    # so nothing a user creates can block or pose as a version: the store's names stay free
    store = ModelStore(con)
    assert store.save("net", {"w": np.ones(3)}) == 1
    assert store.load("net")["w"].tolist() == [1, 1, 1]
    # what the store wrote there stays readable and deletable by the user
    assert con["models.net.v1.t0"][:].tolist() == [1, 1, 1]
    store.delete("net", 1)
    assert sorted(con.datasets()) == sorted(["source", "models", "models-x", "my.models.x", "Models.x"])
