"""The training runner: streams batches from dosna, fits a learner, saves the model with lineage.

Under ``mpiexec`` with the mpi engine the run is data-parallel: every rank
reads its own shard of each epoch, gradients are averaged over ranks with an
allreduce (weighted by batch size, so the average is the one a single process
would compute over the union of the batches), every rank applies the same
update, and the model is saved once.

After every epoch the run is checkpointed in its model version (see
:mod:`dosna.train.checkpoint`); ``resume=True`` continues a killed run from
its last completed epoch, to the same final model.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..progress import progress_bar
from ..tensors import ModelStore, dataset_fingerprint
from . import checkpoint
from .learners import Learner, resolve_learner
from .loader import BatchLoader

if TYPE_CHECKING:
    from ..connection import Connection
    from ..dataset import Dataset

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """What a finished run produced."""

    model: str
    version: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    learner: Learner | None = None

    def summary(self) -> str:
        m = self.metrics
        accuracy = "-" if m["test_accuracy"] is None else f"{m['test_accuracy']:.4f}"
        return (
            f"model {self.model} version {self.version}: test accuracy {accuracy}, "
            f"train loss {m['train_loss']:.4f}, {m['epochs']} epochs in {m['seconds']:.1f} s "
            f"({m['samples_per_second']:,.0f} samples/s)"
        )


def _default_model_name(learner: str, x_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "-", f"{x_name}-{learner}")[:100]


def _describe(ds: Dataset, role: str, fingerprint: str) -> dict[str, Any]:
    con = ds.connection
    return {
        "role": role,
        "name": ds.name,
        "shape": list(ds.shape),
        "dtype": ds.dtype.str,
        "chunk_size": list(ds.chunk_size),
        "fingerprint": fingerprint,
        "backend": con.backend.name,
        "connection": con.name,
    }


class _Reducer:
    """Sums gradients (and bookkeeping numbers) over ranks; any rank's failure stops all."""

    def __init__(self, engine: Any, template: dict[str, np.ndarray]) -> None:
        self.engine = engine
        self.names = sorted(template)
        self.shapes = [np.shape(template[n]) for n in self.names]
        self.sizes = [int(np.prod(s)) for s in self.shapes]

    def weighted_mean(
        self, grads: dict[str, np.ndarray] | None, weight: int, loss: float, problem: BaseException | None
    ) -> tuple[dict[str, np.ndarray], float, int]:
        vector = np.zeros(sum(self.sizes) + 2)
        if grads is not None and problem is None:
            vector[:-2] = np.concatenate([np.ravel(grads[n]) * weight for n in self.names])
            vector[-2:] = loss * weight, weight
        total = self.engine.allreduce(vector, problem)
        count = int(total[-1])
        parts = np.split(total[:-2] / max(count, 1), np.cumsum(self.sizes)[:-1])
        mean = {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes)}
        return mean, float(total[-2]) / max(count, 1), count


def _evaluate(learner: Learner, loader: BatchLoader, engine: Any) -> float | None:
    """The accuracy on the held-out rows; None when there are none (``test_fraction=0``)."""
    correct = seen = 0
    problem = None
    try:
        for xb, yb in loader.epoch(0):
            correct += int((learner.predict(xb) == np.asarray(yb).reshape(-1)).sum())
            seen += len(xb)
    except Exception as exc:
        problem = exc
    total = engine.allreduce(np.array([correct, seen], dtype=np.float64), problem)
    return float(total[0] / total[1]) if total[1] else None


