"""The sweep flow: the grid's budget is checked first; cells run on a local Dask cluster."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from flowhelpers import CHEAP_METRICS, read_manifest, read_release, set_budget, training_entries

from privsynth_core import PrivacyLedger
from privsynth_core.errors import BudgetExceededError
from privsynth_core.runs.config import SweepConfig


def _sweep(adult_files: dict[str, Path], output: Path, **grid: object) -> SweepConfig:
    base = {
        "input": str(adult_files["train"]),
        "schema_path": str(adult_files["schema"]),
        "metrics": CHEAP_METRICS,
        "holdout": str(adult_files["holdout"]),
        "target": "income",
        "rows": 500,
    }
    return SweepConfig.model_validate({"base": base, "grid": grid, "output_dir": output})


def test_sweep_refuses_grid_over_budget_before_any_cell(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from privsynth_flows.sweep import sweep

    fingerprint = set_budget(adult_files["train"], epsilon=1.0)
    # 2 epsilons x 2 seeds: 2 x (0.3 + 0.4) = 1.4 > 1.0, though each cell alone would fit.
    config = _sweep(
        adult_files,
        tmp_path / "sweep",
        generators=["independent"],
        epsilons=[0.3, 0.4],
        seeds=[0, 1],
    )
    with pytest.raises(BudgetExceededError, match="nothing was run"):
        sweep(config)
    assert PrivacyLedger().entries(fingerprint) == []
    assert not (tmp_path / "sweep").exists()


@pytest.mark.extended  # the sweep's: test_flow_cli's sweep; CI runs it
def test_sweep_on_existing_local_dask_cluster(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A LocalCluster of 2 worker processes, reached by address as a remote cluster would be."""
    from distributed import Client, LocalCluster

    from privsynth_flows.runtime import make_task_runner
    from privsynth_flows.sweep import sweep

    fingerprint = set_budget(adult_files["train"], epsilon=2.0)
    config = _sweep(
        adult_files,
        tmp_path / "sweep",
        generators=["independent"],
        epsilons=[0.2, 0.5],
        seeds=[0, 1],
    )
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,  # type: ignore[no-untyped-call]
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # type: ignore[no-untyped-call]
        runner = make_task_runner("dask", address=cluster.scheduler_address)
        result = sweep.with_options(task_runner=runner)(config)
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)

    # The 4 cells (submitted tasks) ran in the workers' processes; the flow's inline tasks
    # (load, validate, domain, summary) ran here.
    assert sum(executed.values()) == 4, executed
    assert len(result.runs) == 4 and all(r is not None for r in result.runs)
    entries = training_entries(fingerprint)
    assert sorted(e.epsilon for e in entries) == pytest.approx([0.2, 0.2, 0.5, 0.5])
    with open(result.summary, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["epsilon"], r["seed"]) for r in rows} == {
        ("0.2", "0"),
        ("0.2", "1"),
        ("0.5", "0"),
        ("0.5", "1"),
    }
    assert all(r["status"] == "ok" and r["marginal_2way_tvd"] for r in rows)
    assert result.plot is not None and result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for run in result.runs:
        assert run is not None
        training = next(
            p for p in read_release(run.run_dir)["privacy"]["parts"] if p["step"] == "training"
        )
        assert training["epsilon"] == pytest.approx(read_manifest(run.run_dir)["config"]["epsilon"])
