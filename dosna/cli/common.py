"""What every ``dosna`` command shares: connection options, tables, index text and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from ..connection import Connection
from ..errors import DosnaError
from ..locations import open_connection

__all__ = [
    "add_connection_arguments",
    "connect",
    "debugging",
    "parse_index",
    "parse_ints",
    "run_handler",
    "table",
]

#: The errors a command reports by their message alone (any other exception is
#: reported with its type too); every failure exits with status 1.
FAILURES = (DosnaError, ValueError, TypeError, LookupError, OSError, ImportError)


def add_connection_arguments(parser: argparse.ArgumentParser, mode: str = "a") -> None:
    """Add the store (a positional URL, or ``--backend`` and ``--connection``), ``--engine`` and options.

    Call it before adding the command's own positional arguments: the store
    comes first (``dosna info s3://bucket/run1 volume``) and may be left out
    when ``--connection`` names it.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A sub-command's parser; the options go in a group "where the data is".
    mode : {"r", "r+", "a", "w-", "w"}
        How the command opens the store (see :func:`dosna.open`): ``"r"`` for
        commands that only read, so they never create or change anything.
    """
    parser.add_argument(
        "store",
        nargs="?",
        metavar="STORE",
        help="where the datasets are: a directory (hdf5) or a URL: s3://bucket/prefix, ceph://pool, ram://name",
    )
    parser.set_defaults(store_mode=mode, store_parser=parser)
    group = parser.add_argument_group("where the data is")
    group.add_argument(
        "--backend", default=None, help="ram, hdf5, ceph, s3 (default: the URL's scheme, else hdf5)"
    )
    group.add_argument(
        "--connection",
        help="instead of STORE: hdf5: a directory; ceph: the pool; s3: the bucket; ram: a name; or a URL",
    )
    group.add_argument(
        "--connection-options",
        default="",
        metavar="K=V,...",
        help="backend options, e.g. conffile=/etc/ceph/ceph.conf or endpoint_url=http://... "
        "(typed by the backend: create=false, directory=123 is text; JSON values where untyped)",
    )
    group.add_argument("--engine", default="cpu", help="cpu, joblib, mpi (default: cpu)")
    group.add_argument("--engine-options", default="", metavar="K=V,...", help="engine options, e.g. njobs=4")


def connect(args: argparse.Namespace) -> Connection:
    """Open the connection described by the arguments of :func:`add_connection_arguments`.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``store``, ``backend``, ``connection``,
        ``engine``, ``connection_options``, ``engine_options`` and
        ``store_mode``.

    Returns
    -------
    Connection
        The open connection; use it as a context manager to close it.

    Raises
    ------
    SystemExit
        With status 2 (bad usage) when neither or both of STORE and
        ``--connection`` are given.
    """
    store, connection = getattr(args, "store", None), getattr(args, "connection", None)
    location = store if store is not None else connection
    if location is None or (store is not None and connection is not None):
        message = "give the store (a directory or URL) or --connection, not both"
        if store is None:
            message = "give the store: a directory or URL (or --backend and --connection)"
        parser = getattr(args, "store_parser", None)
        if parser is not None:
            parser.error(message)
        raise ValueError(message)
    return open_connection(
        args.backend,
        location,
        args.engine,
        args.connection_options,
        args.engine_options,
        mode=getattr(args, "store_mode", "a"),
    )


def table(rows: Sequence[Sequence[str]]) -> str:
    """Format rows of strings as left-aligned columns, the first row being the header.

    Parameters
    ----------
    rows : sequence of sequence of str
        At least one row; every row has the same number of cells.

    Returns
    -------
    str
        The lines of the table, without trailing white space or a final newline.
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def parse_ints(text: str) -> tuple[int, ...]:
    """Parse comma-separated integers such as a shape, ``"256,256,256"``.

    Parameters
    ----------
    text : str
        Integers separated by commas.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If an item is not an integer.
    """
    return tuple(int(n) for n in text.split(","))


def parse_index(text: str) -> tuple[Any, ...]:
    """Parse an index written as in Python, e.g. ``"0, :, 10:20:2"`` or ``"..., -1"``.

    Integers, slices with optional start/stop/step, ``...`` and ``None``
    (new axis) are understood.

    Parameters
    ----------
    text : str
        The index as typed on the command line (``--index``).

    Returns
    -------
    tuple
        A key for ``Dataset.__getitem__``.

    Raises
    ------
    ValueError
        For anything else.

    Examples
    --------
    >>> parse_index("0, :, 1:5:2")
    (0, slice(None, None, None), slice(1, 5, 2))
    """
    key: list[Any] = []
    for raw in text.split(","):
        item = raw.strip()
        if item == "...":
            key.append(Ellipsis)
        elif item == "None":
            key.append(None)
        elif ":" in item:
            fields = item.split(":")
            if len(fields) > 3:
                raise ValueError(f"bad slice {item!r} in index {text!r}")
            try:
                key.append(slice(*(int(f) if f.strip() else None for f in fields)))
            except ValueError:
                raise ValueError(f"bad slice {item!r} in index {text!r}") from None
        else:
            try:
                key.append(int(item))
            except ValueError:
                raise ValueError(
                    f"bad index item {item!r} in {text!r}: use ints, slices, ... or None"
                ) from None
    return tuple(key)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError's without the quotes repr adds)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = " ".join(str(message).split())
    if not isinstance(exc, FAILURES):  # not an error dosna raises on purpose: say what it is
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__


def debugging(args: argparse.Namespace | None = None) -> bool:
    """Whether failures show their traceback: ``dosna --debug ...`` or ``DOSNA_DEBUG=1``."""
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get("DOSNA_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def run_handler(args: argparse.Namespace) -> int:
    """Run the parsed command's handler and turn its failures into exit statuses.

    Every failure prints one line, ``dosna <command>: error: <message>``, on
    stderr and gives exit status 1: the errors dosna raises on purpose
    (:data:`FAILURES`) with their message, anything else (an error in a
    learner file, a bug) with its type too. With ``--debug`` or
    ``DOSNA_DEBUG=1`` the traceback is printed before that line.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``command`` (its name) and ``handler`` (a function
        of the arguments that returns the exit status).

    Returns
    -------
    int
        The handler's status; 1 when it raises, 130 when interrupted.
    """
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"dosna {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debugging(args):
            traceback.print_exc()
        print(f"dosna {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
