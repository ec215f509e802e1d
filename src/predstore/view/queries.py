"""What the store pages show, computed server-side with polars: never more than a page leaves.

Every function takes an open :class:`~predstore.Store` and returns plain data
that a template renders; bad input raises a ``PredstoreError`` whose message
the page shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from predstore.errors import QueryError, UnknownKeyError
from predstore.format import dtypes
from predstore.format.parquet import read_part
from predstore.format.schema import DATALOADER, INDEX, NAME
from predstore.read.filters import where_expr
from predstore.read.inspect import KeyUsage, disk_bytes, file_count, key_usage
from predstore.read.store import Store

#: Bins of a histogram of a float key; integer keys with fewer distinct values get one bar each.
BINS = 40
#: Bars of a value count (the most frequent values); the rest are summed into one figure.
TOP_VALUES = 30
#: Rows of a page of the rows table, at most.
MAX_PAGE = 500
#: Classes a confusion matrix shows, at most (the most frequent ones).
MAX_CLASSES = 60


# -- overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    rows: int
    generation: int
    committed_at: str
    files: int
    disk_bytes: int
    keys: list[KeyUsage]
    coverage: list[dict[str, Any]]
    writes: list[dict[str, Any]]
    libraries: dict[str, Any]
    charted: list[str]  # keys with a histogram or a value count


def overview(store: Store) -> Overview:
    """What ``predstore info`` shows, from the manifest and the parts' footers."""
    m = store.manifest
    coverage = [{"dataloader": dl, **_struct(c)} for dl, c in sorted(m.coverage.items())]
    writes = [
        {
            "write_id": w.write_id,
            "mode": w.mode,
            "rows": w.rows,
            "ranks": ", ".join(f"{r} {s}" for r, s in sorted(w.ranks.items())),
            "started_at": w.started_at,
            "ended_at": w.ended_at,
            "index_source": w.index_source or "the caller",
            "provenance": {k: v for k, v in w.provenance.items() if v is not None},
        }
        for w in m.writes
    ]
    return Overview(
        rows=m.rows,
        generation=m.generation,
        committed_at=m.committed_at,
        files=file_count(store),
        disk_bytes=disk_bytes(store),
        keys=key_usage(store),
        coverage=coverage,
        writes=writes,
        libraries=dict(m.provenance.get("libraries", {})),
        charted=scalar_keys(store),
    )


def _struct(value: Any) -> dict[str, Any]:
    return {f: getattr(value, f) for f in value.__struct_fields__}


def scalar_keys(store: Store) -> list[str]:
    """Parquet keys with one value per row: the ones a histogram or a value count describes."""
    return [k for k, s in store.schema.keys.items() if s.storage == "parquet" and not s.shape]


def label_keys(store: Store) -> list[str]:
    """Scalar keys of integer, boolean or string values: what a confusion matrix can cross."""
    return [k for k in scalar_keys(store) if _is_categorical(store.schema.keys[k].dtype)]


def _is_categorical(dtype: str) -> bool:
    return dtype == dtypes.STRING or dtype == "bool" or dtype.startswith(("int", "uint"))


# -- histograms -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    key: str
    labels: list[str]  # one per bar
    counts: list[int]
    filters: list[str]  # the WHERE clause that selects each bar's rows
    nulls: int
    other: int = 0  # rows of values beyond the TOP_VALUES shown


