"""The DP domain mechanisms behave as mechanisms should, and are charged to the ledger."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import binomtest

from privsynth_core import BudgetExceededError, ColumnKind, DomainError, PrivacyLedger
from privsynth_core.datasets import adult_schema
from privsynth_core.inference import infer_schema, skeleton
from privsynth_core.privacy.domain import (
    QUANTILE_GRID,
    category_threshold,
    dp_bounds,
    dp_categories,
    dp_quantile,
    learn_domain,
    prepare_table,
)
from privsynth_core.table import fingerprint_frame


def _discrete_laplace_tail(m: int, epsilon: float) -> float:
    """P[Z >= m] for the discrete Laplace of scale 1 / epsilon (P[Z = k] ~ exp(-epsilon |k|)):
    the geometric tail exp(-epsilon m) / (1 + exp(-epsilon)) for m >= 1, by symmetry below."""
    p = math.exp(-epsilon)
    return p**m / (1 + p) if m >= 1 else 1 - p ** (1 - m) / (1 + p)


@pytest.mark.parametrize(
    ("epsilon", "delta"), [(1.0, 1e-6), (0.1, 1e-6), (0.5, 0.05), (2.0, 1e-9), (0.01, 1e-5)]
)
def test_category_threshold_is_the_smallest_that_keeps_a_singleton_under_delta(
    epsilon: float, delta: float
) -> None:
    threshold = category_threshold(epsilon=epsilon, delta=delta)
    assert threshold == int(threshold) >= 0
    # a value held by one person (count 1) gets through when 1 + Z > t, i.e. Z >= t
    assert _discrete_laplace_tail(int(threshold), epsilon) <= delta
    assert _discrete_laplace_tail(int(threshold) - 1, epsilon) > delta  # and no lower t does
    assert category_threshold(epsilon=1.0, delta=1e-6) == 14  # ceil(13.50...)


def test_rare_category_is_dropped_frequent_kept() -> None:
    values = pl.Series("c", ["common"] * 400 + ["medium"] * 60 + ["rare"] * 2)
    epsilon, delta = 1.0, 1e-6  # threshold 14
    trials = [dp_categories(values, epsilon=epsilon, delta=delta) for _ in range(400)]
    # "rare" (count 2) gets through with P[Z >= 13] = 1.7e-6 per trial: three or more of 400
    # happen with probability under 5e-11. "medium" is dropped only when Z <= -46 (under 1e-20).
    assert sum("rare" in t for t in trials) <= 2
    assert all("common" in t and "medium" in t for t in trials)


@pytest.mark.parametrize("offset", [-13, -1, 0, 1, 3])
def test_category_release_rate_matches_the_discrete_laplace_tail(offset: int) -> None:
    """A category with count c near the threshold t is released with P[Z >= t - c + 1]."""
    epsilon, delta, trials = 1.0, 0.05, 2000
    threshold = int(category_threshold(epsilon=epsilon, delta=delta))  # 3
    count = max(threshold + offset, 1)
    values = pl.Series("c", ["x"] * count)
    released = sum(bool(dp_categories(values, epsilon=epsilon, delta=delta)) for _ in range(trials))
    expected = _discrete_laplace_tail(threshold - count + 1, epsilon)
    if count == 1:
        assert expected <= delta  # the singleton: its release rate is the mechanism's delta
    # exact binomial test; a correct mechanism fails it with probability under 1e-7
    assert binomtest(released, trials, expected).pvalue > 1e-7, (released, expected)


def test_bounds_are_clamped_quantiles_not_the_data_min_max() -> None:
    data = np.concatenate([np.random.default_rng(2).normal(50, 10, 5000), [10_000.0, -10_000.0]])
    draws = np.array([dp_bounds(data, epsilon=1.0) for _ in range(50)])
    # A lone outlier does not set a bound: its one-record bin clears the coarse threshold
    # (ln(50 * 168) / 0.5) with P[Z >= 18] < 1e-4 at scale 2, and even then the 1% / 99%
    # quantiles stay inside. What can push a bound out is an *empty* far bin clearing that
    # threshold (under 2% of draws, see dp_coarse_range) and making the grid too coarse; more
    # than 10 of 50 such draws has probability under 1e-15.
    assert np.mean(draws[:, 1] < 500) >= 0.8, "a lone outlier must not set the upper bound"
    assert np.mean(draws[:, 0] > -500) >= 0.8
    # Each bound is a DP quantile at epsilon 0.25 (noise scale 7.9 in ranks); near the 1% and
    # 99% quantiles of N(50, 10) a unit is about 13 ranks, so a draw is 5 units off with
    # probability about 3e-4, plus the 2% above: the median of 50 draws is off only if 25 of
    # them are (under 1e-30).
    assert np.median(draws[:, 0]) == pytest.approx(np.quantile(data, 0.01), abs=5)
    assert np.median(draws[:, 1]) == pytest.approx(np.quantile(data, 0.99), abs=5)


def test_dp_quantile_is_a_grid_point_near_the_true_quantile() -> None:
    data = np.random.default_rng(3).uniform(0, 100, 2000)
    draws = np.array([dp_quantile(data, 0.5, lower=0, upper=100, epsilon=1.0) for _ in range(100)])
    grid = np.linspace(0, 100, QUANTILE_GRID)
    assert np.isin(draws, grid).all()  # candidates only: no floating-point draw
    # 3 units is 60 ranks here; at epsilon 1 (OpenDP's noise scale 1 for the median) any
    # candidate 60 ranks off wins with probability under 2049 exp(-60) < 1e-22 per draw.
    assert np.mean(np.abs(draws - np.median(data)) < 3) > 0.9
    assert dp_quantile(data, 0.5, lower=5.0, upper=5.0, epsilon=1.0) == 5.0
    with pytest.raises(DomainError, match="quantile must be in"):
        dp_quantile(data, 1.5, lower=0, upper=100, epsilon=1.0)


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
    ledger.set_budget(fingerprint, epsilon=40.0, delta=1e-5)
    schema = learn_domain(
        frame,
        adult_schema(),
        epsilon=30.0,
        delta=1e-6,
        ledger=ledger,
        fingerprint=fingerprint,
        run_id="run-1",
    )
    assert schema.domain == "dp" and all(c.nullable for c in schema.columns)
    entries = ledger.entries(fingerprint)
    assert len(entries) == 15
    assert sum(e.epsilon for e in entries) == pytest.approx(30.0)
    assert sum(e.delta for e in entries) == pytest.approx(1e-6)
    assert {e.run_id for e in entries} == {"run-1"}
    # No seed: only what holds on (almost) every draw. Age's bounds cover its bulk (ages 30 to
    # 60 are about 60% of the rows; missing them takes a quantile hundreds of ranks off, under
    # 1e-20 at epsilon 0.5 per quantile). A lower bound under 17 or an upper one over 100 are
    # both possible (about 1% of draws: an empty magnitude bin clears the coarse threshold).
    age = schema.column("age")
    assert age.bounds is not None and age.bounds[0] <= 30 and age.bounds[1] >= 60
    # A country held by at most one row of 3,000 gets through with probability delta / 9; the
    # United States (about 90% of rows) is dropped only if Z <= -2,600.
    assert "Holand-Netherlands" not in (schema.column("native-country").categories or ())
    assert "United-States" in (schema.column("native-country").categories or ())
    data_values = set(frame["workclass"].drop_nulls().to_list())
    assert set(schema.column("workclass").categories or ()) <= data_values


def test_learn_domain_over_budget_charges_nothing(
    tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger
) -> None:
    frame = pl.read_csv(_adult_file(tmp_path, adult_raw), infer_schema=False)
    fingerprint = fingerprint_frame(frame)
    ledger.set_budget(fingerprint, epsilon=0.5, delta=1e-5)
    with pytest.raises(BudgetExceededError, match="nothing was charged"):
        learn_domain(
            frame, adult_schema(), epsilon=1.0, delta=1e-6, ledger=ledger, fingerprint=fingerprint
        )
    assert ledger.entries(fingerprint) == []


def test_prepare_table_needs_a_schema_a_person_reviewed(
    tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger
) -> None:
    path = _adult_file(tmp_path, adult_raw, 500)
    with pytest.raises(DomainError, match="needs a schema file a person has reviewed"):
        prepare_table(path, schema_path=None, ledger=ledger)
    draft = infer_schema(pl.read_csv(path, infer_schema=False))
    draft.save(tmp_path / "draft.yaml")
    for domain in ("public", "dp"):  # a draft nobody reviewed is refused in both modes
        with pytest.raises(DomainError, match="has not been reviewed"):
            prepare_table(
                path,
                schema_path=tmp_path / "draft.yaml",
                domain=domain,  # type: ignore[arg-type]
                domain_epsilon=1.0,
                ledger=ledger,
            )
    adult_schema().save(tmp_path / "declared.yaml")
    table = prepare_table(path, schema_path=tmp_path / "declared.yaml", ledger=ledger)
    assert table.schema.domain == "public" and table.n_rows == 500
    with pytest.raises(DomainError, match="--domain-epsilon"):
        prepare_table(path, schema_path=tmp_path / "declared.yaml", domain="dp", ledger=ledger)


def test_a_dp_domain_takes_kinds_from_the_confirmed_skeleton_never_from_the_rows(
    tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger
) -> None:
    frame = adult_raw.sample(3000, seed=4).select("age", "gender", "hours-per-week")
    # One added row would make an inferred "age" text and "hours-per-week" fractional.
    odd = pl.DataFrame({"age": ["unknown"], "gender": ["Male"], "hours-per-week": ["40.5"]})
    path = tmp_path / "data.csv"
    pl.concat([frame, odd]).write_csv(path)
    skeleton(infer_schema(frame)).confirm_public().save(tmp_path / "skeleton.yaml")
    ledger.set_budget(
        fingerprint_frame(pl.read_csv(path, infer_schema=False)), epsilon=5, delta=1e-4
    )
    table = prepare_table(
        path, schema_path=tmp_path / "skeleton.yaml", domain="dp", domain_epsilon=3.0, ledger=ledger
    )
    kinds = {c.name: c.kind for c in table.schema.columns}
    assert kinds == {
        "age": ColumnKind.INTEGER,
        "gender": ColumnKind.CATEGORICAL,
        "hours-per-week": ColumnKind.INTEGER,
    }
    assert table.schema.domain == "dp" and all(c.has_domain for c in table.schema.columns)
    # The odd row is read row by row (its values become missing): it refuses nothing.
    assert [p.step for p in table.spent] == ["domain"] * 3
    assert sum(p.epsilon for p in table.spent) == pytest.approx(3.0)


def test_a_far_datetime_bound_is_clamped_to_what_a_datetime_holds() -> None:
    # The coarse range's bins reach 2^62 seconds; a DP bound out there is post-processed to
    # the representable range instead of failing the release.
    from privsynth_core.privacy.domain import _datetime_at

    assert _datetime_at(2.0**62).year == 9999 and _datetime_at(-(2.0**62)).year == 1
    assert _datetime_at(86_400).isoformat() == "1970-01-02T00:00:00"
