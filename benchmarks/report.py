"""The suite's results as figures, bars, Markdown tables, a chart and the results page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.alternatives import CONTENDERS
from benchmarks.common import table

MiB = 1 << 20
HANDFUL = 5  # "a handful of files per rank": manifests, the commit record, a zarr.json per array
MIN_OVERHEAD_S = 0.001  # an overhead below the noise counts as 1 ms in a ratio


def title(key: str) -> str:
    return "none (predict without a writer)" if key == "none" else CONTENDERS[key].title


def figures(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per contender that ran: its medians and what follows from them (overhead, rates)."""
    entries = workload["contenders"]
    base = entries.get("none", {}).get("median", {}).get("predict_s")
    out: dict[str, dict[str, Any]] = {}
    for key, entry in entries.items():
        if "median" not in entry:
            continue
        m = dict(entry["median"])
        m["samples_per_s"] = workload["samples"] / m["predict_s"]
        m["payload_mb_per_s"] = workload["payload_mb"] / m["predict_s"]
        if base is not None and key != "none":
            m["overhead_s"] = m["predict_s"] - base
        out[key] = m
    return out


# -- the bars of issue 7 ----------------------------------------------------------------------


@dataclass
class Bar:
    workload: str
    text: str
    target: str
    value: float | None = None  # the measured ratio or count
    shown: str = ""  # the value as the page shows it
    met: bool | None = None  # None: not measured
    note: str = ""  # why it was not measured

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _overhead(f: dict[str, Any]) -> float:
    return max(f["overhead_s"], MIN_OVERHEAD_S)


def bars(results: dict[str, Any]) -> list[Bar]:
    found: list[Bar] = []

    def compare(
        wkey: str, text: str, target: str, other: str, figure: str, fn: Any, ok: Any, fmt: str
    ) -> None:
        workload = results.get(wkey)
        bar = Bar(workload["name"] if workload else wkey.upper(), text, target)
        found.append(bar)
        if workload is None:
            bar.note = "workload not run"
            return
        f = figures(workload)
        for key in ("predstore", other):
            entry = workload["contenders"].get(key, {})
            if key not in f or figure not in f[key]:
                bar.note = (
                    entry.get("skipped")
                    or (f"failed: {entry['failed']}" if "failed" in entry else None)
                    or entry.get("load_skipped")
                    or f"{title(key)} not run"
                )
                bar.note = f"{title(key)}: {bar.note}"
                return
        bar.value = float(fn(f["predstore"], f[other]))
        bar.shown = fmt.format(bar.value)
        bar.met = bool(ok(bar.value))

    def overhead_ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
        return _overhead(theirs) / _overhead(ours)

    for other, number in (("torch_save", 1), ("csv", 2), ("async_files", 4)):
        compare(
            "w1",
            f"write overhead at least 50x smaller than alternative {number}",
            ">= 50x",
            other,
            "overhead_s",
            overhead_ratio,
            lambda v: v >= 50,
            "{:,.0f}x smaller",
        )
    compare(
        "w1",
        "write overhead at most 1.25x that of alternative 5 (plain Parquet)",
        "<= 1.25x",
        "parquet",
        "overhead_s",
        lambda o, t: _overhead(o) / _overhead(t),
        lambda v: v <= 1.25,
        "{:.2f}x",
    )
    compare(
        "w1",
        "analysis at least 100x faster than alternative 1",
        ">= 100x",
        "torch_save",
        "analysis_s",
        lambda o, t: t["analysis_s"] / o["analysis_s"],
        lambda v: v >= 100,
        "{:,.0f}x faster",
    )
    compare(
        "w1",
        "analysis within 2x of alternative 5",
        "<= 2x",
        "parquet",
        "analysis_s",
        lambda o, t: o["analysis_s"] / t["analysis_s"],
        lambda v: v <= 2,
        "{:.2f}x its time",
    )
    compare(
        "w1",
        "loading at least 10x alternative 1",
        ">= 10x",
        "torch_save",
        "load_samples_per_s",
        lambda o, t: o["load_samples_per_s"] / t["load_samples_per_s"],
        lambda v: v >= 10,
        "{:.1f}x",
    )
    compare(
        "w2",
        "write at least as fast as alternative 1",
        ">= 1x",
        "torch_save",
        "samples_per_s",
        lambda o, t: o["samples_per_s"] / t["samples_per_s"],
        lambda v: v >= 1,
        "{:.2f}x",
    )
    compare(
        "w2",
        "at most half the bytes on disk of alternative 1",
        "<= 0.5x",
        "torch_save",
        "disk_mb",
        lambda o, t: o["disk_mb"] / t["disk_mb"],
        lambda v: v <= 0.5,
        "{:.2f}x",
    )
    compare(
        "w3",
        "write speed at least 0.8x alternative 5",
        ">= 0.8x",
        "parquet",
        "samples_per_s",
        lambda o, t: o["samples_per_s"] / t["samples_per_s"],
        lambda v: v >= 0.8,
        "{:.2f}x",
    )
    for wkey in ("w1", "w2", "w3"):
        if wkey in results:
            found += loading_bars(results[wkey])
    for workload in results.values():
        f = figures(workload).get("predstore")
        bound = workload["payload_mb"] * 1e6 / (16 * MiB) + HANDFUL
        bar = Bar(
            workload["name"],
            f"at most payload/16 MiB + {HANDFUL} files (one rank)",
            f"<= {bound:.1f}",
        )
        if f is None:
            bar.note = "predstore did not run"
        else:
            bar.value, bar.shown, bar.met = (
                f["files"],
                f"{f['files']:.0f} files",
                f["files"] <= bound,
            )
        found.append(bar)
    return found


