"""The ways people save predictions today, and predstore, as contenders of one benchmark.

Each contender is what a user writes in a few lines, the way it is usually
written:

- a Lightning callback that writes what ``trainer.predict`` yields
  (``callback``);
- reading the files back into a data frame of ``index``, ``pred`` and
  ``prob`` for analysis (``frame``);
- a map-style torch Dataset over the files, for training on the predictions
  (``dataset``): every item is a dict of the workload's arrays (their own
  dtype and shape), ``pred``, ``prob``, ``name`` and the row's global
  ``index``.

| key | contender |
|---|---|
| ``predstore`` | ``predstore.PredictionWriter``, ``predstore.open``, ``predstore.PredictionDataset`` |
| ``torch_save`` | 1. one ``torch.save`` file per sample, named by its index |
| ``csv`` | 2. one CSV row per sample, a file per rank, merged with pandas at the end |
| ``recipe`` | 3. Lightning's documented ``BasePredictionWriter``: one ``torch.save`` per batch with its ``batch_indices`` |
| ``async_files`` | 4. per-sample files from a thread pool, a bound on writes in flight, temp file then rename |
| ``parquet`` | 5. a plain pyarrow ``ParquetWriter`` streaming a row group per batch: the columnar floor |
| ``lance`` | 6. a Lance dataset written from a stream of record batches (``pylance``, optional) |
| ``hf_datasets`` | 6. a Hugging Face ``datasets.Dataset`` built at the end and saved to disk (optional) |

The floor is tuned as a competent user would: dictionary encoding only for
the string column (pyarrow's default tries a dictionary on every float page
too, and writes logits about 10x slower). Arrays go to Arrow-based formats
as flat fixed-size lists and are reshaped on reading; Hugging Face datasets
use their own ``Array3D``/``Array4D`` types for arrays of more than one
dimension.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmarks.common import Workload, batches

# Hugging Face datasets must never reach for a hub here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


class CheckError(AssertionError):
    """A contender's output differs from what was predicted: its figures do not count."""


@dataclass
class Inputs:
    """Everything the trivial model predicts, in index order: the truth every check compares with."""

    workload: Workload
    columns: dict[str, np.ndarray]  # the workload's arrays, "pred", "prob", "name" (objects)
    labels: np.ndarray  # the ground truth that accuracy is computed against

    @property
    def samples(self) -> int:
        return self.workload.samples

    @property
    def expected_accuracy(self) -> float:
        return float(np.mean(self.columns["pred"] == self.labels))


def make_inputs(workload: Workload) -> Inputs:
    parts = list(batches(workload))
    columns = {
        key: np.concatenate([b[key] for b in parts]) for key in [*workload.arrays, "pred", "prob"]
    }
    columns["name"] = np.array([n for b in parts for n in b["name"]], dtype=object)
    labels = columns["pred"].copy()
    labels[::5] += 1  # one prediction in five is wrong
    return Inputs(workload, columns, labels)


# -- what every contender shares --------------------------------------------------------------


class Contender:
    """One way of saving predictions: a writer callback, a reader for analysis, a Dataset."""

    key: ClassVar[str]
    title: ClassVar[str]
    modules: ClassVar[tuple[str, ...]] = ()  # optional packages it needs
    loader_context: ClassVar[str | None] = None  # DataLoader multiprocessing_context

    def skip_reason(self, workload: Workload) -> str | None:
        """Why this contender does not run on ``workload`` (None: it runs)."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            return (
                f"{', '.join(missing)} not installed: pip install -e '.[bench-extra]' "
                "(with -c requirements/constraints.txt) to measure it"
            )
        return None

    def callback(self, out: Path, workload: Workload) -> Any:
        raise NotImplementedError

    def frame(self, out: Path) -> Any:
        """``index``, ``pred`` and ``prob`` of every row, as a polars or pandas DataFrame."""
        raise NotImplementedError

    def dataset(self, out: Path, workload: Workload) -> Any:
        raise NotImplementedError


def _writer_base() -> type:
    from lightning.pytorch.callbacks import BasePredictionWriter

    return BasePredictionWriter  # type: ignore[no-any-return]


def sample_of(prediction: dict[str, Any], i: int, workload: Workload) -> dict[str, Any]:
    """Sample ``i`` of a batch's outputs; tensors are cloned, or torch.save would save the whole batch."""
    sample = {k: prediction[k][i].clone() for k in [*workload.arrays, "pred", "prob"]}
    sample["name"] = prediction["name"][i]
    return sample


