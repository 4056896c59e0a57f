"""The base of generators trained with DP-SGD: they have an accountant and declare their plan.

A :class:`DPSGDGenerator` tracks its privacy loss with an accountant plugin, chosen when it is
made (``DPCTGANGenerator(accountant="prv", epochs=...)``, as opacus chooses it with its
``PrivacyEngine``) and checked to be one that may settle a fit. It says what a training of
``n_rows`` rows plans (``dp_plan``: the Poisson sample rate and the number of steps) and how to
price it (``price_plan``: the epsilon a noise multiplier spends, or the noise multiplier a
target needs, including anything else the generator releases).
:func:`privsynth_core.service.price_plan` prices every DP-SGD generator through these two, for
the CLI's ``privsynth privacy``, the web app and the flows alike. A DP-SGD generator can resume
an interrupted training from checkpoints (:mod:`privsynth_core.privacy.dpsgd_loop`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ..generator import Generator, P
from .calibration import noise_for

if TYPE_CHECKING:
    from ..generator import GeneratorParams
    from ..schema import Schema

#: The accountant a DP-SGD generator uses unless it is given another (Opacus' default).
DEFAULT_ACCOUNTANT = "rdp"


class DPSGDGenerator(Generator[P]):
    """A generator whose critic (or model) is trained with DP-SGD.

    Args:
        params: a ``Params`` instance; or keyword arguments to build one.
        accountant: id of the accountant plugin that calibrates the noise, stops the training
            before the target and reports what was spent (``privsynth accountants list``).

    Raises:
        UnknownPluginError: no such accountant.
        ConfigError: an approximate accountant (one that may under-report), or bad parameters.
    """

    supports_checkpoints: ClassVar[bool] = True
    #: What the fit releases besides the DP-SGD steps, priced in :meth:`price_plan` too (shown
    #: with a price, e.g. "noisy marginals released before DP-SGD"); empty: nothing.
    also_releases: ClassVar[str] = ""

    def __init__(
        self, params: P | None = None, *, accountant: str = DEFAULT_ACCOUNTANT, **kwargs: Any
    ) -> None:
        super().__init__(params, **kwargs)
        self.use_accountant(accountant)

    def use_accountant(self, accountant: str) -> None:
        """Track this generator's privacy loss with ``accountant`` from its next fit on.

        Raises:
            UnknownPluginError: no such accountant.
            ConfigError: an approximate accountant, which may never settle a fit.
        """
        from .accountant import settling_accountant

        settling_accountant(accountant)
        self._accountant_id = accountant

    @property
    def accountant_id(self) -> str:
        """The accountant plugin of this generator's fits."""
        return self._accountant_id

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
        from .accountant import accountants

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


__all__ = ["DEFAULT_ACCOUNTANT", "DPSGDGenerator"]
