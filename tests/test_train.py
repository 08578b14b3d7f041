"""The batch loader and the training runner: coverage, order, sharding, prefetch, failures, MPI."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpi_helpers import python_mpi, requires_mpiexec

import dosna as dn
from dosna.tensors import FAILED, FINISHED, ModelStore
from dosna.testing import _examples
from dosna.train import BatchLoader, epoch_order, resolve_learner, shard_of, train
from dosna.train.errors import ResumeError

# -- the order of an epoch (pure) -------------------------------------------------


@settings(max_examples=_examples(), deadline=None)
@given(
    start=st.integers(0, 300),
    length=st.integers(0, 500),
    block_rows=st.integers(1, 64),
    window=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 50),
    shards=st.integers(1, 7),
)
def test_every_sample_once_per_epoch_across_shards(start, length, block_rows, window, seed, epoch, shards):
    order = epoch_order((start, start + length), block_rows, window, seed, epoch)
    assert sorted(order.tolist()) == list(range(start, start + length))
    pieces = [shard_of(order, i, shards) for i in range(shards)]
    assert np.array_equal(np.concatenate(pieces), order)  # disjoint, covering, in order
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
    # chunk-aware: the order is a run of windows, each made of the whole rows of at most
    # `window` blocks (so every block is read once per epoch)
    sizes = {}
    for b in np.unique(order // block_rows).tolist():
        sizes[b] = min((b + 1) * block_rows, start + length) - max(b * block_rows, start)
    position = 0
    while position < len(order):
        members: set[int] = set()
        stop = position
        while stop < len(order) and (len(members) < window or order[stop] // block_rows in members):
            members.add(int(order[stop] // block_rows))
            stop += 1
        assert stop - position == sum(sizes[b] for b in members)
        position = stop


def test_order_is_reproducible_and_seeded():
    a = epoch_order((0, 1000), 64, 4, seed=1, epoch=0)
    assert np.array_equal(a, epoch_order((0, 1000), 64, 4, seed=1, epoch=0))
    assert not np.array_equal(a, epoch_order((0, 1000), 64, 4, seed=2, epoch=0))
    assert not np.array_equal(a, epoch_order((0, 1000), 64, 4, seed=1, epoch=1))
    assert not np.array_equal(a, np.arange(1000))
    assert np.array_equal(epoch_order((5, 100), 64, 4, 1, 0, shuffle=False), np.arange(5, 100))


# -- the loader over stored datasets -------------------------------------------------


@pytest.fixture
def stored(tmp_path):
    """x[i] holds i in every feature, y[i] = i % 7: a batch tells which rows it holds."""
    con = dn.Connection("loader", backend="hdf5", directory=tmp_path).connect()
    n = 1000
    x = con.create_dataset(
        "x", data=np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1), chunk_size=(64, 3)
    )
    y = con.create_dataset("y", data=np.arange(n) % 7, chunk_size=(100,))
    return con, x, y


def rows_of(batches) -> list[int]:
    return [int(r) for xb, _ in batches for r in xb[:, 0]]


@pytest.mark.parametrize("prefetch", [0, None, 1])
def test_loader_yields_every_row_once_and_matching_labels(stored, prefetch):
    _, x, y = stored
    loader = BatchLoader(x, y, batch_size=48, seed=3, prefetch=prefetch)
    for epoch in range(2):
        batches = list(loader.epoch(epoch))
        assert len(batches) == len(loader) == 21
        assert sorted(rows_of(batches)) == list(range(1000))
        for xb, yb in batches:
            assert xb.shape[1:] == (3,) and xb.dtype == np.float32
            np.testing.assert_array_equal(yb, xb[:, 0].astype(int) % 7)
            np.testing.assert_array_equal(xb[:, 0], xb[:, 2])
    assert rows_of(loader.epoch(0)) == rows_of(BatchLoader(x, y, batch_size=48, seed=3, prefetch=0).epoch(0))


def test_loader_shards_rows_and_drop_last(stored):
    _, x, y = stored
    seen = []
    for index in range(3):
        loader = BatchLoader(x, y, batch_size=32, seed=5, rows=(100, 900), shard=(index, 3))
        seen += rows_of(loader.epoch(4))
    assert sorted(seen) == list(range(100, 900))
    loader = BatchLoader(x, y, batch_size=32, seed=5, rows=slice(100, 900), shard=(1, 3), drop_last=True)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 267 // 32 and all(len(xb) == 32 for xb, _ in batches)
    assert loader.max_batches == 267 // 32


def test_iterating_again_gives_the_next_epoch(stored):
    _, x, _ = stored
    loader = BatchLoader(x, batch_size=100, seed=0)
    first = np.concatenate(list(loader))[:, 0]
    second = np.concatenate(list(loader))[:, 0]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, np.concatenate(list(loader.epoch(1)))[:, 0])


class CountingArray:
    """A NumPy array that records the row ranges read from it."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.reads = array, array.shape, []
        self.lock = threading.Lock()

    def __getitem__(self, key):
        with self.lock:
            self.reads.append((key.start, key.stop))
        return self.array[key]


