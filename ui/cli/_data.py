"""Reading the custodian's data files from the command line: one ``--separator`` option and one
note saying which separator a CSV was read with, for every command that reads a table."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def add_separator_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--separator`` (CSV field separator; default: found in the header line)."""
    parser.add_argument(
        "--separator",
        metavar="CHAR",
        type=_separator,
        help="CSV field separator, e.g. ';' or 'tab' (default: found in the "
        "header line among , ; tab |)",
    )


def _separator(text: str) -> str:
    return "\t" if text.lower() in ("tab", "\\t", "t") else text


def read_data(path: str, separator: str | None = None) -> pl.DataFrame:
    """Read a CSV or Parquet file; say on stderr which separator a CSV was read with when it is
    not a comma (or was given).

    Raises:
        InputFileError: the file cannot be read (see :func:`privsynth_core.table.read_frame`).
    """
    from privsynth_core.table import read_table_file, separator_name

    frame, used = read_table_file(path, separator=separator)
    expected = "\t" if path.lower().endswith(".tsv") else ","
    if used is not None and used != expected and separator is None:
        print(
            f"note: {path}: fields separated by {separator_name(used)} (found in its header "
            f"line; give --separator to choose another)",
            file=sys.stderr,
        )
    return frame
