"""The dataset a store was predicted on, as the write's provenance records it.

``PredictionWriter`` records, per dataloader, the root dataset its indices
refer to (through any chain of ``Subset``)::

    "datasets": {"0": {"class": "mypkg.data.Scans", "length": 1200, "name": "scans-v2"}}

``length`` is there when the dataset has one, ``name`` when it has a string
attribute ``name``. A join (``PredictionDataset(source=...)``) pairs rows by
index in that root, so it compares its source against the record.
"""

from __future__ import annotations

import contextlib
from typing import Any


def root_dataset(dataset: Any) -> Any:
    """The dataset at the end of a chain of subsets (objects with ``dataset`` and ``indices``)."""
    while hasattr(dataset, "dataset") and hasattr(dataset, "indices"):
        dataset = dataset.dataset
    return dataset


def describe_dataset(dataset: Any) -> dict[str, Any] | None:
    """The record of the root of ``dataset``: its class, and its length and name where it has them."""
    if dataset is None:
        return None
    root = root_dataset(dataset)
    cls = type(root)
    record: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    with contextlib.suppress(TypeError, NotImplementedError):  # an IterableDataset
        record["length"] = len(root)
    name = getattr(root, "name", None)
    if isinstance(name, str):
        record["name"] = name
    return record


def differences(recorded: dict[str, Any], source: Any) -> list[str]:
    """How the root of ``source`` differs from a recorded dataset (empty when it matches)."""
    mine = describe_dataset(source) or {}
    return [
        f"{field} {mine[field]!r} where the store recorded {recorded[field]!r}"
        for field in ("class", "length", "name")
        if field in recorded and field in mine and recorded[field] != mine[field]
    ]
