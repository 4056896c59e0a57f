"""The built-in privacy accountants: RDP, PRV and GDP over Opacus, PLD over Google's dp-accounting.

Each class adapts one published analysis of the Poisson-subsampled Gaussian mechanism (the
mechanism DP-SGD runs) to :class:`privsynth_core.Accountant`; the bookkeeping, serialisation and
noise calibration live in that base class. Every one of them uses the add/remove-one neighbouring
relation, as Opacus does.

Opacus and dp-accounting are imported inside the methods that need them, so importing this module
(which pluggy does whenever plugins are listed) stays cheap. See ``docs/accountants.md`` for which
accountant to choose.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from privsynth_core import Accountant, AccountingError, hookimpl

if TYPE_CHECKING:
    from privsynth_core.privacy.accountant import Step

# Below this many epsilon the numerical analyses are exact enough, above it nobody cares: an
# epsilon this large protects nothing, and the analyses' root finders stop working there.
_EPSILON_CAP = 500.0


def _failed(accountant_id: str, history: list[Step], exc: Exception) -> AccountingError:
    plan = ", ".join(f"{t} steps at noise {s:g}, sample rate {q:g}" for s, q, t in history)
    return AccountingError(
        f"the {accountant_id} accountant could not compute epsilon for {plan} "
        f"({type(exc).__name__}: {exc}); try another accountant (e.g. --accountant rdp) or a "
        f"larger noise multiplier"
    )


class RDPAccountant(Accountant):
    """Rényi DP of the subsampled Gaussian (Mironov 2017; Mironov, Talwar & Zhang 2019).

    Opacus' ``compute_rdp`` gives the RDP curve at each order, RDP composes by addition, and
    ``get_privacy_spent`` converts to (epsilon, delta) with the conversion of Balle et al. 2020,
    minimised over the orders. The result is a guaranteed upper bound, a little looser than PRV or
    PLD (about 8% at the Abadi et al. setting).

    Attributes:
        orders: the RDP orders searched; ``None`` means Opacus' default orders (1.1 to 10.9 in
            steps of 0.1, then 12 to 63), so results match ``opacus.accountants.RDPAccountant``.
    """

    accountant_id = "rdp"
    description = "Rényi DP (Opacus): guaranteed upper bound, a little loose"
    orders: ClassVar[tuple[float, ...] | None] = None

    @classmethod
    def rdp_orders(cls) -> list[float]:
        """The RDP orders this accountant minimises over."""
        if cls.orders is not None:
            return [float(a) for a in cls.orders]
        from opacus.accountants import RDPAccountant as OpacusRDP

        return [float(a) for a in OpacusRDP.DEFAULT_ALPHAS]

    @classmethod
    def _epsilon(cls, history: list[Step], delta: float) -> float:
        from opacus.accountants.analysis import rdp

        orders = cls.rdp_orders()
        total = sum(
            rdp.compute_rdp(q=q, noise_multiplier=s, steps=t, orders=orders) for s, q, t in history
        )
        with warnings.catch_warnings():
            # "Optimal order is the largest/smallest alpha": the bound is still valid, only not
            # the tightest possible; the docs say so, a warning per call would only be noise.
            warnings.filterwarnings("ignore", message="Optimal order is the")
            epsilon, _ = rdp.get_privacy_spent(orders=orders, rdp=total, delta=delta)
        return float(epsilon)


class PRVAccountant(Accountant):
    """Numerical composition of privacy-loss random variables (Gopi, Lee & Wutschitz 2021).

    Opacus' PRV analysis discretises each step's privacy-loss distribution and composes them by
    FFT; the reported value is the analysis' certified *upper* bound (estimate plus its error
    bound, ``eps_error`` = 0.01), so it is tight and still never under-reports.
    """

    accountant_id = "prv"
    description = "Privacy loss random variables (Opacus): tight upper bound"

    @classmethod
    def _epsilon(cls, history: list[Step], delta: float) -> float:
        from opacus.accountants import PRVAccountant as OpacusPRV

        accountant = OpacusPRV()
        accountant.history = [(float(s), float(q), int(t)) for s, q, t in history]
        try:
            with warnings.catch_warnings():
                # Its domain bound goes through RDP (order warnings) and numpy logs of zero at
                # the grid's edge; neither changes the certified bound.
                warnings.filterwarnings("ignore", message="Optimal order is the")
                warnings.filterwarnings("ignore", category=RuntimeWarning)
                return float(accountant.get_epsilon(delta))
        except (ValueError, RuntimeError, FloatingPointError, OverflowError, MemoryError) as exc:
            # MemoryError: at tiny noise the discretisation grid no longer fits in memory.
            raise _failed(cls.accountant_id, history, exc) from exc


class GDPAccountant(Accountant):
    """Gaussian DP through the central limit theorem (Dong, Roth & Su 2019; Bu et al. 2020).

    Each run of steps is approximated as mu-GDP with Opacus' ``compute_mu_poisson``; mu-GDP
    mechanisms compose to sqrt(sum of mu squared)-GDP, converted to epsilon at delta by the exact
    mu-GDP duality. The CLT step is an *approximation*, not a bound: it can under-report epsilon,
    most at small epsilon, small step counts or large sample rates (Gopi et al. 2021, fig. 1).
    Use it for comparison, never to certify a release.
    """

    accountant_id = "gdp"
    description = "Gaussian DP via the CLT (Opacus): can under-report at small epsilon"
    approximate = True

    @classmethod
    def _epsilon(cls, history: list[Step], delta: float) -> float:
        from opacus.accountants.analysis import gdp

        mu = math.sqrt(
            sum(
                float(gdp.compute_mu_poisson(steps=t, noise_multiplier=s, sample_rate=q)) ** 2
                for s, q, t in history
            )
        )
        if not math.isfinite(mu):
            return math.inf
        # eps_from_mu's root finder brackets [0, 500]: beyond it, report "unbounded".
        if gdp.delta_eps_mu(eps=_EPSILON_CAP, mu=mu) > delta:
            return math.inf
        return float(gdp.eps_from_mu(mu=mu, delta=delta))


class PLDAccountant(Accountant):
    """Privacy loss distributions (Koskela et al. 2020; Doroshenko et al. 2022), Google's code.

    dp-accounting's ``PLDAccountant`` composes the Poisson-subsampled Gaussian's PLD with
    pessimistic discretisation (interval 1e-4), so its epsilon is an upper bound up to the
    truncated tail mass it accounts for; it is the tightest of the four and very fast.
    """

    accountant_id = "pld"
    description = "Privacy loss distributions (Google dp-accounting): tight upper bound"

    @classmethod
    def _epsilon(cls, history: list[Step], delta: float) -> float:
        import dp_accounting
        from dp_accounting.pld.pld_privacy_accountant import PLDAccountant as GooglePLD

        accountant = GooglePLD()
        for s, q, t in history:
            event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(s))
            accountant.compose(dp_accounting.SelfComposedDpEvent(event, t))
        try:
            return float(accountant.get_epsilon(delta))
        except (ValueError, RuntimeError, FloatingPointError, OverflowError, MemoryError) as exc:
            raise _failed(cls.accountant_id, history, exc) from exc


BUILTIN_ACCOUNTANTS: tuple[type[Accountant], ...] = (
    RDPAccountant,
    PRVAccountant,
    GDPAccountant,
    PLDAccountant,
)


@hookimpl
def register_accountants(register: Callable[[type[Accountant]], None]) -> None:
    """Register the four built-in accountants."""
    for cls in BUILTIN_ACCOUNTANTS:
        register(cls)
