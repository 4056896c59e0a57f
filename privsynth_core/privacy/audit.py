"""The empirical privacy audit: attack a generator with canaries, bound its epsilon from below.

A DP claim is an *upper* bound on what the output reveals about any one record. The audit
measures a *lower* bound by attacking: if the lower bound is above the claim, the claim is false
(a privacy bug); if not, the claim stands (an audit can refute, never prove).

One audit, step by step (:func:`run_trial` for each training run, :func:`summarise` at the end):

1. **Canaries** (:func:`make_canaries`), built from the schema's public domain only, in the
   encoded space of :class:`~privsynth_core.encoding.TableEncoder` and decoded into rows:

   - *crafted outliers* (``crafted_fraction`` of them): every number at one end of its bounds
     (lower or upper, at random) and every categorical/boolean value drawn uniformly from the
     domain, so the combination is far from typical rows (rare categories are as likely as
     common ones, and jointly rare);
   - *random records*: every number uniform within its bounds, categories uniform.

   No canary is a real person's row, and none is derived from the data.
2. Each canary joins the private table with probability 1/2, independently (the secret bits).
3. The generator trains on that table under its claimed (epsilon, delta), charged against a
   **throwaway ledger** in a temporary directory: these training runs are a custodian-side
   test, not releases; their models and samples are discarded and never published.
4. **Membership score from the synthetic output only** (the attacker is a data recipient):
   minus the distance from the canary to its nearest synthetic row in the encoded space
   (numbers scaled to [-1, 1], one-hot categories). A generator that memorises a canary puts a
   synthetic row on top of it.
5. **Bound**: one-run auditing (Steinke, Nasr & Jagielski 2023; see
   :mod:`privsynth_core.privacy.audit_bounds`), pooled over all runs: guess "member" for the
   ``guess_fraction / 2`` highest scores, "non-member" for as many lowest, abstain on the rest,
   and turn the number of right guesses into a lower bound on epsilon at 95% confidence. It is
   chosen over repeated runs with Clopper-Pearson because it is valid with a single training
   run (hundreds of trainings of a GAN are out of reach) while staying a rigorous bound.
   The report also states the *ceiling*: the bound these guesses would give if every one were
   right, i.e. the most this audit could ever certify.

Limits: the attack is black-box and simple, so "not refuted" says that *this* attack found no
violation, not that the claim is tight; the training table's size (which varies with the
canaries drawn in) is treated as public, as DP-SGD accounting does everywhere in privsynth.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ..encoding import FloatArray, TableEncoder
from ..errors import ConfigError
from ..fileio import atomic_directory
from ..schema import Schema
from ..service import create_generator, fit_generator
from ..table import Table
from .audit_bounds import (
    one_run_ceiling,
    one_run_epsilon_lb,
    rates_epsilon_lb,
    roc_curve,
    select_guesses,
)
from .ledger import PrivacyLedger
from .release import total

AUDIT_FILE = "audit.json"
ROC_FILE = "roc.png"
SUMMARY_FILE = "summary.md"
CUSTODIAN_LABEL = (
    "computed on the real data and its canaries: not DP, custodian-only; the "
    "audit's training runs are tests charged to a throwaway ledger, not releases"
)


class AuditConfig(BaseModel):
    """Everything one audit needs; hashable and small, so flow tasks can take it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(description="the private CSV or Parquet file")
    schema_path: str | None = Field(
        default=None, description="reviewed schema file with a public domain"
    )
    generator: str = Field(description="generator id")
    params: dict[str, Any] = Field(default_factory=dict, description="generator parameters")
    epsilon: float = Field(gt=0, description="the claimed (target) epsilon")
    delta: float = Field(default=1e-5, ge=0, lt=1, description="the target delta")
    accountant: str = Field(default="rdp", description="accountant id for DP-SGD generators")
    canaries: int = Field(default=100, ge=4, le=100_000, description="canaries per training run")
    runs: int = Field(default=1, ge=1, le=1000, description="independent training runs")
    crafted_fraction: float = Field(
        default=0.5, ge=0, le=1, description="share of crafted outliers"
    )
    guess_fraction: float = Field(
        default=0.2, gt=0, le=1, description="share of canaries guessed (the rest abstain)"
    )
    rows: int | None = Field(
        default=None, ge=1, description="synthetic rows per run (default: the released n̂)"
    )
    confidence: float = Field(default=0.95, gt=0, lt=1, description="confidence of the bound")
    seed: int = Field(
        default=0, description="seed of canaries, inclusion bits, sampling, tie-breaks"
    )

    def __hash__(self) -> int:  # params is a dict: hash the JSON form
        return hash(self.model_dump_json())


