"""The datasets inside Lightning: a two-rank DDP fit, and distillation from a PredictionWriter store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset, TensorDataset

import predstore
from support import write_ranks

JOB = Path(__file__).resolve().parents[1] / "helpers" / "jobs" / "ddp_dataset_job.py"


def quiet_trainer(**options: Any) -> pl.Trainer:
    defaults: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(**(defaults | options))


@pytest.mark.ddp
def test_ddp_fit_reads_each_ranks_share_through_both_datasets(tmp_path: Path) -> None:
    store = tmp_path / "s"
    write_ranks(store, [list(range(0, 48, 2)), list(range(1, 48, 2))], batch_size=5)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, str(JOB), str(store), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 6  # 24 rows a rank, batches of 4
    for name in ("map", "sequential"):
        shares = [set(r[name]) for r in ranks]
        assert not shares[0] & shares[1], name  # no row on both ranks
        assert Counter(ranks[0][name] + ranks[1][name]) == Counter(range(48)), name


class Teacher(pl.LightningModule):
    """A fixed random linear teacher over 300 classes (so its logits go to Zarr)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, 300)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, _ = batch
        return {"logits": self(x)}


class Student(pl.LightningModule):
    """Learns the teacher's soft targets (temperature 2) read from the store."""

    def __init__(self, store: str) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Linear(8, 300)
        self.store = store
        self.losses: list[float] = []
        self.indices: list[int] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (x, _), teacher = batch
        indices = teacher["index"].tolist()
        stored = torch.from_numpy(predstore.open(self.store).read("logits", indices))
        assert torch.equal(teacher["logits"], stored)  # bit for bit what was written
        self.indices += indices
        loss = F.kl_div(
            F.log_softmax(self.net(x) / 2, dim=1),
            F.log_softmax(teacher["logits"] / 2, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def test_distillation_reads_teacher_logits_written_by_prediction_writer(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=generator)
    inputs = TensorDataset(x, torch.arange(96))
    path = tmp_path / "teacher.pstore"
    teacher = Teacher()
    quiet_trainer(callbacks=[predstore.PredictionWriter(str(path))]).predict(
        teacher, DataLoader(inputs, batch_size=16), return_predictions=False
    )
    store = predstore.open(path)
    assert store.schema.keys["logits"].storage == "zarr" and len(store) == 96
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(store.read("logits")), teacher(x), atol=1e-6)

    train = Subset(inputs, list(range(0, 96, 2)))  # the student trains on half of them
    pairs = predstore.PredictionDataset(path, "logits", source=train)
    loader = DataLoader(pairs, batch_size=8, shuffle=True, num_workers=2)
    student = Student(str(path))
    quiet_trainer(max_epochs=3).fit(student, loader)
    assert len(student.losses) == 18
    assert sorted(student.indices) == sorted(list(range(0, 96, 2)) * 3)
    assert np.mean(student.losses[-6:]) < 0.5 * np.mean(student.losses[:6])


class Named(TensorDataset):
    """A TensorDataset that carries a name, as many dataset classes do."""

    def __init__(self, name: str, *tensors: torch.Tensor) -> None:
        super().__init__(*tensors)
        self.name = name


def test_a_join_refuses_a_source_unlike_the_predicted_dataset(tmp_path: Path) -> None:
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    predicted = Named("scans-v2", x, torch.arange(40))
    path = tmp_path / "teacher.pstore"
    quiet_trainer(callbacks=[predstore.PredictionWriter(str(path))]).predict(
        Teacher(),
        DataLoader(Subset(predicted, range(10, 40)), batch_size=8),
        return_predictions=False,
    )
    recorded = predstore.open(path).manifest.writes[0].provenance["datasets"]
    assert recorded == {
        "0": {"class": f"{__name__}.Named", "length": 40, "name": "scans-v2"}
    }  # the root dataset the indices refer to, through the Subset
    joined = predstore.PredictionDataset(path, "logits", source=Subset(predicted, range(10, 20)))
    assert joined[0][1]["index"] == 10

    longer = Named("scans-v2", torch.randn(50, 8), torch.arange(50))
    other_class = TensorDataset(x, torch.arange(40))
    renamed = Named("scans-v3", x, torch.arange(40))
    for source, said in (
        (longer, "length 50 where the store recorded 40"),
        (other_class, "class 'torch.utils.data.dataset.TensorDataset' where"),
        (renamed, "name 'scans-v3' where the store recorded 'scans-v2'"),
    ):
        with pytest.raises(predstore.PredstoreError, match=said):
            predstore.PredictionDataset(path, "logits", source=source, missing="skip")
    allowed = predstore.open(path).dataset(
        "logits", source=other_class, missing="skip", check_source=False
    )
    assert len(allowed) == 30
