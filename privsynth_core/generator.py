"""The generator contract: public ``fit`` / ``sample`` / ``save`` / ``load`` over plugin hooks.

Plugins subclass :class:`Generator` (generic over their ``Params`` model:
``class MyGenerator(Generator[MyParams])``, so ``self.params`` is typed and never re-asserted)
and implement :meth:`Generator._fit`, :meth:`Generator._sample`, :meth:`Generator._save_state`
and :meth:`Generator._load_state`. The hooks receive the table, the budget and a progress
callback: only a generator that tracks its privacy loss with an accountant plugin (DP-SGD's,
:class:`~privsynth_core.privacy.dpsgd_generator.DPSGDGenerator`) has an accountant, chosen when
it is made, and says which through :attr:`Generator.accountant_id`. The base class does what
must be right for every generator, so no plugin can get it wrong:

- a DP generator refuses a domain that was inferred from the private data and not confirmed;
- the row count n̂ is released (charged) before anything else, and is the only size a plan may
  use (:attr:`Table.planning_rows <privsynth_core.table.Table.planning_rows>`);
- an approximate accountant (one that may under-report) never calibrates, reports or settles;
- the whole target (epsilon, delta) is *reserved* in the ledger before ``_fit`` touches the data,
  then settled to what the accountant says was spent; a crash leaves the reservation counted;
- the manifest states the end-to-end guarantee (domain + row count + training) with its parts,
  and holds nothing computed from the rows outside a charged mechanism (no fingerprint, no
  timing, no ledger id: those stay in :class:`FitSummary` for the custodian's files);
- a non-DP generator is recorded as such in the ledger and labelled "not differentially private"
  in its manifest;
- sampled output is checked against the schema (columns, dtypes, bounds, categories), so a
  category outside the domain can never be released;
- ``save`` writes a JSON manifest plus the plugin's weights, atomically; no pickle of the object.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError, DomainError, GeneratorError, NotFittedError
from .fileio import atomic_directory
from .plugins import Registry, build_registry
from .privacy.ledger import PrivacyBudget, PrivacyLedger
from .privacy.release import SpentPart, statement
from .schema import ColumnKind, Schema

if TYPE_CHECKING:
    import polars as pl

    from .privacy.checkpoint import CheckpointStore
    from .table import Table

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
NOT_DP_LABEL = "NOT differentially private"


class GeneratorParams(BaseModel):
    """Base of every generator's parameter model: frozen, unknown fields rejected.

    The CLI options, the flows' config and the UI's form are generated from the subclass's
    JSON schema, so give every field a default, bounds and a ``description``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The Params model of a generator class (``Generator[MyParams]``).
P = TypeVar("P", bound=GeneratorParams)


@dataclass(frozen=True)
class Progress:
    """A progress report from a running fit or evaluation (a progress bar, or live in the UI).

    Attributes:
        epoch: units done so far (epochs, rounds, stages, metrics: see ``unit``).
        epochs: units planned in all.
        step: optimiser steps (or mechanisms run) so far.
        losses: training losses. They are computed on real rows: show them to the custodian
            only (a terminal, the custodian's page), never in a log, artifact or release.
        epsilon: privacy spent so far.
        unit: what ``epoch`` counts, singular (``"epoch"``, ``"round"``, ``"stage"``,
            ``"metric"``), for the display ("round 3/10").
        stage: what is being done now, in a few words (e.g. ``"measuring 2-way marginals"``).

    Elapsed time and the estimate of the rest are the display's to compute (from when the
    first report came and the fraction ``epoch / epochs``): a report carries no clock time.
    """

    epoch: int
    epochs: int
    step: int
    losses: dict[str, float] = field(default_factory=dict)
    epsilon: float | None = None
    unit: str = "epoch"
    stage: str = ""

    @property
    def fraction(self) -> float:
        """How much is done, between 0 and 1."""
        return min(max(self.epoch / max(self.epochs, 1), 0.0), 1.0)


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class TableProfile:
    """What a generator is told about a table when asked how well it suits it: public facts
    only (the schema, the released row count, the user's target), never the rows.

    Attributes:
        columns: how many columns the schema has.
        kinds: how many columns of each kind.
        max_categories: the longest category list (0 without categorical columns).
        rows: the released row count n̂, or None when none has been released yet.
        target: the column a model will predict, when the user named one.
    """

    columns: int
    kinds: Mapping[ColumnKind, int]
    max_categories: int = 0
    rows: int | None = None
    target: str | None = None

    @classmethod
    def of(
        cls, schema: Schema, *, rows: int | None = None, target: str | None = None
    ) -> TableProfile:
        """The profile of a table with ``schema`` (``rows``: its released row count n̂)."""
        kinds: dict[ColumnKind, int] = {}
        for column in schema.columns:
            kinds[column.kind] = kinds.get(column.kind, 0) + 1
        longest = max((len(c.categories or ()) for c in schema.columns), default=0)
        return cls(
            columns=len(schema.columns),
            kinds=kinds,
            max_categories=longest,
            rows=rows,
            target=target,
        )


