"""Store: a committed store, opened for analysis and for reading values back."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from predstore.errors import (
    CorruptStoreError,
    InvalidBatchError,
    OutOfRangeError,
    StoreNotCommittedError,
    UnknownKeyError,
)
from predstore.format import dtypes
from predstore.format.commit import load_store_manifest
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem, LocalFileSystem, filesystem_for
from predstore.format.manifest import Coverage, PartEntry, StoreManifest
from predstore.format.parquet import check_size, read_part
from predstore.format.schema import (
    DATALOADER,
    INDEX,
    NAME,
    KeySchema,
    Schema,
    offset_column,
    part_schema,
    shape_column,
)
from predstore.read.arrays import ArrayReader
from predstore.read.row_index import PartLocator, RowIndex, integer_indices
from predstore.read.values import from_arrow, to_torch

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from torch.utils.data import Dataset

    from predstore.datasets.map_style import PredictionDataset
    from predstore.datasets.sequential import SequentialPredictionDataset
    from predstore.read.files import ExportedFiles

_FEW = 64
"""Up to this many indices are found from the manifest's part index ranges, not the row index."""


def open(
    path: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    filesystem: FileSystem | None = None,
) -> Store:
    """Open the committed store at ``path`` (a directory, or an ``s3://``, ``gs://``, ``az://`` URL).

    Args:
        path: the store: a directory or an object store URL.
        storage_options: credentials and endpoint of an object store, when
            ``path`` is a URL (default: the standard environment variables).
        filesystem: the :class:`~predstore.format.fs.FileSystem` to read
            through, instead of the one ``path`` names.

    Example::

        import polars as pl

        import predstore

        store = predstore.open("preds.pstore")
        print(len(store), store.keys())
        accuracy = store.scan().select((pl.col("pred") == pl.col("label")).mean()).collect()
        logits = store.read("logits", [0, 5, 7])

    Only the store manifest is read here (and the next commit record is
    looked for); it names every file the store uses, so no directory is ever
    listed and files of writes in progress are never seen. Each part's size
    is checked when it is first read. Raises ``StoreNotCommittedError`` when nothing was committed
    at ``path``, ``FormatVersionError`` for a store of a newer format and
    ``CorruptStoreError`` for a damaged manifest. On an object store,
    ``storage_options`` (or the standard environment variables) give the
    endpoint and credentials; opening costs a constant number of requests.
    """
    location = os.fspath(path)
    if filesystem is None:
        filesystem = filesystem_for(location, storage_options=storage_options)
        if isinstance(filesystem, LocalFileSystem):
            if os.path.isfile(filesystem.root):
                raise StoreNotCommittedError(f"{location} is a file; a store is a directory")
            if not os.path.exists(filesystem.root):
                raise StoreNotCommittedError(
                    f"no store at {location}: the directory does not exist"
                )
    manifest = load_store_manifest(filesystem)
    if manifest is None:
        raise StoreNotCommittedError(
            f"{location} holds no committed store (no manifest.json). If a write to it died, "
            f"`predstore finalize {location}` commits what its ranks had committed."
        )
    return Store(filesystem, manifest)


