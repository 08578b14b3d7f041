"""The ``dosna`` command.

    dosna ls      --backend hdf5 --connection DIR
    dosna info    NAME --backend hdf5 --connection DIR
    dosna show    NAME --index "0,:,:" -o slice.png --backend hdf5 --connection DIR
    dosna train   --x digits.x --y digits.y --learner mlp --epochs 20 --backend hdf5 --connection DIR
    dosna models  list|show|load|delete ... --backend hdf5 --connection DIR
    dosna bench   --shape 512,512,512 --chunks 32,64,128 --pattern full-read --backend hdf5 --connection DIR

Every command takes ``--backend``, ``--connection``, ``--connection-options k=v,...``,
``--engine`` and ``--engine-options``; run it under ``mpiexec`` with ``--engine mpi``
where that makes sense (train, bench). Exit status: 0 on success, 1 when the
operation fails, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import DosnaError
from .locations import open_connection, parse_options

__all__ = ["main"]


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the data is")
    group.add_argument("--backend", default="hdf5", help="ram, hdf5, ceph, s3 (default: hdf5)")
    group.add_argument(
        "--connection",
        required=True,
        help="hdf5: a directory; ceph: the pool; s3: the bucket; ram: a name",
    )
    group.add_argument(
        "--connection-options",
        default="",
        metavar="K=V,...",
        help="backend options, e.g. conffile=/etc/ceph/ceph.conf or endpoint_url=http://...",
    )
    group.add_argument("--engine", default="cpu", help="cpu, joblib, mpi (default: cpu)")
    group.add_argument("--engine-options", default="", metavar="K=V,...", help="engine options, e.g. njobs=4")


def connect(args: argparse.Namespace):
    """The connection described by the common arguments."""
    return open_connection(
        args.backend, args.connection, args.engine, args.connection_options, args.engine_options
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dosna",
        description="Chunked N-dimensional arrays in object stores.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dosna {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on datasets, save it with lineage")
    train.add_argument("--x", required=True, help="dataset of samples (axis 0)")
    train.add_argument("--y", required=True, help="dataset of integer labels")
    train.add_argument(
        "--learner",
        default="mlp",
        help="softmax, mlp, torch-mlp, package.module:function or file.py:function",
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
    _connection_arguments(train)
    train.set_defaults(handler=_train)

    models = sub.add_parser("models", help="list, show, load or delete saved models")
    models.set_defaults(handler=_models)
    msub = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    mlist = msub.add_parser("list", help="every model version with its state and metrics")
    _connection_arguments(mlist)
    mshow = msub.add_parser("show", help="a version's manifest (JSON)")
    mshow.add_argument("name")
    mshow.add_argument("--version", dest="model_version", default="latest")
    _connection_arguments(mshow)
    mload = msub.add_parser("load", help="write a version's tensors to a .npz file")
    mload.add_argument("name")
    mload.add_argument("--version", dest="model_version", default="latest")
    mload.add_argument("-o", "--output", required=True, help="the .npz file to write")
    _connection_arguments(mload)
    mdel = msub.add_parser("delete", help="delete one version")
    mdel.add_argument("name")
    mdel.add_argument("model_version", metavar="VERSION", type=int)
    _connection_arguments(mdel)

    from . import bench, inspection

    inspection.add_commands(sub, _connection_arguments)
    bench.add_command(sub, _connection_arguments)
    return parser


def _train(args: argparse.Namespace) -> int:
    from .train import train

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
        if con.engine.is_root:
            print(result.summary())
    return 0


def _models(args: argparse.Namespace) -> int:
    from .tensors import ModelStore, export_npz

    with connect(args) as con:
        store = ModelStore(con)
        root = con.engine.is_root
        if args.action == "list":
            rows = [("MODEL", "VERSION", "STATE", "TEST ACC", "TENSORS", "CREATED")]
            for name in store.models():
                for m in store.history(name):
                    acc = m["metrics"].get("test_accuracy")
                    rows.append(
                        (
                            name,
                            str(m["version"]),
                            m["state"],
                            "-" if acc is None else f"{acc:.4f}",
                            str(len(m["tensors"])),
                            m["created_at"],
                        )
                    )
            if root:
                print(_table(rows) if len(rows) > 1 else "no models")
        elif args.action == "show":
            manifest = store.manifest(args.name, args.model_version)
            if root:
                print(json.dumps(manifest, indent=2))
        elif args.action == "load":
            tensors = store.load(args.name, args.model_version)
            if root:
                path = export_npz(args.output, tensors)
                shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in tensors.items())
                print(f"wrote {len(tensors)} tensors to {path}: {shapes}")
        else:
            store.delete(args.name, args.model_version)
            if root:
                print(f"deleted {args.name} version {args.model_version}")
    return 0


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dosna`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (DosnaError, ValueError, TypeError, KeyError, OSError, ImportError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"dosna {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dosna {args.command}: interrupted", file=sys.stderr)
        return 130


def _run() -> Any:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    _run()
