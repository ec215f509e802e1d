"""``metrics.csv``: an append-only table of logged metrics.

Rules:

- Rows are only ever appended. The header is written once; its column order
  never changes, so a resumed job continues the same table.
- A metric that first appears mid-run adds a column at the end. The header of
  a CSV file is its first line, so the file is rewritten once, atomically
  (temporary file, fsync, rename), with every existing row padded with an
  empty cell: no row is lost or reordered, and a reader sees either the old
  table or the new one.
- ``step`` is the first column; other columns follow in the order in which
  they were first logged.
- A crash in the middle of an append can leave a torn last line. Opening the
  file drops that incomplete line (it was never a complete row), so the next
  append does not glue a new row onto it.
- A failed append (disk full, I/O error) is rolled back to the previous end of
  the file and reported; the caller keeps the rows and retries.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from predstore.registry._atomic import atomic_write

log = logging.getLogger(__name__)

STEP = "step"


def format_cell(value: object) -> str:
    """The CSV text of one logged value; floats keep full precision."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


class MetricsCsv:
    """The ``metrics.csv`` of one run directory.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> table = MetricsCsv(path)
        >>> table.open()
        []
        >>> table.append([{"step": 0, "loss": 0.5}, {"step": 1, "loss": 0.4, "acc": 0.9}])
        >>> print(path.read_text(), end="")
        step,loss,acc
        0,0.5,
        1,0.4,0.9
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = []
        self.rows = 0  # data rows in the file

    def open(self, skip: int = 0) -> list[dict[str, str]]:
        """Load the header of an existing file and return its data rows after the first ``skip``.

        A torn last line is removed first. Rows are returned as text cells keyed
        by column (empty cells included) so the caller can replay them.
        """
        self.columns, self.rows = [], 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        data = self._drop_torn_line(data)
        table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        if not table:
            return []
        self.columns = table[0]
        body = table[1:]
        self.rows = len(body)
        # zip without strict: a short row (hand-edited file) leaves its tail cells out
        return [dict(zip(self.columns, row, strict=False)) for row in body[skip:]]

    def _drop_torn_line(self, data: bytes) -> bytes:
        end = data.rfind(b"\n") + 1
        if end == len(data):
            return data
        log.warning(
            "%s ends with an incomplete line (%d bytes, from an interrupted write); dropping it",
            self.path,
            len(data) - end,
        )
        os.truncate(self.path, end)
        return data[:end]

    def append(self, rows: Sequence[Mapping[str, object]]) -> None:
        """Append rows, adding columns for keys the header lacks.

        Raises:
            OSError: if the file cannot be written; the file is left as it was.
        """
        if not rows:
            return
        new = self._new_columns(rows)
        if new and self.columns and self.path.exists():
            self._rewrite_with(self.columns + new, rows)
        else:
            self._append_lines(self.columns + new, rows, header=not self.columns)
        self.columns = self.columns + new
        self.rows += len(rows)

    def _new_columns(self, rows: Iterable[Mapping[str, object]]) -> list[str]:
        known = set(self.columns)
        new: list[str] = []
        if not self.columns:
            new.append(STEP)
            known.add(STEP)
        for row in rows:
            for key in row:
                if key not in known:
                    known.add(key)
                    new.append(key)
        return new

    def _encode(self, columns: list[str], rows: Iterable[Mapping[str, object]]) -> list[list[str]]:
        return [[format_cell(row.get(c)) for c in columns] for row in rows]

    def _append_lines(
        self, columns: list[str], rows: Sequence[Mapping[str, object]], *, header: bool
    ) -> None:
        lines = ([columns] if header else []) + self._encode(columns, rows)
        payload = _csv_text(lines).encode("utf-8")
        with open(self.path, "ab") as f:  # if this fails, nothing was written
            start = f.tell()
            try:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                self._roll_back(start)
                raise

    def _roll_back(self, size: int) -> None:
        try:
            os.truncate(self.path, size)
        except OSError as exc:  # the next open() drops a torn line in any case
            log.warning("could not roll back a failed append to %s: %s", self.path, exc)

    def _rewrite_with(self, columns: list[str], rows: Sequence[Mapping[str, object]]) -> None:
        # Re-read from disk rather than memory: the file is the record, and the
        # rows are copied as text, byte for byte, padded with empty cells.
        with open(self.path, newline="", encoding="utf-8") as f:
            existing = list(csv.reader(f))
        body = existing[1:] if existing else []
        padded = (row + [""] * (len(columns) - len(row)) for row in body)
        lines = [columns, *padded, *self._encode(columns, rows)]
        atomic_write(self.path, _csv_text(lines).encode("utf-8"))
        log.info("%s: added column(s) %s", self.path, ", ".join(columns[len(self.columns) :]))
