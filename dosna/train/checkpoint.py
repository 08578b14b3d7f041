"""Checkpoints of a training run, kept in its model version, and resuming from them.

After every epoch the runner stores the learner's training state (parameters
and optimizer state as datasets, the rest as JSON) with the loop position and
the metrics history in the running version (:meth:`ModelRun.checkpoint`). A
run killed at any point leaves the last complete checkpoint. ``train(...,
resume=True)`` continues the newest unfinished version of the model from it,
after checking that the settings and the data are the ones it was made with:
the order of every epoch depends only on the seed, the epoch and the rows, so
the continued run makes exactly the updates the uninterrupted one would have.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any

from .errors import ResumeError

if TYPE_CHECKING:
    from ..tensors import ModelRun, ModelStore
    from .learners import Learner

__all__ = ["Progress", "find_resumable", "lineage_differences", "restore", "resumed_entry", "save"]

# Lineage entries that must be the same for a run to continue: together they fix
# every update. The engine and the store's location may change.
_SAME = ("train_rows", "test_rows", "loader", "learner", "hyperparameters", "epochs", "n_classes")
_DATA_FIELDS = ("role", "name", "shape", "dtype", "chunk_size", "fingerprint")


class Progress:
    """Where a run is: epochs completed, their metrics, seconds spent so far."""

    def __init__(self, epoch: int = 0, history: list[dict[str, Any]] | None = None, seconds: float = 0.0):
        self.epoch, self.history, self.seconds = epoch, list(history or []), float(seconds)


def _data(lineage: dict[str, Any]) -> list[dict[str, Any]]:
    datasets = lineage.get("datasets")
    if not isinstance(datasets, list):
        return []
    return [{k: d.get(k) for k in _DATA_FIELDS} if isinstance(d, dict) else d for d in datasets]


def lineage_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpointed run's lineage and a new request's, in words."""
    problems = []
    if _data(saved) != _data(current):
        problems.append(
            f"the data differ (checkpoint {_data(saved)}, now {_data(current)}: names, shapes, dtypes, "
            "chunks or content fingerprints)"
        )
    for key in _SAME:
        if saved.get(key) != current.get(key):
            problems.append(f"{key} differ (checkpoint {saved.get(key)!r}, now {current.get(key)!r})")
    was = (saved.get("sharding") or {}).get("world_size")
    now = current["sharding"]["world_size"]
    if was != now:
        problems.append(f"the number of ranks differs (checkpoint {was}, now {now})")
    return problems


def find_resumable(
    store: ModelStore, model: str, lineage: dict[str, Any], parent: int | None, learner: Learner
) -> dict[str, Any] | None:
    """The manifest of the version a resumed run continues, or None when there is none to continue.

    That is the newest version of ``model`` when it is running or failed. Raises
    :class:`ResumeError` when it was made with other settings or data, or holds
    a checkpoint this learner cannot restore. Nothing is written.
    """
    manifest = store.latest_unfinished(model)
    if manifest is None:
        return None
    version = manifest["version"]
    problems = lineage_differences(manifest["lineage"], lineage)
    if manifest["parent"] != parent:
        problems.append(f"the parent version differs (checkpoint {manifest['parent']}, now {parent})")
    if manifest["checkpoint"] is not None and learner.training_state() is None:
        problems.append(f"the learner {type(learner).__name__} has no training_state() to restore")
    if problems:
        raise ResumeError(
            f"cannot resume model {model!r} version {version} ({manifest['state']}): "
            + "; ".join(problems)
            + ". Resume with the settings and data it was started with, or train without resume"
        )
    return manifest


def resumed_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """The lineage's record of resumptions of the version ``manifest`` describes, with this one appended."""
    checkpoint = manifest["checkpoint"]
    earlier = manifest["lineage"].get("resumed")
    entry = {
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "from_epoch": 0 if checkpoint is None else checkpoint["epoch"],
        "state_was": manifest["state"],
    }
    return {"resumed": (earlier if isinstance(earlier, list) else []) + [entry]}


def save(run: ModelRun, learner: Learner, progress: Progress, metrics: dict[str, Any]) -> bool:
    """Checkpoint the run after ``progress.epoch`` epochs; False if the learner has no state."""
    state = learner.training_state()
    if state is None:
        return False
    arrays, values = state
    run.checkpoint(
        progress.epoch,
        arrays,
        {"learner": values, "history": progress.history, "seconds": progress.seconds},
        metrics=metrics,
    )
    return True


def restore(run: ModelRun, learner: Learner) -> Progress:
    """Put the learner in the state of the run's checkpoint; where the run is (epoch 0 without one)."""
    found = run.load_checkpoint()
    if found is None:
        return Progress()
    epoch, arrays, values = found
    if (
        set(values) != {"learner", "history", "seconds"}
        or not isinstance(values["learner"], dict)
        or not isinstance(values["history"], list)
        or len(values["history"]) != epoch
        or isinstance(values["seconds"], bool)
        or not isinstance(values["seconds"], (int, float))
    ):
        raise ResumeError(
            f"model {run.model!r} version {run.version}: the checkpoint's values are not a runner's"
        )
    try:
        learner.load_training_state(arrays, values["learner"])
    except (ValueError, NotImplementedError) as exc:
        raise ResumeError(
            f"model {run.model!r} version {run.version}: cannot restore the checkpoint: {exc}"
        ) from exc
    return Progress(epoch, values["history"], values["seconds"])
