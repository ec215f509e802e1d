"""``predstore info | verify | finalize | export``: the store commands."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from predstore.cli.exits import friendly_errors, stderr, usage_error
from predstore.cli.output import print_line, print_table, progress
from predstore.errors import ConfigError

StorePath = Annotated[
    str,
    typer.Argument(
        help="The store: a directory, or an s3:// (gs://, az://) URL configured by the "
        "standard environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).",
        show_default=False,
        metavar="STORE",
    ),
]


def register(app: typer.Typer) -> None:
    for command in (info, verify, finalize, vacuum, compact, upgrade, export, parts):
        app.command()(command)


def info(
    path: StorePath,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Rows, keys (storage, dtype, shape, bytes, compression), coverage, writes and provenance."""
    import predstore
    from predstore.read.inspect import disk_bytes, file_count, human_bytes, key_usage

    with friendly_errors():
        store = predstore.open(path)
        if as_json:
            typer.echo(msgspec.json.encode(store.manifest).decode())
            return
        usage = key_usage(store)
    m = store.manifest
    print_line(f"{store.path}  generation {m.generation}, committed {m.committed_at}")
    print_line(
        f"{m.rows:,} rows, {len(m.schema.keys)} keys, {file_count(store)} data files, "
        f"{human_bytes(disk_bytes(store))} on disk"
    )
    print_table(
        "Keys",
        ("key", "storage", "dtype", "shape", "on disk", "raw", "ratio"),
        [
            (
                u.key,
                u.storage,
                u.dtype,
                u.shape,
                human_bytes(u.disk_bytes),
                human_bytes(u.raw_bytes),
                "" if math.isnan(u.ratio) else f"{u.ratio:.2f}x",
            )
            for u in usage
        ],
    )
    print_table(
        "Coverage",
        ("dataloader", "expected", "written", "unique", "duplicates", "missing"),
        [
            (str(dl), _n(c.expected), _n(c.written), _n(c.unique), _n(c.duplicates), _n(c.missing))
            for dl, c in sorted(m.coverage.items())
        ],
    )
    print_table(
        "Writes",
        ("write", "mode", "rows", "indices from", "ranks", "started", "ended", "provenance"),
        [
            (
                w.write_id,
                w.mode,
                f"{w.rows:,}",
                w.index_source or "the caller",
                ", ".join(f"{r} {state}" for r, state in sorted(w.ranks.items())),
                str(w.started_at),
                str(w.ended_at),
                ", ".join(
                    f"{k} {v}"
                    for k, v in w.provenance.items()
                    if k not in ("pid", "world_size") and v is not None
                ),
            )
            for w in m.writes
        ],
    )
    libraries = m.provenance.get("libraries", {})
    print_line("Libraries: " + ", ".join(f"{k} {v}" for k, v in libraries.items()))


def verify(
    path: StorePath,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also read every byte: every checksum, every value decoded (reads the whole store).",
        ),
    ] = False,
) -> None:
    """Check every file of the manifest, the parts, the arrays' extents and the coverage figures."""
    from predstore.read.verify import verify as run

    with friendly_errors(), progress(f"verifying {path}"):
        report = run(path, deep=deep)
    for problem in report.problems:
        stderr().print(f"[red]problem:[/] {problem}")
    for w in report.unfinished:
        how = (
            "`predstore finalize` or mode='resume' recovers them"
            if w.recoverable
            else "superseded by a later commit; finalize will not use them"
        )
        stderr().print(
            f"[yellow]unfinished write[/] {w.write_id} ({w.mode}, ranks {w.ranks}): "
            f"{w.rows:,} committed rows not in the store manifest; {how}"
        )
    if report.ok:
        print_line(
            f"ok {report.path}: generation {report.generation}, {report.rows:,} rows, "
            f"{report.files_checked} files checked"
        )
        return
    stderr().print(f"[bold red]not ok[/] {report.path}")
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
    from predstore.format.fs import filesystem_for

    with friendly_errors(), progress(f"finalizing {path}"):
        before = load_store_manifest(filesystem_for(path))
        manifest = predstore.finalize(path, allow_shrink=allow_shrink)
    if before is not None and before.generation == manifest.generation:
        print_line(
            f"nothing to finalize: generation {manifest.generation} ({manifest.rows:,} rows) "
            "is current"
        )
        return
    print_line(f"committed generation {manifest.generation}: {manifest.rows:,} rows")
    for dl, c in sorted(manifest.coverage.items()):
        print_line(
            f"  dataloader {dl}: {_n(c.unique)} unique of {_n(c.expected)} expected, "
            f"{c.duplicates} duplicates, {_n(c.missing)} missing"
        )


