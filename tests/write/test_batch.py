from __future__ import annotations

import numpy as np
import pytest
import torch

from predstore.errors import InvalidBatchError, SchemaError
from predstore.write.batch import normalize


def test_scalars_apply_to_every_row_and_dicts_flatten() -> None:
    batch = normalize(
        {
            "epoch": 3,
            "lr": torch.tensor(0.5),
            "tag": "val",
            "det": {"boxes": torch.zeros(4, 2), "n": np.int32(7)},
        },
        [0, 1, 2, 3],
    )
    cols = batch.columns
    assert list(cols) == ["epoch", "lr", "tag", "det.boxes", "det.n"]
    assert cols["epoch"].values.tolist() == [3] * 4 and cols["epoch"].dtype == "int64"
    assert cols["lr"].values.tolist() == [0.5] * 4 and cols["lr"].dtype == "float32"
    assert cols["tag"].values == ["val"] * 4
    assert cols["det.boxes"].sample_shape == (2,)
    assert cols["det.n"].dtype == "int32"


def test_lists_of_tensors_are_ragged_and_lists_of_numbers_are_scalars() -> None:
    batch = normalize(
        {
            "r": [torch.zeros(2), torch.zeros(5)],
            "s": [1.5, None],
            "z": [torch.tensor(1), torch.tensor(2)],
        },
        [0, 1],
    )
    assert batch.columns["r"].kind == "ragged"
    assert batch.columns["s"].kind == "fixed" and batch.columns["s"].mask.tolist() == [False, True]
    assert batch.columns["z"].kind == "fixed" and batch.columns["z"].values.tolist() == [1, 2]


def test_a_bare_none_is_a_null_in_every_row() -> None:
    column = normalize({"a": None, "b": [1, 2]}, [0, 1]).columns["a"]
    assert (column.kind, column.values) == ("null", [None, None])


def test_masked_rows_of_a_masked_array_are_nulls_and_partial_masks_are_refused() -> None:
    vectors = np.ma.masked_array(np.ones((3, 2)), mask=[[0, 0], [1, 1], [0, 0]])
    column = normalize({"v": vectors}, [0, 1, 2]).columns["v"]
    assert column.kind == "fixed" and column.mask.tolist() == [False, True, False]
    assert type(column.values) is np.ndarray and column.sample_shape == (2,)
    unmasked = normalize({"v": np.ma.masked_array([1.0, 2.0])}, [0, 1]).columns["v"]
    assert unmasked.mask is None
    partly = np.ma.masked_array(np.ones((2, 2)), mask=[[0, 1], [0, 0]])
    with pytest.raises(SchemaError, match=r"key 'v': row 0 is partly masked"):
        normalize({"v": partly}, [0, 1])


def test_keys_that_flatten_to_the_same_name_are_refused() -> None:
    for outputs in ({"a.b": 1, "a": {"b": 2}}, {"a": {"b": 2}, "a.b": 1}):
        with pytest.raises(SchemaError, match=r"key 'a\.b' is given twice"):
            normalize(outputs, [0, 1])


def test_python_ints_beyond_int64_are_uint64_exactly_or_refused() -> None:
    column = normalize({"u": [2**63 + 1, 1, 2, 3]}, [0, 1, 2, 3]).columns["u"]
    assert column.dtype == "uint64" and column.values.tolist() == [2**63 + 1, 1, 2, 3]
    with pytest.raises(SchemaError, match=r"key 'u': the integer 18446744073709551616 does not"):
        normalize({"u": [2**64, 1]}, [0, 1])
    with pytest.raises(SchemaError, match=r"key 'u': the integer -9223372036854775809 does not"):
        normalize({"u": [-(2**63) - 1, 1]}, [0, 1])
    with pytest.raises(SchemaError, match=r"does not fit in 64 bits"):
        normalize({"u": [-1, 2**63]}, [0, 1])  # int64 or uint64, not both


def test_messages_say_what_is_wrong() -> None:
    with pytest.raises(SchemaError, match=r"key 'm': the rows of one batch mix strings \('a'\)"):
        normalize({"m": [1, "a", 2.0, None]}, [0, 1, 2, 3])
    ragged = normalize({"r": [[1, 2], [3], [4, 5, 6], []]}, [0, 1, 2, 3]).columns["r"]
    assert ragged.dtype == "int64" and [len(r) for r in ragged.values] == [2, 1, 3, 0]
    with pytest.raises(SchemaError, match=r"row 0 is float32, row 1 is int64"):
        normalize({"r": [np.zeros(2, np.float32), np.zeros(2, np.int64)]}, [0, 1])
    with pytest.raises(InvalidBatchError, match=r"below 2\*\*63.*\[18446744073709551615\]"):
        normalize({"x": [1]}, np.array([2**64 - 1], np.uint64))
    with pytest.raises(InvalidBatchError, match=r"below 2\*\*63.*\[9223372036854775808\]"):
        normalize({"x": [1, 2]}, [2**63, 1])


