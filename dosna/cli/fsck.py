"""``dosna fsck``: check a store and, with ``--repair``, remove what killed processes left."""

from __future__ import annotations

import argparse

from ..fsck import DEFAULT_MIN_AGE, check, removable
from ..inspection import human_size
from .common import add_connection_arguments, connect

__all__ = ["add_command"]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{max(0.0, seconds):.0f} s"


def _fsck(args: argparse.Namespace) -> int:
    args.store_mode = "r+" if args.repair else "r"  # never creates a store; a check changes nothing
    with connect(args) as con:
        report = check(con, repair=args.repair, min_age=args.min_age, chunks=args.chunks)
    for problem in report.problems:
        print(f"damaged      {problem.dataset}: {problem.message}")
    for item in report.leftovers:
        if item in report.removed:
            state = "removed"
        elif removable(item, args.min_age):
            state = "removable (--repair removes it)"
        else:
            state = f"kept: changed {_age(item.age)} ago, less than --min-age"
        print(f"{item.kind:<12} {item.location} ({human_size(item.size)}, {_age(item.age)} old): {state}")
    if not report.leftovers_supported:
        print(f"the {con.backend.name} backend cannot list leftovers: only the datasets were checked")
    what = "datasets and chunks" if args.chunks else "datasets"
    print(
        f"{len(report.datasets)} {what} checked: {len(report.problems)} damaged, "
        f"{len(report.leftovers)} leftovers ({len(report.removed)} removed)"
    )
    return 0 if report.clean else 1


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``fsck`` to ``sub``, the sub-parsers of the ``dosna`` command."""
    fsck = sub.add_parser(
        "fsck",
        help="check a store; --repair removes what killed processes left behind",
        description=(
            "Check every dataset's metadata (and with --chunks every stored chunk) and list what killed "
            "processes left behind: temporary files, chunks of creations that never completed, "
            "deletions moved aside. --repair removes those unchanged for --min-age seconds. Exit "
            "status 0 when the store is clean (after the repair), 1 otherwise."
        ),
    )
    fsck.add_argument("--repair", action="store_true", help="remove old leftovers (damage is only reported)")
    fsck.add_argument(
        "--min-age",
        type=float,
        default=DEFAULT_MIN_AGE,
        metavar="SECONDS",
        help=f"remove only leftovers unchanged for this long (default {DEFAULT_MIN_AGE:.0f})",
    )
    fsck.add_argument("--chunks", action="store_true", help="also read and verify every stored chunk")
    add_connection_arguments(fsck, mode="r+")
    fsck.set_defaults(handler=_fsck)
