"""Every Python example in README.md and docs/*.md runs, twice, so the examples cannot rot.

Each page's examples run in a subprocess of their own (the examples call ``dn.use``),
in a temporary working directory; the absolute paths they show (``/data``, ``/tmp``,
``/shared/scratch``) are mapped into it, so nothing is written elsewhere. Every example
runs on its own, in a fresh namespace, and then once more on the same stores, as a
reader who runs it again would: it must not fail the second time.

An example that continues a session the page assumes the reader has open (``con``,
``ds``, some data) gets that session from the page's setup below, new for each run.
The engines page runs under ``mpiexec -n 2``, as its MPI example is meant to.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from mpi_helpers import run_mpi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(f"docs/{n}" for n in os.listdir(os.path.join(ROOT, "docs")) if n.endswith(".md"))]
#: absolute paths the examples show -> where they go in the test's directory
PATHS = {"/data": "data", "/tmp": "tmp", "/shared/scratch": "scratch"}

#: What every example may take as imported.
IMPORTS = """
import numpy as np
import dosna as dn
"""
#: What a page's examples take as given (run before each example, ``RUN`` is 1 or 2).
SESSION = """
dn.use(backend="hdf5", engine="cpu")
con = dn.Connection("session", directory=f"session-{RUN}-{EXAMPLE}")
con.connect()
"""
SETUP = {
    "docs/guide.md": SESSION
    + """
data = np.random.default_rng(0).standard_normal((100, 100, 100))
ds = con.create_dataset("ds", data=data, chunk_size=32)
numpy_or_h5py_array = data
block = data[36:80, 89:, :56] * 2
mask = data[:, 0, 0] > 0
mask3d = data > 1.5
field = data.astype("f4")
def acquisition():
    yield from np.zeros((3, 512, 512), "f4")
idx, values = (1, 1, 1), np.ones((32, 32, 32))
data = np.zeros((32, 32, 32))
""",
    "docs/training.md": SESSION
    + """
import sys
sys.path.insert(0, EXAMPLES)
from train_digits import store_digits
store_digits(con, seed=0)
rows = np.random.default_rng(0).standard_normal((60_000, 8)).astype("f4")
con.create_dataset("x", data=rows, chunk_size=(4096, 8))
con.create_dataset("y", data=(rows[:, 0] > 0).astype("i8"), chunk_size=(4096,))
from dosna.tensors import ModelStore
from dosna.train import train
store = ModelStore(con)
w1, b1 = np.ones((64, 16), "f4"), np.zeros(16, "f4")
tensors = {"w1": w1, "b1": b1}
""",
    "docs/stores.md": """
with dn.open(f"store-{RUN}-{EXAMPLE}") as con:
    con.create_dataset("volume", data=np.arange(24.0).reshape(2, 3, 4), chunk_size=2)
    url = con.url
""",
    "docs/interop.md": """
con = dn.open("/data/store")
if "temp" not in con:
    for name in ("temp", "rain"):
        con.create_dataset(name, shape=(365, 18, 36), dtype="f4", chunks=(73, 18, 36)).dims = ("time", "lat", "lon")
import xarray as xr
ds = xr.open_dataset("/data/store", engine="dosna")
da = xr.open_dataarray("/data/store::temp", engine="dosna")
""",
    "docs/engines.md": """
def compute_my_part():  # what a rank computes for its slab (a constant here)
    return np.float32(1.0)
def smooth(chunk):
    return chunk * 0.5
