"""Schema inference: kinds, nulls, ID-like columns; marked inferred (not DP)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from privsynth_core.errors import SchemaError
from privsynth_core.inference import infer_draft, infer_schema, round_limits
from privsynth_core.schema import ColumnKind
from privsynth_core.table import read_frame


def test_infer_schema_detects_every_kind(tmp_path: Path) -> None:
    n = 40
    path = tmp_path / "mixed.csv"
    pl.DataFrame(
        {
            "patient_id": [f"P{i:04d}" for i in range(n)],
            "row": list(range(n)),
            "age": [20 + i % 30 for i in range(n)],
            "weight": [60.5 + i / 10 for i in range(n)],
            "ward": ["A", "B", "C", "D"] * (n // 4),
            "smoker": ["yes", "no"] * (n // 2),
            "admitted": [f"2023-01-{1 + i % 28:02d}" for i in range(n)],
            "score": [str(i % 7) if i % 5 else "" for i in range(n)],
        }
    ).write_csv(path)
    schema = infer_schema(read_frame(path))
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "age": ColumnKind.INTEGER,
        "weight": ColumnKind.CONTINUOUS,
        "ward": ColumnKind.CATEGORICAL,
        "smoker": ColumnKind.BOOLEAN,
        "admitted": ColumnKind.DATETIME,
        "score": ColumnKind.INTEGER,
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
    frame = pl.DataFrame({"income": [1000 + 37 * i * i for i in range(50)], "g": ["a", "b"] * 25})
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
    frame = pl.DataFrame(
        {"age": ["17", "45", "90"] * 10 + ["33"], "ward": ["A"] * 20 + ["B"] * 10 + ["Z"]}
    )
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
    frame = pl.DataFrame(
        {"admitted": ["2023-01-02"] * 10 + ["03/01/2023"] * 10, "ward": ["A", "B"] * 10}
    )
    with pytest.raises(SchemaError, match="admitted.*dates in several formats.*format:"):
        infer_schema(frame)
    lenient = infer_schema(frame, lenient=True)  # the web app's draft: left out, with why
    assert [(e.name, e.reason) for e in lenient.excluded] == [("admitted", "mixed")]


def test_round_limits() -> None:
    assert round_limits(17, 90) == (10.0, 90.0)
    assert round_limits(3.0, 99_999.0) == (0.0, 100_000.0)
    assert round_limits(-4.2, 7.9) == (-10.0, 10.0)
    assert round_limits(datetime(2019, 5, 3), datetime(2021, 2, 1)) == (
        "2019-01-01T00:00:00",
        "2022-01-01T00:00:00",
    )


CORPUS = Path(__file__).parents[1] / "bad_inputs"


def test_integers_with_gaps_exported_as_floats_are_integers_and_0_1_is_boolean() -> None:
    # Crash records and loans as pandas writes them: 2005.0, blank cells, a 0/1 flag.
    draft = infer_draft(read_frame(CORPUS / "ints_with_nulls.csv"))
    kinds = {c.name: c.kind for c in draft.schema.columns}
    assert kinds == {
        "vehicle_year": ColumnKind.INTEGER,
        "severity": ColumnKind.INTEGER,
        "months_since_delinquent": ColumnKind.INTEGER,
        "injured": ColumnKind.BOOLEAN,
        "city": ColumnKind.CATEGORICAL,
    }
    assert all(c.nullable for c in draft.schema.columns if c.name != "city")
    assert "'.0'" in draft.why["vehicle_year"] and draft.why["injured"] == (
        "only the values 0 and 1"
    )
    # Typed Parquet too: float64 with NaN-free whole values and gaps, int64 0/1 with gaps.
    typed = pl.DataFrame(
        {
            "year": [2001.0, None, 1999.0] * 10,
            "flag": [1, None, 0] * 10,
            "ratio": [0.5, 1.25, None] * 10,
        }
    )
    kinds = {c.name: c.kind for c in infer_schema(typed).columns}
    assert kinds == {
        "year": ColumnKind.INTEGER,
        "flag": ColumnKind.BOOLEAN,
        "ratio": ColumnKind.CONTINUOUS,
    }


def test_the_draft_columns_read_back_as_inferred(tmp_path: Path) -> None:
    # What inference calls an integer or a boolean, conforming reads as one (no value lost).
    from privsynth_core.validation import conform_report

    frame = read_frame(CORPUS / "ints_with_nulls.csv")
    _, report = conform_report(frame, infer_schema(frame))
    assert not report.unreadable


def test_a_constant_column_with_gaps_is_refused_like_a_constant_one() -> None:
    frame = pl.DataFrame({"zeros": ["0", "", "0"] * 10, "city": ["A", "B", "C"] * 10})
    with pytest.raises(SchemaError, match="'zeros' holds one value only.*apart from missing"):
        infer_schema(frame)
    lenient = infer_schema(frame, lenient=True)
    assert [(e.name, e.reason) for e in lenient.excluded] == [("zeros", "constant")]
    assert lenient.names == ["city"]  # never kept with bounds [0, 0]


def test_a_split_marker_is_left_out_with_its_own_reason() -> None:
    draft = infer_draft(read_frame(CORPUS / "split_marker.csv"))
    assert [(e.name, e.reason) for e in draft.schema.excluded] == [("split", "split_marker")]
    assert "split marker" in draft.schema.excluded[0].text
    by_name = pl.DataFrame({"fold": [1, 2, 3, 4, 5] * 10, "age": [20 + i % 30 for i in range(50)]})
    assert [e.reason for e in infer_schema(by_name).excluded] == ["split_marker"]


def test_an_id_with_gaps_is_id_like_and_free_text_is_told_from_codes() -> None:
    draft = infer_draft(read_frame(CORPUS / "id_with_nulls.csv"))
    assert [(e.name, e.reason) for e in draft.schema.excluded] == [("case_number", "id_like")]
    assert "only if it is not an identifier" in draft.schema.excluded[0].text
    n = 300
    frame = pl.DataFrame(
        {
            "note": [f"patient seen on ward {i % 7} and sent home {i}" for i in range(n)],
            "code": [f"X{i % 250:03d}" for i in range(n)],
            "age": [20 + i % 50 for i in range(n)],
        }
    )
    reasons = {e.name: e.reason for e in infer_schema(frame).excluded}
    assert reasons == {"note": "free_text", "code": "many_values"}
    from privsynth_core.schema import EXCLUSION_TEXT

    # The texts are fixed: no count or value of the data ever lands in a schema file.
    assert all(not any(ch.isdigit() for ch in text) for text in EXCLUSION_TEXT.values())


def test_decimal_commas_are_reported_not_read_as_text() -> None:
    frame = read_frame(CORPUS / "decimal_comma.csv")
    with pytest.raises(SchemaError, match="'weight' holds numbers written with a decimal comma"):
        infer_schema(frame)


def test_the_draft_table_says_what_was_guessed_and_why_in_file_order() -> None:
    draft = infer_draft(read_frame(CORPUS / "split_marker.csv"))
    rows = draft.rows()
    assert [r[0] for r in rows] == ["age", "city", "split"]
    assert rows[0][1] == "integer" and rows[0][2] == "whole numbers"
    assert "review: bounds are the data's min/max" in rows[0][3]
    assert rows[2][1:] == ["left out", "marks train/test rows", "split_marker"]


def test_schema_infer_prints_the_table_of_guesses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from privsynth_ui.cli import main

    assert (
        main(
            ["schema", "infer", str(CORPUS / "ints_with_nulls.csv"), "-o", str(tmp_path / "s.yaml")]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "what was guessed, and why" in err
    header = next(line for line in err.splitlines() if line.startswith("COLUMN"))
    assert header.split() == ["COLUMN", "KIND", "WHY", "FLAGS"]
    assert any(
        line.startswith("injured ") and "boolean" in line and "nullable" in line
        for line in err.splitlines()
    )
