"""Test configuration: which backend × engine combinations the conformance suite runs on.

By default every registered backend × engine that can run here; ``--dosna-backend``,
``--dosna-engine``, ``--dosna-connection`` and ``--dosna-connection-options
key=value,...`` pick one (``run_tests.sh --backend ... --engine ...`` passes them).
"""

from __future__ import annotations

import pytest

import dosna
import dosna.testing
from dosna import registry


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dosna")
    group.addoption("--dosna-backend", default=None, help="run the conformance suite on this backend only")
    group.addoption("--dosna-engine", default=None, help="run the conformance suite with this engine only")
    group.addoption("--dosna-connection", default=None, help="directory (hdf5), pool (ceph), bucket (s3)")
    group.addoption("--dosna-connection-options", default="", help="backend options as key=value,key=value")
    group.addoption("--dosna-engine-options", default="", help="engine options as key=value,key=value")


def parse_options(text: str) -> dict:
    """'a=1,b=x' -> {'a': 1, 'b': 'x'} (ints, floats and true/false converted)."""
    out: dict = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        for convert in (int, float):
            try:
                out[key] = convert(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def combinations(config: pytest.Config) -> list:
    """pytest params for every backend × engine to test, with skip marks and reasons."""
    want_backend = config.getoption("--dosna-backend")
    want_engine = config.getoption("--dosna-engine")
    if want_engine:
        want_engine = registry._ENGINE_ALIASES.get(want_engine, want_engine)
    status = dosna.available()
    params = []
    for backend, why_b in status["backends"].items():
        if want_backend and backend != want_backend:
            continue
        for engine, why_e in status["engines"].items():
            if want_engine and engine != want_engine:
                continue
            marks = []
            why = why_b or why_e or registry.combination_problem(backend, engine)
            if why:
                marks.append(pytest.mark.skip(reason=f"{backend} x {engine}: {why}"))
            params.append(pytest.param((backend, engine), id=f"{backend}-{engine}", marks=marks))
    if not params:
        raise pytest.UsageError(f"no backend x engine matches {want_backend!r} x {want_engine!r}")
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "combination" in metafunc.fixturenames:
        metafunc.parametrize("combination", combinations(metafunc.config), scope="module")


@pytest.fixture
def connection(combination, tmp_path, request):
    backend, engine = combination
    config = request.config
    con = dosna.testing.make_connection(
        backend,
        engine,
        tmp_path,
        connection=config.getoption("--dosna-connection"),
        options=parse_options(config.getoption("--dosna-connection-options")),
        engine_kw=parse_options(config.getoption("--dosna-engine-options")),
    )
    with con:
        yield con
        if backend not in ("ram", "hdf5"):  # shared pools/buckets: leave them clean
            for name in con.datasets():
                con.del_dataset(name)
