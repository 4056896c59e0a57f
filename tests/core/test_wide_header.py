"""A wide table's header is read whole, however far past the first 64 kB it runs (issue #20)."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from privsynth_core.errors import InputFileError
from privsynth_core.table import read_frame


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_header_past_64_kb_is_read_as_all_its_columns(tmp_path: Path, suffix: str) -> None:
    # 3,000 names of 25 characters: a 78 kB header. The first 64 kB held 2,500 of them, and
    # the rows were refused as 'ragged' against that cut header.
    frame = pl.DataFrame({f"household_income_q{i:07d}": [i, i + 1] for i in range(3000)})
    path = tmp_path / f"wide{suffix}"
    text = frame.write_csv().encode()
    assert text.index(b"\n") > 1 << 16
    path.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
    read = read_frame(path)
    assert read.columns == frame.columns
    assert read.height == 2


def test_a_header_with_a_quote_never_closed_is_refused_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import privsynth_core.csv_text as csv_text

    # A smaller cap than the real 16 MB, so the test need not write 16 MB.
    monkeypatch.setattr(csv_text, "_MAX_HEADER_BYTES", 1 << 17)
    path = tmp_path / "open-quote.csv"
    path.write_text('a,"b,c\n' + "1,2,3\n" * 40_000)
    with pytest.raises(InputFileError, match="header line is longer than"):
        read_frame(path)