@dataclass(frozen=True)
class Suitability:
    """How well a generator serves a table, as it declares it (:meth:`Generator.suitability`).

    Attributes:
        score: from 0 (cannot serve it) to 1 (as well as any generator can); the chooser
            (:func:`privsynth_core.registry.choose_generator`) takes the highest.
        why: one sentence for the user: why this score, with figures where they help.
    """

    score: float
    why: str


@dataclass
class FitSummary:
    """What a fit did and spent; written into the model manifest.

    Attributes:
        private: whether the fit was differentially private.
        epsilon: epsilon spent at ``delta`` (None for non-DP fits).
        delta: the delta of the guarantee (None for non-DP fits).
        accountant_id: accountant that computed ``epsilon``.
        accountant_state: its ``state_dict`` (to resume and to audit).
        steps: optimiser steps on private data.
        epochs: epochs completed (fractional when stopped mid-epoch).
        stopped_early: training stopped before the planned epochs because the next step would
            have exceeded the target.
        noise_multiplier: the DP-SGD noise multiplier used.
        sample_rate: the Poisson sampling rate used.
        extra: plugin-specific figures (never timings or anything else read off the rows).
        domain_mode: where the domain came from (``public`` or ``dp``).
        model_id: a random id of the fitted model.
        noisy_rows: the released row count n̂ the fit planned with (a DP output).
        dataset_fingerprint, wall_seconds, run_id, ledger_entry_id, spent: custodian-only
            (see :data:`CUSTODIAN_FIELDS`).
    """

    private: bool
    epsilon: float | None = None
    delta: float | None = None
    accountant_id: str | None = None
    accountant_state: dict[str, Any] | None = None
    steps: int = 0
    epochs: float = 0.0
    stopped_early: bool = False
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Filled in by the base class:
    domain_mode: str = ""
    model_id: str = ""
    noisy_rows: int | None = None
    # Custodian-only (never written into the model's manifest, see CUSTODIAN_FIELDS):
    dataset_fingerprint: str = ""
    wall_seconds: float = 0.0
    run_id: str = ""
    ledger_entry_id: int | None = None
    spent: list[SpentPart] = field(default_factory=list)

    def release_dict(self) -> dict[str, Any]:
        """The summary as the model's (releasable) manifest holds it."""
        data = asdict(self)
        for name in (*CUSTODIAN_FIELDS, *_TOP_LEVEL_FIELDS):
            data.pop(name, None)
        return data

    def custodian_dict(self) -> dict[str, Any]:
        """What only the custodian may see: fingerprint, timing, run and ledger ids, parts."""
        return {
            "dataset_fingerprint": self.dataset_fingerprint,
            "wall_seconds": round(self.wall_seconds, 3),
            "run_id": self.run_id,
            "ledger_entry_id": self.ledger_entry_id,
            "spent": [{**p.public(), "ledger_entry": p.entry_id} for p in self.spent],
        }


#: FitSummary fields computed from the private rows (or tying the model to the ledger) that
#: never go into a release.
CUSTODIAN_FIELDS = ("dataset_fingerprint", "wall_seconds", "run_id", "ledger_entry_id", "spent")
#: FitSummary fields the manifest holds elsewhere (at its top level).
_TOP_LEVEL_FIELDS = ("model_id",)


