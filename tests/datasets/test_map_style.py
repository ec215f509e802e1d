"""PredictionDataset: items, DataLoader round trips under fork and spawn, the join, lookups, errors."""

from __future__ import annotations

import pickle
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import ml_dtypes
import numcodecs
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, default_collate

import predstore
from dataset_support import (
    FIXED,
    Inputs,
    N,
    check_batch,
    check_item,
    expected_tensor,
    in_one_buffer,
    same,
    scale_logits,
    values,
    write_store,
)
from predstore.errors import (
    ConfigError,
    MissingRowsError,
    OutOfRangeError,
    StoreNotCommittedError,
    UnknownKeyError,
)
from predstore.read.arrays import ArrayReader
from support import write_ranks

ALL = list(values(0))


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("dataset") / "s")


@pytest.fixture(scope="module")
def store(store_path: Path) -> predstore.Store:
    return predstore.open(store_path)


# -- items -------------------------------------------------------------------------------


def test_items_are_rows_in_index_order_with_every_kind_of_key(store: predstore.Store) -> None:
    dataset = predstore.PredictionDataset(store)
    assert len(dataset) == N and dataset.keys == ALL
    for i in range(N):
        item = dataset[i]
        assert item["index"] == i
        assert list(item) == [*ALL, "index", "name"]
        check_item(item, ALL)
    assert dataset[5]["emb"].dtype == torch.bfloat16
    assert dataset[5]["score_bf16"].dtype == torch.bfloat16
    assert dataset[5]["mask"].shape == (3, 20, 30) and dataset[7]["boxes"].shape == (3, 4)
    assert dataset[5]["maybe"] is None and dataset[6]["maybe"].item() == 6.0
    assert dataset[-1]["index"] == N - 1


def test_store_dataset_forwards_and_chosen_keys_come_alone(store: predstore.Store) -> None:
    dataset = store.dataset("logits")
    assert list(dataset[3]) == ["logits", "index", "name"]
    assert same(dataset[3]["logits"], expected_tensor("logits", 3))
    dataset = store.dataset(["pred", "emb"])
    assert list(dataset[3]) == ["pred", "emb", "index", "name"]


def test_numpy_items_keep_bfloat16(store: predstore.Store) -> None:
    item = store.dataset(["emb", "score_bf16", "pred", "label"], as_torch=False)[9]
    assert item["emb"].dtype == ml_dtypes.bfloat16
    assert np.array_equal(item["emb"].view(np.uint16), values(9)["emb"].view(np.uint16))
    assert item["score_bf16"] == values(9)["score_bf16"] and item["label"] == "cls0"
    assert isinstance(item["pred"], np.integer) and item["pred"] == 2


