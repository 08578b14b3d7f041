"""Public API: selection of backends and engines, errors, metadata rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dosna as dn
from dosna import registry
from dosna.metadata import DatasetMeta, auto_chunk_size, validate_name


@pytest.fixture(autouse=True)
def restore_selection():
    saved = registry.selected()
    yield
    registry._selected.backend, registry._selected.engine, registry._selected.engine_options = saved


def test_use_selects_defaults_for_new_connections(tmp_path):
    dn.use(backend="hdf5")
    con = dn.Connection("sel", directory=tmp_path)
    assert con.backend.name == "hdf5" and con.engine.name == "cpu"
    dn.use(backend="ram", engine="cpu")
    assert dn.Connection("sel").backend.name == "ram"
    assert con.backend.name == "hdf5"  # existing connections keep theirs
    assert dn.Connection("sel", backend="hdf5", directory=tmp_path).backend.name == "hdf5"


def test_unknown_names_are_clear():
    with pytest.raises(dn.UnknownBackendError, match=r"known: .*hdf5"):
        dn.use(backend="nope")
    with pytest.raises(ValueError):
        dn.use(engine="nope")
    with pytest.raises(TypeError):
        dn.Connection("x", backend="ram", not_an_option=1)


def test_missing_package_names_install_command():
    registry.register_backend("needs-missing", "dosna_missing_package_xyz:Backend")
    try:
        with pytest.raises(dn.BackendUnavailableError, match=r"dosna_missing_package_xyz.*pip install"):
            dn.Connection("x", backend="needs-missing")
        assert "pip install" in dn.available()["backends"]["needs-missing"]
    finally:
        del registry._BACKENDS["needs-missing"]
    with pytest.raises(ValueError):
        registry.register_backend("ram", "x:y")  # no silent replacement


def test_status_reports(capsys):
    status = dn.status(show=True)
    info = status.report()
    assert info["backend"] == status.backend.name and info["engine"] == status.engine.name
    assert info["backends"]["ram"] is None and info["engines"]["cpu"] is None
    assert "backend" in capsys.readouterr().out


def test_connection_helper_and_context():
    with dn.connection("helper", backend="ram") as con:
        assert con.connected
        con.create_dataset("a", shape=(1,))
    assert not con.connected
    assert "not connected" in repr(con)
    with pytest.raises(dn.ConnectionClosedError):
        con["a"]
    con2 = dn.Connection("helper", backend="ram")
    with pytest.raises(dn.ConnectionClosedError, match="connect"):
        con2.datasets()
    assert con2.connect() is con2 and "a" in con2  # ram connections of one name share


def test_error_hierarchy():
    assert issubclass(dn.DatasetNotFoundError, KeyError) and issubclass(
        dn.DatasetNotFoundError, dn.DosnaError
    )
    assert issubclass(dn.InvalidNameError, ValueError)
    assert str(dn.DatasetNotFoundError("plain message")) == "plain message"
    err = dn.ChunkCorruptError("d", (1, 2), "/p/1.2.h5", "too short")
    assert "/p/1.2.h5" in str(err) and "(1, 2)" in str(err) and "'d'" in str(err)


@pytest.mark.parametrize("name", ["a", "A-1_b.c", "x" * 200, "0", "_x", "-x"])
def test_valid_names(name):
    assert validate_name(name) == name


def test_metadata_json_round_trip():
    meta = DatasetMeta.create("m", (3, 4), ">c8", 1 + 2j, (2, 2), {"k": [1, "x"]})
    doc = json.loads(meta.to_json())
    assert doc["dtype"] == ">c8" and doc["fillvalue"] == [1.0, 2.0] and doc["dosna_format"] == 2
    again = DatasetMeta.from_json(meta.to_json())
    assert again == meta
    nan = DatasetMeta.create("n", (1,), "f4", float("nan"))
    assert json.loads(nan.to_json())["fillvalue"] == "NaN"
    assert np.isnan(DatasetMeta.from_json(nan.to_json()).fillvalue)


def test_auto_chunk_size_targets_a_mebibyte():
    assert auto_chunk_size((512, 512, 512), np.dtype("f4")) == (64, 64, 64)
    assert auto_chunk_size((1024, 1024), np.dtype("f4")) == (512, 512)
    assert auto_chunk_size((10,), np.dtype("f8")) == (10,)
    assert auto_chunk_size((0, 3), np.dtype("f8")) == (1, 3)
    assert auto_chunk_size((), np.dtype("f8")) == ()
    for shape in [(10**7,), (3000, 3000), (100, 200, 300, 4)]:
        c = auto_chunk_size(shape, np.dtype("f8"))
        assert np.prod(c) * 8 <= 1 << 20


def test_changing_a_value_read_from_attrs_changes_nothing_stored():
    con = dn.Connection("attrs-copy", backend="ram").connect()
    ds = con.create_dataset("a", shape=(2,), dtype="f4")
    ds.attrs["steps"] = [1, 2]
    ds.attrs["steps"].append(3)
    dict(ds.attrs.items())["steps"].append(4)
    assert ds.attrs["steps"] == [1, 2]
    assert con["a"].attrs["steps"] == [1, 2]
    con.del_dataset("a")
