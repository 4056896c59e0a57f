"""MST and AIM fit a partitioned table from its counts (issue #19): the numeric cells' fine
counts, then every marginal the algorithm can ask for, each summed over the partitions in one
pass; the noise is added once, centrally, by the same mechanism code as a one-file fit, which is
charged the same.

The noise is OpenDP's and cannot be seeded: to compare the mechanisms' inputs the budget is so
large that the noise is zero (with overwhelming probability), and the second fit replays the
first fit's selections (at any budget, two close qualities leave the choice random).
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from privsynth_marginal import algorithms, cells
from privsynth_marginal.mechanisms import exponential_mechanism, gaussian_measure

from privsynth_core import ConfigError, PrivacyBudget, PrivacyLedger, Table
from privsynth_core.partitions import PartitionedTable
from privsynth_core.privacy.count import COUNT_MECHANISM
from privsynth_core.registry import generators
from privsynth_core.schema import Column, ColumnKind, Schema
from privsynth_core.validation import polars_dtype

pytestmark = pytest.mark.usefixtures("with_marginal_plugin")

SCHEMA = Schema(
    domain="public",
    columns=(
        Column(name="x", kind=ColumnKind.CONTINUOUS, nullable=True, bounds=(0.0, 100.0)),
        Column(name="k", kind=ColumnKind.INTEGER, bounds=(0, 500)),
        Column(name="c", kind=ColumnKind.CATEGORICAL, nullable=True, categories=("a", "b", "c")),
        Column(name="b", kind=ColumnKind.BOOLEAN),
    ),
)


def _frame(rows: int = 3000) -> pl.DataFrame:
    rng = np.random.default_rng(11)
    k = rng.integers(0, 501, rows)
    x = np.round(np.clip(k / 5 + rng.normal(0, 5, rows), 0, 100), 3)
    return pl.DataFrame(
        {
            "x": [None if i % 7 == 0 else float(v) for i, v in enumerate(x)],
            "k": k,
            "c": [None if i % 5 == 0 else "abc"[(i + int(k[i] > 250)) % 3] for i in range(rows)],
            "b": rng.random(rows) < 0.3,
        }
    )


def _parts(frame: pl.DataFrame, directory: Path, parts: int = 3) -> Path:
    directory.mkdir(parents=True)
    size = -(-frame.height // parts)
    for i in range(parts):
        frame.slice(i * size, size).write_parquet(directory / f"part-{i}.parquet")
    return directory


class _Recorder:
    """The real mechanisms, recording their inputs (and replaying selections when told)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trees: list[np.ndarray] = []
        self.measured: list[tuple[np.ndarray, float]] = []
        self.scored: list[np.ndarray] = []
        self.chosen: list[int] = []
        self.replay: list[int] | None = None
        real_tree = cells.measure_tree_of
        monkeypatch.setattr(cells, "measure_tree_of", self._tree(real_tree))
        monkeypatch.setattr(algorithms, "gaussian_measure", self._measure)
        monkeypatch.setattr(algorithms, "exponential_mechanism", self._choose)

    def _tree(self, real: Any) -> Any:
        def tree(exact: np.ndarray, **kwargs: Any) -> Any:
            self.trees.append(exact.copy())
            return real(exact, **kwargs)

        return tree

    def _measure(self, counts: np.ndarray, sigma: float) -> np.ndarray:
        self.measured.append((counts.copy(), sigma))
        return gaussian_measure(counts, sigma)

    def _choose(self, qualities: np.ndarray, epsilon0: float, sensitivity: float) -> int:
        self.scored.append(qualities.copy())
        pick = exponential_mechanism(qualities, epsilon0, sensitivity)
        if self.replay is not None:
            pick = self.replay[len(self.chosen)]
        self.chosen.append(pick)
        return pick


