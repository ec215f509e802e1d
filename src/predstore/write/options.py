"""WriteOptions: how a writer lays out and commits a store, defined and checked in one place.

``StoreWriter`` and ``PredictionWriter`` take the same options, by name
(``StoreWriter(path, chunk_bytes=1 << 20)``) or as one object
(``StoreWriter(path, options)``); both check them when they are built, so a
typo fails before any data is predicted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from predstore.errors import ConfigError
from predstore.format.commit import RETENTION
from predstore.format.manifest import Mode
from predstore.write import codecs
from predstore.write.arrays import pow2_floor
from predstore.write.keys import PARQUET_MAX_ELEMENTS, KeyRules, KeysArg
from predstore.write.plan import MODES

MiB = 1 << 20
ROW_CHUNK_BYTES = 64 << 10
"""Rows of at least this many bytes get an inner chunk each, whatever ``chunk_bytes``."""
_SIZES = (
    "parquet_max_bytes",
    "parquet_max_elements",
    "shard_bytes",
    "chunk_bytes",
    "row_group_bytes",
    "part_bytes",
)


@dataclass(frozen=True, kw_only=True)
class WriteOptions:
    """The options of a write, shared by :class:`StoreWriter` and :class:`PredictionWriter`.

    Example::

        import numpy as np
        import predstore

        options = predstore.WriteOptions(mode="overwrite", chunk_bytes=256 << 10, codec="zstd")
        with predstore.StoreWriter("preds.pstore", options) as writer:
            writer.write({"logits": np.random.rand(8, 1000)}, indices=np.arange(8))
        writer = predstore.PredictionWriter("preds.pstore", options)  # the same options

    Every value is checked when the object is built: a bad one raises
    :class:`predstore.ConfigError` naming the option and what it accepts.

    Args:
        mode: ``"error"`` (the path must hold no store), ``"overwrite"``,
            ``"append"`` or ``"resume"``; see docs/format.md.
        keys: which keys to store and where: a list of names or glob patterns
            to keep, or a dict from name or pattern to ``"parquet"``, ``"zarr"``,
            ``"skip"``, ``"auto"``, a :class:`KeySpec` or a dict of its fields.
        parquet_max_bytes: per-sample bytes up to which a value is a Parquet column.
        parquet_max_elements: and elements per sample up to which a fixed-shape value is one
            (longer vectors go to Zarr, which writes and reads them faster).
        codec: the compressor of every key (``"auto"``, ``"zstd"``, ``"blosc-zstd"``,
            ``"blosc-lz4"``, ``"gzip"``, ``"none"``): Zarr arrays and Parquet columns.
        codec_level: its level (``None``: the codec's default).
        shard_bytes: Zarr shard size; a part commits when the widest key fills one.
        chunk_bytes: Zarr inner chunk size, the unit of random reads. Rows of 64 KiB
            or more (volumes, images) get an inner chunk each instead: a shuffled
            read then decodes only the rows it returns (see :meth:`chunk_rows`).
        row_group_bytes: Parquet row group size, the Parquet memory bound.
        part_bytes: a part also commits at this much Parquet (and ragged) data.
        commit_interval: and at least this often (seconds; ``None``: never by time).
        durable: fsync every data file before its rename (manifests always are).
        background: compress and write on threads beside the caller.
        retention: seconds the files of a store that ``mode="overwrite"``
            replaces stay for the readers that opened it before.
        storage_options: the endpoint and credentials of an object store
            (``s3://``, ``gs://``, ``az://``), over the standard environment
            variables; never shown in ``repr``, manifests or errors. See
            docs/object-storage.md.
    """

    mode: Mode = "error"
    keys: KeysArg = None
    parquet_max_bytes: int = 1024
    parquet_max_elements: int = PARQUET_MAX_ELEMENTS
    codec: str = codecs.DEFAULT
    codec_level: int | None = None
    shard_bytes: int = 64 * MiB
    chunk_bytes: int = 1 * MiB
    row_group_bytes: int = 64 * MiB
    part_bytes: int = 512 * MiB
    commit_interval: float | None = 300.0
    durable: bool = False
    background: bool = True
    retention: float = RETENTION
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False, hash=False)
    rules: KeyRules = field(init=False, repr=False, compare=False)
    """``keys``, resolved (every rule checked)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "rules", KeyRules(self.keys))
        for name in _SIZES:
            _check_positive_int(name, getattr(self, name))
        for spec_codec, spec_level, where in [
            (self.codec, self.codec_level, "codec"),
            *[(s.codec, s.level, f"keys[{k!r}]") for k, s in self.rules.specs.items() if s.codec],
        ]:
            _check_codec(spec_codec, spec_level, where)
        if self.commit_interval is not None:
            _check_seconds("commit_interval", self.commit_interval)
        _check_seconds("retention", self.retention)
        if self.storage_options is not None and (
            not isinstance(self.storage_options, Mapping)
            or not all(isinstance(k, str) for k in self.storage_options)
        ):
            raise ConfigError(
                "storage_options must be a mapping of option names (str) to values, or None; "
                f"got a {type(self.storage_options).__name__}"
            )
        for name in ("durable", "background"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def chunk_rows(self, row_bytes: int) -> int:
        """Rows per inner chunk of a fixed-shape key with rows of ``row_bytes`` bytes.

        Rows of :data:`ROW_CHUNK_BYTES` (64 KiB) or more: one, so that a read
        in random order decodes the rows it returns and nothing beside them
        (four 256 KiB masks a chunk would cost four decodes per row read).
        Smaller rows fill chunks of about ``chunk_bytes``, a power of two of
        rows, where the cost of a chunk (its index entry, its checksum, one
        decode call) would otherwise outweigh its rows.
        """
        if row_bytes >= ROW_CHUNK_BYTES:
            return 1
        return pow2_floor(self.chunk_bytes / max(1, row_bytes))

    def replace(self, **changes: Any) -> WriteOptions:
        """A copy with ``changes`` (checked like the constructor's arguments)."""
        check_names(changes)
        return dataclasses.replace(self, **changes)


NAMES = tuple(f.name for f in dataclasses.fields(WriteOptions) if f.init)
"""Every option's name."""


def check_names(given: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` for a name that is not an option."""
    unknown = sorted(set(given) - set(NAMES))
    if unknown:
        raise ConfigError(
            f"unknown write option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the options are {', '.join(NAMES)}"
        )


def check_options(options: Any) -> None:
    """Raise ``ConfigError`` unless ``options`` is a :class:`WriteOptions` or ``None``."""
    if options is not None and not isinstance(options, WriteOptions):
        raise ConfigError(
            f"options must be a predstore.WriteOptions (or None), got {type(options).__name__}; "
            "pass single options by name instead"
        )


def resolve(options: WriteOptions | None, given: Mapping[str, Any]) -> WriteOptions:
    """``options`` (or the defaults) with the options ``given`` by name on top."""
    check_options(options)
    check_names(given)
    if options is None:
        return WriteOptions(**given)
    return options.replace(**given) if given else options


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        unit = "elements" if name.endswith("_elements") else "bytes"
        raise ConfigError(f"{name} must be a positive number of {unit} (an int), got {value!r}")


def _check_seconds(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
    ):
        raise ConfigError(f"{name} must be a number of seconds, 0 or more, got {value!r}")


def _check_codec(name: Any, level: Any, where: str) -> None:
    if name not in codecs.NAMES:
        raise ConfigError(
            f"{where}: unknown codec {name!r}; choose one of {', '.join(codecs.NAMES)}"
        )
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise ConfigError(f"{where}: the codec level must be an int or None, got {level!r}")
