"""The bad-input corpus: every bad file gets a PrivsynthError that says what to do, and no output
file is left behind. Driven through the real command line (`privsynth schema infer`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from privsynth_core.errors import InputFileError, PrivsynthError, SchemaError
from privsynth_core.inference import infer_schema
from privsynth_core.table import fingerprint_frame, read_frame, sniff_separator
from privsynth_ui.cli import main

CORPUS = Path(__file__).parents[1] / "bad_inputs"
CATALOGUE = yaml.safe_load((CORPUS / "CATALOGUE.yaml").read_text())


@pytest.mark.parametrize("name", sorted(CATALOGUE["unreadable"]))
def test_an_unreadable_file_is_an_input_error_that_says_what_to_do(name: str) -> None:
    with pytest.raises(InputFileError) as info:
        read_frame(CORPUS / name)
    for words in CATALOGUE["unreadable"][name]:
        assert words in str(info.value), f"{name}: {words!r} not in {info.value}"


@pytest.mark.parametrize("name", sorted(CATALOGUE["uninferable"]))
def test_an_uninferable_table_is_a_schema_error_listing_each_problem(name: str) -> None:
    frame = read_frame(CORPUS / name)
    with pytest.raises(SchemaError) as info:
        infer_schema(frame)
    for words in CATALOGUE["uninferable"][name]:
        assert words in str(info.value), f"{name}: {words!r} not in {info.value}"


@pytest.mark.parametrize("name", sorted(CATALOGUE["unreadable"]) + sorted(CATALOGUE["uninferable"]))
def test_schema_infer_refuses_with_one_error_line_and_writes_nothing(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.yaml"
    code = main(["schema", "infer", str(CORPUS / name), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and err.count("privsynth: error: ") == 1
    assert [p.name for p in tmp_path.iterdir() if p.name != "privsynth-home"] == []


def test_unique_id_column_is_excluded_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.yaml"
    assert main(["schema", "infer", str(CORPUS / "unique_ids.csv"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "excluded column 'customer_id': ID-like" in err
    assert "customer_id" not in [c["name"] for c in yaml.safe_load(out.read_text())["columns"]]


def test_a_semicolon_csv_is_read_by_its_header_and_the_separator_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = read_frame(CORPUS / "semicolon.csv")
    assert frame.columns == ["age", "city", "visits"]
    out = tmp_path / "schema.yaml"
    assert main(["schema", "infer", str(CORPUS / "semicolon.csv"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "fields separated by semicolon ';' (found in its header line" in err
    assert [c["name"] for c in yaml.safe_load(out.read_text())["columns"]] == [
        "age",
        "city",
        "visits",
    ]
    # --separator overrides the sniffing (and is not "found"): read by commas, one column.
    assert (
        main(["schema", "infer", str(CORPUS / "semicolon.csv"), "-o", str(out), "--separator", ","])
        == 0
    )
    assert "fields separated by" not in capsys.readouterr().err
    assert [c["name"] for c in yaml.safe_load(out.read_text())["columns"]] == ["age;city;visits"]


def test_the_separator_is_sniffed_from_the_header_only() -> None:
    assert sniff_separator("a;b;c\n") == ";"
    assert sniff_separator("a\tb\tc") == "\t"
    assert sniff_separator("a|b") == "|"
    assert sniff_separator("name") == ","  # one column: the default
    assert sniff_separator('"x;y",b,c') == ","  # a separator inside quotes does not count
    assert sniff_separator("a;b,c", default=",") == ","  # a tie goes to the comma


def test_bom_and_crlf_are_plain_csv(tmp_path: Path) -> None:
    frame = read_frame(CORPUS / "bom_crlf.csv")
    assert frame.columns == ["age", "city"]
    assert not frame["city"].str.contains("\r").any()
    plain = tmp_path / "plain.csv"
    plain.write_bytes((CORPUS / "bom_crlf.csv").read_bytes()[3:].replace(b"\r\n", b"\n"))
    assert fingerprint_frame(read_frame(plain)) == fingerprint_frame(frame)


def test_a_quoted_header_keeps_one_quote_per_doubled_quote() -> None:
    assert read_frame(CORPUS / "header_quote.csv").columns[0] == 'the "best" city'


def test_a_gzip_csv_reads_like_the_plain_one(tmp_path: Path) -> None:
    import gzip

    text = (CORPUS / "semicolon.csv").read_bytes()
    packed = tmp_path / "packed.csv.gz"
    packed.write_bytes(gzip.compress(text))
    assert read_frame(packed).equals(read_frame(CORPUS / "semicolon.csv"))


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_bad_paths(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "nope.csv" if kind == "missing" else tmp_path
    with pytest.raises(InputFileError, match="does not exist|is a directory"):
        read_frame(path)


def test_a_100_mb_file_is_read_streaming_and_a_size_limit_refuses_it(tmp_path: Path) -> None:
    rows = 1_800_000
    path = tmp_path / "big.csv"
    pl.DataFrame(
        {
            "id": pl.int_range(rows, eager=True),
            "age": (pl.int_range(rows, eager=True) * 7919 % 73 + 18),
            "income": (pl.int_range(rows, eager=True) * 104729 % 100_000).cast(pl.Float64) / 3,
            "city": pl.Series(["Oslo", "Rome", "Lima", "Pune"] * (rows // 4)),
            "note": pl.Series(
                ["a fairly long free text field", "another free text value"] * (rows // 2)
            ),
        }
    ).write_csv(path)
    size = path.stat().st_size
    assert size > 100_000_000
    frame = read_frame(path)
    schema = infer_schema(frame)
    assert frame.height == rows and "age" in schema.names
    with pytest.raises(InputFileError, match=r"over the limit of 50\.0 MB"):
        read_frame(path, max_bytes=50_000_000)


def test_privsynth_errors_are_also_builtin_errors() -> None:
    with pytest.raises(ValueError):
        read_frame(CORPUS / "empty.csv")
    assert issubclass(InputFileError, PrivsynthError)
