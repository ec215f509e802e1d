"""Freezer over real Lightning training steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.cli import LightningCLI

from predstore.errors import ConfigError, PredstoreError
from predstore.lightning.freezer import Freezer

ENCODER = [
    "network.encoder.0.weight",
    "network.encoder.0.bias",
    "network.encoder.2.weight",
    "network.encoder.2.bias",
]
HEAD = ["network.head.weight", "network.head.bias"]


def _values(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _flags(state: dict[str, tuple[torch.Tensor, bool]]) -> dict[str, bool]:
    return {name: flag for name, (_, flag) in state.items()}


@pytest.mark.parametrize(
    ("optimizer", "kwargs"),
    [
        ("adamw", {"weight_decay": 0.5, "lr": 0.05}),
        ("sgd", {"weight_decay": 0.5, "momentum": 0.9}),
    ],
)
@pytest.mark.parametrize("zero_grad_to_none", [True, False])
def test_frozen_parameters_do_not_change(
    make_trainer: Any,
    tiny_module_cls: Any,
    recorder_cls: Any,
    optimizer: str,
    kwargs: dict[str, float],
    zero_grad_to_none: bool,
) -> None:
    model = tiny_module_cls(optimizer=optimizer, zero_grad_to_none=zero_grad_to_none, **kwargs)
    before = _values(model)
    recorder = recorder_cls()
    make_trainer(max_steps=5, callbacks=[Freezer(prefixes=["network.encoder"]), recorder]).fit(
        model
    )
    after = _values(model)
    for name in ENCODER:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    for name in HEAD:
        assert not torch.equal(after[name], before[name]), f"{name} should have trained"
    # No gradient reaches a frozen parameter at any step.
    assert len(recorder.grads_after_backward) == 5
    for grads in recorder.grads_after_backward:
        assert not any(grads[name] for name in ENCODER)
        assert all(grads[name] for name in HEAD)


@pytest.mark.parametrize("zero_grad_to_none", [True, False])
def test_momentum_from_before_the_freeze_moves_nothing(
    tmp_path: Path,
    make_trainer: Any,
    tiny_module_cls: Any,
    zero_grad_to_none: bool,
) -> None:
    model = tiny_module_cls(momentum=0.9, weight_decay=0.1, zero_grad_to_none=zero_grad_to_none)
    warmup = make_trainer(max_steps=3)
    warmup.fit(model)
    ckpt = tmp_path / "warm.ckpt"
    warmup.save_checkpoint(ckpt)

    # Resume with the encoder frozen: the restored optimizer carries momentum.
    trainer = make_trainer(max_steps=7, callbacks=[Freezer(prefixes=["network.encoder"])])
    trainer.fit(model, ckpt_path=ckpt)
    params = dict(model.named_parameters())
    state = trainer.optimizers[0].state
    for name in ENCODER:
        assert state[params[name]]["momentum_buffer"].abs().sum() > 0
        torch.testing.assert_close(params[name], model.start_values[name], rtol=0, atol=0)
    for name in HEAD:
        assert not torch.equal(params[name], model.start_values[name])


def test_unfreezing_at_a_step_resumes_training(
    make_trainer: Any, tiny_module_cls: Any, recorder_cls: Any
) -> None:
    model = tiny_module_cls(momentum=0.5)
    start = _values(model)
    recorder = recorder_cls()
    freezer = Freezer(prefixes=["encoder"], module_attr="network", until_step=3)
    make_trainer(max_steps=6, callbacks=[freezer, recorder]).fit(model)

    steps = [step for step, _, _ in recorder.starts]
    assert steps == [0, 1, 2, 3, 4, 5]
    for step, _, state in recorder.starts:
        for name in ENCODER:
            value, requires_grad = state[name]
            assert requires_grad == (step >= 3)
            if step <= 3:  # the first unfrozen step has not been taken yet
                torch.testing.assert_close(value, start[name], rtol=0, atol=0)
    final = _values(model)
    for name in ENCODER:
        assert not torch.equal(final[name], start[name]), f"{name} should train after step 3"


def test_unfreezing_at_an_epoch(make_trainer: Any, tiny_module_cls: Any, recorder_cls: Any) -> None:
    model = tiny_module_cls(n_samples=16)  # two batches per epoch
    recorder = recorder_cls()
    trainer = make_trainer(
        max_steps=-1, max_epochs=3, callbacks=[Freezer(names=ENCODER[:2], until_epoch=2), recorder]
    )
    trainer.fit(model)
    by_epoch = {(step, epoch): _flags(state) for step, epoch, state in recorder.starts}
    assert sorted(by_epoch) == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2)]
    for (_, epoch), flags in by_epoch.items():
        assert flags["network.encoder.0.weight"] == (epoch >= 2)
        assert flags["network.encoder.2.weight"]  # never selected


def test_parameters_frozen_elsewhere_stay_frozen(
    make_trainer: Any, tiny_module_cls: Any, recorder_cls: Any
) -> None:
    model = tiny_module_cls()
    model.network.encoder[0].bias.requires_grad_(False)  # the user's own choice
    model.network.head.bias.requires_grad_(False)  # outside the selection
    start = _values(model)
    recorder = recorder_cls()
    freezer = Freezer(prefixes=["network.encoder"], until_step=2)
    make_trainer(max_steps=4, callbacks=[freezer, recorder]).fit(model)

    for step, _, state in recorder.starts:
        flags = _flags(state)
        assert flags["network.encoder.0.bias"] is False
        assert flags["network.head.bias"] is False
        assert flags["network.encoder.0.weight"] == (step >= 2)
    after = _values(model)
    torch.testing.assert_close(after["network.encoder.0.bias"], start["network.encoder.0.bias"])
    # After fit every flag is back to what the user set.
    assert not model.network.encoder[0].bias.requires_grad
    assert not model.network.head.bias.requires_grad
    assert model.network.encoder[0].weight.requires_grad
    assert freezer.frozen_names == []


def test_indefinite_freeze_is_restored_when_fit_ends(
    make_trainer: Any, tiny_module_cls: Any, recorder_cls: Any
) -> None:
    model = tiny_module_cls()
    recorder = recorder_cls()
    make_trainer(max_steps=3, callbacks=[Freezer(prefixes=["network.head"]), recorder]).fit(model)
    assert all(not _flags(state)["network.head.weight"] for _, _, state in recorder.starts)
    assert all(p.requires_grad for p in model.parameters())


def test_exceptions_by_name_and_prefix(
    make_trainer: Any, tiny_module_cls: Any, recorder_cls: Any
) -> None:
    recorder = recorder_cls()
    freezer = Freezer(
        prefixes=["network"],
        except_prefixes=["network.head"],
        except_names=["network.encoder.0.bias"],
    )
    make_trainer(max_steps=1, callbacks=[freezer, recorder]).fit(tiny_module_cls())
    flags = _flags(recorder.starts[0][2])
    frozen = sorted(name for name, flag in flags.items() if not flag)
    assert frozen == sorted(["network.encoder.0.weight", "network.encoder.2.weight", *ENCODER[3:]])


@pytest.mark.parametrize(
    "names", [["encoder.2.weight"], ["network.encoder.2.weight"]], ids=["relative", "full"]
)
def test_module_attr_accepts_names_with_and_without_its_prefix(
    make_trainer: Any, tiny_module_cls: Any, recorder_cls: Any, names: list[str]
) -> None:
    recorder = recorder_cls()
    freezer = Freezer(names=names, module_attr="network")
    make_trainer(max_steps=1, callbacks=[freezer, recorder]).fit(tiny_module_cls())
    flags = _flags(recorder.starts[0][2])
    assert [name for name, flag in flags.items() if not flag] == ["network.encoder.2.weight"]


def test_prefixes_match_whole_components_and_unmatched_selectors_warn(
    make_trainer: Any, tiny_module_cls: Any, recorder_cls: Any
) -> None:
    recorder = recorder_cls()
    freezer = Freezer(names=["network.nope"], prefixes=["network.enc", "network.head."])
    with pytest.warns(UserWarning, match="matches no parameter") as caught:
        make_trainer(max_steps=1, callbacks=[freezer, recorder]).fit(tiny_module_cls())
    messages = [str(w.message) for w in caught if "Freezer" in str(w.message)]
    assert any("'network.nope'" in m for m in messages)
    assert any("'network.enc'" in m for m in messages)
    flags = _flags(recorder.starts[0][2])
    assert [name for name, flag in flags.items() if not flag] == HEAD


def test_logs_each_transition_once(
    make_trainer: Any, tiny_module_cls: Any, lightning_info_log: list[str]
) -> None:
    freezer = Freezer(prefixes=["network.encoder"], until_step=2)
    make_trainer(max_steps=5, callbacks=[freezer]).fit(tiny_module_cls())
    froze = [m for m in lightning_info_log if m.startswith("Freezer froze")]
    unfroze = [m for m in lightning_info_log if m.startswith("Freezer unfroze")]
    assert len(froze) == 1
    assert len(unfroze) == 1
    assert "4 parameters" in froze[0]
    assert "network.encoder.0.weight" in froze[0]
    assert "at step 2" in unfroze[0]


def test_a_selection_that_freezes_nothing_is_logged_once(
    make_trainer: Any, tiny_module_cls: Any, lightning_info_log: list[str]
) -> None:
    module = tiny_module_cls()
    for param in module.network.encoder.parameters():
        param.requires_grad_(False)  # frozen elsewhere: not the Freezer's to freeze or restore
    freezer = Freezer(prefixes=["network.encoder"], until_step=3)
    make_trainer(max_steps=6, callbacks=[freezer]).fit(module)
    froze = [m for m in lightning_info_log if m.startswith("Freezer froze")]
    unfroze = [m for m in lightning_info_log if m.startswith("Freezer unfroze")]
    assert froze == [m for m in froze if "froze 0 parameters (0 elements) at step 0" in m]
    assert len(froze) == 1 and len(unfroze) == 1 and "at step 3" in unfroze[0]
    assert not any(p.requires_grad for p in module.network.encoder.parameters())


def test_bad_module_attr_is_a_clear_error(make_trainer: Any, tiny_module_cls: Any) -> None:
    freezer = Freezer(names=["encoder.0.weight"], module_attr="backbone")
    with pytest.raises(ConfigError, match=r"TinyModule\.backbone to be a torch.nn.Module"):
        make_trainer(max_steps=1, callbacks=[freezer]).fit(tiny_module_cls())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one parameter name or prefix"),
        ({"names": [], "prefixes": []}, "at least one parameter name or prefix"),
        ({"names": ["a"], "until_step": 3, "until_epoch": 1}, "not both"),
        ({"names": "encoder.0.weight"}, "list of strings"),
        ({"prefixes": [""]}, "non-empty strings"),
        ({"names": ["a"], "until_step": 0}, "positive integer"),
        ({"names": ["a"], "until_epoch": -1}, "positive integer"),
        ({"names": ["a"], "until_step": 2.5}, "positive integer"),
        ({"names": ["a"], "module_attr": ""}, "non-empty string"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Freezer(**kwargs)
    assert isinstance(info.value, PredstoreError)
    assert isinstance(info.value, ValueError)


def test_configured_from_yaml_with_lightning_cli(tmp_path: Path, tiny_module_cls: Any) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 4
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {tmp_path}
  callbacks:
    - class_path: predstore.Freezer
      init_args:
        prefixes: [encoder]
        except_names: [encoder.2.bias]
        until_step: 4
        module_attr: network
model:
  optimizer: adamw
  weight_decay: 0.1
"""
    )
    cli = LightningCLI(
        tiny_module_cls, args=["fit", "--config", str(config)], save_config_callback=None
    )
    freezer = next(cb for cb in cli.trainer.callbacks if isinstance(cb, Freezer))
    assert freezer.prefixes == ("encoder",)
    assert freezer.until_step == 4
    assert cli.trainer.global_step == 4
    params = dict(cli.model.named_parameters())
    # Frozen for all four steps, despite AdamW's weight decay; the exception trained.
    for name in ENCODER[:3]:
        torch.testing.assert_close(params[name], cli.model.start_values[name], rtol=0, atol=0)
    for name in [ENCODER[3], *HEAD]:
        assert not torch.equal(params[name], cli.model.start_values[name])
