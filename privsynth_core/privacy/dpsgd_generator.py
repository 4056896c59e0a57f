"""The base of generators trained with DP-SGD: they declare their plan, so it can be priced.

A :class:`DPSGDGenerator` says what a training of ``n_rows`` rows plans (``dp_plan``: the
Poisson sample rate and the number of steps) and how to price it (``price_plan``: the epsilon a
noise multiplier spends, or the noise multiplier a target needs, including anything else the
generator releases). :func:`privsynth_core.service.price_plan` prices every DP-SGD generator
through these two, for the CLI's ``privsynth privacy``, the web app and the flows alike. A
DP-SGD generator also uses the accountant plugin the fit names, and can resume an interrupted
training from checkpoints (:mod:`privsynth_core.privacy.dpsgd_loop`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

from ..generator import Generator
from .calibration import noise_for

if TYPE_CHECKING:
    from ..generator import GeneratorParams
    from ..schema import Schema


class DPSGDGenerator(Generator):
    """A generator whose critic (or model) is trained with DP-SGD."""

    uses_accountant: ClassVar[bool] = True
    supports_checkpoints: ClassVar[bool] = True
    #: What the fit releases besides the DP-SGD steps, priced in :meth:`price_plan` too (shown
    #: with a price, e.g. "noisy marginals released before DP-SGD"); empty: nothing.
    also_releases: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def dp_plan(cls, *, n_rows: int, params: GeneratorParams) -> tuple[float, int]:
        """The Poisson sample rate and the number of DP-SGD steps a fit of ``n_rows`` rows plans.

        ``n_rows`` is the released row count n̂ in a fit (or a size a user prices a plan for).
        """

    @classmethod
    def price_plan(
        cls,
        *,
        n_rows: int,
        params: GeneratorParams,
        schema: Schema | None,
        accountant: str,
        delta: float,
        sigma: float | None = None,
        epsilon: float | None = None,
    ) -> float:
        """Epsilon of the plan at noise ``sigma``, or the noise a target ``epsilon`` needs.

        The default prices the DP-SGD steps alone; a generator that releases anything else
        (DP-CTGAN's noisy marginals) overrides this so that its price includes it.
        """
        from ..registry import accountants

        sample_rate, steps = cls.dp_plan(n_rows=n_rows, params=params)
        acc = accountants().get(accountant)
        if sigma is not None:
            return float(
                acc.epsilon_for(
                    noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta
                )
            )
        assert epsilon is not None
        return float(
            noise_for(
                acc, target_epsilon=epsilon, delta=delta, sample_rate=sample_rate, steps=steps
            )
        )


__all__ = ["DPSGDGenerator"]