""",
}
#: Examples that connect to a store at the addresses they show (a text they contain -> why
#: they cannot run here): the test cluster listens on other ports.
AT_FIXED_ADDRESSES = {
    'dn.open("s3://bucket/runs/1"': "connects to radosgw at 127.0.0.1:7480 and to the Ceph cluster "
    "of /etc/ceph/ceph.conf, as shown; the test cluster has a run directory and free ports of its own",
}
#: Pages whose examples run under mpiexec, with this many ranks.
MPI_PAGES = {"docs/engines.md": 2}

RUNNER = r"""
import json, os, sys, traceback
examples, setup, examples_dir = json.load(open(sys.argv[1]))
for run in (1, 2):
    for number, (where, code) in enumerate(examples):
        namespace = {"__name__": "__main__", "RUN": run, "EXAMPLE": number, "EXAMPLES": examples_dir}
        try:
            exec(compile(setup, "setup of " + where, "exec"), namespace)
            exec(compile(code, where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED on run {run}: the example at {where}", flush=True)
            sys.exit(1)
        finally:
            con = namespace.get("con")
            if con is not None and getattr(con, "connected", False):
                con.disconnect()
print(f"{len(examples)} examples ran twice", flush=True)
"""


def python_examples(page: str) -> list[tuple[str, str]]:
    """``(page:line, code)`` of every ```python block of a page."""
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        text = f.read()
    return [
        (f"{page}:{text[: m.start()].count(chr(10)) + 2}", m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)
    ]


def localize(code: str, workdir: str) -> str:
    """The example with the absolute paths it shows mapped into ``workdir``."""
    for path, local in PATHS.items():
        target = os.path.join(workdir, local)
        code = re.sub(rf"""(["']){re.escape(path)}(?=["'/])""", lambda m, t=target: m.group(1) + t, code)
    return code


def test_every_page_with_examples_is_tested():
    with_examples = [page for page in PAGES if python_examples(page)]
    assert "README.md" in with_examples and len(with_examples) >= 6, with_examples


def test_examples_write_only_where_the_test_maps_them():
    for page in PAGES:
        for where, code in python_examples(page):
            for literal in re.findall(r"""["'](/[^"']*)["']""", code):
                assert literal.startswith(("/etc/ceph/",)) or any(
                    literal == p or literal.startswith(p + "/") for p in PATHS
                ), f"{where}: the path {literal!r} is not mapped into the test's directory (PATHS)"


@pytest.mark.parametrize("text", sorted(AT_FIXED_ADDRESSES))
def test_examples_at_fixed_addresses(text):
    shown = [where for page in PAGES for where, code in python_examples(page) if text in code]
    assert shown, f"no example contains {text!r} any more: remove it from AT_FIXED_ADDRESSES"
    pytest.skip(f"{', '.join(shown)}: {AT_FIXED_ADDRESSES[text]}")


@pytest.mark.parametrize("page", [p for p in PAGES if python_examples(p)])
def test_page_examples_run_twice(page, tmp_path):
    workdir = str(tmp_path)
    for local in PATHS.values():
        os.makedirs(os.path.join(workdir, local), exist_ok=True)
    examples = [
        (where, localize(code, workdir))
        for where, code in python_examples(page)
        if not any(text in code for text in AT_FIXED_ADDRESSES)
    ]
    spec = tmp_path / "examples.json"
    setup = localize(IMPORTS + SETUP.get(page, ""), workdir)
    spec.write_text(json.dumps([examples, setup, os.path.join(ROOT, "examples")]))
    runner = tmp_path / "run_examples.py"
    runner.write_text(textwrap.dedent(RUNNER))
    # a profile for the S3 example that names one (nothing is contacted: it only connects later)
    aws = tmp_path / "aws-config"
    aws.write_text("[default]\nregion = us-east-1\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        "AWS_CONFIG_FILE": str(aws),
    }
    if page in MPI_PAGES:
        result = run_mpi(
            MPI_PAGES[page],
            [sys.executable, "-m", "mpi4py", str(runner), str(spec)],
            timeout=300,
            env={k: env[k] for k in ("PYTHONPATH", "AWS_CONFIG_FILE")},
        )
        returncode, output = result.returncode, str(result)
    else:
        proc = subprocess.run(
            [sys.executable, str(runner), str(spec)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        returncode, output = proc.returncode, proc.stdout + proc.stderr
    assert returncode == 0, output
    assert f"{len(examples)} examples ran twice" in output, output
