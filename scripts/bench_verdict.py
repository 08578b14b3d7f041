"""One verdict per benchmark smoke run of run_tests.sh, from the benchmark's JSON report.

A smoke run checks that a benchmark runs; its figures (small sizes, one round, a shared
machine) measure nothing. Where the report names targets (``"targets": {key: minimum}``),
each is judged and a miss is said plainly; a miss is not a failure of the test run.

    python scripts/bench_verdict.py NAME REPORT.json
"""

from __future__ import annotations

import json
import sys


def verdicts(name: str, report: dict) -> list[str]:
    targets = report.get("targets") or {}
    if not targets:
        return [f"{name}: ran to the end (no targets; figures at smoke sizes are not measurements)"]
    lines = []
    for key, minimum in targets.items():
        value = report.get(key)
        if value is None:
            lines.append(f"{name}: {key}: MISSING from the report (target >= {minimum})")
        elif value >= minimum:
            lines.append(f"{name}: {key} = {value:.2f}, target >= {minimum}: met")
        else:
            lines.append(
                f"{name}: {key} = {value:.2f}, target >= {minimum}: MISSED in this smoke run "
                "(not a failure; measure with the full benchmark on a quiet machine)"
            )
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    name, path = argv
    with open(path) as f:
        report = json.load(f)
    print("\n".join(verdicts(name, report)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
