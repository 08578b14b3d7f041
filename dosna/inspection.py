"""What the inspection commands ``dosna ls``, ``dosna info`` and ``dosna show`` report.

Plain functions of a connection or a dataset that return data (or write an
image); the commands themselves, with their options and printing, are in
:mod:`dosna.cli.inspect`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["dataset_summary", "human_size", "list_datasets", "save_image"]


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
        "codec": ds.meta.codec.describe(),
        "compression": ds.compression,
        "compression_opts": ds.compression_opts,
        "shuffle": ds.shuffle,
        "checksum": ds.checksum,
        "backend": ds.connection.backend.name,
        "connection": ds.connection.name,
        "attrs": dict(ds.attrs),
    }
    if with_chunks:
        stored = sorted(ds.stored_chunks())
        info["chunks_stored"] = len(stored)
        info["nbytes_stored"] = ds.nbytes_stored
        # raw bytes of the stored chunks over the bytes they take: the compression ratio
        raw = len(stored) * int(np.prod(ds.chunk_size, dtype=np.int64)) * ds.dtype.itemsize
        info["ratio"] = round(raw / info["nbytes_stored"], 3) if info["nbytes_stored"] else None
        info["stored_chunk_indices"] = [list(idx) for idx in stored]
    return info


def list_datasets(con: Any) -> list[dict[str, Any]]:
    """What ``dosna ls`` lists: every dataset of a connection, sorted by name.

    Parameters
    ----------
    con : Connection
        An open connection.

    Returns
    -------
    list of dict
        One dict per dataset with ``name``, ``shape`` (tuple), ``dtype``
        (numpy.dtype), ``chunk_size`` (tuple) and ``nbytes``.
    """
    listing = []
    for name in sorted(con.datasets()):
        ds = con.get_dataset(name)
        listing.append(
            {
                "name": name,
                "shape": ds.shape,
                "dtype": ds.dtype,
                "chunk_size": ds.chunk_size,
                "nbytes": ds.nbytes,
            }
        )
    return listing


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
