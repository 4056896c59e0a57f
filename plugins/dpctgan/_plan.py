"""DP-CTGAN's privacy plan: the budget split, sigma, and the step limit, before any data is read.

Pure arithmetic over public inputs (the table's size, its schema, the parameters, the target) and
the accountant plugin; no torch. See the package docstring for the budget split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from privsynth_core import AccountingError, ConfigError

if TYPE_CHECKING:
    from privsynth_core import Accountant, PrivacyBudget, Schema

    from . import DPCTGANParams

History = list[tuple[float, float, int]]


@dataclass(frozen=True)
class DPPlan:
    """How a fit spends its budget, worked out before any data is read.

    Attributes:
        sample_rate: Poisson rate q of DP-SGD.
        steps_per_epoch: critic steps in one epoch (``round(n / batch_size)``, at least 1).
        planned_steps: steps the epochs ask for (``None``: as many as the budget allows).
        allowed_steps: the most steps that keep marginals + DP-SGD at or under the target.
        noise_multiplier: DP-SGD's sigma.
        calibrated: whether sigma was calibrated from the target (vs given).
        marginals_noise: sigma_m of the noisy marginals as a whole (``None``: no conditional
            vectors): the noise multiplier of one Gaussian release of all their histograms.
        marginal_columns: the columns whose noisy marginals are released.
        marginals_share: the share of the budget (in mu-GDP terms) the marginals got.
        release_steps: the Gaussian releases the marginals are made of, as
            ``(noise multiplier, histograms)``: the trees of the binned numbers with the other
            one-way histograms (``k1``), then the focus pairs over the learned cells (``k2``,
            only with focus columns). ``sigma_i = sigma_m * sqrt(k / k_i)`` with
            ``k = k1 + k2``: every count gets the noise ``sigma_m * sqrt(k)`` of one release of
            all ``k``, and ``sum 1 / sigma_i^2 = 1 / sigma_m^2``, so the two compose to exactly
            the Gaussian mechanism of noise multiplier ``sigma_m`` (mu-GDP and RDP alike).
        cell_columns: the binned numbers whose cells are learned in the first release.
    """

    sample_rate: float
    steps_per_epoch: int
    planned_steps: int | None
    allowed_steps: int
    noise_multiplier: float
    calibrated: bool
    marginals_noise: float | None
    marginal_columns: tuple[str, ...]
    marginals_share: float
    release_steps: tuple[tuple[float, int], ...] = ()
    cell_columns: tuple[str, ...] = ()

    @property
    def released_histograms(self) -> int:
        """``k'``: the histograms of all the marginals' releases together."""
        return sum(k for _, k in self.release_steps)

    def prefix(self) -> History:
        """Accountant history of what is released before DP-SGD (the noisy marginals: one
        step at sample rate 1 per release)."""
        return [(sigma, 1.0, 1) for sigma, _ in self.release_steps]


def split_release(sigma_m: float, k1: int, k2: int) -> tuple[tuple[float, int], ...]:
    """The releases of :attr:`DPPlan.release_steps` for ``sigma_m`` over ``k1 + k2``
    histograms (one release when ``k2`` is 0)."""
    if k2 == 0:
        return ((sigma_m, k1),)
    k = k1 + k2
    return ((sigma_m * math.sqrt(k / k1), k1), (sigma_m * math.sqrt(k / k2), k2))


def composed_epsilon(accountant_cls: type[Accountant], history: History, delta: float) -> float:
    """Epsilon at ``delta`` of a sequence of (sigma, q, steps) runs, by one accountant."""
    accountant = accountant_cls()
    for sigma, q, steps in history:
        accountant.step(noise_multiplier=sigma, sample_rate=q, num_steps=steps)
    return accountant.get_epsilon(delta=delta)


def _calibrate_sigma(
    accountant_cls: type[Accountant],
    prefix: History,
    *,
    q: float,
    steps: int,
    epsilon: float,
    delta: float,
    rel_tol: float = 0.005,
    max_noise: float = 1e4,
) -> float:
    """Smallest sigma (to ``rel_tol``, rounded up) with prefix + ``steps`` at or under epsilon."""

    def fits(sigma: float) -> bool:
        return composed_epsilon(accountant_cls, [*prefix, (sigma, q, steps)], delta) <= epsilon

    high = 1.0
    while not fits(high):
        high *= 2
        if high > max_noise:
            raise AccountingError(
                f"no noise multiplier up to {max_noise:g} keeps {steps} steps at sample rate "
                f"{q:.4g} under epsilon={epsilon:g}, delta={delta:g}; plan fewer epochs, a "
                f"smaller batch_size or a larger epsilon"
            )
    low = high / 2
    while fits(low) and low > 1e-3:
        high, low = low, low / 2
    while (high - low) / high > rel_tol:  # invariant: fits(high), not fits(low)
        mid = (low + high) / 2
        if fits(mid):
            high = mid
        else:
            low = mid
    return high


def _max_steps(
    accountant_cls: type[Accountant],
    prefix: History,
    *,
    sigma: float,
    q: float,
    epsilon: float,
    delta: float,
    cap: int | None,
) -> int:
    """Largest step count (at most ``cap``) with prefix + steps at or under epsilon."""

    def fits(steps: int) -> bool:
        return composed_epsilon(accountant_cls, [*prefix, (sigma, q, steps)], delta) <= epsilon

    limit = cap if cap is not None else 10**8
    if limit < 1 or not fits(1):
        return 0
    if fits(limit):
        return limit
    low, high = 1, 2
    while high < limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit)
    while high - low > 1:  # invariant: fits(low), not fits(high)
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def gdp_mu(epsilon: float, delta: float) -> float:
    """The mu of mu-GDP whose (epsilon, delta) curve passes through the target (Dong et al.).

    Used only to *split* a budget between Gaussian mechanisms (mu squared adds up under
    composition); every epsilon privsynth reports comes from the accountant plugin.
    """

    from scipy.special import log_ndtr, ndtr

    def delta_of(mu: float) -> float:
        # exp(epsilon) * Phi(.) in log space: it overflows for large epsilon otherwise.
        tail = math.exp(min(epsilon + float(log_ndtr(-epsilon / mu - mu / 2)), 700.0))
        return float(ndtr(-epsilon / mu + mu / 2)) - tail

    low, high = 1e-6, 1.0
    while delta_of(high) < delta:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if delta_of(mid) < delta:
            low = mid
        else:
            high = mid
    return low


def marginal_columns(schema: Schema) -> tuple[str, ...]:
    """The columns whose noisy marginals are released: all of them."""
    return tuple(schema.names)


def effective_share(params: DPCTGANParams) -> float:
    """``marginals_share``, or its default: 0.1 for one-way marginals only, 0.3 with focus
    columns (their two-way tables need more of the budget to be useful)."""
    if params.marginals_share is not None:
        return params.marginals_share
    return 0.3 if params.focus_columns else 0.1


def make_plan(
    *,
    n_rows: int,
    schema: Schema,
    params: DPCTGANParams,
    budget: PrivacyBudget,
    accountant: str,
) -> DPPlan:
    """The plan of a fit (see :meth:`privsynth_plugins.dpctgan.DPCTGANGenerator.make_plan`)."""
    from privsynth_core.registry import accountants

    acc = accountants().get(accountant)
    epsilon, delta = budget.epsilon, budget.delta
    if not 0 < delta < 1 or not epsilon > 0:
        raise AccountingError(
            f"DP-SGD needs epsilon > 0 and delta in (0, 1), got {budget}; use a delta well "
            f"below 1/n_rows = {1 / max(n_rows, 1):.2g}, e.g. 1e-5"
        )
    if n_rows < 1:
        raise ConfigError(f"the table needs at least one row, got {n_rows}")
    unknown = [c for c in params.focus_columns if c not in schema.names]
    if unknown:
        raise ConfigError(
            f"focus_columns names column(s) not in the schema: {', '.join(unknown)}; "
            f"columns: {', '.join(schema.names)}"
        )
    share = effective_share(params)
    if params.focus_columns and share == 0:
        raise ConfigError(
            "focus_columns needs marginals_share > 0 (the two-way marginals are "
            "paid for from that share)"
        )
    columns = marginal_columns(schema) if share > 0 else ()
    sigma_m = 1.0 / (math.sqrt(share) * gdp_mu(epsilon, delta)) if columns else None
    steps: tuple[tuple[float, int], ...] = ()
    cell_columns: tuple[str, ...] = ()
    if sigma_m is not None:
        from ._cells import cell_grids, focus_pairs, learned_columns, tree_levels

        cell_columns = learned_columns(schema, params)
        levels = tree_levels(cell_grids(schema, cell_columns))
        k1 = len(columns) - len(cell_columns) + sum(len(g) for g in levels.values())
        k2 = len(focus_pairs(columns, params.focus_columns))
        steps = split_release(sigma_m, k1, k2)
    prefix: History = [(s, 1.0, 1) for s, _ in steps]
    q = min(1.0, params.batch_size / n_rows)
    steps_per_epoch = max(1, round(n_rows / params.batch_size))
    planned = None if params.epochs is None else steps_per_epoch * params.epochs
    sigma = params.noise_multiplier
    calibrated = sigma is None and planned is not None
    if sigma is None:
        sigma = (
            1.0
            if planned is None
            else _calibrate_sigma(acc, prefix, q=q, steps=planned, epsilon=epsilon, delta=delta)
        )
    allowed = _max_steps(acc, prefix, sigma=sigma, q=q, epsilon=epsilon, delta=delta, cap=planned)
    if allowed == 0:
        one = composed_epsilon(acc, [*prefix, (sigma, q, 1)], delta)
        raise AccountingError(
            f"the budget {budget} allows 0 training steps: the noisy marginals plus one critic "
            f"step with noise multiplier {sigma:g} at sample rate {q:.4g} already cost "
            f"epsilon={one:.4g} ({accountant} accountant). Raise epsilon, raise "
            f"noise_multiplier, lower batch_size or marginals_share; nothing was charged"
        )
    return DPPlan(
        q,
        steps_per_epoch,
        planned,
        allowed,
        sigma,
        calibrated,
        sigma_m,
        columns,
        share,
        steps,
        cell_columns,
    )
