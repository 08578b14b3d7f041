"""Under ``mpiexec -n 2``: the original DosNa's MPI test flow, its mpi_demo and convolution examples."""

from __future__ import annotations

import textwrap

import pytest
from mpi_helpers import python_mpi, requires_mpiexec

pytestmark = requires_mpiexec

HEADER = """
import os, sys, tempfile
import numpy as np
import h5py
import dosna as dn
from dosna.util.mpi import MpiTimer, mpi_barrier, mpi_comm, mpi_is_root, mpi_rank, mpi_root, mpi_size, pprint

def say(text):  # one write per line: lines of different ranks never interleave
    os.write(1, (text + chr(10)).encode())

dn.use(backend='hdf5', engine='mpi')
CONFIG = {'name': 'test-dosna', 'directory': sys.argv[1]}
"""

DATASET_FLOW = """
DATA_SIZE = (100, 100, 100)
CHUNK = (32, 32, 32)
data = None
if mpi_is_root():
    data = np.random.default_rng(0).integers(-10000, 10000, DATA_SIZE, endpoint=True)
data = mpi_comm().bcast(data, root=0)
con = dn.Connection(**CONFIG)
con.connect()
assert (con.mpi_size, mpi_size()) == (2, 2) and con.mpi_rank == mpi_rank()

def fresh():
    return con.create_dataset('NotADataset', data=data, chunk_size=CHUNK)

# load: every rank wrote its share, every rank reads the whole
ds = fresh()
np.testing.assert_array_equal(ds[...], data)
mpi_barrier()

# non-overlapping get and set, one x-slab per rank
per_rank = ds.chunk_grid[0] // mpi_size()
start = mpi_rank() * per_rank * CHUNK[0]
stop = ds.shape[0] if mpi_rank() == mpi_size() - 1 else (mpi_rank() + 1) * per_rank * CHUNK[0]
np.testing.assert_array_equal(ds[start:stop, ...], data[start:stop, ...])
ds[start:stop, ...] = data[start:stop, ...] * 3 + 5
mpi_barrier()
if mpi_is_root():
    np.testing.assert_array_equal(ds[...], data * 3 + 5)
mpi_barrier()
con.del_dataset('NotADataset')

ds = fresh()
ds.clear()
if mpi_is_root():
    np.testing.assert_array_equal(ds[...], ds.fillvalue)
mpi_barrier()
con.del_dataset('NotADataset')

ds = fresh()
mapped = ds.map(lambda x: x + 1, 'NotADataset2')
if mpi_is_root():
    np.testing.assert_array_equal(mapped[...], ds[...] + 1)
mpi_barrier()
mapped.delete()

clone = ds.clone('NotADataset_clone')
clone.load(ds[...])
if mpi_is_root():
    np.testing.assert_array_equal(clone[...], data)
mpi_barrier()
clone.delete()

ds.apply(lambda x: x + 1)
if mpi_is_root():
    np.testing.assert_array_equal(ds[...], data + 1)
mpi_barrier()
con.del_dataset('NotADataset')
assert list(con) == []
con.disconnect()
say('dataset flow ok')
"""

DEMO_FLOW = """
DS, CS = 64, 20
engine, backend = dn.status()
assert (engine.name, backend.name) == ('mpi', 'hdf5') and engine.params['comm'] is mpi_comm()
pprint('Loading data', rank=0)
if mpi_root():
    fname = os.path.join(sys.argv[1], 'source.h5')
    with h5py.File(fname, 'w') as g:
        g.create_dataset('data', data=np.random.default_rng(2).random((DS, DS, DS), dtype=np.float32))
else:
    fname = None
fname = mpi_comm().bcast(fname, root=0)
h5in = h5py.File(fname, 'r')
h5data = h5in['data']
with MpiTimer('DosNa %s (%s)' % (engine.name, backend.name)) as timer:
    with dn.Connection(**CONFIG) as C:
        data = C.create_dataset('test_data', data=h5data, chunk_size=(CS, CS, CS))
        for start in range(mpi_rank() * CS, DS, mpi_size() * CS):
            i, j = start, min(start + CS, DS)
            np.testing.assert_allclose(data[i:j], h5data[i:j])
            np.testing.assert_allclose(data[:, i:j], h5data[:, i:j])
            np.testing.assert_allclose(data[..., i:j], h5data[..., i:j])

        # examples/convolution.py: clone, each rank fills its z-chunks, barrier, root checks
        out = data.clone('gaussian_3d')
        for z in range(mpi_rank(), data.chunk_grid[0], mpi_size()):
            zs, ze = z * CS, min(z * CS + CS, DS)
            out[zs:ze] = data[zs:ze] * 2
        mpi_barrier()
        if mpi_root():
            np.testing.assert_allclose(out[...], h5data[...] * 2)
        mpi_barrier()
        out.delete()
        data.delete()
assert timer.time > 0
h5in.close()
say('demo flow ok')
"""


def test_original_mpi_dataset_flow(tmp_path):
    result = python_mpi(2, textwrap.dedent(HEADER + DATASET_FLOW), str(tmp_path), timeout=240)
    assert result.returncode == 0, str(result)
    for rank in (0, 1):
        assert "dataset flow ok" in result.rank_lines(rank), str(result)


def test_original_mpi_demo_and_convolution_examples(tmp_path):
    result = python_mpi(2, textwrap.dedent(HEADER + DEMO_FLOW), str(tmp_path), timeout=240)
    assert result.returncode == 0, str(result)
    for rank in (0, 1):
        assert "demo flow ok" in result.rank_lines(rank), str(result)
    root = "\n".join(result.rank_lines(0))
    assert "|0) Loading data" in root and "|0) DosNa mpi (hdf5) -- Elapsed:" in root, str(result)
    assert not any("Loading data" in line for line in result.rank_lines(1)), str(result)


@pytest.mark.parametrize("engine", ["cpu", "jl"])
def test_mpi_helpers_with_another_engine(tmp_path, engine):
    """examples/backend_test.py imports dosna.util.mpi whatever the engine."""
    script = HEADER.replace("engine='mpi'", f"engine={engine!r}") + textwrap.dedent("""
        rdata = np.arange(8.0) if mpi_root() else None
        rdata = mpi_comm().bcast(rdata, root=0)
        with MpiTimer('timed'):
            with dn.Connection('c%d' % mpi_rank(), directory=sys.argv[1]) as C:
                C.create_dataset('x', data=rdata, chunk_size=3)
                np.testing.assert_array_equal(C['x'][...], rdata)
        say('ok %d of %d' % (mpi_rank(), mpi_size()))
    """)
    result = python_mpi(2, script, str(tmp_path), timeout=120)
    assert result.returncode == 0, str(result)
    assert "ok 1 of 2" in result.rank_lines(1) and "ok 0 of 2" in result.rank_lines(0), str(result)


def test_ram_backend_under_mpi_is_refused_not_silently_wrong(tmp_path):
    """The original warned that ram + mpi 'will work unexpectedly'; today connect() refuses it."""
    script = HEADER.replace("backend='hdf5'", "backend='ram'") + textwrap.dedent("""
        try:
            dn.Connection(**CONFIG).connect()
        except dn.DosnaError as exc:
            say('refused: ' + str(exc))
    """)
    result = python_mpi(2, script, str(tmp_path), timeout=120)
    assert result.returncode == 0, str(result)
    for rank in (0, 1):
        assert any(line.startswith("refused: the ram backend") for line in result.rank_lines(rank)), str(
            result
        )
