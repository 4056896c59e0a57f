"""Schema inference: kinds, nulls, ID-like columns; marked inferred (not DP)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from privsynth_core.errors import SchemaError
from privsynth_core.inference import infer_schema, round_limits
from privsynth_core.schema import ColumnKind
from privsynth_core.table import read_frame


def test_infer_schema_detects_every_kind(tmp_path: Path) -> None:
    n = 40
    path = tmp_path / "mixed.csv"
    pl.DataFrame({
        "patient_id": [f"P{i:04d}" for i in range(n)],
        "row": list(range(n)),
        "age": [20 + i % 30 for i in range(n)],
        "weight": [60.5 + i / 10 for i in range(n)],
        "ward": ["A", "B", "C", "D"] * (n // 4),
        "smoker": ["yes", "no"] * (n // 2),
        "admitted": [f"2023-01-{1 + i % 28:02d}" for i in range(n)],
        "score": [str(i % 7) if i % 5 else "" for i in range(n)],
    }).write_csv(path)
    schema = infer_schema(read_frame(path))
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "age": ColumnKind.INTEGER, "weight": ColumnKind.CONTINUOUS,
        "ward": ColumnKind.CATEGORICAL, "smoker": ColumnKind.BOOLEAN,
        "admitted": ColumnKind.DATETIME, "score": ColumnKind.INTEGER,
    }
    assert {e.name for e in schema.excluded} == {"patient_id", "row"}
    # A fixed code, never a count or a value of the data.
    assert all(e.reason == "id_like" and "ID-like" in e.text for e in schema.excluded)
    assert schema.column("admitted").format == "%Y-%m-%d"
    assert schema.column("score").nullable and not schema.column("age").nullable
    assert schema.column("ward").categories == ("A", "B", "C", "D")
    assert schema.column("age").bounds == (20.0, 49.0)
    assert schema.domain == "inferred"


def test_infer_schema_on_adult(adult_raw: pl.DataFrame) -> None:
    schema = infer_schema(adult_raw)
    assert len(schema.columns) == 15 and not schema.excluded
    assert schema.column("native-country").kind is ColumnKind.CATEGORICAL
    assert len(schema.column("native-country").categories or ()) == 42
    assert schema.column("fnlwgt").kind is ColumnKind.INTEGER


def test_integer_column_unique_but_not_an_id_is_kept() -> None:
    frame = pl.DataFrame({"income": [1000 + 37 * i * i for i in range(50)],
                          "g": ["a", "b"] * 25})
    schema = infer_schema(frame)
    assert schema.names == ["income", "g"]


def test_parquet_and_csv_infer_the_same_schema(tmp_path: Path, adult_raw: pl.DataFrame) -> None:
    sample = adult_raw.head(3000)
    csv_path, parquet_path = tmp_path / "a.csv", tmp_path / "a.parquet"
    sample.write_csv(csv_path)
    typed = sample.with_columns(pl.col("age", "fnlwgt", "hours-per-week").cast(pl.Int64))
    typed.write_parquet(parquet_path)
    from_csv = infer_schema(read_frame(csv_path))
    from_parquet = infer_schema(read_frame(parquet_path))
    assert from_csv == from_parquet


def test_a_draft_flags_what_a_person_must_review() -> None:
    frame = pl.DataFrame({"age": ["17", "45", "90"] * 10 + ["33"],
                          "ward": ["A"] * 20 + ["B"] * 10 + ["Z"]})
    schema = infer_schema(frame)
    flags = {(f.column, f.issue): f for f in schema.review}
    bounds = flags[("age", "bounds_at_extremes")]
    assert bounds.values == (17.0, 90.0) and bounds.suggestion == (10.0, 90.0)
    assert flags[("ward", "rare_categories")].values == ("Z",)
    with pytest.raises(SchemaError) as info:
        schema.confirm_public()
    assert "min and max" in str(info.value) and "'Z'" in str(info.value)
    # Round limits resolve the bound; removing the rare category resolves the other flag.
    edited = schema.with_round_bounds()
    ward = edited.column("ward").model_copy(update={"categories": ("A", "B")})
    edited = edited.model_copy(update={"columns": (edited.column("age"), ward)})
    confirmed = edited.confirm_public()
    assert confirmed.domain == "public" and confirmed.review == ()
    assert confirmed.column("age").bounds == (10.0, 90.0)
    # Or a person accepts them as public knowledge, explicitly.
    assert schema.confirm_public(accept_flagged=True).domain == "public"


def test_dates_in_several_formats_are_reported_not_dropped() -> None:
    frame = pl.DataFrame({"admitted": ["2023-01-02"] * 10 + ["03/01/2023"] * 10,
                          "ward": ["A", "B"] * 10})
    with pytest.raises(SchemaError, match="admitted.*dates in several formats.*format:"):
        infer_schema(frame)
    lenient = infer_schema(frame, lenient=True)  # the web app's draft: left out, with why
    assert [(e.name, e.reason) for e in lenient.excluded] == [("admitted", "mixed")]


def test_round_limits() -> None:
    assert round_limits(17, 90) == (10.0, 90.0)
    assert round_limits(3.0, 99_999.0) == (0.0, 100_000.0)
    assert round_limits(-4.2, 7.9) == (-10.0, 10.0)
    assert round_limits(datetime(2019, 5, 3), datetime(2021, 2, 1)) == (
        "2019-01-01T00:00:00", "2022-01-01T00:00:00")