def loading_bars(workload: dict[str, Any]) -> list[Bar]:
    """Issue 12's loading bars: predstore against the fastest other contender's loading, with
    the default collate (>= 1.0x) and with ``PredictionDataset.collate`` (>= 1.5x)."""
    f = figures(workload)
    others = {
        k: m["load_samples_per_s"]
        for k, m in f.items()
        if k not in ("predstore", "none") and m.get("load_samples_per_s")
    }
    best = max(others, key=lambda k: others[k]) if others else None
    found = []
    for figure, target, how in (
        ("load_samples_per_s", 1.0, "the default collate"),
        ("load_collate_samples_per_s", 1.5, "`PredictionDataset.collate`"),
    ):
        text = f"loading with {how} at least {target}x the fastest other contender's"
        bar = Bar(workload["name"], text, f">= {target}x")
        found.append(bar)
        ours = f.get("predstore", {}).get(figure)
        if best is None or ours is None:
            bar.note = "predstore's or the others' loading not measured"
            continue
        bar.value = ours / others[best]
        bar.shown = f"{bar.value:.2f}x ({title(best)})"
        bar.met = bar.value >= target
    return found


# -- Markdown ---------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return ""
    if digits == 0 and abs(value) >= 1:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{max(digits, 2) if abs(value) < 1 else digits}f}"


def workload_table(workload: dict[str, Any]) -> str:
    f = figures(workload)
    rows = []
    for key, entry in workload["contenders"].items():
        if key not in f:
            why = entry.get("skipped") or f"check failed: {entry.get('failed')}"
            rows.append([title(key), *[""] * 9, why])
            continue
        m = f[key]
        load = m.get("load_samples_per_s")
        tuned = m.get("load_collate_samples_per_s")
        rows.append(
            [
                f"**{title(key)}**" if key == "predstore" else title(key),
                f"{m['predict_s']:.2f}",
                f"{m['overhead_s']:+.2f}" if "overhead_s" in m else "",
                _num(m["samples_per_s"]),
                _num(m["payload_mb_per_s"]),
                _num(m["rss_added_mb"]),
                _num(m.get("disk_mb"), 1),
                _num(m.get("files")),
                _seconds(m.get("analysis_s")),
                (_num(load) if load else "")
                + (f"; {_num(tuned)} with `PredictionDataset.collate`" if tuned else ""),
                entry.get("load_skipped", ""),
            ]
        )
    header = [
        "contender",
        "predict s",
        "writer overhead s",
        "samples/s",
        "payload MB/s",
        "peak RSS added MB",
        "disk MB",
        "files",
        "analysis",
        "load samples/s",
        "note",
    ]
    return table(rows, header)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.1f} s"


def bars_table(found: list[Bar]) -> str:
    rows = [
        [
            b.workload,
            b.text,
            b.target,
            b.shown or "",
            "met" if b.met else ("**missed**" if b.met is False else f"not measured: {b.note}"),
        ]
        for b in found
    ]
    return table(rows, ["workload", "bar", "target", "measured", "result"])


