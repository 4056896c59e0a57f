"""The ``mst`` and ``aim`` generators: noisy marginals, a graphical model, rows drawn from it.

Both fit from partitions (issue #19): the rows are read only as exact counts, which a
partitioned table (:class:`privsynth_core.partitions.PartitionedTable`) sums over its parts on
its Dask cluster in two passes (:meth:`~privsynth_core.table.Table.reduce`): the numeric
columns' fine counts, from which the cells are learned (a charged mechanism), then every
marginal the algorithm can ask for on those cells (:func:`.counts.marginals_to_count`). The
noise is added afterwards, here, once, by the same mechanism code as for one file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import polars as pl
from pydantic import Field

from privsynth_core import ConfigError, FitSummary, Generator, GeneratorParams, Progress
from privsynth_core.generator import Suitability, TableProfile

from .discretise import Discretiser
from .sampler import SamplingChain
from .zcdp import AIM_MEASUREMENT_SHARE, ZCDPBudget, epsilon_for, rho_for

if TYPE_CHECKING:
    from privsynth_core import PrivacyBudget, Table
    from privsynth_core.generator import ProgressCallback

    from .counts import Clique, ExactMarginals
    from .estimate import Measurement, PGMEstimator

CHAIN_FILE = "model.npz"
ACCOUNTING = "zcdp (Canonne, Kamath & Steinke 2020 conversion)"
#: Past this many columns AIM's fit is no longer a matter of minutes on one core (census KDD,
#: 43 columns x 100k rows: 14 minutes and 2 GB on a loaded 2-core machine, issue #18; its model
#: estimates and selections grow with the width): MST serves wider tables better.
AIM_MAX_COLUMNS = 40


class MarginalParams(GeneratorParams):
    """Parameters shared by MST and AIM."""

    bins: int = Field(
        32,
        ge=3,
        le=1024,
        description=(
            "cells per number or datetime column (integers with fewer values get one cell each); "
            "more cells: finer numbers but more noise per cell"
        ),
    )
    cells_share: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description=(
            "share of the budget (rho) spent on fine noisy 1-way histograms of the numbers and "
            "datetimes, from which their cells, point masses and within-cell shapes are learned; "
            "0: equal-width cells over the public bounds, decoded uniformly"
        ),
    )
    iters: int = Field(
        1000,
        ge=10,
        le=100_000,
        description=("mirror-descent iterations of the final model estimate"),
    )
    target: str | None = Field(
        None,
        description=(
            "the column a model will predict (public: the user's choice); its pairs weigh more "
            "in the selections (AIM's workload, MST's tree). Empty: every pair weighs the same"
        ),
    )
    target_weight: float = Field(
        3.0,
        ge=1.0,
        le=100.0,
        description=("how much more a pair with the target weighs in the selections"),
    )


class MSTParams(MarginalParams):
    """Parameters of MST."""


class AIMParams(MarginalParams):
    """Parameters of AIM. The model-size cap bounds fit time and memory: AIM's published default
    (80 MB) can take hours; the default here fits a 15-column table in about a minute."""

    selections: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description=(
            "marginals selected and measured after the 1-way ones (default: one per column, two "
            "per column when the budget and the table's size make the noise small; see the README)"
        ),
    )
    rounds: int = Field(
        6,
        ge=1,
        le=1000,
        description=(
            "model re-estimates between selections; each compiles a new jax program (seconds)"
        ),
    )
    round_iters: int = Field(
        200,
        ge=10,
        le=100_000,
        description=("mirror-descent iterations of each intermediate estimate"),
    )
    max_model_mb: float = Field(
        8.0,
        gt=0,
        le=4096,
        description=("cap on the graphical model's size (MB of float64 junction-tree tables)"),
    )
    max_cells: int = Field(
        10_000,
        ge=4,
        le=10_000_000,
        description=("pairs of columns with more cells than this are never measured"),
    )


#: The Params model of a marginal-based generator.
MP = TypeVar("MP", bound=MarginalParams)


class _MarginalGenerator(Generator[MP]):
    """Shared fit, sample, save and load of the marginal-based generators."""

    is_dp: ClassVar[bool] = True
    # _fit reads the rows only through Table.reduce: a partitioned table's counts are summed
    # on its cluster, and the noise is added here, as for one file.
    fits_from_partitions: ClassVar[bool] = True
    #: What the progress reports count (MST: its stages; AIM: its rounds).
    progress_unit: ClassVar[str] = "stage"

    def __init__(self, params: MP | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._chain: SamplingChain | None = None
        self._discretiser: Discretiser | None = None

    def _check_params(self, table: Table, *, budget: PrivacyBudget) -> None:
        if budget.delta <= 0:
            raise ConfigError(
                f"{self.generator_id} is analysed in zero-concentrated DP, which gives "
                "(epsilon, delta)-DP only for delta > 0; set a delta such as 1e-5 (well below "
                "1 / rows), or use the 'independent' generator for pure epsilon-DP"
            )
        if not table.schema.columns:
            raise ConfigError(f"{self.generator_id} needs a table with at least one column")
        target = self.params.target
        if target is not None and target not in table.schema.names:
            raise ConfigError(
                f"target {target!r} is not a column of the schema; columns: "
                f"{', '.join(table.schema.names)}"
            )

    def _progress_total(self, columns: int) -> int:
        """How many units the progress reports of a fit over ``columns`` columns count to."""
        raise NotImplementedError

    def _run(
        self,
        marginals: ExactMarginals,
        sizes: list[int],
        budget: ZCDPBudget,
        estimator: PGMEstimator,
        progress: Callable[[int, int, str], None],
        planning_rows: int,
        target: int | None,
    ) -> list[Measurement]:
        raise NotImplementedError

    def _cliques(self, sizes: list[int]) -> list[Clique]:
        """Every marginal the algorithm can ask for (public: sizes and parameters), counted in
        one pass over a partitioned table."""
        raise NotImplementedError

    def _marginals(self, table: Table, discretiser: Discretiser) -> ExactMarginals:
        """The exact marginals of the table's cell codes: counted on request from the codes of
        a frame in this process, or all of them in one pass over a partitioned table's parts."""
        from .counts import CodesMarginals, count_marginals, summed_marginals

        sizes = discretiser.sizes
        if not table.partitioned:
            return CodesMarginals(discretiser.encode(table.frame), sizes)
        cliques = self._cliques(sizes)
        counts = table.reduce(partial(count_marginals, discretiser=discretiser, cliques=cliques))
        return summed_marginals(sizes, counts, cliques)

    def _bounds(self, sizes: list[int], target: int | None) -> dict[str, Any]:
        """What bounds the fit's time and memory (public: the schema's cells and the
        parameters), for the fit summary."""
        raise NotImplementedError

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        assert budget is not None
        from privsynth_core.privacy.cells import count_fine, point_masses

        from .cells import learn_cells_from_counts, plan_cells
        from .estimate import PGMEstimator

        p = self.params
        zcdp = ZCDPBudget(rho_for(budget.epsilon, budget.delta))

        def report(done: int, total: int, stage: str) -> None:
            if progress is not None:
                progress(
                    Progress(
                        epoch=done,
                        epochs=total,
                        step=len(zcdp.log),
                        epsilon=epsilon_for(zcdp.spent, budget.delta),
                        unit=self.progress_unit,
                        stage=stage,
                    )
                )

        # The numeric cells first (a share of rho, charged here), then the marginals on them.
        plan = plan_cells(table.schema, p.bins, p.cells_share * zcdp.total)
        if plan.columns:
            # before the algorithm's first unit, counted in its units: nothing done yet
            report(
                0,
                self._progress_total(len(table.schema.columns)),
                f"learning the cells of {len(plan.columns)} numeric column"
                f"{'s' if len(plan.columns) != 1 else ''}",
            )
        # The exact fine counts of the learnable columns: the frame's, or summed over the
        # partitions (one pass); the same mechanism then noises them.
        fine = (
            table.reduce(partial(count_fine, grids=plan.grids, schema=table.schema))
            if plan.columns
            else {}
        )
        learned = learn_cells_from_counts(plan, table.schema, fine, p.bins, zcdp)
        discretiser = Discretiser(table.schema, p.bins, learned)
        marginals = self._marginals(table, discretiser)
        # DP noise and selections are OpenDP's, from the OS's entropy: no seed reaches them.
        estimator = PGMEstimator(discretiser.names, discretiser.sizes)
        names = discretiser.names
        target = names.index(p.target) if p.target is not None else None
        measurements = self._run(
            marginals, discretiser.sizes, zcdp, estimator, report, table.planning_rows, target
        )
        self._chain = estimator.chain()
        self._discretiser = discretiser
        measured = [[names[i] for i in m.clique] for m in measurements]
        return FitSummary(
            private=True,
            # The whole planned rho, even when AIM ran out of candidates early: whether it does
            # depends on its (data-dependent) selections, so a smaller stated figure would be
            # neither a valid guarantee nor free of the data (privacy filters bound the total,
            # not the realised sum).
            epsilon=epsilon_for(zcdp.total, budget.delta),
            delta=budget.delta,
            accountant_id=ACCOUNTING,
            steps=len(measurements),
            epochs=1.0,
            extra={
                "rho_spent": zcdp.spent,
                "rho_budget": zcdp.total,
                "measured_marginals": measured,
                "noise_sigmas": sorted({round(m.sigma, 6) for m in measurements}),
                "cells_per_column": dict(zip(names, discretiser.sizes, strict=True)),
                "numeric_cells": plan.summary(),
                "point_masses": point_masses(learned, table.schema),
                "budget_use": budget_use(zcdp, budget.delta),
                "coverage": coverage(measured, names, p.target),
                "bounds": self._bounds(discretiser.sizes, target),
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
        assert self._chain is not None and self._discretiser is not None
        names = self._discretiser.names
        # the learned cells are mechanism outputs: stored with the model, keyed by position
        extra = {
            name: array
            for column, cells in self._discretiser.learned.items()
            for name, array in cells.arrays(f"cells_{names.index(column)}_").items()
        }
        self._chain.save(directory / CHAIN_FILE, extra=extra)

    def _load_state(self, directory: Path) -> None:
        assert self.schema is not None
        from privsynth_core.privacy.cells import LearnedCells

        self._chain, arrays = SamplingChain.load_with(directory / CHAIN_FILE)
        learned = {}
        for i, name in enumerate(self.schema.names):
            if f"cells_{i}_first" in arrays:
                learned[name] = LearnedCells.from_arrays(arrays, f"cells_{i}_")
        self._discretiser = Discretiser(self.schema, self.params.bins, learned)


def budget_use(zcdp: ZCDPBudget, delta: float) -> dict[str, Any]:
    """What the fit's rho went on, by kind of mechanism, and what went unused and why (the fit
    is charged its whole planned rho either way)."""
    parts = zcdp.by_kind
    unused = max(zcdp.total - zcdp.spent, 0.0)
    out: dict[str, Any] = {
        "rho": dict(parts),
        "share": {k: round(v / zcdp.total, 4) for k, v in parts.items()} if zcdp.total else {},
        "unspent_rho": unused,
        "unspent_epsilon": max(
            epsilon_for(zcdp.total, delta) - epsilon_for(zcdp.spent, delta), 0.0
        ),
    }
    if unused > 1e-6 * zcdp.total:
        out["unspent_why"] = (
            "no marginal was left to select within max_cells and max_model_mb; the rest of "
            "the budget went unused but is charged all the same (when a fit stops depends on "
            "its selections, so only the planned total is a guarantee)"
        )
    return out


def coverage(measured: list[list[str]], names: list[str], target: str | None) -> dict[str, Any]:
    """What the measured marginals covered: columns never in a measured pair or triple, and
    (with a target) how many measured marginals include it and which columns they join it to."""
    joined = {name for clique in measured if len(clique) > 1 for name in clique}
    out: dict[str, Any] = {"columns_in_no_measured_pair": [n for n in names if n not in joined]}
    if target is not None:
        with_target = [c for c in measured if len(c) > 1 and target in c]
        out["target"] = target
        out["marginals_with_target"] = len(with_target)
        out["columns_measured_with_target"] = sorted({n for c in with_target for n in c} - {target})
    return out


def default_selections(n_columns: int, rho: float, n_rows: int) -> int:
    """One selection per column; two per column when, even so, every measurement's noise would
    stay under 0.1% of the rows (e.g. Adult's 10,000 rows from epsilon 3 on).

    ``n_rows`` is the released row count n̂, never the table's exact size (which is private).
    """
    doubled = 2 * n_columns
    sigma = math.sqrt((n_columns + doubled) / (2 * AIM_MEASUREMENT_SHARE * rho))
    return doubled if sigma <= n_rows / 1000 else n_columns


class MSTGenerator(_MarginalGenerator[MSTParams]):
    """MST (McKenna, Miklau & Sheldon 2021): 1-way marginals plus a spanning tree of pairs."""

    generator_id = "mst"
    description = (
        "MST: noisy 1-way marginals and a maximum spanning tree of 2-way marginals, combined "
        "by a graphical model (private-pgm); zCDP. Fast, strong at small epsilon"
    )
    Params = MSTParams

    @classmethod
    def suitability(cls, profile: TableProfile) -> Suitability:
        """Faithful at small epsilon and fast at any width: the choice for wide tables."""
        if profile.columns > AIM_MAX_COLUMNS:
            return Suitability(
                0.9,
                f"MST: a spanning tree of noisy pairs fits {profile.columns}"
                f" columns in minutes, where AIM would take much longer",
            )
        return Suitability(
            0.85, "MST: noisy 1-way marginals and a spanning tree of pairs; fast, close behind AIM"
        )

    def _progress_total(self, columns: int) -> int:
        return 4  # MST's stages (see .algorithms.mst)

    def _bounds(self, sizes: list[int], target: int | None) -> dict[str, Any]:
        d = len(sizes)
        pairs = d * (d - 1) // 2
        largest = max((a * b for i, a in enumerate(sizes) for b in sizes[i + 1 :]), default=0)
        return {
            "candidate_pairs": pairs,
            "model_estimates": 1,
            "statement": f"all {pairs} pairs are candidates; the model is {d} 1-way marginals "
            f"and a tree of {max(d - 1, 0)} pairs (each at most {largest} cells), "
            "estimated once",
        }

    def _cliques(self, sizes: list[int]) -> list[Clique]:
        from .counts import marginals_to_count

        return marginals_to_count(sizes)  # the 1-way marginals and every pair

    def _run(
        self,
        marginals: ExactMarginals,
        sizes: list[int],
        budget: ZCDPBudget,
        estimator: PGMEstimator,
        progress: Callable[[int, int, str], None],
        planning_rows: int,
        target: int | None,
    ) -> list[Measurement]:
        from .algorithms import mst

        return mst(
            marginals,
            sizes,
            budget,
            estimator,
            iters=self.params.iters,
            progress=progress,
            target=target,
            target_weight=self.params.target_weight,
        )


class AIMGenerator(_MarginalGenerator[AIMParams]):
    """AIM (McKenna et al. 2022): adaptively measures the marginals the model gets most wrong."""

    generator_id = "aim"
    progress_unit = "round"
    description = (
        "AIM: adaptively selected noisy marginals combined by a graphical model "
        "(private-pgm); zCDP. Best fidelity at small epsilon; model size capped"
    )
    Params = AIMParams

    @classmethod
    def suitability(cls, profile: TableProfile) -> Suitability:
        """The most faithful at small epsilon, up to :data:`AIM_MAX_COLUMNS` columns."""
        if profile.columns > AIM_MAX_COLUMNS:
            return Suitability(
                0.5,
                f"AIM: {profile.columns} columns is past the "
                f"{AIM_MAX_COLUMNS} it fits in minutes on one core",
            )
        return Suitability(
            0.95,
            "AIM: adaptively selected noisy marginals, the most faithful "
            "at small epsilon (Adult, epsilon 1: TSTR AUC 0.87)",
        )

    def _progress_total(self, columns: int) -> int:
        # AIM's rounds; the selections it finds worth making may end it in fewer
        p = self.params
        return max(1, min(p.rounds, p.selections) if p.selections else p.rounds)

    def _bounds(self, sizes: list[int], target: int | None) -> dict[str, Any]:
        from .algorithms import _aim_candidates

        p = self.params
        d = len(sizes)
        pairs = d * (d - 1) // 2
        candidates = len(_aim_candidates(sizes, p.max_cells, target=target))
        return {
            "candidate_pairs": candidates,
            "all_pairs": pairs,
            "max_cells": p.max_cells,
            "max_model_mb": p.max_model_mb,
            "model_estimates_at_most": p.rounds,
            "statement": f"candidates capped at {candidates} of {pairs} pairs (those of at "
            f"most max_cells={p.max_cells} cells); max model size {p.max_model_mb:g} MB "
            f"({p.max_model_mb * 2**20 / 8:,.0f} float64 cells); at most {p.rounds} model "
            "estimates (one jax compilation each; a round that measures no new marginal "
            "does not re-estimate)",
        }

    def _cliques(self, sizes: list[int]) -> list[Clique]:
        from .counts import marginals_to_count

        p = self.params
        # the 1-way marginals and AIM's candidates (the pairs of at most max_cells cells)
        return marginals_to_count(sizes, max_cells=p.max_cells)

    def _run(
        self,
        marginals: ExactMarginals,
        sizes: list[int],
        budget: ZCDPBudget,
        estimator: PGMEstimator,
        progress: Callable[[int, int, str], None],
        planning_rows: int,
        target: int | None,
    ) -> list[Measurement]:
        from .algorithms import aim

        p = self.params
        return aim(
            marginals,
            sizes,
            budget,
            estimator,
            selections=p.selections
            or default_selections(len(sizes), budget.remaining, planning_rows),
            rounds=p.rounds,
            max_model_mb=p.max_model_mb,
            max_cells=p.max_cells,
            iters=p.iters,
            round_iters=p.round_iters,
            progress=progress,
            target=target,
            target_weight=p.target_weight,
        )