class Store:
    """A committed store: its schema, its rows as a polars LazyFrame, and its values by index or name.

    Open one with :func:`predstore.open`. A ``Store`` reads the generation
    it was opened at, whatever later commits do, for as long as the
    writers' ``retention`` keeps replaced files.

    Args:
        fs: the file system the store's files are read through.
        manifest: the committed manifest this ``Store`` reads.

    Example::

        import predstore

        store = predstore.open("preds.pstore")
        print(store)  # rows, generation, and each key's dtype, shape and storage
        if "logits" in store:
            first = store.read("logits", [0])
    """

    def __init__(self, fs: FileSystem, manifest: StoreManifest) -> None:
        self.fs = fs
        self.manifest = manifest
        self._arrays = {(a.key, a.write_id, a.rank): ArrayReader(fs, a) for a in manifest.arrays}
        self._footers_checked = False
        self._sized: set[str] = set()  # parts whose size was checked (on first read)
        _check_references(manifest)

    # -- what the store holds ----------------------------------------------

    @property
    def path(self) -> str:
        """The store's location.

        Example::

            import predstore

            print(predstore.open("preds.pstore").path)
        """
        return self.fs.root

    @property
    def schema(self) -> Schema:
        """Each key's dtype, per-sample shape and storage (Parquet or Zarr).

        Example::

            import predstore

            for key, spec in predstore.open("preds.pstore").schema.keys.items():
                print(key, spec.describe(), spec.storage)
        """
        return self.manifest.schema

    @property
    def coverage(self) -> dict[int, Coverage]:
        """Per dataloader: rows written, unique indices, duplicates, and missing ones when known.

        Example::

            import predstore

            for dataloader_idx, c in predstore.open("preds.pstore").coverage.items():
                print(dataloader_idx, c.unique, c.duplicates, c.missing)
        """
        return self.manifest.coverage

    def __len__(self) -> int:
        return self.manifest.rows

    def keys(self) -> list[str]:
        """The keys the store holds, in the order the first batch gave them.

        Example::

            import predstore

            print(predstore.open("preds.pstore").keys())
        """
        return list(self.schema.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.schema.keys

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every row, as :meth:`row` returns it, in the store's order (``store[0]``, ``store[1]``, ...)."""
        block = 1024
        for start in range(0, len(self), block):
            yield from self._rows(np.arange(start, min(start + block, len(self))))

    def __getitem__(self, i: int | slice) -> Any:
        """Row ``i`` in the store's order (by dataloader, then index), every key; a list of rows for a slice."""
        if isinstance(i, slice):
            return self._rows(np.arange(len(self))[i])
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(
                f"a store is indexed by row position (an int or a slice), not {type(i).__name__}; "
                "read a key's values with store.read(key)"
            )
        position = int(i) + len(self) if i < 0 else int(i)
        if not 0 <= position < len(self):
            raise OutOfRangeError(f"row {i} is out of range for a store of {len(self)} rows")
        return self._rows(np.array([position]))[0]

    def row(
        self, index: int | None = None, *, name: str | None = None, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """The row of ``index`` (or the row called ``name``) in ``dataloader_idx``, with every key.

        Args:
            index: the row's global dataset index.
            name: the row's name, instead of ``index``.
            dataloader_idx: which dataloader's rows.

        Example::

            import predstore

            store = predstore.open("preds.pstore")
            print(store.row(3)["pred"], store.row(name="case-3")["index"])
        """
        if (index is None) == (name is None):
            raise InvalidBatchError("pass the row's index or its name (one of them)")
        if name is not None:
            positions = self.rows.locate_names([name], dataloader_idx)
        else:
            positions = self.rows.locate([index], dataloader_idx)  # type: ignore[list-item]
        return self._rows(positions)[0]

    def head(self, n: int = 5) -> pl.DataFrame:
        """The first ``n`` rows in the store's order as a polars DataFrame, every key included.

        Args:
            n: how many rows.

        Example::

            import predstore

            print(predstore.open("preds.pstore").head(3))
        """
        return self._frame(np.arange(min(max(n, 0), len(self))))

    @property
    def columns(self) -> list[str]:
        """The columns of :meth:`to_arrow` and :meth:`to_polars`: row keys, then every key.

        Example::

            import predstore

            print(predstore.open("preds.pstore").columns)
        """
        return self.head(0).columns

    def to_arrow(self) -> pa.Table:
        """Every row and every key as one Arrow table, in the store's order.

        Zarr keys become (nested) fixed-size list columns; a ragged key becomes
        the flat list of its values plus a ``<key>.shape`` column, as
        ``predstore export`` writes them.

        Example::

            import predstore

            table = predstore.open("preds.pstore").to_arrow()
        """
        from predstore.read.export import table

        return table(self, np.arange(len(self)))

    def to_polars(self) -> pl.DataFrame:
        """Every row and every key as a polars DataFrame (Zarr keys as Array or List columns).

        Example::

            import predstore

            frame = predstore.open("preds.pstore").to_polars()
        """
        return pl.from_arrow(self.to_arrow())  # type: ignore[return-value]

    def to_hf(self) -> Any:
        """Every row and every key as a Hugging Face ``datasets.Dataset`` (needs ``datasets``).

        Example::

            import importlib.util

            import predstore

            if importlib.util.find_spec("datasets") is not None:  # an optional dependency
                hf = predstore.open("preds.pstore").to_hf()
        """
        try:
            import datasets
        except ImportError:
            raise ImportError(
                "store.to_hf() needs the datasets package: pip install datasets"
            ) from None
        return datasets.Dataset(self.to_arrow())

    def export_files(
        self, key: str, out_dir: str | os.PathLike[str], *, writer: Any = "npy", **options: Any
    ) -> ExportedFiles:
        """One file per row of ``key`` in ``out_dir``: see :func:`predstore.read.files.export_files`.

        Args:
            key: the key written, one file per row.
            out_dir: the directory the files go to (made if missing).
            writer: the file format (``"npy"``, ``"png"``, ...) or a callable that writes one file.
            options: passed on to :func:`predstore.read.files.export_files`
                (``where``, ``file_names``, ``existing``, ...).

        Example::

            import predstore

            store = predstore.open("preds.pstore")
            done = store.export_files("logits", "logits/", writer="npy", where="pred > 4")
        """
        from predstore.read.files import export_files

        return export_files(self, key, out_dir, writer=writer, **options)

    def __repr__(self) -> str:
        from predstore.read.inspect import disk_bytes, human_bytes

        keys = ", ".join(f"{k}: {s.describe()} ({s.storage})" for k, s in self.schema.keys.items())
        return (
            f"<predstore.Store {self.path!r}: {len(self):,} rows, {len(self.schema.keys)} keys "
            f"({keys}), {human_bytes(disk_bytes(self))} on disk, generation {self.manifest.generation}>"
        )

    def _rows(self, positions: NDArray) -> list[dict[str, Any]]:
        """Rows at ``positions`` of the row index, every key, values as :meth:`read` gives them."""
        columns: dict[str, Any] = {
            INDEX: self.rows.index[positions].tolist(),
            DATALOADER: self.rows.dataloaders_of(positions).tolist(),
        }
        if self.schema.names:
            columns[NAME] = self.rows.names(positions)
        for key, spec in self.schema.keys.items():
            values = self._gather_at(key, spec, positions)
            if isinstance(values, np.ma.MaskedArray):
                flat = np.ma.getmaskarray(values).reshape(len(positions), -1)
                mask = np.asarray(flat.any(axis=1)).tolist()
                values = [None if m else v for v, m in zip(values.data, mask, strict=True)]
            columns[key] = [_plain(v) for v in values]
        return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    def _frame(self, positions: NDArray) -> pl.DataFrame:
        from predstore.read.export import table

        return pl.from_arrow(table(self, positions))  # type: ignore[return-value]

    @property
    def part_paths(self) -> list[str]:
        """The Parquet parts, as paths that pyarrow, polars or DuckDB read directly.

        Example::

            import predstore
            import pyarrow.parquet as pq

            table = pq.read_table(predstore.open("preds.pstore").part_paths)

        The same list as :meth:`parquet_files`, as a property.
        """
        return self.parquet_files()

    def parquet_files(self) -> list[str]:
        """The committed Parquet parts as absolute paths or URIs, in storage order.

        Example::

            import predstore
            import pyarrow.dataset as ds

            table = ds.dataset(predstore.open("preds.pstore").parquet_files()).to_table()

        Exactly the parts of the committed generation: never glob a store's
        folders, which also hold unfinished writes and, for a while after an
        overwrite, the parts it retired. A row committed twice (a resumed
        write) is in two parts; :meth:`scan` keeps the first.
        """
        return [self.fs.input_uri(p.path) for p in self.manifest.parts]

    # -- analysis ------------------------------------------------------------

    def scan(self, columns: Sequence[str] | None = None, *, sort: bool = False) -> pl.LazyFrame:
        """A polars LazyFrame over every part: ``index``, ``dataloader_idx``, ``name`` and the Parquet keys.

        Each (dataloader_idx, index) appears once (the first committed row).
        Rows come in storage order; ``sort=True`` sorts them by
        (dataloader_idx, index). Zarr keys are read with :meth:`read`.

        Args:
            columns: the columns to keep (default: all of them).
            sort: sort by ``(dataloader_idx, index)`` instead of storage order.

        Example::

            import polars as pl

            import predstore

            store = predstore.open("preds.pstore")
            accuracy = store.scan().select((pl.col("pred") == pl.col("label")).mean()).collect()
            wrong = store.scan(["index", "pred", "label"]).filter(pl.col("pred") != pl.col("label"))
        """
        wanted = self._columns(columns)
        if not self.manifest.parts:
            return pl.from_arrow(part_schema(self.schema).empty_table()).lazy().select(wanted)  # type: ignore[union-attr]
        self._check_footers()
        frame = pl.scan_parquet(self.part_paths, storage_options=self.fs.polars_options())
        if self.manifest.duplicates:
            frame = frame.unique(subset=[DATALOADER, INDEX], keep="first", maintain_order=True)
        if sort:
            frame = frame.sort([DATALOADER, INDEX])
        return frame.select(wanted)

    def _check_footers(self) -> None:
        """Every part has a readable footer with its rows (once per Store): a damaged part is
        refused here, with a predstore error, rather than by polars inside ``collect()``."""
        if not self._footers_checked:
            for part in self.manifest.parts:
                # The key columns with their page checksums: the row index may never have
                # read them (a part's keys can be known from its manifest entry).
                read_part(self.fs, part, [DATALOADER, INDEX])
            self._footers_checked = True

    def to_pandas(
        self, columns: Sequence[str] | None = None, *, sort: bool = True, arrays: bool = False
    ) -> pd.DataFrame:
        """The rows as a pandas DataFrame (sorted by dataloader and index unless ``sort=False``).

        Args:
            columns: the columns to take (default: every Parquet key and the row keys).
            sort: sort by dataloader and index.
            arrays: include every key (Zarr keys as a numpy array per cell, as
                :meth:`to_arrow` lays them out), always in the store's order.

        Example::

            import predstore

            frame = predstore.open("preds.pstore").to_pandas(["index", "pred"])
        """
        if arrays:
            frame = self.to_arrow().to_pandas()
            return frame if columns is None else frame[list(columns)]
        return self.scan(columns, sort=sort).collect().to_pandas()

    def _columns(self, columns: Sequence[str] | None) -> list[str]:
        base = [INDEX, DATALOADER] + ([NAME] if self.schema.names else [])
        parquet = [k for k, s in self.schema.keys.items() if s.storage == "parquet"]
        if columns is None:
            return base + parquet
        for column in columns:
            if column not in base and column not in parquet and column != NAME:
                zarr = [k for k, s in self.schema.keys.items() if s.storage == "zarr"]
                hint = (
                    f"; {column!r} is a Zarr key: read it with store.read()"
                    if column in zarr
                    else ""
                )
                raise UnknownKeyError(
                    f"column {column!r} is not in the store's Parquet columns {base + parquet}{hint}"
                )
        return list(columns)

    # -- values by index or name -------------------------------------------------

    @cached_property
    def rows(self) -> RowIndex:
        """The row index (built on first use from the parts' key columns).

        Example::

            import predstore

            rows = predstore.open("preds.pstore").rows
            print(len(rows))  # one entry per visible (dataloader_idx, index)
        """
        return RowIndex(self.fs, self.manifest)

    def indices(self, dataloader_idx: int = 0) -> NDArray:
        """The indices of ``dataloader_idx`` that the store holds, sorted.

        Args:
            dataloader_idx: which dataloader's rows.

        Example::

            import predstore

            print(predstore.open("preds.pstore").indices())  # [0 1 2 ... 7]
        """
        return self.rows.index[self.rows.dataloader(dataloader_idx)]

    def read(
        self,
        key: str,
        indices: Sequence[int] | NDArray | None = None,
        *,
        names: Sequence[str] | None = None,
        dataloader_idx: int = 0,
        as_torch: bool = False,
    ) -> Any:
        """The values of ``key`` for ``indices`` or ``names`` of ``dataloader_idx``, in the order asked.

        With neither, every row of the dataloader in index order. Fixed-shape
        keys come back as one numpy array (a masked array where a Parquet key
        has nulls), ragged keys as a list of arrays, strings as an object
        array. bfloat16 and float8 keys come back as ``ml_dtypes`` arrays, or
        as tensors of the same dtype with ``as_torch=True``.

        Args:
            key: the key to read.
            indices: the dataset indices of the rows, in the order wanted.
            names: the rows' names instead of ``indices``.
            dataloader_idx: the dataloader the rows were predicted for.
            as_torch: return tensors instead of numpy arrays.

        Example::

            import predstore

            store = predstore.open("preds.pstore")
            logits = store.read("logits", [0, 5, 7])  # shape (3, 10), in the order asked
            named = store.read("pred", names=["case-3"])
            everything = store.read("logits", as_torch=True)
        """
        spec = self._spec(key)
        part_of, row_of = self._locations(indices, names, dataloader_idx)
        values = self._gather(key, spec, part_of, row_of)
        return to_torch(values, key=key) if as_torch else values

    def _spec(self, key: str) -> KeySchema:
        if key not in self.schema.keys:
            raise UnknownKeyError(f"key {key!r} is not in the store; it holds {self.keys()}")
        return self.schema.keys[key]

    def _locations(
        self,
        indices: Sequence[int] | NDArray | None,
        names: Sequence[str] | None,
        dataloader_idx: int,
    ) -> tuple[NDArray, NDArray]:
        """The part and the row within it of each row asked for, in the order asked.

        A few indices, before the row index is built, are found from the
        manifest's per-part index ranges: a small read of a store of
        thousands of parts opens only the parts that hold its rows.
        """
        if indices is not None and names is None and "rows" not in self.__dict__:
            wanted = integer_indices(indices)
            if len(wanted) <= _FEW:
                return self._locator.locate(wanted, dataloader_idx)
        return self.rows.locations(self._positions(indices, names, dataloader_idx))

    @cached_property
    def _locator(self) -> PartLocator:
        return PartLocator(self.fs, self.manifest)

    @cached_property
    def _part_schema(self) -> pa.Schema:
        return part_schema(self.schema)

    def _positions(
        self,
        indices: Sequence[int] | NDArray | None,
        names: Sequence[str] | None,
        dataloader_idx: int,
    ) -> NDArray:
        if indices is not None and names is not None:
            raise InvalidBatchError("pass indices or names, not both")
        if names is not None:
            if isinstance(names, str):
                raise InvalidBatchError(f"names must be a list of names, got the string {names!r}")
            return self.rows.locate_names(names, dataloader_idx)
        if indices is None:
            span = self.rows.dataloader(dataloader_idx)
            return np.arange(span.start, span.stop)
        return self.rows.locate(indices, dataloader_idx)

    def _gather_at(self, key: str, spec: KeySchema, positions: NDArray) -> Any:
        """Values at ``positions`` of the row index, in the order of ``positions``."""
        return self._gather(key, spec, *self.rows.locations(positions))

    def _gather(self, key: str, spec: KeySchema, part_of: NDArray, row_of: NDArray) -> Any:
        """Values of rows ``row_of`` of parts ``part_of``, read part by part, in the order given."""
        order = np.argsort(part_of, kind="stable")
        bounds = np.flatnonzero(np.diff(part_of[order])) + 1
        groups = [group for group in np.split(order, bounds) if len(group)]
        chunks = [
            self._part_rows(key, spec, self.manifest.parts[part_of[group[0]]], row_of[group])
            for group in groups
        ]
        if spec.ragged:
            rows: list[Any] = [None] * len(part_of)
            for group, chunk in zip(groups, chunks, strict=True):
                for at, row in zip(group.tolist(), chunk, strict=True):
                    rows[at] = row
            return rows
        if not chunks:
            return _empty(spec)
        if any(isinstance(c, np.ma.MaskedArray) for c in chunks):  # nulls: keep the masks
            joined = np.ma.concatenate(chunks)  # type: ignore[no-untyped-call]
            return joined[np.argsort(order)]
        return _place(groups, chunks, len(part_of))

    def _part_rows(self, key: str, spec: KeySchema, part: PartEntry, rows: NDArray) -> Any:
        if spec.storage == "parquet":
            column = self._read_part(part, [key]).column(key).take(pa.array(rows))
            return from_arrow(spec, column)
        array = self._arrays[(key, part.write_id, part.rank)]
        if not spec.ragged:
            return array.rows(part.array_offsets[key] + rows)
        table = self._read_part(part, [offset_column(key), shape_column(key)]).take(pa.array(rows))
        starts = table.column(0).to_numpy()
        shapes = table.column(1).combine_chunks().flatten().to_numpy().reshape(len(rows), -1)
        spans = array.spans(starts, shapes.prod(axis=1))
        return [span.reshape(shape) for span, shape in zip(spans, shapes.tolist(), strict=True)]

    def _read_part(self, part: PartEntry, columns: list[str]) -> pa.Table:
        if part.path not in self._sized:  # sizes are checked on first read, not at open
            check_size(self.fs, part)
            self._sized.add(part.path)
        return read_part(self.fs, part, columns, self._part_schema)

    # -- torch datasets (torch is imported on first use) ---------------------------

    def dataset(
        self,
        keys: Sequence[str] | str | None = None,
        *,
        dataloader_idx: int = 0,
        order: Literal["index", "storage"] = "index",
        as_torch: bool = True,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        source: Dataset[Any] | None = None,
        missing: Literal["error", "skip"] = "error",
        cache_bytes: int = 256 << 20,
        preload: bool = False,
        check_source: bool = True,
    ) -> PredictionDataset:
        """The rows as a map-style torch Dataset: see :class:`predstore.PredictionDataset`.

        Args:
            keys: the keys each item holds; all keys by default.
            dataloader_idx: which dataloader's rows.
            order: ``"index"`` or ``"storage"``.
            as_torch: values as tensors (``False``: numpy arrays).
            transform: applied to each item's dict of values.
            source: a map-style dataset to pair the rows with.
            missing: ``"error"`` or ``"skip"`` for source samples without a prediction.
            cache_bytes: how many bytes of decoded Zarr values to keep.
            preload: decode the Zarr keys at construction.
            check_source: refuse a ``source`` unlike the dataset the store recorded.

        Each is described in full under :class:`predstore.PredictionDataset`.

        Example::

            import torch
            from torch.utils.data import TensorDataset

            import predstore

            train_set = TensorDataset(torch.randn(8, 4), torch.arange(8))
            teacher = predstore.open("preds.pstore").dataset(["logits"], source=train_set)
            (x, y), preds = teacher[0]
        """
        from predstore.datasets.map_style import PredictionDataset

        return PredictionDataset(
            self,
            keys,
            dataloader_idx=dataloader_idx,
            order=order,
            as_torch=as_torch,
            transform=transform,
            source=source,
            missing=missing,
            cache_bytes=cache_bytes,
            preload=preload,
            check_source=check_source,
        )

    def sequential_dataset(
        self, keys: Sequence[str] | str | None = None, **options: Any
    ) -> SequentialPredictionDataset:
        """Whole passes in storage order: see :class:`predstore.SequentialPredictionDataset`.

        Args:
            keys: the keys each element holds; all keys by default.
            options: the other arguments of :class:`predstore.SequentialPredictionDataset`.

        Example::

            import predstore

            passes = predstore.open("preds.pstore").sequential_dataset(batch_size=4)
            for batch in passes:
                print(batch["logits"].shape)
        """
        from predstore.datasets.sequential import SequentialPredictionDataset

        return SequentialPredictionDataset(self, keys, **options)


def _plain(value: Any) -> Any:
    """A 0-d value as a Python scalar, as polars and HF datasets give a row; arrays stay arrays."""
    if isinstance(value, np.generic) and value.dtype.kind in "biufUO":
        return value.item()
    return value


def _empty(spec: KeySchema) -> NDArray:
    if spec.dtype == dtypes.STRING:
        return np.zeros(0, dtype=object)
    return np.zeros(
        (0, *[int(d) for d in spec.shape if d is not None]), dtypes.get(spec.dtype).numpy
    )


def _check_references(manifest: StoreManifest) -> None:
    """Every array must be of a Zarr key, every part must find its arrays, inside their extents."""
    arrays = {(a.key, a.write_id, a.rank): a for a in manifest.arrays}
    zarr_keys = [k for k, s in manifest.schema.keys.items() if s.storage == "zarr"]
    for entry in manifest.arrays:
        if entry.key not in zarr_keys:
            raise CorruptStoreError(
                f"the manifest lists array {entry.path} of key {entry.key!r}, which its schema "
                "does not store in Zarr; the manifest is damaged"
            )
    for part in manifest.parts:
        for key in zarr_keys:
            array = arrays.get((key, part.write_id, part.rank))
            if array is None:
                raise CorruptStoreError(
                    f"the manifest lists part {part.path} but no array of key {key!r} for its rank"
                )
            if manifest.schema.keys[key].ragged:
                continue
            offset = part.array_offsets.get(key)
            if offset is None or offset + part.rows > array.length:
                raise CorruptStoreError(
                    f"part {part.path} places key {key!r} at {offset}..+{part.rows}, "
                    f"outside the committed extent {array.length} of {array.path}"
                )


def _place(groups: list[NDArray], chunks: list[NDArray], rows: int) -> NDArray:
    """One array with each chunk's rows at its group's positions (one copy of each value)."""
    out = np.empty((rows, *chunks[0].shape[1:]), chunks[0].dtype)
    for group, chunk in zip(groups, chunks, strict=True):
        first, last = int(group[0]), int(group[-1])
        if last - first == len(group) - 1:  # increasing (stable sort): a contiguous run
            out[first : last + 1] = chunk
        else:
            out[group] = chunk
    return out
