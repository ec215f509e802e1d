"""Commit, open and small reads as a store grows: many parts, long histories.

    python -m benchmarks.scale                    # parts: 100, 1,000, 10,240 (512 ranks x 20)
    python -m benchmarks.scale --parts 100 1000 10240 102400   # 102,400: 5,120 ranks
    PYTHONPATH=/other/predstore/src python -m benchmarks.scale --label other   # a contender
    python -m benchmarks.scale --report           # results/scale-*.json -> chart and table

Parts: ``ranks x 20`` parts of 4 rows each, written as a DDP job would (rank
r holds indices r, r + ranks, ...; one commit per part; two scalar keys)
with ``StoreWriter(rank=r, world_size=ranks, write_id=W)``, then one
finalize. Above ``--fast-build-above`` parts only rank 0 is written that
way and every other rank's parts and rank manifest are made from its files
(:func:`build_fast`): the same files, 50x sooner.

Measured: finalize; open (median of 5); ``len`` + ``keys()`` + a 10-row
read on a fresh open (median of 5, and the first); the store manifest's bytes per part; and ``predstore
compact`` into as few parts as it can (one here), on stores of up to
``--compact-up-to`` parts, where the predstore measured has it.

Appends: 300 appends of 10 rows each to one store: the commit time of the
10th and the 300th append, then open and a 2-row read, and the bytes of the
commit history.

Each label's figures go to ``benchmarks/results/scale-<label>.json``; the
report draws time against parts for every label (``scale.png``) and prints
the Markdown table that docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
WORK = ROOT / ".work" / "scale"
PARTS_PER_RANK = 20
ROWS_PER_PART = 4
FAST_BUILD_ABOVE = 20_000
"""Stores of more parts are made by :func:`build_fast` (the writer's way takes ~20 ms a part)."""
COMPACT_UP_TO = 20_000
"""Compact is measured up to this many parts (it rewrites every row: ~4 ms a part)."""


def build(path: Path, parts: int) -> None:
    """A store of ``parts`` parts, written by ``parts // 20`` simulated ranks, not yet finalized."""
    from predstore.format import layout

    ranks = parts // PARTS_PER_RANK
    write_id = layout.new_write_id()
    for rank in range(ranks):
        _write_rank(path, rank, ranks, write_id)


def build_fast(path: Path, parts: int) -> None:
    """As :func:`build`, with rank 0 written by a ``StoreWriter`` and the other ranks copied from it.

    Each other rank's parts are written with pyarrow in rank 0's part
    schema and Parquet options, and its rank manifest is rank 0's with that
    rank's paths, index ranges, sizes and checksums: the same files the
    writer makes, at about a tenth of the time (the writer's own per-part
    cost is not what this benchmark measures).
    """
    import msgspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from predstore.format import layout, manifest
    from predstore.format.fs import crc32c

    ranks = parts // PARTS_PER_RANK
    write_id = layout.new_write_id()
    _write_rank(path, 0, ranks, write_id)
    template = manifest.decode(
        (path / layout.rank_manifest(write_id, 0)).read_bytes(),
        manifest.RankManifest,
        source="rank 0",
    )
    schema = pq.read_schema(path / template.parts[0].path)
    for rank in range(1, ranks):
        entries = []
        for entry in template.parts:
            indices = rank + ranks * (entry.seq * ROWS_PER_PART + np.arange(ROWS_PER_PART))
            table = pa.table(
                {
                    "index": indices,
                    "dataloader_idx": np.zeros(ROWS_PER_PART, np.int64),
                    "name": pa.nulls(ROWS_PER_PART, pa.string()),
                    "pred": indices % 7,
                    "prob": (indices % 100 / 100).astype(np.float32),
                },
                schema=schema,
            )
            sink = pa.BufferOutputStream()
            pq.write_table(
                table,
                sink,
                compression="zstd",
                use_dictionary=["name"],
                write_statistics=["index", "dataloader_idx"],
                write_page_checksum=True,
            )
            data = sink.getvalue().to_pybytes()
            relpath = layout.part(write_id, rank, entry.seq)
            (path / relpath).write_bytes(data)
            entries.append(
                msgspec.structs.replace(
                    entry,
                    path=relpath,
                    rank=rank,
                    bytes=len(data),
                    crc32c=crc32c(data),
                    index_min=int(indices[0]),
                    index_max=int(indices[-1]),
                )
            )
        rank_manifest = msgspec.structs.replace(template, rank=rank, parts=entries)
        (path / layout.rank_manifest(write_id, rank)).write_bytes(manifest.encode(rank_manifest))


def _write_rank(path: Path, rank: int, ranks: int, write_id: str) -> None:
    import predstore

    writer = predstore.StoreWriter(
        path,
        rank=rank,
        world_size=ranks,
        write_id=write_id,
        background=False,
        commit_interval=None,
    )
    for part in range(PARTS_PER_RANK):
        positions = part * ROWS_PER_PART + np.arange(ROWS_PER_PART)
        indices = rank + ranks * positions  # what a DistributedSampler gives this rank
        writer.write(
            {"pred": indices % 7, "prob": (indices % 100 / 100).astype(np.float32)}, indices
        )
        writer.commit()
    writer.close()


def timed(action: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def measure_parts(
    parts: int, *, fast_build: bool = False, compact_it: bool = True
) -> dict[str, Any]:
    import predstore

    path = WORK / f"parts-{parts}"
    shutil.rmtree(path, ignore_errors=True)
    build_s, _ = timed(lambda: (build_fast if fast_build else build)(path, parts))
    finalize_s, manifest = timed(lambda: predstore.finalize(path))
    rows = manifest.rows
    opens = [timed(lambda: predstore.open(path))[0] for _ in range(5)]
    asked = np.linspace(0, rows - 1, 10).astype(np.int64)

    def small_read() -> Any:
        store = predstore.open(path)
        return len(store), store.keys(), store.read("pred", asked)

    reads = [timed(small_read) for _ in range(5)]  # each on a fresh open
    for _, (length, keys, values) in reads:
        assert length == rows and keys == ["pred", "prob"]
        assert values.tolist() == (asked % 7).tolist()
    figures = {
        "parts": parts,
        "rows": rows,
        "built_by": "rank 0's StoreWriter, copied" if fast_build else "StoreWriter",
        "build_s": build_s,
        "finalize_s": finalize_s,
        "open_s": statistics.median(opens),
        "len_keys_read10_s": statistics.median(seconds for seconds, _ in reads),
        "len_keys_read10_first_s": reads[0][0],
        "manifest_bytes_per_part": (path / "manifest.json").stat().st_size / parts,
    }
    compact = _compact(path) if compact_it else None
    if compact is not None:
        figures["compact_s"], figures["parts_after_compact"] = compact
        figures["len_keys_read10_after_compact_s"] = statistics.median(
            timed(small_read)[0] for _ in range(5)
        )
    shutil.rmtree(path, ignore_errors=True)
    return figures


def _compact(path: Path) -> tuple[float, int] | None:
    try:
        from predstore.cli.compact import compact
    except ImportError:
        return None
    import predstore

    seconds, _ = timed(lambda: compact(path, retention=0))
    return seconds, len(predstore.open(path).manifest.parts)


def measure_appends(count: int = 300, rows: int = 10) -> dict[str, Any]:
    import predstore

    path = WORK / "appends"
    shutil.rmtree(path, ignore_errors=True)
    commits = []
    for i in range(count):
        indices = np.arange(i * rows, (i + 1) * rows)
        writer = predstore.StoreWriter(path, mode="append" if i else "error", background=False)
        writer.write({"pred": indices % 7, "logits": np.ones((rows, 300), np.float32)}, indices)
        commits.append(timed(writer.close)[0])
    opens = [timed(lambda: predstore.open(path))[0] for _ in range(5)]
    read_s, _ = timed(lambda: predstore.open(path).read("pred", [5, count * rows - 5]))
    history = sum(p.stat().st_size for p in (path / "_commits").iterdir())
    data = sum(p.stat().st_size for p in (path / "writes").rglob("*") if p.is_file())
    figures = {
        "appends": count,
        "commit_10th_s": statistics.median(commits[8:11]),
        "commit_last_s": statistics.median(commits[-3:]),
        "open_s": statistics.median(opens),
        "read2_s": read_s,
        "history_bytes": history,
        "data_bytes": data,
        "manifest_bytes": (path / "manifest.json").stat().st_size,
    }
    shutil.rmtree(path, ignore_errors=True)
    return figures


def version() -> str:
    import predstore

    try:
        from predstore.format.manifest import FORMAT_VERSION
    except ImportError:  # pragma: no cover
        FORMAT_VERSION = 0
    commit = subprocess.run(
        ["git", "-C", str(Path(predstore.__file__).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"format {FORMAT_VERSION}, commit {commit or 'unknown'}"


def run(
    label: str,
    parts: list[int],
    appends: int = 300,
    *,
    fast_build_above: int = FAST_BUILD_ABOVE,
    compact_up_to: int = COMPACT_UP_TO,
) -> dict[str, Any]:
    result: dict[str, Any] = {"label": label, "predstore": version(), "parts": []}
    for n in parts:
        figures = measure_parts(n, fast_build=n > fast_build_above, compact_it=n <= compact_up_to)
        print(json.dumps(figures), flush=True)
        result["parts"].append(figures)
    result["appends"] = measure_appends(appends)
    print(json.dumps(result["appends"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale-{label}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def report() -> str:
    """The chart (``results/scale.png``) and the Markdown tables, from every label's results."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("scale-*.json"))]
    _chart(runs)
    lines = [
        "| predstore | parts | finalize | open | len + keys + 10-row read | manifest bytes/part "
        "| compact | 10-row read after compact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['label']} ({r['predstore']}) | {f['parts']:,} | {f['finalize_s']:.2f} s "
        f"| {f['open_s'] * 1e3:.1f} ms | {f['len_keys_read10_s'] * 1e3:.1f} ms "
        f"| {f['manifest_bytes_per_part']:.0f} "
        f"| {_compacted(f)} "
        f"| {_ms(f.get('len_keys_read10_after_compact_s'))} |"
        for r in runs
        for f in r["parts"]
    ]
    lines += [
        "",
        "| predstore | 10th append commit | 300th append commit | open | 2-row read "
        "| commit history | data |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        a = r["appends"]
        lines.append(
            f"| {r['label']} | {a['commit_10th_s'] * 1e3:.0f} ms | {a['commit_last_s'] * 1e3:.0f} ms "
            f"| {a['open_s'] * 1e3:.1f} ms | {a['read2_s'] * 1e3:.1f} ms "
            f"| {a['history_bytes'] / 1e6:.2f} MB | {a['data_bytes'] / 1e6:.2f} MB |"
        )
    return "\n".join(lines)


def _compacted(figures: dict[str, Any]) -> str:
    if "compact_s" not in figures:
        return "not measured"
    parts = figures["parts_after_compact"]
    return f"{figures['compact_s']:.2f} s ({parts} part{'s' if parts != 1 else ''})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.1f} ms"


def _chart(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [
        ("finalize_s", "finalize"),
        ("open_s", "open"),
        ("len_keys_read10_s", "len + keys() + 10-row read"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True)
    for ax, (key, name) in zip(axes, measures, strict=True):
        for r in runs:
            points = sorted((f["parts"], f[key]) for f in r["parts"])
            ax.loglog(*zip(*points, strict=True), marker="o", label=r["label"])
        ax.set_title(name)
        ax.set_xlabel("parts")
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", type=int, nargs="+", default=[100, 1000, 10240])
    parser.add_argument("--label", default="predstore")
    parser.add_argument(
        "--fast-build-above",
        type=int,
        default=FAST_BUILD_ABOVE,
        help="make stores of more parts by copying rank 0's files (default: %(default)s)",
    )
    parser.add_argument(
        "--compact-up-to",
        type=int,
        default=COMPACT_UP_TO,
        help="measure compact on stores of at most this many parts (default: %(default)s)",
    )
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report())
        return
    run(
        args.label,
        args.parts,
        args.appends,
        fast_build_above=args.fast_build_above,
        compact_up_to=args.compact_up_to,
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