def test_each_block_is_read_once_per_epoch():
    source = CountingArray(np.arange(1000.0)[:, None])
    loader = BatchLoader(source, batch_size=30, seed=1, block_rows=50, window=3)
    list(loader.epoch(0))
    assert sorted(source.reads) == [(s, s + 50) for s in range(0, 1000, 50)]


def test_read_errors_reach_the_consumer_and_early_exit_stops_the_reader():
    class Broken(CountingArray):
        def __getitem__(self, key):
            if key.start >= 500:
                raise OSError("disk on fire")
            return super().__getitem__(key)

    loader = BatchLoader(Broken(np.zeros((1000, 2))), batch_size=10, shuffle=False, block_rows=100)
    with pytest.raises(OSError, match="disk on fire"):
        list(loader.epoch(0))
    before = threading.active_count()
    for i, _ in enumerate(BatchLoader(np.zeros((10_000, 2)), batch_size=10, prefetch=4).epoch(0)):
        if i == 3:
            break
    assert threading.active_count() <= before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"batch_size": 0}, ValueError),
        ({"window": 0}, ValueError),
        ({"rows": (10, 5)}, ValueError),
        ({"rows": slice(0, 10, 2)}, ValueError),
        ({"shard": (3, 3)}, ValueError),
        ({"prefetch": -1}, ValueError),
        ({"y": np.zeros(5)}, ValueError),
    ],
)
def test_loader_refuses_bad_settings(kwargs, error):
    with pytest.raises(error):
        BatchLoader(np.zeros((20, 2)), **kwargs)


# -- the runner ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    from sklearn.datasets import load_digits

    directory = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    con = dn.Connection("d", backend="hdf5", directory=directory).connect()
    con.create_dataset("x", data=(digits.data[order] / 16).astype(np.float32), chunk_size=(256, 64))
    con.create_dataset("y", data=digits.target[order].astype(np.int64), chunk_size=(256,))
    return directory


@pytest.fixture
def digits(digits_dir, tmp_path):
    import shutil

    shutil.copytree(digits_dir / "d", tmp_path / "d")
    return dn.Connection("d", backend="hdf5", directory=tmp_path).connect()


@pytest.mark.parametrize(("learner", "epochs"), [("mlp", 20), ("softmax", 20)])
def test_runner_trains_to_accuracy_and_saves_lineage(digits, learner, epochs):
    result = train(digits, "x", "y", learner=learner, model="digits", epochs=epochs, progress=False)
    assert result.metrics["test_accuracy"] >= 0.95
    assert len(result.history) == epochs
    store = ModelStore(digits)
    manifest = store.manifest("digits", result.version)
    assert manifest["state"] == FINISHED
    lineage = manifest["lineage"]
    assert [d["name"] for d in lineage["datasets"]] == ["x", "y"]
    assert all(d["fingerprint"].startswith("blake2b-128:") for d in lineage["datasets"])
    assert lineage["train_rows"] == [0, 1438] and lineage["test_rows"] == [1438, 1797]
    assert lineage["sharding"]["samples_per_rank"] == [1438]
    assert lineage["hyperparameters"]["learner"] == learner
    # the saved tensors give the same predictions
    fresh = resolve_learner(learner)(64, 10, seed=99)
    fresh.load_state_dict(store.load("digits", result.version))
    x, y = digits["x"][1438:], digits["y"][1438:]
    assert (fresh.predict(x) == y).mean() == pytest.approx(result.metrics["test_accuracy"])


