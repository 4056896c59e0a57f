"""``privsynth accountants compare``: every registered accountant's epsilon for one training plan.

The same DP-SGD plan (sample rate, noise multiplier, steps, delta) gets a different epsilon from
each accountant; seeing them side by side shows how much the choice of accountant matters.
Approximations (GDP) are labelled as such: their number is not a guarantee.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._common import print_table

DEFAULT_ACCOUNTANT = "rdp"


def register(subparsers: Any) -> None:
    """Add the ``accountants`` command group."""
    parser = subparsers.add_parser("accountants", help="compare privacy accountants")
    sub = parser.add_subparsers(dest="accountants_command", metavar="SUBCOMMAND")
    compare = sub.add_parser(
        "compare",
        help="epsilon of one DP-SGD plan under every registered accountant",
        description="Epsilon of a Poisson-subsampled Gaussian (DP-SGD) plan under every "
        "registered accountant, side by side.",
    )
    compare.add_argument(
        "--sample-rate",
        type=_rate,
        required=True,
        metavar="Q",
        help="Poisson sampling rate per step: a number, or batch/rows as a "
        "fraction such as 500/32561",
    )
    compare.add_argument(
        "--noise",
        type=float,
        required=True,
        metavar="SIGMA",
        help="noise multiplier (noise std / clipping norm)",
    )
    length = compare.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, metavar="T", help="number of steps")
    length.add_argument(
        "--epochs", type=float, metavar="E", help="number of epochs; steps = round(E / Q)"
    )
    compare.add_argument("--delta", type=float, required=True, metavar="D")
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    compare.set_defaults(func=compare_cmd)


def _rate(text: str) -> float:
    """A number, or a fraction ``a/b`` (batch size over rows), as argparse's type."""
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            return float(numerator) / float(denominator)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"not a sample rate: {text!r} (give a number such as 0.0154 or a fraction such as "
            f"500/32561)"
        ) from None


def _plan(args: argparse.Namespace) -> tuple[float, float, int, float]:
    from privsynth_core.errors import ConfigError

    q, sigma, delta = args.sample_rate, args.noise, args.delta
    if not 0 < q <= 1:
        raise ConfigError(f"--sample-rate must be in (0, 1], got {q:g}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"--noise must be a positive number, got {sigma:g}")
    if not 0 < delta < 1:
        raise ConfigError(f"--delta must be in (0, 1), got {delta:g}")
    if args.epochs is not None:
        if not (args.epochs > 0 and math.isfinite(args.epochs)):
            raise ConfigError(f"--epochs must be a positive number, got {args.epochs:g}")
        steps = round(args.epochs / q)
    else:
        steps = args.steps
    if steps < 1:
        raise ConfigError(f"the plan must take at least one step, got {steps}")
    return q, sigma, steps, delta


def compare_cmd(args: argparse.Namespace) -> int:
    """Print each registered accountant's epsilon for the plan in ``args``."""
    from privsynth_core.errors import AccountingError
    from privsynth_core.registry import accountants

    q, sigma, steps, delta = _plan(args)
    results: list[dict[str, Any]] = []
    for entry in accountants().entries():
        cls = entry.cls
        row: dict[str, Any] = {
            "accountant": entry.plugin_id,
            "epsilon": None,
            "approximate": bool(cls.approximate),
            "default": entry.plugin_id == DEFAULT_ACCOUNTANT,
            "description": entry.description,
            "error": None,
        }
        try:
            row["epsilon"] = cls.epsilon_for(
                noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta
            )
        except AccountingError as exc:  # one accountant failing must not hide the others
            row["error"] = str(exc)
        results.append(row)

    if args.json:
        print(
            json.dumps(
                {
                    "sample_rate": q,
                    "noise_multiplier": sigma,
                    "steps": steps,
                    "epochs": steps * q,
                    "delta": delta,
                    "results": results,
                },
                indent=2,
            )
        )
        return 0

    print(
        f"plan: sample rate q={q:.6g}, noise multiplier sigma={sigma:g}, steps T={steps} "
        f"(= {steps * q:.4g} epochs), delta={delta:g}"
    )
    rows = []
    for r in results:
        if r["error"] is not None:
            shown = "failed"
        elif math.isinf(r["epsilon"]):
            shown = "inf"
        else:
            shown = f"{r['epsilon']:.4f}"
        note = ("(approximation) " if r["approximate"] else "") + (
            "(default) " if r["default"] else ""
        )
        rows.append([r["accountant"], shown, (note + (r["error"] or r["description"])).strip()])
    print_table(["ACCOUNTANT", "EPSILON", "NOTE"], rows)
    bounds = [
        r
        for r in results
        if not r["approximate"] and r["error"] is None and math.isfinite(r["epsilon"])
    ]
    if len(bounds) > 1:
        low = min(bounds, key=lambda r: r["epsilon"])
        high = max(bounds, key=lambda r: r["epsilon"])
        print(
            f"guaranteed bounds range from {low['epsilon']:.4f} ({low['accountant']}) to "
            f"{high['epsilon']:.4f} ({high['accountant']}), "
            f"{high['epsilon'] / low['epsilon']:.3f}x"
        )
    if any(r["approximate"] for r in results):
        print(
            "approximations are not guarantees: they can under-report epsilon, most at small "
            "epsilon; never certify a release with one"
        )
    return 0
