"""The DP domain mechanisms behave as mechanisms should, and are charged to the ledger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from privsynth_core import BudgetExceededError, DomainError, PrivacyLedger
from privsynth_core.datasets import adult_schema
from privsynth_core.domain import (
    category_threshold,
    dp_bounds,
    dp_categories,
    dp_quantile,
    learn_domain,
    prepare_table,
)
from privsynth_core.table import fingerprint_frame


def test_rare_category_is_dropped_most_of_the_time_frequent_kept() -> None:
    rng = np.random.default_rng(0)
    values = pl.Series("c", ["common"] * 400 + ["medium"] * 60 + ["rare"] * 2)
    epsilon, delta = 1.0, 1e-6
    trials = [dp_categories(values, epsilon=epsilon, delta=delta, rng=rng) for _ in range(400)]
    rare_rate = np.mean(["rare" in t for t in trials])
    # Theory: P(2 + Lap(1) > 1 + ln(1/(2 delta))) = 0.5 exp(-(ln(5e5) - 1)) ~ 2.7e-6.
    assert rare_rate == 0.0
    assert all("common" in t and "medium" in t for t in trials)
    assert category_threshold(epsilon=1.0, delta=1e-6) == pytest.approx(1 + np.log(5e5))


def test_category_release_rate_matches_the_laplace_tail() -> None:
    """A category with count exactly at the threshold is released about half the time."""
    rng = np.random.default_rng(1)
    epsilon, delta = 1.0, 0.05
    at_threshold = round(category_threshold(epsilon=epsilon, delta=delta))
    values = pl.Series("c", ["x"] * at_threshold)
    shift = at_threshold - category_threshold(epsilon=epsilon, delta=delta)
    expected = 1 - 0.5 * np.exp(-shift) if shift >= 0 else 0.5 * np.exp(shift)
    rate = np.mean([bool(dp_categories(values, epsilon=epsilon, delta=delta, rng=rng))
                    for _ in range(4000)])
    assert rate == pytest.approx(expected, abs=0.03)


def test_bounds_are_clamped_quantiles_not_the_data_min_max() -> None:
    rng = np.random.default_rng(2)
    data = np.concatenate([rng.normal(50, 10, 5000), [10_000.0, -10_000.0]])
    draws = np.array([dp_bounds(data, epsilon=1.0, rng=rng) for _ in range(50)])
    assert (draws[:, 1] < 500).all(), "a lone outlier must not set the upper bound"
    assert (draws[:, 0] > -500).all()
    assert np.median(draws[:, 0]) == pytest.approx(np.quantile(data, 0.01), abs=5)
    assert np.median(draws[:, 1]) == pytest.approx(np.quantile(data, 0.99), abs=5)


def test_dp_quantile_concentrates_on_the_true_quantile() -> None:
    rng = np.random.default_rng(3)
    data = rng.uniform(0, 100, 2000)
    draws = [dp_quantile(data, 0.5, lower=0, upper=100, epsilon=1.0, rng=rng) for _ in range(200)]
    assert np.mean(np.abs(np.array(draws) - np.median(data)) < 3) > 0.9


def _adult_file(tmp_path: Path, adult_raw: pl.DataFrame, n: int = 3000) -> Path:
    path = tmp_path / "adult.csv"
    adult_raw.sample(n, seed=5).write_csv(path)
    return path


def test_learn_domain_charges_each_mechanism_and_marks_dp(
    tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger
) -> None:
    path = _adult_file(tmp_path, adult_raw)
    frame = pl.read_csv(path, infer_schema=False)
    fingerprint = fingerprint_frame(frame)
    ledger.set_budget(fingerprint, epsilon=10.0, delta=1e-5)
    schema = learn_domain(frame, adult_schema(), epsilon=7.5, delta=1e-6, ledger=ledger,
                          fingerprint=fingerprint, run_id="run-1", seed=0)
    assert schema.domain == "dp" and all(c.nullable for c in schema.columns)
    entries = ledger.entries(fingerprint)
    assert len(entries) == 15
    assert sum(e.epsilon for e in entries) == pytest.approx(7.5)
    assert sum(e.delta for e in entries) == pytest.approx(1e-6)
    assert {e.run_id for e in entries} == {"run-1"}
    age = schema.column("age")
    assert age.bounds is not None and 17 <= age.bounds[0] < 30 and 60 < age.bounds[1] <= 100
    assert "Holand-Netherlands" not in (schema.column("native-country").categories or ())
    assert "United-States" in (schema.column("native-country").categories or ())


def test_learn_domain_over_budget_charges_nothing(
    tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger
) -> None:
    frame = pl.read_csv(_adult_file(tmp_path, adult_raw), infer_schema=False)
    fingerprint = fingerprint_frame(frame)
    ledger.set_budget(fingerprint, epsilon=0.5, delta=1e-5)
    with pytest.raises(BudgetExceededError, match="nothing was charged"):
        learn_domain(frame, adult_schema(), epsilon=1.0, delta=1e-6, ledger=ledger,
                     fingerprint=fingerprint)
    assert ledger.entries(fingerprint) == []


def test_prepare_table_needs_confirmation_for_an_inferred_domain(
    tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger
) -> None:
    path = _adult_file(tmp_path, adult_raw, 500)
    with pytest.raises(DomainError, match="confirm it as public"):
        prepare_table(path, ledger=ledger)
    table = prepare_table(path, confirm_public=True, ledger=ledger)
    assert table.schema.domain == "public" and table.n_rows == 500
    with pytest.raises(DomainError, match="--domain-epsilon"):
        prepare_table(path, domain="dp", ledger=ledger)