def test_storage_order_follows_the_parts(store: predstore.Store) -> None:
    dataset = store.dataset("pred", order="storage")
    order = [dataset[i]["index"] for i in range(len(dataset))]
    # Rank 0 wrote the batches 0-6, 14-20, ...; rank 1 the others; rank 0's part comes first.
    rank0 = [i for i in range(N) if (i // 7) % 2 == 0]
    assert order == rank0 + [i for i in range(N) if (i // 7) % 2 == 1]


def test_transform_sees_each_predictions_dict(store_path: Path) -> None:
    dataset = predstore.PredictionDataset(store_path, ["logits"], transform=scale_logits)
    item = dataset[4]
    assert item["tagged"] and same(item["logits"], expected_tensor("logits", 4) / 2)


def test_a_small_cache_reads_the_same_values(store: predstore.Store) -> None:
    # Too small to hold an array whole: recently used chunks only.
    dataset = store.dataset(["logits", "emb", "mask"], cache_bytes=4096)
    rng = np.random.default_rng(0)
    for batch in np.array_split(rng.permutation(N), 7):
        for item in dataset.__getitems__(batch.tolist()):
            check_item(item, ["logits", "emb", "mask"])


def test_forked_workers_share_what_they_decode(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # emb is compressed (Blosc-LZ4): decoded whole, into memory the workers share.
    dataset = predstore.PredictionDataset(store_path, ["logits", "emb"])
    dense = dataset._state.reader._zarr["emb"].readers  # type: ignore[union-attr]
    assert not any(r.have.any() for r in dense)  # type: ignore[union-attr]
    loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=2)
    assert sorted(i for b in loader for i in check_batch(b, ["logits", "emb"])) == list(range(N))
    # What the workers decoded is here, for this process and the next epoch's workers.
    assert all(r.have.all() for r in dense)  # type: ignore[union-attr]

    def no_decoding(*args: Any) -> None:
        raise AssertionError("a chunk was decoded again")

    monkeypatch.setattr("predstore.datasets.rowreader.decode_into", no_decoding)
    for i in range(N):
        check_item(dataset[i], ["logits", "emb"])


def test_uncompressed_keys_are_read_in_place(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # logits are noise, stored uncompressed (Blosc at level 0): rows come straight from the
    # mapped shard files, never copied into a decoded array, each chunk's checksum checked.
    dataset = predstore.PredictionDataset(store_path, ["logits"])
    readers = dataset._state.reader._zarr["logits"].readers  # type: ignore[union-attr]
    assert all(isinstance(r, ArrayReader) and r.reads_in_place for r in readers)

    loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=2)
    assert sorted(i for b in loader for i in check_batch(b, ["logits"])) == list(range(N))
    decoded: list[int] = []
    decode = numcodecs.Blosc.decode

    def counted(self: numcodecs.Blosc, *args: Any, **kwargs: Any) -> Any:
        decoded.append(1)
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(numcodecs.Blosc, "decode", counted)
    rng = np.random.default_rng(3)
    for batch in np.array_split(rng.permutation(N), 5):
        for item in dataset.__getitems__(batch.tolist()):
            check_item(item, ["logits"])
    # Only each array's last chunk, padded with zeros and so compressed, is decoded.
    assert 0 < len(decoded) <= len(readers)


def test_rows_read_in_place_from_one_shard_file_and_a_decoded_last_chunk(tmp_path: Path) -> None:
    # One shard file: a batch of rows all read in place is one gather straight into the
    # batch; rows of the last chunk (padded, so compressed and decoded) join them.
    logits = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    with predstore.StoreWriter(tmp_path / "s", chunk_bytes=64 * 256) as writer:
        writer.write({"logits": logits}, np.arange(1000))
    dataset = predstore.PredictionDataset(tmp_path / "s", ["logits"])
    readers = dataset._state.reader._zarr["logits"].readers  # type: ignore[union-attr]
    assert len(readers) == 1 and isinstance(readers[0], ArrayReader) and readers[0].reads_in_place
    assert readers[0].layout.chunk_len == 64 and len(readers[0].entry.files) == 1
    rng = np.random.default_rng(1)
    batches = [rng.permutation(960)[:50], rng.permutation(1000)[:300], np.arange(990, 1000)]
    for batch in [*batches, *batches]:  # the second time, every chunk is known
        got = default_collate(dataset.__getitems__(batch.tolist()))
        assert torch.equal(got["logits"], torch.from_numpy(logits[batch]))


def test_a_damaged_uncompressed_chunk_read_in_place_is_refused(
    store_path: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "s"
    shutil.copytree(store_path, copy)
    shard = sorted(p for p in copy.rglob("logits/c/*/*") if p.is_file())[0]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x5A  # inside the first chunk's values
    shard.write_bytes(bytes(data))
    dataset = predstore.PredictionDataset(copy, ["logits"])
    with pytest.raises(predstore.CorruptStoreError, match=r"logits/c/0/0.*checksum does not match"):
        dataset.__getitems__(list(range(N)))


def test_preload_decodes_at_construction(store_path: Path) -> None:
    dataset = predstore.PredictionDataset(store_path, ["logits", "emb"], preload=True)
    dense = dataset._state.reader._zarr["emb"].readers  # type: ignore[union-attr]
    assert all(r.have.all() for r in dense)  # type: ignore[union-attr]
    check_item(dataset[11], ["logits", "emb"])


# -- DataLoader round trips ---------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(
    ("workers", "context"), [(0, None), (2, "fork"), (2, "spawn")], ids=["inline", "fork", "spawn"]
)
def test_dataloader_round_trip(
    store_path: Path, workers: int, context: str | None, shuffle: bool
) -> None:
    dataset = predstore.PredictionDataset(store_path, FIXED)
    loader = DataLoader(
        dataset, batch_size=8, shuffle=shuffle, num_workers=workers, multiprocessing_context=context
    )
    seen = [i for batch in loader for i in check_batch(batch, FIXED)]
    assert sorted(seen) == list(range(N))
    assert (seen == list(range(N))) is not shuffle


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_collate_takes_whole_batches_with_ragged_keys(store_path: Path, context: str) -> None:
    dataset = predstore.PredictionDataset(store_path)
    loader = DataLoader(
        dataset,
        batch_size=16,
        shuffle=True,
        num_workers=2,
        multiprocessing_context=context,
        collate_fn=predstore.PredictionDataset.collate,
    )
    seen = []
    for batch in loader:
        seen += check_batch(batch, ALL)
        assert isinstance(batch["mask"], list) and isinstance(batch["label"], list)
        # Every stacked key arrived in one shared buffer (a run of the dataset's arena, under fork).
        assert in_one_buffer(batch[k] for k in [*FIXED, "index"])
    assert sorted(seen) == list(range(N))


def test_collate_without_workers_and_after_a_transform(store: predstore.Store) -> None:
    dataset = store.dataset(["logits", "pred"], transform=scale_logits)
    loader = DataLoader(dataset, batch_size=10, collate_fn=predstore.PredictionDataset.collate)
    batch = next(iter(loader))
    assert batch["tagged"].tolist() == [True] * 10
    assert same(batch["logits"], torch.stack([expected_tensor("logits", i) / 2 for i in range(10)]))


def collated(collate: Any, batch: Any) -> Any:
    """What ``collate`` makes of ``batch``, or the type of the error it raises."""
    try:
        return collate(batch)
    except Exception as error:  # the error is what is compared
        return type(error)


def alike(a: Any, b: Any) -> bool:
    """Equal batches: the same types, keys, dtypes, shapes and values."""
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(alike(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(map(alike, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and same(a, b) and a.is_contiguous() == b.is_contiguous()
    return type(a) is type(b) and bool(a == b)


@pytest.mark.parametrize(
    "keys",
    [FIXED, ALL, ["label", "maybe"], ["mask", "label"]],
    ids=["fixed", "all", "nulls", "ragged"],
)
def test_default_collate_of_a_batch_is_what_it_makes_of_its_rows(
    store: predstore.Store, keys: list[str]
) -> None:
    # A batch read at once is taken whole; the result must be what default_collate makes of
    # the same rows as plain dicts, one by one (errors included: ragged rows, a null first).
    dataset = store.dataset(keys)
    rng = np.random.default_rng(0)
    batches = [[0, 3, 6], [5, 1], [1, 4, 7], [2], *np.array_split(rng.permutation(N), 6)]
    for batch in batches:
        rows = [dataset[int(i)] for i in batch]
        assert all(type(r) is dict for r in rows)
        expected = collated(default_collate, rows)
        assert alike(collated(default_collate, dataset.__getitems__(list(batch))), expected)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_default_collate_in_workers_sends_one_buffer(store_path: Path, context: str) -> None:
    dataset = predstore.PredictionDataset(store_path, FIXED)
    loader = DataLoader(
        dataset, batch_size=16, shuffle=True, num_workers=2, multiprocessing_context=context
    )
    seen = []
    for batch in loader:
        seen += check_batch(batch, FIXED)
        assert alike(batch, default_collate([dataset[i] for i in batch["index"].tolist()]))
        assert in_one_buffer(batch[k] for k in [*FIXED, "index"])
    assert sorted(seen) == list(range(N))


@pytest.mark.parametrize("collate", [default_collate, predstore.PredictionDataset.collate])
def test_rows_changed_before_collating_are_collated_as_changed(
    store: predstore.Store, collate: Any
) -> None:
    dataset = store.dataset(["logits", "pred"])
    items = dataset.__getitems__([0, 1, 2])
    items[1]["pred"] = torch.tensor(-1)
    items[2]["logits"] += 1  # in place: the row is a view of the batch's values
    batch = collate(items)
    assert batch["pred"].tolist() == [0, -1, 2]
    assert same(batch["logits"][2], expected_tensor("logits", 2) + 1)
    items = dataset.__getitems__([3, 4])
    for row in items:
        row["extra"] = 7
    batch = collate(items)
    assert list(batch) == ["logits", "pred", "index", "name", "extra"]
    assert batch["extra"].tolist() == [7, 7] and batch["index"].tolist() == [3, 4]


def test_a_batch_of_items_is_a_sequence_of_dicts(store: predstore.Store) -> None:
    dataset = store.dataset(["logits", "label"])
    items = dataset.__getitems__([4, 2, 9])
    assert len(items) == 3 and [r["index"] for r in items] == [4, 2, 9]
    assert items[-1] is items[2] and items[0:2] == [items[0], items[1]]
    for item in items:
        check_item(item, ["logits", "label"])
    with pytest.raises(IndexError):
        items[3]
    copy = pickle.loads(pickle.dumps(items))  # a list of the items, without the batch's values
    assert type(copy) is list and [r["index"] for r in copy] == [4, 2, 9]
    check_item(copy[1], ["logits", "label"])


def test_dataset_pickles_small_and_opens_lazily(store: predstore.Store) -> None:
    dataset = store.dataset(preload=True)
    dataset[3]
    data = pickle.dumps(dataset)
    assert len(data) < 16_000, len(data)  # a description: no arrays, no open files
    copy = pickle.loads(data)
    assert copy._state is None
    check_item(copy[3], ALL)
    assert copy._state is not None


# -- the join with the source ---------------------------------------------------------------


def test_join_pairs_each_source_item_with_its_predictions(store_path: Path) -> None:
    pairs = predstore.PredictionDataset(store_path, ["logits", "pred"], source=Inputs(N))
    assert len(pairs) == N
    (x, i), preds = pairs[17]
    assert i == 17 and preds["index"] == 17 and x.tolist() == [17.0] * 3
    check_item(preds, ["logits", "pred"])
    loader = DataLoader(pairs, batch_size=16, shuffle=True, num_workers=2)
    seen = []
    for (x, i), preds in loader:
        assert torch.equal(i, preds["index"]) and torch.equal(x[:, 0].long(), i)
        seen += check_batch(preds, ["logits", "pred"])
    assert sorted(seen) == list(range(N))


def test_join_with_nested_subsets_uses_the_root_indices(store: predstore.Store) -> None:
    inner = Subset(Inputs(200), list(range(N - 1, -1, -1)))  # reversed 0..N-1
    source = Subset(inner, [0, 10, 20, 89])  # root indices 89, 79, 69, 0
    pairs = store.dataset("pred", source=source)
    assert [(src[1], preds["index"]) for src, preds in pairs] == [
        (89, 89),
        (79, 79),
        (69, 69),
        (0, 0),
    ]
    loader = DataLoader(pairs, batch_size=2, collate_fn=predstore.PredictionDataset.collate)
    batch = next(iter(loader))
    default = next(iter(DataLoader(pairs, batch_size=2)))
    assert type(batch) is type(default) is list and type(batch[0]) is type(default[0]) is list
    (_, i), preds = batch
    assert i.tolist() == [89, 79] and preds["pred"].tolist() == [89 % 7, 79 % 7]


def test_join_refuses_source_samples_without_predictions(store: predstore.Store) -> None:
    with pytest.raises(MissingRowsError) as error:
        store.dataset(source=Inputs(N + 30))
    message = str(error.value)
    assert "30 of the 120 samples of the source have no prediction" in message
    assert "[90, 91, 92, 93, 94]" in message and "indices 0..89" in message
    assert "missing='skip'" in message
    subset = Subset(Inputs(1000), [5, 500, 7, 999])
    with pytest.raises(
        MissingRowsError, match=r"positions \[1, 3\] with global indices \[500, 999\]"
    ):
        store.dataset(source=subset)


def test_missing_skip_leaves_those_samples_out(store: predstore.Store) -> None:
    source = Subset(Inputs(1000), [5, 500, 7, 999, 88])
    pairs = store.dataset(["pred"], source=source, missing="skip")
    assert len(pairs) == 3
    assert [(src[1], preds["index"]) for src, preds in pairs] == [(5, 5), (7, 7), (88, 88)]
    with pytest.raises(MissingRowsError, match="source does not hold that index"):
        pairs.by_index(6)
    assert pairs.by_name("s88")[1]["index"] == 88


def test_transform_applies_to_the_predictions_of_a_join(store: predstore.Store) -> None:
    pairs = store.dataset(["logits"], source=Inputs(N), transform=scale_logits)
    (_, i), preds = pairs[2]
    assert i == 2 and preds["tagged"] and same(preds["logits"], expected_tensor("logits", 2) / 2)


# -- lookups ----------------------------------------------------------------------------


def test_by_name_and_by_index(store: predstore.Store) -> None:
    dataset = store.dataset(["logits", "label"], order="storage")
    check_item(dataset.by_name("s42"), ["logits", "label"])
    assert dataset.by_index(42)["name"] == "s42"
    with pytest.raises(
        MissingRowsError, match=r"name 'nope' is not in dataloader 0 of the store \(90 named rows"
    ):
        dataset.by_name("nope")
    with pytest.raises(MissingRowsError, match=r"first: \[500\].*indices 0\.\.89"):
        dataset.by_index(500)


def test_names_that_repeat_or_do_not_exist(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "dup") as writer:
        writer.write({"pred": np.arange(4)}, [0, 1, 2, 3], names=["a", "b", "a", "c"])
    dataset = predstore.PredictionDataset(tmp_path / "dup")
    with pytest.raises(MissingRowsError, match=r"name 'a' is not unique .* indices \[0, 2\]"):
        dataset.by_name("a")
    assert dataset.by_name("c")["pred"].item() == 3
    with predstore.StoreWriter(tmp_path / "anonymous") as writer:
        writer.write({"pred": np.arange(4)}, [0, 1, 2, 3])
    dataset = predstore.PredictionDataset(tmp_path / "anonymous")
    assert list(dataset[0]) == ["pred", "index"]  # no names: no name in the items
    with pytest.raises(MissingRowsError, match="holds no names"):
        dataset.by_name("a")


# -- stores with gaps, duplicates, several dataloaders -------------------------------------


def test_gaps_duplicates_and_dataloaders(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 2, 4, 6], [4, 8, 10]], batch_size=2)  # index 4 written twice
    with predstore.StoreWriter(path, mode="append") as writer:
        writer.write(
            {
                "pred": np.array([7, 8]),
                "prob": np.zeros(2, np.float32),
                "logits": np.zeros((2, 300), np.float32),
            },
            [0, 1],
            dataloader_idx=1,
        )
    dataset = predstore.PredictionDataset(path, "pred")
    assert [dataset[i]["index"] for i in range(len(dataset))] == [0, 2, 4, 6, 8, 10]
    assert dataset.by_index(4)["pred"].item() == 4 % 7  # the first committed row
    other = predstore.PredictionDataset(path, "pred", dataloader_idx=1)
    assert [item["pred"].item() for item in other] == [7, 8]
    empty = predstore.PredictionDataset(path, "pred", dataloader_idx=5)
    assert len(empty) == 0 and list(empty) == []
    with pytest.raises(OutOfRangeError, match="item 0 is out of range: the dataset is empty"):
        empty[0]
    with pytest.raises(MissingRowsError, match="1 of the 3 samples"):
        predstore.PredictionDataset(path, source=Inputs(3), dataloader_idx=1)


# -- bad input -----------------------------------------------------------------------------


def test_unknown_key_names_the_key_and_the_store_keys(store: predstore.Store) -> None:
    with pytest.raises(
        UnknownKeyError, match=r"key 'logit' is not in the store .*; it holds \['logits', 'emb'"
    ):
        store.dataset(["logits", "logit"])


def test_item_out_of_range_is_an_index_error(store: predstore.Store) -> None:
    dataset = store.dataset("pred")
    with pytest.raises(
        OutOfRangeError, match=r"item 90 is out of range: the dataset has 90 items \(0\.\.89\)"
    ):
        dataset[N]
    with pytest.raises(IndexError):
        dataset.__getitems__([0, 1, -91])
    with pytest.raises(TypeError, match="by int position"):
        dataset["s1"]  # type: ignore[index]
    assert len(list(dataset)) == N  # iteration stops at the IndexError


def test_uncommitted_store(tmp_path: Path) -> None:
    write_ranks(tmp_path / "s", [[0, 1], [2, 3]], finalize=False)
    with pytest.raises(StoreNotCommittedError, match="no manifest.json.*predstore finalize"):
        predstore.PredictionDataset(tmp_path / "s")
    with pytest.raises(StoreNotCommittedError):
        predstore.SequentialPredictionDataset(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"order": "random"}, "order must be one of 'index', 'storage', got 'random'"),
        ({"missing": "drop"}, "missing must be one of 'error', 'skip', got 'drop'"),
        ({"order": "storage", "source": Inputs(3)}, "with a source, items follow the source"),
        ({"keys": ["pred", "pred"]}, "keys must not repeat"),
    ],
)
def test_bad_options(store: predstore.Store, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        predstore.PredictionDataset(store, **options)


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a store path or a predstore.Store, got int"):
        predstore.PredictionDataset(3)  # type: ignore[arg-type]


def test_every_item_once_across_a_distributed_sampler(store_path: Path) -> None:
    from torch.utils.data.distributed import DistributedSampler

    dataset = predstore.PredictionDataset(store_path, ["pred", "logits"])
    seen: Counter[int] = Counter()
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=3)
        for batch in DataLoader(dataset, batch_size=8, sampler=sampler, num_workers=2):
            seen.update(check_batch(batch, ["pred", "logits"]))
    assert seen == Counter(range(N))
