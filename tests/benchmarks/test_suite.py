"""The benchmark suite end to end on tiny sizes, and its checks: a wrong answer never gets a figure.

No timing is asserted: only that the suite runs, writes what it promises,
and refuses output that differs from what the model predicted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks package lives beside src/, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks.alternatives import (  # noqa: E402
    CONTENDERS,
    CheckError,
    Parquet,
    analyse,
    check_analysis,
    check_dataset,
    make_inputs,
)
from benchmarks.common import run_forked, w1, w2  # noqa: E402
from benchmarks.report import bars  # noqa: E402
from benchmarks.suite import Settings, measure, run  # noqa: E402

from benchmarks import __main__ as cli  # noqa: E402

# Lance needs spawned DataLoader workers (seconds each): the fast test leaves it out.
FAST = [c for c in CONTENDERS if c != "lance"]
FIGURES = {
    "predict_s",
    "rss_added_mb",
    "disk_mb",
    "files",
    "analysis_s",
    "accuracy",
}


class DropsARow(Parquet):
    """The plain Parquet writer, except that it loses the first sample of every run."""

    key = "drops_a_row"
    title = "drops a row"

    def callback(self, out: Path, workload: Any) -> Any:
        inner = super().callback(out, workload)
        write = inner.write_on_batch_end

        def dropping(trainer, pl_module, prediction, batch_indices, *rest):  # type: ignore[no-untyped-def]
            if batch_indices[0] == 0:
                prediction = {k: v[1:] for k, v in prediction.items()}
                batch_indices = batch_indices[1:]
            write(trainer, pl_module, prediction, batch_indices, *rest)

        inner.write_on_batch_end = dropping
        return inner


def test_suite_end_to_end_on_tiny_sizes(tmp_path: Path) -> None:
    results, page = tmp_path / "results", tmp_path / "benchmarks.md"
    status = cli.main(
        [
            *("--w1", "300", "--w2", "8", "--w3", "600", "--reps", "1"),
            *("--contenders", ",".join(FAST)),
            *("--results", str(results), "--page", str(page), "--work", str(tmp_path / "work")),
        ]
    )
    assert status == 0

    document = json.loads((results / "latest.json").read_text())
    assert set(document) == {"machine", "command", "settings", "workloads", "bars"}
    assert document["machine"]["versions"]["torch"]
    assert set(document["workloads"]) == {"w1", "w2", "w3"}
    for key, workload in document["workloads"].items():
        entries = workload["contenders"]
        assert set(entries) == {"none", *FAST}, key
        assert entries["none"]["median"]["predict_s"] > 0
        for name in FAST:
            entry = entries[name]
            if "skipped" in entry:  # CSV on W2; the optional packages where they are absent
                assert entry["skipped"], (key, name)
                continue
            assert "failed" not in entry, (key, name, entry)
            assert set(entry["median"]) >= FIGURES, (key, name)
            assert entry["median"]["accuracy"] == pytest.approx(0.8, abs=0.06)  # 1 in 5 wrong
            assert len(entry["runs"]) == 1
            if name != "predstore" or "load_skipped" not in entry:
                assert entry["median"]["load_samples_per_s"] > 0, (key, name)
            if name == "predstore" and "load_skipped" not in entry:
                assert entry["median"]["load_collate_samples_per_s"] > 0, key
    assert "not installed" in document["workloads"]["w1"]["contenders"].get(
        "hf_datasets", {"skipped": "not installed"}
    ).get("skipped", "not installed")
    assert "skipped" in document["workloads"]["w2"]["contenders"]["csv"]

    assert len(document["bars"]) == 19  # 13, and two loading bars per workload
    for bar in document["bars"]:
        assert bar["met"] in (True, False, None)
        assert bar["met"] is not None or bar["note"], bar

    markdown = (results / "latest.md").read_text()
    assert "| contender | predict s | writer overhead s |" in markdown
    assert "W1 classify" in markdown and "W3 embed" in markdown and "### Bars" in markdown
    assert (results / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert cli.START in text and cli.END in text and "latest.png)" in text
    assert "### Bars" in text


def test_a_contender_that_drops_a_row_fails_its_check(tmp_path: Path) -> None:
    # In a forked child, as the suite runs it: torch's thread pool must stay unused here.
    result = run_forked(measure, DropsARow(), make_inputs(w1(300)), tmp_path / "direct")
    assert result["error_type"] == "CheckError"
    assert "299 rows were stored, 300 were predicted" in result["error"]

    settings = Settings(
        sizes={"w1": 300},
        workloads=["w1"],
        contenders=["drops_a_row"],
        reps=2,
        work=tmp_path / "work",
        extra={"drops_a_row": DropsARow()},
    )
    entries = run(settings)["w1"]["contenders"]
    assert entries["drops_a_row"]["check"] is True
    assert "rows were stored" in entries["drops_a_row"]["failed"]
    assert "median" not in entries["drops_a_row"]  # no figure for a wrong answer
    assert len(entries["none"]["runs"]) == 2  # the rounds went on without it


class Rows:
    """A map-style dataset over given columns, one of which may be corrupted."""

    def __init__(self, inputs: Any, **replace: Any) -> None:
        self.columns = {**inputs.columns, **replace}
        self.keys = [*inputs.workload.arrays, "pred", "prob"]

    def __len__(self) -> int:
        return len(self.columns["pred"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: self.columns[k][i] for k in self.keys} | {
            "index": i,
            "name": self.columns["name"][i],
        }


def test_checks_accept_exact_values_and_reject_any_change() -> None:
    inputs = make_inputs(w2(8))
    check_dataset(Rows(inputs), inputs)
    widened = inputs.columns["probs"].astype(np.float32)  # exact widening is accepted
    check_dataset(Rows(inputs, probs=widened), inputs)

    narrowed = inputs.columns["prob"].astype(np.float16)
    with pytest.raises(CheckError, match="prob is float16"):
        check_dataset(Rows(inputs, prob=narrowed), inputs)
    changed = inputs.columns["mask"].copy()
    changed[3, 0, 0, 0] += 1
    with pytest.raises(CheckError, match="mask differs"):
        check_dataset(Rows(inputs, mask=changed), inputs)
    renamed = inputs.columns["name"].copy()
    renamed[0] = "someone else"
    with pytest.raises(CheckError, match="names differ"):
        check_dataset(Rows(inputs, name=renamed), inputs)


def test_analysis_check_rejects_a_duplicated_row() -> None:
    import polars as pl

    inputs = make_inputs(w1(100))
    frame = pl.DataFrame(
        {"index": np.arange(100), "pred": inputs.columns["pred"], "prob": inputs.columns["prob"]}
    )
    check_analysis(analyse(frame, inputs.labels), inputs)
    doubled = pl.concat([frame.head(99), frame.slice(5, 1)])
    with pytest.raises(CheckError, match="unique 99"):
        check_analysis(analyse(doubled, inputs.labels), inputs)


def _workload(**figures: dict[str, float]) -> dict[str, Any]:
    return {
        "name": "W1 classify",
        "samples": 1000,
        "payload_mb": 400.0,
        "contenders": {k: {"median": v} for k, v in figures.items()},
    }


def test_bars_follow_the_figures_of_one_run() -> None:
    w1_results = _workload(
        none={"predict_s": 1.0},
        predstore={
            "predict_s": 1.1,
            "analysis_s": 0.01,
            "load_samples_per_s": 5000,
            "load_collate_samples_per_s": 12000,
            "files": 29,
        },
        torch_save={
            "predict_s": 11.0,
            "analysis_s": 2.0,
            "load_samples_per_s": 1000,
            "files": 1000,
        },
        parquet={"predict_s": 1.09, "analysis_s": 0.004, "load_samples_per_s": 9000, "files": 1},
    )
    w1_results["contenders"]["csv"] = {"skipped": "not here"}
    found = {(b.text): b for b in bars({"w1": w1_results})}
    loose = found["write overhead at least 50x smaller than alternative 1"]
    assert loose.value == pytest.approx(100) and loose.met is True
    floor = found["write overhead at most 1.25x that of alternative 5 (plain Parquet)"]
    assert floor.value == pytest.approx(0.1 / 0.09) and floor.met is True
    assert found["analysis within 2x of alternative 5"].met is False
    assert found["loading at least 10x alternative 1"].met is False
    default = found["loading with the default collate at least 1.0x the fastest other contender's"]
    assert default.value == pytest.approx(5000 / 9000) and default.met is False
    assert "Parquet" in default.shown  # the fastest other: the floor, at 9,000 samples/s
    tuned = found[
        "loading with `PredictionDataset.collate` at least 1.5x the fastest other contender's"
    ]
    assert tuned.value == pytest.approx(12000 / 9000) and tuned.met is False
    csv = found["write overhead at least 50x smaller than alternative 2"]
    assert csv.met is None and "not here" in csv.note
    files = found["at most payload/16 MiB + 5 files (one rank)"]
    assert files.value == 29 and files.met is False  # 400 MB / 16 MiB + 5 = 28.8


def test_an_absent_optional_package_skips_its_contender_with_a_message() -> None:
    class Absent(Parquet):
        key = "absent"
        modules = ("predstore_no_such_package",)

    reason = Absent().skip_reason(w1(10))
    assert reason is not None
    assert "predstore_no_such_package not installed" in reason and "bench-extra" in reason
    assert Parquet().skip_reason(w1(10)) is None
