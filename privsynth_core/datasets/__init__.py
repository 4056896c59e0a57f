"""Datasets shipped with privsynth, readable with no network.

The UCI Adult table (CC BY 4.0, see ``ATTRIBUTION.md`` beside this file) is the default dataset
of ``privsynth demo`` and of the test suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from ..schema import Schema
    from ..table import Table

DATASETS_DIR = Path(__file__).parent
ADULT_PATH = DATASETS_DIR / "adult.csv.gz"
ADULT_SCHEMA_PATH = DATASETS_DIR / "adult.schema.yaml"
ADULT_ATTRIBUTION = (
    "UCI Adult: Becker, B. & Kohavi, R. (1996), UCI Machine Learning Repository, "
    "https://doi.org/10.24432/C5XW20, CC BY 4.0"
)


def adult_schema() -> Schema:
    """The declared-public schema of the Adult table (bounds not taken from the rows)."""
    from ..schema import Schema

    return Schema.load(ADULT_SCHEMA_PATH)


def adult_frame(n_rows: int | None = None, *, seed: int = 0) -> pl.DataFrame:
    """The raw Adult rows (as text, like any CSV); a seeded random sample if ``n_rows`` is set."""
    from ..table import read_frame

    frame = read_frame(ADULT_PATH)
    if n_rows is not None and n_rows < frame.height:
        frame = frame.sample(n=n_rows, seed=seed, shuffle=True)
    return frame


def load_adult(n_rows: int | None = None, *, seed: int = 0) -> Table:
    """The Adult table with its public schema, optionally a seeded sample of ``n_rows`` rows."""
    from ..table import Table

    return Table.from_frame(adult_frame(n_rows, seed=seed), adult_schema(), name="adult")
