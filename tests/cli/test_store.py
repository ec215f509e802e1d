"""The store commands, run as a user runs them: the installed ``predstore`` script."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl
import pytest
import typer

import predstore
from predstore.read.verify import verify
from support import assert_rows, write_ranks

EXE = shutil.which("predstore") or ""


def environment(**variables: str) -> dict[str, str]:
    """A bare environment (no terminal settings), keeping PYTHONPATH: the code under test."""
    return {"PATH": "", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **variables}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [EXE, *args] if EXE else [sys.executable, "-m", "predstore", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=environment(COLUMNS="200")
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s"
    write_ranks(path, [list(range(0, 40, 2)), list(range(1, 40, 2))])
    return path


def test_info_shows_keys_coverage_and_provenance(store: Path) -> None:
    result = run("info", str(store))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr  # piped, table titles go to stderr
    assert "40 rows" in out and "generation 1" in out
    for word in (
        "logits",
        "zarr",
        "float32",
        "300",
        "pred",
        "parquet",
        "Coverage",
        "Writes",
        "pyarrow",
        "zarr 3",
    ):
        assert word in out, word
    as_json = json.loads(run("info", str(store), "--json").stdout)
    assert as_json["rows"] == 40 and as_json["format"] == "predstore"


def test_verify_passes_then_fails_on_damage(store: Path) -> None:
    ok = run("verify", str(store), "--deep")
    assert ok.returncode == 0 and "ok" in ok.stdout
    next(store.rglob("*.parquet")).unlink()
    bad = run("verify", str(store))
    assert bad.returncode == 1
    assert "is missing" in bad.stderr and "not ok" in bad.stderr


def test_finalize_commits_unfinished_ranks(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1], [2, 3, 4]], finalize=False)
    before = run("verify", str(path))
    assert (
        before.returncode == 1
        and "unfinished write" in before.stderr
        and "5 committed rows" in before.stderr
    )
    done = run("finalize", str(path))
    assert done.returncode == 0 and "5 rows" in done.stdout
    assert run("verify", str(path)).returncode == 0


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = run("info", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "error: no store at" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_parquet_and_csv(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    assert run("export", str(store), str(out)).returncode == 0
    frame = pl.read_parquet(out)
    assert frame["index"].to_list() == list(range(40)) and "logits" in frame.columns
    csv = tmp_path / "out.csv"
    assert (
        run("export", str(store), str(csv), "--format", "csv", "--arrays", "skip").returncode == 0
    )
    assert "logits" not in pl.read_csv(csv).columns
    assert run("export", str(store), str(csv), "--format", "xml").returncode == 2


def test_upgrade_and_the_recovery_flags(tmp_path: Path) -> None:
    old = tmp_path / "old.pstore"
    shutil.copytree(Path(__file__).parents[1] / "data" / "format-0.1.pstore", old)
    done = run("upgrade", str(old))
    assert done.returncode == 0 and "format version 2, generation 3" in done.stdout
    assert run("finalize", str(old)).stdout.startswith("nothing to finalize")
    assert run("vacuum", str(old), "--retention", "0", "--discard-unfinished").returncode == 0
    assert run("finalize", str(old), "--allow-shrink").returncode == 0
    assert predstore.open(old).manifest.format_version == 2


def test_compact_rewrites_many_parts_into_few_in_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [list(range(0, 40, 2)), list(range(1, 40, 2))], batch_size=4)
    write_ranks(path, [list(range(40, 50))], mode="append", batch_size=3)
    for writer_rows in ([50, 51], [52]):
        write_ranks(path, [writer_rows], mode="append")
    before = predstore.open(path)
    assert len(before.manifest.parts) >= 4
    done = run("compact", str(path))
    assert done.returncode == 0, done.stderr
    after = predstore.open(path)
    assert len(after.manifest.parts) == 1
    assert after.manifest.generation == before.manifest.generation + 1
    assert_rows(after, range(53))
    assert_rows(before, range(53))  # a reader of the old generation keeps reading it
    assert verify(path, deep=True).ok


def test_compact_keeps_nulls_of_scalars_strings_and_vectors(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with predstore.StoreWriter(path, background=False) as writer:
        vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
        writer.write(
            {"score": [0.5, None, 1.5], "note": ["a", None, "c"], "v": vectors},
            [0, 1, 2],
            names=["n0", None, "n2"],
        )
        writer.commit()
        writer.write({"score": [None, 4.0], "note": [None, "e"], "v": None}, [3, 4])
        writer.commit()
        writer.write({"score": [6.0], "note": [None], "v": vectors[:1]}, [0], dataloader_idx=1)
    before = predstore.open(path)
    assert len(before.manifest.parts) == 3 and before.schema.keys["v"].nullable
    done = run("compact", str(path))
    assert done.returncode == 0, done.stderr
    after = predstore.open(path)
    assert len(after.manifest.parts) == 1
    assert after.manifest.generation == before.manifest.generation + 1
    for old in (before, after):  # the old generation still reads as it did
        for dl in (0, 1):
            score, v = old.read("score", dataloader_idx=dl), old.read("v", dataloader_idx=dl)
            assert np.ma.filled(score, -1).tolist() == (
                [0.5, -1, 1.5, -1, 4.0] if dl == 0 else [6.0]
            )
            assert np.ma.filled(v, -1)[:, 1].tolist() == ([1, 3, 5, -1, -1] if dl == 0 else [1])
        assert old.read("note").tolist() == ["a", None, "c", None, "e"]
        assert old.rows.names(old.rows.locate([0, 1, 2])) == ["n0", None, "n2"]
    assert {k: s.nullable for k, s in after.schema.keys.items()} == {
        "score": True,
        "note": True,
        "v": True,
    }
    assert verify(path, deep=True).ok


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("out.csv", pl.read_csv),
        ("out.json", pl.read_json),
        ("out.jsonl", pl.read_ndjson),
        ("out.feather", pl.read_ipc),
        ("out.arrow", pl.read_ipc),
    ],
)
def test_export_takes_the_format_from_the_extension(
    store: Path, tmp_path: Path, name: str, read: Any
) -> None:
    out = tmp_path / name
    result = run("export", str(store), str(out), "--arrays", "skip")
    assert result.returncode == 0, result.stderr
    frame = read(out)
    assert frame["index"].to_list() == list(range(40)) and frame["name"][3] == "s3"


def test_export_format_overrides_the_extension(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "rows.txt"
    assert run("export", str(store), str(out), "--format", "jsonl").returncode == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["index"] == 0 and len(first["logits"]) == 300
    unknown = run("export", str(store), str(tmp_path / "rows.xlsx"))
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: cannot tell the format of")
    assert ".feather" in unknown.stderr and not (tmp_path / "rows.xlsx").exists()


def test_file_system_errors_are_one_line(store: Path, tmp_path: Path) -> None:
    result = run("export", str(store), str(tmp_path / "no" / "such" / "out.csv"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot write") and "does not exist" in result.stderr
    (tmp_path / "f").write_text("x")
    nested = run(
        "export", str(store), str(tmp_path / "f" / "out"), "--key", "logits", "--files", "npy"
    )
    assert nested.returncode == 1 and nested.stderr.startswith("error: ")
    assert "Not a directory" in nested.stderr and nested.stderr.count("\n") == 1


def test_export_files_writes_one_file_per_row(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "rows"
    args = ("export", str(store), str(out), "--key", "logits", "--files", "npy")
    result = run(*args, "--where", "prob > 0.5 AND index < 20")
    assert result.returncode == 0, result.stderr
    expected = pl.read_parquet(next(store.rglob("*.parquet"))).head(0)  # columns only
    assert "prob" in expected.columns
    written = sorted(out.iterdir())
    assert written and all(p.suffix == ".npy" and p.name.startswith("s") for p in written)
    assert f"wrote {len(written)} npy files" in result.stdout
    again = run(*args)
    assert (
        again.returncode == 1
        and "already holds" in again.stderr
        and "--skip-existing" in again.stderr
    )
    rest = run(*args, "--skip-existing", "--file-names", "name")
    assert rest.returncode == 0 and f"{len(written)} kept as they were" in rest.stdout
    assert len(list(out.iterdir())) == 40
    bad = run("export", str(store), str(tmp_path / "png"), "--key", "logits", "--files", "png")
    assert bad.returncode == 1 and "is not an image" in bad.stderr
    assert not (tmp_path / "png").exists()
    assert run("export", str(store), str(out), "--files", "npy").returncode == 2
    assert (
        run(
            "export", str(store), str(tmp_path / "j"), "--key", "logits", "--files", "jpg"
        ).returncode
        == 2
    )
    where_without_files = run("export", str(store), str(tmp_path / "x.csv"), "--where", "index = 1")
    assert where_without_files.returncode == 2


def test_version_and_help_text_for_every_option() -> None:
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("predstore 0.")
    from predstore.cli.app import app

    command = typer.main.get_command(app)
    for path, sub in _commands(command):
        for param in sub.params:
            if isinstance(param, click.Option):
                assert param.help, f"{path} {param.opts} has no help text"
        text = run(*path.split()[1:], "--help").stdout
        assert "<bool>" not in text and "╭" not in text, path


def _commands(command: click.Command, path: str = "predstore") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, f"{path} {name}")
    return found


def test_piped_info_is_tab_separated_and_never_wraps(store: Path) -> None:
    result = subprocess.run(
        [EXE or sys.executable, *([] if EXE else ["-m", "predstore"]), "info", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(COLUMNS="50"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not any(c in result.stdout for c in "│┃━─╭")
    keys = lines[lines.index("key\tstorage\tdtype\tshape\ton disk\traw\tratio") + 1 :]
    assert keys[0].split("\t")[:4] == ["logits", "zarr", "float32", "300"]
    assert "Keys" in result.stderr and "Coverage" in result.stderr
    header = next(i for i, line in enumerate(lines) if line.startswith("write\t"))
    assert lines[header + 1].count("\t") == lines[header].count("\t")  # one line per write


def test_progress_shows_on_a_terminal_only(store: Path, tmp_path: Path) -> None:
    terminal = _on_a_terminal("export", str(store), str(tmp_path / "a.csv"))
    assert "exporting csv" in terminal
    piped = run("export", str(store), str(tmp_path / "b.csv"))
    assert piped.returncode == 0 and piped.stderr == ""
    assert "exporting" not in piped.stdout and piped.stdout.startswith("wrote 40 rows")


def test_a_narrow_terminal_shrinks_columns_not_key_names(store: Path) -> None:
    shown = _on_a_terminal("info", str(store), columns=60, stdout=True)
    lines = [line for line in _without_styles(shown).splitlines() if line.strip()]
    assert all(len(line) <= 60 for line in lines)
    keys = [line.split()[0] for line in lines if line.startswith(("logits ", "pred ", "prob "))]
    assert keys == ["logits", "pred", "prob"]
    assert "dataloader: 0" in shown  # the coverage table does not fit: one line per field


def _without_styles(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text).replace("\r", "")


def _on_a_terminal(*args: str, columns: int = 100, stdout: bool = False) -> str:
    """What the command writes to a terminal: its stderr (stdout piped), or both."""
    primary, secondary = pty.openpty()
    command = [EXE, *args] if EXE else [sys.executable, "-m", "predstore", *args]
    process = subprocess.Popen(
        command,
        stdout=secondary if stdout else subprocess.PIPE,
        stderr=secondary,
        env=environment(COLUMNS=str(columns), TERM="xterm-256color"),
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.communicate(timeout=120)
    os.close(primary)
    assert process.returncode == 0
    return b"".join(chunks).decode(errors="replace")
