"""The text of a CSV file before polars reads it: damage, encodings, the header and its separator.

Everything here looks at the first bytes of the file and its header line only (the header is
the table's public metadata): no data row decides how the others are read. A file that is not
CSV text (a workbook, a Parquet or gzip file under a .csv name, UTF-16, binary), a damaged or
cut-off gzip stream, or a header polars would misread is refused here with what to do.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from .errors import InputFileError

_SNIFF_BYTES = 1 << 16
#: The longest header read: a wide table's header runs past the first 64 kB (4,000 names of
#: 20 characters are 84 kB), and a header cut there read as fewer columns than the rows hold.
_MAX_HEADER_BYTES = 1 << 24


#: The field separators privsynth recognises in a CSV header, in order of preference on a tie.
SEPARATORS = (",", ";", "\t", "|")
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
#: Leading bytes of files that are not CSV text, and what they are.
_MAGIC = (
    (b"PAR1", "a Parquet file; name it .parquet"),
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook is one); export the sheet as CSV"),
    (b"\x1f\x8b", "gzip-compressed; name it .csv.gz"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook; export the sheet as CSV"),
    (b"%PDF", "a PDF document; export the table as CSV"),
)


def separator_name(separator: str) -> str:
    """A readable name of a separator (``";"`` -> ``"semicolon ';'"``)."""
    name = _SEPARATOR_NAMES.get(separator)
    shown = "\\t" if separator == "\t" else separator
    return f"{name} '{shown}'" if name else f"'{shown}'"


def read_head(path: Path, max_bytes: int | None = None) -> bytes:
    """The first bytes of a file (decompressed for ``.gz``), with clear errors for damage: at
    least 64 kB, and the whole header line however long (up to 16 MB).

    A ``.gz`` is read to its end in bounded chunks; with ``max_bytes`` its *decompressed* size
    is held to that limit too, so a small compressed file that expands to gigabytes (a gzip
    bomb) is refused here, before anything decompresses it into memory.
    """
    import gzip
    import zlib

    compressed = path.name.lower().endswith(".gz")
    try:
        if not compressed:
            with open(path, "rb") as fh:
                head = fh.read(_SNIFF_BYTES)
                while not _header_ends(head) and len(head) < _MAX_HEADER_BYTES:
                    more = fh.read(len(head))  # doubling: a few reads for any header
                    if not more:
                        break
                    head += more
                return _whole_header(path, head)
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise InputFileError(
                    f"{path} is not gzip-compressed although its name ends in .gz; rename it "
                    f"without .gz if it is plain CSV, or compress it with gzip"
                )
        with gzip.open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
            # A .gz must be whole: read to its end, so a cut-off download is refused here
            # rather than read as a shorter table.
            total = len(head)
            while chunk := fh.read(1 << 20):
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise InputFileError(
                        f"{path.name} decompresses to over {max_bytes / 1e6:.1f} MB, the limit "
                        f"on a table's size; use a smaller extract or ask the operator to "
                        f"raise the limit"
                    )
                if len(head) < _MAX_HEADER_BYTES and not _header_ends(head):
                    head += chunk
            return _whole_header(path, head)
    except InputFileError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputFileError(
            f"{path} is a damaged or cut-off gzip file ({exc}); copy or download it again, or "
            f"give the uncompressed CSV"
        ) from None
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}", retryable=True) from None


def _header_ends(head: bytes) -> bool:
    """Whether ``head`` holds the end of the header line (a line break outside quotes)."""
    quotes = 0
    for line in head.splitlines(keepends=True):
        quotes += line.count(b'"')
        if quotes % 2 == 0 and line.endswith((b"\n", b"\r")):
            return True
    return False


def _whole_header(path: Path, head: bytes) -> bytes:
    """``head``, refused when the header line runs past the longest header read."""
    if len(head) >= _MAX_HEADER_BYTES and not _header_ends(head):
        raise InputFileError(
            f"{path}: the header line is longer than {_MAX_HEADER_BYTES / 2**20:g} MB (or a "
            f"quote in it is never closed); give a file whose first line names the columns"
        )
    return head


def text_head(path: Path, head: bytes) -> str:
    """The head of a CSV file as text; refuses files that are not UTF-8 text."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise InputFileError(f"{path} is not CSV text: it looks like {what}")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputFileError(
            f'{path} is UTF-16 text (as Excel\'s "Unicode text" saves it); re-save it as '
            f"UTF-8 CSV (e.g. `iconv -f utf-16 -t utf-8`) or export it as Parquet"
        )
    if b"\x00" in head:
        raise InputFileError(
            f"{path} is not CSV text: it holds binary data (NUL bytes); export the table as "
            f"CSV (UTF-8) or Parquet"
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut in the middle of a multi-byte character at the sniff boundary is not an error.
        if exc.start < len(head) - 4:
            raise InputFileError(
                f"{path} is not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start}); "
                f"re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or export it as Parquet"
            ) from None
        text = head[: exc.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise InputFileError(f"{path} has no header row; the first line must name the columns")
    return text


def header_line(text: str) -> str:
    """The header's text: its first line, and the lines a quoted name runs on to."""
    lines = text.splitlines(keepends=True)
    header = ""
    for line in lines:
        header += line
        if header.count('"') % 2 == 0:
            break
    return header


def sniff_separator(header: str, *, default: str = ",") -> str:
    """The separator of a CSV from its header line alone: the one of :data:`SEPARATORS` that
    occurs most often outside quotes (the first in that list on a tie); ``default`` when none
    occurs (a one-column file).

    Only the header is read, never a data row: the header is the table's public metadata, so no
    record decides how the others are read.
    """
    outside = re.sub(r'"[^"]*"', "", header)
    counts = {sep: outside.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: (counts[sep], -SEPARATORS.index(sep)))
    return best if counts[best] else default


def csv_separator(path: str | Path, separator: str | None = None) -> tuple[str, bool]:
    """The separator to read a CSV file with, and whether it was sniffed from the header.

    ``separator`` (when given) wins; else :func:`sniff_separator` on the header line, with a
    tab as the default for ``.tsv`` files and a comma for the others.

    Raises:
        InputFileError: the file is not readable text (see :func:`read_frame`).
    """
    path = Path(path)
    if separator is not None:
        check_separator(separator)
        return separator, False
    default = "\t" if path.name.lower().endswith(".tsv") else ","
    header = header_line(text_head(path, read_head(path)))
    return sniff_separator(header, default=default), True


def check_separator(separator: str) -> None:
    if len(separator) != 1 or separator in ('"', "\n", "\r"):
        raise InputFileError(
            f"the separator must be one character (e.g. ';' or '\\t'), got {separator!r}"
        )


def unescape_quoted_names(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Column names as the CSV means them: polars keeps the doubled quotes of a quoted name
    (a header cell written as a quoted ``say ""hi""``), the csv module reads them as one."""
    renames = {
        old: new
        for old, new in zip(frame.columns, names, strict=False)
        if old != new and old.replace('""', '"') == new
    }
    return frame.rename(renames) if renames else frame


__all__ = [
    "SEPARATORS",
    "check_separator",
    "csv_separator",
    "header_line",
    "read_head",
    "separator_name",
    "sniff_separator",
    "text_head",
    "unescape_quoted_names",
]
