"""PredictionWriter in a real single-process trainer.predict."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import ml_dtypes
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, Subset

import predstore
from predict_support import Samples, StreamOfSamples, Teacher, close, expected_logits
from predstore.read.verify import verify


def trainer(**kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def predict(
    path: Path, loaders: Any, model: pl.LightningModule | None = None, **writer_args: Any
) -> tuple[Any, predstore.PredictionWriter]:
    writer = predstore.PredictionWriter(str(path), **writer_args)
    result = trainer(callbacks=[writer]).predict(
        model or Teacher(), loaders, return_predictions=writer_args.pop("_keep", True)
    )
    return result, writer


def test_map_style_dataset_rows_match_the_model(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _, writer = predict(path, DataLoader(Samples(23), batch_size=5), name_key="case")
    store = predstore.open(path)
    assert len(store) == 23 and store.indices().tolist() == list(range(23))
    assert close(store.read("logits"), expected_logits(range(23)).numpy())
    assert store.read("pred").tolist() == expected_logits(range(23)).argmax(1).tolist()
    assert store.read("logits", names=["case-00007"]).shape == (1, 300)
    assert (
        store.schema.keys["logits"].storage == "zarr"
        and store.schema.keys["pred"].storage == "parquet"
    )
    assert "case" not in store and "name" in store.scan().collect().columns
    manifest = store.manifest
    assert writer.manifest == manifest
    assert manifest.writes[0].index_source == "batch_indices"
    assert manifest.coverage[0].expected == 23 and manifest.coverage[0].missing == 0
    provenance = manifest.writes[0].provenance
    assert provenance["model_class"].endswith("Teacher") and provenance["world_size"] == 1


def test_iterable_dataset_with_index_key(tmp_path: Path) -> None:
    path = tmp_path / "s"
    predict(
        path,
        DataLoader(StreamOfSamples(17), batch_size=4),
        Teacher(with_index=True),
        index_key="index",
    )
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(17))
    assert close(store.read("logits", [16, 3]), expected_logits([16, 3]).numpy())
    assert store.manifest.writes[0].index_source == "index_key"
    assert "index" not in store


def test_iterable_dataset_without_indices_is_numbered_by_position_with_a_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    with pytest.warns(
        UserWarning, match=r"numbered by position, rank \+ k \* world_size.*index_key"
    ):
        predict(path, DataLoader(StreamOfSamples(6), batch_size=4))
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(6))
    assert store.manifest.writes[0].index_source == "positional"


def test_subset_rows_carry_root_dataset_indices(tmp_path: Path) -> None:
    path = tmp_path / "s"
    inner = Subset(Samples(40), list(range(10, 40)))
    outer = Subset(inner, [0, 5, 29, 7])  # root indices 10, 15, 39, 17
    predict(path, DataLoader(outer, batch_size=3), name_key="case")
    store = predstore.open(path)
    assert store.indices().tolist() == [10, 15, 17, 39]
    assert store.rows.names(store.rows.locate([39])) == ["case-00039"]  # the name matches the index
    assert close(store.read("logits", [39]), expected_logits([39]).numpy())
    assert store.coverage[0].expected == 4 and store.coverage[0].missing == 0


def test_two_predict_dataloaders(tmp_path: Path) -> None:
    path = tmp_path / "s"
    predict(path, [DataLoader(Samples(5), batch_size=2), DataLoader(Samples(3), batch_size=2)])
    store = predstore.open(path)
    assert store.indices(0).tolist() == [0, 1, 2, 3, 4] and store.indices(1).tolist() == [0, 1, 2]
    assert close(store.read("logits", [2], dataloader_idx=1), expected_logits([2]).numpy())
    assert sorted(store.coverage) == [0, 1]


class IntNames(Teacher):
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        out = super().predict_step(batch, batch_idx)
        out["case"] = batch["index"] * 10  # an int tensor as the name
        return out


def test_names_from_strings_and_from_integers(tmp_path: Path) -> None:
    predict(tmp_path / "a", DataLoader(Samples(6), batch_size=4), name_key="case")
    assert (
        predstore.open(tmp_path / "a").read("pred", names=["case-00004"]).tolist()
        == expected_logits([4]).argmax(1).tolist()
    )
    predict(tmp_path / "b", DataLoader(Samples(6), batch_size=4), IntNames(), name_key="case")
    store = predstore.open(tmp_path / "b")
    assert store.read("pred", names=["50"]).tolist() == expected_logits([5]).argmax(1).tolist()
    assert "case" not in store


def test_a_bare_tensor_is_stored_as_pred(tmp_path: Path) -> None:
    predict(tmp_path / "s", DataLoader(Samples(7), batch_size=3), Teacher(output="tensor"))
    store = predstore.open(tmp_path / "s")
    assert store.keys() == ["pred"]
    assert close(store.read("pred"), expected_logits(range(7)).numpy())


@pytest.mark.parametrize("storage", ["parquet", "zarr"])
def test_bfloat16_outputs_stay_bfloat16(tmp_path: Path, storage: str) -> None:
    # 300 bfloat16 values are 600 bytes: Parquet by default, Zarr when asked.
    predict(
        tmp_path / "s",
        DataLoader(Samples(9), batch_size=4),
        Teacher(output="bf16"),
        keys={"logits": storage},
    )
    store = predstore.open(tmp_path / "s")
    assert store.schema.keys["logits"].storage == storage
    assert store.read("logits").dtype == ml_dtypes.bfloat16
    # The same batches as predict computed them, so rounding to bfloat16 agrees bit for bit.
    want = torch.cat([expected_logits(range(s, min(s + 4, 9))) for s in range(0, 9, 4)]).to(
        torch.bfloat16
    )
    assert torch.equal(
        store.read("logits", as_torch=True).view(torch.int16), want.view(torch.int16)
    )
    if storage == "zarr":
        (logits,) = [a for a in store.manifest.arrays if a.key == "logits"]
        assert logits.zarr_dtype == "uint16" and logits.payload_bytes == 9 * 300 * 2


def test_bf16_true_precision(tmp_path: Path) -> None:
    writer = predstore.PredictionWriter(str(tmp_path / "s"))
    trainer(callbacks=[writer], precision="bf16-true").predict(
        Teacher(), DataLoader(Samples(5), batch_size=2)
    )
    store = predstore.open(tmp_path / "s")
    assert store.schema.keys["logits"].dtype == "bfloat16"
    assert store.read("logits", as_torch=True).dtype == torch.bfloat16


def test_ragged_per_sample_outputs(tmp_path: Path) -> None:
    predict(tmp_path / "s", DataLoader(Samples(12), batch_size=5), Teacher(output="ragged"))
    store = predstore.open(tmp_path / "s")
    tops = store.read("top")
    assert [len(t) for t in tops] == [i % 5 + 1 for i in range(12)]
    assert close(tops[7], expected_logits([7])[0, :3].numpy())


@pytest.mark.parametrize("keep", [True, False])
def test_return_predictions_is_untouched(tmp_path: Path, keep: bool) -> None:
    writer = predstore.PredictionWriter(str(tmp_path / "s"))
    result = trainer(callbacks=[writer]).predict(
        Teacher(), DataLoader(Samples(7), batch_size=3), return_predictions=keep
    )
    if keep:
        assert result is not None and len(result) == 3 and set(result[0]) >= {"logits", "case"}
    else:
        assert result is None
    assert len(predstore.open(tmp_path / "s")) == 7


def test_a_large_run_that_keeps_predictions_warns_once(tmp_path: Path) -> None:
    writer = predstore.PredictionWriter(str(tmp_path / "s"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(callbacks=[writer]).predict(
            Teacher(), DataLoader(Samples(10_000), batch_size=2_500)
        )
    messages = [str(w.message) for w in caught if "keeps every output in memory" in str(w.message)]
    assert len(messages) == 1 and "return_predictions=False" in messages[0]


def test_a_failing_predict_step_keeps_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "s"
    writer = predstore.PredictionWriter(str(path), name_key="case")
    with pytest.raises(RuntimeError, match="predict_step failed at batch 4"):
        trainer(callbacks=[writer]).predict(
            Teacher(fail_at=4), DataLoader(Samples(30), batch_size=3)
        )
    with pytest.raises(predstore.StoreNotCommittedError, match="predstore finalize"):
        predstore.open(path)
    predstore.finalize(str(path))
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(12))  # batches 0-3
    assert close(store.read("logits"), expected_logits(range(12)).numpy())
    assert store.manifest.writes[0].ranks == {0: "failed"}


class ChangesShape(Teacher):
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        out = super().predict_step(batch, batch_idx)
        if batch_idx == 2:
            out["logits"] = out["logits"][:, :10]
        return out


def test_an_error_in_the_background_surfaces_with_its_traceback(tmp_path: Path) -> None:
    path = tmp_path / "s"
    writer = predstore.PredictionWriter(str(path))
    with pytest.raises(predstore.SchemaError, match=r"key 'logits' changed shape") as raised:
        trainer(callbacks=[writer]).predict(ChangesShape(), DataLoader(Samples(30), batch_size=3))
    assert any(
        "keys.py" in str(entry.path) for entry in raised.traceback
    )  # raised where it happened
    predstore.finalize(str(path))
    assert predstore.open(path).indices().tolist() == list(range(6))


def test_mode_error_refuses_before_predicting(tmp_path: Path) -> None:
    path = tmp_path / "s"
    predict(path, DataLoader(Samples(4), batch_size=2))
    model = Teacher(fail_at=0)  # would fail if predict ran
    with pytest.raises(predstore.StoreExistsError, match="already holds a committed store"):
        predict(path, DataLoader(Samples(4), batch_size=2), model)
    _, writer = predict(path, DataLoader(Samples(6), batch_size=2), mode="overwrite")
    assert (
        len(predstore.open(path)) == 6
        and writer.manifest is not None
        and writer.manifest.generation == 2
    )


def test_append_another_split(tmp_path: Path) -> None:
    path = tmp_path / "s"
    predict(path, DataLoader(Subset(Samples(20), range(10)), batch_size=4))
    predict(path, DataLoader(Subset(Samples(20), range(10, 20)), batch_size=4), mode="append")
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(20)) and len(store.manifest.writes) == 2


def test_the_run_registry_learns_which_store_was_written(tmp_path: Path) -> None:
    logger = predstore.RegistryLogger(str(tmp_path / "runs"), name="predict")
    writer = predstore.PredictionWriter(str(tmp_path / "s"))
    trainer(callbacks=[writer], logger=logger).predict(
        Teacher(), DataLoader(Samples(8), batch_size=3)
    )
    sidecar = json.loads((Path(logger.log_dir) / "sidecar.json").read_text())
    (entry,) = sidecar["stores"]
    manifest = predstore.open(tmp_path / "s").manifest
    assert Path(entry["path"]) == tmp_path / "s"
    assert entry["rows"] == 8 and entry["write_id"] == manifest.writes[0].write_id
    assert entry["committed_at"] == manifest.committed_at


def test_keys_and_codecs_are_configurable(tmp_path: Path) -> None:
    predict(
        tmp_path / "s",
        DataLoader(Samples(6), batch_size=3),
        keys={"prob": "skip", "logits": {"codec": "zstd", "level": 3}},
    )
    store = predstore.open(tmp_path / "s")
    assert "prob" not in store
    (logits,) = [a for a in store.manifest.arrays if a.key == "logits"]
    assert logits.codecs[0]["configuration"]["codecs"][1] == {
        "name": "zstd",
        "configuration": {"level": 3, "checksum": True},
    }


def test_configured_from_yaml_with_lightning_cli(tmp_path: Path) -> None:
    from lightning.pytorch.cli import LightningCLI

    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
trainer:
  accelerator: cpu
  devices: 1
  logger: false
  enable_progress_bar: false
  callbacks:
    - class_path: predstore.PredictionWriter
      init_args:
        path: {tmp_path / "s"}
        name_key: case
        mode: overwrite
        keys:
          prob: skip
          pred: {{codec: gzip, level: 9}}
        shard_bytes: 1048576
        chunk_bytes: 4096
        row_group_bytes: 65536
"""
    )
    cli = LightningCLI(
        Teacher, run=False, args=["--config", str(config)], save_config_callback=None
    )
    (writer,) = [c for c in cli.trainer.callbacks if isinstance(c, predstore.PredictionWriter)]
    assert writer.name_key == "case" and writer.mode == "overwrite"
    assert writer.options.chunk_bytes == 4096 and writer.options.row_group_bytes == 65536
    cli.trainer.predict(cli.model, DataLoader(Samples(5), batch_size=2))
    store = predstore.open(tmp_path / "s")
    assert len(store) == 5 and "prob" not in store
    (logits,) = store.manifest.arrays
    assert logits.chunks == [2, 300]  # 4096 bytes hold 2 rows of float32[300]
    part = pq.ParquetFile(tmp_path / "s" / store.manifest.parts[0].path)
    columns = part.metadata.row_group(0)
    assert {columns.column(i).path_in_schema: columns.column(i).compression for i in (0, 3)} == {
        "index": "ZSTD",
        "pred": "GZIP",
    }


