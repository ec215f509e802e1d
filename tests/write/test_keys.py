from __future__ import annotations

import numpy as np
import pytest
import torch

from predstore.errors import SchemaError
from predstore.write.batch import normalize
from predstore.write.keys import KeyRules, KeySpec, conform, infer


def _schema(
    value: object,
    spec: KeySpec | None = None,
    rows: int = 2,
    limit: int = 1024,
    elements: int = 32,
):
    column = normalize({"k": value}, list(range(rows))).columns["k"]
    return infer("k", column, spec or KeySpec(), limit, elements), column


def test_routing_by_size_per_sample() -> None:
    assert _schema(torch.zeros(2, 256), elements=256)[0].storage == "parquet"  # exactly 1 KiB
    assert _schema(torch.zeros(2, 257), elements=257)[0].storage == "zarr"
    assert _schema(["a", "b"])[0].storage == "parquet"
    assert _schema(torch.zeros(2, 300), limit=4096, elements=300)[0].storage == "parquet"


def test_fixed_shape_vectors_longer_than_a_few_dozen_elements_go_to_zarr() -> None:
    assert _schema(torch.zeros(2, 32, dtype=torch.float16))[0].storage == "parquet"
    assert _schema(torch.zeros(2, 4, 8))[0].storage == "parquet"
    assert _schema(torch.zeros(2, 33, dtype=torch.float16))[0].storage == "zarr"  # 66 bytes
    assert _schema(torch.zeros(2, 384, dtype=torch.float16))[0].storage == "zarr"  # W3's embedding
    assert _schema(torch.zeros(2, 5, 7, dtype=torch.uint8))[0].storage == "zarr"
    assert _schema(torch.zeros(2, 384), KeySpec("parquet"))[0].storage == "parquet"
    # Ragged rows are judged by bytes alone: boxes and token lists stay analysable.
    spec, _ = _schema([torch.zeros(40, 4), torch.zeros(2, 4)])
    assert (spec.storage, spec.shape) == ("parquet", (None, 4))


def test_ragged_keys_vary_in_their_first_dimension_in_parquet() -> None:
    spec, _ = _schema([torch.zeros(3, 4), torch.zeros(1, 4)])
    assert (spec.storage, spec.shape) == ("parquet", (None, 4))
    spec, _ = _schema([torch.zeros(3, 4), torch.zeros(3, 5)])
    assert (spec.storage, spec.shape) == ("zarr", (None, None))
    spec, _ = _schema([torch.zeros(3000), torch.zeros(1)])
    assert (spec.storage, spec.shape) == ("zarr", (None,))


def test_user_overrides() -> None:
    assert _schema(torch.zeros(2, 4), KeySpec("zarr"))[0].storage == "zarr"
    assert _schema(torch.zeros(2, 4000), KeySpec("parquet"))[0].storage == "parquet"
    with pytest.raises(SchemaError, match="strings, which are stored in Parquet only"):
        _schema(["a", "b"], KeySpec("zarr"))
    with pytest.raises(SchemaError, match="vary in a dimension other than the first"):
        _schema([torch.zeros(3, 4), torch.zeros(3, 5)], KeySpec("parquet"))
    with pytest.raises(SchemaError, match="null values"):
        _schema([1.0, None], KeySpec("zarr"))


def test_rules_by_name_pattern_and_list() -> None:
    rules = KeyRules({"logits": "zarr", "debug.*": "skip", "m": {"codec": "zstd", "level": 5}})
    assert rules.spec("logits").storage == "zarr"
    assert not rules.keep("debug.grad") and rules.keep("other")
    assert rules.spec("m") == KeySpec(codec="zstd", level=5)
    only = KeyRules(["a", "b.*"])
    assert only.keep("a") and only.keep("b.c") and not only.keep("c")
    with pytest.raises(ValueError, match="storage must be"):
        KeyRules({"x": "s3"})
    with pytest.raises(TypeError, match="list of key names or a dict"):
        KeyRules("logits")  # type: ignore[arg-type]


def test_conform_refuses_dtype_and_shape_changes_with_a_hint() -> None:
    spec, _ = _schema(torch.zeros(2, 8))
    with pytest.raises(
        SchemaError, match=r"key 'k' changed dtype: .*float32\[8\].*this batch has float64"
    ):
        conform(
            "k", spec, normalize({"k": torch.zeros(2, 8, dtype=torch.float64)}, [0, 1]).columns["k"]
        )
    with pytest.raises(
        SchemaError,
        match=r"key 'k' changed shape: .*float32\[8\] per sample, this batch has float32\[9\]; return a list",
    ):
        conform("k", spec, normalize({"k": torch.zeros(2, 9)}, [0, 1]).columns["k"])


def test_conform_accepts_the_other_layout_of_the_same_shape() -> None:
    fixed, _ = _schema(torch.zeros(2, 3))
    as_list = normalize({"k": [torch.ones(3), torch.ones(3)]}, [0, 1]).columns["k"]
    assert conform("k", fixed, as_list).kind == "fixed"
    ragged, _ = _schema([torch.zeros(1, 4), torch.zeros(2, 4)])
    batched = normalize({"k": torch.ones(2, 5, 4)}, [0, 1]).columns["k"]
    column = conform("k", ragged, batched)
    assert column.kind == "ragged" and [r.shape for r in column.values] == [(5, 4), (5, 4)]
    with pytest.raises(SchemaError, match="changed shape"):
        conform(
            "k", ragged, normalize({"k": [np.zeros((2, 3), np.float32)] * 2}, [0, 1]).columns["k"]
        )


def test_an_all_none_first_batch_takes_a_declared_type(tmp_path) -> None:
    import predstore

    assert _schema([None, None])[0] is None  # unknown until a batch shows it
    with predstore.StoreWriter(
        tmp_path / "s", keys={"note": KeySpec(dtype="string"), "score": KeySpec(dtype="float32")}
    ) as writer:
        writer.write({"note": [None, None], "score": [None, None]}, [0, 1])
        writer.write({"note": ["late", None], "score": torch.tensor([0.5, 1.5])}, [2, 3])
    store = predstore.open(tmp_path / "s")
    assert store.read("note").tolist() == [None, None, "late", None]
    score = store.read("score")
    assert score.mask.tolist() == [True, True, False, False] and score[2:].tolist() == [0.5, 1.5]
    assert store.schema.keys["note"].nullable and store.schema.keys["score"].nullable
    with pytest.raises(SchemaError, match="is declared float32 but its first batch holds float64"):
        _schema([1.0, 2.0], KeySpec(dtype="float32"))
