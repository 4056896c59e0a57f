"""A deliberately leaky generator for the audit's positive control: NEVER use it on real data.

``leaky_copy`` claims epsilon-DP (it reserves and reports its target like an honest generator)
but its "synthetic" rows are the training rows themselves, shuffled: every canary that was in
the training table appears verbatim in the output. The audit must catch it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from privsynth_core import FitSummary, Generator, GeneratorParams, hookimpl

if TYPE_CHECKING:
    from privsynth_core import PrivacyBudget, Table
    from privsynth_core.generator import ProgressCallback


class LeakyCopyGenerator(Generator):
    """Claims its target epsilon, releases the training rows (a privacy bug on purpose)."""

    generator_id = "leaky_copy"
    description = "TEST ONLY: copies training rows while claiming DP (audit positive control)"
    is_dp = True
    Params = GeneratorParams

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        assert budget is not None
        self._rows = table.frame.clone()
        return FitSummary(
            private=True,
            epsilon=budget.epsilon,
            delta=0.0,
            accountant_id="none (lies)",
            steps=1,
            epochs=1.0,
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        shuffled = self._rows.sample(fraction=1.0, shuffle=True, seed=seed)
        if n_rows <= shuffled.height:
            return shuffled.head(n_rows)
        extra = self._rows.sample(n_rows - shuffled.height, with_replacement=True, seed=seed)
        return pl.concat([shuffled, extra])

    def _save_state(self, directory: Path) -> None:
        self._rows.write_parquet(directory / "rows.parquet")

    def _load_state(self, directory: Path) -> None:
        self._rows = pl.read_parquet(directory / "rows.parquet")


@hookimpl
def register_generators(register: Callable[[type[Generator]], None]) -> None:
    """Contribute the leaky test generator."""
    register(LeakyCopyGenerator)