@pytest.mark.parametrize(
    ("generator_id", "params"),
    [
        ("mst", {"iters": 20}),
        ("aim", {"iters": 20, "round_iters": 10, "rounds": 1, "selections": 2, "max_cells": 40}),
    ],
)
def test_a_partitioned_fit_measures_the_one_file_counts_and_is_charged_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generator_id: str, params: dict[str, Any]
) -> None:
    frame = _frame()
    recorder = _Recorder(monkeypatch)
    ledger = PrivacyLedger()
    ledger.set_budget("source:s", epsilon=1e5, delta=1e-3)
    budget = PrivacyBudget(1e4, 1e-5)
    single = Table.from_frame(frame, SCHEMA, source="s")
    cls = generators().get(generator_id)
    assert cls.fits_from_partitions
    one_file = cls(**params)
    summary_here = one_file.fit(single, budget=budget, ledger=ledger, run_id="a")
    seen_here = (recorder.trees, recorder.measured, recorder.scored)
    recorder.trees, recorder.measured, recorder.scored = [], [], []
    recorder.replay, recorder.chosen = recorder.chosen, []
    with ThreadPoolExecutor(2) as pool:
        table = PartitionedTable.load(
            _parts(frame, tmp_path / "t"), SCHEMA, source="s", executor=pool
        )
        from_parts = cls(**params)
        summary_there = from_parts.fit(table, budget=budget, ledger=ledger, run_id="b")
    # the same mechanisms on the same exact counts: cells' trees, measurements, selections
    trees, measured, scored = seen_here
    assert len(trees) == len(recorder.trees) == 2  # x and k have learned cells
    for a, b in zip(trees, recorder.trees, strict=True):
        assert np.array_equal(a, b)
    assert len(measured) == len(recorder.measured) > 4
    for (a, sigma_a), (b, sigma_b) in zip(measured, recorder.measured, strict=True):
        assert np.array_equal(a, b) and sigma_a == sigma_b
    assert len(scored) == len(recorder.scored) > 0
    for a, b in zip(scored, recorder.scored, strict=True):
        assert np.array_equal(a, b)
    # charged the same: one row count and one fit each, the fits at the same epsilon and delta
    entries = ledger.entries("source:s")
    fits = [(e.mechanism, e.epsilon, e.delta, e.status) for e in entries if e.run_id == "a"]
    assert [f[0] for f in fits] == [COUNT_MECHANISM, f"{generator_id} training"]
    assert fits == [(e.mechanism, e.epsilon, e.delta, e.status) for e in entries if e.run_id == "b"]
    assert summary_here.epsilon == summary_there.epsilon
    assert summary_here.extra["budget_use"] == summary_there.extra["budget_use"]
    assert summary_here.extra["measured_marginals"] == summary_there.extra["measured_marginals"]
    pickle.dumps(from_parts._discretiser)  # what the pass sent to the workers, with its cells
    sample = from_parts.sample(200, seed=1)
    assert sample.columns == SCHEMA.names and sample.height == 200
    assert [sample[c.name].dtype for c in SCHEMA.columns] == [
        polars_dtype(c.kind) for c in SCHEMA.columns
    ]


def _tasks_run(address: str) -> int:
    from distributed import Client

    with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        return sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())


def test_mst_fits_from_partitions_on_a_dask_cluster_and_others_are_still_refused(
    tmp_path: Path,
) -> None:
    from distributed import LocalCluster

    from privsynth_core.service import create_generator, fit_generator
    from privsynth_flows.runtime import partition_executor

    parts = _parts(_frame(1200), tmp_path / "t")
    ledger = PrivacyLedger()
    ledger.set_budget("source:s", epsilon=5.0, delta=1e-5)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,  # type: ignore[no-untyped-call]
            dashboard_address=None,
        ) as cluster,
        partition_executor(cluster.scheduler_address) as executor,
    ):
        table = PartitionedTable.load(parts, SCHEMA, source="s", executor=executor)
        with pytest.raises(
            ConfigError,
            match="generators that fit from partitions: aim, dpctgan, dpwgan, independent, mst",
        ):
            fit_generator(
                table,
                create_generator("ctgan", {}),
                epsilon=None,
                delta=None,
                ledger=ledger,
                run_id="r",
            )
        assert ledger.entries("source:s") == []  # refused before anything was charged
        generator = generators().get("mst")(iters=20)
        before = _tasks_run(cluster.scheduler_address)
        generator.fit(table, budget=PrivacyBudget(1.0, 1e-6), ledger=ledger, run_id="m")
        # two passes over the 3 partitions, there: the fine counts, then the marginals
        assert _tasks_run(cluster.scheduler_address) - before >= 2 * 3
    assert [e.mechanism for e in ledger.entries("source:s")] == [COUNT_MECHANISM, "mst training"]
    sample = generator.sample(100, seed=2)
    assert sample.columns == SCHEMA.names and sample.height == 100
