"""Backends and engines from other packages, found through entry points, opened by URL scheme."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from dosna import registry

ROOT = pathlib.Path(__file__).resolve().parents[1]

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "dosna-demo-plugin"
version = "0.1"

[project.entry-points."dosna.backends"]
demo = "dosna_demo_plugin:DemoBackend"
ram = "dosna_demo_plugin:DemoBackend"

[project.entry-points."dosna.engines"]
demo-seq = "dosna_demo_plugin:DemoEngine"

[tool.setuptools]
packages = ["dosna_demo_plugin"]
"""

MODULE = '''
"""A third-party dosna backend: encoded chunks in one dict per store, in this process."""

from dosna.backends.objects import EncodedObjectBackend
from dosna.engines.base import Engine
from dosna.errors import DatasetExistsError, DatasetNotFoundError

STORES = {}


class DemoBackend(EncodedObjectBackend):
    name = "demo"
    shared_between_processes = False

    def __init__(self, name: str, shards: int = 1, label: str = "") -> None:
        super().__init__(name)
        self.shards, self.label = shards, label
        self.objects = STORES.setdefault(name, {})

    def list_datasets(self):
        return sorted(k[:-5] for k in self.objects if k.endswith("/meta"))

    def read_meta(self, dataset):
        return self.objects.get(f"{dataset}/meta")

    def create_meta(self, dataset, data):
        if f"{dataset}/meta" in self.objects:
            raise DatasetExistsError(dataset)
        self.objects[f"{dataset}/meta"] = bytes(data)

    def update_meta(self, dataset, data):
        if f"{dataset}/meta" not in self.objects:
            raise DatasetNotFoundError(dataset)
        self.objects[f"{dataset}/meta"] = bytes(data)

    def delete_dataset(self, dataset):
        if self.objects.pop(f"{dataset}/meta", None) is None:
            raise DatasetNotFoundError(dataset)
        for key in [k for k in self.objects if k.startswith(f"{dataset}/")]:
            del self.objects[key]

    def _key(self, meta, idx):
        return f"{meta.name}/c/" + ".".join(map(str, idx))

    def fetch(self, meta, idx, byte_range):
        data = self.objects.get(self._key(meta, idx))
        return None if data is None else data[byte_range[0] : byte_range[0] + byte_range[1]]

    def store(self, meta, idx, data):
        self.objects[self._key(meta, idx)] = bytes(data)

    def has_chunk(self, meta, idx):
        return self._key(meta, idx) in self.objects

    def delete_chunk(self, meta, idx):
        self.objects.pop(self._key(meta, idx), None)

    def list_chunks(self, meta):
        prefix = f"{meta.name}/c/"
        return [tuple(map(int, k[len(prefix):].split("."))) for k in self.objects if k.startswith(prefix)]

    def stored_bytes(self, meta):
        return sum(len(self.objects[self._key(meta, idx)]) for idx in self.list_chunks(meta))


class DemoEngine(Engine):
    name = "demo-seq"
    runs = 0

    def run(self, func, items, io_threads=1):
        DemoEngine.runs += 1
        for item in items:
            func(item)
'''

SCRIPT = """
import json, logging
import numpy as np
import dosna as dn
from dosna.backends.ram import RamBackend

logging.basicConfig(level=logging.WARNING)
report = {"available": dn.available()}
with dn.open("demo://first?shards=3&label=007", engine="demo-seq") as con:
    con.create_dataset("x", data=np.arange(20.0).reshape(4, 5), chunk_size=(2, 2))
    con["x"][1:3, 1:4] = -1
    report["backend"] = type(con.backend).__module__ + ":" + type(con.backend).__name__
    report["engine"] = type(con.engine).__name__
    report["options"] = [con.backend.shards, con.backend.label]
    report["url"] = con.url
with dn.open(con.url, mode="r") as again:
    report["data"] = again["x"][...].tolist()
    try:
        again["x"][0] = 1
    except dn.ReadOnlyError:
        report["read_only"] = True
try:
    dn.open("demo://missing", mode="r")
except dn.StoreNotFoundError:
    report["missing"] = True
report["ram_is_dosnas"] = isinstance(dn.open("ram://r").backend, RamBackend)
report["runs"] = type(con.engine).runs
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> pathlib.Path:
    """The demo plugin package, built and installed into a directory of its own (not the venv)."""
    base = tmp_path_factory.mktemp("plugin")
    source, site = base / "src", base / "site"
    (source / "dosna_demo_plugin").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "dosna_demo_plugin" / "__init__.py").write_text(textwrap.dedent(MODULE))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"pip install of the demo plugin failed:\n{done.stdout}\n{done.stderr}")
    assert (site / "dosna_demo_plugin").is_dir() and list(site.glob("dosna_demo_plugin-*.dist-info"))
    return site


def test_a_plugin_backend_and_engine_open_by_url_scheme(plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env, cwd=plugin_site
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["backend"] == "dosna_demo_plugin:DemoBackend" and report["engine"] == "DemoEngine"
    assert report["available"]["backends"]["demo"] is None
    assert report["available"]["engines"]["demo-seq"] is None
    assert report["options"] == [3, "007"]  # typed by the plugin's signature
    assert report["url"] == "demo://first"
    expected = [[float(5 * r + c) for c in range(5)] for r in range(4)]
    for r in (1, 2):
        for c in (1, 2, 3):
            expected[r][c] = -1.0
    assert report["data"] == expected
    assert report["read_only"] and report["missing"] and report["runs"] > 0
    # a plugin cannot take the name of a built-in: dosna keeps its own and says so
    assert report["ram_is_dosnas"]
    assert "ignoring the backend 'ram' declared by dosna-demo-plugin" in done.stderr


def test_plugin_missing_from_the_path_is_unknown():
    with pytest.raises(registry.UnknownBackendError, match="unknown backend 'demo'"):
        registry.get_backend_class("demo")


def test_built_ins_are_declared_as_entry_points_too():
    """pyproject.toml declares exactly the built-ins the registry falls back on."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["dosna.backends"] == registry._BUILTIN["backend"]
    assert project["entry-points"]["dosna.engines"] == registry._BUILTIN["engine"]