def markdown(document: dict[str, Any]) -> str:
    """The results as Markdown: when, where, how, one table per workload, the bars."""
    info, settings = document["machine"], document["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        f"Run on {info['date']}: `{document['command']}`, {settings['reps']} interleaved "
        f"repetitions, medians.",
        "",
        f"Machine: {info['cpus']} cores, {info['memory_gib']} GiB, Python {info['python']}, "
        f"{info['platform']}. Versions: {versions}. predstore at commit {info.get('commit', '?')}.",
        "",
    ]
    for workload in document["workloads"].values():
        arrays = ", ".join(f"{d}{s} {k}" for k, (s, d) in workload["arrays"].items())
        lines += [
            f"### {workload['name']}: {workload['samples']:,} samples of {arrays}, "
            f"int64 pred, float32 prob, string name; batch {workload['batch']}; "
            f"{workload['payload_mb']:,.0f} MB payload",
            "",
            workload_table(workload),
            "",
        ]
    lines += ["### Bars", "", bars_table([Bar(**b) for b in document["bars"]]), ""]
    return "\n".join(lines)


# -- the chart --------------------------------------------------------------------------------

PANELS = (  # figure, title, log scale, unit
    ("overhead_s", "writer overhead, s (lower is better)", True, "s"),
    ("analysis_s", "analysis, s (lower is better)", True, "s"),
    ("load_samples_per_s", "loading, samples/s (higher is better)", False, "/s"),
    ("disk_mb", "on disk, MB (lower is better)", False, "MB"),
)


def _label(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if unit == "/s":
        return f"{value / 1000:.1f}k/s" if value >= 1000 else f"{value:.0f}/s"
    return f"{value:,.0f} {unit}"


def chart(document: dict[str, Any], path: Path) -> None:
    """One row of bars per workload: write overhead and analysis (log), loading and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    workloads = list(document["workloads"].values())
    keys = [k for k in CONTENDERS if any(k in w["contenders"] for w in workloads)]
    fig, axes = plt.subplots(
        len(workloads),
        len(PANELS),
        figsize=(4.4 * len(PANELS), 0.36 * len(keys) * len(workloads) + 1.6),
        squeeze=False,
    )
    for row, workload in enumerate(workloads):
        f = figures(workload)
        for col, (figure, label, log, unit) in enumerate(PANELS):
            ax = axes[row][col]
            values: list[float | None] = []
            for key in keys:
                value = f.get(key, {}).get(figure)
                if figure == "overhead_s" and value is not None:
                    value = max(value, MIN_OVERHEAD_S)
                values.append(value)
            shown = [v for v in values if v]
            y = list(range(len(keys)))
            colors = ["#d95f02" if k == "predstore" else "#7570b3" for k in keys]
            if log and shown:
                ax.set_xscale("log")
                ax.set_xlim(min(shown) / 4, max(shown) * 12)
                ax.xaxis.set_minor_formatter(NullFormatter())
            elif shown:
                ax.set_xlim(0, max(shown) * 1.45)
            left = ax.get_xlim()[0]
            ax.barh(y, [v or 0 for v in values], left=left if log else 0, color=colors)
            if log:  # bars of a log axis start at its left edge
                for patch, value in zip(ax.patches, values, strict=True):
                    patch.set_width((value or left) - left)
            for i, value in enumerate(values):
                text = _label(value, unit) if value else "not run"
                at = value if value else left
                ax.text(
                    at, i, f" {text}", va="center", fontsize=7, color="black" if value else "grey"
                )
            ax.set_yticks(y)
            ax.set_yticklabels(
                [CONTENDERS[k].title for k in keys] if col == 0 else [""] * len(keys), fontsize=8
            )
            ax.invert_yaxis()
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(f"{workload['name']}: {label}" if col == 0 else label, fontsize=9)
    info = document["machine"]
    fig.suptitle(
        f"predstore against the alternatives, {info['date']}, {info['cpus']} cores "
        f"(medians of {document['settings']['reps']})",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- files ------------------------------------------------------------------------------------


def write_results(document: dict[str, Any], results_dir: Path, chart_path: Path | None) -> str:
    """``latest.json``, ``latest.md`` and the chart in ``results_dir``; returns the Markdown."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "latest.json").write_text(json.dumps(document, indent=1) + "\n")
    text = markdown(document)
    (results_dir / "latest.md").write_text(f"# Benchmark results\n\n![chart](latest.png)\n\n{text}")
    if chart_path is not None:
        chart(document, chart_path)
    return text
