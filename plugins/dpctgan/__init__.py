"""The ``dpctgan`` generator: CTGAN made differentially private, end to end (DESIGN §4).

CTGAN (Xu et al. 2019) is a conditional GAN for tables: a residual generator, a critic of
``Linear -> LeakyReLU -> Dropout`` layers, and *conditional vectors* that tell the generator which
category of one discrete column to produce, so rare categories are not lost. The public DP
versions of it leak (GMM modes and category frequencies fitted on raw data, training-by-sampling
row selection, pac > 1, gradient penalties on real data outside the clipped path, budgets overshot
in the last epoch). This one keeps CTGAN's architecture and conditional idea and changes every
piece that touches the private table:

- **encoding from the domain and DP outputs only** (``_encoding``, ``_cells``): CTGAN's
  mode-specific normalisation with the Gaussian-mixture modes (fitted on raw data) replaced:
  each number is one-hot over its values for integers with few of them, else one-hot over cells
  *learned under DP* in the marginals release (a tree of noisy histograms over a fine public
  grid of its bounds; point masses become cells of their own) plus a scalar for its place inside
  the cell; categories come from the schema. Built on the shared
  :class:`privsynth_core.encoding.TableEncoder`; nothing is fitted on the data outside the
  release (``numeric_cells = "equal_width"``: equal-width bins of the bounds, as before);
- **conditional vectors from DP-noised marginals** (``_marginals``): one Gaussian-noised
  histogram per column, released once and charged inside the same budget (see "budget split").
  The critic's real side takes each sampled record's *own* category of a randomly chosen discrete
  column as its condition (a function of that record only, so it stays inside its clipped
  gradient); the fake side draws conditions from the noisy marginals, as CTGAN's sampler draws
  them from the training frequencies. No ``log_frequency``, no row selection by category;
  ``marginals_share = 0`` drops conditional vectors altogether;
- the generator also gets a **marginal loss**: the KL divergence from the noisy marginals to its
  own expected marginals (post-processing of the release, free). With ``focus_columns`` (e.g. the
  column a model will predict) the two-way marginals of each focus column with every other column
  are released too, inside the same budget, and matched the same way;
- **Poisson sampling** over the whole table (each row independently with rate
  ``q = batch_size / n_rows``), **pac = 1**, **per-record clipping** to ``max_grad_norm`` and
  Gaussian noise of std ``sigma * max_grad_norm`` on the critic only (Opacus; ghost clipping by
  default), averaged by the *expected* batch size ``q * n`` (a public constant);
- **no BatchNorm in the critic**, and **no gradient penalty**: WGAN-GP's penalty on
  interpolates of real and fake rows is a gradient term of real data outside the per-record
  clipped path, so it is dropped. The critic is trained with the (non-saturating) GAN loss
  (``critic_loss = "bce"``, default: bounded, needs no Lipschitz constraint) or the Wasserstein
  loss with weight clipping (``"wgan"``);
- the generated rows in a critic step read no private data and their number is the public
  constant ``round(q * n)``, never the size of the sampled real batch (that would let one record
  move two gradients); they go through the same clipped path only to keep both halves of the loss
  on one scale. Generator steps read no private data and cost nothing;
- **accounting**: sigma is calibrated with the chosen accountant plugin so that the noisy
  marginals *composed with* the planned DP-SGD steps end at or under the target; training stops
  *before* a step would pass it, and the epsilon reported is the accountant's value for the
  marginals plus the steps actually taken;
- the DP noise, the Poisson sampler and the marginals' noise draw from fresh OS randomness,
  never from ``seed`` (a known seed would let anyone replay the noise). ``seed`` fixes weight
  initialisation, latent draws and condition choices only.

**Budget split.** With ``k`` released histograms (one per column, a binned number's one
replaced by the ``L`` levels of its tree, plus the focus pairs), each record adds one count to
at most one cell of each, so together they have L2 sensitivity ``sqrt(k)`` (add/remove one
record). Each count gets Gaussian noise of std ``sigma_m * sqrt(k)``. The focus pairs are
measured over the learned cells, so after the rest: two releases of ``k1`` and ``k2``
histograms (``_marginals.release_with_cells``) with noise multipliers
``sigma_m * sqrt(k / k_i)``, the same noise per count; as ``1 / sigma_1^2 + 1 / sigma_2^2 =
1 / sigma_m^2``, they compose to exactly the Gaussian mechanism with noise multiplier
``sigma_m``. The accountant records each as one step at sample rate 1, composed with the
DP-SGD steps that follow. The split is made in
Gaussian-DP terms, where privacy costs add up as mu squared: with ``mu`` the mu-GDP equivalent of
the target (epsilon, delta), ``sigma_m = 1 / (sqrt(marginals_share) * mu)`` (share 0.1 by
default, 0.3 with focus columns), and DP-SGD's sigma is then calibrated by the chosen accountant
on the *composition* of both, so the total is the target. (A split in epsilon terms would be
misleading: composition is sub-additive, and RDP cannot even certify a small epsilon for one
Gaussian release at delta 1e-5.) The reported epsilon is the accountant's composed total; the fit
summary also gives what DP-SGD alone would have spent, so the marginals' real price is visible.

torch and opacus load inside the methods (see ``_model``), so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from privsynth_core import (
    AccountingError,
    ConfigError,
    FitSummary,
    Generator,
    GeneratorParams,
    hookimpl,
)
from privsynth_core.generator import Suitability, TableProfile
from privsynth_core.privacy.cells import point_masses
from privsynth_core.privacy.dpsgd_generator import DPSGDGenerator

if TYPE_CHECKING:
    import polars as pl

    from privsynth_core import PrivacyBudget, Schema, Table
    from privsynth_core.generator import ProgressCallback

    from ._plan import DPPlan

WEIGHTS_FILE = "generator.pt"
MARGINALS_FILE = "marginals.json"
#: ``format`` of MARGINALS_FILE since the numeric cells are learned and stored with the noisy
#: marginals; a file without it (a plain column -> probabilities object) is an older model,
#: loaded with the equal-width bins it was trained on.
MARGINALS_FORMAT = 2


def parse_widths(value: Any) -> Any:
    """Accept layer widths as ``"256,256"`` (CLI, forms) or any sequence of ints."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            msg = f"layer widths must be integers like '256,256', got {value!r}"
            raise ValueError(msg) from None
    return value