@dataclass
class TrialResult:
    """One training run: which canaries were in, and the attack's score for each."""

    index: int
    members: list[bool]
    scores: list[float]
    kinds: list[str]
    epsilon_spent: float
    delta_spent: float
    fit_seconds: float


@dataclass
class AuditResult:
    """The audit's verdict and the figures behind it (written to ``audit.json``)."""

    generator: str
    params: dict[str, Any]
    claimed_epsilon: float
    claimed_delta: float
    epsilon_lower_bound: float
    ceiling: float
    ceiling_all_guessed: float
    refuted: bool
    confidence: float
    canaries_total: int
    runs: int
    members: int
    guesses: int
    correct: int
    auc: float
    roc: dict[str, list[float]]
    rates_epsilon_indicative: float
    method: str
    note: str = CUSTODIAN_LABEL
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


# -- canaries and trials -------------------------------------------------------------------


def make_canaries(
    schema: Schema, count: int, *, crafted_fraction: float, rng: np.random.Generator
) -> tuple[pl.DataFrame, list[str]]:
    """``count`` in-domain canary rows (crafted outliers first, then random records).

    Returns:
        The rows (the schema's columns and dtypes) and each row's kind, ``"crafted"`` or
        ``"random"``. Nullable columns always get a value (a null is no outlier).
    """
    encoder = TableEncoder(schema)
    crafted = round(count * crafted_fraction)
    kinds = ["crafted"] * crafted + ["random"] * (count - crafted)
    array = np.zeros((count, encoder.output_dim), dtype=np.float32)
    for span in encoder.spans:
        if span.role == "value":
            ends = rng.choice([-1.0, 1.0], size=crafted)
            array[:, span.start] = np.r_[ends, rng.uniform(-1.0, 1.0, size=count - crafted)]
        elif span.role == "null":
            array[:, span.start] = 1.0  # present
        else:
            slots = rng.integers(0, len(span.labels), size=count)
            array[np.arange(count), span.start + slots] = 1.0
    return encoder.decode(array), kinds


def load_table(config: AuditConfig) -> Table:
    """The private table with its public domain (a DP domain is not supported by the audit)."""
    from .domain import prepare_table

    # The domain is public, so prepare_table spends nothing: no ledger is touched here.
    return prepare_table(config.input, schema_path=config.schema_path, domain="public")


def check_config(config: AuditConfig) -> None:
    """Refuse an audit that cannot run (before any training).

    Raises:
        UnknownPluginError: no such generator.
        ConfigError: a non-DP generator (there is no claim to check), or invalid parameters.
    """
    from ..registry import generators

    cls = generators().get(config.generator)
    if not cls.is_dp:
        raise ConfigError(
            f"generator {config.generator!r} makes no DP claim, so there is "
            f"nothing to audit; pick a DP generator"
        )
    cls.make_params(config.params)
    if round(config.canaries * config.runs * config.guess_fraction / 2) < 1:
        raise ConfigError(
            "too few canaries for a single guess; raise --canaries or the guess fraction"
        )


def nearest_distances(points: FloatArray, reference: FloatArray, *, block: int = 256) -> np.ndarray:
    """Euclidean distance from each row of ``points`` to its nearest row of ``reference``."""
    if len(reference) == 0:
        return np.full(len(points), np.inf)
    ref = reference.astype(np.float64)
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    out = np.empty(len(points))
    for start in range(0, len(points), block):
        chunk = points[start : start + block].astype(np.float64)
        sq = np.einsum("ij,ij->i", chunk, chunk)[:, None] + ref_sq[None, :] - 2 * chunk @ ref.T
        out[start : start + block] = np.sqrt(np.clip(sq.min(axis=1), 0.0, None))
    return out


