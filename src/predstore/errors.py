"""The exceptions predstore raises.

Every error that predstore raises on purpose is a :class:`PredstoreError`, so
``except predstore.PredstoreError`` catches all of them and nothing else. Each
subclass also derives from the builtin exception a Python user would expect
(``ValueError`` for bad input, ``KeyError`` for a missing key, ...), and each
message names the key, index or file concerned and says what was expected.
"""

from __future__ import annotations


class PredstoreError(Exception):
    """Base class of every error that predstore raises on purpose.

    Example::

        import predstore

        try:
            predstore.open("missing.pstore")
        except predstore.PredstoreError as e:  # any of predstore's errors, nothing else
            print(f"predstore: {e}")
    """

    def __str__(self) -> str:
        # KeyError quotes its message; keep every message readable as written.
        return str(self.args[0]) if self.args else ""


class InvalidBatchError(PredstoreError, ValueError):
    """A batch handed to a writer is malformed: lengths, indices or names.

    Example::

        import numpy as np
        import predstore

        with predstore.StoreWriter("bad.pstore") as writer:
            try:
                writer.write({"pred": np.zeros(3)}, indices=[0, 1])  # 3 rows, 2 indices
            except predstore.InvalidBatchError as e:
                print(e)
    """


class SchemaError(PredstoreError, ValueError):
    """A key's type or shape cannot be stored, or differs from its schema.

    Example::

        import numpy as np
        import predstore

        with predstore.StoreWriter("shapes.pstore") as writer:
            writer.write({"emb": np.zeros((2, 4), np.float32)}, indices=[0, 1])
            try:
                writer.write({"emb": np.zeros((2, 5), np.float32)}, indices=[2, 3])
            except predstore.SchemaError as e:  # the first batch fixed the shape (4,)
                print(e)
    """


class StoreExistsError(PredstoreError, FileExistsError):
    """The path already holds a store (or other data) and the mode forbids writing.

    Example::

        import predstore

        try:
            predstore.StoreWriter("preds.pstore", mode="error")
        except predstore.StoreExistsError as e:
            print(e)  # names the mode that would write there
    """


class StoreNotCommittedError(PredstoreError, FileNotFoundError):
    """The path holds no committed store: there is no store manifest.

    Example::

        import predstore

        try:
            predstore.open("never-written.pstore")
        except predstore.StoreNotCommittedError as e:
            print(e)
    """


class CorruptStoreError(PredstoreError):
    """A manifest or data file is unreadable, inconsistent or unsafe.

    Example::

        import shutil

        import predstore

        shutil.copytree("preds.pstore", "damaged.pstore")
        with open("damaged.pstore/manifest.json", "w") as f:
            f.write("{not json")
        try:
            predstore.open("damaged.pstore")
        except predstore.CorruptStoreError as e:
            print(e)
    """


class StorePermissionError(PredstoreError, PermissionError):
    """A file of the store exists but this process may not read it.

    Example::

        import predstore

        try:
            logits = predstore.open("preds.pstore").read("logits")
        except predstore.StorePermissionError as e:
            print(e)  # names the file; fix its permissions, or read as its owner
    """


class FormatVersionError(PredstoreError):
    """The store was written by a newer predstore format than this one reads.

    Example::

        import json
        import shutil

        import predstore

        shutil.copytree("preds.pstore", "future.pstore")
        manifest = json.load(open("future.pstore/manifest.json"))
        manifest["format_version"] = 99
        json.dump(manifest, open("future.pstore/manifest.json", "w"))
        try:
            predstore.open("future.pstore")
        except predstore.FormatVersionError as e:
            print(e)  # says to upgrade predstore
    """


class UnknownKeyError(PredstoreError, KeyError):
    """A key was asked for that the store does not hold.

    Example::

        import predstore

        try:
            predstore.open("preds.pstore").read("probs")
        except predstore.UnknownKeyError as e:
            print(e)  # lists the keys the store holds
    """