def test_a_mistyped_option_fails_before_predict_starts(tmp_path: Path) -> None:
    with pytest.raises(predstore.ConfigError, match="mode must be one of"):
        predstore.PredictionWriter(str(tmp_path / "s"), mode="overwrites")


def test_a_name_key_that_predict_step_does_not_return_lists_the_keys_returned(
    tmp_path: Path,
) -> None:
    with pytest.raises(
        predstore.ConfigError,
        match=r"name_key='case_id', but predict_step returned the keys "
        r"\['case', 'logits', 'pred', 'prob'\]; return each sample's name under that key",
    ):
        predict(tmp_path / "s", DataLoader(Samples(6), batch_size=3), name_key="case_id")


def test_a_keys_rule_that_matches_no_output_warns_once_in_predict(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(tmp_path / "s", DataLoader(Samples(12), batch_size=3), keys={"logit": "zarr"})
    unmatched = [w for w in caught if "match no key" in str(w.message)]
    assert len(unmatched) == 1 and "['logit']" in str(unmatched[0].message)


@pytest.mark.parametrize("only_pending", [True, False])
def test_a_resumed_predict_completes_the_store_exactly_once(
    tmp_path: Path, only_pending: bool
) -> None:
    path = tmp_path / "s"
    dataset = Subset(Samples(60), list(range(5, 55)))
    with pytest.raises(RuntimeError, match="failed at batch 3"):
        trainer(callbacks=[predstore.PredictionWriter(str(path), name_key="case")]).predict(
            Teacher(fail_at=3), DataLoader(dataset, batch_size=4)
        )
    left = predstore.pending(path, dataset) if only_pending else dataset
    assert len(predstore.pending(path, dataset)) == 50 - 12
    writer = predstore.PredictionWriter(str(path), name_key="case", mode="resume")
    trainer(callbacks=[writer]).predict(Teacher(), DataLoader(left, batch_size=4))
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(5, 55))
    assert store.coverage[0].duplicates == 0
    assert close(store.read("logits"), expected_logits(range(5, 55)))
    assert [w.mode for w in store.manifest.writes] == ["error", "resume"]
    assert store.manifest.writes[0].ranks == {0: "failed"}


