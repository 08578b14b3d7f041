"""``dosna train``: train a model on datasets and save it with its lineage."""

from __future__ import annotations

import argparse

from ..locations import parse_options
from .common import add_connection_arguments, connect
from .jsonout import add_json_argument, print_json

__all__ = ["add_command"]


def _train(args: argparse.Namespace) -> int:
    from ..train import train

    with connect(args) as con:
        result = train(
            con,
            args.x,
            args.y,
            learner=args.learner,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            test_fraction=args.test_fraction,
            seed=args.seed,
            hyperparameters=parse_options(args.hyper),
            parent=args.parent,
            window=args.window,
            progress=not args.no_progress,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
        )
        if con.engine.is_root and args.json:
            print_json({"model": result.model, "version": result.version, "metrics": result.metrics})
        elif con.engine.is_root:
            print(result.summary())
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to ``sub``, the sub-parsers of the ``dosna`` command."""
    train = sub.add_parser("train", help="train a model on datasets, save it with lineage")
    train.add_argument("--x", required=True, help="dataset of samples (axis 0)")
    train.add_argument("--y", required=True, help="dataset of integer labels")
    train.add_argument(
        "--learner",
        default="mlp",
        help="softmax, mlp, torch-mlp, package.module:function or file.py:function "
        "(which executes that file: name only files you trust)",
    )
    train.add_argument("--model", help="model name (default: <x>-<learner>)")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--test-fraction", type=float, default=0.2, help="rows held out, from the end")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--hyper", default="", metavar="K=V,...", help="learner hyper-parameters, e.g. hidden=128"
    )
    train.add_argument("--parent", type=int, help="fine-tune from this version of the model")
    train.add_argument("--window", type=int, default=4, help="chunks shuffled together")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the model's newest unfinished version from its last checkpoint",
    )
    train.add_argument(
        "--checkpoint-every", type=int, default=1, metavar="K", help="checkpoint every K epochs (0: never)"
    )
    add_json_argument(train)
    add_connection_arguments(train, mode="r+")
    train.set_defaults(handler=_train)
