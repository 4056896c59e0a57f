"""Calibration: the noise, or the number of steps, that keeps a DP-SGD run at a target epsilon.

Works for any :class:`~.accountant.Accountant` (class or instance), through its
``epsilon_for``, which is monotone in the noise and in the steps: a bracketed root search on
``log epsilon``. Kept apart from the accountant contract, as opacus keeps
``get_noise_multiplier`` apart from its accountants: a plugin accountant implements only the
maths, and every accountant is calibrated by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import AccountingError
from .accountant import Accountant, check_delta, check_step


def noise_for(
    accountant: type[Accountant] | Accountant,
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    rel_tol: float = 0.005,
    max_noise: float = 1e4,
    min_noise: float = 1e-3,
) -> float:
    """Noise multiplier whose run of ``steps`` steps ends at or under ``target_epsilon``.

    The returned noise always gives an epsilon <= ``target_epsilon`` (only noises whose
    computed epsilon meets the target are ever kept), and, unless the search hits
    ``min_noise`` or a numerical plateau of the accountant, an epsilon >=
    ``target_epsilon * (1 - rel_tol)``: no more noise than needed.

    Epsilon is smooth and close to a power law in the noise, so the search works on
    ``log epsilon`` against ``log noise``: secant steps to bracket the target, then
    Illinois-style regula falsi inside the bracket. That takes about 5 evaluations on
    average where a bisection on the noise took 11, which matters for the numerical
    accountants (PRV, PLD), whose evaluations cost up to a few seconds each and grow steeply
    at small noise.

    Args:
        target_epsilon: epsilon the run may spend.
        delta: the run's delta.
        sample_rate: Poisson sampling rate of each step.
        steps: number of steps planned.
        rel_tol: relative tolerance on epsilon (not on the noise).
        max_noise: give up above this noise multiplier.
        min_noise: never return less noise than this.

    Raises:
        AccountingError: the target cannot be met even with ``max_noise``, or an argument is
            out of range.
    """
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise AccountingError(f"target epsilon must be a positive number, got {target_epsilon}")
    if not 0 < rel_tol < 1:
        raise AccountingError(f"rel_tol must be in (0, 1), got {rel_tol}")
    check_step(1.0, sample_rate, steps)
    check_delta(delta)
    if steps == 0:
        return min_noise
    log_target = math.log(target_epsilon)
    accept = math.log1p(-rel_tol)  # f >= accept: close enough to the target
    aim = math.log1p(-rel_tol / 2)  # aim inside the window [accept, 0], not at its edge

    def f(x: float) -> float:
        """log(epsilon / target) at noise e**x; +inf where epsilon cannot be computed."""
        try:
            epsilon = accountant.epsilon_for(
                noise_multiplier=math.exp(x), sample_rate=sample_rate, steps=steps, delta=delta
            )
        except AccountingError:
            # Numerical accountants fail at tiny noise (their grids explode); a noise whose
            # epsilon is unknown is treated as too small and never returned.
            return math.inf
        if math.isnan(epsilon):
            return math.inf
        return math.log(epsilon) - log_target if epsilon > 0 else -math.inf

    x_min, x_max = math.log(min_noise), math.log(max_noise)
    low, high = _bracket(f, x_min=x_min, x_max=x_max, aim=aim)
    if low is None and high is not None:
        return math.exp(high[0])  # even the least noise allowed meets the target
    if low is None or high is None:
        raise AccountingError(
            f"no noise multiplier up to {max_noise:g} keeps {steps} steps at sample rate "
            f"{sample_rate:g} under epsilon={target_epsilon:g}, delta={delta:g}; take fewer "
            f"steps, a smaller sample rate, or a larger epsilon"
        )
    (xl, fl), (xh, fh) = low, high
    # Invariant: f(xh) <= 0 < f(xl). Interpolate g = f - aim, whose root lies inside the
    # acceptance window; gl, gh are Illinois-weighted copies of g at the two ends.
    gl, gh = fl - aim, fh - aim
    last_side = 0
    for _ in range(200):
        if fh >= accept or abs(xh - xl) <= 1e-9:
            break
        width = xh - xl
        if math.isfinite(gl) and math.isfinite(gh) and gl != gh:
            x = xh - gh * width / (gh - gl)
            # Stay strictly inside the bracket so it always shrinks.
            x = min(max(x, min(xl, xh) + 0.02 * abs(width)), max(xl, xh) - 0.02 * abs(width))
        else:
            x = (xl + xh) / 2
        fx = f(x)
        if fx <= 0:
            xh, fh, gh = x, fx, fx - aim
            if last_side == 1:
                gl /= 2
            last_side = 1
        else:
            xl, fl, gl = x, fx, fx - aim
            if last_side == -1:
                gh /= 2
            last_side = -1
    return math.exp(xh)


def max_steps_for(
    accountant: type[Accountant] | Accountant,
    *,
    target_epsilon: float,
    delta: float,
    noise_multiplier: float,
    sample_rate: float,
) -> int:
    """Largest number of steps that keeps the run at or under ``target_epsilon``.

    Epsilon grows smoothly with the steps (roughly like their square root), so the search
    grows the step count geometrically, by the factor a log-log secant predicts (between 2
    and 16), until the target is crossed, then narrows the bracket by Illinois regula falsi
    on log steps, finishing on the integers: about 8 evaluations. Large leaps are avoided
    because the numerical accountants (PRV) get slow and memory-hungry at huge step counts.

    Returns:
        The step count (0 when even one step exceeds the target; capped at 10**9).
    """
    check_step(noise_multiplier, sample_rate, 1)
    check_delta(delta)
    cap = 10**9

    def log_eps(steps: int) -> float:
        epsilon = accountant.epsilon_for(
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            delta=delta,
        )
        return math.log(epsilon) if epsilon > 0 else -math.inf

    goal = math.log(target_epsilon) if target_epsilon > 0 else -math.inf
    low, f_low = 1, log_eps(1)
    if f_low > goal:
        return 0
    # Bracket: f(low) <= goal < f(high).
    slope = 0.5
    while True:
        factor = 16.0
        if math.isfinite(f_low):
            factor = min(max(math.exp((goal - f_low) / slope), 2.0), 16.0)
        high = min(math.ceil(low * factor), cap)
        f_high = log_eps(high)
        if f_high > goal:
            break
        if high >= cap:
            return cap
        if math.isfinite(f_high) and math.isfinite(f_low) and f_high > f_low:
            slope = min(max((f_high - f_low) / math.log(high / low), 0.05), 2.0)
        low, f_low = high, f_high
    # Narrow on the integers; g_* are Illinois-weighted copies of f - goal at the ends.
    g_low, g_high = f_low - goal, f_high - goal
    last_side = 0
    while high - low > 1:
        x_low, x_high = math.log(low), math.log(high)
        if math.isfinite(g_low) and math.isfinite(g_high) and g_high != g_low:
            x = x_low - g_low * (x_high - x_low) / (g_high - g_low)
            mid = min(max(round(math.exp(x)), low + 1), high - 1)
        else:
            mid = (low + high) // 2
        f_mid = log_eps(mid)
        if f_mid <= goal:
            low, g_low = mid, f_mid - goal
            if last_side == 1:
                g_high /= 2
            last_side = 1
        else:
            high, g_high = mid, f_mid - goal
            if last_side == -1:
                g_low /= 2
            last_side = -1
    return low


Point = tuple[float, float]


def _bracket(
    f: Callable[[float], float], *, x_min: float, x_max: float, aim: float
) -> tuple[Point | None, Point | None]:
    """Find points ``(x, f(x))`` on both sides of the root of a decreasing ``f``.

    Starts at x = 0 (noise 1) and takes secant steps towards ``f = aim``, each at most a factor
    16 up or 2 down in noise: small noises are where the numerical accountants get slow, so the
    search creeps down but may leap up.

    Returns:
        ``(low, high)`` with ``f(low) > 0 >= f(high)``; ``low`` is None when ``f <= 0`` already
        at ``x_min``, ``high`` is None when ``f > 0`` still at ``x_max``.
    """
    x = min(max(0.0, x_min), x_max)
    slope = -1.0  # d log(eps) / d log(noise) for large noise; steeper at small noise
    low: Point | None = None
    high: Point | None = None
    prev: Point | None = None
    for _ in range(200):
        fx = f(x)
        if fx > 0 and (low is None or x > low[0]):
            low = (x, fx)
        if fx <= 0 and (high is None or x < high[0]):
            high = (x, fx)
        if (low is not None and high is not None) or (high is None and x >= x_max):
            return low, high
        if low is None and x <= x_min:
            return None, high
        if prev is not None and math.isfinite(fx) and math.isfinite(prev[1]) and x != prev[0]:
            measured = (fx - prev[1]) / (x - prev[0])
            if measured < 0:
                slope = min(max(measured, -20.0), -0.2)
        prev = (x, fx)
        dx = (aim - fx) / slope if math.isfinite(fx) else math.log(4.0)
        # Clamp: at least a small move, at most x16 up or /2 down.
        up, down = min(max(dx, 1e-3), math.log(16.0)), max(min(dx, -1e-3), -math.log(2.0))
        dx = up if dx > 0 else down
        x = min(max(x + dx, x_min), x_max)
    raise AccountingError("the noise search did not converge; the accountant is not monotone")