def train(
    connection: Connection,
    x: str | Dataset,
    y: str | Dataset,
    *,
    learner: str | Any = "mlp",
    model: str | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    test_fraction: float = 0.2,
    seed: int = 0,
    hyperparameters: dict[str, Any] | None = None,
    parent: int | None = None,
    window: int = 4,
    prefetch: int | None = None,
    progress: bool = True,
    store: ModelStore | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
) -> TrainResult:
    """Train a classifier on datasets ``x`` (samples) and ``y`` (integer labels).

    The last ``test_fraction`` of the rows is held out for evaluation; the
    rest is streamed in shuffled mini-batches for ``epochs`` epochs. The model
    is saved in ``store`` (default: the same connection) under ``model`` as a
    new version: ``running`` while training, ``finished`` with its tensors and
    metrics at the end, ``failed`` (with the error) if anything raises, which
    is then re-raised. Earlier versions are never touched.

    Parameters
    ----------
    connection : Connection
        Where ``x`` and ``y`` are (any backend, any engine).
    x, y : str or Dataset
        Samples along axis 0 (any trailing shape, flattened for the learner)
        and their class labels (0 ... n_classes-1).
    learner : str or callable
        ``softmax``, ``mlp``, ``torch-mlp``, ``package.module:function``,
        ``path/to/file.py:function`` or a factory (see :mod:`dosna.train.learners`).
    model : str, optional
        Model name (default ``<x>-<learner>``).
    epochs, batch_size, seed, window, prefetch
        Training loop and loader settings (see :class:`BatchLoader`).
    test_fraction : float
        Share of rows held out (from the end), in [0, 1).
    hyperparameters : dict, optional
        Passed to the learner factory (e.g. ``{"hidden": 128, "lr": 0.001}``).
    parent : int, optional
        Fine-tune from this version of ``model``.
    progress : bool
        Show a progress bar (on the root rank).
    resume : bool
        Continue the newest version of ``model`` if it is unfinished (killed
        or failed): from its last checkpoint (the end of an epoch), with the
        learner's parameters and optimizer state, to the model an
        uninterrupted run would make. The settings and the data must be the
        ones it was started with (else :class:`~dosna.train.errors.ResumeError`,
        before anything is written). Without an unfinished version a new one
        is started, so a re-queued job can always pass ``resume=True``. Do
        not resume a run that is still going.
    checkpoint_every : int
        Checkpoint after every this many epochs (0: never; the last epoch is
        followed by the finished model instead). A checkpoint costs a write of
        the parameters and the optimizer state.

    Returns
    -------
    TrainResult
    """
    engine = connection.engine
    x_ds = connection.get_dataset(x) if isinstance(x, str) else x
    y_ds = connection.get_dataset(y) if isinstance(y, str) else y
    n = x_ds.shape[0] if x_ds.shape else 0
    if not x_ds.shape or y_ds.shape[:1] != (n,):
        raise ValueError(f"x and y need the same number of rows, got shapes {x_ds.shape} and {y_ds.shape}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
    n_train = n - round(n * test_fraction)
    if n_train < 1:
        raise ValueError(f"no training rows left: {n} rows, test_fraction {test_fraction}")
    if y_ds.dtype.kind not in "iub":
        raise TypeError(f"labels must be integers, {y_ds.name!r} holds {y_ds.dtype}")

    hyperparameters = dict(hyperparameters or {})
    labels = np.asarray(y_ds[...]).reshape(-1)
    n_classes = int(hyperparameters.pop("n_classes", int(labels.max()) + 1))
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, {y_ds.name!r} holds {labels.min()}")
    n_features = int(np.prod(x_ds.shape[1:], dtype=np.int64))
    learner_name = learner if isinstance(learner, str) else getattr(learner, "__name__", "custom")
    model = model or _default_model_name(learner_name, x_ds.name)
    net = resolve_learner(learner)(n_features, n_classes, seed=seed, **hyperparameters)
    store = store or ModelStore(connection)
    if parent is not None:
        net.load_state_dict(store.load(model, parent))

    loader = BatchLoader(
        x_ds, y_ds, batch_size=batch_size, rows=(0, n_train), seed=seed, window=window, prefetch=prefetch
    )
    test_loader = BatchLoader(
        x_ds, y_ds, batch_size=max(batch_size, 256), rows=(n_train, n), shuffle=False, prefetch=prefetch
    )
    # One small step on the first row: the gradient layout, and a learner that
    # cannot even run fails here, before a version is reserved.
    _, template = net.gradients(np.asarray(x_ds[0:1]), np.asarray(y_ds[0:1]))
    reducer = _Reducer(engine, template)

    fingerprints = engine.collective(lambda: [dataset_fingerprint(x_ds), dataset_fingerprint(y_ds)])
    lineage = {
        "datasets": [_describe(x_ds, "x", fingerprints[0]), _describe(y_ds, "y", fingerprints[1])],
        "train_rows": [0, n_train],
        "test_rows": [n_train, n],
        "sharding": {
            "world_size": loader.shard[1],
            "rule": "rank r takes the r-th of world_size contiguous stretches of each epoch's order",
            "samples_per_rank": [loader.shard_samples(r) for r in range(loader.shard[1])],
        },
        "loader": {
            "batch_size": loader.batch_size,
            "seed": seed,
            "window": loader.window,
            "block_rows": loader.block_rows,
            "order": "chunk-aware shuffle",
        },
        "learner": learner_name,
        "hyperparameters": net.hyperparameters,
        "epochs": int(epochs),
        "engine": engine.name,
        "n_classes": n_classes,
    }
    parent = None if parent is None else store.resolve(model, parent)
    resumable = checkpoint.find_resumable(store, model, lineage, parent, net) if resume else None
    if resumable is not None:
        run = store.reopen(model, resumable["version"], lineage=checkpoint.resumed_entry(resumable))
    else:
        run = store.begin(model, lineage=lineage, parent=parent)
    started = time.perf_counter()
    with run:
        done = checkpoint.restore(run, net) if resumable is not None else checkpoint.Progress()
        history = done.history
        bar = progress_bar(
            progress and engine.is_root,
            (int(epochs) - done.epoch) * loader.max_batches,
            f"{model} v{run.version}",
            unit="batch",
        )
        try:
            for epoch in range(done.epoch, int(epochs)):
                epoch_start = time.perf_counter()
                loss_sum = seen = 0.0
                batches = iter(loader.epoch(epoch))
                for _ in range(loader.max_batches):
                    grads, weight, loss, problem = None, 0, 0.0, None
                    try:
                        batch = next(batches, None)
                        if batch is not None:
                            loss, grads = net.gradients(*batch)
                            weight = len(batch[0])
                    except Exception as exc:
                        problem = exc
                    mean, batch_loss, count = reducer.weighted_mean(grads, weight, loss, problem)
                    net.step(mean)
                    loss_sum += batch_loss * count
                    seen += count
                    bar.update(1)
                train_loss = loss_sum / max(seen, 1)
                accuracy = _evaluate(net, test_loader, engine)
                history.append(
                    {
                        "epoch": epoch,
                        "train_loss": train_loss,
                        "test_accuracy": accuracy,
                        "seconds": time.perf_counter() - epoch_start,
                    }
                )
                shown = "-" if accuracy is None else f"{accuracy:.4f}"
                bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=shown)
                progress_metrics = {
                    "epochs_done": epoch + 1,
                    "train_loss": train_loss,
                    "test_accuracy": accuracy,
                }
                reached = checkpoint.Progress(
                    epoch + 1, history, done.seconds + time.perf_counter() - started
                )
                due = checkpoint_every and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < int(epochs)
                if not (due and checkpoint.save(run, net, reached, progress_metrics)):
                    run.update(metrics=progress_metrics)
        finally:
            bar.close()
        seconds = done.seconds + time.perf_counter() - started
        metrics = {
            "train_loss": history[-1]["train_loss"],
            "test_accuracy": history[-1]["test_accuracy"],
            "epochs": int(epochs),
            "seconds": seconds,
            "samples_per_second": n_train * (int(epochs) - done.epoch) / (seconds - done.seconds),
            "history": history,
        }
        run.finish(net.state_dict(), metrics=metrics)
    return TrainResult(model, run.version, metrics, history, net)
