"""The inspection commands: ``dosna ls``, ``dosna info`` and ``dosna show``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from .indexing import parse_index

__all__ = ["add_commands", "dataset_summary", "human_size"]


def human_size(nbytes: float) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def dataset_summary(ds: Any, with_chunks: bool = True) -> dict[str, Any]:
    """A dataset's metadata, attributes and (optionally) which chunks are stored, as JSON values."""
    info: dict[str, Any] = {
        "name": ds.name,
        "shape": list(ds.shape),
        "dtype": ds.dtype.str,
        "chunk_size": list(ds.chunk_size),
        "chunk_grid": list(ds.chunk_grid),
        "total_chunks": ds.total_chunks,
        "fillvalue": ds.fillvalue.item() if hasattr(ds.fillvalue, "item") else ds.fillvalue,
        "nbytes": ds.nbytes,
        "backend": ds.connection.backend.name,
        "connection": ds.connection.name,
        "attrs": dict(ds.attrs),
    }
    if with_chunks:
        stored = sorted(ds.stored_chunks())
        info["chunks_stored"] = len(stored)
        info["stored_chunk_indices"] = [list(idx) for idx in stored]
    return info


def _ls(args: argparse.Namespace) -> int:
    from .cli import _table, connect

    with connect(args) as con:
        rows = [("NAME", "SHAPE", "DTYPE", "CHUNKS", "SIZE")]
        total = 0
        for name in sorted(con.datasets()):
            ds = con.get_dataset(name)
            total += ds.nbytes
            rows.append(
                (
                    name,
                    "x".join(map(str, ds.shape)) or "()",
                    str(ds.dtype),
                    "x".join(map(str, ds.chunk_size)) or "()",
                    human_size(ds.nbytes),
                )
            )
        if con.engine.is_root:
            if len(rows) == 1:
                print(f"no datasets in {con.backend.location}")
            else:
                print(_table(rows))
                print(f"{len(rows) - 1} datasets, {human_size(total)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .cli import connect

    with connect(args) as con:
        info = dataset_summary(con.get_dataset(args.name))
        if not con.engine.is_root:
            return 0
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        stored = info.pop("stored_chunk_indices")
        attrs = info.pop("attrs")
        for key, value in info.items():
            print(f"{key:>13}: {human_size(value) if key == 'nbytes' else value}")
        shown = ", ".join("(" + ",".join(map(str, idx)) + ")" for idx in stored[: args.max_chunks])
        more = f" ... and {len(stored) - args.max_chunks} more" if len(stored) > args.max_chunks else ""
        print(f"{'stored':>13}: {shown or 'none'}{more}")
        print(f"{'attrs':>13}: {json.dumps(attrs) if attrs else '{}'}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from .cli import connect

    key = parse_index(args.index)
    with connect(args) as con:
        ds = con.get_dataset(args.name)
        image = np.asarray(ds[key])
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


def save_image(image: np.ndarray, path: str, title: str, cmap: str = "viridis") -> None:
    """Render a 2-D array to a PNG with a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    shown = ax.imshow(np.real(image) if np.iscomplexobj(image) else image.astype(float), cmap=cmap)
    fig.colorbar(shown, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def add_commands(sub: Any, connection_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``ls``, ``info`` and ``show`` to the ``dosna`` command's sub-parsers."""
    ls = sub.add_parser("ls", help="the datasets with shape, dtype, chunks and size")
    connection_arguments(ls)
    ls.set_defaults(handler=_ls)

    info = sub.add_parser("info", help="a dataset's metadata, attributes and stored chunks")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--max-chunks", type=int, default=20, help="stored chunk indices listed (default 20)")
    connection_arguments(info)
    info.set_defaults(handler=_info)

    show = sub.add_parser("show", help="render a 2-D slice of a dataset as a PNG image")
    show.add_argument("name")
    show.add_argument("--index", required=True, help='e.g. "0,:,:" (must leave 2 axes)')
    show.add_argument("-o", "--output", help="PNG file (default NAME.png)")
    show.add_argument("--cmap", default="viridis", help="matplotlib colour map")
    connection_arguments(show)
    show.set_defaults(handler=_show)
