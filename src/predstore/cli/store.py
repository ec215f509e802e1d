"""``predstore info | verify | finalize | export``: the store commands."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from predstore.errors import PredstoreError
from predstore.read.inspect import human_bytes as _bytes

console = Console()
errors = Console(stderr=True)

StorePath = Annotated[Path, typer.Argument(help="The store directory.", show_default=False)]


def register(app: typer.Typer) -> None:
    for command in (info, verify, finalize, vacuum, compact, upgrade, export):
        app.command()(command)


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """predstore's own errors end the command with their message and exit status 1."""
    try:
        yield
    except PredstoreError as e:
        errors.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(1) from None


def info(
    path: StorePath,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Rows, keys (storage, dtype, shape, bytes, compression), coverage, writes and provenance."""
    import predstore
    from predstore.read.inspect import disk_bytes, file_count, key_usage

    with _friendly_errors():
        store = predstore.open(path)
        if as_json:
            typer.echo(msgspec.json.encode(store.manifest).decode())
            return
        usage = key_usage(store)
    m = store.manifest
    console.print(
        f"[bold]{store.path}[/]  generation {m.generation}, committed {m.committed_at}\n"
        f"{m.rows:,} rows, {len(m.schema.keys)} keys, {file_count(store)} data files, "
        f"{_bytes(disk_bytes(store))} on disk"
    )
    keys = _table("key", "storage", "dtype", "shape", "on disk", "raw", "ratio", title="Keys")
    for u in usage:
        ratio = "" if math.isnan(u.ratio) else f"{u.ratio:.2f}x"
        keys.add_row(
            u.key, u.storage, u.dtype, u.shape, _bytes(u.disk_bytes), _bytes(u.raw_bytes), ratio
        )
    console.print(keys)
    cover = _table(
        "dataloader", "expected", "written", "unique", "duplicates", "missing", title="Coverage"
    )
    for dl, c in sorted(m.coverage.items()):
        cover.add_row(
            str(dl), _n(c.expected), _n(c.written), _n(c.unique), _n(c.duplicates), _n(c.missing)
        )
    console.print(cover)
    console.print("[bold]Writes[/]")
    for w in m.writes:
        ranks = ", ".join(f"{r} {state}" for r, state in sorted(w.ranks.items()))
        console.print(
            f"  {w.write_id}  {w.mode}, {w.rows:,} rows, indices from {w.index_source or 'the caller'}\n"
            f"    {w.world_size} rank(s): {ranks}; {w.started_at} to {w.ended_at}",
            highlight=False,
        )
        details = {
            k: v
            for k, v in w.provenance.items()
            if k not in ("pid", "world_size") and v is not None
        }
        if details:
            console.print(
                "    " + ", ".join(f"{k} {v}" for k, v in details.items()), highlight=False
            )
    libraries = m.provenance.get("libraries", {})
    console.print(
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in libraries.items()), highlight=False
    )


def verify(
    path: StorePath,
    deep: Annotated[
        bool,
        typer.Option(
            help="Also read every byte: every checksum, every value decoded (reads the whole store)."
        ),
    ] = False,
) -> None:
    """Check every file of the manifest, the parts, the arrays' extents and the coverage figures."""
    from predstore.read.verify import verify as run

    report = run(path, deep=deep)
    for problem in report.problems:
        errors.print(f"[red]problem:[/] {problem}", highlight=False)
    for w in report.unfinished:
        how = (
            "`predstore finalize` or mode='resume' recovers them"
            if w.recoverable
            else "superseded by a later commit; finalize will not use them"
        )
        errors.print(
            f"[yellow]unfinished write[/] {w.write_id} ({w.mode}, ranks {w.ranks}): "
            f"{w.rows:,} committed rows not in the store manifest; {how}",
            highlight=False,
        )
    if report.ok:
        console.print(
            f"[green]ok[/] {report.path}: generation {report.generation}, {report.rows:,} rows, "
            f"{report.files_checked} files checked",
            highlight=False,
        )
        return
    errors.print(f"[bold red]not ok[/] {report.path}", highlight=False)
    raise typer.Exit(1)


def finalize(
    path: StorePath,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Commit an unfinished overwrite even if the store would hold fewer rows.",
        ),
    ] = False,
) -> None:
    """Commit what the ranks of unfinished writes committed (after all writers stopped)."""
    import predstore
    from predstore.format.commit import load_store_manifest
    from predstore.format.fs import LocalFileSystem

    with _friendly_errors():
        before = load_store_manifest(LocalFileSystem(path))
        manifest = predstore.finalize(path, allow_shrink=allow_shrink)
    if before is not None and before.generation == manifest.generation:
        console.print(
            f"nothing to finalize: generation {manifest.generation} ({manifest.rows:,} rows) "
            "is current",
            highlight=False,
        )
        return
    console.print(
        f"committed generation {manifest.generation}: {manifest.rows:,} rows", highlight=False
    )
    for dl, c in sorted(manifest.coverage.items()):
        console.print(
            f"  dataloader {dl}: {_n(c.unique)} unique of {_n(c.expected)} expected, "
            f"{c.duplicates} duplicates, {_n(c.missing)} missing",
            highlight=False,
        )


