"""``dosna ls``, ``dosna info`` and ``dosna show``: look at the datasets of a store."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..extras import require
from ..inspection import dataset_summary, human_size, list_datasets, save_image
from .common import add_connection_arguments, connect, parse_index, table
from .jsonout import add_json_argument, print_json

__all__ = ["add_commands"]


def _ls(args: argparse.Namespace) -> int:
    with connect(args) as con:
        listing = list_datasets(con)
        if con.engine.is_root and args.json:
            print_json(listing)
        elif con.engine.is_root:
            if not listing:
                print(f"no datasets in {con.backend.location}")
            else:
                rows = [("NAME", "SHAPE", "DTYPE", "CHUNKS", "SIZE")]
                rows += [
                    (
                        d["name"],
                        "x".join(map(str, d["shape"])) or "()",
                        str(d["dtype"]),
                        "x".join(map(str, d["chunk_size"])) or "()",
                        human_size(d["nbytes"]),
                    )
                    for d in listing
                ]
                print(table(rows))
                print(f"{len(listing)} datasets, {human_size(sum(d['nbytes'] for d in listing))}")
    return 0


def _info(args: argparse.Namespace) -> int:
    with connect(args) as con:
        info = dataset_summary(con.get_dataset(args.name))
        if not con.engine.is_root:
            return 0
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        stored = info.pop("stored_chunk_indices")
        attrs = info.pop("attrs")
        for key in ("compression", "compression_opts", "shuffle", "checksum"):
            info.pop(key)
        for key, value in info.items():
            shown_value = human_size(value) if key in ("nbytes", "nbytes_stored") else value
            if key == "ratio":
                shown_value = "-" if value is None else f"{value:.2f}x (raw chunk bytes / stored bytes)"
            print(f"{key:>13}: {shown_value}")
        shown = ", ".join("(" + ",".join(map(str, idx)) + ")" for idx in stored[: args.max_chunks])
        more = f" ... and {len(stored) - args.max_chunks} more" if len(stored) > args.max_chunks else ""
        print(f"{'stored':>13}: {shown or 'none'}{more}")
        print(f"{'attrs':>13}: {json.dumps(attrs) if attrs else '{}'}")
    return 0


def _show(args: argparse.Namespace) -> int:
    require("matplotlib", "plots", "dosna show")
    key = parse_index(args.index)
    with connect(args) as con:
        image = np.asarray(con.get_dataset(args.name)[key])
        if image.ndim != 2:
            raise ValueError(
                f"{args.name}[{args.index}] has shape {image.shape}; pick an index that leaves 2 axes"
            )
        if not con.engine.is_root:
            return 0
        output = args.output or f"{args.name}.png"
        save_image(image, output, f"{args.name}[{args.index}]", args.cmap)
        print(
            f"wrote {output}: {args.name}[{args.index}], shape {image.shape}, "
            f"min {image.min():.6g}, max {image.max():.6g}"
        )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``ls``, ``info`` and ``show`` to ``sub``, the sub-parsers of the ``dosna`` command."""
    ls = sub.add_parser("ls", help="the datasets with shape, dtype, chunks and size")
    add_json_argument(ls)
    add_connection_arguments(ls, mode="r")
    ls.set_defaults(handler=_ls)

    info = sub.add_parser("info", help="a dataset's metadata, attributes and stored chunks")
    add_connection_arguments(info, mode="r")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--max-chunks", type=int, default=20, help="stored chunk indices listed (default 20)")
    info.set_defaults(handler=_info)

    show = sub.add_parser("show", help="render a 2-D slice of a dataset as a PNG image")
    add_connection_arguments(show, mode="r")
    show.add_argument("name")
    show.add_argument("--index", required=True, help='e.g. "0,:,:" (must leave 2 axes)')
    show.add_argument("-o", "--output", help="PNG file (default NAME.png)")
    show.add_argument("--cmap", default="viridis", help="matplotlib colour map")
    show.set_defaults(handler=_show)