def test_same_seed_same_model_and_fine_tuning(digits):
    a = train(digits, "x", "y", model="m", epochs=2, seed=4, progress=False)
    b = train(digits, "x", "y", model="m", epochs=2, seed=4, progress=False)
    store = ModelStore(digits)
    for name, tensor in store.load("m", a.version).items():
        assert tensor.tobytes() == store.load("m", b.version)[name].tobytes()
    c = train(digits, "x", "y", model="m", epochs=1, seed=4, parent=b.version, progress=False)
    assert store.manifest("m", c.version)["parent"] == b.version
    assert c.history[0]["train_loss"] < a.history[0]["train_loss"]


FAILING_LEARNER = """
from dosna.train.learners import MLP

class Fragile(MLP):
    calls = 0
    def gradients(self, x, y):
        Fragile.calls += 1
        if Fragile.calls > {fail_after}:
            raise RuntimeError("learner blew up")
        return super().gradients(x, y)

def make(n_features, n_classes, seed=0, **hyper):
    return Fragile(n_features, n_classes, seed=seed, **hyper)
"""


def test_failing_learner_marks_version_failed_and_keeps_earlier(digits, tmp_path):
    good = train(digits, "x", "y", model="m", epochs=1, progress=False)
    path = tmp_path / "fragile.py"
    path.write_text(FAILING_LEARNER.format(fail_after=30))
    with pytest.raises(RuntimeError, match="learner blew up"):
        train(digits, "x", "y", model="m", learner=f"{path}:make", epochs=3, progress=False)
    store = ModelStore(digits)
    assert store.versions("m") == [1, 2]
    failed = store.manifest("m", 2)
    assert failed["state"] == FAILED and "learner blew up" in failed["error"]
    assert failed["lineage"]["learner"].endswith("fragile.py:make")
    assert store.resolve("m") == good.version
    assert set(store.load("m")) == {"w1", "b1", "w2", "b2"}


def test_learner_from_a_package_module(digits, tmp_path, monkeypatch):
    (tmp_path / "mylearners").mkdir()
    (tmp_path / "mylearners" / "__init__.py").write_text("")
    (tmp_path / "mylearners" / "small.py").write_text(
        "from dosna.train.learners import softmax\n"
        "def make(n_features, n_classes, seed=0, **hyper):\n"
        "    return softmax(n_features, n_classes, seed=seed, lr=0.02)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = train(digits, "x", "y", learner="mylearners.small:make", model="p", epochs=3, progress=False)
    assert result.learner.hyperparameters["lr"] == 0.02


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"learner": "nope"}, ValueError),
        ({"learner": "no_such_module_xyz:make"}, ValueError),
        ({"learner": "json:no_such_function"}, ValueError),
        ({"hyperparameters": {"hiddn": 3}}, TypeError),
        ({"epochs": 0}, ValueError),
        ({"test_fraction": 1.0}, ValueError),
        ({"y": "x"}, TypeError),
        ({"model": "bad.name"}, dn.InvalidNameError),
        ({"checkpoint_every": -1}, ValueError),
        ({"checkpoint_every": 1.5}, ValueError),
    ],
)
def test_runner_refuses_bad_input_before_saving(digits, kwargs, error):
    args = {"x": "x", "y": "y", **kwargs}
    with pytest.raises(error):
        train(digits, args.pop("x"), args.pop("y"), progress=False, **args)
    assert ModelStore(digits).models() == []


# -- under mpiexec -----------------------------------------------------------------

MPI_TRAIN = """
import json, os, sys
import numpy as np
import dosna as dn
from dosna.train import BatchLoader, train

directory, epochs = sys.argv[1], int(sys.argv[2])
with dn.Connection("d", backend="hdf5", engine="mpi", directory=directory) as con:
    rank = con.mpi_rank
    loader = BatchLoader(con["x"], batch_size=50, seed=9, rows=(10, 1790))
    mine = sorted(int(i) for b in loader.indices(3) for i in b)
    result = train(con, "x", "y", model="mpi", epochs=epochs, progress=False)
    line = json.dumps({"rank": rank, "shard": loader.shard, "rows": mine, "batches": len(loader),
                       "accuracy": result.metrics["test_accuracy"], "version": result.version})
    os.write(1, (line + "\\n").encode())
"""


def _mpi_lines(result) -> list[dict]:
    found = []
    for rank in range(8):
        found += [json.loads(line) for line in result.rank_lines(rank) if line.startswith("{")]
    return found


