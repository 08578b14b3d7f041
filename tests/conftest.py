"""Test configuration: which backend × engine combinations the conformance suite runs on.

By default every registered backend × engine that can run here; ``--dosna-backend``,
``--dosna-engine``, ``--dosna-connection`` and ``--dosna-connection-options
key=value,...`` pick one (``run_tests.sh --backend ... --engine ...`` passes them).

Tests that need the throw-away Ceph cluster carry the ``ceph`` or ``s3`` marker
(``-m "ceph or s3"`` selects them, ``-m "not ceph and not s3"`` the rest).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid

import pytest

import dosna
import dosna.testing
from dosna import registry
from dosna.locations import parse_options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dosna")
    group.addoption("--dosna-backend", default=None, help="run the conformance suite on this backend only")
    group.addoption("--dosna-engine", default=None, help="run the conformance suite with this engine only")
    group.addoption("--dosna-connection", default=None, help="directory (hdf5), pool (ceph), bucket (s3)")
    group.addoption("--dosna-connection-options", default="", help="backend options as key=value,key=value")
    group.addoption("--dosna-engine-options", default="", help="engine options as key=value,key=value")


def pytest_configure(config: pytest.Config) -> None:
    # Ranks of one mpiexec job must not share pytest's temporary directory.
    if dosna.testing.under_mpiexec() and not config.option.basetemp:
        rank = (
            os.environ.get("PMI_RANK")
            or os.environ.get("OMPI_COMM_WORLD_RANK")
            or os.environ.get("PMIX_RANK")
        )
        config.option.basetemp = tempfile.mkdtemp(prefix=f"dosna-pytest-rank{rank}-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under mpiexec: remove this rank's temporary directory once every rank is done
    (the root's holds the directory all ranks share); kept when tests failed."""
    path = session.config.stash.get(_OWN_BASETEMP, None)
    if path is None or exitstatus != 0:
        return
    from mpi4py import MPI

    done = MPI.COMM_WORLD.Ibarrier()
    deadline = time.monotonic() + 60
    while not done.Test():
        if time.monotonic() > deadline:
            return  # a rank is missing: leave the directory rather than pull it from under it
        time.sleep(0.01)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def run_token() -> str:
    """A token for this test run, the same on every MPI rank."""
    token = uuid.uuid4().hex[:8]
    if dosna.testing.under_mpiexec():
        from mpi4py import MPI

        token = MPI.COMM_WORLD.bcast(token, root=0)
    return token


#: Engine configurations the suite runs with (name -> (engine, options)).
ENGINE_VARIANTS = {
    "cpu": ("cpu", {}),
    "joblib": ("joblib", {"njobs": 2}),
    "joblib-loky": ("joblib", {"njobs": 2, "jlbackend": "loky"}),
    "mpi": ("mpi", {}),
}


#: Backends whose tests need the throw-away Ceph cluster (each is also a pytest marker).
OBJECT_STORES = ("ceph", "s3")


def object_store_settings(backend: str) -> tuple[str | None, dict, str | None]:
    """(connection name, options, why not) for object-store backends, from the environment
    that scripts/ceph-dev.sh prints (run_tests.sh starts that cluster)."""
    if backend == "ceph":
        conf, pool = os.environ.get("DOSNA_CEPH_CONF"), os.environ.get("DOSNA_CEPH_POOL")
        if not (conf and pool):
            return None, {}, "no ceph cluster configured (DOSNA_CEPH_CONF, DOSNA_CEPH_POOL unset)"
        return pool, {"conffile": conf}, None
    if backend == "s3":
        endpoint, bucket = os.environ.get("DOSNA_S3_ENDPOINT"), os.environ.get("DOSNA_S3_BUCKET")
        if not (endpoint and bucket):
            return None, {}, "no S3 endpoint configured (DOSNA_S3_ENDPOINT, DOSNA_S3_BUCKET unset)"
        return bucket, {"endpoint_url": endpoint}, None
    return None, {}, None


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
        for variant, (engine, engine_kw) in ENGINE_VARIANTS.items():
            if want_engine and engine != want_engine:
                continue
            if want_engine and config.getoption("--dosna-engine-options"):
                engine_kw = parse_options(config.getoption("--dosna-engine-options"))
            if engine not in status["engines"]:
                continue
            why = (
                why_b
                or status["engines"][engine]
                or (None if config.getoption("--dosna-connection") else object_store_settings(backend)[2])
                or registry.combination_problem(backend, engine, engine_kw)
            )
            marks = [pytest.mark.skip(reason=f"{backend} x {variant}: {why}")] if why else []
            if backend in OBJECT_STORES:
                marks.append(getattr(pytest.mark, backend))
            params.append(pytest.param((backend, engine, engine_kw), id=f"{backend}-{variant}", marks=marks))
    if not params:
        raise pytest.UsageError(f"no backend x engine matches {want_backend!r} x {want_engine!r}")
    return params


def reference_combination(config: pytest.Config) -> tuple | None:
    """The first combination this run tests (ram × cpu in a full run): the NumPy-oracle
    property tests run all their cases on it and fewer, sharper ones elsewhere."""
    if _REFERENCE not in config.stash:
        config.stash[_REFERENCE] = next(
            (p.values[0] for p in combinations(config) if all(m.name in OBJECT_STORES for m in p.marks)),
            None,
        )
    return config.stash[_REFERENCE]


_REFERENCE = pytest.StashKey[tuple | None]()


@pytest.fixture
def is_reference(combination, request) -> bool:
    """Whether this test runs on :func:`reference_combination`."""
    return combination == reference_combination(request.config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "combination" in metafunc.fixturenames or "connection" in metafunc.fixturenames:
        metafunc.parametrize("combination", combinations(metafunc.config), scope="module")
    elif "backend_connection" in metafunc.fixturenames:  # every backend, with the cpu engine
        cpu_only = [p for p in combinations(metafunc.config) if p.id.endswith("-cpu")]
        metafunc.parametrize("cpu_combination", cpu_only, scope="module")


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> str:
    """A directory every MPI rank of this run sees (the root's temporary directory)."""
    path = str(tmp_path_factory.mktemp("shared"))
    if dosna.testing.under_mpiexec():
        from mpi4py import MPI

        path = MPI.COMM_WORLD.bcast(path, root=0)
    return path


@pytest.fixture
def connection(combination, tmp_path, request, run_token, shared_dir):
    yield from _open_connection(combination, tmp_path, request, run_token, shared_dir)


@pytest.fixture
def backend_connection(cpu_combination, tmp_path, request, run_token, shared_dir):
    """A connection on each backend (ram, hdf5, ceph, s3) with the cpu engine."""
    yield from _open_connection(cpu_combination, tmp_path, request, run_token, shared_dir)


def _open_connection(combination, tmp_path, request, run_token, shared_dir):
    backend, engine, engine_kw = combination
    config = request.config
    name, options, _ = object_store_settings(backend)
    options.update(parse_options(config.getoption("--dosna-connection-options")))
    con = dosna.testing.make_connection(
        backend,
        engine,
        shared_dir if dosna.testing.under_mpiexec() else tmp_path,
        connection=config.getoption("--dosna-connection") or name,
        options=options,
        engine_kw=engine_kw,
        token=run_token,
    )
    with con:
        yield con
        if backend not in ("ram", "hdf5"):  # shared pools/buckets: leave them clean
            for name in con.datasets():
                con.del_dataset(name)