def arrow_batch(prediction: dict[str, Any], indices: list[int], workload: Workload) -> Any:
    """One batch as an Arrow record batch: arrays as flat fixed-size lists."""
    import pyarrow as pa

    columns: dict[str, Any] = {
        "index": pa.array(np.asarray(indices, dtype=np.int64)),
        "name": pa.array(prediction["name"], pa.string()),
    }
    for key in workload.arrays:
        values = np.asarray(prediction[key])  # CPU tensors and numpy arrays alike, no copy
        flat = values.reshape(len(values), -1)
        columns[key] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
    columns["pred"] = pa.array(np.asarray(prediction["pred"]))
    columns["prob"] = pa.array(np.asarray(prediction["prob"]))
    return pa.RecordBatch.from_pydict(columns)


def arrow_columns(table: Any, workload: Workload) -> dict[str, Any]:
    """An Arrow table of ``arrow_batch`` rows back to numpy, arrays in their own shape."""
    columns: dict[str, Any] = {}
    for key, (shape, dtype) in workload.arrays.items():
        flat = table.column(key).combine_chunks().flatten().to_numpy()
        columns[key] = flat.astype(dtype, copy=False).reshape(len(table), *shape)
    for key in ("index", "pred", "prob"):
        columns[key] = table.column(key).to_numpy()
    columns["name"] = table.column("name").to_pylist()
    return columns


