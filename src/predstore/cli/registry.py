"""``predstore registry``: scan run directories into a cache and query it.

The cache of a root lives at ``ROOT/.predstore-registry.sqlite`` unless
``--cache`` (or ``PREDSTORE_REGISTRY_CACHE``) says otherwise. Query commands
find it from ``--root`` (default: the current directory, or
``PREDSTORE_REGISTRY_ROOT``) and only read it: run ``scan`` to refresh it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
import typer

from predstore.cli.exits import friendly_errors
from predstore.cli.output import print_line, print_table, progress
from predstore.registry import Registry, scan
from predstore.registry.query.table_export import write_table
from predstore.registry.rundir.liveness import DEFAULT_STALE_AFTER

app = typer.Typer(
    name="registry",
    help="Index run directories written by RegistryLogger and query them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

RootOption = Annotated[
    Path,
    typer.Option(
        "--root",
        "-r",
        envvar="PREDSTORE_REGISTRY_ROOT",
        help="Root the cache was scanned from; its cache is ROOT/.predstore-registry.sqlite.",
    ),
]
CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        envvar="PREDSTORE_REGISTRY_CACHE",
        help="Cache file to use instead of ROOT/.predstore-registry.sqlite.",
    ),
]
StaleOption = Annotated[
    float,
    typer.Option(
        "--stale-after",
        min=0.0,
        help="Seconds without a heartbeat (as of the scan) after which a running run is stale.",
    ),
]
StatusOption = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        "-s",
        help="Keep runs with this status (running, stale, completed, failed, interrupted); "
        "repeat for any of several.",
    ),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", "-t", help="Keep runs carrying this whole tag; repeat for all of several."
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        help="Keep runs where FIELD OP VALUE holds, e.g. 'hparams.lr<=0.01'; repeatable.",
    ),
]
AliveOption = Annotated[
    bool, typer.Option("--alive", help="Keep only running runs with a fresh heartbeat.")
]


#: (header, DataFrame column, how to render a cell) of a table of runs.
Shown = tuple[str, str, Callable[[Any], str]]


@contextmanager
def _open(root: Path, cache: Path | None, stale_after: float) -> Iterator[Registry]:
    with friendly_errors(), Registry.open(root, cache=cache, stale_after=stale_after) as registry:
        yield registry


@app.command("scan")
def scan_command(
    root: Annotated[Path, typer.Argument(help="Directory to walk for run directories.")],
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild the cache instead of reading only changes.")
    ] = False,
    cache: CacheOption = None,
) -> None:
    """Index the run directories under ROOT (incrementally, by modification time)."""
    with friendly_errors(), progress(f"scanning {root}"):
        report = scan(root, cache=cache, full=full)
    print_line(
        f"Scanned {report.root}: {report.runs} runs indexed ({report.read} read, "
        f"{report.unchanged} unchanged, {report.removed} removed) in {report.seconds:.2f}s; "
        f"cache {report.cache}"
    )
    if report.problems:
        print_table(
            f"{len(report.problems)} problems",
            ("run directory", "file", "problem", "indexed"),
            [
                (p.run_dir, p.file or "-", p.message, "no" if p.fatal else "yes")
                for p in report.problems
            ],
        )


@app.command("ls")
def ls_command(
    root: RootOption = Path("."),
    cache: CacheOption = None,
    status: StatusOption = None,
    tag: TagOption = None,
    alive: AliveOption = False,
    where: WhereOption = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort", help="Field to sort by, e.g. summary.val_loss; default newest first."
        ),
    ] = None,
    desc: Annotated[bool, typer.Option("--desc", help="Sort in descending order.")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=0, help="Show at most this many runs.")
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option("--column", "-c", help="Extra field to show (summary.X, hparams.X)."),
    ] = None,
    stale_after: StaleOption = DEFAULT_STALE_AFTER,
) -> None:
    """List runs, filtered and sorted."""
    with _open(root, cache, stale_after) as registry, friendly_errors():
        frame = registry.ls(
            status=status,
            tags=tag,
            alive=True if alive else None,
            where=where,
            sort=sort,
            descending=desc,
            limit=limit,
            columns=column,
        )
        shown: list[Shown] = [
            ("run_id", "run_id", _cell),
            ("name", "display_name", _cell),
            ("status", "status", _cell),
            ("step", "step", _cell),
            ("created", "created_at", _short_time),
            *((c, c, _cell) for c in _extra_columns(frame)),
            ("tags", "tags", _cell),
            ("run_dir", "run_dir", _relative_to(registry.root)),
        ]
        _render_runs(frame, shown, registry, f"{frame.height} runs")


@app.command("best")
def best_command(
    metric: Annotated[str, typer.Argument(help="Metric name as logged, e.g. val_loss.")],
    maximize: Annotated[
        bool, typer.Option("--max/--min", help="Rank by the highest (or lowest) value reached.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=0, help="Show at most this many runs.")
    ] = 10,
    root: RootOption = Path("."),
    cache: CacheOption = None,
    status: StatusOption = None,
    tag: TagOption = None,
    where: WhereOption = None,
    stale_after: StaleOption = DEFAULT_STALE_AFTER,
) -> None:
    """Rank runs by the best value they reached of METRIC (lowest by default)."""
    mode: Literal["min", "max"] = "max" if maximize else "min"
    with _open(root, cache, stale_after) as registry, friendly_errors():
        frame = registry.best(metric, mode=mode, limit=limit, status=status, tags=tag, where=where)
        best, at_step, last = _extra_columns(frame)
        shown: list[Shown] = [
            ("run_id", "run_id", _cell),
            ("name", "display_name", _cell),
            ("status", "status", _cell),
            (mode, best, _cell),
            ("at step", at_step, _cell),
            ("last", last, _cell),
            ("run_dir", "run_dir", _relative_to(registry.root)),
        ]
        _render_runs(frame, shown, registry, f"best {metric} ({mode} of each run)")


@app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or a run dir.")],
    root: RootOption = Path("."),
    cache: CacheOption = None,
    stale_after: StaleOption = DEFAULT_STALE_AFTER,
) -> None:
    """Show everything the registry knows about one run."""
    with _open(root, cache, stale_after) as registry, friendly_errors():
        detail = registry.show(run_id)
    print_table(
        f"run {detail.info['run_id']}",
        ("field", "value"),
        [(key, _cell(value)) for key, value in detail.info.items()],
    )
    for title, frame in (
        ("summary", detail.summary),
        ("hyperparameters", detail.hparams),
        ("prediction stores", detail.stores),
        ("problems", detail.problems),
    ):
        if frame.height:
            print_table(
                title, frame.columns, [[_cell(v) for v in row] for row in frame.iter_rows()]
            )


@app.command("export")
def export_command(
    out: Annotated[Path, typer.Argument(help="Output file: OUT.csv or OUT.parquet.")],
    root: RootOption = Path("."),
    cache: CacheOption = None,
    status: StatusOption = None,
    tag: TagOption = None,
    alive: AliveOption = False,
    where: WhereOption = None,
    stale_after: StaleOption = DEFAULT_STALE_AFTER,
) -> None:
    """Write one wide row per run (columns, hparams.*, summary.*) to CSV or Parquet."""
    with _open(root, cache, stale_after) as registry, friendly_errors():
        frame = registry.table(status=status, tags=tag, alive=True if alive else None, where=where)
        path = write_table(frame, out)
    print_line(f"Wrote {frame.height} runs, {frame.width} columns to {path}")


# -- rendering ----------------------------------------------------------------------


def _extra_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(("summary.", "hparams."))]


def _render_runs(
    frame: pl.DataFrame, shown: Sequence[Shown], registry: Registry, title: str
) -> None:
    scanned = datetime.fromtimestamp(registry.scanned_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    print_table(
        f"{title}, as of the scan at {scanned} UTC",
        [header for header, _, _ in shown],
        [
            [render(row[column]) for _, column, render in shown]
            for row in frame.iter_rows(named=True)
        ],
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _short_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else _cell(value)


def _relative_to(root: Path | None) -> Callable[[Any], str]:
    def render(run_dir: Any) -> str:
        if root is None:
            return str(run_dir)
        try:
            return str(Path(run_dir).relative_to(root))
        except ValueError:
            return str(run_dir)

    return render
