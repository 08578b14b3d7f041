"""The ``dosna`` command.

    dosna ls      --backend hdf5 --connection DIR
    dosna info    NAME --backend hdf5 --connection DIR
    dosna show    NAME --index "0,:,:" -o slice.png --backend hdf5 --connection DIR
    dosna train   --x digits.x --y digits.y --learner mlp --epochs 20 --backend hdf5 --connection DIR
    dosna models  list|show|load|export|import|delete ... --backend hdf5 --connection DIR
    dosna bench   --shape 512,512,512 --chunks 32,64,128 --pattern full-read --backend hdf5 --connection DIR
    dosna fsck    DIR [--repair] [--min-age SECONDS] [--chunks]
    dosna copy    DIR::volume volume.zarr          (dosna stores, zarr, HDF5 files: LOCATION::PATH)

Every command takes the store as its first argument (a directory or a URL such as
``s3://bucket/run1``) or as ``--backend`` and ``--connection``, and
``--connection-options k=v,...``, ``--engine`` and ``--engine-options``; run it under ``mpiexec`` with ``--engine mpi``
where that makes sense (train, bench). Exit status: 0 on success, 1 when the
operation fails (one line on stderr: ``dosna <command>: error: <message>``; add
``--debug`` or set ``DOSNA_DEBUG=1`` for the traceback), 2 for bad usage
(argparse's message), 130 when interrupted.

One module a command group: :mod:`~dosna.cli.train`, :mod:`~dosna.cli.models`,
:mod:`~dosna.cli.inspect` (ls, info, show), :mod:`~dosna.cli.bench`,
:mod:`~dosna.cli.fsck` and :mod:`~dosna.cli.copy`, with
what they share in :mod:`~dosna.cli.common`. They parse arguments, call the
library and print; the library never imports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from . import bench, copy, fsck, inspect, models, train
from .common import run_handler

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``dosna`` command and all its sub-commands.

    Returns
    -------
    argparse.ArgumentParser
        Parsed arguments carry ``command`` and ``handler``, the function that
        runs the command.
    """
    parser = argparse.ArgumentParser(
        prog="dosna",
        description="Chunked N-dimensional arrays in object stores.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dosna {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_command(sub)
    models.add_command(sub)
    inspect.add_commands(sub)
    bench.add_command(sub)
    fsck.add_command(sub)
    copy.add_command(sub)
    for command in sub.choices.values():
        _add_debug(command)
    return parser


_DEBUG_HELP = "print the traceback when the command fails (or set DOSNA_DEBUG=1)"


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """Accept ``--debug`` after the command too, on ``parser`` or its sub-commands."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        # SUPPRESS: a sub-command's default must not undo ``dosna --debug COMMAND``.
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    for action in subcommands:
        for child in action.choices.values():
            _add_debug(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dosna`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``dosna`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 1 when the operation fails (with a
        one-line message on stderr), 130 when interrupted. Bad usage exits
        with status 2 (argparse's SystemExit).
    """
    args = build_parser().parse_args(argv)
    return run_handler(args)


def _run() -> NoReturn:  # console-script entry point
    sys.exit(main())