@requires_mpiexec
def test_mpi_training_matches_single_process_band(digits_dir, tmp_path):
    import shutil

    accuracies = {}
    for n in (1, 2):
        shutil.copytree(digits_dir / "d", tmp_path / f"n{n}" / "d")
        result = python_mpi(n, MPI_TRAIN, str(tmp_path / f"n{n}"), "20", timeout=300)
        assert result.returncode == 0, str(result)
        lines = _mpi_lines(result)
        assert len(lines) == n
        seen = sorted(r for line in lines for r in line["rows"])
        assert seen == list(range(10, 1790)), "every sample exactly once across ranks"
        assert {tuple(line["shard"]) for line in lines} == {(r, n) for r in range(n)}
        assert len({line["accuracy"] for line in lines}) == 1  # every rank has the same model
        accuracies[n] = lines[0]["accuracy"]
        con = dn.Connection("d", backend="hdf5", directory=tmp_path / f"n{n}").connect()
        manifest = ModelStore(con).manifest("mpi")
        assert manifest["state"] == FINISHED and manifest["lineage"]["sharding"]["world_size"] == n
        assert ModelStore(con).versions("mpi") == [1]  # saved once, not once per rank
    assert accuracies[1] >= 0.95 and accuracies[2] >= 0.95
    assert abs(accuracies[1] - accuracies[2]) <= 0.03, accuracies


MPI_FAIL = """
import os
import sys
import dosna as dn
from dosna.train import train
from dosna.train.learners import MLP

class FailsOnRank1(MLP):
    calls = 0
    def gradients(self, x, y):
        FailsOnRank1.calls += 1
        if con.mpi_rank == 1 and FailsOnRank1.calls > 20:
            raise RuntimeError("rank 1 learner blew up")
        return super().gradients(x, y)

with dn.Connection("d", backend="hdf5", engine="mpi", directory=sys.argv[1]) as con:
    try:
        train(con, "x", "y", model="m", epochs=5, progress=False,
              learner=lambda nf, nc, seed=0: FailsOnRank1(nf, nc, seed=seed))
    except Exception as exc:
        os.write(1, f"rank {con.mpi_rank} raised {type(exc).__name__}: {exc}\\n".encode())
"""


@requires_mpiexec
def test_mpi_learner_failure_on_one_rank_stops_all_and_marks_failed(digits_dir, tmp_path):
    import shutil

    shutil.copytree(digits_dir / "d", tmp_path / "d")
    result = python_mpi(2, MPI_FAIL, str(tmp_path), timeout=120, env={"DOSNA_MPI_TIMEOUT": "60"})
    assert result.returncode == 0, str(result)
    assert result.seconds < 50, "the other rank must not wait for the timeout"
    assert any("RuntimeError: rank 1 learner blew up" in line for line in result.rank_lines(1)), str(result)
    assert any("RankFailedError" in line for line in result.rank_lines(0)), str(result)
    con = dn.Connection("d", backend="hdf5", directory=tmp_path).connect()
    assert ModelStore(con).manifest("m", 1)["state"] == FAILED


def test_torch_learner_trains_and_saves(digits):
    pytest.importorskip("torch")
    result = train(digits, "x", "y", learner="torch-mlp", model="t", epochs=15, progress=False)
    assert result.metrics["test_accuracy"] >= 0.95
    tensors = ModelStore(digits).load("t")
    assert {k: v.shape for k, v in tensors.items()} == {
        "0.weight": (64, 64),
        "0.bias": (64,),
        "2.weight": (10, 64),
        "2.bias": (10,),
    }
    fresh = resolve_learner("torch-mlp")(64, 10, seed=5)
    fresh.load_state_dict(tensors)
    x, y = digits["x"][1438:], digits["y"][1438:]
    assert (fresh.predict(x) == y).mean() == pytest.approx(result.metrics["test_accuracy"])


# -- checkpoints and resuming -----------------------------------------------------------

