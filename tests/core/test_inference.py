"""Schema inference: kinds, nulls, ID-like columns; marked inferred (not DP)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from privsynth_core.inference import infer_schema
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
    assert all("ID-like" in e.reason for e in schema.excluded)
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