def histogram(store: Store, key: str) -> Histogram:
    """A histogram of a numeric scalar key, or the most frequent values of a categorical one."""
    if key not in scalar_keys(store):
        raise UnknownKeyError(
            f"{key!r} is not a scalar Parquet key; histograms exist for {scalar_keys(store)}"
        )
    dtype = store.schema.keys[key].dtype
    frame = store.scan([key])
    column = pl.col(key)
    if dtype in (dtypes.STRING, "bool"):
        return _value_counts(frame, key)
    lo, hi, nulls = (
        frame.select(
            column.min().alias("lo"), column.max().alias("hi"), column.null_count().alias("n")
        )
        .collect()
        .row(0)
    )
    if lo is None:
        return Histogram(key, [], [], [], nulls)
    if dtype.startswith(("int", "uint")) and hi - lo < BINS:
        return _value_counts(frame, key)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        frame = frame.filter(column.is_finite())
        lo, hi = frame.select(column.min().alias("lo"), column.max().alias("hi")).collect().row(0)
    width = (hi - lo) / BINS or 1.0
    bins = (
        frame.select(((column - lo) / width).floor().clip(0, BINS - 1).cast(pl.Int32).alias("b"))
        .drop_nulls()
        .group_by("b")
        .len()
        .collect(engine="streaming")
    )
    counts = [0] * BINS
    for b, n in bins.iter_rows():
        counts[b] += n
    edges = [lo + i * width for i in range(BINS + 1)]
    labels = [f"{_num(edges[i])} to {_num(edges[i + 1])}" for i in range(BINS)]
    filters = [
        f"{_ident(key)} >= {edges[i]!r} AND {_ident(key)} "
        + ("<=" if i == BINS - 1 else "<")
        + f" {edges[i + 1]!r}"
        for i in range(BINS)
    ]
    return Histogram(key, labels, counts, filters, nulls)


def _value_counts(frame: pl.LazyFrame, key: str) -> Histogram:
    counts = frame.group_by(key).len().collect(engine="streaming")
    nulls = int(counts.filter(pl.col(key).is_null())["len"].sum())
    top = counts.drop_nulls(key).sort(["len", key], descending=[True, False]).head(TOP_VALUES)
    top = top.sort(key)
    values = top[key].to_list()
    shown = int(top["len"].sum())
    other = int(counts["len"].sum()) - shown - nulls
    return Histogram(
        key,
        [str(v) for v in values],
        top["len"].to_list(),
        [f"{_ident(key)} = {_literal(v)}" for v in values],
        nulls,
        other,
    )


def _num(value: float) -> str:
    return f"{value:.4g}"


def _ident(name: str) -> str:
    """A column name as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)


# -- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowsPage:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    matched: int  # rows the filter selects
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.matched // self.size))


def columns(store: Store) -> list[str]:
    """The columns a filter or a sort may name: the built-in ones and the Parquet keys."""
    return store.scan().collect_schema().names()


def selection(store: Store, where: str, sort: str = "", descending: bool = False) -> pl.LazyFrame:
    """The store's rows that ``where`` selects (every row when empty), sorted by ``sort``."""
    frame = store.scan()
    names = columns(store)
    if where.strip():
        frame = frame.filter(where_expr(where, names))
    if sort:
        if sort not in names:
            raise QueryError(f"cannot sort by {sort!r}: the columns are {', '.join(names)}")
        frame = frame.sort(sort, descending=descending, nulls_last=True, maintain_order=True)
    return frame


def rows_page(
    store: Store,
    where: str = "",
    sort: str = "",
    descending: bool = False,
    page: int = 1,
    size: int = 50,
) -> RowsPage:
    """One page of the selected rows: only that page is collected."""
    if not 1 <= size <= MAX_PAGE:
        raise QueryError(f"a page holds 1 to {MAX_PAGE} rows; got {size}")
    if page < 1:
        raise QueryError(f"pages count from 1; got {page}")
    frame = selection(store, where, sort, descending)
    # The streaming engine reads the parts a batch at a time: memory stays flat at any size.
    matched = (
        frame.select(pl.len()).collect(engine="streaming").item() if where.strip() else len(store)
    )
    rows = frame.slice((page - 1) * size, size).collect(engine="streaming")
    return RowsPage(rows.columns, rows.rows(), matched, len(store), page, size)


def selected_rows(
    store: Store, where: str, sort: str = "", descending: bool = False
) -> pl.LazyFrame:
    """The (dataloader_idx, index) pairs of a selection, for an index list."""
    return selection(store, where, sort, descending).select(DATALOADER, INDEX)


# -- one sample -------------------------------------------------------------------------------


