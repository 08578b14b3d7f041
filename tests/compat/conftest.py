"""Scripts written for the original DosNa, run on today's dosna.

The tests here use the API the way the original project's tests, examples and
README did: a backend and engine picked with ``dn.use``, ``dn.Connection(**config)``
with string options, ``dn.status()``, ``dosna.util.mpi`` helpers.
"""

from __future__ import annotations

import copy

import pytest

from dosna import registry

#: (backend, engine) pairs the original's test runner was pointed at that work here.
COMBINATIONS = [("ram", "cpu"), ("ram", "jl"), ("hdf5", "cpu"), ("hdf5", "jl")]


@pytest.fixture(autouse=True)
def restore_selection():
    """``dn.use`` changes process-wide state; every test starts from and leaves the same."""
    saved = copy.copy(registry._selected)
    saved.engine_options = dict(saved.engine_options)
    saved.remembered = copy.deepcopy(saved.remembered)
    yield
    registry._selected = saved


@pytest.fixture(params=COMBINATIONS, ids=[f"{b}-{e}" for b, e in COMBINATIONS])
def original_config(request, tmp_path):
    """``(backend, engine, connection config)`` as the original's ``run_tests.sh --backend B --engine E``."""
    backend, engine = request.param
    config = {"name": "test-dosna"}
    if backend == "hdf5":  # --connection-options directory=...: a string, as parsed from key=val
        config["directory"] = str(tmp_path)
    return backend, engine, config