class ColumnsDataset:
    """Rows held in memory as numpy columns (what people do with a table they loaded whole)."""

    def __init__(self, columns: dict[str, Any], workload: Workload) -> None:
        self.columns, self.keys = columns, [*workload.arrays, "pred", "prob"]

    def __len__(self) -> int:
        return len(self.columns["index"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        item = {k: torch.as_tensor(self.columns[k][i]) for k in self.keys}
        item["index"] = int(self.columns["index"][i])
        item["name"] = self.columns["name"][i]
        return item


class FilesDataset:
    """One torch.save file per sample, loaded in ``__getitem__``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.indices = sorted(int(n[:-3]) for n in os.listdir(root) if n.endswith(".pt"))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        index = self.indices[i]
        return {**torch.load(self.root / f"{index}.pt"), "index": index}


def _files_frame(out: Path) -> Any:
    """Every per-sample file loaded, then one pandas frame (what people do with loose files)."""
    import pandas as pd
    import torch

    index, pred, prob = [], [], []
    for name in os.listdir(out):
        if name.endswith(".pt"):
            sample = torch.load(out / name)
            index.append(int(name[:-3]))
            pred.append(int(sample["pred"]))
            prob.append(float(sample["prob"]))
    return pd.DataFrame({"index": index, "pred": pred, "prob": prob})


# -- predstore --------------------------------------------------------------------------------


class Predstore(Contender):
    key = "predstore"
    title = "predstore"

    def callback(self, out: Path, workload: Workload) -> Any:
        import predstore

        return predstore.PredictionWriter(str(out), name_key="name")

    def frame(self, out: Path) -> Any:
        import predstore

        return predstore.open(out).scan(["index", "pred", "prob"]).collect()

    def dataset(self, out: Path, workload: Workload) -> Any:
        import predstore

        return predstore.PredictionDataset(out)


def predstore_dataset_missing() -> str | None:
    """Why predstore's loading cannot be measured yet (None when it can)."""
    import predstore

    try:
        predstore.PredictionDataset  # noqa: B018
    except AttributeError:
        return "predstore.PredictionDataset is not in this version of predstore"
    return None


# -- 1. one torch.save per sample -------------------------------------------------------------


class PerSampleFiles(Contender):
    """Contenders that leave one ``<index>.pt`` file per sample: read back the same way."""

    def frame(self, out: Path) -> Any:
        return _files_frame(out)

    def dataset(self, out: Path, workload: Workload) -> Any:
        return FilesDataset(out)


class TorchSave(PerSampleFiles):
    key = "torch_save"
    title = "1. torch.save per sample"

    def callback(self, out: Path, workload: Workload) -> Any:
        import torch

        class PerSampleWriter(_writer_base()):  # type: ignore[misc]
            def write_on_batch_end(
                self,
                trainer,
                pl_module,
                prediction,
                batch_indices,
                batch,
                batch_idx,
                dataloader_idx,
            ):  # type: ignore[no-untyped-def]
                for i, index in enumerate(batch_indices):
                    torch.save(sample_of(prediction, i, workload), out / f"{index}.pt")

        out.mkdir(parents=True)
        return PerSampleWriter("batch")


# -- 2. CSV rows per rank, merged with pandas -------------------------------------------------


class Csv(Contender):
    key = "csv"
    title = "2. CSV rows, pandas merge"

    def skip_reason(self, workload: Workload) -> str | None:
        per_sample = sum(int(np.prod(s)) for s, _ in workload.arrays.values())
        if per_sample > 100_000:
            return (
                f"{per_sample:,} values per sample do not go in a CSV row: "
                "people who keep volumes save them as files (alternative 1)"
            )
        return super().skip_reason(workload)

    def callback(self, out: Path, workload: Workload) -> Any:
        import pandas as pd

        header = ["index", "name", "pred", "prob"] + [
            f"{key}_{j}"
            for key, (shape, _) in workload.arrays.items()
            for j in range(np.prod(shape))
        ]

        class CsvWriter(_writer_base()):  # type: ignore[misc]
            def on_predict_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                out.mkdir(parents=True, exist_ok=True)
                self.file = open(  # noqa: SIM115
                    out / f"predictions-rank{trainer.global_rank}.csv", "w", newline=""
                )
                self.rows = csv.writer(self.file)
                self.rows.writerow(header)

            def write_on_batch_end(
                self,
                trainer,
                pl_module,
                prediction,
                batch_indices,
                batch,
                batch_idx,
                dataloader_idx,
            ):  # type: ignore[no-untyped-def]
                arrays = [prediction[k].flatten(1).tolist() for k in workload.arrays]
                pred, prob = prediction["pred"].tolist(), prediction["prob"].tolist()
                for i, index in enumerate(batch_indices):
                    values = chain.from_iterable(a[i] for a in arrays)
                    self.rows.writerow([index, prediction["name"][i], pred[i], prob[i], *values])

            def on_predict_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                self.file.close()
                trainer.strategy.barrier()
                if trainer.is_global_zero:
                    parts = sorted(out.glob("predictions-rank*.csv"))
                    merged = pd.concat([pd.read_csv(p) for p in parts]).sort_values("index")
                    merged.to_csv(out / "predictions.csv", index=False)
                    for part in parts:
                        part.unlink()

        return CsvWriter("batch")

    def frame(self, out: Path) -> Any:
        import pandas as pd

        return pd.read_csv(out / "predictions.csv", usecols=["index", "pred", "prob"])

    def dataset(self, out: Path, workload: Workload) -> Any:
        import pandas as pd

        frame = pd.read_csv(out / "predictions.csv")
        columns: dict[str, Any] = {}
        for key, (shape, dtype) in workload.arrays.items():
            names = [f"{key}_{j}" for j in range(np.prod(shape))]
            columns[key] = frame[names].to_numpy(dtype).reshape(len(frame), *shape)
        columns["index"] = frame["index"].to_numpy()
        columns["pred"] = frame["pred"].to_numpy(np.int64)
        columns["prob"] = frame["prob"].to_numpy(np.float32)
        columns["name"] = frame["name"].tolist()
        return ColumnsDataset(columns, workload)


# -- 3. Lightning's BasePredictionWriter recipe -----------------------------------------------


class Recipe(Contender):
    key = "recipe"
    title = "3. Lightning recipe, torch.save per batch"

    def callback(self, out: Path, workload: Workload) -> Any:
        import torch

        class CustomWriter(_writer_base()):  # type: ignore[misc]
            def write_on_batch_end(
                self,
                trainer,
                pl_module,
                prediction,
                batch_indices,
                batch,
                batch_idx,
                dataloader_idx,
            ):  # type: ignore[no-untyped-def]
                folder = out / str(dataloader_idx)
                folder.mkdir(parents=True, exist_ok=True)
                torch.save(
                    {"prediction": prediction, "batch_indices": batch_indices},
                    folder / f"{trainer.global_rank}-{batch_idx}.pt",
                )

        return CustomWriter("batch")

    @staticmethod
    def _load(out: Path) -> Iterator[dict[str, Any]]:
        import torch

        for path in sorted((out / "0").glob("*.pt")):
            yield torch.load(path)

    def frame(self, out: Path) -> Any:
        import pandas as pd
        import torch

        saved = list(self._load(out))
        return pd.DataFrame(
            {
                "index": [i for s in saved for i in s["batch_indices"]],
                "pred": torch.cat([s["prediction"]["pred"] for s in saved]).numpy(),
                "prob": torch.cat([s["prediction"]["prob"] for s in saved]).numpy(),
            }
        )

    def dataset(self, out: Path, workload: Workload) -> Any:
        import torch

        saved = list(self._load(out))
        columns: dict[str, Any] = {
            k: torch.cat([s["prediction"][k] for s in saved]).numpy()
            for k in [*workload.arrays, "pred", "prob"]
        }
        columns["index"] = np.array([i for s in saved for i in s["batch_indices"]])
        columns["name"] = [n for s in saved for n in s["prediction"]["name"]]
        return ColumnsDataset(columns, workload)


# -- 4. per-sample files from a bounded thread pool -------------------------------------------


class AsyncFiles(PerSampleFiles):
    key = "async_files"
    title = "4. async per-sample files"
    workers = 4
    in_flight = 256

    def callback(self, out: Path, workload: Workload) -> Any:
        import torch

        workers, in_flight = self.workers, self.in_flight

        class AsyncWriter(_writer_base()):  # type: ignore[misc]
            def on_predict_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                out.mkdir(parents=True, exist_ok=True)
                self.pool = ThreadPoolExecutor(workers)
                self.slots = threading.BoundedSemaphore(in_flight)
                self.futures: list[Future[None]] = []

            def _save(self, sample: dict[str, Any], path: Path) -> None:
                try:
                    temporary = path.with_name(f".{path.name}.tmp")
                    torch.save(sample, temporary)
                    os.replace(temporary, path)
                finally:
                    self.slots.release()

            def write_on_batch_end(
                self,
                trainer,
                pl_module,
                prediction,
                batch_indices,
                batch,
                batch_idx,
                dataloader_idx,
            ):  # type: ignore[no-untyped-def]
                for i, index in enumerate(batch_indices):
                    sample = sample_of(prediction, i, workload)
                    self.slots.acquire()
                    self.futures.append(self.pool.submit(self._save, sample, out / f"{index}.pt"))

            def on_predict_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                self.pool.shutdown(wait=True)
                for future in self.futures:
                    future.result()  # a failed write fails predict

        return AsyncWriter("batch")


# -- 5. a plain pyarrow ParquetWriter: the columnar floor -------------------------------------


class Parquet(Contender):
    key = "parquet"
    title = "5. pyarrow ParquetWriter (floor)"

    def callback(self, out: Path, workload: Workload) -> Any:
        import pyarrow.parquet as pq

        class ParquetStreamWriter(_writer_base()):  # type: ignore[misc]
            writer: Any = None

            def write_on_batch_end(
                self,
                trainer,
                pl_module,
                prediction,
                batch_indices,
                batch,
                batch_idx,
                dataloader_idx,
            ):  # type: ignore[no-untyped-def]
                rows = arrow_batch(prediction, batch_indices, workload)
                if self.writer is None:
                    out.mkdir(parents=True, exist_ok=True)
                    path = out / f"rank-{trainer.global_rank}.parquet"
                    # Dictionary encoding only for the strings: on float pages it costs ~10x.
                    self.writer = pq.ParquetWriter(path, rows.schema, use_dictionary=["name"])
                self.writer.write_batch(rows)

            def on_predict_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                self.writer.close()

        return ParquetStreamWriter("batch")

    def frame(self, out: Path) -> Any:
        import polars as pl

        return pl.scan_parquet(out / "*.parquet").select("index", "pred", "prob").collect()

    def dataset(self, out: Path, workload: Workload) -> Any:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        return ColumnsDataset(arrow_columns(table, workload), workload)


# -- 6. Lance and Hugging Face datasets (optional) ----------------------------------------------


class LanceRows:
    """A Lance dataset as a map-style Dataset: each batch is one ``take`` of its rows."""

    def __init__(self, path: Path, workload: Workload) -> None:
        import lance

        self.path, self.workload = str(path), workload
        self.length = lance.dataset(self.path).count_rows()
        self._open: tuple[int, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": None}

    def __len__(self) -> int:
        return self.length  # type: ignore[no-any-return]

    def __getitems__(self, items: list[int]) -> list[dict[str, Any]]:
        import lance
        import torch

        if self._open is None or self._open[0] != os.getpid():
            self._open = (os.getpid(), lance.dataset(self.path))
        columns = arrow_columns(self._open[1].take(items), self.workload)
        keys = [*self.workload.arrays, "pred", "prob"]
        return [
            {k: torch.as_tensor(columns[k][j]) for k in keys}
            | {"index": int(columns["index"][j]), "name": columns["name"][j]}
            for j in range(len(items))
        ]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]


class Lance(Contender):
    key = "lance"
    title = "6. Lance"
    modules = ("lance",)
    loader_context = "spawn"  # lance is not fork-safe once used: its documented advice

    def callback(self, out: Path, workload: Workload) -> Any:
        import lance
        import pyarrow as pa

        class LanceWriter(_writer_base()):  # type: ignore[misc]
            """Batches go through a bounded queue to one lance.write_dataset call on a thread."""

            thread: threading.Thread | None = None

            def write_on_batch_end(
                self,
                trainer,
                pl_module,
                prediction,
                batch_indices,
                batch,
                batch_idx,
                dataloader_idx,
            ):  # type: ignore[no-untyped-def]
                rows = arrow_batch(prediction, batch_indices, workload)
                if self.thread is None:
                    self.queue: queue.Queue[Any] = queue.Queue(maxsize=8)
                    reader = pa.RecordBatchReader.from_batches(
                        rows.schema, iter(self.queue.get, None)
                    )
                    self.thread = threading.Thread(
                        target=lance.write_dataset, args=(reader, str(out))
                    )
                    self.thread.start()
                self.queue.put(rows)

            def on_predict_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                assert self.thread is not None
                self.queue.put(None)
                self.thread.join()

        return LanceWriter("batch")

    def frame(self, out: Path) -> Any:
        import lance
        import polars as pl

        return pl.from_arrow(lance.dataset(str(out)).to_table(columns=["index", "pred", "prob"]))

    def dataset(self, out: Path, workload: Workload) -> Any:
        return LanceRows(out, workload)


class HfDatasets(Contender):
    key = "hf_datasets"
    title = "6. Hugging Face datasets"
    modules = ("datasets",)

    def callback(self, out: Path, workload: Workload) -> Any:
        import datasets

        datasets.disable_progress_bars()
        features: dict[str, Any] = {
            "index": datasets.Value("int64"),
            "name": datasets.Value("string"),
        }
        for key, (shape, dtype) in workload.arrays.items():
            if len(shape) == 1:
                features[key] = datasets.List(datasets.Value(dtype), length=shape[0])
            else:
                features[key] = getattr(datasets, f"Array{len(shape)}D")(shape=shape, dtype=dtype)
        features |= {"pred": datasets.Value("int64"), "prob": datasets.Value("float32")}

        class HfWriter(_writer_base()):  # type: ignore[misc]
            """Predictions gathered in lists, then one Dataset saved to disk."""

            def on_predict_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                self.columns: dict[str, list[Any]] = {k: [] for k in features}

            def write_on_batch_end(
                self,
                trainer,
                pl_module,
                prediction,
                batch_indices,
                batch,
                batch_idx,
                dataloader_idx,
            ):  # type: ignore[no-untyped-def]
                self.columns["index"].append(np.asarray(batch_indices))
                self.columns["name"].append(np.asarray(prediction["name"], dtype=object))
                for key in [*workload.arrays, "pred", "prob"]:
                    self.columns[key].append(prediction[key].numpy())

            def on_predict_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
                mapping = {k: np.concatenate(v) for k, v in self.columns.items()}
                mapping["name"] = mapping["name"].tolist()
                dataset = datasets.Dataset.from_dict(mapping, features=datasets.Features(features))
                dataset.save_to_disk(str(out))

        return HfWriter("batch")

    def frame(self, out: Path) -> Any:
        import datasets

        return (
            datasets.load_from_disk(str(out)).select_columns(["index", "pred", "prob"]).to_polars()
        )

    def dataset(self, out: Path, workload: Workload) -> Any:
        import datasets

        # Its "torch" format widens floats to float32 and integers to int64.
        return datasets.load_from_disk(str(out)).with_format("torch")


CONTENDERS: dict[str, Contender] = {
    c.key: c
    for c in (
        Predstore(),
        TorchSave(),
        Csv(),
        Recipe(),
        AsyncFiles(),
        Parquet(),
        Lance(),
        HfDatasets(),
    )
}


# -- checks: a fast wrong answer never wins ---------------------------------------------------


def check_value(key: str, got: Any, expected: np.ndarray, where: str) -> None:
    """Equal shape and values; the dtype may only widen exactly (float16 to float32, not back)."""
    got = np.asarray(got)
    if got.shape != expected.shape or not np.can_cast(expected.dtype, got.dtype, "safe"):
        raise CheckError(
            f"{where}: {key} is {got.dtype}{list(got.shape)}, "
            f"expected {expected.dtype}{list(expected.shape)}"
        )
    if not np.array_equal(got, expected.astype(got.dtype), equal_nan=expected.dtype.kind == "f"):
        raise CheckError(f"{where}: {key} differs from what the model predicted")


def check_rows(
    index: np.ndarray, values: dict[str, Any], names: list[str], inputs: Inputs, where: str
) -> None:
    """Rows read back (``values[key][j]`` is row ``index[j]``) hold exactly what was predicted."""
    for key in [*inputs.workload.arrays, "pred", "prob"]:
        check_value(key, values[key], inputs.columns[key][index], where)
    if list(names) != inputs.columns["name"][index].tolist():
        raise CheckError(f"{where}: names differ from what the model predicted")


def check_dataset(dataset: Any, inputs: Inputs, samples: int = 32) -> None:
    """Row count, and a sample of items (the first, the last, random ones) equal to the inputs."""
    if len(dataset) != inputs.samples:
        raise CheckError(f"{len(dataset):,} rows were stored, {inputs.samples:,} were predicted")
    rng = np.random.default_rng(1)
    picks = {0, len(dataset) - 1, *rng.integers(0, len(dataset), samples).tolist()}
    for i in sorted(picks):
        item = dataset[i]
        index = np.array([int(item["index"])])
        values = {k: np.asarray(item[k])[None] for k in [*inputs.workload.arrays, "pred", "prob"]}
        check_rows(index, values, [item["name"]], inputs, f"item {i} (index {index[0]})")


def check_batch(batch: dict[str, Any], inputs: Inputs) -> np.ndarray:
    """A DataLoader batch holds the predicted values of its indices; returns the indices."""
    index = np.asarray(batch["index"]).astype(np.int64)
    values = {k: np.asarray(batch[k]) for k in [*inputs.workload.arrays, "pred", "prob"]}
    check_rows(index, values, list(batch["name"]), inputs, "a loaded batch")
    return index


def analyse(frame: Any, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy against the labels, and a group-by pred (count, mean prob), in the frame's library."""
    if hasattr(frame, "group_by"):  # polars
        import polars as pl

        groups = frame.group_by("pred").agg(pl.len().alias("count"), pl.col("prob").mean())
        counts = groups["count"].to_numpy()
    else:  # pandas
        groups = frame.groupby("pred")["prob"].agg(["count", "mean"])
        counts = groups["count"].to_numpy()
    index, pred = frame["index"].to_numpy(), frame["pred"].to_numpy()
    return {
        "rows": len(frame),
        "unique": int(np.unique(index).size),
        "accuracy": float(np.mean(pred == labels[index])),
        "groups": len(groups),
        "grouped_rows": int(counts.sum()),
    }


def check_analysis(result: dict[str, Any], inputs: Inputs) -> None:
    n = inputs.samples
    expected = {
        "rows": n,
        "unique": n,
        "accuracy": inputs.expected_accuracy,
        "groups": int(np.unique(inputs.columns["pred"]).size),
        "grouped_rows": n,
    }
    wrong = {k: (result[k], v) for k, v in expected.items() if result[k] != v}
    if wrong:
        raise CheckError(
            f"analysis: {', '.join(f'{k} {g} (expected {e})' for k, (g, e) in wrong.items())}"
        )


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's start-up chatter off, for a readable benchmark log."""
    import logging
    import warnings

    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"lightning\..*")
        try:
            yield
        finally:
            logger.setLevel(level)
