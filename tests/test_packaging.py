"""Packaging: the sdist carries its tests, the extras install what the commands need,
and a missing optional package is named with its extra before any work is done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tomllib = pytest.importorskip("tomllib")


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _requirements(extra: str, extras: dict) -> set[str]:
    """The distributions ``dosna[extra]`` installs, self-references expanded."""
    names: set[str] = set()
    for requirement in extras[extra]:
        inner = re.fullmatch(r"dosna\[(.*)\]", requirement)
        if inner:
            for sub in inner.group(1).split(","):
                names |= _requirements(sub.strip(), extras)
        else:
            names.add(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower())
    return names


def test_license_and_project_metadata():
    project = _pyproject()["project"]
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert "Apache License" in f.read(400) and project["license"] == "Apache-2.0"
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
    classifiers = project["classifiers"]
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert "Programming Language :: Python :: 3.10" in classifiers


def test_mpi_extra_does_not_force_the_mpich_wheel():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert _requirements("mpi", extras) == {"mpi4py"}
    assert _requirements("mpi-wheel", extras) == {"mpi4py", "mpich"}
    assert "mpich" not in _requirements("hpc", extras)
    assert "mpich" in _requirements("dev", extras)  # what scripts/venv.sh installs for the tests


def test_all_installs_what_every_command_needs():
    extras = _pyproject()["project"]["optional-dependencies"]
    needed = {"h5py", "joblib", "mpi4py", "boto3", "tqdm", "matplotlib", "numcodecs", "hdf5plugin"}
    assert needed <= _requirements("all", extras)
    assert needed <= _requirements("hpc", extras)
    assert {"pytest", "hypothesis"} <= _requirements("test", extras)


def test_sdist_carries_the_tests_and_their_helpers(tmp_path):
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    for path in (
        "LICENSE",
        "tests/conftest.py",
        "tests/mpi_helpers.py",
        "tests/compat/conftest.py",
        "tests/compat/test_original_mpi.py",
        "tests/data/format1/store/cube/.dosna.json",
        "tests/data/format1/store/cube/0.0.0.h5",
        "dosna/py.typed",
        "run_tests.sh",
        "scripts/venv.sh",
        "docs/index.md",
        "examples/quickstart.py",
    ):
        assert path in members, f"{path} missing from the sdist"


def _without(module: str, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which ``module`` cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.modules[{module!r}] = None\n{code}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


def test_dosna_testing_without_pytest_names_the_extra():
    done = _without("pytest", "import dosna.testing")
    assert done.returncode != 0
    assert "pip install 'dosna[test]'" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "command",
    [
        ["show", "x", "--index", "0,:,:"],
        ["bench", "--shape", "8,8", "--chunks", "4", "--out", "{out}"],
    ],
    ids=["show", "bench"],
)
def test_command_without_matplotlib_says_which_extra_before_any_work(tmp_path, command):
    store = tmp_path / "store"
    out = tmp_path / "bench-out"
    argv = [a.replace("{out}", str(out)) for a in command]
    argv += ["--backend", "hdf5", "--connection", str(store)]
    done = _without("matplotlib", f"from dosna.cli import main; sys.exit(main({argv!r}))")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'dosna[plots]'" in lines[0], done.stderr
    assert done.stdout == ""
    assert not store.exists() and not out.exists()  # nothing connected, nothing written