def partition_generators() -> list[str]:
    """Ids of the installed generators that can fit a partitioned table (sorted)."""
    registry = generators()
    return sorted(n for n in registry.names() if registry.get(n).fits_from_partitions)


def partitioned_refusal(generator_id: str) -> str:
    """The message that refuses ``generator_id`` a partitioned table, naming those that fit."""
    able = partition_generators()
    return (
        f"generator {generator_id} needs the whole table in one process and cannot fit a "
        f"partitioned table; generators that fit from partitions: "
        f"{', '.join(able) or '(none installed)'}. Pick one of them, or fit on one file (a "
        f"sample of the parts). Nothing was charged"
    )


class Generator(ABC, Generic[P]):
    """Base class of synthetic-data generators, generic over their parameter model.

    Attributes:
        generator_id: lowercase id under which the plugin registers.
        description: one line; a non-DP generator must say "not differentially private".
        is_dp: whether the generator's output is covered by a DP guarantee.
        pure_epsilon: whether that guarantee is pure epsilon-DP (delta 0).
        Params: the pydantic parameter model (a :class:`GeneratorParams` subclass); the same
            class as the type argument (``class G(Generator[GParams]): Params = GParams``).
        params: this generator's parameters, an instance of ``Params`` (typed as ``P``).

    Args:
        params: a ``Params`` instance; or keyword arguments to build one.
    """

    generator_id: ClassVar[str]
    description: ClassVar[str] = ""
    is_dp: ClassVar[bool] = True
    #: The guarantee is pure epsilon-DP (delta 0): its default delta is 0.
    pure_epsilon: ClassVar[bool] = False
    Params: ClassVar[type[GeneratorParams]] = GeneratorParams
    #: The plugin resumes interrupted training from ``self.checkpoints`` (a
    #: :class:`~privsynth_core.privacy.checkpoint.CheckpointStore`, set during ``fit``),
    #: following the protocol described in :mod:`privsynth_core.privacy.checkpoint`.
    supports_checkpoints: ClassVar[bool] = False
    #: The plugin can fit a partitioned table (:class:`~privsynth_core.partitions.
    #: PartitionedTable`, rows held as partition files, no frame): its ``_fit`` reads the rows
    #: only through :meth:`Table.column_histograms
    #: <privsynth_core.table.Table.column_histograms>` (exact counts, summed over partitions
    #: on the cluster, that it then noises), never ``table.frame``. :meth:`fit` refuses a
    #: partitioned table to every other generator before anything is charged.
    fits_from_partitions: ClassVar[bool] = False

    def __init__(self, params: P | None = None, **kwargs: Any) -> None:
        if params is not None and kwargs:
            raise ConfigError("pass either a Params object or keyword parameters, not both")
        made = self.make_params(kwargs) if params is None else params
        if not isinstance(made, self.Params):
            raise ConfigError(
                f"{self.generator_id} expects {self.Params.__name__}, got {type(made).__name__}"
            )
        # ``Params`` is the class of ``P`` (checked just above), which a ClassVar cannot say.
        self.params: P = cast(P, made)
        self.schema: Schema | None = None
        self.fit_summary: FitSummary | None = None
        self.checkpoints: CheckpointStore | None = None

    @classmethod
    def make_params(cls, values: dict[str, Any]) -> GeneratorParams:
        """Validate ``values`` into the generator's ``Params``.

        Raises:
            ConfigError: unknown names or invalid values, all listed.
        """
        try:
            return cls.Params(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}"
                for e in exc.errors()
            )
            known = ", ".join(cls.Params.model_fields) or "(none)"
            raise ConfigError(
                f"invalid parameters for generator {cls.generator_id!r}: {problems}. "
                f"Known parameters: {known}"
            ) from None

    # -- public API ---------------------------------------------------------------------------

    @property
    def accountant_id(self) -> str | None:
        """The accountant plugin that tracks this generator's privacy loss, or None.

        None for a generator that composes its own mechanisms (it names its accounting in
        :attr:`FitSummary.accountant_id`, e.g. zCDP for MST and AIM, and needs no accountant
        plugin); a DP-SGD generator returns the one chosen when it was made
        (:class:`~privsynth_core.privacy.dpsgd_generator.DPSGDGenerator`). The base class
        checks that it is one that may settle a fit, and records it with the reservation.
        """
        return None

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has completed."""
        return self.fit_summary is not None

    def fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        ledger: PrivacyLedger | None = None,
        run_id: str | None = None,
        progress: ProgressCallback | None = None,
        checkpoints: CheckpointStore | None = None,
        ledger_params: Mapping[str, Any] | None = None,
    ) -> FitSummary:
        """Train on a private table, spending at most ``budget``.

        Args:
            table: the private data and its schema.
            budget: the (epsilon, delta) target of this fit; ``None`` for a non-DP generator.
            ledger: where the spending is recorded; default: the user's ledger. The dataset
                must have a budget there that covers ``budget``.
            run_id: ties the ledger entry to a run; a fresh one is made if omitted.
            progress: called with a :class:`Progress` as training advances.
            checkpoints: where a generator with ``supports_checkpoints`` saves checkpoints; if
                it holds an interrupted attempt at the same training (same dataset and budget,
                reservation still open), training resumes under that attempt's reservation
                instead of reserving again. Ignored by generators without checkpoint support.
            ledger_params: recorded with the fit's ledger entry from the moment it is made (the
                model store's key, so that a reservation left open by a killed fit is found:
                :mod:`privsynth_core.store`).

        Raises:
            ConfigError: a DP generator got no budget, or a non-DP generator got one.
            DomainError: a DP fit on a domain inferred from the data and never confirmed.
            BudgetNotSetError, BudgetExceededError: the ledger cannot cover ``budget``.
        """
        run_id = run_id or uuid.uuid4().hex
        self._check_fit_inputs(table, budget)
        ledger = ledger or PrivacyLedger()
        key, fingerprint = table.budget_key(), table.fingerprint()
        started = time.perf_counter()
        if budget is None:
            entry = ledger.record_non_private(
                key,
                mechanism=self.generator_id,
                run_id=run_id,
                extract=fingerprint,
                params={**self.params.model_dump(mode="json"), **dict(ledger_params or {})},
            )
            summary = self._fit(table, budget=None, progress=progress)
            summary.private = False
            spent: list[SpentPart] = []
            summary_rows = None
        else:
            from .privacy.accountant import settling_accountant
            from .privacy.count import COUNT_MECHANISM, ensure_row_count

            if self.accountant_id is not None:
                settling_accountant(self.accountant_id)
            # What can be refused without any size is refused before anything is charged.
            self._check_params(table, budget=budget)
            # The size every plan uses is the released count, never the table's own.
            count = ensure_row_count(
                ledger,
                key,
                extract=fingerprint,
                n_rows=table.n_rows,
                run_id=run_id,
                also_needed=budget,
            )
            table.noisy_rows = summary_rows = count.value
            # Cheap checks that do not read the data (e.g. "this budget allows 0 steps") come
            # first, so a refused plan spends nothing more.
            self._check_plan(table, budget=budget)
            self.checkpoints = checkpoints if self.supports_checkpoints else None
            resumed = (
                self.checkpoints.open_reservation(ledger, fingerprint=key, budget=budget)
                if self.checkpoints is not None
                else None
            )
            entry = resumed or ledger.reserve(
                key,
                mechanism=f"{self.generator_id} training",
                epsilon=budget.epsilon,
                delta=budget.delta,
                run_id=run_id,
                extract=fingerprint,
                params={
                    "generator": self.generator_id,
                    **({"accountant": self.accountant_id} if self.accountant_id else {}),
                    **self.params.model_dump(mode="json"),
                    **dict(ledger_params or {}),
                },
            )
            if self.checkpoints is not None and resumed is None:
                self.checkpoints.record_reservation(entry)
            summary = self._fit(table, budget=budget, progress=progress)
            if summary.epsilon is None or summary.delta is None:
                raise GeneratorError(
                    f"generator {self.generator_id} did not report the epsilon it spent; the "
                    f"reservation of {budget} stays charged. This is a bug in the plugin"
                )
            if summary.epsilon > budget.epsilon * (1 + 1e-9) or summary.delta > budget.delta:
                # The reservation stays charged in full: it is the most the ledger can record.
                raise GeneratorError(
                    f"generator {self.generator_id} spent epsilon={summary.epsilon:.6g}, over its "
                    f"target {budget.epsilon:g}; its output must not be used. This is a bug"
                )
            ledger.settle(
                entry.entry_id,
                epsilon=summary.epsilon,
                delta=summary.delta,
                # the accounting the fit reports (AIM and MST compose in zCDP, DP-SGD names
                # its accountant plugin)
                params={
                    "steps": summary.steps,
                    "noise_multiplier": summary.noise_multiplier,
                    "sample_rate": summary.sample_rate,
                    "accountant": summary.accountant_id or self.accountant_id,
                },
            )
            summary.private = True
            spent = [
                *table.spent,
                SpentPart("row count", COUNT_MECHANISM, count.epsilon, 0.0, count.entry_id),
                SpentPart(
                    "training",
                    f"{self.generator_id} training",
                    summary.epsilon,
                    summary.delta,
                    entry.entry_id,
                ),
            ]
        summary.dataset_fingerprint = fingerprint
        summary.domain_mode = table.schema.domain
        summary.wall_seconds = time.perf_counter() - started
        summary.run_id = run_id
        summary.ledger_entry_id = entry.entry_id
        summary.model_id = uuid.uuid4().hex
        summary.noisy_rows = summary_rows
        summary.spent = spent
        self.schema = table.schema
        self.fit_summary = summary
        return summary

    def sample(self, n_rows: int, *, seed: int | None = None) -> pl.DataFrame:
        """Draw ``n_rows`` synthetic rows; the same fitted model and seed give the same rows.

        Raises:
            NotFittedError: before :meth:`fit` or :meth:`load`.
            ConfigError: ``n_rows`` is negative.
            GeneratorError: the plugin produced output outside the schema (a plugin bug).
        """
        if not self.is_fitted or self.schema is None:
            raise NotFittedError(
                f"generator {self.generator_id} is not fitted; call fit() or load a saved model"
            )
        if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 0:
            raise ConfigError(f"number of rows must be an integer >= 0, got {n_rows!r}")
        from .validation import check_synthetic

        frame = self._sample(n_rows, seed=seed)
        return check_synthetic(frame, self.schema, generator_id=self.generator_id)

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest that describes this fitted model."""
        if self.fit_summary is None or self.schema is None:
            raise NotFittedError(f"generator {self.generator_id} is not fitted; nothing to save")
        from ._version import __version__

        summary = self.fit_summary
        return {
            "format_version": MANIFEST_FORMAT_VERSION,
            "generator_id": self.generator_id,
            "privsynth_version": __version__,
            "model_id": summary.model_id,
            "differentially_private": summary.private,
            "privacy": (
                {
                    **statement(summary.spent, accountant=summary.accountant_id),
                    "domain": summary.domain_mode,
                }
                if summary.private
                else {"label": NOT_DP_LABEL}
            ),
            "params": self.params.model_dump(mode="json"),
            "schema": self.schema.release_dict(),
            "fit": summary.release_dict(),
        }

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted model to directory ``path``: ``manifest.json`` plus weights.

        Raises:
            NotFittedError: the generator is not fitted.
            InputFileError: ``path`` exists and is not empty (unless ``overwrite``).
        """
        manifest = self.manifest()
        with atomic_directory(path, overwrite=overwrite) as tmp:
            self._save_state(tmp)
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return Path(path)

    # -- choosing a generator ---------------------------------------------------------------------

    @classmethod
    def suitability(cls, profile: TableProfile) -> Suitability | None:
        """How well this generator serves a table like ``profile``; override to declare it.

        Called by :func:`privsynth_core.registry.choose_generator` (``privsynth fit`` without
        ``--generator``, the demo, the web app) for every installed DP generator, so core can
        choose without naming any plugin. Read only the profile (public facts: width, kinds,
        the released row count when there is one, the target); keep it cheap, with no imports
        of heavy libraries. Scores of the built-ins, for calibration: a generator that keeps
        no relationship between columns 0.2, a DP-SGD GAN 0.4-0.6, marginal-based generators
        within their limits 0.85-0.95.

        Returns:
            A :class:`Suitability`, or None for no opinion (chosen only when nothing installed
            has one).
        """
        return None

    @classmethod
    def params_for_target(cls, values: Mapping[str, Any], target: str | None) -> dict[str, Any]:
        """``values`` (parameters given by the user) with the user's target column applied.

        The default sets a ``target`` parameter when the generator's ``Params`` has one and
        the user did not set it (absent or empty); a generator whose use of the target is
        spelled differently overrides this. Without a target nothing changes. The target is
        public (the user's choice), so it may shape a fit and be written in its manifest.
        :class:`~privsynth_core.runs.config.RunConfig` applies it (so ``privsynth run``, the flows
        and the web app get it), and so does ``privsynth fit --target``.
        """
        out = dict(values)
        if target is not None and "target" in cls.Params.model_fields and not out.get("target"):
            out["target"] = target
        return out

    # -- plugin hooks ---------------------------------------------------------------------------

    def check_params(self, table: Table, *, budget: PrivacyBudget) -> None:
        """Refuse, before anything is charged, what needs no size to refuse (see
        :meth:`_check_params`); callers that release something before :meth:`fit` (the row
        count) call it first.

        Raises:
            ConfigError, AccountingError: the parameters or the budget do not fit the table (or
                it is partitioned and this generator does not fit from partitions).
        """
        if table.partitioned and not self.fits_from_partitions:
            raise ConfigError(partitioned_refusal(self.generator_id))
        if self.accountant_id is not None:
            from .privacy.accountant import settling_accountant

            settling_accountant(self.accountant_id)
        self._check_params(table, budget=budget)

    def _check_params(self, table: Table, *, budget: PrivacyBudget) -> None:
        """Refuse, before anything at all is charged, what needs no size to refuse: parameters
        that do not fit the schema, a device that is not there, a delta the analysis cannot use.

        Must not read the table's values or its size. The default accepts everything.
        """
        return None

    def _check_plan(self, table: Table, *, budget: PrivacyBudget) -> None:
        """Refuse a DP plan before the training is reserved (e.g. the budget allows no step).

        Runs after the row count is released (it needs n̂), so a refusal here costs that
        count's small epsilon only, and the count is reused by the next attempt.

        Must not read the table's values, nor its exact size: the only size a plan may use is
        ``table.planning_rows``, the released row count. The default accepts every plan.
        """
        return None

    @abstractmethod
    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        """Train; return what was spent (``epsilon`` and ``delta`` must be set for DP fits)."""

    @abstractmethod
    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        """Return ``n_rows`` rows with the schema's columns (the base class checks them)."""

    @abstractmethod
    def _save_state(self, directory: Path) -> None:
        """Write the model's weights (e.g. ``torch.save(state_dict)``) into ``directory``."""

    @abstractmethod
    def _load_state(self, directory: Path) -> None:
        """Read back what :meth:`_save_state` wrote (``self.params``/``self.schema`` are set)."""

    # -- internals ------------------------------------------------------------------------------

    def _check_fit_inputs(self, table: Table, budget: PrivacyBudget | None) -> None:
        if table.partitioned and not self.fits_from_partitions:
            raise ConfigError(partitioned_refusal(self.generator_id))
        if self.is_dp and budget is None:
            raise ConfigError(
                f"generator {self.generator_id} is differentially private and needs a target "
                f"budget (epsilon, delta)"
            )
        if not self.is_dp and budget is not None:
            raise ConfigError(
                f"generator {self.generator_id} is {NOT_DP_LABEL}: it cannot spend a privacy "
                f"budget; run it without epsilon, or pick a DP generator"
            )
        if self.is_dp and table.schema.domain == "inferred":
            raise DomainError(
                "the schema's domain was inferred from the private data (its bounds and "
                "categories are not private); review it and declare it public "
                "(`privsynth schema confirm`, or `domain: public` in the file), or learn it with "
                "DP (--domain dp)"
            )
        if self.is_dp and table.schema.missing_domains:
            raise DomainError(
                "a DP fit needs a domain for every column; missing for: "
                + ", ".join(table.schema.missing_domains)
            )


def generators() -> Registry[Generator[Any]]:
    """The registry of generator classes."""
    return build_registry("generator", Generator, "generator_id", "register_generators")
