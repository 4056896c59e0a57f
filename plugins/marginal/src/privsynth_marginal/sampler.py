"""Drawing rows from a fitted model with numpy alone (no jax needed to sample or load).

After fitting, the graphical model is turned into a chain of conditional tables: columns in the
reverse of the junction tree's elimination order, each with ``P(column | parents)`` where the
parents are the columns drawn before it that share a clique with it. Drawing ancestrally from
this chain draws from the model exactly. The tables are saved as a ``.npz`` (no pickle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK_ROWS = 100_000


@dataclass
class SamplingChain:
    """Columns in drawing order, each with its parents and conditional table.

    Attributes:
        order: column indices (schema order) in the order they are drawn.
        parents: for each drawn column, the columns it is conditioned on (drawn earlier).
        tables: for each drawn column, an array of shape ``parent sizes + (column size,)``
            whose last axis sums to 1.
    """

    order: list[int]
    parents: list[list[int]]
    tables: list[np.ndarray]

    def sample(self, n_rows: int, n_columns: int, rng: np.random.Generator) -> np.ndarray:
        """``(n_rows, n_columns)`` matrix of cell indices."""
        codes = np.zeros((n_rows, n_columns), dtype=np.int64)
        for start in range(0, n_rows, _CHUNK_ROWS):
            block = codes[start : start + _CHUNK_ROWS]
            for column, parents, table in zip(self.order, self.parents, self.tables, strict=True):
                size = table.shape[-1]
                flat = table.reshape(-1, size)
                row = (
                    np.ravel_multi_index(tuple(block[:, p] for p in parents), table.shape[:-1])
                    if parents
                    else np.zeros(block.shape[0], dtype=np.int64)
                )
                cdf = np.cumsum(flat, axis=1)
                u = rng.uniform(size=(block.shape[0], 1))
                block[:, column] = np.minimum((u >= cdf[row]).sum(axis=1), size - 1)
        return codes

    def save(self, path: Path, *, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write the chain to ``path`` (an ``.npz``; the structure in its JSON entry), with the
        ``extra`` arrays beside it (names must not start with ``table_`` or be ``structure``)."""
        structure = json.dumps({"order": self.order, "parents": self.parents})
        arrays: dict[str, Any] = dict(extra or {})
        arrays.update({f"table_{i}": t for i, t in enumerate(self.tables)})
        arrays["structure"] = np.array(structure)
        with path.open("wb") as handle:
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> SamplingChain:
        """Read a chain written by :meth:`save` (never unpickles)."""
        return cls.load_with(path)[0]

    @classmethod
    def load_with(cls, path: Path) -> tuple[SamplingChain, dict[str, np.ndarray]]:
        """Read a chain written by :meth:`save`, and the other arrays stored with it."""
        with np.load(path, allow_pickle=False) as data:
            structure = json.loads(str(data["structure"]))
            tables = [np.asarray(data[f"table_{i}"]) for i in range(len(structure["order"]))]
            others = {
                name: np.asarray(data[name])
                for name in data.files
                if name != "structure" and not name.startswith("table_")
            }
        chain = cls(order=structure["order"], parents=structure["parents"], tables=tables)
        return chain, others


def conditional(joint: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``P(last axis | other axes)`` from a joint table of (estimated) counts.

    Rows whose parent configuration has no mass get ``fallback`` (the column's own marginal).
    """
    joint = np.clip(np.asarray(joint, dtype=np.float64), 0.0, None)
    totals = joint.sum(axis=-1, keepdims=True)
    out = np.where(totals > 0, joint / np.where(totals > 0, totals, 1.0), fallback)
    normalised: np.ndarray = out / out.sum(axis=-1, keepdims=True)
    return normalised
