"""The built-in accountants against published reference values and an independent implementation.

Reference values come from outside this code base: Opacus' own test vectors, the Abadi et al.
2016 setting as reported by the Opacus, PRV (Gopi et al. 2021) and dp-accounting authors, and
Google's dp-accounting RDP accountant as an independent implementation of the same analysis.
"""

from __future__ import annotations

import json
import math

import pytest

from privsynth_core import Accountant, AccountingError, UnknownPluginError
from privsynth_core.privacy.calibration import max_steps_for, noise_for
from privsynth_core.registry import accountants
from privsynth_plugins.accountants import (
    GDPAccountant,
    PLDAccountant,
    PRVAccountant,
    RDPAccountant,
)

DELTA = 1e-5
ALL_IDS = ["gdp", "pld", "prv", "rdp"]
ADULT_Q = 500 / 32561


def _acc(accountant_id: str) -> type[Accountant]:
    return accountants().get(accountant_id)


# -- found through the registry ---------------------------------------------------------------


def test_accountants_registry_finds_the_builtins() -> None:
    registry = accountants()
    assert registry.names() == ALL_IDS
    expected = {
        "rdp": RDPAccountant,
        "prv": PRVAccountant,
        "gdp": GDPAccountant,
        "pld": PLDAccountant,
    }
    for accountant_id, cls in expected.items():
        assert registry.get(accountant_id) is cls
        assert registry.entry(accountant_id).plugin_name == "accountants"


def test_accountants_unknown_id_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownPluginError) as info:
        accountants().get("moments")
    message = str(info.value)
    assert "moments" in message
    assert "gdp, pld, prv, rdp" in message
    assert isinstance(info.value, LookupError)


# -- published reference values ----------------------------------------------------------------


def test_rdp_matches_opacus_test_vector() -> None:
    # opacus/tests/accountants_test.py: sigma=1.5, q=0.04, 2250 steps, delta=1e-5.
    epsilon = RDPAccountant.epsilon_for(
        noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=DELTA
    )
    assert epsilon == pytest.approx(7.32911117143, rel=1e-3)


def test_prv_matches_opacus_test_vector() -> None:
    # opacus/tests/accountants_test.py (PRV): the same plan with 2249 steps.
    epsilon = PRVAccountant.epsilon_for(
        noise_multiplier=1.5, sample_rate=0.04, steps=2249, delta=DELTA
    )
    assert epsilon == pytest.approx(6.777395712, rel=1e-3)


@pytest.mark.parametrize(
    ("accountant_id", "published"), [("rdp", 1.0355), ("prv", 0.957), ("pld", 0.947)]
)
def test_accountants_abadi_setting(accountant_id: str, published: float) -> None:
    # Abadi et al. 2016: q=0.01, sigma=4, 10,000 steps, delta=1e-5.
    epsilon = _acc(accountant_id).epsilon_for(
        noise_multiplier=4.0, sample_rate=0.01, steps=10_000, delta=DELTA
    )
    assert epsilon == pytest.approx(published, rel=0.02)


@pytest.mark.parametrize(
    "history",
    [
        [(4.0, 0.01, 10_000)],
        [(1.5, 0.04, 2250)],
        [(1.0, ADULT_Q, 19_537)],
        [(2.0, 0.02, 300), (1.2, 0.05, 700)],  # a plan that changes noise and batch size mid-run
    ],
)
def test_rdp_agrees_with_dp_accounting_on_integer_orders(
    history: list[tuple[float, float, int]],
) -> None:
    import dp_accounting
    from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

    orders = tuple(range(2, 257))

    class IntegerOrdersRDP(RDPAccountant):
        accountant_id = "rdp-integer-orders"

    IntegerOrdersRDP.orders = orders
    ours = IntegerOrdersRDP()
    google = RdpAccountant(orders=list(orders))
    for sigma, q, steps in history:
        ours.step(noise_multiplier=sigma, sample_rate=q, num_steps=steps)
        event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
        google.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    assert ours.get_epsilon(delta=DELTA) == pytest.approx(google.get_epsilon(DELTA), rel=1e-3)


def test_gdp_is_flagged_approximate_and_can_under_report() -> None:
    assert GDPAccountant.approximate is True
    assert "under-report" in GDPAccountant.description
    for accountant_id in ("rdp", "prv", "pld"):
        assert _acc(accountant_id).approximate is False
    # Measured: dp-accounting's *optimistic* PLD is a lower bound on the true epsilon. At small
    # epsilon GDP's CLT answer falls below it, i.e. under the mechanism's real privacy loss.
    from dp_accounting.pld import privacy_loss_distribution as pld

    q, sigma, steps = 0.01, 1.0, 100
    lower = (
        pld.from_gaussian_mechanism(
            standard_deviation=sigma,
            sampling_prob=q,
            pessimistic_estimate=False,
            value_discretization_interval=1e-4,
        )
        .self_compose(steps)
        .get_epsilon_for_delta(DELTA)
    )
    gdp = GDPAccountant.epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    assert gdp < 0.8 * lower
    # ...while the guaranteed accountants stay at or above the lower bound.
    for cls in (RDPAccountant, PRVAccountant, PLDAccountant):
        assert (
            cls.epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
            >= lower
        )


