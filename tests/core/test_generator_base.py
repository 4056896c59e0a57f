"""The Generator template: the rules every plugin gets for free (domain, ledger, output checks,
atomic save). Exercised through the built-in `independent` generator and small subclasses."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from privsynth_core import (
    BudgetExceededError,
    ConfigError,
    DomainError,
    Generator,
    GeneratorError,
    NotFittedError,
    PrivacyBudget,
    PrivacyLedger,
    Table,
)
from privsynth_core.errors import InputFileError
from privsynth_core.inference import infer_schema
from privsynth_core.privacy.count import COUNT_MECHANISM
from privsynth_core.registry import generators, load_model

BUDGET = PrivacyBudget(1.0, 1e-6)


def _independent(**params: object) -> Generator:
    return generators().get("independent")(**params)


def _with_budget(ledger: PrivacyLedger, table: Table, epsilon: float = 5.0) -> None:
    ledger.set_budget(table.fingerprint(), epsilon=epsilon, delta=1e-5, label=table.name)


def test_dp_fit_refuses_an_unconfirmed_inferred_domain(
    ledger: PrivacyLedger, adult_raw: pl.DataFrame
) -> None:
    frame = adult_raw.head(500)
    table = Table.from_frame(frame, infer_schema(frame))
    _with_budget(ledger, table)
    with pytest.raises(DomainError, match="inferred from the private data"):
        _independent().fit(table, budget=BUDGET, ledger=ledger)
    assert ledger.entries(table.fingerprint()) == []


def test_fit_reserves_then_settles_what_was_spent(
    ledger: PrivacyLedger, adult_small: Table
) -> None:
    _with_budget(ledger, adult_small)
    model = _independent()
    summary = model.fit(adult_small, budget=BUDGET, ledger=ledger, run_id="r1")
    count, entry = ledger.entries(adult_small.fingerprint())
    assert count.mechanism == COUNT_MECHANISM and count.status == "spent"
    assert count.params["noisy_rows"] == summary.noisy_rows  # released before the training
    assert entry.status == "spent" and entry.run_id == "r1"
    assert entry.epsilon == pytest.approx(summary.epsilon) == 1.0
    assert summary.domain_mode == "public" and summary.private
    # The manifest states the end-to-end guarantee, equal to the ledger's to the last digit.
    privacy = model.manifest()["privacy"]
    assert privacy["epsilon"] == math.fsum(e.epsilon for e in (count, entry))
    assert [p["step"] for p in privacy["parts"]] == ["row count", "training"]


def test_the_row_count_is_released_once_per_extract_and_reused(
    ledger: PrivacyLedger, adult_small: Table
) -> None:
    _with_budget(ledger, adult_small)
    first = _independent().fit(adult_small, budget=BUDGET, ledger=ledger)
    second = _independent().fit(adult_small, budget=BUDGET, ledger=ledger)
    counts = [
        e for e in ledger.entries(adult_small.fingerprint()) if e.mechanism == COUNT_MECHANISM
    ]
    assert len(counts) == 1 and first.noisy_rows == second.noisy_rows
    # Both releases depend on it, so both state it among their parts.
    assert all(any(p.step == "row count" for p in s.spent) for s in (first, second))


def test_over_budget_fit_charges_nothing(ledger: PrivacyLedger, adult_small: Table) -> None:
    _with_budget(ledger, adult_small, epsilon=0.5)
    with pytest.raises(BudgetExceededError):
        _independent().fit(adult_small, budget=BUDGET, ledger=ledger)
    assert ledger.entries(adult_small.fingerprint()) == []


class _CrashingGenerator(generators().get("independent")):  # type: ignore[misc]
    generator_id = "crashing"

    def _fit(self, table, *, budget, progress):  # type: ignore[no-untyped-def]
        raise RuntimeError("killed mid-training")


def test_a_crash_mid_fit_leaves_the_whole_reservation_counted(
    ledger: PrivacyLedger, adult_small: Table
) -> None:
    _with_budget(ledger, adult_small)
    with pytest.raises(RuntimeError):
        _CrashingGenerator().fit(adult_small, budget=BUDGET, ledger=ledger)
    count, entry = ledger.entries(adult_small.fingerprint())
    assert entry.status == "reserved" and entry.epsilon == 1.0
    assert ledger.status(adult_small.fingerprint()).spent.epsilon == count.epsilon + 1.0


class _OutOfDomainGenerator(generators().get("independent")):  # type: ignore[misc]
    generator_id = "out_of_domain"

    def _sample(self, n_rows, *, seed):  # type: ignore[no-untyped-def]
        frame = super()._sample(n_rows, seed=seed)
        return frame.with_columns(pl.lit("Atlantis").alias("native-country"))


def test_output_outside_the_domain_is_withheld(ledger: PrivacyLedger, adult_small: Table) -> None:
    _with_budget(ledger, adult_small)
    model = _OutOfDomainGenerator()
    model.fit(adult_small, budget=BUDGET, ledger=ledger)
    with pytest.raises(GeneratorError, match="native-country.*not among its categories"):
        model.sample(10, seed=0)


class _NonDPGenerator(generators().get("independent")):  # type: ignore[misc]
    generator_id = "nondp_test"
    is_dp = False

    def _fit(self, table, *, budget, progress):  # type: ignore[no-untyped-def]
        return super()._fit(table, budget=PrivacyBudget(1e6, 0.0), progress=progress)


def test_non_dp_generators_are_recorded_and_labelled(
    ledger: PrivacyLedger, adult_small: Table
) -> None:
    _with_budget(ledger, adult_small)
    model = _NonDPGenerator()
    with pytest.raises(ConfigError, match="NOT differentially private"):
        model.fit(adult_small, budget=BUDGET, ledger=ledger)
    model.fit(adult_small, budget=None, ledger=ledger)
    [entry] = ledger.entries(adult_small.fingerprint())
    assert entry.status == "non-dp"
    assert model.manifest()["privacy"] == {"label": "NOT differentially private"}
    assert model.manifest()["differentially_private"] is False


def test_sample_before_fit_and_bad_row_counts(ledger: PrivacyLedger, adult_small: Table) -> None:
    model = _independent()
    with pytest.raises(NotFittedError):
        model.sample(5)
    _with_budget(ledger, adult_small)
    model.fit(adult_small, budget=BUDGET, ledger=ledger)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError):
            model.sample(bad)  # type: ignore[arg-type]
    assert model.sample(0).height == 0


def test_invalid_params_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="bins.*Known parameters: numeric_cells, bins$"):
        _independent(bins=1)
    with pytest.raises(ConfigError, match="colour"):
        _independent(colour="red")


def test_save_is_atomic_and_refuses_to_clobber(
    ledger: PrivacyLedger, adult_small: Table, tmp_path: Path
) -> None:
    _with_budget(ledger, adult_small)
    model = _independent()
    model.fit(adult_small, budget=BUDGET, ledger=ledger)
    out = tmp_path / "out"
    target = out / "model"
    model.save(target)
    with pytest.raises(InputFileError, match="not empty"):
        model.save(target)

    class _BrokenSave(type(model)):  # type: ignore[misc]
        def _save_state(self, directory: Path) -> None:
            (directory / "half.bin").write_bytes(b"x")
            raise OSError("disk full")

    broken = _BrokenSave()
    broken.schema, broken.fit_summary = model.schema, model.fit_summary
    with pytest.raises(OSError):
        broken.save(out / "broken")
    assert sorted(p.name for p in out.iterdir()) == ["model"]
    reloaded = load_model(target)
    assert reloaded.sample(50, seed=9).equals(model.sample(50, seed=9))


def test_only_dpsgd_generators_take_the_users_accountant() -> None:
    # The accountant option reaches the generators that track their loss with an accountant
    # plugin (DP-SGD's) and no other; an approximation is refused when the generator is made,
    # before any data is read; no hook of any installed generator has an accountant argument.
    import inspect

    from privsynth_core.errors import ConfigError, UnknownPluginError
    from privsynth_core.service import create_generator

    assert create_generator("dpwgan", {}, accountant="prv").accountant_id == "prv"
    assert create_generator("dpctgan", {}).accountant_id == "rdp"
    assert create_generator("independent", {}, accountant="prv").accountant_id is None
    with pytest.raises(ConfigError, match="approximation"):
        create_generator("dpwgan", {}, accountant="gdp")
    # a typo is named for every generator, not ignored where no accountant is used
    with pytest.raises(UnknownPluginError, match="rpd"):
        create_generator("independent", {}, accountant="rpd")
    for entry in generators().entries():
        for hook in ("_fit", "_check_params", "_check_plan"):
            assert "accountant" not in inspect.signature(getattr(entry.cls, hook)).parameters, (
                entry.plugin_id,
                hook,
            )
