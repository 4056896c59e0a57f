"""The ``dpwgan`` generator: a Wasserstein GAN with a differentially private critic.

After Xie, Lin, Wang, Wang & Zhou (2018), "Differentially Private Generative Adversarial Network":
a WGAN whose critic is trained with weight clipping (the Lipschitz constraint), ``n_critic`` critic
steps per generator step, and DP-SGD on the critic, done correctly (DESIGN §4.2, §4.4):

- every critic step draws a **Poisson** batch over the whole table (each row independently with
  rate ``q = batch_size / n_rows``) and is one accounted step of the subsampled Gaussian mechanism;
- every row's gradient of the critic loss is **clipped** to ``max_grad_norm`` (Opacus' ghost
  clipping by default) and Gaussian noise of std ``sigma * max_grad_norm`` **of each parameter's
  own shape** is added to every critic parameter. The fake rows of the loss read no private data;
  they are clipped as well only so both halves of the WGAN loss stay on one scale. No gradient of
  real data reaches the critic outside this clipped, noised path;
- no BatchNorm in the critic (Linear, activation and Dropout layers only);
- ``sigma`` is given, or calibrated from the target epsilon over the planned steps with the chosen
  accountant plugin; training stops *before* a step would exceed the target, and the epsilon
  reported is the accountant's value for the steps actually taken;
- the generator never sees real data: it is post-processing and costs nothing;
- the DP noise and the Poisson sampler always draw from fresh OS randomness: with a known seed
  anyone could replay the noise and the guarantee would be void. ``seed`` fixes only the weight
  initialisation and the latent draws.

The encoder is :class:`privsynth_core.encoding.TableEncoder`, built from the schema alone.

The critic loss shown in the progress callback is computed on real rows: it is for the person
running the fit, is not covered by the guarantee, and is never written into the model manifest.

torch and opacus load inside the methods (see ``_model``), so importing this module is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from privsynth_core import (
    AccountingError,
    ConfigError,
    FitSummary,
    Generator,
    GeneratorParams,
    hookimpl,
)
from privsynth_core.generator import Suitability, TableProfile
from privsynth_core.privacy.calibration import max_steps_for, noise_for
from privsynth_core.privacy.dpsgd_generator import DPSGDGenerator

if TYPE_CHECKING:
    import polars as pl

    from privsynth_core import PrivacyBudget, Table
    from privsynth_core.generator import ProgressCallback

    from ._model import TrainResult

WEIGHTS_FILE = "generator.pt"
ActivationName = Literal["relu", "leaky_relu", "tanh", "gelu", "elu"]


class Layer(BaseModel):
    """One hidden layer: a Linear map to ``width`` units, an activation, optional dropout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(ge=1, le=8192, description="number of units")
    activation: ActivationName = Field("relu", description="relu, leaky_relu, tanh, gelu or elu")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate after the activation")