def vacuum(
    path: StorePath,
    retention: Annotated[
        float,
        typer.Option(
            help="Keep files replaced less than this many seconds ago (for readers).",
            metavar="SECONDS",
        ),
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

    with friendly_errors(), progress(f"vacuuming {path}"):
        deleted = predstore.vacuum(path, retention=retention, discard_unfinished=discard_unfinished)
    print_line(f"deleted {len(deleted)} write(s)" + (f": {', '.join(deleted)}" if deleted else ""))


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
    from predstore.format.fs import filesystem_for

    with friendly_errors(), progress(f"compacting {path}"):
        before = load_store_manifest(filesystem_for(path))
        manifest = run(path, part_rows=part_rows, retention=retention)
    print_line(
        f"{path}: {len(before.parts) if before else 0:,} parts -> {len(manifest.parts):,}, "
        f"{manifest.rows:,} rows, generation {manifest.generation}"
    )


def upgrade(path: StorePath) -> None:
    """Rewrite a store of an older predstore format in the current one (one commit; data stays)."""
    import predstore

    with friendly_errors():
        manifest = predstore.upgrade(path)
    print_line(
        f"{path}: format version {manifest.format_version}, generation {manifest.generation}"
    )


def export(
    path: StorePath,
    out: Annotated[
        Path,
        typer.Argument(
            help="The file to write (its extension names the format), or with --files the folder.",
            show_default=False,
            metavar="OUT",
        ),
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="parquet, csv, json, jsonl or ipc (Arrow IPC, Feather); default: OUT's extension.",
            metavar="FORMAT",
        ),
    ] = None,
    arrays: Annotated[
        str,
        typer.Option(
            help="list: Zarr keys as list columns; skip: leave them out.", metavar="list|skip"
        ),
    ] = "list",
    key: Annotated[
        str | None,
        typer.Option(
            "--key", "-k", help="With --files: the key to write, one file per row.", metavar="KEY"
        ),
    ] = None,
    files: Annotated[
        str | None,
        typer.Option(
            "--files",
            help="Write one file per row of --key into the folder OUT: pt, npy, png or txt.",
            metavar="pt|npy|png|txt",
        ),
    ] = None,
    file_names: Annotated[
        str,
        typer.Option(
            "--file-names",
            help="With --files: name files by the rows' names (rows without one by index) or by index.",
            metavar="name|index",
        ),
    ] = "name",
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help='With --files: a SQL WHERE clause over the store\'s columns, e.g. "prob > 0.5".',
            metavar="EXPR",
        ),
    ] = None,
    dataloader: Annotated[
        int,
        typer.Option(
            "--dataloader", help="With --files: the dataloader whose rows to write.", metavar="N"
        ),
    ] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="With --files: replace files already in OUT.")
    ] = False,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing", help="With --files: keep files already in OUT, write the rest."
        ),
    ] = False,
) -> None:
    """Write every row to one file (Parquet, CSV, JSON, JSON lines, Arrow IPC), sorted by dataloader and index; or with --files, one file per row of a key."""
    import predstore
    from predstore.read.export import export as run
    from predstore.read.export import format_of
    from predstore.read.files import FORMATS as FILE_FORMATS

    if files is None:
        if key is not None or where is not None:
            usage_error("--key and --where go with --files (one file per row)")
        if arrays not in ("list", "skip"):
            usage_error(f"--arrays is list or skip, not {arrays!r}")
        try:
            chosen = format_of(out, format)
        except ConfigError as e:
            usage_error(str(e))
        with friendly_errors():
            store = predstore.open(path)
            with progress(f"exporting {chosen}") as advance:
                rows = run(store, out, format=chosen, arrays=arrays, progress=advance)  # type: ignore[arg-type]
        print_line(f"wrote {rows:,} rows to {out} ({chosen})")
        return
    if key is None:
        usage_error("--files needs --key KEY: the key to write, one file per row")
    if files not in FILE_FORMATS or file_names not in ("name", "index"):
        usage_error(f"--files is one of {', '.join(FILE_FORMATS)}; --file-names is name or index")
    if overwrite and skip_existing:
        usage_error("pass --overwrite or --skip-existing, not both")
    existing = "overwrite" if overwrite else "skip" if skip_existing else "error"
    with friendly_errors():
        store = predstore.open(path)
        with progress(f"writing {files} files") as advance:
            done = store.export_files(
                key,
                out,
                writer=files,
                where=where,
                dataloader_idx=dataloader,
                file_names=file_names,
                existing=existing,
                progress=advance,
            )
    skipped = f", {done.skipped:,} kept as they were" if done.skipped else ""
    null = f", {done.null:,} null rows without a file" if done.null else ""
    print_line(f"wrote {done.written:,} {files} files to {done.out_dir}{skipped}{null}")


def parts(path: StorePath) -> None:
    """Print the committed Parquet parts, one absolute path or URI a line, for other tools to read."""
    import predstore

    with friendly_errors():
        files = predstore.open(path).parquet_files()
    for file in files:
        typer.echo(file)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