KILLABLE_LEARNERS = """
import os
import signal

from dosna.train.learners import MLP, SoftmaxRegression

KILL_AT = int(os.environ.get("DOSNA_TEST_KILL_AT_CALL", "0"))
KILL_RANK = os.environ.get("DOSNA_TEST_KILL_RANK", "")  # empty: every process; else that MPI rank


class Killable:
    calls = 0

    def gradients(self, x, y):
        Killable.calls += 1
        if Killable.calls == KILL_AT and KILL_RANK in ("", os.environ.get("PMI_RANK")):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().gradients(x, y)


class KillableMLP(Killable, MLP):
    pass


class KillableSoftmax(Killable, SoftmaxRegression):
    pass


def mlp(n_features, n_classes, seed=0, **hyper):
    return KillableMLP(n_features, n_classes, seed=seed, **hyper)


def softmax(n_features, n_classes, seed=0, **hyper):
    return KillableSoftmax(n_features, n_classes, seed=seed, **hyper)
"""

TRAIN_SCRIPT = """
import os, sys
import dosna as dn
from dosna.train import train

directory, engine, learner, epochs, resume = sys.argv[1:6]
with dn.Connection("d", backend="hdf5", engine=engine, directory=directory) as con:
    result = train(con, "x", "y", learner=learner, model="m", epochs=int(epochs), seed=3,
                   resume=resume == "resume", progress=False)
    os.write(1, f"version {result.version} epochs {len(result.history)}\\n".encode())
"""

BATCHES_PER_EPOCH = 23  # 1438 training rows of the digits in batches of 64 (one process)


def _stored_tensors(directory) -> dict[str, bytes]:
    con = dn.Connection("d", backend="hdf5", directory=directory).connect()
    return {k: v.tobytes() for k, v in ModelStore(con).load("m").items()}


def _epoch_history(directory) -> list[tuple[float, float]]:
    con = dn.Connection("d", backend="hdf5", directory=directory).connect()
    history = ModelStore(con).manifest("m")["metrics"]["history"]
    return [(h["train_loss"], h["test_accuracy"]) for h in history]


def _run_script(directory, learner, epochs, resume, kill_at=0):
    import subprocess
    import sys

    env = {**os.environ, "DOSNA_TEST_KILL_AT_CALL": str(kill_at)}
    return subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, str(directory), "cpu", learner, str(epochs), resume],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("kind", ["mlp", "softmax"])
