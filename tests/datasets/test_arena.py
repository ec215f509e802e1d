"""BatchArena: whole batches from forked DataLoader workers, in memory they share with the main
process; a run is used again only once every tensor made of it is gone."""

from __future__ import annotations

import gc
import io
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import predstore
import predstore.datasets.map_style as map_style
from predstore.datasets.arena import GRANULE, BatchArena, _rebuild

ROWS = 64
VOLUME = (15, 32, 32)  # 30 KiB of float16 a row: a batch of 8 takes 4 granules


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("arena") / "s.pstore"
    probs = np.random.default_rng(0).random((ROWS, *VOLUME)).astype(np.float16)
    with predstore.StoreWriter(path) as writer:
        writer.write({"probs": probs, "pred": np.arange(ROWS) % 3}, indices=np.arange(ROWS))
    return path, probs


def test_runs_are_first_fit_and_free_again_after_their_last_reference() -> None:
    arena = BatchArena(4 * GRANULE)
    assert arena.claim(2 * GRANULE) == 0
    assert arena.claim(GRANULE + 1) == 2  # rounded up to whole granules
    assert arena.claim(1) is None  # full
    assert arena.claim(5 * GRANULE) is None  # larger than the arena
    arena.retain(0)
    arena.release(0)
    assert arena.claim(1) is None  # one reference left
    arena.release(0)
    assert arena.free_granules() == 2
    assert arena.claim(GRANULE) == 0


def test_each_view_gives_back_one_reference_when_every_tensor_made_of_it_is_gone() -> None:
    arena = BatchArena(2 * GRANULE)
    run = arena.claim(GRANULE)
    assert run is not None
    first = torch.from_numpy(arena.view(run)[:16]).view(torch.float16)  # the claim's reference
    arena.retain(run)
    second = torch.from_numpy(arena.view(run))[4:8]
    del first
    gc.collect()
    assert arena.free_granules() == 1  # the second view still holds the run
    del second
    gc.collect()
    assert arena.free_granules() == 2


def test_a_batch_pickled_for_another_process_lies_in_place_and_plain_pickles_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arena = BatchArena(4 * GRANULE)
    assert arena.buffer(1000) is None  # the process that made it: its parent does not share it
    monkeypatch.setattr(arena, "pid", -1)  # as in a forked worker
    found = arena.buffer(1000)
    assert found is not None
    buffer, mark = found
    buffer[:8] = torch.arange(8, dtype=torch.uint8)
    tensor = mark(buffer[:8].view(torch.int16).view(2, 2), 0)
    received = ForkingPickler.loads(ForkingPickler.dumps(tensor))
    assert type(received) is torch.Tensor
    assert received.data_ptr() == tensor.data_ptr()  # the same bytes, not a copy
    assert received.tolist() == tensor.tolist()
    saved = io.BytesIO()
    torch.save(tensor, saved)  # elsewhere: a tensor like any other
    loaded = torch.load(io.BytesIO(saved.getvalue()))
    assert type(loaded) is torch.Tensor and loaded.data_ptr() != tensor.data_ptr()
    assert loaded.tolist() == tensor.tolist()
    del received
    gc.collect()
    assert arena.free_granules() == 3  # the sender's reference is left
    # Transposed in place, it no longer is the run's bytes in order: sent as torch sends tensors.
    tensor.t_()
    function, _ = ForkingPickler(io.BytesIO()).dispatch_table[type(tensor)](tensor)
    assert function is not _rebuild


def test_batches_from_workers_match_the_store_and_their_runs_come_back(
    volumes: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, probs = volumes
    monkeypatch.setattr(map_style, "BATCH_ARENA_BYTES", 12 * GRANULE)  # 3 batches of 8
    dataset = predstore.PredictionDataset(path, ["probs", "pred"])
    arena = dataset._state.arena
    assert arena is not None and arena.granules == 12
    loader = DataLoader(
        dataset,
        batch_size=8,
        shuffle=True,
        num_workers=2,
        multiprocessing_context="fork",
        collate_fn=predstore.PredictionDataset.collate,
    )
    for _ in range(2):
        kept = list(loader)  # more than the arena holds: the later batches go the usual way
        assert arena.free_granules() == 0
        for batch in kept:
            index = batch["index"].numpy()
            assert np.array_equal(batch["probs"].numpy(), probs[index])
            assert batch["pred"].tolist() == (index % 3).tolist()
        assert sorted(i for b in kept for i in b["index"].tolist()) == list(range(ROWS))
        del kept, batch
        gc.collect()
        assert arena.free_granules() == 12
    for batch in loader:  # one batch at a time: the runs are used again and again
        assert np.array_equal(batch["probs"].numpy(), probs[batch["index"].numpy()])


def test_default_collate_hands_whole_batches_through_the_arena_too(
    volumes: tuple[Path, np.ndarray],
) -> None:
    path, probs = volumes
    dataset = predstore.PredictionDataset(path, ["probs"])
    arena = dataset._state.arena
    assert arena is not None
    loader = DataLoader(dataset, batch_size=8, num_workers=2, multiprocessing_context="fork")
    kept = list(loader)
    assert arena.free_granules() == arena.granules - 8 * 4  # 8 batches of 4 granules each
    assert np.array_equal(torch.cat([b["probs"] for b in kept]).numpy(), probs)
    del kept
    gc.collect()
    assert arena.free_granules() == arena.granules
