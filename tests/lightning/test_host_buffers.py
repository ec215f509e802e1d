from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import predstore
from predstore.lightning.host_buffers import POOLED_BYTES, HostBuffers
from predstore.write.background import BackgroundWriter

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ROWS, WIDTH = 64, 1000  # 256 KB of float32 a batch: pooled


def test_a_buffer_is_reused_only_after_its_batch_is_released() -> None:
    pool = HostBuffers(keep_bytes=1 << 30)
    out = torch.full((ROWS, WIDTH), 1.0)
    first = pool.copy({"logits": out, "pred": torch.arange(ROWS)})
    out.fill_(2.0)  # the model refills its output for the next batch
    second = pool.copy({"logits": out})
    assert pool.allocated == 2  # the first batch still holds its buffer
    assert (first.outputs["logits"] == 1.0).all() and (second.outputs["logits"] == 2.0).all()
    assert first.outputs["pred"].tolist() == list(range(ROWS))
    first.release()
    out.fill_(3.0)
    third = pool.copy({"logits": out})
    assert pool.allocated == 2  # the first batch's buffer, reused
    assert np.shares_memory(third.outputs["logits"], first.outputs["logits"])
    assert (second.outputs["logits"] == 2.0).all()  # untouched by the reuse


def test_copies_are_the_callers_values_in_their_own_dtype_and_shape() -> None:
    pool = HostBuffers(keep_bytes=1 << 30)
    values = {
        "half": torch.randn(ROWS, 3, 700).half(),
        "brain": torch.randn(ROWS, 2048).to(torch.bfloat16),
        "strided": torch.randn(2048, ROWS).T,  # not contiguous
        "array": np.arange(ROWS * 2048, dtype=np.int64).reshape(ROWS, 2048),
        "nested": {"boxes": [torch.ones(3, 4), torch.zeros(1, 4)]},
        "names": ["a"] * ROWS,
    }
    batch = pool.copy(values)
    assert pool.allocated == 4
    assert (
        batch.nbytes
        == sum(
            v.nbytes if isinstance(v, np.ndarray) else v.element_size() * v.nelement()
            for v in (values["half"], values["brain"], values["strided"], values["array"])
        )
        + (3 + 1) * 4 * 4
    )  # the boxes: plain copies
    for key in ("half", "strided"):
        assert np.array_equal(batch.outputs[key], values[key].numpy())
    brain = torch.from_numpy(batch.outputs["brain"].view(np.uint16)).view(torch.bfloat16)
    assert torch.equal(brain, values["brain"])
    assert np.array_equal(batch.outputs["array"], values["array"])
    assert not np.shares_memory(batch.outputs["array"], values["array"])
    assert [b.tolist() for b in batch.outputs["nested"]["boxes"]] == [
        b.tolist() for b in values["nested"]["boxes"]
    ]
    assert batch.outputs["names"] == values["names"]


def test_small_outputs_are_plain_copies_and_the_pool_keeps_at_most_keep_bytes() -> None:
    pool = HostBuffers(keep_bytes=POOLED_BYTES)
    small = pool.copy({"pred": torch.arange(100)})
    assert pool.allocated == 0 and small.outputs["pred"].tolist() == list(range(100))
    batches = [pool.copy({"x": np.ones(POOLED_BYTES, np.uint8)}) for _ in range(3)]
    for batch in batches:
        batch.release()
    assert pool.allocated == 3
    for _ in range(3):  # one was kept, two were let go
        pool.copy({"x": np.ones(POOLED_BYTES, np.uint8)})
    assert pool.allocated == 5


def test_buffers_go_back_only_when_the_background_writer_is_done(tmp_path: Path) -> None:
    """While the writer thread holds a batch, the next copies take new buffers; what it writes is
    what was handed over, though the caller refilled its tensor at once."""
    pool = HostBuffers(keep_bytes=1 << 30)
    writer = BackgroundWriter(predstore.StoreWriter(tmp_path / "s"), max_pending_bytes=1 << 30)
    gate = threading.Event()
    out = torch.empty(ROWS, WIDTH)
    for b in range(3):
        out.fill_(b)
        host = pool.copy({"logits": out})
        writer.submit(
            host.outputs,
            np.arange(b * ROWS, (b + 1) * ROWS),
            nbytes=host.nbytes,
            prepare=gate.wait if b == 0 else None,
            done=host.release,
        )
    assert pool.allocated == 3  # every batch waits behind the first: none gave its buffer back
    gate.set()
    writer.drain()
    out.fill_(9)
    pool.copy({"logits": out})
    assert pool.allocated == 3
    writer.close()
    logits = predstore.open(tmp_path / "s").read("logits")
    assert [float(logits[b * ROWS : (b + 1) * ROWS].mean()) for b in range(3)] == [0.0, 1.0, 2.0]


class Rows(Dataset[dict[str, Any]]):
    def __len__(self) -> int:
        return 16 * ROWS

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i}


class RefillsOneBuffer(pl.LightningModule):
    """Returns the same large output tensor every batch, refilled in place (on ``device``)."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.out = torch.empty(ROWS, WIDTH, device=device)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        self.out.copy_(
            batch["index"].to(self.out.device, torch.float32)[:, None].expand_as(self.out)
        )
        return {"logits": self.out, "i": batch["index"]}


def _predict(path: Path, model: pl.LightningModule, accelerator: str) -> predstore.Store:
    writer = predstore.PredictionWriter(str(path), index_key="i", max_pending_bytes=1 << 20)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        callbacks=[writer],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.predict(model, DataLoader(Rows(), batch_size=ROWS), return_predictions=False)
    return predstore.open(path)


def test_a_model_that_refills_a_large_output_in_place_is_stored_as_it_was(tmp_path: Path) -> None:
    store = _predict(tmp_path / "s", RefillsOneBuffer(), "cpu")
    logits = store.read("logits")
    assert np.array_equal(
        logits, np.repeat(np.arange(len(Rows()), dtype=np.float32)[:, None], WIDTH, 1)
    )


@cuda
def test_gpu_outputs_are_copied_into_pinned_buffers_and_stored_as_they_were(tmp_path: Path) -> None:
    pool = HostBuffers(keep_bytes=1 << 30)
    out = torch.randn(ROWS, WIDTH, device="cuda")
    host = pool.copy({"logits": out})
    assert host.ready is not None
    copy = host.outputs["logits"]
    assert copy.device.type == "cpu" and copy.is_pinned()
    expected = out.cpu()
    out.fill_(0)  # queued after the copy on the same stream: the copy keeps the old values
    host.ready()
    assert torch.equal(copy, expected)
    host.release()
    assert pool.copy({"logits": out}).outputs["logits"].data_ptr() == copy.data_ptr()

    store = _predict(tmp_path / "s", RefillsOneBuffer("cuda"), "gpu")
    logits = store.read("logits")
    assert np.array_equal(
        logits, np.repeat(np.arange(len(Rows()), dtype=np.float32)[:, None], WIDTH, 1)
    )