class WiderTeacher(Teacher):
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        self.calls = getattr(self, "calls", 0) + 1
        out = super().predict_step(batch, batch_idx)
        out["extra"] = out["prob"] * 2
        return out


def test_a_resume_with_another_schema_fails_at_its_first_batch(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with pytest.raises(RuntimeError):
        trainer(callbacks=[predstore.PredictionWriter(str(path))]).predict(
            Teacher(fail_at=2), DataLoader(Samples(20), batch_size=4)
        )
    model = WiderTeacher()
    with pytest.raises(predstore.SchemaError, match=r"keys differ.*new \['extra'\]"):
        trainer(callbacks=[predstore.PredictionWriter(str(path), mode="resume")]).predict(
            model, DataLoader(Samples(20), batch_size=4)
        )
    assert model.calls == 1  # nothing predicted past the first batch
    predstore.finalize(str(path))
    assert predstore.open(path).indices().tolist() == list(range(8))


def test_a_first_batch_that_fails_leaves_nothing_to_block_the_fixed_rerun(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with pytest.raises(predstore.PredstoreError):
        predict(path, DataLoader(Samples(6), batch_size=4), name_key="no-such-key")
    assert not list(path.glob("writes/*")), "a write without rows left files behind"
    predict(path, DataLoader(Samples(6), batch_size=4), name_key="case")
    assert len(predstore.open(path)) == 6
    assert verify(path).ok


class ReusesItsOutputs(Teacher):
    """Fills the same CPU tensor and numpy array in place for every batch, as fast kernels do."""

    def __init__(self) -> None:
        super().__init__()
        self.out = torch.zeros(8, 300)
        self.rank = np.zeros(8, np.int64)
        self.index = torch.zeros(8, dtype=torch.int64)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        n = len(batch["x"])
        self.out[:n] = self(batch["x"])
        self.rank[:n] = batch["index"].numpy()
        self.index[:n] = batch["index"]
        return {"logits": self.out[:n], "copy": self.rank[:n], "i": self.index[:n]}


def test_outputs_refilled_in_place_are_stored_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "s"
    predict(path, DataLoader(Samples(64), batch_size=8), ReusesItsOutputs(), index_key="i")
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(64))
    assert close(store.read("logits"), expected_logits(range(64)).numpy())
    assert store.read("copy").tolist() == list(range(64))


class ReturnsNone(Teacher):
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        out = super().predict_step(batch, batch_idx, dataloader_idx)
        late = batch_idx >= 2
        out["note"] = [f"n{i}" for i in batch["index"].tolist()] if batch_idx == 2 else None
        out["score"] = out["prob"] if late else None
        return out


def test_none_outputs_are_nulls(tmp_path: Path) -> None:
    path = tmp_path / "s"
    predict(path, DataLoader(Samples(20), batch_size=4), ReturnsNone())
    store = predstore.open(path)
    note = store.read("note").tolist()
    assert note == [None] * 8 + [f"n{i}" for i in range(8, 12)] + [None] * 8
    score = store.read("score")
    assert score.mask.tolist() == [True] * 8 + [False] * 12
    assert store.schema.keys["score"].dtype == "float32"
