"""``dosna bench``: time an access pattern over chunk shapes (see :mod:`dosna.bench`)."""

from __future__ import annotations

import argparse

from ..bench import (
    PATTERNS,
    best_result,
    parse_chunk_shapes,
    parse_codecs,
    run_sweep,
    sweep_config,
    write_outputs,
)
from ..extras import require
from .common import add_connection_arguments, connect, parse_ints
from .jsonout import add_json_argument, print_json

__all__ = ["add_command"]


def _bench(args: argparse.Namespace) -> int:
    require("matplotlib", "plots", "dosna bench (its plot)")
    shape = parse_ints(args.shape)
    chunk_shapes = parse_chunk_shapes(args.chunks, len(shape))
    block = parse_ints(args.block) if args.block else None
    with connect(args) as con:
        results = run_sweep(
            con,
            shape,
            args.dtype,
            chunk_shapes,
            args.pattern,
            block,
            args.count,
            args.repeat,
            args.seed,
            progress=not args.no_progress,
            codecs=parse_codecs(args.codecs),
            smooth=None if args.data is None else args.data == "smooth",
        )
        if not con.engine.is_root:
            return 0
        config = sweep_config(
            con,
            shape,
            args.dtype,
            args.pattern,
            block,
            args.count,
            args.repeat,
            con.backend.name,
            con.engine.name,
        )
        config["codecs"] = [r for r in dict.fromkeys(r.codec for r in results)]
        paths = write_outputs(results, config, args.out)
        best = best_result(results)
        if args.json:
            print_json(
                {
                    "config": config,
                    "results": [r.row() for r in results],
                    "best": best.row(),
                    "outputs": paths,
                }
            )
            return 0
        for r in results:
            ratio = "" if r.ratio is None else f"  ratio {r.ratio:6.2f}"
            print(
                f"{r.codec:>6} {'x'.join(map(str, r.chunk_shape)):>16}  {r.mb_per_s:10.1f} MB/s  "
                f"best {r.best * 1e3:9.2f} ms{ratio}"
            )
        codec = f" with {best.codec}" if len(config["codecs"]) > 1 else ""
        print(
            f"best chunk shape for {args.pattern}: {'x'.join(map(str, best.chunk_shape))}{codec} "
            f"({best.mb_per_s:.1f} MB/s); wrote {', '.join(paths.values())}"
        )
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to ``sub``, the sub-parsers of the ``dosna`` command."""
    bench = sub.add_parser("bench", help="time an access pattern over chunk shapes; JSON, CSV and a plot")
    bench.add_argument("--shape", required=True, help="array shape, e.g. 256,256,256")
    bench.add_argument("--dtype", default="f4")
    bench.add_argument(
        "--chunks", required=True, help='chunk shapes: "16,32,64" (cubes) or "16x64x64;32x32x32"'
    )
    bench.add_argument("--pattern", default="full-read", choices=PATTERNS)
    bench.add_argument(
        "--codecs",
        default="none",
        help="compressions to sweep too, e.g. none,zstd,lz4,blosc,gzip (default none)",
    )
    bench.add_argument(
        "--data",
        choices=("random", "smooth"),
        default=None,
        help="test data: uniform random, or a smooth field with noise (default: smooth when compressing)",
    )
    bench.add_argument("--block", help="block shape for aligned/unaligned; batch size first for batches")
    bench.add_argument("--count", type=int, default=32, help="selections per repeat for random patterns")
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--out", default="dosna-bench", help="output directory (default ./dosna-bench)")
    bench.add_argument("--no-progress", action="store_true")
    add_json_argument(bench)
    add_connection_arguments(bench)
    bench.set_defaults(handler=_bench)
