"""Schema files: readable, editable, exact round trips, every problem reported at once."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from privsynth_core import Column, ColumnKind, Schema, SchemaError


def _schema() -> Schema:
    return Schema(
        domain="public",
        columns=(
            Column(name="age", kind=ColumnKind.INTEGER, bounds=(0.0, 120.0)),
            Column(name="income", kind=ColumnKind.CONTINUOUS, nullable=True, bounds=(0.0, 1e6)),
            Column(name="city", kind=ColumnKind.CATEGORICAL, categories=("Oslo", "Rome", "007")),
            Column(name="smoker", kind=ColumnKind.BOOLEAN, nullable=True),
            Column(
                name="admitted",
                kind=ColumnKind.DATETIME,
                bounds=(datetime(2020, 1, 1), datetime(2024, 12, 31, 23, 59)),
            ),
        ),
    )


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_schema_round_trips_exactly(tmp_path: Path, suffix: str) -> None:
    schema = _schema()
    path = schema.save(tmp_path / f"schema{suffix}")
    assert Schema.load(path) == schema
    # Saving the loaded schema again gives the same text.
    again = Schema.load(path).save(tmp_path / f"again{suffix}")
    assert again.read_text() == path.read_text()


def test_schema_yaml_is_readable_and_says_what_the_domain_is(tmp_path: Path) -> None:
    text = _schema().to_yaml()
    assert "declared PUBLIC" in text
    assert "- name: age\n  kind: integer\n  bounds:\n  - 0\n  - 120" in text
    assert "2020-01-01T00:00:00" in text
    inferred = _schema().model_copy(update={"domain": "inferred"}).to_yaml()
    assert "INFERRED from the private data" in inferred


def test_schema_file_errors_list_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "domain: public\ncolumns:\n"
        "- {name: a, kind: integer, bounds: [5, 1]}\n"
        "- {name: b, kind: colour}\n"
        "- {name: c, kind: categorical, bounds: [0, 1]}\n"
    )
    with pytest.raises(SchemaError) as info:
        Schema.load(path)
    assert len(info.value.problems) == 3
    message = str(info.value)
    assert "lower bound 5.0 > upper bound 1.0" in message
    assert "colour" in message and "categorical column has categories" in message


def test_schema_load_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="does not exist"):
        Schema.load(tmp_path / "nope.yaml")


def test_a_confirmed_skeleton_has_public_kinds_and_no_domain_yet() -> None:
    skeleton = Schema(domain="inferred", columns=(Column(name="x", kind=ColumnKind.CONTINUOUS),))
    confirmed = skeleton.confirm_public()
    # Names and kinds are public now; the domain is left to be learned with DP.
    assert confirmed.domain == "public" and confirmed.missing_domains == ["x"]


def test_a_release_holds_no_excluded_columns_or_review_notes() -> None:
    schema = Schema.from_dict(
        {
            "domain": "inferred",
            "columns": [{"name": "x", "kind": "integer", "bounds": [1, 9]}],
            "excluded": [
                {"name": "id", "reason": "ID-like: a different value in 2997 of 3000 rows"}
            ],
            "review": [{"column": "x", "issue": "bounds_at_extremes", "values": [1, 9]}],
        }
    )
    assert schema.excluded[0].reason == "id_like"  # old free-text reasons read as codes
    released = schema.release_dict()
    assert "excluded" not in released and "review" not in released
    assert "2997" not in str(released)


def test_duplicate_columns_are_refused() -> None:
    with pytest.raises(SchemaError, match="duplicate column names: a"):
        Schema.from_dict(
            {"columns": [{"name": "a", "kind": "boolean"}, {"name": "a", "kind": "boolean"}]}
        )
