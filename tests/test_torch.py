"""PyTorch: tensors in and out of datasets, and the torch datasets and sampler on the loader's order."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dosna as dn
from dosna.errors import DosnaError
from dosna.train.loader import epoch_order

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from dosna.train.torch import ChunkAwareSampler, IterableDataset, MapDataset  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 1000  # samples; x[i] = (i, -i), y[i] = i % 7


@pytest.fixture(params=["ram", "hdf5"])
def store(request, tmp_path):
    options = {"directory": str(tmp_path)} if request.param == "hdf5" else {}
    with dn.Connection(f"torch-{request.param}-{tmp_path.name}", backend=request.param, **options) as con:
        rows = np.arange(N, dtype=np.int64)
        con.create_dataset("x", data=np.stack([rows, -rows], axis=1).astype(np.float32), chunk_size=(64, 2))
        con.create_dataset("y", data=rows % 7, chunk_size=(100,))
        yield con


def seen_rows(batches) -> list[int]:
    rows: list[int] = []
    for xb, yb in batches:
        assert isinstance(xb, torch.Tensor) and isinstance(yb, torch.Tensor)
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert torch.equal(xb[:, 1], -xb[:, 0]) and torch.equal(yb, xb[:, 0].long() % 7)
        rows += xb[:, 0].long().tolist()
    return rows


# -- tensors as data and values ------------------------------------------------------
def test_tensors_as_data_and_values(tmp_path):
    with dn.Connection("tensors", backend="hdf5", directory=str(tmp_path)) as con:
        t = torch.arange(24, dtype=torch.float64).reshape(4, 6)
        ds = con.create_dataset("t", data=t, chunk_size=(3, 4))
        assert ds.dtype == np.dtype("f8") and np.array_equal(ds[...], t.numpy())
        w = torch.ones(4, 6, requires_grad=True)
        ds[...] = w * 2  # a tensor that needs grad: its values
        assert np.array_equal(ds[...], np.full((4, 6), 2.0))
        ds[1:3, ::2] = torch.tensor([[5.0], [6.0]])  # broadcast, as NumPy
        assert np.array_equal(ds[1:3, ::2], [[5, 5, 5], [6, 6, 6]])
        ds[:, 0] = t.t()[1]  # a non-contiguous view
        assert np.array_equal(ds[:, 0], t.numpy()[:, 1])
        assert np.array_equal(ds[torch.tensor([3, 0])], ds[[3, 0]])  # tensors as index arrays
        i = con.create_dataset("i", data=torch.arange(5, dtype=torch.int16))
        assert i.dtype == np.dtype("i2") and list(i[...]) == [0, 1, 2, 3, 4]
        i.load(torch.arange(5, 10, dtype=torch.int16))
        assert list(i[...]) == [5, 6, 7, 8, 9]


def test_bfloat16_refused_before_anything_is_written(tmp_path):
    with dn.Connection("bf16", backend="hdf5", directory=str(tmp_path)) as con:
        with pytest.raises(TypeError, match="bfloat16"):
            con.create_dataset("b", data=torch.ones(3, 3, dtype=torch.bfloat16))
        assert "b" not in con
        ds = con.create_dataset("f", shape=(3, 3), dtype="f4", chunk_size=2)
        with pytest.raises(TypeError, match=r"bfloat16.*float32"):
            ds[...] = torch.ones(3, 3, dtype=torch.bfloat16)
        with pytest.raises(TypeError, match="bfloat16"):
            ds.load(torch.ones(3, 3, dtype=torch.bfloat16))
        assert ds.stored_chunks() == []
        ds[...] = torch.ones(3, 3, dtype=torch.bfloat16).float()  # what the message suggests
        assert np.array_equal(ds[...], np.ones((3, 3)))


# -- IterableDataset -----------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_iterable_dataset_covers_every_sample_once_across_ranks_and_workers(store, workers):
    for epoch in (0, 3):
        rows = []
        per_rank = []
        for rank in range(2):
            ds = IterableDataset(store["x"], store["y"], batch_size=32, seed=5, shard=(rank, 2))
            ds.set_epoch(epoch)
            got = seen_rows(DataLoader(ds, batch_size=None, num_workers=workers))
            assert len(got) == ds.loader.shard_samples()
            assert len(ds) == ds.loader.batches_in_shard()
            per_rank.append(got)
            rows += got
        assert sorted(rows) == list(range(N)), "every sample exactly once per epoch"
        assert not set(per_rank[0]) & set(per_rank[1])
        # the order is the loader's: rank r holds its shard of the epoch's order
        order = epoch_order((0, N), 64, 4, 5, epoch)
        assert set(per_rank[1]) == set(order[N // 2 :].tolist())


def test_iterable_dataset_same_batches_with_any_number_of_workers(store):
    ds = IterableDataset(store["x"], store["y"], batch_size=50, seed=2)
    alone = [tuple(sorted(xb[:, 0].long().tolist())) for xb, _ in DataLoader(ds, batch_size=None)]
    two = [
        tuple(sorted(xb[:, 0].long().tolist())) for xb, _ in DataLoader(ds, batch_size=None, num_workers=2)
    ]
    assert sorted(alone) == sorted(two) and len(alone) == len(ds) == 20
    ds.set_epoch(1)
    other = [tuple(sorted(xb[:, 0].long().tolist())) for xb, _ in DataLoader(ds, batch_size=None)]
    assert sorted(other) != sorted(alone)  # another epoch, another order


def test_iterable_dataset_of_samples_for_the_dataloader_to_batch(store):
    ds = IterableDataset(store["x"], store["y"], seed=1, shard=(1, 3))
    loader = DataLoader(ds, batch_size=16, num_workers=2)
    rows = seen_rows(loader)
    assert len(ds) == len(rows) == ds.loader.shard_samples() == 333
    order = epoch_order((0, N), 64, 4, 1, 0)
    assert sorted(rows) == sorted(order[333:666].tolist())
    xs = IterableDataset(store["x"], shuffle=False)  # samples without targets, in row order
    first = next(iter(xs))
    assert isinstance(first, torch.Tensor) and first.tolist() == [0.0, -0.0]


def test_iterable_dataset_rank_from_the_mpi_engine(tmp_path):
    """The rank and size of an mpi connection shard the data when no shard is given."""
    from mpi_helpers import MPIEXEC, python_mpi

    if MPIEXEC is None:
        pytest.skip("mpiexec not found")
    script = textwrap.dedent(
        f"""
        import json, numpy as np, dosna as dn
        from torch.utils.data import DataLoader
        from dosna.train.torch import IterableDataset
        with dn.Connection("mpi", backend="hdf5", engine="mpi", directory={str(tmp_path)!r}) as con:
            con.create_dataset("x", data=np.arange(301, dtype="i8")[:, None], chunk_size=(40, 1))  # collective
            ds = IterableDataset(con["x"], batch_size=16, seed=3)
            rows = [int(r) for xb in DataLoader(ds, batch_size=None, num_workers=2) for r in xb[:, 0]]
            with open({str(tmp_path)!r} + f"/rank{{con.mpi_rank}}.json", "w") as f:
                json.dump({{"shard": ds.shard, "rows": rows}}, f)
            con.mpi_barrier()
        """
    )
    result = python_mpi(2, script, timeout=240)
    assert result.returncode == 0, str(result)
    docs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [d["shard"] for d in docs] == [[0, 2], [1, 2]]
    assert sorted(docs[0]["rows"] + docs[1]["rows"]) == list(range(301))


def test_iterable_dataset_rank_from_torch_distributed(tmp_path):
    """Two real torch.distributed processes (gloo), each with two DataLoader workers."""
    with dn.Connection("dist", backend="hdf5", directory=str(tmp_path)) as con:
        con.create_dataset("x", data=np.arange(517, dtype="i8")[:, None], chunk_size=(50, 1))
    script = textwrap.dedent(
        f"""
        import json, sys, torch.distributed as dist, dosna as dn
        from torch.utils.data import DataLoader
        from dosna.train.torch import IterableDataset
        rank = int(sys.argv[1])
        dist.init_process_group("gloo", init_method="file://{tmp_path}/rendezvous", rank=rank, world_size=2)
        with dn.Connection("dist", backend="hdf5", directory={str(tmp_path)!r}) as con:
            ds = IterableDataset(con["x"], batch_size=20, seed=4)
            rows = [int(r) for xb in DataLoader(ds, batch_size=None, num_workers=2) for r in xb[:, 0]]
        print(json.dumps({{"shard": ds.shard, "rows": rows}}))
        dist.destroy_process_group()
        """
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in range(2)
    ]
    docs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
            docs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            p.kill()
    assert [d["shard"] for d in docs] == [[0, 2], [1, 2]]
    assert sorted(docs[0]["rows"] + docs[1]["rows"]) == list(range(517))


def test_ram_datasets_refuse_spawned_workers_clearly(store):
    ds = IterableDataset(store["x"], store["y"], batch_size=8)
    if store.backend.name == "ram":
        with pytest.raises(DosnaError, match="'fork'"):
            pickle.dumps(ds)
        with pytest.raises(DosnaError, match="ram backend"):
            pickle.dumps(MapDataset(store["x"]))
    else:  # hdf5: workers that are not forked open the files themselves
        copy = pickle.loads(pickle.dumps(ds))
        assert sorted(seen_rows(copy)) == list(range(N))


# -- sampler and map-style dataset -------------------------------------------------
def test_sampler_shards_cover_every_sample_once(store):
    shards = [ChunkAwareSampler(store["x"], seed=9, shard=(r, 3)) for r in range(3)]
    for epoch in (0, 1):
        for s in shards:
            s.set_epoch(epoch)
        parts = [list(s) for s in shards]
        joined = [i for p in parts for i in p]
        assert sorted(joined) == list(range(N))
        assert [len(p) for p in parts] == [len(s) for s in shards] == [333, 333, 334]
        assert joined == epoch_order((0, N), 64, 4, 9, epoch).tolist()
    assert list(ChunkAwareSampler(10, shuffle=False)) == list(range(10))


def test_map_dataset_with_sampler_in_a_dataloader(store):
    data = MapDataset(store["x"], store["y"])
    assert len(data) == N
    x0, y0 = data[5]
    assert x0.tolist() == [5.0, -5.0] and int(y0) == 5
    sampler = ChunkAwareSampler(store["x"], seed=3, shard=(0, 2))
    loader = DataLoader(data, sampler=sampler, batch_size=40, num_workers=2)
    rows = seen_rows(loader)
    assert rows == sampler.indices().tolist()  # batches in the sampler's order