def test_a_run_killed_after_an_epoch_resumes_to_the_uninterrupted_model(digits_dir, tmp_path, kind):
    import shutil

    learners = tmp_path / "killable.py"
    learners.write_text(KILLABLE_LEARNERS)
    spec = f"{learners}:{kind}"
    for name in ("killed", "straight"):
        shutil.copytree(digits_dir / "d", tmp_path / name / "d")

    straight = _run_script(tmp_path / "straight", spec, 6, "fresh")
    assert straight.returncode == 0, straight.stderr
    # killed in the middle of epoch 4 (index 3): three epochs are checkpointed
    killed = _run_script(tmp_path / "killed", spec, 6, "fresh", kill_at=1 + 3 * BATCHES_PER_EPOCH + 11)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    con = dn.Connection("d", backend="hdf5", directory=tmp_path / "killed").connect()
    manifest = ModelStore(con).manifest("m", 1)
    assert manifest["state"] == "running" and manifest["checkpoint"]["epoch"] == 3
    assert manifest["metrics"]["epochs_done"] == 3

    resumed = _run_script(tmp_path / "killed", spec, 6, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "version 1 epochs 6" in resumed.stdout
    assert _stored_tensors(tmp_path / "killed") == _stored_tensors(tmp_path / "straight")  # bit-exact
    assert _epoch_history(tmp_path / "killed") == _epoch_history(tmp_path / "straight")
    manifest = ModelStore(con).manifest("m", 1)
    assert manifest["state"] == FINISHED and manifest["checkpoint"] is None and manifest["stale"] == []
    assert [r["from_epoch"] for r in manifest["lineage"]["resumed"]] == [3]
    assert sorted(con.datasets()) == ["models.m.v1"] + [
        f"models.m.v1.t{i}" for i in range(4 if kind == "mlp" else 2)
    ] + ["x", "y"]


class _Interrupt(Exception):
    pass


def _interrupting(base: str, stop_at: int | None, noisy: bool = False):
    """A factory named 'make' whose learner raises at gradient call ``stop_at``."""
    from dosna.train.learners import MLP, SoftmaxRegression, generator_state, set_generator_state

    cls = {"mlp": MLP, "softmax": SoftmaxRegression}[base]
    calls = [0]

    class Interrupting(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.rng = np.random.default_rng(11)

        def gradients(self, x, y):
            calls[0] += 1
            if calls[0] == stop_at:
                raise _Interrupt("stopped")
            loss, grads = super().gradients(x, y)
            if noisy:  # gradient noise: its RNG state must survive a resume
                grads = {k: g + self.rng.normal(0, 1e-3, g.shape) for k, g in grads.items()}
            return loss, grads

        def training_state(self):
            arrays, values = super().training_state()
            return arrays, {**values, "rng": generator_state(self.rng)} if noisy else values

        def load_training_state(self, arrays, values):
            values = dict(values)
            if noisy:
                set_generator_state(self.rng, values.pop("rng"))
            super().load_training_state(arrays, values)

    def make(n_features, n_classes, seed=0, **hyper):
        return Interrupting(n_features, n_classes, seed=seed, **hyper)

    return make


@pytest.mark.parametrize("backend", ["ram", "hdf5"])
@pytest.mark.parametrize(("kind", "noisy"), [("mlp", False), ("softmax", False), ("mlp", True)])
def test_a_failed_run_resumes_bit_exact(digits_dir, tmp_path, backend, kind, noisy):
    source = dn.Connection("d", backend="hdf5", directory=digits_dir).connect()
    stores = {}
    for name in ("resumed", "straight"):
        where = {"directory": tmp_path} if backend == "hdf5" else {}
        con = dn.Connection(f"{name}-{uuid.uuid4().hex[:8]}", backend=backend, **where).connect()
        con.create_dataset("x", data=source["x"][:], chunk_size=(256, 64))
        con.create_dataset("y", data=source["y"][:], chunk_size=(256,))
        stores[name] = con
    args = {"model": "m", "epochs": 4, "seed": 2, "progress": False}
    straight = train(stores["straight"], "x", "y", learner=_interrupting(kind, None, noisy), **args)
    con = stores["resumed"]
    with pytest.raises(_Interrupt):
        train(con, "x", "y", learner=_interrupting(kind, 1 + 2 * BATCHES_PER_EPOCH + 5, noisy), **args)
    assert ModelStore(con).manifest("m", 1)["state"] == FAILED
    result = train(con, "x", "y", learner=_interrupting(kind, None, noisy), resume=True, **args)
    assert result.version == 1 and ModelStore(con).versions("m") == [1]
    resumed = ModelStore(con).load("m", 1)
    expected = ModelStore(stores["straight"]).load("m", straight.version)
    assert {k: v.tobytes() for k, v in resumed.items()} == {k: v.tobytes() for k, v in expected.items()}
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]
    if noisy:  # without the restored RNG the noise would differ: the test can tell
        plain = train(stores["straight"], "x", "y", learner=_interrupting(kind, None, False), **args)
        assert (
            ModelStore(stores["straight"]).load("m", plain.version)["w1"].tobytes()
            != expected["w1"].tobytes()
        )


@pytest.fixture
def interrupted(digits):
    """A failed run of model 'm' with two epochs checkpointed."""
    args = {"model": "m", "epochs": 4, "seed": 2, "progress": False, "learner": "mlp"}
    with pytest.raises(_Interrupt):
        train(digits, "x", "y", **{**args, "learner": _interrupting("mlp", 1 + 2 * BATCHES_PER_EPOCH + 5)})
    return digits, {**args, "learner": _interrupting("mlp", None)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hyperparameters": {"lr": 0.01}}, "hyperparameters differ"),
        ({"hyperparameters": {"hidden": 32}}, "hyperparameters differ"),
        ({"epochs": 5}, "epochs differ"),
        ({"batch_size": 32}, "loader differ"),
        ({"seed": 3}, "loader differ"),
        ({"window": 2}, "loader differ"),
        ({"test_fraction": 0.3}, "train_rows differ"),
        ({"learner": "mlp"}, "learner differ"),
    ],
)
def test_resuming_with_other_settings_is_refused_before_anything_is_written(interrupted, change, message):
    con, args = interrupted
    store = ModelStore(con)
    before = store.manifest("m", 1)
    with pytest.raises(ResumeError, match=message):
        train(con, "x", "y", resume=True, **{**args, **change})
    assert store.manifest("m", 1) == before and store.versions("m") == [1]


def test_resuming_on_other_data_is_refused(interrupted):
    con, args = interrupted
    y = con["y"]
    y[0] = (int(y[0]) + 1) % 10
    with pytest.raises(ResumeError, match="the data differ"):
        train(con, "x", "y", resume=True, **args)
    assert ModelStore(con).versions("m") == [1]


