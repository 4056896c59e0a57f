"""One budget per data source: extracts of one population (a nightly one with one more row)
share and compose it; nothing gets a budget of its own by being a new file."""

from __future__ import annotations

from pathlib import Path

import pytest

from privsynth_core import BudgetExceededError, BudgetNotSetError, PrivacyLedger
from privsynth_core.datasets import ADULT_SCHEMA_PATH, adult_frame
from privsynth_core.privacy.ledger import budget_key
from privsynth_core.runs.config import run_config_from_dict
from privsynth_core.runs.rundir import run_pipeline
from privsynth_core.table import fingerprint_frame, read_frame

# Block the heavy report sections (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("light_reports")


def _extract(tmp_path: Path, name: str, rows: int) -> Path:
    path = tmp_path / f"{name}.csv"
    adult_frame(rows, seed=9).write_csv(path)  # the same population, one row more each night
    return path


def _run(data: Path, out: Path, *, source: str | None, epsilon: float = 1.0) -> object:
    return run_pipeline(
        run_config_from_dict(
            {
                "input": str(data),
                "source": source,
                "schema_path": str(ADULT_SCHEMA_PATH),
                "generator": "independent",
                "epsilon": epsilon,
                "metrics": [],
                "output_dir": str(out),
            }
        )
    )


def test_nightly_extracts_under_one_source_compose_in_one_budget(tmp_path: Path) -> None:
    monday, tuesday = _extract(tmp_path, "monday", 600), _extract(tmp_path, "tuesday", 601)
    ledger = PrivacyLedger()
    ledger.set_budget(budget_key("claims", ""), epsilon=2.5, delta=1e-4, label="claims")
    _run(monday, tmp_path / "mon", source="claims")
    _run(tuesday, tmp_path / "tue", source="claims")
    status = ledger.status(budget_key("claims", ""))
    # Two trainings and one row count per extract, all in the source's one budget.
    assert status.spent.epsilon == pytest.approx(2 * (1.0 + 0.025))
    extracts = {e.extract for e in ledger.entries(budget_key("claims", ""))}
    assert extracts == {fingerprint_frame(read_frame(p)) for p in (monday, tuesday)}
    # The extract's own content has no budget: it is not a fresh start.
    with pytest.raises(BudgetNotSetError):
        ledger.status(fingerprint_frame(read_frame(tuesday)))
    # A third night does not fit what is left: refused, nothing charged.
    wednesday = _extract(tmp_path, "wednesday", 602)
    with pytest.raises(BudgetExceededError):
        _run(wednesday, tmp_path / "wed", source="claims")
    assert ledger.status(budget_key("claims", "")).spent.epsilon == pytest.approx(2.05)


def test_without_a_source_an_extract_has_no_budget_until_a_custodian_sets_one(
    tmp_path: Path,
) -> None:
    data = _extract(tmp_path, "extract", 600)
    with pytest.raises(BudgetNotSetError, match="privsynth budget set"):
        _run(data, tmp_path / "run", source=None)
    assert not (tmp_path / "run").exists()


def test_a_first_run_in_a_fresh_home_creates_its_ledger_before_any_other_state(
    tmp_path: Path,
    privsynth_home: Path,
) -> None:
    data = _extract(tmp_path, "extract", 600)
    # The run directory inside the home: its work area must not make the home look used.
    with pytest.raises(BudgetNotSetError):
        _run(data, privsynth_home / "runs" / "first", source=None)
    assert (privsynth_home / "ledger.sqlite").is_file()
    assert PrivacyLedger().verify() == []
