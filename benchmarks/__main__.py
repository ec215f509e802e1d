"""predstore against the ways people save predictions today: the whole suite, in one run.

    python -m benchmarks [--w1 10000] [--w2 200] [--w3 50000] [--reps 3] [--full]
    python -m benchmarks --w1 50000 --w2 400 --w3 200000    # the issue's sizes (~30 minutes)

Writes through trainer.predict, analysis and loading, for W1 classify, W2
segment and W3 embed, every contender of benchmarks/alternatives.py (see
benchmarks/suite.py for what one repetition does). Prints the tables and
the bars, writes benchmarks/results/latest.{json,md,png} and refreshes the
results part of docs/benchmarks.md. Exit status 1 if any contender's output
failed its check.

Run final measurements alone on the machine: flock /tmp/predstore-bench.lock python -m benchmarks
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from benchmarks.alternatives import CONTENDERS
from benchmarks.common import ROOT, WORK, machine
from benchmarks.report import bars, write_results
from benchmarks.suite import DEFAULT_SIZES, ISSUE_SIZES, WORKLOADS, Settings, log, run

PAGE = ROOT.parent / "docs" / "benchmarks.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for key, make in WORKLOADS.items():
        parser.add_argument(
            f"--{key}",
            type=int,
            metavar="N",
            help=f"samples of {make().name} (default {DEFAULT_SIZES[key]:,}; "
            f"the issue's: {ISSUE_SIZES[key]:,})",
        )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="w1,w2,w3")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=",".join(CONTENDERS))
    parser.add_argument(
        "--full", action="store_true", help="also the slow pairs (per-sample files and CSV on W3)"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="output directory")
    parser.add_argument("--page", type=Path, default=PAGE, help="the results page to refresh")
    parser.add_argument("--no-page", action="store_true", help="leave the results page alone")
    parser.add_argument("--work", type=Path, default=WORK / "suite", help="scratch directory")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the tables, chart and page again from a latest.json",
    )
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(
        sizes={k: getattr(args, k) for k in WORKLOADS if getattr(args, k) is not None},
        workloads=[w for w in args.workloads.split(",") if w],
        contenders=[c for c in args.contenders.split(",") if c],
        reps=args.reps,
        full=args.full,
        work=args.work,
        timeout=args.timeout,
    )


def refresh_page(page: Path, results_text: str, chart: Path) -> None:
    """Replace the results part of the page (between its markers), or write a bare page."""
    link = Path(os.path.relpath(chart.resolve(), page.parent.resolve())).as_posix()
    block = f"{START}\n![predstore against the alternatives]({link})\n\n{results_text}\n{END}"
    text = page.read_text() if page.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{page} has no {START} ... {END} markers: not overwriting it")
    head, rest = text.split(START, 1)
    page.write_text(head + block + rest.split(END, 1)[1])


def _commit() -> str:
    """The predstore commit measured ("-dirty": with uncommitted changes in the tree)."""
    import subprocess

    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    unknown = [c for c in args.contenders.split(",") if c and c not in CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}; choose from {list(CONTENDERS)}")
    if args.render is not None:
        document = json.loads(args.render.read_text())
        document["bars"] = [b.as_dict() for b in bars(document["workloads"])]
        return publish(document, args)
    settings = settings_of(args)
    commit = _commit()  # before measuring: the code every repetition runs is loaded now
    results = run(settings)
    document = {
        "machine": machine() | {"commit": commit},
        "command": shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])]),
        "settings": {
            "reps": settings.reps,
            "full": settings.full,
            "sizes": {k: settings.workload(k).samples for k in settings.workloads},
        },
        "workloads": results,
        "bars": [b.as_dict() for b in bars(results)],
    }
    return publish(document, args)


def publish(document: dict[str, Any], args: argparse.Namespace) -> int:
    """Write the results, the chart and the page; print the tables; 1 if any check failed."""
    chart = args.results / "latest.png"
    text = write_results(document, args.results, chart)
    if not args.no_page:
        refresh_page(args.page, text, chart)
    print(text)
    failed = [
        f"{w['name']}: {key}: {entry['failed']}"
        for w in document["workloads"].values()
        for key, entry in w["contenders"].items()
        if "failed" in entry
    ]
    for line in failed:
        log(f"FAILED {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