def test_text_that_is_not_unicode_is_refused_with_its_name() -> None:
    with pytest.raises(SchemaError, match=r"key 'bad\\udc80' is not valid Unicode"):
        normalize({"bad\udc80": [1]}, [0])
    with pytest.raises(InvalidBatchError, match=r"entry 1 \('x\\udc80'\) holds an unpaired"):
        normalize({"k": [1, 2]}, [0, 1], names=["ok", "x\udc80"])


def test_tensors_without_dense_values_are_refused_with_a_way_out() -> None:
    dense = torch.eye(2)
    with pytest.raises(SchemaError, match=r"key 's': a sparse_coo tensor .*to_dense\(\)"):
        normalize({"s": dense.to_sparse()}, [0, 1])
    with pytest.raises(SchemaError, match=r"key 's': a sparse_csr tensor"):
        normalize({"s": dense.to_sparse_csr()}, [0, 1])
    with pytest.raises(SchemaError, match=r"key 'm': a tensor on the meta device"):
        normalize({"m": torch.empty(2, 3, device="meta")}, [0, 1])
    nested = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    with pytest.raises(SchemaError, match=r"key 'n': a nested tensor .*unbind\(\)"):
        normalize({"n": nested}, [0, 1])


def test_length_mismatch_names_key_and_both_lengths() -> None:
    with pytest.raises(
        InvalidBatchError, match=r"key 'logits' has 3 values but the batch has 4 rows"
    ):
        normalize({"logits": torch.zeros(3, 10)}, [0, 1, 2, 3])
    with pytest.raises(
        InvalidBatchError, match=r"key 'names2' has 2 values but the batch has 4 rows"
    ):
        normalize({"names2": ["a", "b"]}, [0, 1, 2, 3])


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([0.0, 1.0], "indices must be integers"),
        (torch.tensor([True, False]), "indices must be integers"),
        ([0, -1], r"indices must be non-negative, got \[-1\]"),
        ([[0, 1]], "one-dimensional"),
        ("abc", "one integer per row"),
        (None, "one integer per row"),
    ],
)
def test_bad_indices(indices: object, message: str) -> None:
    with pytest.raises((InvalidBatchError, SchemaError), match=message):
        normalize({"a": [1, 2]}, indices)


def test_names_must_be_strings_of_the_batch_length() -> None:
    with pytest.raises(InvalidBatchError, match=r"names must be strings: entry 1 is 7 \(int\)"):
        normalize({"a": [1, 2]}, [0, 1], names=["x", 7])
    with pytest.raises(InvalidBatchError, match="names has 1 entries but the batch has 2 rows"):
        normalize({"a": [1, 2]}, [0, 1], names=["x"])
    with pytest.raises(InvalidBatchError, match="names must be a list"):
        normalize({"a": [1, 2]}, [0, 1], names="xy")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.zeros(2, dtype=torch.complex64), "key 'v': dtype complex64 cannot be stored"),
        (object(), "key 'v': values of type builtins.object cannot be stored"),
        ([{"a": 1}, {"b": 2}], "key 'v'"),
        ([torch.zeros(2), None], "row 1 is None"),
        ([torch.zeros(2), torch.zeros(2, dtype=torch.int64)], "different dtypes"),
        ([torch.zeros(2), torch.zeros(2, 2)], "different numbers of dimensions"),
        (2**70, "does not fit"),
    ],
)
def test_unsupported_values_name_the_key(value: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        normalize({"v": value}, [0, 1])


@pytest.mark.parametrize("key", ["index", "name", "dataloader_idx", "__offset__.x", ""])
def test_reserved_keys_are_refused(key: str) -> None:
    with pytest.raises(SchemaError, match="key"):
        normalize({key: [1, 2]}, [0, 1])


def test_non_string_keys_and_non_dict_outputs_are_refused() -> None:
    with pytest.raises(SchemaError, match="output keys must be strings"):
        normalize({1: [1, 2]}, [0, 1])  # type: ignore[dict-item]
    with pytest.raises(InvalidBatchError, match="outputs must be a dict"):
        normalize(torch.zeros(2), [0, 1])  # type: ignore[arg-type]


def test_slicing_and_taking_rows_keep_columns_aligned() -> None:
    batch = normalize(
        {"a": torch.arange(4), "r": [torch.zeros(i) for i in range(4)], "s": list("wxyz")},
        [10, 11, 12, 13],
        names=list("abcd"),
    )
    part = batch.slice(1, 3)
    assert part.indices.tolist() == [11, 12] and part.names == ["b", "c"]
    kept = batch.take(np.array([True, False, False, True]))
    assert kept.columns["a"].values.tolist() == [0, 3]
    assert [len(r) for r in kept.columns["r"].values] == [0, 3]
    assert kept.columns["s"].values == ["w", "z"]