def locate(store: Store, index: int | None, name: str | None, dataloader_idx: int) -> int:
    """The global index of the sample asked for by index or by name."""
    if name:
        if not store.schema.names:
            raise QueryError("the store has no names; ask for a sample by index")
        found = store.scan([NAME, DATALOADER, INDEX]).filter(
            (pl.col(NAME) == name) & (pl.col(DATALOADER) == dataloader_idx)
        )
        hit = found.select(INDEX).head(1).collect()
        if hit.is_empty():
            raise QueryError(f"no sample named {name!r} in dataloader {dataloader_idx}")
        return int(hit.item())
    if index is None:
        indices = store.indices(dataloader_idx)
        if not len(indices):
            raise QueryError(f"dataloader {dataloader_idx} has no rows")
        return int(indices[0])
    return index


def sample_values(store: Store, index: int, dataloader_idx: int) -> dict[str, Any]:
    """Every key's value of one sample (a numpy value each), keys in schema order."""
    return {
        key: store.read(key, [index], dataloader_idx=dataloader_idx)[0] for key in store.schema.keys
    }


def sample_name(store: Store, index: int, dataloader_idx: int) -> str | None:
    """The name of one row, read from the one part that holds it."""
    if not store.schema.names:
        return None
    part, row = store.rows.locations(store.rows.locate([index], dataloader_idx))
    names = read_part(store.fs, store.manifest.parts[int(part[0])], [NAME]).column(NAME)
    return names[int(row[0])].as_py()


def neighbours(store: Store, index: int, dataloader_idx: int) -> tuple[int | None, int | None]:
    """The indices before and after ``index`` in its dataloader, for previous/next links."""
    indices = store.indices(dataloader_idx)
    at = int(indices.searchsorted(index))
    before = int(indices[at - 1]) if at > 0 else None
    after_at = at + 1 if at < len(indices) and indices[at] == index else at
    after = int(indices[after_at]) if after_at < len(indices) else None
    return before, after


# -- confusion matrix -------------------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    predicted: str  # the key along the columns
    actual: str  # the key along the rows
    classes: list[Any]
    cells: list[list[int]]  # cells[actual][predicted]
    precision: list[float | None]
    recall: list[float | None]
    support: list[int]
    accuracy: float | None
    rows: int  # rows counted (both keys not null)
    hidden: int = 0  # rows whose classes are beyond the MAX_CLASSES shown

    def where(self, actual: Any, predicted: Any) -> str:
        """The filter of the rows behind one cell."""
        return (
            f"{_ident(self.actual)} = {_literal(actual)} AND "
            f"{_ident(self.predicted)} = {_literal(predicted)}"
        )


def default_pair(store: Store) -> tuple[str, str]:
    """``pred`` against ``label`` when the store has both, else its first two categorical keys."""
    keys = label_keys(store)
    if "pred" in keys and "label" in keys:
        return "pred", "label"
    if len(keys) < 2:
        raise QueryError(
            f"a confusion matrix crosses two integer, boolean or string keys; the store has {keys}"
        )
    return keys[0], keys[1]


def confusion(store: Store, predicted: str, actual: str, where: str = "") -> Confusion:
    """Counts of every (actual, predicted) pair, with per-class precision and recall."""
    for key in (predicted, actual):
        if key not in label_keys(store):
            raise QueryError(
                f"{key!r} cannot be a confusion-matrix axis; pick integer, boolean or string "
                f"keys: {', '.join(label_keys(store))}"
            )
    frame = selection(store, where)
    pairs = (
        frame.select(actual, predicted)
        .drop_nulls()
        .group_by(actual, predicted)
        .len()
        .collect(engine="streaming")
    )
    return _matrix(pairs, predicted, actual)


def _matrix(
    pairs: pl.DataFrame, predicted: str, actual: str, names: tuple[str, str] | None = None
) -> Confusion:
    a_col, p_col = names or (actual, predicted)
    totals: dict[Any, int] = {}
    for a, p, n in pairs.select(a_col, p_col, "len").iter_rows():
        totals[a] = totals.get(a, 0) + n
        totals[p] = totals.get(p, 0) + n
    ranked = sorted(totals, key=lambda c: -totals[c])[:MAX_CLASSES]
    classes = sorted(ranked, key=_sort_key)
    at = {c: i for i, c in enumerate(classes)}
    cells = [[0] * len(classes) for _ in classes]
    counted = hidden = 0
    for a, p, n in pairs.select(a_col, p_col, "len").iter_rows():
        counted += n
        if a in at and p in at:
            cells[at[a]][at[p]] += n
        else:
            hidden += n
    support = [sum(row) for row in cells]
    predicted_total = [sum(cells[r][c] for r in range(len(classes))) for c in range(len(classes))]
    diagonal = [cells[i][i] for i in range(len(classes))]
    return Confusion(
        predicted=predicted,
        actual=actual,
        classes=classes,
        cells=cells,
        precision=[d / t if t else None for d, t in zip(diagonal, predicted_total, strict=True)],
        recall=[d / t if t else None for d, t in zip(diagonal, support, strict=True)],
        support=support,
        accuracy=sum(diagonal) / counted if counted else None,
        rows=counted,
        hidden=hidden,
    )


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