class DPCTGANParams(GeneratorParams):
    """Parameters of DP-CTGAN. The budget (epsilon, delta) comes from the fit, not from here."""

    epochs: int | None = Field(
        30,
        ge=1,
        le=100_000,
        description="planned passes over the data (n_rows / batch_size critic steps each); "
        "empty: as many as the budget allows at noise_multiplier. Training stops "
        "early if the next step would exceed the budget",
    )
    batch_size: int = Field(
        1000,
        ge=2,
        le=1_000_000,
        description="expected Poisson batch size; sample rate q = batch_size / n_rows",
    )
    noise_multiplier: float | None = Field(
        None,
        gt=0.0,
        le=10_000.0,
        description="DP-SGD noise multiplier sigma; empty: calibrated so that the planned epochs "
        "meet the target (1.0 when epochs is empty too)",
    )
    max_grad_norm: float = Field(
        1.0,
        gt=0.0,
        le=10_000.0,
        description="per-record gradient clipping bound (L2 norm)",
    )
    marginals_share: float | None = Field(
        None,
        ge=0.0,
        le=0.9,
        description="share of the budget (in Gaussian-DP terms) for the noisy marginals behind "
        "the conditional vectors and the marginal loss (the composed total stays the "
        "target); empty: 0.1, or 0.3 with focus_columns; 0: no marginals, no "
        "conditional vectors",
    )
    focus_columns: tuple[str, ...] = Field(
        (),
        max_length=8,
        description="columns whose two-way marginals with every other column are also released "
        "(noised, inside the same budget) and matched by the generator, e.g. the "
        "column a model will predict; empty: one-way marginals only",
    )
    critic_loss: Literal["bce", "wgan"] = Field(
        "bce",
        description="bce: non-saturating GAN loss; wgan: Wasserstein loss with weight "
        "clipping (no gradient penalty: it would read real data unclipped)",
    )
    critic_weight_clip: float = Field(
        0.05,
        gt=0.0,
        le=100.0,
        description="weight clipping bound of the wgan critic",
    )
    generator_lr: float = Field(2e-4, gt=0.0, le=1.0, description="generator learning rate")
    critic_lr: float = Field(2e-4, gt=0.0, le=1.0, description="critic learning rate")
    generator_decay: float = Field(1e-6, ge=0.0, le=1.0, description="generator weight decay")
    generator_steps: int = Field(
        1,
        ge=1,
        le=100,
        description="generator steps per critic step (they read no private data: free)",
    )
    generator_dim: tuple[int, ...] = Field(
        (256, 256),
        min_length=1,
        max_length=16,
        description="widths of the generator's residual layers, e.g. '256,256'",
    )
    critic_dim: tuple[int, ...] = Field(
        (256, 256),
        min_length=1,
        max_length=16,
        description="widths of the critic's layers (LeakyReLU + Dropout, no BatchNorm)",
    )
    critic_dropout: float = Field(0.5, ge=0.0, lt=1.0, description="critic dropout rate")
    embedding_dim: int = Field(128, ge=1, le=4096, description="latent noise dimension")
    marginal_loss_weight: float = Field(
        1.0,
        ge=0.0,
        le=1000.0,
        description="weight of the generator's loss pulling its column marginals towards the "
        "noisy marginals (post-processing: free); 0 turns it off",
    )
    numeric_bins: int = Field(
        20,
        ge=2,
        le=1000,
        description="cells per binned number (CTGAN's modes: learned under DP, or equal-width "
        "bins of its bounds); also the most marginal groups per number",
    )
    numeric_cells: Literal["learned", "equal_width"] = Field(
        "learned",
        description="cells of the binned numbers (those not one-hot over their values): learned "
        "from noisy trees of histograms in the marginals release (point masses become cells "
        "of their own; needs marginals_share > 0), or equal_width bins of the bounds",
    )
    max_exact_values: int = Field(
        100,
        ge=0,
        le=10_000,
        description="integer columns with at most this many values are one-hot over their values",
    )
    gumbel_tau: float = Field(0.2, gt=0.0, le=10.0, description="Gumbel-softmax temperature")
    grad_sample_mode: Literal["ghost", "hooks", "functorch"] = Field(
        "ghost",
        description="Opacus per-record clipping: ghost (fastest), hooks or functorch",
    )
    num_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="CPU threads for torch while fitting (1 is fastest for these small "
        "networks, especially on a shared machine)",
    )
    seed: int | None = Field(
        None,
        ge=0,
        description="seeds weight initialisation, latent draws and condition choices "
        "(never the DP noise or the Poisson sampler)",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="cpu, cuda or auto")

    @field_validator("generator_dim", "critic_dim", mode="before")
    @classmethod
    def _parse_widths(cls, value: Any) -> Any:
        return parse_widths(value)

    @field_validator("focus_columns", mode="before")
    @classmethod
    def _parse_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("generator_dim", "critic_dim")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 or w > 8192 for w in value):
            raise ValueError("every layer width must be between 1 and 8192")
        return value