def run_trial(config: AuditConfig, index: int, *, table: Table | None = None) -> TrialResult:
    """One training run of the audit: canaries in, train, sample, score (see module docs).

    Args:
        config: the audit.
        index: which run (seeds its canaries, inclusion bits and sampling).
        table: the private table, if already loaded (else read from ``config.input``).
    """

    if table is None:
        table = load_table(config)
    rng = np.random.default_rng([config.seed, index])
    canaries, kinds = make_canaries(
        table.schema, config.canaries, crafted_fraction=config.crafted_fraction, rng=rng
    )
    members = rng.random(config.canaries) < 0.5
    frame = pl.concat([table.frame, canaries.filter(pl.Series(members))], how="vertical_relaxed")
    train = Table.from_frame(frame, table.schema, name=f"audit-{table.name}-run{index}")
    generator = create_generator(config.generator, config.params, accountant=config.accountant)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="privsynth-audit-") as tmp:
        # A throwaway ledger: the audit's trainings are tests on canary-augmented copies of
        # the data, never released; the user's ledger is neither charged nor consulted. Its
        # budget covers the training and the released row count.
        ledger = PrivacyLedger(Path(tmp) / "audit-ledger.sqlite")
        ledger.set_budget(
            train.budget_key(),
            epsilon=2 * config.epsilon + 1.0,
            delta=min(2 * config.delta + 1e-9, 0.5),
            label="privacy audit (throwaway)",
        )
        fit_generator(
            train,
            generator,
            epsilon=config.epsilon,
            delta=config.delta,
            ledger=ledger,
            run_id=f"audit-{index}",
        )
    summary = generator.fit_summary
    assert summary is not None
    claimed_epsilon, claimed_delta = total(summary.spent)
    fit_seconds = time.perf_counter() - started
    synthetic = generator.sample(
        config.rows or train.planning_rows, seed=int(rng.integers(0, 2**31 - 1))
    )
    encoder = TableEncoder(table.schema)
    distances = nearest_distances(encoder.encode(canaries), encoder.encode(synthetic))
    return TrialResult(
        index=index,
        members=members.tolist(),
        scores=(-distances).tolist(),
        kinds=kinds,
        epsilon_spent=claimed_epsilon,
        delta_spent=claimed_delta,
        fit_seconds=fit_seconds,
    )


# -- the verdict ---------------------------------------------------------------------------