def vacuum(
    path: StorePath,
    retention: Annotated[
        float,
        typer.Option(help="Keep files replaced less than this many seconds ago (for readers)."),
    ] = 600.0,
    discard_unfinished: Annotated[
        bool,
        typer.Option(
            "--discard-unfinished",
            help="Also delete unfinished writes whose ranks committed rows (they are lost).",
        ),
    ] = False,
) -> None:
    """Delete replaced writes, empty unfinished writes and old commit records once no reader needs them."""
    import predstore

    with _friendly_errors():
        deleted = predstore.vacuum(path, retention=retention, discard_unfinished=discard_unfinished)
    console.print(
        f"deleted {len(deleted)} write(s)" + (f": {', '.join(deleted)}" if deleted else ""),
        highlight=False,
    )


def compact(
    path: StorePath,
    part_rows: Annotated[
        int | None, typer.Option(help="Rows per part (default: as few parts as the sizes allow).")
    ] = None,
    retention: Annotated[
        float,
        typer.Option(help="Keep the old parts this many seconds (for readers that opened them)."),
    ] = 600.0,
) -> None:
    """Rewrite the store's rows into few parts, as one commit that readers never see half done."""
    from predstore.cli.compact import compact as run
    from predstore.format.commit import load_store_manifest
    from predstore.format.fs import LocalFileSystem

    with _friendly_errors():
        before = load_store_manifest(LocalFileSystem(path))
        manifest = run(path, part_rows=part_rows, retention=retention)
    console.print(
        f"{path}: {len(before.parts) if before else 0:,} parts -> {len(manifest.parts):,}, "
        f"{manifest.rows:,} rows, generation {manifest.generation}",
        highlight=False,
    )


def upgrade(path: StorePath) -> None:
    """Rewrite a store of an older predstore format in the current one (one commit; data stays)."""
    import predstore

    with _friendly_errors():
        manifest = predstore.upgrade(path)
    console.print(
        f"{path}: format version {manifest.format_version}, generation {manifest.generation}",
        highlight=False,
    )


def export(
    path: StorePath,
    out: Annotated[Path, typer.Argument(help="The file to write.", show_default=False)],
    format: Annotated[str, typer.Option("--format", "-f", help="parquet or csv.")] = "parquet",
    arrays: Annotated[
        str, typer.Option(help="list: Zarr keys as list columns; skip: leave them out.")
    ] = "list",
) -> None:
    """Write every row to one Parquet or CSV file, sorted by dataloader and index."""
    import predstore
    from predstore.read.export import export as run

    if format not in ("parquet", "csv") or arrays not in ("list", "skip"):
        errors.print("[bold red]error:[/] --format is parquet or csv; --arrays is list or skip")
        raise typer.Exit(2)
    with _friendly_errors():
        rows = run(predstore.open(path), out, format=format, arrays=arrays)  # type: ignore[arg-type]
    console.print(f"wrote {rows:,} rows to {out}", highlight=False)


def _table(*columns: str, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in columns:
        table.add_column(
            column,
            justify="right"
            if column not in ("key", "write", "mode", "storage", "dtype")
            else "left",
        )
    return table


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
