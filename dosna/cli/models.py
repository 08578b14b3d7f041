"""``dosna models list|show|load|export|import|delete``: the models saved in a store."""

from __future__ import annotations

import argparse
import json

from .common import add_connection_arguments, connect, table
from .jsonout import add_json_argument, print_json

__all__ = ["add_command"]


def _models(args: argparse.Namespace) -> int:
    from ..tensors import ModelStore, export_npz

    with connect(args) as con:
        store = ModelStore(con)
        root = con.engine.is_root
        if args.action == "list":
            rows = [("MODEL", "VERSION", "STATE", "TEST ACC", "TENSORS", "CREATED")]
            versions = []
            for name in store.models():
                for m in store.history(name):
                    versions.append(
                        {
                            "model": name,
                            **{k: m[k] for k in ("version", "state", "metrics", "created_at")},
                            "tensors": len(m["tensors"]),
                        }
                    )
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
            if root and args.json:
                print_json(versions)
            elif root:
                print(table(rows) if len(rows) > 1 else "no models")
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
        elif args.action in ("export", "import"):
            from ..model_files import export_model, import_model

            if args.action == "export":
                done = export_model(store, args.name, args.output, args.model_version, args.format)
            else:
                done = import_model(store, args.file, args.name, args.format)
            if root and args.json:
                print_json(done)
            elif root:
                verb = "exported" if args.action == "export" else "imported"
                print(
                    f"{verb} {done['model']} version {done['version']} "
                    f"({len(done['tensors'])} tensors, {done['format']}): {done['path']}"
                )
        else:
            store.delete(args.name, args.model_version)
            if root:
                print(f"deleted {args.name} version {args.model_version}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` and its actions to ``sub``, the sub-parsers of the ``dosna`` command."""
    models = sub.add_parser("models", help="list, show, load, export, import or delete saved models")
    models.set_defaults(handler=_models)
    msub = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    mlist = msub.add_parser("list", help="every model version with its state and metrics")
    add_json_argument(mlist)
    add_connection_arguments(mlist, mode="r")
    mshow = msub.add_parser("show", help="a version's manifest (JSON)")
    add_connection_arguments(mshow, mode="r")
    mshow.add_argument("name")
    mshow.add_argument("--version", dest="model_version", default="latest")
    mload = msub.add_parser("load", help="write a version's tensors to a .npz file")
    add_connection_arguments(mload, mode="r")
    mload.add_argument("name")
    mload.add_argument("--version", dest="model_version", default="latest")
    mload.add_argument("-o", "--output", required=True, help="the .npz file to write")
    formats = "safetensors or npz (default: from the file's suffix)"
    mexport = msub.add_parser("export", help="write a version's tensors and lineage to a safetensors or npz file")
    add_json_argument(mexport)
    add_connection_arguments(mexport, mode="r")
    mexport.add_argument("name")
    mexport.add_argument("--version", dest="model_version", default="latest")
    mexport.add_argument("--format", choices=("safetensors", "npz"), help=formats)
    mexport.add_argument("-o", "--output", required=True, help="the file to write")
    mimport = msub.add_parser("import", help="save a safetensors or npz file's tensors as a new version")
    add_json_argument(mimport)
    add_connection_arguments(mimport, mode="a")
    mimport.add_argument("file")
    mimport.add_argument("--name", required=True, help="the model to add a version to")
    mimport.add_argument("--format", choices=("safetensors", "npz"), help=formats)
    mdel = msub.add_parser("delete", help="delete one version")
    add_connection_arguments(mdel, mode="r+")
    mdel.add_argument("name")
    mdel.add_argument("model_version", metavar="VERSION", type=int)
