"""The statistics of the privacy audit: from membership guesses to a lower bound on epsilon.

Two bounds live here; :mod:`privsynth_core.privacy.audit` reports the first and shows the second for
comparison.

**One-run auditing** (Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023). ``m`` canaries are each included in the training data with probability 1/2,
independently. The attacker looks at the output, *abstains* on most canaries and guesses
"member" / "non-member" for ``r`` of them; ``v`` guesses are right. Their main theorem: if the
mechanism is epsilon-DP (pure), the number of correct guesses ``W`` is stochastically dominated by
``Binomial(r, p)`` with ``p = e^eps / (1 + e^eps)``, so ``P[W >= v] <= P[Binomial(r, p) >= v]``.
Every epsilon for which the observed ``v`` would be a less-than-``1 - confidence`` event is
rejected, and the largest rejected epsilon is the lower bound (:func:`one_run_epsilon_lb`). It
needs one training run, and the canaries need not be independent trials: the theorem covers the
dependence between them through the shared training run.

*delta*: for (epsilon, delta)-DP their theorem adds a delta term to that tail probability; that
term is ``2 m delta`` times a probability divided by an integer >= 1, so it is at most
``2 m delta``. We add that upper bound, ``2 m delta``, to the tail (conservative: the reported
lower bound can only get smaller). With ``2 m delta >= 1 - confidence`` nothing can be certified
and the bound is 0. Pure-epsilon generators (delta = 0, like ``independent``) get the exact bound.

*several runs*: with ``R`` independent training runs, each with its own ``m`` canaries, a canary
only ever enters its own run, so the ``R`` runs together are one epsilon-DP mechanism for each of
the ``R m`` canaries (parallel composition): the same theorem applies with ``m' = R m``.

**Clopper-Pearson on FPR / FNR** (the classical audit, Jagielski et al. 2020; Nasr et al. 2021):
``eps_lb = log((1 - delta - FNR_ub) / FPR_ub)`` with one-sided Clopper-Pearson upper bounds on the
two error rates (each at ``1 - (1 - confidence)/2``, Bonferroni). It is only valid when every
guess comes from an *independent* training run; applied to the canaries of one run it is a
heuristic, which is why the audit reports it as "indicative" and certifies with the one-run bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_EPS_MAX = 60.0  # p = e^60/(1+e^60) == 1 in float64: beyond it nothing changes


def _p_correct(epsilon: float) -> float:
    """The most likely a guess can be right under epsilon-DP: e^eps / (1 + e^eps)."""
    return 1.0 / (1.0 + math.exp(-epsilon))


def one_run_p_value(
    epsilon: float, *, guesses: int, correct: int, canaries: int, delta: float = 0.0
) -> float:
    """An upper bound on P[W >= correct] for an (epsilon, delta)-DP mechanism.

    Args:
        epsilon: the hypothesised epsilon.
        guesses: ``r``, the guesses made (the rest abstained).
        correct: ``v``, the guesses that were right.
        canaries: ``m``, all canaries (used only by the delta term).
        delta: the hypothesised delta; adds ``2 m delta`` (see the module docstring).
    """
    from scipy.stats import binom

    if correct <= 0:
        return 1.0
    tail = float(binom.sf(correct - 1, guesses, _p_correct(epsilon)))
    return min(1.0, tail + 2.0 * canaries * delta)


def one_run_epsilon_lb(
    *, guesses: int, correct: int, canaries: int, delta: float = 0.0, confidence: float = 0.95
) -> float:
    """The one-run lower bound on epsilon at ``confidence`` (0 when nothing is certified).

    It is the largest epsilon rejected by the test "``correct`` right out of ``guesses`` would
    happen with probability below ``1 - confidence``"; the tail probability grows with
    epsilon, so the rejected epsilons form an interval ``[0, eps_lb)``, found by bisection.

    Raises:
        ValueError: inconsistent counts or a confidence outside (0, 1).
    """
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(
            f"need 0 <= correct <= guesses <= canaries, got {correct} right of "
            f"{guesses} guesses on {canaries} canaries"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    beta = 1.0 - confidence

    def p_value(eps: float) -> float:
        return one_run_p_value(
            eps, guesses=guesses, correct=correct, canaries=canaries, delta=delta
        )

    if guesses == 0 or p_value(0.0) >= beta:
        return 0.0
    if p_value(_EPS_MAX) < beta:
        return _EPS_MAX
    low, high = 0.0, _EPS_MAX
    for _ in range(200):  # the interval shrinks to float precision long before
        mid = (low + high) / 2
        if p_value(mid) < beta:
            low = mid
        else:
            high = mid
        if high - low < 1e-10:
            break
    return low


def one_run_ceiling(
    *, guesses: int, canaries: int, delta: float = 0.0, confidence: float = 0.95
) -> float:
    """The largest bound ``guesses`` guesses can ever certify: all of them right.

    For delta = 0 it has the closed form ``log(q / (1 - q))`` with ``q = (1-confidence)^(1/r)``.
    """
    return one_run_epsilon_lb(
        guesses=guesses, correct=guesses, canaries=canaries, delta=delta, confidence=confidence
    )


def clopper_pearson(
    successes: int, trials: int, *, confidence: float = 0.95, two_sided: bool = True
) -> tuple[float, float]:
    """The Clopper-Pearson (exact binomial) confidence interval of a proportion.

    Args:
        successes: ``k``.
        trials: ``n`` (>= 1).
        confidence: coverage of the interval; with ``two_sided=False`` the coverage of each
            one-sided bound (lower bound, upper bound) on its own.
        two_sided: split ``1 - confidence`` between the two ends.

    Returns:
        ``(lower, upper)``.
    """
    from scipy.stats import beta

    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials >= 1, got {successes}/{trials}")
    alpha = (1.0 - confidence) / (2.0 if two_sided else 1.0)
    lower = 0.0 if successes == 0 else float(beta.ppf(alpha, successes, trials - successes + 1))
    upper = (
        1.0
        if successes == trials
        else float(beta.ppf(1 - alpha, successes + 1, trials - successes))
    )
    return lower, upper


def rates_epsilon_lb(
    *,
    false_positives: int,
    negatives: int,
    false_negatives: int,
    positives: int,
    delta: float = 0.0,
    confidence: float = 0.95,
) -> float:
    """``max(log((1-delta-FNR_ub)/FPR_ub), log((1-delta-FPR_ub)/FNR_ub), 0)``.

    Each rate's upper bound is one-sided Clopper-Pearson at ``1 - (1-confidence)/2``, so both
    hold together with probability ``confidence`` (union bound). Valid for independent trials
    only (see the module docstring).
    """
    each = 1.0 - (1.0 - confidence) / 2.0
    fpr_ub = clopper_pearson(false_positives, negatives, confidence=each, two_sided=False)[1]
    fnr_ub = clopper_pearson(false_negatives, positives, confidence=each, two_sided=False)[1]
    best = 0.0
    for a, b in ((fnr_ub, fpr_ub), (fpr_ub, fnr_ub)):
        numerator = 1.0 - delta - a
        if numerator > 0 and b > 0:
            best = max(best, math.log(numerator / b))
    return best


@dataclass(frozen=True)
class Roc:
    """An ROC curve: false/true positive rates at every score threshold, and its area."""

    fpr: list[float]
    tpr: list[float]
    auc: float


def roc_curve(scores: npt.ArrayLike, members: npt.ArrayLike) -> Roc:
    """The ROC curve of "member when score >= threshold" (tied scores move together).

    Raises:
        ValueError: no members or no non-members.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(members, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("an ROC curve needs both members and non-members")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return Roc(fpr.tolist(), tpr.tolist(), auc)


def select_guesses(
    scores: npt.ArrayLike, *, k_member: int, k_non_member: int, rng: np.random.Generator
) -> npt.NDArray[np.int8]:
    """Guess "member" (+1) for the ``k_member`` highest scores, "non-member" (-1) for the
    ``k_non_member`` lowest, abstain (0) on the rest; ties are broken at random.

    The counts must be fixed before the scores are seen, or the bound does not hold.
    """
    s = np.asarray(scores, dtype=np.float64)
    if k_member + k_non_member > s.size:
        raise ValueError(f"cannot make {k_member + k_non_member} guesses on {s.size} canaries")
    order = np.lexsort((rng.random(s.size), -s))  # by score, descending; ties random
    guesses = np.zeros(s.size, dtype=np.int8)
    guesses[order[:k_member]] = 1
    if k_non_member:
        guesses[order[-k_non_member:]] = -1
    return guesses


__all__ = [
    "Roc",
    "clopper_pearson",
    "one_run_ceiling",
    "one_run_epsilon_lb",
    "one_run_p_value",
    "rates_epsilon_lb",
    "roc_curve",
    "select_guesses",
]
