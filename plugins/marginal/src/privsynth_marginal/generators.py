"""The ``mst`` and ``aim`` generators: noisy marginals, a graphical model, rows drawn from it."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from privsynth_core import ConfigError, FitSummary, Generator, GeneratorParams, Progress

from .discretise import Discretiser
from .sampler import SamplingChain
from .zcdp import AIM_MEASUREMENT_SHARE, ZCDPBudget, epsilon_for, rho_for

if TYPE_CHECKING:
    from privsynth_core import PrivacyBudget, Table
    from privsynth_core.generator import ProgressCallback

    from .estimate import Measurement, PGMEstimator

CHAIN_FILE = "model.npz"
ACCOUNTING = "zcdp (Canonne, Kamath & Steinke 2020 conversion)"


class MarginalParams(GeneratorParams):
    """Parameters shared by MST and AIM."""

    bins: int = Field(32, ge=3, le=1024, description=(
        "cells per number or datetime column, its two bounds included (integers with fewer "
        "values get one cell each); more cells: finer numbers but more noise per cell"))
    iters: int = Field(1000, ge=10, le=100_000, description=(
        "mirror-descent iterations of the final model estimate"))


class MSTParams(MarginalParams):
    """Parameters of MST."""


class AIMParams(MarginalParams):
    """Parameters of AIM. The model-size cap bounds fit time and memory: AIM's published default
    (80 MB) can take hours; the default here fits a 15-column table in about a minute."""

    selections: int | None = Field(None, ge=1, le=10_000, description=(
        "marginals selected and measured after the 1-way ones (default: one per column, two "
        "per column when the budget and the table's size make the noise small; see the README)"))
    rounds: int = Field(6, ge=1, le=1000, description=(
        "model re-estimates between selections; each compiles a new jax program (seconds)"))
    round_iters: int = Field(200, ge=10, le=100_000, description=(
        "mirror-descent iterations of each intermediate estimate"))
    max_model_mb: float = Field(8.0, gt=0, le=4096, description=(
        "cap on the graphical model's size (MB of float64 junction-tree tables)"))
    max_cells: int = Field(10_000, ge=4, le=10_000_000, description=(
        "pairs of columns with more cells than this are never measured"))


class _MarginalGenerator(Generator):
    """Shared fit, sample, save and load of the marginal-based generators."""

    is_dp: ClassVar[bool] = True
    #: What the progress reports count (MST: its stages; AIM: its rounds).
    progress_unit: ClassVar[str] = "stage"

    def __init__(self, params: GeneratorParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._chain: SamplingChain | None = None
        self._discretiser: Discretiser | None = None

    def _check_params(self, table: Table, *, budget: PrivacyBudget, accountant: str) -> None:
        if budget.delta <= 0:
            raise ConfigError(
                f"{self.generator_id} is analysed in zero-concentrated DP, which gives "
                "(epsilon, delta)-DP only for delta > 0; set a delta such as 1e-5 (well below "
                "1 / rows), or use the 'independent' generator for pure epsilon-DP")
        if not table.schema.columns:
            raise ConfigError(f"{self.generator_id} needs a table with at least one column")

    def _run(self, codes: np.ndarray, sizes: list[int], budget: ZCDPBudget,
             estimator: PGMEstimator,
             progress: Callable[[int, int, str], None], planning_rows: int) -> list[Measurement]:
        raise NotImplementedError

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        accountant: str,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        assert budget is not None and isinstance(self.params, MarginalParams)
        from .estimate import PGMEstimator

        discretiser = Discretiser(table.schema, self.params.bins)
        codes = discretiser.encode(table.frame)
        zcdp = ZCDPBudget(rho_for(budget.epsilon, budget.delta))
        # DP noise and selections are OpenDP's, from the OS's entropy: no seed reaches them.
        estimator = PGMEstimator(discretiser.names, discretiser.sizes)

        def report(done: int, total: int, stage: str) -> None:
            if progress is not None:
                progress(Progress(epoch=done, epochs=total, step=len(zcdp.log),
                                  epsilon=epsilon_for(zcdp.spent, budget.delta),
                                  unit=self.progress_unit, stage=stage))

        measurements = self._run(codes, discretiser.sizes, zcdp, estimator, report,
                                 table.planning_rows)
        self._chain = estimator.chain()
        self._discretiser = discretiser
        names = discretiser.names
        return FitSummary(
            private=True,
            epsilon=epsilon_for(zcdp.spent, budget.delta),
            delta=budget.delta,
            accountant_id=ACCOUNTING,
            steps=len(measurements),
            epochs=1.0,
            extra={
                "rho_spent": zcdp.spent,
                "rho_budget": zcdp.total,
                "measured_marginals": [[names[i] for i in m.clique] for m in measurements],
                "noise_sigmas": sorted({round(m.sigma, 6) for m in measurements}),
                "cells_per_column": dict(zip(names, discretiser.sizes, strict=True)),
                "accountant_note": "the accountant option is not used: MST/AIM compose "
                                   "Gaussian and exponential mechanisms in zCDP",
            },
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        assert self._chain is not None and self._discretiser is not None
        rng = np.random.default_rng(seed)
        codes = self._chain.sample(n_rows, len(self._discretiser.columns), rng)
        return self._discretiser.decode(codes, rng)

    def _save_state(self, directory: Path) -> None:
        assert self._chain is not None
        self._chain.save(directory / CHAIN_FILE)

    def _load_state(self, directory: Path) -> None:
        assert self.schema is not None and isinstance(self.params, MarginalParams)
        self._chain = SamplingChain.load(directory / CHAIN_FILE)
        self._discretiser = Discretiser(self.schema, self.params.bins)


def default_selections(n_columns: int, rho: float, n_rows: int) -> int:
    """One selection per column; two per column when, even so, every measurement's noise would
    stay under 0.1% of the rows (e.g. Adult's 10,000 rows from epsilon 3 on).

    ``n_rows`` is the released row count n̂, never the table's exact size (which is private).
    """
    doubled = 2 * n_columns
    sigma = math.sqrt((n_columns + doubled) / (2 * AIM_MEASUREMENT_SHARE * rho))
    return doubled if sigma <= n_rows / 1000 else n_columns


class MSTGenerator(_MarginalGenerator):
    """MST (McKenna, Miklau & Sheldon 2021): 1-way marginals plus a spanning tree of pairs."""

    generator_id = "mst"
    description = (
        "MST: noisy 1-way marginals and a maximum spanning tree of 2-way marginals, combined "
        "by a graphical model (private-pgm); zCDP. Fast, strong at small epsilon")
    Params = MSTParams

    def _run(self, codes: np.ndarray, sizes: list[int], budget: ZCDPBudget,
             estimator: PGMEstimator,
             progress: Callable[[int, int, str], None], planning_rows: int) -> list[Measurement]:
        from .algorithms import mst

        assert isinstance(self.params, MSTParams)
        return mst(codes, sizes, budget, estimator, iters=self.params.iters,
                   progress=progress)


class AIMGenerator(_MarginalGenerator):
    """AIM (McKenna et al. 2022): adaptively measures the marginals the model gets most wrong."""

    generator_id = "aim"
    progress_unit = "round"
    description = (
        "AIM: adaptively selected noisy marginals combined by a graphical model "
        "(private-pgm); zCDP. Best fidelity at small epsilon; model size capped")
    Params = AIMParams

    def _run(self, codes: np.ndarray, sizes: list[int], budget: ZCDPBudget,
             estimator: PGMEstimator,
             progress: Callable[[int, int, str], None], planning_rows: int) -> list[Measurement]:
        from .algorithms import aim

        p = self.params
        assert isinstance(p, AIMParams)
        return aim(codes, sizes, budget, estimator,
                   selections=p.selections or default_selections(len(sizes), budget.total,
                                                                 planning_rows),
                   rounds=p.rounds,
                   max_model_mb=p.max_model_mb, max_cells=p.max_cells, iters=p.iters,
                   round_iters=p.round_iters, progress=progress)
