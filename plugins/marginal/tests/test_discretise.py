"""Columns to cells and back: round trips, bounds, in-cell spread and dtypes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from privsynth_marginal.discretise import Discretiser, column_cells
from scipy.stats import kstest

from privsynth_core import Column, ColumnKind, Schema
from privsynth_core.datasets import load_adult
from privsynth_core.validation import polars_dtype

BINS = 16
# Bounds whose microseconds a float ``seconds * 1e6`` gets wrong by a fraction: they must still
# be exact cells of their own.
T0 = datetime(2005, 4, 7, 11, 22, 33, 481083)
T1 = datetime(2040, 8, 6, 11, 22, 33, 238828)
OLD0, OLD1 = datetime(1900, 12, 18, 11, 22, 33, 105592), datetime(1969, 5, 1, 0, 0, 0, 1)

COLUMNS = {
    "int_exact": Column(name="int_exact", kind=ColumnKind.INTEGER, bounds=(3.0, 12.0)),
    "int_binned": Column(name="int_binned", kind=ColumnKind.INTEGER, bounds=(-5.0, 995.0)),
    "cont": Column(name="cont", kind=ColumnKind.CONTINUOUS, bounds=(-2.5, 7.25)),
    "when": Column(name="when", kind=ColumnKind.DATETIME, bounds=(T0, T1)),
    "when_old": Column(name="when_old", kind=ColumnKind.DATETIME, bounds=(OLD0, OLD1)),
    "cat": Column(name="cat", kind=ColumnKind.CATEGORICAL, categories=("b", "a", "zz", "c")),
    "flag": Column(name="flag", kind=ColumnKind.BOOLEAN),
    "one_value": Column(name="one_value", kind=ColumnKind.CONTINUOUS, bounds=(4.5, 4.5)),
}


def _values(column: Column, n: int, rng: np.random.Generator) -> list[object]:
    """``n`` in-domain values, both bounds (when numeric) among them."""
    kind = column.kind
    if kind is ColumnKind.CATEGORICAL:
        assert column.categories is not None
        return list(rng.choice(column.categories, n))
    if kind is ColumnKind.BOOLEAN:
        return [bool(v) for v in rng.integers(0, 2, n)]
    assert column.bounds is not None
    lo, hi = column.bounds
    if kind is ColumnKind.DATETIME:
        assert isinstance(lo, datetime) and isinstance(hi, datetime)
        span = (hi - lo) // timedelta(microseconds=1)
        offsets = rng.integers(0, span + 1, n - 2)
        return [lo, hi, *(lo + timedelta(microseconds=int(o)) for o in offsets)]
    assert isinstance(lo, float) and isinstance(hi, float)
    if kind is ColumnKind.INTEGER:
        return [int(lo), int(hi), *(int(v) for v in rng.integers(int(lo), int(hi) + 1, n - 2))]
    return [lo, hi, *rng.uniform(lo, hi, n - 2)]


def _frame(columns: list[Column], n: int, seed: int, null_rate: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for column in columns:
        values = _values(column, n, rng)
        if column.nullable:
            # keep the first two (the bounds) present
            values = [
                None if i > 1 and rng.uniform() < null_rate else v for i, v in enumerate(values)
            ]
        data[column.name] = pl.Series(column.name, values, dtype=polars_dtype(column.kind))
    return pl.DataFrame(data)


def _schema(columns: list[Column]) -> Schema:
    return Schema(columns=tuple(columns), domain="public")


@pytest.mark.parametrize("name", list(COLUMNS))
@pytest.mark.parametrize("nullable", [False, True])
def test_encode_decode_encode_keeps_every_cell(name: str, nullable: bool) -> None:
    column = COLUMNS[name].model_copy(update={"nullable": nullable})
    frame = _frame([column], 3000, seed=1, null_rate=0.2)
    discretiser = Discretiser(_schema([column]), BINS)
    codes = discretiser.encode(frame)
    assert codes.shape == (3000, 1)
    assert codes.min() >= 0 and codes.max() < discretiser.sizes[0]
    if nullable:
        is_null = frame[name].is_null().to_numpy()
        assert is_null.sum() > 300
        # nulls, and only nulls, go to the null cell (the last)
        assert np.array_equal(codes[:, 0] == discretiser.sizes[0] - 1, is_null)
    decoded = discretiser.decode(codes, np.random.default_rng(2))
    assert decoded.schema == pl.Schema({name: polars_dtype(column.kind)})
    assert np.array_equal(decoded[name].is_null().to_numpy(), frame[name].is_null().to_numpy())
    assert np.array_equal(discretiser.encode(decoded), codes)


def test_cell_counts_per_kind() -> None:
    sizes = {name: column_cells(c, BINS).size for name, c in COLUMNS.items()}
    assert sizes == {
        "int_exact": 10,
        "int_binned": BINS,
        "cont": BINS,
        "when": BINS,
        "when_old": BINS,
        "cat": 4,
        "flag": 2,
        "one_value": 1,
    }
    nullable = COLUMNS["cat"].model_copy(update={"nullable": True})
    assert column_cells(nullable, BINS).size == 5


def test_exact_integers_are_one_cell_per_value() -> None:
    cells = column_cells(COLUMNS["int_exact"], BINS)
    values = pl.Series("int_exact", list(range(3, 13)), dtype=pl.Int64)
    codes = cells.encode(values)
    assert codes.tolist() == list(range(10))
    assert cells.decode(codes, np.random.default_rng(0)).to_list() == list(range(3, 13))


@pytest.mark.parametrize("name", ["int_binned", "cont", "when", "when_old"])
def test_values_at_the_bounds_get_their_own_cells(name: str) -> None:
    column = COLUMNS[name]
    cells = column_cells(column, BINS)
    last = cells.n_values - 1
    assert column.bounds is not None
    lo, hi = column.bounds
    inside: list[Any]
    bounds: list[Any]
    if isinstance(lo, datetime) and isinstance(hi, datetime):
        micro = timedelta(microseconds=1)
        inside, bounds = [lo + micro, hi - micro], [lo, hi]
    elif column.kind is ColumnKind.INTEGER:
        assert isinstance(lo, float) and isinstance(hi, float)
        inside, bounds = [int(lo) + 1, int(hi) - 1], [int(lo), int(hi)]
    else:
        assert isinstance(lo, float) and isinstance(hi, float)
        inside, bounds = [float(np.nextafter(lo, hi)), float(np.nextafter(hi, lo))], [lo, hi]
    dtype = polars_dtype(column.kind)
    assert cells.encode(pl.Series(name, bounds, dtype=dtype)).tolist() == [0, last]
    assert cells.encode(pl.Series(name, inside, dtype=dtype)).tolist() == [1, last - 1]
    # and the bound cells decode to exactly the bounds
    decoded = cells.decode(np.array([0, last] * 50), np.random.default_rng(0))
    assert decoded.cast(dtype).to_list() == bounds * 50


@pytest.mark.parametrize("name", ["int_binned", "cont", "when", "when_old"])
def test_decoded_values_stay_within_bounds(name: str) -> None:
    column = COLUMNS[name]
    cells = column_cells(column, BINS)
    codes = np.repeat(np.arange(cells.n_values), 500)
    decoded = cells.decode(codes, np.random.default_rng(3)).cast(polars_dtype(column.kind))
    assert column.bounds is not None
    lo, hi = column.bounds
    assert decoded.min() >= lo and decoded.max() <= hi
    if column.kind is ColumnKind.INTEGER:
        assert decoded.dtype == pl.Int64


def test_binned_integers_decode_to_every_whole_number_of_their_cell() -> None:
    cells = column_cells(COLUMNS["int_binned"], BINS)
    edges = [int(e) for e in cells.edges]
    assert [float(e) for e in edges] == list(cells.edges)  # whole-number edges
    decoded = cells.decode(np.full(20_000, 3), np.random.default_rng(4)).to_numpy()
    # cell 3 is [edges[1], edges[2]): every integer in it comes out, about equally often
    expected = np.arange(edges[1], edges[2])
    values, counts = np.unique(decoded, return_counts=True)
    assert np.array_equal(values, expected)
    share = 1 / expected.size
    se = np.sqrt(share * (1 - share) / decoded.size)
    assert np.abs(counts / decoded.size - share).max() < 5 * se


def test_binned_continuous_values_are_spread_uniformly_within_their_cell() -> None:
    column = COLUMNS["cont"]
    cells = column_cells(column, BINS)
    edges = cells.edges
    rng = np.random.default_rng(5)
    for code, (lo, hi) in [
        (1, (cells.lower, edges[0])),
        (7, (edges[5], edges[6])),
        (cells.n_values - 2, (edges[-1], cells.upper)),
    ]:
        decoded = cells.decode(np.full(4000, code), rng).to_numpy()
        assert decoded.min() >= lo and decoded.max() < hi
        assert np.unique(decoded).size == decoded.size  # not piled on one point
        assert kstest(decoded, "uniform", args=(lo, hi - lo)).pvalue > 1e-3


def test_cuts_come_from_the_bounds_alone() -> None:
    cells = column_cells(COLUMNS["cont"], BINS)
    assert np.allclose(cells.edges, np.linspace(-2.5, 7.25, BINS - 1)[1:-1])


def test_one_value_domain_is_one_cell() -> None:
    column = COLUMNS["one_value"]
    cells = column_cells(column, BINS)
    assert cells.n_values == 1
    assert cells.encode(pl.Series("one_value", [4.5, 4.5])).tolist() == [0, 0]
    assert (
        cells.decode(np.zeros(3, dtype=np.int64), np.random.default_rng(0)).to_list() == [4.5] * 3
    )


def test_out_of_domain_category_and_unexpected_nulls_are_refused() -> None:
    cells = column_cells(COLUMNS["cat"], BINS)
    with pytest.raises(ValueError, match="outside its categories"):
        cells.encode(pl.Series("cat", ["a", "nope"]))
    with pytest.raises(ValueError, match="not nullable"):
        cells.encode(pl.Series("cat", ["a", None]))


def test_whole_table_round_trip_with_schema_dtypes() -> None:
    columns = [
        c.model_copy(update={"nullable": i % 2 == 1}) for i, c in enumerate(COLUMNS.values())
    ]
    schema = _schema(columns)
    frame = _frame(columns, 2000, seed=7, null_rate=0.1)
    discretiser = Discretiser(schema, BINS)
    assert discretiser.names == [c.name for c in columns]
    codes = discretiser.encode(frame)
    decoded = discretiser.decode(codes, np.random.default_rng(8))
    assert decoded.schema == pl.Schema({c.name: polars_dtype(c.kind) for c in columns})
    assert np.array_equal(discretiser.encode(decoded), codes)


def test_adult_round_trip() -> None:
    table = load_adult(2000)
    discretiser = Discretiser(table.schema, 32)
    codes = discretiser.encode(table.frame)
    decoded = discretiser.decode(codes, np.random.default_rng(9))
    assert decoded.schema == pl.Schema({c.name: polars_dtype(c.kind) for c in table.schema.columns})
    assert np.array_equal(discretiser.encode(decoded), codes)
    # categorical cells decode to the very values encoded
    for column in table.schema.columns:
        if column.kind is ColumnKind.CATEGORICAL:
            assert decoded[column.name].to_list() == table.frame[column.name].to_list()
