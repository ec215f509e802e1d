"""SequentialPredictionDataset: whole passes split across workers and ranks, batches, shuffling."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import predstore
from dataset_support import FIXED, N, add_one, check_batch, check_item, values, write_store
from predstore.errors import ConfigError

ALL = list(values(0))


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("sequential") / "s")


def one_rank(
    path: Path,
    rank: int,
    world: int,
    *,
    workers: int = 2,
    context: str | None = None,
    **options: Any,
) -> tuple[list[int], int, int]:
    """The indices one simulated rank reads in one pass, its element count and its len()."""
    dataset = predstore.SequentialPredictionDataset(path, rank=rank, world_size=world, **options)
    loader = DataLoader(
        dataset, batch_size=None, num_workers=workers, multiprocessing_context=context
    )
    seen, elements = [], 0
    for element in loader:
        elements += 1
        if options.get("batch_size"):
            seen += check_batch(element, dataset.keys)
        else:
            check_item(element, dataset.keys)
            seen.append(element["index"])
    return seen, elements, len(dataset)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_every_row_exactly_once_across_2_workers_x_2_ranks(
    store_path: Path, shuffle: bool, batch_size: int | None
) -> None:
    seen: Counter[int] = Counter()
    for rank in range(2):
        indices, elements, length = one_rank(
            store_path, rank, 2, shuffle=shuffle, batch_size=batch_size, balance="none"
        )
        assert elements == length
        seen.update(indices)
    assert seen == Counter(range(N))


@pytest.mark.parametrize("world", [2, 4])
def test_pad_gives_every_rank_as_many_rows(tmp_path: Path, world: int) -> None:
    path = write_store(tmp_path / "s", range(37), world=1)
    seen: Counter[int] = Counter()
    counts = []
    for rank in range(world):
        indices, elements, length = one_rank(
            path, rank, world, batch_size=4, shuffle=True, seed=1, balance="pad"
        )
        assert elements == length
        counts.append(len(indices))
        seen.update(indices)
    per_rank = -(-37 // world)
    assert counts == [per_rank] * world
    assert set(seen) == set(range(37))  # every row, plus a few repeated to even the ranks out
    assert sum(seen.values()) - 37 == per_rank * world - 37


def test_drop_gives_every_rank_as_many_rows_and_no_repeats(tmp_path: Path) -> None:
    path = write_store(tmp_path / "s", range(37), world=1)
    seen: Counter[int] = Counter()
    for rank in range(2):
        indices, elements, length = one_rank(path, rank, 2, batch_size=5, balance="drop")
        assert len(indices) == 18 and elements == length == 4
        seen.update(indices)
    assert len(seen) == 36 and max(seen.values()) == 1


def test_drop_last_drops_each_ranks_short_batch(store_path: Path) -> None:
    for rank in range(2):
        indices, elements, length = one_rank(
            store_path, rank, 2, batch_size=8, drop_last=True, workers=2
        )
        assert len(indices) == 40 and elements == length == 5  # 45 rows a rank: 5 full batches


def test_spawned_workers_read_their_own_share(store_path: Path) -> None:
    seen: Counter[int] = Counter()
    for rank, context in enumerate(["spawn", "fork"]):  # the same shares, however started
        indices, _, _ = one_rank(
            store_path, rank, 2, context=context, batch_size=16, shuffle=True, keys=FIXED
        )
        seen.update(indices)
    assert seen == Counter(range(N))


def test_without_shuffle_one_process_reads_in_storage_order(store_path: Path) -> None:
    dataset = predstore.SequentialPredictionDataset(store_path, "pred", batch_size=10)
    order = [i for batch in dataset for i in batch["index"].tolist()]
    expected = predstore.PredictionDataset(store_path, "pred", order="storage")
    assert order == [item["index"] for item in expected]


def test_batches_hold_every_kind_of_key(store_path: Path) -> None:
    dataset = predstore.SequentialPredictionDataset(store_path, batch_size=16, shuffle=True)
    batches = list(dataset)
    assert [len(b["index"]) for b in batches] == [16] * 5 + [10]
    batch = batches[0]
    assert batch["emb"].dtype == torch.bfloat16 and batch["emb"].shape == (16, 640)
    assert batch["score_bf16"].dtype == torch.bfloat16
    assert isinstance(batch["mask"], list) and isinstance(batch["boxes"], list)
    assert isinstance(batch["maybe"], list) and isinstance(batch["label"], list)
    assert sorted(i for b in batches for i in check_batch(b, ALL)) == list(range(N))


def test_numpy_batches_and_a_transform(store_path: Path) -> None:
    dataset = predstore.SequentialPredictionDataset(
        store_path, ["pred", "emb"], batch_size=32, as_torch=False, transform=add_one
    )
    batch = next(iter(dataset))
    assert isinstance(batch["pred"], np.ndarray)
    assert batch["pred"].tolist() == [(i % 7) + 1 for i in batch["index"].tolist()]
    assert batch["emb"].dtype.name == "bfloat16"


def test_shuffled_order_follows_seed_and_epoch(store_path: Path) -> None:
    def order(dataset: predstore.SequentialPredictionDataset) -> list[int]:
        return [i for b in dataset for i in b["index"].tolist()]

    def make(seed: int | None) -> predstore.SequentialPredictionDataset:
        return predstore.SequentialPredictionDataset(
            store_path, "pred", batch_size=8, shuffle=True, seed=seed, buffer_size=32
        )

    zero = order(make(7))
    assert order(make(7)) == zero  # same seed, same epoch
    a = make(7)
    a.set_epoch(1)
    first = order(a)
    assert first != zero and sorted(first) == list(range(N))
    assert order(a) == first  # set_epoch pins the epoch
    c = make(7)
    assert order(c) != order(c)  # without set_epoch, each pass is a new epoch
    d = make(None)
    assert sorted(order(d)) == list(range(N))


def test_units_and_buffer_shuffle_rows_across_the_store(store_path: Path) -> None:
    dataset = predstore.SequentialPredictionDataset(
        store_path, "pred", batch_size=N, shuffle=True, seed=0
    )
    (batch,) = list(dataset)
    order = batch["index"].tolist()
    assert sorted(order) == list(range(N)) and order != sorted(order)


def test_len_follows_the_world(store_path: Path) -> None:
    single = predstore.SequentialPredictionDataset(store_path, "pred")
    assert len(single) == N
    batched = predstore.open(store_path).sequential_dataset("pred", batch_size=8)
    assert isinstance(batched, predstore.SequentialPredictionDataset) and len(batched) == 12
    ranked = predstore.SequentialPredictionDataset(
        store_path, "pred", batch_size=8, rank=1, world_size=4
    )
    assert len(ranked) == 3  # 23 rows, padded


def test_an_empty_dataloader_yields_nothing(store_path: Path) -> None:
    dataset = predstore.SequentialPredictionDataset(store_path, dataloader_idx=3, batch_size=4)
    assert len(dataset) == 0 and list(dataset) == []
    assert list(DataLoader(dataset, batch_size=None, num_workers=2)) == []


def test_items_one_by_one_collate_like_the_map_style_dataset(store_path: Path) -> None:
    dataset = predstore.SequentialPredictionDataset(store_path, ["logits", "pred"])
    loader = DataLoader(dataset, batch_size=16, num_workers=2)
    seen = [i for batch in loader for i in check_batch(batch, ["logits", "pred"])]
    assert sorted(seen) == list(range(N))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"balance": "even"}, "balance must be one of 'pad', 'drop', 'none', got 'even'"),
        ({"batch_size": 0}, "batch_size must be a positive int or None, got 0"),
        ({"buffer_size": -1}, "buffer_size must be a positive int or None, got -1"),
        ({"rank": 1}, "pass rank and world_size together"),
        ({"rank": 2, "world_size": 2}, r"rank must be in \[0, world_size\), got 2 of 2"),
    ],
)
def test_bad_options(store_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        predstore.SequentialPredictionDataset(store_path, **options)
