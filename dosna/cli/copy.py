"""``dosna copy SRC DST``: copy an array between dosna stores, zarr and HDF5 files (see :func:`dosna.copy`)."""

from __future__ import annotations

import argparse

from ..engines.base import Engine
from ..interop.copy import copy
from ..locations import parse_options
from .common import parse_ints

__all__ = ["add_command"]


def _engine(args: argparse.Namespace) -> Engine | None:
    if args.engine is None:
        return None
    from .. import registry

    return registry.get_engine_class(args.engine)(**parse_options(args.engine_options))


def _copy(args: argparse.Namespace) -> int:
    engine = _engine(args)
    chunks = parse_ints(args.chunks) if args.chunks else None
    compression = (
        False if args.compression is None else (None if args.compression == "none" else args.compression)
    )
    target = copy(
        args.src,
        args.dst,
        chunks=chunks[0] if chunks and len(chunks) == 1 else chunks,
        compression=compression,
        compression_opts=args.compression_opts,
        checksum=args.checksum,
        overwrite=args.overwrite,
        engine=engine,
        threads=args.threads,
        progress=not args.quiet,
    )
    if (engine is None or engine.is_root) and not args.quiet:
        print(f"copied {args.src} to {target}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``copy`` to ``sub``, the sub-parsers of the ``dosna`` command."""
    parser = sub.add_parser(
        "copy",
        help="copy an array between dosna stores, zarr and HDF5 files, chunk by chunk",
        description=(
            "Copy an array chunk by chunk, keeping dtype, fill value, attributes, dimension names "
            "and codec. SRC and DST are LOCATION::PATH: a dosna store and a dataset name "
            "(/data/store::volume), a zarr store and an array path (out.zarr, out.zarr::a/b, or on S3 "
            "s3://bucket/out.zarr?endpoint_url=http://host:7480::a/b), "
            "an HDF5 file and a dataset path (run.h5::/entry/data)."
        ),
    )
    parser.add_argument("src", help="what to copy, e.g. /data/store::volume or run.h5::/entry/data")
    parser.add_argument(
        "dst", help="where to, e.g. volume.zarr (a dosna store without ::NAME keeps the name)"
    )
    parser.add_argument("--chunks", help="target chunk shape, e.g. 64,64,64 (default: the source's)")
    parser.add_argument(
        "--compression", help="target compression: none, zstd, lz4, blosc, gzip (default: the source's)"
    )
    parser.add_argument("--compression-opts", type=int, help="compression level")
    check = parser.add_mutually_exclusive_group()
    check.add_argument(
        "--checksum", dest="checksum", action="store_true", default=None, help="checksum chunks"
    )
    check.add_argument("--no-checksum", dest="checksum", action="store_false", help="no chunk checksums")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target")
    parser.add_argument(
        "--threads", type=int, help="concurrent chunk copies per process (default: 4 or more)"
    )
    parser.add_argument("--engine", help="cpu, joblib, mpi (default: the dosna store's; mpi: under mpiexec)")
    parser.add_argument(
        "--engine-options", default="", metavar="K=V,...", help="engine options, e.g. njobs=4"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    parser.set_defaults(handler=_copy)
