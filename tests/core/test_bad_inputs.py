"""The bad-input corpus: every bad file gets a PrivsynthError that says what to do, and no output
file is left behind. Driven through the real command line (`privsynth schema infer`)."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest

from privsynth_core.errors import InputFileError, PrivsynthError
from privsynth_core.inference import infer_schema
from privsynth_core.table import read_frame
from privsynth_ui.cli import main

CORPUS = Path(__file__).parents[1] / "bad_inputs"

# file -> words the message must contain (what was wrong, and what to do)
EXPECTED = {
    "empty.csv": ["is empty", "give a file"],
    "header_only.csv": ["no data rows", "give a file with rows"],
    "ragged.csv": ["different number of fields", "fix those rows"],
    "latin1.csv": ["not UTF-8", "re-save it as UTF-8"],
    "duplicate_columns.csv": ["duplicate column names: a", "unique name"],
    "all_null.csv": ["'empty' is entirely empty", "--exclude empty"],
    "constant.csv": ["'country' holds one value only", "--exclude country"],
    "mixed_numbers_text.csv": ["mixes numbers", "'unknown'", "declare"],
    "only_ids.csv": ["no column is left", "ID-like"],
    "corrupt.parquet": ["not a valid Parquet file", "re-export"],
    "table.xlsx": ["unsupported file type", "CSV"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_gets_a_clear_error_and_no_output(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.yaml"
    code = main(["schema", "infer", str(CORPUS / name), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("privsynth: error: ")
    assert "Traceback" not in err
    for words in EXPECTED[name]:
        assert words in err, f"{name}: {words!r} not in {err!r}"
    assert [p.name for p in tmp_path.iterdir() if p.name != "privsynth-home"] == []


def test_every_corpus_file_is_covered() -> None:
    on_disk = {p.name for p in CORPUS.iterdir()} - {"unique_ids.csv"}
    assert on_disk == set(EXPECTED)


def test_unique_id_column_is_excluded_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.yaml"
    assert main(["schema", "infer", str(CORPUS / "unique_ids.csv"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "excluded column 'customer_id': ID-like" in err
    assert "customer_id" not in [c["name"] for c in __import__("yaml").safe_load(
        out.read_text())["columns"]]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_bad_paths(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "nope.csv" if kind == "missing" else tmp_path
    with pytest.raises(InputFileError, match="does not exist|is a directory"):
        read_frame(path)


def test_a_100_mb_file_is_read_streaming_and_a_size_limit_refuses_it(tmp_path: Path) -> None:
    rows = 1_800_000
    path = tmp_path / "big.csv"
    pl.DataFrame({
        "id": pl.int_range(rows, eager=True),
        "age": (pl.int_range(rows, eager=True) * 7919 % 73 + 18),
        "income": (pl.int_range(rows, eager=True) * 104729 % 100_000).cast(pl.Float64) / 3,
        "city": pl.Series(["Oslo", "Rome", "Lima", "Pune"] * (rows // 4)),
        "note": pl.Series(["a fairly long free text field", "another free text value"] * (rows // 2)),
    }).write_csv(path)
    size = path.stat().st_size
    assert size > 100_000_000
    started = time.perf_counter()
    frame = read_frame(path)
    schema = infer_schema(frame)
    elapsed = time.perf_counter() - started
    assert frame.height == rows and "age" in schema.names
    assert elapsed < 60
    with pytest.raises(InputFileError, match=r"over the limit of 50\.0 MB"):
        read_frame(path, max_bytes=50_000_000)


def test_privsynth_errors_are_also_builtin_errors() -> None:
    with pytest.raises(ValueError):
        read_frame(CORPUS / "empty.csv")
    assert issubclass(InputFileError, PrivsynthError)