class MissingRowsError(PredstoreError, KeyError):
    """Indices or names were asked for that the store does not hold.

    Example::

        import predstore

        try:
            predstore.open("preds.pstore").read("pred", [0, 1000])
        except predstore.MissingRowsError as e:
            print(e)
    """


class OutOfRangeError(PredstoreError, IndexError):
    """A dataset item was asked for outside the dataset's range.

    Example::

        import predstore

        dataset = predstore.PredictionDataset("preds.pstore", ["pred"])
        try:
            dataset[len(dataset)]
        except predstore.OutOfRangeError as e:
            print(e)
    """


class CoverageError(PredstoreError):
    """A committed write has duplicate or missing indices and ``strict=True`` was set.

    Example::

        import lightning as L
        import torch
        from torch.utils.data import DataLoader

        import predstore

        class Model(L.LightningModule):
            def predict_step(self, batch, batch_idx):
                return {"pred": batch, "index": torch.zeros(len(batch), dtype=torch.long)}  # all index 0

        writer = predstore.PredictionWriter("dup.pstore", index_key="index", strict=True)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
        try:
            trainer.predict(Model(), DataLoader(torch.arange(4.0), batch_size=2))
        except predstore.CoverageError as e:
            print(e)  # the rows are committed; readers see one per index
    """


class CommitConflictError(PredstoreError):
    """Another process committed the store while this commit was being prepared.

    The other commit won and nothing of this one was published; read the
    store as the winner left it, and finalize again if rows are left over.

    Example::

        import predstore

        try:
            manifest = predstore.finalize("preds.pstore")
        except predstore.CommitConflictError:
            manifest = predstore.open("preds.pstore").manifest
        print(manifest.generation)
    """


class ConfigError(PredstoreError, ValueError, TypeError):
    """A writer, callback or logger was given invalid or conflicting arguments.

    Both a ``ValueError`` and a ``TypeError``: a wrong value and a value of the
    wrong type are both configuration errors, and whichever a caller catches
    keeps catching it.

    Example::

        import predstore

        try:
            predstore.Freezer(prefixes=["backbone"], until_epoch=-1)
        except predstore.ConfigError as e:
            print(e)
    """


class StorageError(PredstoreError, OSError):
    """The storage under a store failed a request for good: unreachable, refused or misconfigured."""


class RegistryError(PredstoreError):
    """The run registry cache is missing, outdated or busy.

    Example::

        import predstore
        import predstore.registry as registry

        try:
            registry.Registry.open("runs-never-scanned")
        except predstore.RegistryError as e:
            print(e)  # says to run `predstore registry scan`
    """


class QueryError(PredstoreError, ValueError):
    """A query does not parse or names what does not exist.

    A store filter (``where=``: a SQL WHERE clause) that does not parse or names an
    unknown column; a registry query that names an unknown field, operator or export
    format. Not a :class:`RegistryError`: a store filter has nothing to do with a registry.

    Example::

        import os

        import predstore
        import predstore.registry as registry

        os.makedirs("runs", exist_ok=True)
        registry.scan("runs")  # an empty registry will do
        with registry.Registry.open("runs") as runs:
            try:
                runs.ls(sort="no_such_field")
            except predstore.QueryError as e:
                print(e)
    """


class UnknownRunError(RegistryError, KeyError):
    """No run, or more than one run, in the registry matches the given run id.

    Example::

        import os

        import predstore
        import predstore.registry as registry

        os.makedirs("runs", exist_ok=True)
        registry.scan("runs")
        with registry.Registry.open("runs") as runs:
            try:
                runs.show("20250131-120000-3fa2c1")
            except predstore.UnknownRunError as e:
                print(e)
    """


class CorruptRunError(RegistryError):
    """A file of a run directory is unreadable or does not follow its format.

    Example::

        import os

        import predstore
        from pathlib import Path

        from predstore.registry.rundir.sidecar import read_sidecar

        os.makedirs("runs/broken")
        with open("runs/broken/sidecar.json", "w") as f:
            f.write("{}")
        try:
            read_sidecar(Path("runs/broken/sidecar.json"))
        except predstore.CorruptRunError as e:
            print(e)
    """