def test_resume_without_an_unfinished_version_starts_a_new_one(digits):
    first = train(digits, "x", "y", model="m", epochs=1, resume=True, progress=False)
    second = train(digits, "x", "y", model="m", epochs=1, resume=True, progress=False)
    assert (first.version, second.version) == (1, 2)


def test_a_learner_without_training_state_cannot_resume_its_checkpoint(interrupted):
    con, args = interrupted
    from dosna.train.learners import MLP

    class Stateless(MLP):
        def training_state(self):
            return None

    def make(n_features, n_classes, seed=0, **hyper):
        return Stateless(n_features, n_classes, seed=seed, **hyper)

    with pytest.raises(ResumeError, match="no training_state"):
        train(con, "x", "y", resume=True, **{**args, "learner": make})


def test_checkpoints_replace_each_other_and_survive_killed_writers(tmp_path, monkeypatch):
    con = dn.Connection("c", backend="hdf5", directory=tmp_path).connect()
    store = ModelStore(con)
    run = store.begin("net")
    state = {"a": np.arange(3.0), "b": np.ones((2, 2))}
    run.checkpoint(1, state, {"step": 1})
    run.checkpoint(2, {k: v + 1 for k, v in state.items()}, {"step": 2})
    assert sorted(con.datasets()) == ["models.net.v1", "models.net.v1.c2-0", "models.net.v1.c2-1"]
    # a writer killed after writing some of epoch 3's arrays: its orphans are replaced
    manifest = store.manifest("net", 1)
    store._write_arrays(manifest, {"a": np.zeros(9)}, "checkpoint", lambda i: f"models.net.v1.c3-{i}")
    # a writer killed between the manifest write and deleting the previous checkpoint
    monkeypatch.setattr(ModelStore, "_delete_owned", lambda self, names, model, version: None)
    run.checkpoint(3, {k: v + 2 for k, v in state.items()}, {"step": 3})
    monkeypatch.undo()
    assert store.manifest("net", 1)["stale"] == ["models.net.v1.c2-0", "models.net.v1.c2-1"]
    run = store.reopen("net", 1)
    assert sorted(con.datasets()) == ["models.net.v1", "models.net.v1.c3-0", "models.net.v1.c3-1"]
    epoch, arrays, values = run.load_checkpoint()
    assert (epoch, values) == (3, {"step": 3})
    assert arrays["a"].tolist() == [2.0, 3.0, 4.0] and arrays["b"].tolist() == [[3.0, 3.0], [3.0, 3.0]]
    with pytest.raises(ValueError, match="epoch"):
        run.checkpoint(0, state, {})
    with pytest.raises(dn.ModelStateError, match="already holds"):
        run.checkpoint(3, state, {})
    run.finish({"w": np.ones(2)})
    assert sorted(con.datasets()) == ["models.net.v1", "models.net.v1.t0"]
    with pytest.raises(dn.ModelStateError, match="finished"):
        store.reopen("net", 1)


@requires_mpiexec
@pytest.mark.parametrize("victim", ["", "1"], ids=["every-rank", "rank-1-only"])
def test_an_mpi_run_killed_after_an_epoch_resumes_to_the_uninterrupted_model(digits_dir, tmp_path, victim):
    import shutil

    learners = tmp_path / "killable.py"
    learners.write_text(KILLABLE_LEARNERS)
    spec = f"{learners}:mlp"
    for name in ("killed", "straight"):
        shutil.copytree(digits_dir / "d", tmp_path / name / "d")
    env = {"DOSNA_MPI_TIMEOUT": "60"}

    def run(name, resume, kill_at=0):
        return python_mpi(
            2,
            TRAIN_SCRIPT,
            str(tmp_path / name),
            "mpi",
            spec,
            "5",
            resume,
            timeout=240,
            env={**env, "DOSNA_TEST_KILL_AT_CALL": str(kill_at), "DOSNA_TEST_KILL_RANK": victim},
        )

    straight = run("straight", "fresh")
    assert straight.returncode == 0, str(straight)
    batches = 12  # per rank and epoch: 1438 rows over two ranks in batches of 64
    # SIGKILL in epoch 4: every rank, or rank 1 alone (rank 0 is then stopped by mpiexec or
    # gives up waiting for it)
    killed = run("killed", "fresh", kill_at=1 + 3 * batches + 5)
    assert killed.returncode != 0 and "version" not in killed.output, str(killed)
    con = dn.Connection("d", backend="hdf5", directory=tmp_path / "killed").connect()
    manifest = ModelStore(con).manifest("m", 1)
    assert manifest["state"] == "running" and manifest["checkpoint"]["epoch"] == 3

    resumed = run("killed", "resume")
    assert resumed.returncode == 0, str(resumed)
    assert all("version 1 epochs 5" in "\n".join(resumed.rank_lines(r)) for r in (0, 1)), str(resumed)
    assert _stored_tensors(tmp_path / "killed") == _stored_tensors(tmp_path / "straight")  # bit-exact
    assert _epoch_history(tmp_path / "killed") == _epoch_history(tmp_path / "straight")
    assert ModelStore(con).versions("m") == [1]