def summarise(config: AuditConfig, trials: list[TrialResult]) -> AuditResult:
    """Pool the runs' guesses and compute the bound, ceiling, ROC and verdict."""
    scores = np.array([s for t in trials for s in t.scores])
    members = np.array([m for t in trials for m in t.members], dtype=bool)
    total = len(scores)
    # The claim checked is the generator's target epsilon with the delta it reports having
    # spent (0 for pure-epsilon generators, which then get the exact pure-DP bound).
    delta = max((t.delta_spent for t in trials), default=config.delta)
    # Fixed before the scores are seen (the bound needs that); at most half the canaries.
    k = min(max(1, round(total * config.guess_fraction / 2)), total // 2)
    rng = np.random.default_rng([config.seed, 1_000_003])
    guesses = select_guesses(scores, k_member=k, k_non_member=k, rng=rng)
    made = guesses != 0
    correct = int(((guesses == 1) & members).sum() + ((guesses == -1) & ~members).sum())
    bound = one_run_epsilon_lb(
        guesses=int(made.sum()),
        correct=correct,
        canaries=total,
        delta=delta,
        confidence=config.confidence,
    )
    roc = roc_curve(scores, members) if 0 < members.sum() < total else None
    half = select_guesses(scores, k_member=total // 2, k_non_member=total - total // 2, rng=rng)
    rates = (
        rates_epsilon_lb(
            false_positives=int(((half == 1) & ~members).sum()),
            negatives=int((~members).sum()),
            false_negatives=int(((half == -1) & members).sum()),
            positives=int(members.sum()),
            delta=delta,
            confidence=config.confidence,
        )
        if roc is not None
        else 0.0
    )
    return AuditResult(
        generator=config.generator,
        params=dict(config.params),
        claimed_epsilon=config.epsilon,
        claimed_delta=delta,
        epsilon_lower_bound=bound,
        ceiling=one_run_ceiling(
            guesses=int(made.sum()), canaries=total, delta=delta, confidence=config.confidence
        ),
        ceiling_all_guessed=one_run_ceiling(
            guesses=total, canaries=total, delta=delta, confidence=config.confidence
        ),
        refuted=bound > config.epsilon,
        confidence=config.confidence,
        canaries_total=total,
        runs=len(trials),
        members=int(members.sum()),
        guesses=int(made.sum()),
        correct=correct,
        auc=roc.auc if roc else float("nan"),
        roc={"fpr": roc.fpr, "tpr": roc.tpr} if roc else {"fpr": [], "tpr": []},
        rates_epsilon_indicative=rates,
        method=(
            "one-run audit (Steinke, Nasr & Jagielski 2023), pooled over runs; "
            f"{k} 'member' + {k} 'non-member' guesses on the extreme scores; delta handled "
            "by adding 2*m*delta to the binomial tail. Attack: minus the distance from each "
            "canary to its nearest synthetic row (encoded space)"
        ),
        trials=[asdict(t) for t in trials],
    )


def run_audit(config: AuditConfig) -> AuditResult:
    """The whole audit in this process, runs one after another (the flow fans them out)."""
    check_config(config)
    table = load_table(config)
    return summarise(config, [run_trial(config, i, table=table) for i in range(config.runs)])


# -- outputs -------------------------------------------------------------------------------


def summary_markdown(result: AuditResult) -> str:
    """A short human summary of the audit."""
    verdict = (
        "**REFUTED**: the generator leaks more than it claims (a privacy bug)"
        if result.refuted
        else "not refuted: the measured lower bound is within the claim"
    )
    return "\n".join(
        [
            f"# Privacy audit of `{result.generator}`",
            "",
            f"- claimed: epsilon = {result.claimed_epsilon:g}, delta = {result.claimed_delta:.3g}",
            f"- measured lower bound on epsilon ({result.confidence:.0%} confidence): "
            f"**{result.epsilon_lower_bound:.3f}**",
            f"- the most these guesses could certify (all right): {result.ceiling:.3f}; "
            f"if every canary were guessed: {result.ceiling_all_guessed:.3f}",
            f"- verdict: {verdict}",
            f"- {result.canaries_total} canaries over {result.runs} run(s), {result.members} "
            f"included; {result.correct} of {result.guesses} guesses right; attack AUC "
            f"{result.auc:.3f}",
            f"- Clopper-Pearson bound on FPR/FNR at the median score (indicative only, assumes "
            f"independent trials): {result.rates_epsilon_indicative:.3f}",
            "",
            f"Method: {result.method}.",
            "",
            "An audit can refute a privacy claim, never prove it: a bound below the claim means "
            "this attack found no violation.",
            "",
            f"_{result.note}._",
            "",
        ]
    )


def _plot_roc(result: AuditResult, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=110)
    try:
        ax.plot(
            result.roc["fpr"],
            result.roc["tpr"],
            drawstyle="steps-post",
            label=f"attack (AUC {result.auc:.3f})",
        )
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(
            f"{result.generator}: eps claimed {result.claimed_epsilon:g}, "
            f"lower bound {result.epsilon_lower_bound:.2f}",
            fontsize=9,
        )
        ax.legend(loc="lower right", fontsize=8)
        fig.text(
            0.01, 0.01, "computed on real data: not DP, custodian-only", fontsize=7, color="#b42318"
        )
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(target, format="png")
    finally:
        plt.close(fig)


def write_audit(result: AuditResult, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``audit.json``, ``roc.png`` and ``summary.md`` into ``directory``, atomically.

    Raises:
        InputFileError: ``directory`` exists and is not empty (unless ``overwrite``).
    """
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        (tmp / AUDIT_FILE).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        (tmp / SUMMARY_FILE).write_text(summary_markdown(result), encoding="utf-8")
        if result.roc["fpr"]:
            _plot_roc(result, tmp / ROC_FILE)
    return Path(directory)


__all__ = [
    "AuditConfig",
    "AuditResult",
    "TrialResult",
    "check_config",
    "load_table",
    "make_canaries",
    "nearest_distances",
    "run_audit",
    "run_trial",
    "summarise",
    "write_audit",
]
