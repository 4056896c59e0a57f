"""The audit's statistics against hand-computed values, and its canaries and scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binom

from privsynth_core.datasets import adult_schema
from privsynth_core.encoding import TableEncoder
from privsynth_core.privacy.audit import (
    AuditConfig,
    TrialResult,
    make_canaries,
    nearest_distances,
    summarise,
)
from privsynth_core.privacy.audit_bounds import (
    clopper_pearson,
    one_run_ceiling,
    one_run_epsilon_lb,
    one_run_p_value,
    rates_epsilon_lb,
    roc_curve,
    select_guesses,
)


@pytest.mark.parametrize("r", [5, 10, 20, 100, 1000])
def test_ceiling_is_the_closed_form_of_all_guesses_right(r: int) -> None:
    # All r guesses right: p^r = 0.05  =>  p = 0.05^(1/r), eps = log(p / (1 - p)).
    p = 0.05 ** (1 / r)
    expected = math.log(p / (1 - p))
    assert one_run_ceiling(guesses=r, canaries=r) == pytest.approx(expected, abs=1e-8)
    assert one_run_epsilon_lb(guesses=r, correct=r, canaries=r) == pytest.approx(expected, abs=1e-8)


def test_too_few_guesses_certify_nothing() -> None:
    # Even 4 right out of 4 happen with probability 1/16 > 0.05 at epsilon 0.
    assert one_run_ceiling(guesses=4, canaries=10) == 0.0


def test_hand_computed_ceiling_for_20_guesses() -> None:
    # 0.05^(1/20) = 0.86089...; log(0.86089 / 0.13911) = 1.8227...
    assert one_run_ceiling(guesses=20, canaries=100) == pytest.approx(1.8227, abs=1e-3)


def test_bound_is_where_the_binomial_tail_hits_the_level() -> None:
    r, v = 200, 150
    eps = one_run_epsilon_lb(guesses=r, correct=v, canaries=1000)
    p = math.exp(eps) / (1 + math.exp(eps))
    assert binom.sf(v - 1, r, p) == pytest.approx(0.05, abs=1e-6)
    # Below the bound the observation is rejected, above it is not.
    assert one_run_p_value(eps - 0.01, guesses=r, correct=v, canaries=1000) < 0.05
    assert one_run_p_value(eps + 0.01, guesses=r, correct=v, canaries=1000) > 0.05


def test_coin_flip_attacker_certifies_nothing() -> None:
    rng = np.random.default_rng(0)
    bounds = []
    for _ in range(200):
        r = 100
        v = int(rng.binomial(r, 0.5))  # each guess right with probability 1/2
        bounds.append(one_run_epsilon_lb(guesses=r, correct=v, canaries=500))
    # A true 0-DP mechanism is refuted (bound > 0) at most 5% of the time, and barely.
    assert np.mean(np.array(bounds) > 0) <= 0.1
    assert np.median(bounds) == 0.0
    assert max(bounds) < 0.35


def test_delta_makes_the_bound_smaller_and_can_void_it() -> None:
    pure = one_run_epsilon_lb(guesses=50, correct=50, canaries=100)
    approx = one_run_epsilon_lb(guesses=50, correct=50, canaries=100, delta=1e-4)
    assert 0 < approx < pure
    # 2 m delta >= 0.05: nothing can be certified.
    assert one_run_epsilon_lb(guesses=50, correct=50, canaries=100, delta=2.5e-4) == 0.0


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        one_run_epsilon_lb(guesses=10, correct=11, canaries=20)
    with pytest.raises(ValueError):
        one_run_epsilon_lb(guesses=30, correct=1, canaries=20)


@pytest.mark.parametrize(("k", "n"), [(0, 20), (3, 20), (10, 20), (20, 20), (7, 300)])
def test_clopper_pearson_matches_the_beta_quantiles(k: int, n: int) -> None:
    lo, hi = clopper_pearson(k, n, confidence=0.95)
    assert lo == (0.0 if k == 0 else pytest.approx(beta.ppf(0.025, k, n - k + 1)))
    assert hi == (1.0 if k == n else pytest.approx(beta.ppf(0.975, k + 1, n - k)))
    _, one_sided = clopper_pearson(k, n, confidence=0.95, two_sided=False)
    assert one_sided == (1.0 if k == n else pytest.approx(beta.ppf(0.95, k + 1, n - k)))


def test_rates_bound_by_hand() -> None:
    fpr_ub = beta.ppf(0.975, 1, 100)  # 0 false positives of 100
    fnr_ub = beta.ppf(0.975, 11, 90)  # 10 false negatives of 100
    expected = math.log((1 - fnr_ub) / fpr_ub)
    got = rates_epsilon_lb(false_positives=0, negatives=100, false_negatives=10, positives=100)
    assert got == pytest.approx(expected)
    assert (
        rates_epsilon_lb(false_positives=50, negatives=100, false_negatives=50, positives=100)
        == 0.0
    )


def test_roc_curve_with_ties_and_auc() -> None:
    roc = roc_curve([3, 2, 2, 1], [True, True, False, False])
    assert roc.fpr == [0.0, 0.0, 0.5, 1.0]
    assert roc.tpr == [0.0, 0.5, 1.0, 1.0]
    assert roc.auc == pytest.approx(0.875)  # P(member > non-member) + 0.5 P(tie)
    assert roc_curve([1, 2], [True, False]).auc == 0.0


def test_select_guesses_takes_the_extremes() -> None:
    guesses = select_guesses(
        [0.1, 0.9, 0.5, 0.2, 0.8], k_member=2, k_non_member=1, rng=np.random.default_rng(0)
    )
    assert guesses.tolist() == [-1, 1, 0, 0, 1]


def test_canaries_are_in_domain_and_crafted_ones_sit_on_the_bounds() -> None:
    schema = adult_schema()
    frame, kinds = make_canaries(schema, 40, crafted_fraction=0.5, rng=np.random.default_rng(1))
    assert frame.columns == schema.names and kinds == ["crafted"] * 20 + ["random"] * 20
    age = schema.column("age")
    assert age.bounds is not None
    assert set(frame["age"][:20].to_list()) <= {age.bounds[0], age.bounds[1]}
    assert frame["age"][20:].is_between(*age.bounds).all()
    for column in schema.columns:
        if column.categories is not None:
            assert set(frame[column.name].to_list()) <= set(column.categories)
    assert frame.null_count().sum_horizontal().item() == 0
    assert frame.unique().height == 40


def test_nearest_distances_match_brute_force() -> None:
    rng = np.random.default_rng(2)
    points, reference = (
        rng.normal(size=(300, 7)).astype(np.float32),
        rng.normal(size=(50, 7)).astype(np.float32),
    )
    brute = np.sqrt(((points[:, None, :].astype(float) - reference[None]) ** 2).sum(-1)).min(1)
    assert np.allclose(nearest_distances(points, reference, block=64), brute, atol=1e-5)


def test_perfect_scores_give_the_ceiling() -> None:
    config = AuditConfig(
        input="unused.csv",
        generator="independent",
        epsilon=1.0,
        canaries=50,
        runs=2,
        guess_fraction=0.4,
    )
    rng = np.random.default_rng(3)
    trials = []
    for i in range(2):
        members = rng.random(50) < 0.5
        trials.append(
            TrialResult(
                i, members.tolist(), members.astype(float).tolist(), ["random"] * 50, 1.0, 0.0, 0.0
            )
        )
    result = summarise(config, trials)
    assert result.guesses == 40 and result.correct == 40  # 20 + 20 of 100 pooled canaries
    assert result.epsilon_lower_bound == pytest.approx(result.ceiling)
    assert result.ceiling == pytest.approx(one_run_ceiling(guesses=40, canaries=100))
    assert result.refuted and result.auc == 1.0


def test_encoder_roundtrip_of_canaries_is_exact() -> None:
    schema = adult_schema()
    frame, _ = make_canaries(schema, 10, crafted_fraction=1.0, rng=np.random.default_rng(4))
    encoder = TableEncoder(schema)
    assert encoder.decode(encoder.encode(frame)).equals(frame)


def test_guess_count_never_exceeds_the_canaries() -> None:
    config = AuditConfig(
        input="unused.csv", generator="independent", epsilon=1.0, canaries=7, guess_fraction=1.0
    )
    members = [True, False, True, False, True, False, False]
    trial = TrialResult(0, members, [float(m) for m in members], ["random"] * 7, 1.0, 0.0, 0.0)
    result = summarise(config, [trial])
    assert result.guesses == 6 and result.correct == 6