# -- two stores -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    key: str
    label: str | None
    on: str  # "index" or "name"
    rows_a: int
    rows_b: int
    joined: int
    agreement: float | None
    a_vs_b: Confusion
    accuracy_a: float | None = None
    accuracy_b: float | None = None
    fixed: int = 0  # A wrong, B right
    broken: int = 0  # A right, B wrong
    listing: str = "disagree"
    listed: list[dict[str, Any]] = field(default_factory=list)
    listed_total: int = 0


LISTINGS = ("disagree", "fixed", "broken")


def compare(
    a: Store,
    b: Store,
    key: str,
    label: str = "",
    on: str = "index",
    listing: str = "disagree",
    limit: int = 100,
) -> Comparison:
    """Join two stores' rows and measure where their ``key`` agrees, against ``label`` if given."""
    if on not in ("index", "name"):
        raise QueryError(f"join on 'index' or 'name'; got {on!r}")
    if listing not in LISTINGS:
        raise QueryError(f"list one of {', '.join(LISTINGS)}; got {listing!r}")
    for store, which in ((a, "A"), (b, "B")):
        if key not in label_keys(store):
            raise QueryError(
                f"store {which} has no integer, boolean or string key {key!r}; "
                f"it has {', '.join(label_keys(store))}"
            )
        if on == "name" and not store.schema.names:
            raise QueryError(f"store {which} has no names; join on index")
    if label and label not in label_keys(a):
        raise QueryError(f"store A has no label key {label!r}; it has {', '.join(label_keys(a))}")
    join_on = [NAME] if on == "name" else [DATALOADER, INDEX]
    shown = [DATALOADER, INDEX] + ([NAME] if a.schema.names else [])
    left = a.scan([*dict.fromkeys(shown + join_on), key, *([label] if label else [])])
    right = b.scan([*join_on, key]).rename({key: "__b"})
    joined = left.rename({key: "__a"}).join(right, on=join_on, how="inner").collect()
    agree = joined["__a"] == joined["__b"]
    pairs = joined.group_by("__b", "__a").len()
    matrix = _matrix(pairs, f"{key} (B)", f"{key} (A)", names=("__a", "__b"))
    result: dict[str, Any] = {}
    if label:
        right_a = joined["__a"] == joined[label]
        right_b = joined["__b"] == joined[label]
        result = {
            "accuracy_a": right_a.mean(),
            "accuracy_b": right_b.mean(),
            "fixed": int((~right_a & right_b).sum()),
            "broken": int((right_a & ~right_b).sum()),
        }
        masks = {"disagree": ~agree, "fixed": ~right_a & right_b, "broken": right_a & ~right_b}
    else:
        masks = {"disagree": ~agree}
    if listing not in masks:
        raise QueryError(f"the {listing} list needs a label key to judge A and B against")
    chosen = (
        joined.filter(masks[listing])
        .sort(join_on)
        .select(*dict.fromkeys(shown + join_on), "__a", "__b", *([label] if label else []))
        .rename({"__a": f"{key} (A)", "__b": f"{key} (B)"})
    )
    return Comparison(
        key=key,
        label=label or None,
        on=on,
        rows_a=len(a),
        rows_b=len(b),
        joined=joined.height,
        agreement=agree.mean() if joined.height else None,  # type: ignore[arg-type]
        a_vs_b=matrix,
        listing=listing,
        listed=chosen.head(limit).to_dicts(),
        listed_total=chosen.height,
        **result,
    )
