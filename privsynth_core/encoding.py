"""The domain-respecting transform between tables and the vectors neural generators learn.

A :class:`TableEncoder` is built from a :class:`~privsynth_core.schema.Schema` **only**. Nothing in
it is fitted on data: no min/max, no GMM modes, no category frequencies (DESIGN §4.1, §4.3). Every
constant it uses (bounds, category lists) comes from the schema's domain, which is public or was
learned with DP and charged to the ledger, so encoding a private table and decoding a generator's
output are free of privacy cost.

Layout of one encoded row, column after column in schema order:

============  ===========================================  ===============================
kind          outputs                                      activation
============  ===========================================  ===============================
continuous    1 value scaled from ``bounds`` to [-1, 1]    ``tanh``
integer       (same)                                        ``tanh``
datetime      (same, on microseconds since the epoch)       ``tanh``
categorical   one-hot over the domain's categories          ``softmax``
boolean       one-hot over ``[false, true]``                ``softmax``
============  ===========================================  ===============================

A nullable column gets a null indicator as well: for numbers and datetimes a 2-way one-hot
``[present, missing]`` after the value, for categoricals and booleans one more slot at the end of
the one-hot group. A value outside the domain is already missing after
:func:`~privsynth_core.validation.conform`; in a column that is not nullable it encodes as an
all-zero group (no category), so it carries no information the domain does not allow.

Decoding rounds and clips integers into their bounds, turns microseconds back into datetimes,
picks categories only from the domain (argmax, or a draw from the group's weights when a random
generator is given) and emits nulls only for nullable columns, with the schema's exact dtypes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from .errors import DomainError, SchemaError
from .schema import Column, ColumnKind, Schema
from .validation import datetime_to_micros

SpanRole = Literal["value", "null", "onehot"]
Activation = Literal["tanh", "softmax"]
FloatArray = npt.NDArray[np.float32]

_BOOL_LABELS = ("false", "true")
DEFAULT_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class Span:
    """A contiguous block of an encoded row that belongs to one column.

    Attributes:
        column: the schema column it encodes.
        role: ``"value"`` (a scaled scalar), ``"null"`` (the ``[present, missing]`` indicator of
            a nullable number or datetime) or ``"onehot"`` (categories or booleans).
        start: index of its first output.
        width: number of outputs.
        activation: the output activation a generator must apply to it (``tanh`` or
            ``softmax``).
        labels: for one-hot groups, the value of each slot (categories as strings, or
            ``"false"``/``"true"``), without the null slot.
        null_slot: whether the group's last slot means "missing".
    """

    column: str
    role: SpanRole
    start: int
    width: int
    activation: Activation
    labels: tuple[str, ...] = ()
    null_slot: bool = False

    @property
    def end(self) -> int:
        """Index one past its last output."""
        return self.start + self.width

    @property
    def is_group(self) -> bool:
        """Whether it is a softmax group (one-hot or null indicator)."""
        return self.activation == "softmax"


class TableEncoder:
    """Encode tables of a schema into float32 vectors, and decode vectors back into tables.

    Args:
        schema: the table's schema; every column needs a domain (bounds or categories).

    Raises:
        DomainError: a column has no domain, or an integer column's bounds hold no integer.
    """

    def __init__(self, schema: Schema) -> None:
        missing = schema.missing_domains
        if missing:
            raise DomainError(
                "encoding needs a domain (bounds or categories) for every column; missing for: "
                + ", ".join(missing)
                + ". Declare it in the schema, or learn it with DP"
            )
        self.schema = schema
        self._ranges: dict[str, tuple[float, float]] = {}
        spans: list[Span] = []
        offset = 0
        for col in schema.columns:
            for span in self._column_spans(col, offset):
                spans.append(span)
                offset = span.end
        self.spans: tuple[Span, ...] = tuple(spans)
        self.output_dim = offset

    def _column_spans(self, col: Column, offset: int) -> list[Span]:
        if col.kind is ColumnKind.CATEGORICAL:
            assert col.categories is not None
            labels = tuple(col.categories)
            return [
                Span(
                    col.name,
                    "onehot",
                    offset,
                    len(labels) + col.nullable,
                    "softmax",
                    labels,
                    col.nullable,
                )
            ]
        if col.kind is ColumnKind.BOOLEAN:
            return [
                Span(
                    col.name,
                    "onehot",
                    offset,
                    2 + col.nullable,
                    "softmax",
                    _BOOL_LABELS,
                    col.nullable,
                )
            ]
        assert col.bounds is not None
        lower, upper = col.bounds
        if col.kind is ColumnKind.DATETIME:
            low, high = float(datetime_to_micros(lower)), float(datetime_to_micros(upper))  # type: ignore[arg-type]
        else:
            low, high = float(lower), float(upper)  # type: ignore[arg-type]
            if col.kind is ColumnKind.INTEGER:
                low, high = float(math.ceil(low)), float(math.floor(high))
                if low > high:
                    raise DomainError(
                        f"column {col.name!r}: its bounds {col.bounds} contain no integer; widen "
                        f"them or make the column continuous"
                    )
        self._ranges[col.name] = (low, high)
        spans = [Span(col.name, "value", offset, 1, "tanh")]
        if col.nullable:
            spans.append(Span(col.name, "null", offset + 1, 2, "softmax", ("present", "missing")))
        return spans

    # -- introspection ----------------------------------------------------------------------

    def column_spans(self, name: str) -> list[Span]:
        """The spans of one column, in order.

        Raises:
            SchemaError: no such column.
        """
        found = [s for s in self.spans if s.column == name]
        if not found:
            self.schema.column(name)  # raises the usual "no column" error
        return found

    @property
    def onehot_spans(self) -> list[Span]:
        """The categorical and boolean one-hot groups (for conditional generators)."""
        return [s for s in self.spans if s.role == "onehot"]

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, frame: pl.DataFrame) -> FloatArray:
        """Encode a conformed frame (schema columns and dtypes) into an ``(n, output_dim)`` array.

        Only float32 is allocated at full size; float64 is used one column at a time.

        Raises:
            SchemaError: a schema column is missing from ``frame``.
        """
        missing = [n for n in self.schema.names if n not in frame.columns]
        if missing:
            raise SchemaError(f"cannot encode: column(s) missing from the data: {missing}")
        out = np.zeros((frame.height, self.output_dim), dtype=np.float32)
        for col in self.schema.columns:
            spans = self.column_spans(col.name)
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                self._encode_group(frame[col.name], col, spans[0], out)
            else:
                self._encode_scalar(frame[col.name], col, spans, out)
        return out

    def iter_encoded(
        self, frame: pl.DataFrame, *, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[FloatArray]:
        """Encode ``frame`` in consecutive row batches of at most ``batch_rows`` rows."""
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        for offset in range(0, frame.height, batch_rows):
            yield self.encode(frame.slice(offset, batch_rows))

    def _encode_scalar(
        self, series: pl.Series, col: Column, spans: list[Span], out: FloatArray
    ) -> None:
        if col.kind is ColumnKind.DATETIME:
            numbers = series.cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64)
        else:
            numbers = series.cast(pl.Float64).fill_nan(None)
        missing = numbers.is_null().to_numpy()
        low, high = self._ranges[col.name]
        values = numbers.fill_null((low + high) / 2).to_numpy().astype(np.float64, copy=False)
        if high > low:
            scaled = np.clip((values - low) * (2.0 / (high - low)) - 1.0, -1.0, 1.0)
        else:
            scaled = np.zeros_like(values)
        out[:, spans[0].start] = scaled
        if len(spans) > 1:
            null = spans[1].start
            out[:, null] = ~missing
            out[:, null + 1] = missing

    def _encode_group(self, series: pl.Series, col: Column, span: Span, out: FloatArray) -> None:
        if col.kind is ColumnKind.BOOLEAN:
            codes = series.cast(pl.Boolean).cast(pl.Int32)
        else:
            codes = series.cast(pl.String).replace_strict(
                list(span.labels),
                list(range(len(span.labels))),
                default=None,
                return_dtype=pl.Int32,
            )
        code = codes.fill_null(-1).to_numpy()
        rows = np.flatnonzero(code >= 0)
        out[rows, span.start + code[rows]] = 1.0
        if span.null_slot:
            # Missing values, and values outside the domain (missing after conform), go to the
            # null slot of a nullable column; elsewhere the group stays all zeros.
            out[np.flatnonzero(code < 0), span.end - 1] = 1.0

    # -- decoding ---------------------------------------------------------------------------

    def decode(
        self, array: npt.NDArray[np.floating], *, rng: np.random.Generator | None = None
    ) -> pl.DataFrame:
        """Turn encoded rows (or a generator's activated outputs) back into a table.

        Args:
            array: ``(n, output_dim)`` values: scalars in [-1, 1] (clipped if outside), softmax
                groups as non-negative weights (one-hot or probabilities).
            rng: with a generator, each softmax group's slot is drawn with probability
                proportional to its weights; without, the largest weight wins.

        Returns:
            A frame with the schema's columns, in order, and exactly its dtypes.

        Raises:
            ValueError: ``array`` does not have ``output_dim`` columns.
        """
        if array.ndim != 2 or array.shape[1] != self.output_dim:
            raise ValueError(
                f"expected an array of shape (n, {self.output_dim}), got {tuple(array.shape)}"
            )
        columns = []
        for col in self.schema.columns:
            spans = self.column_spans(col.name)
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                columns.append(self._decode_group(array, col, spans[0], rng))
            else:
                columns.append(self._decode_scalar(array, col, spans, rng))
        return pl.DataFrame(columns)

    def _decode_scalar(
        self,
        array: npt.NDArray[np.floating],
        col: Column,
        spans: list[Span],
        rng: np.random.Generator | None,
    ) -> pl.Series:
        low, high = self._ranges[col.name]
        scaled = np.clip(array[:, spans[0].start].astype(np.float64), -1.0, 1.0)
        values = np.clip(low + (scaled + 1.0) * 0.5 * (high - low), low, high)
        series: pl.Series
        if col.kind is ColumnKind.CONTINUOUS:
            series = pl.Series(col.name, values, dtype=pl.Float64)
        else:
            whole = np.clip(np.rint(values), low, high).astype(np.int64)
            series = pl.Series(col.name, whole, dtype=pl.Int64)
            if col.kind is ColumnKind.DATETIME:
                series = series.cast(pl.Datetime("us"))
        if len(spans) > 1:
            missing = _choose(array[:, spans[1].start : spans[1].end], rng) == 1
            series = series.set(pl.Series(missing), None)
        return series

    def _decode_group(
        self,
        array: npt.NDArray[np.floating],
        col: Column,
        span: Span,
        rng: np.random.Generator | None,
    ) -> pl.Series:
        slot = _choose(array[:, span.start : span.end], rng)
        codes = pl.Series(col.name, slot, dtype=pl.Int64)
        series: pl.Series
        if col.kind is ColumnKind.BOOLEAN:
            series = codes == 1
        else:
            series = codes.replace_strict(
                list(range(len(span.labels))),
                list(span.labels),
                default=None,
                return_dtype=pl.String,
            )
        if span.null_slot:
            series = series.set(pl.Series(slot == span.width - 1), None)
        return series.alias(col.name)


def _choose(
    group: npt.NDArray[np.floating], rng: np.random.Generator | None
) -> npt.NDArray[np.intp]:
    """Index of the chosen slot per row: argmax, or a draw proportional to the weights."""
    width = group.shape[1]
    if rng is None or len(group) == 0:
        return np.asarray(group.argmax(axis=1), dtype=np.intp)
    weights = np.clip(group.astype(np.float64), 0.0, None)
    totals = weights.sum(axis=1, keepdims=True)
    # A row with no weight at all (e.g. an all-zero group) draws uniformly.
    weights = np.where(totals > 0, weights / np.where(totals > 0, totals, 1.0), 1.0 / width)
    cumulative = np.cumsum(weights, axis=1)
    draws = rng.random(len(group))[:, None] * cumulative[:, -1:]
    chosen = (cumulative <= draws).sum(axis=1)
    return np.asarray(np.minimum(chosen, width - 1), dtype=np.intp)


__all__ = ["Span", "TableEncoder"]
