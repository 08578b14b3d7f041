"""Training from dosna datasets: a parallel batch loader, learners and a runner.

>>> from dosna.train import BatchLoader, train          # doctest: +SKIP
>>> result = train(con, "digits.x", "digits.y", learner="mlp", epochs=20)   # doctest: +SKIP
>>> result.summary()                                     # doctest: +SKIP
"""

from __future__ import annotations

from .learners import Learner, resolve_learner
from .loader import BatchLoader, epoch_order, shard_of
from .runner import TrainResult, train

__all__ = ["BatchLoader", "Learner", "TrainResult", "epoch_order", "resolve_learner", "shard_of", "train"]
