"""Shared fixtures for the companion-callback tests: a tiny model and a trainer factory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from registry_support import validate_run_files


class TinyNet(nn.Module):
    """An encoder and a head: enough structure for prefixes and exceptions."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.encoder(x)))


class TinyModule(pl.LightningModule):
    """A regression model small enough for many real fits per test session."""

    def __init__(
        self,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        zero_grad_to_none: bool = True,
        n_samples: int = 32,
        batch_size: int = 8,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = TinyNet()
        self.start_values: dict[str, torch.Tensor] = {}

    def on_fit_start(self) -> None:
        self.start_values = {n: p.detach().clone() for n, p in self.named_parameters()}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self.network(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        return torch.optim.SGD(
            self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        # set_to_none=False leaves zero tensors: the case where stale grads would still step.
        optimizer.zero_grad(set_to_none=self.hparams.zero_grad_to_none)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.hparams.n_samples, 4, generator=g)
        y = x.sum(dim=1, keepdim=True)
        return DataLoader(TensorDataset(x, y), batch_size=self.hparams.batch_size)


class Recorder(pl.Callback):
    """Records, at the start of every training batch, each parameter's value and flag."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, int, dict[str, tuple[torch.Tensor, bool]]]] = []
        self.grads_after_backward: list[dict[str, bool]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        state = {n: (p.detach().clone(), p.requires_grad) for n, p in pl_module.named_parameters()}
        self.starts.append((trainer.global_step, trainer.current_epoch, state))

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.grads_after_backward.append(
            {n: p.grad is not None for n, p in pl_module.named_parameters()}
        )


@pytest.fixture
def tiny_module_cls() -> type[TinyModule]:
    return TinyModule


@pytest.fixture
def recorder_cls() -> type[Recorder]:
    return Recorder


@pytest.fixture
def make_trainer(tmp_path: Any) -> Callable[..., pl.Trainer]:
    """A CPU trainer with quiet defaults; keyword arguments override them."""

    def make(**kwargs: Any) -> pl.Trainer:
        options: dict[str, Any] = {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 4,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            "logger": False,
            "default_root_dir": str(tmp_path),
        }
        options.update(kwargs)
        return pl.Trainer(**options)

    return make


@pytest.fixture
def lightning_info_log() -> Iterator[list[str]]:
    """Messages that Lightning's rank-zero logger emits during the test.

    Lightning stops that logger from propagating when the root logger has no
    handler, so caplog cannot see it; attach a list handler directly instead.
    """
    messages: list[str] = []

    class _ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = _ListHandler(level=logging.INFO)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture(autouse=True)
def _run_files_follow_their_schemas(tmp_path: Any) -> Iterator[None]:
    """Every sidecar.json and summary.json a test leaves in tmp_path must follow its schema."""
    yield
    validate_run_files(tmp_path)