def test_accountants_epsilon_grows_with_steps_and_shrinks_with_noise() -> None:
    for accountant_id in ALL_IDS:
        cls = _acc(accountant_id)
        e = [
            cls.epsilon_for(noise_multiplier=s, sample_rate=0.02, steps=t, delta=DELTA)
            for s, t in [(1.0, 500), (1.0, 1000), (2.0, 1000)]
        ]
        assert e[0] < e[1], accountant_id
        assert e[2] < e[1], accountant_id


# -- calibration: never overshoot --------------------------------------------------------------


@pytest.mark.parametrize("accountant_id", ALL_IDS)
@pytest.mark.parametrize(
    ("target", "q", "steps"),
    [
        (1.0, 0.01, 10_000),
        (8.0, ADULT_Q, 19_537),
    ],
)
def test_noise_for_round_trips_at_or_under_target(
    accountant_id: str, target: float, q: float, steps: int
) -> None:
    cls = _acc(accountant_id)
    sigma = noise_for(cls, target_epsilon=target, delta=DELTA, sample_rate=q, steps=steps)
    epsilon = cls.epsilon_for(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    assert epsilon <= target
    assert epsilon >= 0.99 * target


def test_noise_for_reports_an_impossible_target() -> None:
    # With Opacus' default orders (at most 63), RDP cannot certify epsilon 0.01 at delta 1e-5
    # whatever the noise: the conversion alone costs log(1/delta)/62 ~ 0.1.
    with pytest.raises(AccountingError, match="no noise multiplier"):
        noise_for(RDPAccountant, target_epsilon=0.01, delta=DELTA, sample_rate=0.01, steps=1000)
    with pytest.raises(AccountingError, match="target epsilon"):
        noise_for(RDPAccountant, target_epsilon=0.0, delta=DELTA, sample_rate=0.01, steps=1000)


@pytest.mark.parametrize("accountant_id", ALL_IDS)
def test_max_steps_for_is_the_last_step_under_target(accountant_id: str) -> None:
    cls = _acc(accountant_id)
    plan = {"noise_multiplier": 2.0, "sample_rate": 0.02, "delta": DELTA}
    steps = max_steps_for(cls, target_epsilon=2.0, **plan)
    assert steps > 0
    assert cls.epsilon_for(steps=steps, **plan) <= 2.0
    assert cls.epsilon_for(steps=steps + 1, **plan) > 2.0
    assert max_steps_for(cls, target_epsilon=1e-3, **plan) == 0  # not even one step fits


def test_run_stopped_early_reports_what_it_spent() -> None:
    plan = {"noise_multiplier": 1.0, "sample_rate": ADULT_Q, "delta": DELTA}
    accountant = RDPAccountant()
    for _ in range(3):
        accountant.step(noise_multiplier=1.0, sample_rate=ADULT_Q, num_steps=1000)
    spent = accountant.get_epsilon(delta=DELTA)
    assert spent == pytest.approx(RDPAccountant.epsilon_for(steps=3000, **plan), rel=1e-12)
    assert spent < RDPAccountant.epsilon_for(steps=19_537, **plan)


# -- state: a resumed run continues the same accounting ----------------------------------------


@pytest.mark.parametrize("accountant_id", ALL_IDS)
def test_state_dict_round_trip_continues_the_accounting(accountant_id: str) -> None:
    cls = _acc(accountant_id)
    first = cls()
    first.step(noise_multiplier=2.0, sample_rate=0.01, num_steps=200)
    first.step(noise_multiplier=1.5, sample_rate=0.01, num_steps=50)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["accountant_id"] == accountant_id

    resumed = cls()
    resumed.load_state_dict(state)
    assert resumed.get_epsilon(delta=DELTA) == first.get_epsilon(delta=DELTA)
    resumed.step(noise_multiplier=1.5, sample_rate=0.01, num_steps=50)

    straight = cls()
    straight.step(noise_multiplier=2.0, sample_rate=0.01, num_steps=200)
    straight.step(noise_multiplier=1.5, sample_rate=0.01, num_steps=100)
    assert resumed.history == straight.history
    assert resumed.get_epsilon(delta=DELTA) == pytest.approx(straight.get_epsilon(delta=DELTA))
    assert resumed.get_epsilon(delta=DELTA) > first.get_epsilon(delta=DELTA)


def test_load_state_dict_refuses_another_accountants_state() -> None:
    rdp = RDPAccountant()
    rdp.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=10)
    prv = PRVAccountant()
    with pytest.raises(AccountingError, match="'rdp'") as info:
        prv.load_state_dict(rdp.state_dict())
    assert "--accountant rdp" in str(info.value)
    assert prv.history == []


def test_accountants_with_no_steps_spent_nothing() -> None:
    for accountant_id in ALL_IDS:
        assert _acc(accountant_id)().get_epsilon(delta=DELTA) == 0.0
        assert math.isfinite(
            _acc(accountant_id).epsilon_for(
                noise_multiplier=10.0, sample_rate=0.001, steps=1, delta=DELTA
            )
        )