def parse_layers(value: Any) -> Any:
    """Accept layers as a list of dicts, a JSON string, or ``"256:relu,128:tanh:0.1"``.

    Each compact item is ``width[:activation[:dropout]]``. Anything else is passed on for
    pydantic to reject with its usual message.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"layers are not valid JSON: {exc}") from None
    layers: list[dict[str, Any]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) > 3:
            raise ValueError(f"layer {item!r} is not width[:activation[:dropout]]")
        layer: dict[str, Any] = {"width": parts[0]}
        if len(parts) > 1:
            layer["activation"] = parts[1]
        if len(parts) > 2:
            layer["dropout"] = parts[2]
        layers.append(layer)
    return layers


def _layers(*spec: tuple[int, ActivationName]) -> tuple[Layer, ...]:
    return tuple(Layer(width=w, activation=a, dropout=0.0) for w, a in spec)


class DPWGANParams(GeneratorParams):
    """Parameters of the DPWGAN generator (defaults suit tables of a few thousand rows and up)."""

    epochs: int = Field(
        100,
        ge=1,
        le=100_000,
        description="planned passes over the data, in expected critic steps (n_rows / batch_size "
        "per epoch); training stops earlier if the budget runs out",
    )
    batch_size: int = Field(
        256,
        ge=2,
        le=1_000_000,
        description="expected Poisson batch size; sample rate q = batch_size / n_rows",
    )
    sigma: float | None = Field(
        None,
        gt=0.0,
        le=10_000.0,
        description="noise multiplier; empty: calibrated so the planned steps meet the target",
    )
    max_grad_norm: float = Field(
        1.0,
        gt=0.0,
        le=10_000.0,
        description="per-record gradient clipping bound (L2 norm)",
    )
    weight_clip: float = Field(
        0.05,
        gt=0.0,
        le=100.0,
        description="critic weights are clipped to [-c, c] after each step",
    )
    n_critic: int = Field(5, ge=1, le=100, description="critic steps per generator step")
    optimizer: Literal["rmsprop", "adam"] = Field(
        "rmsprop",
        description="rmsprop (as in the WGAN and DPGAN papers) or adam",
    )
    critic_lr: float = Field(1e-3, gt=0.0, le=1.0, description="critic learning rate")
    generator_lr: float = Field(3e-4, gt=0.0, le=1.0, description="generator learning rate")
    generator_ema: float = Field(
        0.995,
        ge=0.0,
        lt=1.0,
        description="keep an exponential moving average of the generator's weights with this "
        "decay and sample from it (0: off); smooths GAN oscillations at no privacy "
        "cost",
    )
    latent_dim: int = Field(64, ge=1, le=4096, description="dimension of the latent noise")
    latent_distribution: Literal["normal", "uniform"] = Field(
        "normal",
        description="latent noise: standard normal, or uniform on [-1, 1]",
    )
    generator_layers: tuple[Layer, ...] = Field(
        _layers((256, "relu"), (256, "relu")),
        min_length=1,
        max_length=16,
        description="generator hidden layers, e.g. '256:relu,256:relu'",
    )
    critic_layers: tuple[Layer, ...] = Field(
        _layers((128, "leaky_relu"), (128, "leaky_relu")),
        min_length=1,
        max_length=16,
        description="critic hidden layers (no BatchNorm), e.g. '256:leaky_relu,128:leaky_relu'",
    )
    categorical_output: Literal["gumbel_softmax", "softmax"] = Field(
        "gumbel_softmax",
        description="how the generator emits one-hot groups while training",
    )
    gumbel_tau: float = Field(0.2, gt=0.0, le=10.0, description="Gumbel-softmax temperature")
    grad_sample_mode: Literal["ghost", "hooks", "functorch"] = Field(
        "ghost",
        description="Opacus per-sample clipping: ghost (fastest), hooks or functorch",
    )
    num_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="CPU threads for torch while fitting (1 is fastest for "
        "small networks on a shared machine)",
    )
    seed: int | None = Field(
        None,
        ge=0,
        description="seeds weight initialisation and latent draws (never the DP noise)",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="cpu, cuda or auto")

    @field_validator("generator_layers", "critic_layers", mode="before")
    @classmethod
    def _parse_layers(cls, value: Any) -> Any:
        return parse_layers(value)


@dataclass(frozen=True)
class DPPlan:
    """A DP-SGD plan: the Poisson sample rate, the planned and allowed steps, the noise."""

    sample_rate: float
    steps_per_epoch: int
    planned_steps: int
    allowed_steps: int
    noise_multiplier: float
    calibrated: bool
    planning_rows: int


class DPWGANGenerator(DPSGDGenerator[DPWGANParams]):
    """DPWGAN (Xie et al. 2018): WGAN, weight-clipped critic trained with DP-SGD (Opacus)."""

    generator_id = "dpwgan"
    description = (
        "DP Wasserstein GAN (Xie et al. 2018): weight-clipped critic trained with DP-SGD, "
        "configurable architectures"
    )
    is_dp = True
    # The encoder reads the schema only, and DP-SGD's batches come from the rows spooled to
    # local files one partition at a time (privsynth_core.privacy.dpsgd_spool): a partitioned
    # table is never held whole.
    fits_from_partitions = True
    Params = DPWGANParams

    def __init__(self, params: DPWGANParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._net: Any = None  # the torch generator network, on CPU once fitted
        self._plan: tuple[tuple[Any, ...], DPPlan] | None = None

    @classmethod
    def suitability(cls, profile: TableProfile) -> Suitability:
        """A general DP GAN: below DP-CTGAN on mixed tables, weaker still on few rows."""
        if profile.rows is not None and profile.rows < 2000:
            return Suitability(
                0.25,
                f"DPWGAN: a DP-SGD GAN, which learns little from "
                f"{profile.rows:,} rows at a small epsilon",
            )
        return Suitability(0.4, "DPWGAN: a DP-SGD Wasserstein GAN (a general baseline)")

    # -- the plan ---------------------------------------------------------------------------

    @classmethod
    def dp_plan(cls, *, n_rows: int, params: GeneratorParams) -> tuple[float, int]:
        """The Poisson sample rate and number of DP-SGD steps a fit of ``n_rows`` rows plans.

        One epoch is ``round(n_rows / batch_size)`` critic steps (at least one); each critic step
        is one accounted step. Generator steps read no private data and are not counted.

        Raises:
            ConfigError: ``n_rows`` < 1.
        """
        assert isinstance(params, DPWGANParams)
        if n_rows < 1:
            raise ConfigError(f"the table needs at least one row, got {n_rows}")
        sample_rate = min(1.0, params.batch_size / n_rows)
        steps_per_epoch = max(1, round(n_rows / params.batch_size))
        return sample_rate, steps_per_epoch * params.epochs

    def make_plan(self, *, n_rows: int, budget: PrivacyBudget, accountant: str) -> DPPlan:
        """Work out sigma (given or calibrated) and how many steps the budget allows.

        ``n_rows`` is the released row count n̂ (:attr:`privsynth_core.Table.planning_rows`).

        Raises:
            AccountingError: the budget allows no step at all, or no noise reaches it.
            UnknownPluginError: no such accountant.
        """
        from privsynth_core.registry import accountants

        key = (n_rows, budget.epsilon, budget.delta, accountant)
        if self._plan is not None and self._plan[0] == key:
            return self._plan[1]
        acc = accountants().get(accountant)
        if not 0 < budget.delta < 1:
            raise AccountingError(
                f"DP-SGD needs a delta in (0, 1), got {budget.delta:g}; use one well below "
                f"1/n_rows = {1 / n_rows:.2g}, e.g. 1e-5"
            )
        q, planned = self.dp_plan(n_rows=n_rows, params=self.params)
        sigma = self.params.sigma
        calibrated = sigma is None
        if sigma is None:
            sigma = noise_for(
                acc, target_epsilon=budget.epsilon, delta=budget.delta, sample_rate=q, steps=planned
            )
        allowed = min(
            planned,
            max_steps_for(
                acc,
                target_epsilon=budget.epsilon,
                delta=budget.delta,
                noise_multiplier=sigma,
                sample_rate=q,
            ),
        )
        if allowed == 0:
            one = acc.epsilon_for(
                noise_multiplier=sigma, sample_rate=q, steps=1, delta=budget.delta
            )
            raise AccountingError(
                f"the budget {budget} allows 0 training steps: one critic step with noise "
                f"multiplier {sigma:g} at sample rate {q:.4g} already costs epsilon={one:.4g} "
                f"({accountant} accountant). Raise epsilon, raise sigma, or lower batch_size; "
                f"nothing was charged"
            )
        plan = DPPlan(
            q,
            max(1, round(n_rows / self.params.batch_size)),
            planned,
            allowed,
            sigma,
            calibrated,
            n_rows,
        )
        self._plan = (key, plan)
        return plan

    # -- Generator hooks --------------------------------------------------------------------

    def _check_params(self, table: Table, *, budget: PrivacyBudget) -> None:
        from privsynth_core.privacy.dpsgd import resolve_device

        resolve_device(self.params.device)
        if not 0 < budget.delta < 1:
            raise AccountingError(
                f"DP-SGD needs a delta in (0, 1), got {budget.delta:g}; use "
                f"one well below 1/rows, e.g. 1e-5"
            )

    def _check_plan(self, table: Table, *, budget: PrivacyBudget) -> None:
        self.make_plan(n_rows=table.planning_rows, budget=budget, accountant=self.accountant_id)

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        if budget is None:
            raise ConfigError("dpwgan is differentially private and needs a budget")
        from privsynth_core.encoding import TableEncoder
        from privsynth_core.registry import accountants

        from ._model import train

        accountant = self.accountant_id
        plan = self.make_plan(n_rows=table.planning_rows, budget=budget, accountant=accountant)
        result: TrainResult = train(
            table,
            TableEncoder(table.schema),
            self.params,
            plan=plan,
            accountant=accountants().get(accountant)(),
            target_epsilon=budget.epsilon,
            delta=budget.delta,
            progress=progress,
            checkpoints=self.checkpoints,
        )
        self._net = result.generator
        return FitSummary(
            private=True,
            epsilon=result.epsilon,
            delta=budget.delta,
            accountant_id=accountant,
            accountant_state=result.accountant_state,
            steps=result.steps,
            epochs=result.steps / plan.steps_per_epoch,
            stopped_early=result.steps < plan.planned_steps,
            noise_multiplier=plan.noise_multiplier,
            sample_rate=plan.sample_rate,
            extra={
                "planned_steps": plan.planned_steps,
                "generator_steps": result.generator_steps,
                "noise_calibrated": plan.calibrated,
                "grad_sample_mode": self.params.grad_sample_mode,
                "device": result.device,
                "resumed_from_step": result.resumed_from,
                "lost_steps_counted": result.lost_steps,
            },
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        from privsynth_core.encoding import TableEncoder

        from ._model import sample_rows

        assert self.schema is not None
        return sample_rows(self._net, TableEncoder(self.schema), self.params, n_rows, seed=seed)

    def _save_state(self, directory: Path) -> None:
        import torch

        state = {k: v.detach().cpu() for k, v in self._net.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)

    def _load_state(self, directory: Path) -> None:
        from privsynth_core.encoding import TableEncoder

        from ._model import load_generator

        assert self.schema is not None
        self._net = load_generator(directory / WEIGHTS_FILE, TableEncoder(self.schema), self.params)


@hookimpl
def register_generators(register: Callable[[type[Generator[Any]]], None]) -> None:
    """Register the DPWGAN generator."""
    register(DPWGANGenerator)