class DPCTGANGenerator(DPSGDGenerator[DPCTGANParams]):
    """DP-CTGAN: CTGAN's architecture and conditional training with DP-SGD on the critic."""

    generator_id = "dpctgan"
    description = (
        "DP-CTGAN: CTGAN's conditional GAN, critic trained with DP-SGD (Poisson sampling, "
        "per-record clipping, pac=1), conditions from DP-noised marginals, domain-only encoding"
    )
    is_dp = True
    also_releases = "noisy marginals (and the numbers' learned cells) released before DP-SGD"
    # A partitioned table's marginals are exact counts summed over its partitions on the
    # cluster (Table.reduce, two passes); then its rows are spooled to local files one
    # partition at a time (privsynth_core.privacy.dpsgd_spool) for DP-SGD's batches. The
    # table is never held whole.
    fits_from_partitions = True
    Params = DPCTGANParams

    def __init__(self, params: DPCTGANParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._net: Any = None  # the torch generator network, on CPU once fitted
        self._marginals: dict[str, list[float]] = {}
        self._cells: dict[str, Any] = {}  # column -> LearnedCells (a mechanism output)
        self._plan: tuple[tuple[Any, ...], DPPlan] | None = None

    @classmethod
    def suitability(cls, profile: TableProfile) -> Suitability:
        """The best built-in on mixed tables with thousands of rows; weak on few rows."""
        if profile.rows is not None and profile.rows < 2000:
            return Suitability(
                0.35,
                f"DP-CTGAN: a DP-SGD GAN, which learns little from "
                f"{profile.rows:,} rows at a small epsilon",
            )
        return Suitability(
            0.6,
            "DP-CTGAN: the most faithful built-in generator (conditional "
            "GAN with DP-noised marginals)",
        )

    @classmethod
    def params_for_target(cls, values: Mapping[str, Any], target: str | None) -> dict[str, Any]:
        """With a target and no ``focus_columns`` given, focus on the target: its two-way
        marginals with every other column are released (inside the same budget) and matched,
        which is what a model predicting it needs (TSTR AUC 0.52 -> 0.88 on Adult, epsilon 1)."""
        out = dict(values)
        if target is not None and not out.get("focus_columns"):
            out["focus_columns"] = [target]
        return out

    # -- the plan ---------------------------------------------------------------------------

    @classmethod
    def dp_plan(cls, *, n_rows: int, params: GeneratorParams) -> tuple[float, int]:
        """The Poisson sample rate and number of DP-SGD steps a fit of ``n_rows`` rows plans.

        One epoch is ``round(n_rows / batch_size)`` critic steps (at least one); each is one
        accounted step. Generator steps read no private data and are not counted. The noisy
        marginals (one Gaussian release at sample rate 1) come on top: see :meth:`make_plan`.

        Raises:
            ConfigError: ``n_rows`` < 1, or ``epochs`` is empty (the step count then depends on
                the budget; use :meth:`make_plan`).
        """
        assert isinstance(params, DPCTGANParams)
        if n_rows < 1:
            raise ConfigError(f"the table needs at least one row, got {n_rows}")
        if params.epochs is None:
            raise ConfigError(
                "epochs is empty (as many as the budget allows): the number of steps depends "
                "on the budget; set epochs to preview a fixed plan"
            )
        sample_rate = min(1.0, params.batch_size / n_rows)
        steps_per_epoch = max(1, round(n_rows / params.batch_size))
        return sample_rate, steps_per_epoch * params.epochs

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
        """What ``privsynth privacy`` prints for DP-CTGAN: the sigma a target needs.

        DP-CTGAN releases noisy marginals before DP-SGD and calibrates their noise from the
        target, so only a target epsilon can be priced (a bare DP-SGD sigma would leave the
        marginals out and under-report), and the schema is needed (it says which marginals).

        Raises:
            ConfigError: ``sigma`` was given instead of a target, or no schema was given.
        """
        from privsynth_core import PrivacyBudget

        if epsilon is None or sigma is not None:
            raise ConfigError(
                "dpctgan spends part of its budget on noisy marginals calibrated from the target "
                "epsilon, so a bare DP-SGD sigma cannot be priced honestly; give --epsilon (the "
                "output is the DP-SGD sigma that target leaves)"
            )
        if schema is None:
            raise ConfigError("dpctgan's plan depends on the table's columns: give --schema")
        assert isinstance(params, DPCTGANParams)
        generator = cls(params)
        plan = generator.make_plan(
            n_rows=n_rows,
            schema=schema,
            budget=PrivacyBudget(epsilon, delta),
            accountant=accountant,
        )
        return plan.noise_multiplier

    def make_plan(
        self, *, n_rows: int, schema: Schema, budget: PrivacyBudget, accountant: str
    ) -> DPPlan:
        """Work out the marginals' noise, DP-SGD's sigma and how many steps the budget allows.

        Reads only public things: the released row count n̂, the schema and the parameters.

        Raises:
            AccountingError: the budget allows no training step, or no noise reaches it.
            ConfigError: a parameter does not fit the schema.
            UnknownPluginError: no such accountant.
        """
        from ._plan import make_plan

        key = (n_rows, tuple(schema.names), budget.epsilon, budget.delta, accountant)
        if self._plan is None or self._plan[0] != key:
            plan = make_plan(
                n_rows=n_rows,
                schema=schema,
                params=self.params,
                budget=budget,
                accountant=accountant,
            )
            self._plan = (key, plan)
        return self._plan[1]

    # -- Generator hooks --------------------------------------------------------------------

    def _check_params(self, table: Table, *, budget: PrivacyBudget) -> None:
        from privsynth_core.privacy.dpsgd import resolve_device

        resolve_device(self.params.device)
        unknown = [c for c in self.params.focus_columns if c not in table.schema.names]
        if unknown:
            raise ConfigError(
                f"focus_columns names column(s) not in the schema: {', '.join(unknown)}; "
                f"columns: {', '.join(table.schema.names)}"
            )
        if not 0 < budget.delta < 1:
            raise AccountingError(
                f"DP-SGD needs a delta in (0, 1), got {budget.delta:g}; use "
                f"one well below 1/rows, e.g. 1e-5"
            )

    def _check_plan(self, table: Table, *, budget: PrivacyBudget) -> None:
        self.make_plan(
            n_rows=table.planning_rows,
            schema=table.schema,
            budget=budget,
            accountant=self.accountant_id,
        )

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        if budget is None:
            raise ConfigError("dpctgan is differentially private and needs a budget (epsilon)")
        from privsynth_core.registry import accountants

        from ._model import train
        from ._plan import composed_epsilon

        accountant = self.accountant_id
        plan = self.make_plan(
            n_rows=table.planning_rows, schema=table.schema, budget=budget, accountant=accountant
        )
        acc_cls = accountants().get(accountant)
        result = train(
            table,
            self.params,
            plan=plan,
            accountant=acc_cls(),
            target_epsilon=budget.epsilon,
            delta=budget.delta,
            progress=progress,
            checkpoints=self.checkpoints,
        )
        self._net = result.generator
        self._marginals = result.marginals
        self._cells = result.cells
        sgd_alone = (
            composed_epsilon(
                acc_cls, [(plan.noise_multiplier, plan.sample_rate, result.steps)], budget.delta
            )
            if result.steps
            else 0.0
        )
        planned = plan.planned_steps
        return FitSummary(
            private=True,
            epsilon=result.epsilon,
            delta=budget.delta,
            accountant_id=accountant,
            accountant_state=result.accountant_state,
            steps=result.steps,
            epochs=result.steps / plan.steps_per_epoch,
            stopped_early=planned is not None and result.steps < planned,
            noise_multiplier=plan.noise_multiplier,
            sample_rate=plan.sample_rate,
            extra={
                "planned_steps": planned,
                "allowed_steps": plan.allowed_steps,
                "noise_calibrated": plan.calibrated,
                "budget_split": {
                    "marginals_share": plan.marginals_share,
                    "marginals_noise_multiplier": plan.marginals_noise,
                    "marginals_columns": list(plan.marginal_columns),
                    "focus_columns": list(self.params.focus_columns),
                    "marginal_tables": result.n_tables,
                    "released_histograms": plan.released_histograms,
                    "releases": [
                        {"noise_multiplier": sigma, "histograms": k}
                        for sigma, k in plan.release_steps
                    ],
                    "numeric_cells": list(plan.cell_columns),
                    "dpsgd_epsilon_alone": sgd_alone,
                    "total_epsilon_composed": result.epsilon,
                    "composition": f"{accountant} accountant over the marginals (Gaussian "
                    f"releases at sample rate 1, one step each) and the DP-SGD steps",
                },
                "point_masses": point_masses(result.cells, table.schema),
                "generator_steps": result.generator_steps,
                "grad_sample_mode": self.params.grad_sample_mode,
                "device": result.device,
                "resumed_from_step": result.resumed_from,
                "lost_steps_counted": result.lost_steps,
                "plan": {
                    k: v
                    for k, v in asdict(plan).items()
                    if k not in ("marginal_columns", "cell_columns")
                },
            },
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        from ._model import make_encoder, sample_rows

        assert self.schema is not None
        return sample_rows(
            self._net,
            make_encoder(self.schema, self.params, self._cells),
            self._marginals,
            self.params,
            n_rows,
            seed=seed,
        )

    def _save_state(self, directory: Path) -> None:
        import json

        import torch

        state = {k: v.detach().cpu() for k, v in self._net.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        # The noisy marginals and the cells learned with them are DP outputs (released once,
        # accounted): safe to store.
        from ._cells import cells_state

        stored = {
            "format": MARGINALS_FORMAT,
            "one_way": self._marginals,
            "cells": cells_state(self._cells),
        }
        (directory / MARGINALS_FILE).write_text(json.dumps(stored), encoding="utf-8")

    def _load_state(self, directory: Path) -> None:
        import json

        from privsynth_core import GeneratorError

        from ._cells import cells_from_state, learned_columns
        from ._model import load_generator, make_encoder

        assert self.schema is not None
        path = directory / MARGINALS_FILE
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(stored, dict):
                raise ValueError("not a JSON object")
            if stored.get("format") == MARGINALS_FORMAT:
                self._marginals = stored["one_way"]
                self._cells = cells_from_state(
                    stored["cells"], learned_columns(self.schema, self.params)
                )
            else:  # saved before cells were learned: equal-width bins, as it was trained
                self._marginals, self._cells = stored, {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GeneratorError(
                f"cannot read {path}: {exc}; the model directory is damaged"
            ) from None
        encoder = make_encoder(self.schema, self.params, self._cells)
        self._net = load_generator(directory / WEIGHTS_FILE, encoder, self._marginals, self.params)


@hookimpl
def register_generators(register: Callable[[type[Generator[Any]]], None]) -> None:
    """Register the DP-CTGAN generator."""
    register(DPCTGANGenerator)
