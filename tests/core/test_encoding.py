"""The schema-only table encoder: layout, exact round trips, nulls, domain-only decoding."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from privsynth_core import Column, ColumnKind, DomainError, Schema, SchemaError, Table
from privsynth_core.encoding import TableEncoder
from privsynth_core.validation import polars_dtype

KINDS = ColumnKind


def _schema() -> Schema:
    return Schema(
        domain="public",
        columns=(
            Column(name="x", kind=KINDS.CONTINUOUS, bounds=(-5.0, 15.0)),
            Column(name="xn", kind=KINDS.CONTINUOUS, nullable=True, bounds=(0.0, 1.0)),
            Column(name="i", kind=KINDS.INTEGER, bounds=(0.0, 1_500_000.0)),
            Column(name="in_", kind=KINDS.INTEGER, nullable=True, bounds=(-3.0, 3.0)),
            Column(name="c", kind=KINDS.CATEGORICAL, categories=("a", "b", "c")),
            Column(name="cn", kind=KINDS.CATEGORICAL, nullable=True, categories=("u", "v")),
            Column(name="b", kind=KINDS.BOOLEAN),
            Column(name="bn", kind=KINDS.BOOLEAN, nullable=True),
            Column(
                name="d",
                kind=KINDS.DATETIME,
                bounds=(datetime(2000, 1, 1), datetime(2030, 12, 31, 23, 59, 59)),
            ),
            Column(
                name="dn",
                kind=KINDS.DATETIME,
                nullable=True,
                bounds=(datetime(1990, 1, 1), datetime(1990, 1, 2)),
            ),
        ),
    )


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "x": [-5.0, 0.25, 15.0, 3.5, 7.0],
            "xn": [0.5, None, 1.0, 0.0, None],
            "i": [0, 1_499_999, 12_345, 1_500_000, 7],
            "in_": [None, -3, 0, 3, 2],
            "c": ["a", "b", "c", "a", "c"],
            "cn": ["u", None, "v", None, "u"],
            "b": [True, False, True, True, False],
            "bn": [None, True, False, None, True],
            "d": [
                datetime(2000, 1, 1),
                datetime(2015, 6, 7, 8, 9, 10),
                datetime(2030, 12, 31),
                datetime(2021, 2, 3),
                datetime(2001, 1, 1, 12),
            ],
            "dn": [
                datetime(1990, 1, 1, 6),
                None,
                datetime(1990, 1, 2),
                None,
                datetime(1990, 1, 1, 23, 30),
            ],
        },
        schema={c.name: polars_dtype(c.kind) for c in _schema().columns},
    )


def test_encoder_layout_has_a_span_per_output_with_its_activation() -> None:
    enc = TableEncoder(_schema())
    layout = [(s.column, s.role, s.width, s.activation, s.null_slot) for s in enc.spans]
    assert layout == [
        ("x", "value", 1, "tanh", False),
        ("xn", "value", 1, "tanh", False),
        ("xn", "null", 2, "softmax", False),
        ("i", "value", 1, "tanh", False),
        ("in_", "value", 1, "tanh", False),
        ("in_", "null", 2, "softmax", False),
        ("c", "onehot", 3, "softmax", False),
        ("cn", "onehot", 3, "softmax", True),
        ("b", "onehot", 2, "softmax", False),
        ("bn", "onehot", 3, "softmax", True),
        ("d", "value", 1, "tanh", False),
        ("dn", "value", 1, "tanh", False),
        ("dn", "null", 2, "softmax", False),
    ]
    # Spans tile the output exactly.
    assert [s.start for s in enc.spans] == [0, *[s.end for s in enc.spans[:-1]]]
    assert enc.output_dim == enc.spans[-1].end == 23
    assert [s.column for s in enc.onehot_spans] == ["c", "cn", "b", "bn"]


def test_encode_is_float32_in_range_with_one_hot_groups() -> None:
    enc = TableEncoder(_schema())
    array = enc.encode(_frame())
    assert array.dtype == np.float32 and array.shape == (5, enc.output_dim)
    for span in enc.spans:
        block = array[:, span.start : span.end]
        if span.activation == "tanh":
            assert block.min() >= -1 and block.max() <= 1
        else:
            assert set(np.unique(block)) <= {0.0, 1.0}
            assert (block.sum(axis=1) == 1).all()  # every value is in its domain here
    x = enc.column_spans("x")[0].start
    assert array[:, x].tolist() == pytest.approx([-1.0, -0.475, 1.0, -0.15, 0.2])
    null = enc.column_spans("xn")[1].start
    assert array[:, null + 1].tolist() == [0, 1, 0, 0, 1]  # the "missing" slot


@pytest.mark.parametrize("sampled", [False, True])
def test_round_trip_keeps_every_kind_and_null(sampled: bool) -> None:
    enc = TableEncoder(_schema())
    frame = _frame()
    rng = np.random.default_rng(0) if sampled else None
    back = enc.decode(enc.encode(frame), rng=rng)
    assert back.schema == frame.schema
    exact = ["i", "in_", "c", "cn", "b", "bn"]
    assert back.select(exact).equals(frame.select(exact))
    for name in ("x", "xn"):
        got, want = back[name].to_list(), frame[name].to_list()
        assert [g is None for g in got] == [w is None for w in want]
        assert [g for g in got if g is not None] == pytest.approx(
            [w for w in want if w is not None], abs=2e-6 * 20
        )
    for name, span_seconds in (("d", 31 * 365.25 * 86400), ("dn", 86400)):
        got, want = back[name].to_list(), frame[name].to_list()
        assert [g is None for g in got] == [w is None for w in want]
        for g, w in zip(got, want, strict=True):
            if w is not None:  # float32 resolution of the scaled value
                assert abs((g - w).total_seconds()) <= span_seconds * 1.2e-7


def test_round_trip_through_conform_of_a_raw_text_table() -> None:
    schema = _schema()
    raw = _frame().select(pl.all().cast(pl.String))
    table = Table.from_frame(raw, schema)
    enc = TableEncoder(schema)
    back = enc.decode(enc.encode(table.frame))
    assert back.select("i", "c", "bn").equals(table.frame.select("i", "c", "bn"))


def test_out_of_domain_values_encode_as_null_slot_or_all_zeros() -> None:
    schema = _schema()
    raw = _frame().with_columns(
        pl.Series("c", ["a", "zzz", "c", "a", "c"]), pl.Series("cn", ["u", "v", "other", None, "u"])
    )
    # conform makes unknown categories missing; a row left with a missing value where the
    # column is not nullable ("zzz" in c) is dropped, row by row.
    table = Table.from_frame(raw, schema)
    assert table.n_rows == 4 and "zzz" not in table.frame["c"].to_list()
    enc = TableEncoder(schema)
    array = enc.encode(table.frame)
    cn = enc.column_spans("cn")[0]
    assert array[1, cn.start : cn.end].tolist() == [0, 0, 1]  # "other": the null slot
    # A missing value that reaches the encoder anyway encodes as all zeros.
    c = enc.column_spans("c")[0]
    missing = enc.encode(table.frame.with_columns(pl.lit(None, pl.String).alias("c")))
    assert missing[0, c.start : c.end].tolist() == [0, 0, 0]
    decoded = enc.decode(missing, rng=np.random.default_rng(1))
    assert decoded["c"][0] in schema.column("c").categories  # never an unknown value
    assert decoded["cn"][1] is None


def test_decode_clips_rounds_and_only_uses_the_domain() -> None:
    enc = TableEncoder(_schema())
    rng = np.random.default_rng(3)
    raw = rng.normal(0, 3, size=(2000, enc.output_dim)).astype(np.float32)
    for span in enc.spans:  # make groups look like generator softmax outputs
        if span.activation == "softmax":
            block = np.exp(raw[:, span.start : span.end])
            raw[:, span.start : span.end] = block / block.sum(axis=1, keepdims=True)
    out = enc.decode(raw, rng=rng)
    schema = _schema()
    assert out.schema == pl.Schema({c.name: polars_dtype(c.kind) for c in schema.columns})
    for col in schema.columns:
        values = out[col.name]
        if not col.nullable:
            assert values.null_count() == 0
        else:
            assert 0 < values.null_count() < len(values)
        present = values.drop_nulls()
        if col.bounds is not None:
            assert present.min() >= col.bounds[0] and present.max() <= col.bounds[1]
        if col.categories is not None:
            assert set(present.to_list()) == set(col.categories)
    assert out["in_"].drop_nulls().is_in(list(range(-3, 4))).all()


def test_decode_with_rng_draws_in_proportion_and_without_takes_argmax() -> None:
    schema = Schema(
        domain="public",
        columns=(Column(name="c", kind=KINDS.CATEGORICAL, categories=("a", "b", "c")),),
    )
    enc = TableEncoder(schema)
    probs = np.tile(np.array([[0.2, 0.5, 0.3]], dtype=np.float32), (20_000, 1))
    drawn = enc.decode(probs, rng=np.random.default_rng(0))["c"].value_counts(normalize=True)
    share = dict(zip(drawn["c"], drawn["proportion"], strict=True))
    assert share == pytest.approx({"a": 0.2, "b": 0.5, "c": 0.3}, abs=0.015)
    assert set(enc.decode(probs)["c"]) == {"b"}


def test_iter_encoded_matches_encode() -> None:
    enc = TableEncoder(_schema())
    frame = pl.concat([_frame()] * 7)
    parts = list(enc.iter_encoded(frame, batch_rows=4))
    assert [len(p) for p in parts] == [4] * 8 + [3]
    np.testing.assert_array_equal(np.concatenate(parts), enc.encode(frame))


def test_degenerate_bounds_and_missing_domains() -> None:
    fixed = Schema(
        domain="public", columns=(Column(name="k", kind=KINDS.INTEGER, bounds=(4.0, 4.0)),)
    )
    enc = TableEncoder(fixed)
    assert enc.decode(enc.encode(pl.DataFrame({"k": [4, 4]})))["k"].to_list() == [4, 4]
    with pytest.raises(DomainError, match="no integer"):
        TableEncoder(
            Schema(
                domain="public", columns=(Column(name="k", kind=KINDS.INTEGER, bounds=(0.2, 0.8)),)
            )
        )
    with pytest.raises(DomainError, match="missing for: z"):
        TableEncoder(Schema(columns=(Column(name="z", kind=KINDS.CONTINUOUS),)))
    with pytest.raises(SchemaError, match="missing"):
        enc.encode(pl.DataFrame({"other": [1]}))
    with pytest.raises(ValueError, match="shape"):
        enc.decode(np.zeros((2, 5), dtype=np.float32))


def test_encoder_is_built_from_the_schema_alone(adult_small: Table) -> None:
    """Two different tables of one schema give the same layout: nothing is fitted on data."""
    enc_a = TableEncoder(adult_small.schema)
    enc_b = TableEncoder(adult_small.schema)
    head = adult_small.frame.head(10)
    np.testing.assert_array_equal(enc_a.encode(head), enc_b.encode(head))
    only_head = enc_a.encode(head)
    np.testing.assert_array_equal(only_head, enc_a.encode(adult_small.frame)[:10])