@pytest.mark.parametrize(("every", "expected"), [(1, [1, 2, 3, 4]), (2, [2, 4]), (0, [])])
def test_checkpoint_every_sets_which_epochs_are_checkpointed(digits, monkeypatch, every, expected):
    from dosna.tensors import ModelRun

    seen = []
    real = ModelRun.checkpoint

    def recording(run, epoch, *args, **kwargs):
        seen.append(epoch)
        return real(run, epoch, *args, **kwargs)

    monkeypatch.setattr(ModelRun, "checkpoint", recording)
    train(digits, "x", "y", model="m", epochs=5, checkpoint_every=every, progress=False)
    assert seen == expected  # never after the last epoch: the finished model follows


def test_a_torch_run_resumes_from_its_last_epoch_to_the_uninterrupted_model(digits_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from dosna.train.learners import torch_mlp

    calls = [0]

    def make(stop_at, noisy):
        def factory(n_features, n_classes, seed=0, **hyper):
            net = torch_mlp(n_features, n_classes, seed=seed, **hyper)
            gradients = net.gradients

            def interrupting(x, y):
                calls[0] += 1
                if calls[0] == stop_at:
                    raise _Interrupt("stopped")
                loss, grads = gradients(x, y)
                if noisy:  # noise from torch's RNG: its state must survive a resume
                    grads = {k: g + 1e-3 * torch.randn(g.shape).numpy() for k, g in grads.items()}
                return loss, grads

            net.gradients = interrupting
            return net

        factory.__name__ = "make"
        return factory

    source = dn.Connection("d", backend="hdf5", directory=digits_dir).connect()
    stores = {}
    for name in ("resumed", "straight"):
        con = dn.Connection(name, backend="hdf5", directory=tmp_path).connect()
        con.create_dataset("x", data=source["x"][:], chunk_size=(256, 64))
        con.create_dataset("y", data=source["y"][:], chunk_size=(256,))
        stores[name] = con
    args = {"model": "t", "epochs": 4, "seed": 2, "progress": False}
    straight = train(stores["straight"], "x", "y", learner=make(None, True), **args)
    con = stores["resumed"]
    calls[0] = 0
    with pytest.raises(_Interrupt):
        train(con, "x", "y", learner=make(1 + 2 * BATCHES_PER_EPOCH + 5, True), **args)
    manifest = ModelStore(con).manifest("t", 1)
    assert manifest["state"] == FAILED and manifest["checkpoint"]["epoch"] == 2
    torch.manual_seed(12345)  # whatever the process did meanwhile
    result = train(con, "x", "y", learner=make(None, True), resume=True, **args)
    assert result.version == 1
    assert ModelStore(con).manifest("t", 1)["lineage"]["resumed"][0]["from_epoch"] == 2
    resumed = ModelStore(con).load("t", 1)
    expected = ModelStore(stores["straight"]).load("t", straight.version)
    assert {k: v.tobytes() for k, v in resumed.items()} == {k: v.tobytes() for k, v in expected.items()}
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]


def test_training_without_held_out_rows_records_no_test_accuracy(digits):
    result = train(digits, "x", "y", model="all", epochs=2, test_fraction=0, progress=False)
    assert result.metrics["test_accuracy"] is None
    assert [h["test_accuracy"] for h in result.history] == [None, None]
    assert "test accuracy -," in result.summary()
    assert ModelStore(digits).manifest("all", result.version)["state"] == FINISHED
