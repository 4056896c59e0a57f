"""One way through the product: the steps every front end (CLI, flows, web app, audit) calls.

Each rule lives here once, so the front ends cannot drift apart:

- :func:`create_generator`: a generator from its id and parameters (validated by its model),
  with the user's accountant option for the generators that use an accountant
  (:func:`use_accountant`);
- :func:`target_budget`: the (epsilon, delta) a fit aims at, with the one default-delta rule
  (``1 / (10 n̂)``, at most 1e-5, from the released row count; 0 for a pure-epsilon generator);
- :func:`fit_generator`: release (or reuse) the row count n̂, fix the target, train under the
  ledger given (never an implicit one), with progress;
- :func:`price_plan`: what a training plan would spend, including everything a generator
  releases besides DP-SGD steps (DP-CTGAN's noisy marginals).

Nothing here reads the private rows except through :meth:`Generator.fit` and the row-count
mechanism, both charged to the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import AccountingError, ConfigError
from .privacy.count import default_delta, ensure_row_count
from .privacy.ledger import PrivacyBudget

if TYPE_CHECKING:
    from .generator import Generator, GeneratorParams, ProgressCallback
    from .privacy.checkpoint import CheckpointStore
    from .privacy.ledger import PrivacyLedger
    from .schema import Schema
    from .table import Table


def create_generator(
    generator_id: str, params: dict[str, Any] | None = None, *, accountant: str | None = None
) -> Generator[Any]:
    """A new generator of type ``generator_id`` with ``params`` (defaults filled in).

    ``accountant`` is given to a generator that tracks its privacy loss with an accountant
    plugin (DP-SGD's); the others compose their own mechanisms and take none.

    Raises:
        UnknownPluginError: no such generator or accountant.
        ConfigError: invalid parameters (all listed, with the known ones), or an approximate
            accountant.
    """
    from .registry import generators

    cls = generators().get(generator_id)
    generator = cls(cls.make_params(dict(params or {})))
    if accountant is not None:
        use_accountant(generator, accountant)
    return generator


def use_accountant(generator: Generator[Any], accountant: str) -> None:
    """Have ``generator`` track its privacy loss with ``accountant`` if it uses one at all.

    The user's accountant option (``--accountant``, a run config's ``accountant:``) reaches
    DP-SGD generators only; MST, AIM, ``independent`` and the non-DP baseline ignore it (their
    fit summaries name the accounting they use).

    Raises:
        UnknownPluginError: no accountant plugin ``accountant`` is installed (for every
            generator: a typo is named, not silently ignored).
        ConfigError: see :meth:`DPSGDGenerator.use_accountant`.
    """
    from .privacy.dpsgd_generator import DPSGDGenerator
    from .registry import accountants

    accountants().get(accountant)  # raises UnknownPluginError, listing what is installed
    if isinstance(generator, DPSGDGenerator):
        generator.use_accountant(accountant)


def target_budget(
    generator: Generator[Any], *, epsilon: float | None, delta: float | None, noisy_rows: int
) -> PrivacyBudget | None:
    """The fit's target: None for a non-DP generator, else (epsilon, delta or its default).

    Raises:
        ConfigError: a DP generator without epsilon, or a non-DP one with a budget.
    """
    if not generator.is_dp:
        if epsilon is not None or delta is not None:
            raise ConfigError(
                f"generator {generator.generator_id} is not differentially "
                f"private: it takes no epsilon or delta"
            )
        return None
    if epsilon is None:
        raise ConfigError(
            f"generator {generator.generator_id} is differentially private: give "
            f"the target epsilon of the training"
        )
    if delta is None:
        delta = 0.0 if generator.pure_epsilon else default_delta(noisy_rows)
    return PrivacyBudget(float(epsilon), float(delta))


def fit_generator(
    table: Table,
    generator: Generator[Any],
    *,
    epsilon: float | None,
    delta: float | None,
    ledger: PrivacyLedger,
    run_id: str,
    progress: ProgressCallback | None = None,
    checkpoints: CheckpointStore | None = None,
    ledger_params: Mapping[str, Any] | None = None,
) -> Generator[Any]:
    """Train ``generator`` on ``table`` within (epsilon, delta), charging ``ledger``.

    For a DP generator, the row count n̂ is released first (or reused: one per extract), the
    default delta is derived from it, then the generator reserves its target, trains and
    settles (:meth:`Generator.fit`); ``ledger_params`` go into the training's ledger entry (the
    model store's key). Returns the fitted generator.

    Raises:
        ConfigError, DomainError, BudgetNotSetError, BudgetExceededError, GeneratorError.
    """
    noisy_rows = 0
    if generator.is_dp:
        if epsilon is None:
            raise ConfigError(
                f"generator {generator.generator_id} is differentially private: "
                f"give the target epsilon of the training"
            )
        # What needs no size is refused before the row count is released: the default delta
        # (from n̂) is not known yet, so the check sees the bound it can take.
        generator.check_params(
            table,
            budget=PrivacyBudget(
                float(epsilon),
                float(delta if delta is not None else 0.0 if generator.pure_epsilon else 1e-5),
            ),
        )
        count = ensure_row_count(
            ledger,
            table.budget_key(),
            extract=table.fingerprint(),
            n_rows=table.n_rows,
            run_id=run_id,
            also_needed=PrivacyBudget(float(epsilon), float(delta or 0.0)),
        )
        noisy_rows = count.value
    budget = target_budget(generator, epsilon=epsilon, delta=delta, noisy_rows=noisy_rows)
    generator.fit(
        table,
        budget=budget,
        ledger=ledger,
        run_id=run_id,
        progress=progress,
        checkpoints=checkpoints,
        ledger_params=ledger_params,
    )
    return generator


@dataclass(frozen=True)
class PlanPrice:
    """What a DP-SGD training plan spends, before any data is read.

    Attributes:
        generator: the generator id.
        rows: the row count the plan was priced for (n̂, or a size the user gave).
        sample_rate: the Poisson rate q.
        steps: planned DP-SGD steps.
        accountant: the accountant that priced it.
        epsilon: the epsilon the plan spends (given a sigma), or None.
        sigma: the noise multiplier the plan needs (given a target epsilon), or None.
        includes: what besides DP-SGD steps the price includes (e.g. noisy marginals).
    """

    generator: str
    rows: int
    sample_rate: float
    steps: int
    accountant: str
    epsilon: float | None
    sigma: float | None
    includes: str = ""


def price_plan(
    generator_id: str,
    params: GeneratorParams | dict[str, Any],
    *,
    rows: int,
    accountant: str,
    delta: float,
    schema: Schema | None = None,
    epsilon: float | None = None,
    sigma: float | None = None,
) -> PlanPrice:
    """The one pricing rule: epsilon for a given sigma, or the sigma a target needs.

    Every DP-SGD generator (:class:`~privsynth_core.privacy.dpsgd_generator.DPSGDGenerator`)
    declares its plan and prices it; one that releases anything besides DP-SGD steps
    (DP-CTGAN's noisy marginals) includes that in its price, so nothing it releases is left out.

    Raises:
        ConfigError: the generator is not trained with DP-SGD, or the inputs do not fit it.
        AccountingError: the accountant cannot price the plan.
    """
    from .privacy.dpsgd_generator import DPSGDGenerator
    from .registry import generators

    cls = generators().get(generator_id)
    made = params if not isinstance(params, dict) else cls.make_params(params)
    if not issubclass(cls, DPSGDGenerator):
        raise ConfigError(
            f"generator {cls.generator_id} is not trained with DP-SGD: it spends "
            f"exactly its target (epsilon, delta); there is no plan to price"
        )
    if rows < 1:
        raise ConfigError(f"the plan needs a row count >= 1, got {rows}")
    if (epsilon is None) == (sigma is None):
        raise ConfigError(
            "price a plan with either a noise multiplier (sigma) or a target epsilon, not both"
        )
    sample_rate, steps = cls.dp_plan(n_rows=rows, params=made)
    value = cls.price_plan(
        n_rows=rows,
        params=made,
        schema=schema,
        accountant=accountant,
        delta=delta,
        sigma=sigma,
        epsilon=epsilon,
    )
    if not value == value:  # NaN
        raise AccountingError(f"the {accountant} accountant could not price this plan")
    return PlanPrice(
        cls.generator_id,
        rows,
        sample_rate,
        steps,
        accountant,
        epsilon=value if sigma is not None else None,
        sigma=value if epsilon is not None else None,
        includes=cls.also_releases,
    )


def is_dpsgd(generator_id: str) -> bool:
    """Whether the generator trains with DP-SGD (so :func:`price_plan` can price its plans)."""
    from .privacy.dpsgd_generator import DPSGDGenerator
    from .registry import generators

    return issubclass(generators().get(generator_id), DPSGDGenerator)


def spending_lines(extra: dict[str, Any]) -> list[str]:
    """What a fit's summary says it spent its budget on, what it left and what its measurements
    covered, as lines for the user (from the ``budget_use`` and ``coverage`` entries a
    generator may put in its summary; nothing when it has none)."""
    lines = []
    use = extra.get("budget_use") or {}
    shares = use.get("share") or {}
    if shares:
        lines.append(
            "spent on: " + ", ".join(f"{what} {share:.0%}" for what, share in shares.items())
        )
    if use.get("unspent_why"):
        lines.append(
            f"unspent: epsilon {use.get('unspent_epsilon', 0.0):.3g} ({use['unspent_why']})"
        )
    for column, values in (extra.get("point_masses") or {}).items():
        if values:
            shown = ", ".join(str(v) for v in values[:8]) + (" ..." if len(values) > 8 else "")
            lines.append(f"{column}: point masses learned under DP at {shown}")
    cover = extra.get("coverage") or {}
    if cover.get("target") is not None and not cover.get("marginals_with_target"):
        lines.append(
            f"no measured marginal includes the target {cover['target']!r}: its "
            f"relationships come from the model's structure only"
        )
    alone = cover.get("columns_in_no_measured_pair") or []
    if alone:
        lines.append("in no measured pair (kept only as 1-way marginals): " + ", ".join(alone))
    return lines


__all__ = [
    "PlanPrice",
    "create_generator",
    "fit_generator",
    "is_dpsgd",
    "price_plan",
    "spending_lines",
    "target_budget",
]
