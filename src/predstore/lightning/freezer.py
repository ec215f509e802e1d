"""A callback that freezes parameters by name or prefix, indefinitely or until a step or epoch."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from predstore.errors import ConfigError

log = logging.getLogger(__name__)

_LOGGED_NAMES = 20  # how many parameter names the INFO message lists before "and N more"


@dataclass(frozen=True)
class _Selection:
    """The parameters a Freezer is configured to hold, resolved against one module."""

    names: tuple[str, ...]
    unmatched: tuple[str, ...]  # human-readable descriptions of selectors that matched nothing


class Freezer(Callback):
    """Freeze parameters during training, by exact names and/or name prefixes.

    Example::

        import lightning.pytorch as pl

        from predstore import Freezer

        freezer = Freezer(prefixes=["backbone"], except_prefixes=["backbone.norm"], until_epoch=2)
        trainer = pl.Trainer(callbacks=[freezer], max_epochs=4, logger=False)

    At the start of every training batch the callback checks whether the
    parameters should be frozen (before ``until_step``/``until_epoch``, or
    always when neither is set) and sets ``requires_grad=False`` on the
    selected parameters, or restores them. A frozen parameter also loses its
    ``.grad``, so no optimizer updates it: not weight decay, not momentum built
    up before the freeze.

    Only parameters that require gradients when freezing begins are frozen, and
    only those are restored, so freezing done elsewhere is never undone. The
    callback also restores them when fitting ends, so the module leaves
    ``trainer.fit`` with the ``requires_grad`` flags it came with.

    Args:
        names: exact parameter names, as in ``module.named_parameters()``.
        prefixes: module paths; a prefix matches a parameter whose name equals
            it or continues with a dot (``"encoder"`` matches ``encoder.0.weight``
            but not ``encoder2.weight``). A prefix ending with a dot matches the
            same way.
        except_names: exact names that are never frozen.
        except_prefixes: module paths that are never frozen.
        until_step: unfreeze once ``trainer.global_step`` (optimizer steps)
            reaches this value.
        until_epoch: unfreeze once ``trainer.current_epoch`` reaches this value.
        module_attr: an attribute of the LightningModule that holds the network
            (for example ``"network"``); names and prefixes may then be given
            relative to it, with or without the ``network.`` prefix.

    Raises:
        ConfigError: if both ``until_step`` and ``until_epoch`` are set, if no
            names and no prefixes are given, or if an argument has the wrong type.
    """

    def __init__(
        self,
        names: Sequence[str] | None = None,
        prefixes: Sequence[str] | None = None,
        except_names: Sequence[str] | None = None,
        except_prefixes: Sequence[str] | None = None,
        until_step: int | None = None,
        until_epoch: int | None = None,
        module_attr: str | None = None,
    ) -> None:
        super().__init__()
        self.names = _as_str_tuple(names, "names")
        self.prefixes = _as_str_tuple(prefixes, "prefixes")
        self.except_names = _as_str_tuple(except_names, "except_names")
        self.except_prefixes = _as_str_tuple(except_prefixes, "except_prefixes")
        if not self.names and not self.prefixes:
            raise ConfigError(
                "Freezer needs at least one parameter name or prefix to freeze; "
                "got names=[] and prefixes=[]"
            )
        if until_step is not None and until_epoch is not None:
            raise ConfigError(
                f"Freezer takes until_step or until_epoch, not both; "
                f"got until_step={until_step} and until_epoch={until_epoch}"
            )
        self.until_step = _as_positive_int(until_step, "until_step")
        self.until_epoch = _as_positive_int(until_epoch, "until_epoch")
        if module_attr is not None and (not isinstance(module_attr, str) or not module_attr):
            raise ConfigError(
                f"Freezer module_attr must be a non-empty string; got {module_attr!r}"
            )
        self.module_attr = module_attr
        self._frozen: list[torch.nn.Parameter] = []
        self._frozen_names: list[str] = []
        self._freezing = False  # in the frozen phase, even if it found nothing to freeze
        self._selection: _Selection | None = None

    @property
    def frozen_names(self) -> list[str]:
        """Names of the parameters this callback currently holds frozen."""
        return list(self._frozen_names)

    def should_freeze(self, trainer: pl.Trainer) -> bool:
        """Whether the selected parameters should be frozen at the trainer's current position."""
        if self.until_step is not None:
            return trainer.global_step < self.until_step
        if self.until_epoch is not None:
            return trainer.current_epoch < self.until_epoch
        return True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Resolve here, after configure_model, so parameters created lazily exist.
        self._selection = self._resolve(pl_module)
        for message in self._selection.unmatched:
            rank_zero_warn(f"Freezer: {message}", category=UserWarning)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, batch_idx: int
    ) -> None:
        freeze = self.should_freeze(trainer)
        # The phase, not the parameters held, decides: a selection that freezes
        # nothing is logged once, not at every batch.
        if freeze and not self._freezing:
            self._freeze(trainer, pl_module)
        elif not freeze and self._freezing:
            self._unfreeze(f"at step {trainer.global_step}, epoch {trainer.current_epoch}")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._freezing:
            self._unfreeze("at the end of fitting")

    def _resolve(self, pl_module: pl.LightningModule) -> _Selection:
        named = dict(pl_module.named_parameters())
        root = self._root_prefix(pl_module)
        unmatched: list[str] = []
        chosen = self._match(named, self.names, self.prefixes, root, unmatched, "")
        excluded = self._match(
            named, self.except_names, self.except_prefixes, root, unmatched, "exception "
        )
        ordered = tuple(name for name in named if name in chosen and name not in excluded)
        return _Selection(names=ordered, unmatched=tuple(unmatched))

    def _root_prefix(self, pl_module: pl.LightningModule) -> str:
        if self.module_attr is None:
            return ""
        wrapped = getattr(pl_module, self.module_attr, None)
        if not isinstance(wrapped, torch.nn.Module):
            found = type(wrapped).__name__ if hasattr(pl_module, self.module_attr) else "nothing"
            raise ConfigError(
                f"Freezer module_attr={self.module_attr!r}: expected "
                f"{type(pl_module).__name__}.{self.module_attr} to be a torch.nn.Module, found {found}"
            )
        return self.module_attr + "."

    @staticmethod
    def _match(
        named: dict[str, torch.nn.Parameter],
        names: Iterable[str],
        prefixes: Iterable[str],
        root: str,
        unmatched: list[str],
        label: str,
    ) -> set[str]:
        hits: set[str] = set()
        for name in names:
            found = {full for full in (name, root + name) if full in named} if root else set()
            found = found or ({name} & named.keys())
            if not found:
                unmatched.append(f"{label}name {name!r} matches no parameter of the module")
            hits |= found
        for prefix in prefixes:
            found = {full for full in named if _has_prefix(full, prefix, root)}
            if not found:
                unmatched.append(
                    f"{label}prefix {prefix!r} matches no parameter of the module "
                    f"(a prefix matches whole dotted components: 'encoder' matches "
                    f"'encoder.0.weight', not 'encoder2.weight')"
                )
            hits |= found
        return hits

    def _freeze(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._selection is None:  # fit started without on_fit_start (never in Lightning)
            self._selection = self._resolve(pl_module)
        named = dict(pl_module.named_parameters())
        for name in self._selection.names:
            param = named.get(name)
            # Parameters frozen elsewhere are not ours: leave them, never restore them.
            if param is None or not param.requires_grad:
                continue
            param.requires_grad_(False)
            param.grad = None  # no stale gradient: no decay or momentum step either
            self._frozen.append(param)
            self._frozen_names.append(name)
        self._freezing = True
        where = f"at step {trainer.global_step}, epoch {trainer.current_epoch}"
        self._report("froze", self._frozen_names, self._frozen, where)

    def _unfreeze(self, where: str) -> None:
        for param in self._frozen:
            param.requires_grad_(True)
        self._report("unfroze", self._frozen_names, self._frozen, where)
        self._frozen = []
        self._frozen_names = []
        self._freezing = False

    @staticmethod
    def _report(verb: str, names: list[str], params: list[torch.nn.Parameter], where: str) -> None:
        elements = sum(p.numel() for p in params)
        shown = ", ".join(names[:_LOGGED_NAMES])
        more = f" and {len(names) - _LOGGED_NAMES} more" if len(names) > _LOGGED_NAMES else ""
        rank_zero_info(
            f"Freezer {verb} {len(names)} parameters ({elements} elements) {where}: {shown}{more}"
        )
        log.debug("Freezer %s: %s", verb, names)


def _has_prefix(name: str, prefix: str, root: str) -> bool:
    bare = prefix.rstrip(".")
    candidates = (bare, root + bare) if root else (bare,)
    return any(name == c or name.startswith(c + ".") for c in candidates)


def _as_str_tuple(value: Sequence[str] | None, arg: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        # A bare string would otherwise be iterated character by character.
        raise ConfigError(f"Freezer {arg} must be a list of strings; got the string {value!r}")
    items = tuple(value)
    bad = [item for item in items if not isinstance(item, str) or not item.strip(".")]
    if bad:
        raise ConfigError(f"Freezer {arg} must hold non-empty strings; got {bad!r}")
    return items


def _as_positive_int(value: int | None, arg: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"Freezer {arg} must be a positive integer or None; got {value!r}")
    return value
