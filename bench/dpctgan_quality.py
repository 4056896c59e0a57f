"""DP-CTGAN vs SDV's (non-DP) CTGAN on Adult: time per epoch, 2-way TVD, TSTR ROC AUC.

Not a test: a reproducible benchmark for issue 4. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.dpctgan_quality --epochs 50 --threads 1 --focus

Protocol: Adult (``../shared/datasets/adult.csv.gz`` when present, else the embedded copy),
shuffled with ``--split-seed``; the first 10,000 rows train, the next 5,000 (disjoint) test. The
schema is the embedded, declared-public Adult schema (bounds not taken from the rows). SDV's
CTGAN and DP-CTGAN at each ``--epsilons`` (delta ``--delta``) train for the same ``--epochs``,
one after the other in this process, with the same torch thread count. Each synthetic table has
10,000 rows (sample seed 0). Figures:

- **s/epoch**: training-loop time per epoch. DP-CTGAN: its own training-loop clock (the noisy
  marginals, encoding and Opacus set-up excluded; they are in "fit s"). SDV: (fit time at
  ``--epochs`` minus fit time at 1 epoch) / (epochs - 1), which removes SDV's preprocessing (RDT
  and the Gaussian-mixture fits) the same way;
- **2-way TVD**: the ``marginal_2way_tvd`` metric plugin (mean TVD over all column pairs,
  numerics in 10 quantile bins of the real training data);
- **TSTR AUC**: the ``tstr`` metric plugin's HistGradientBoosting row (trained on synthetic,
  ROC AUC on the real test rows, target ``income``).

The "real" row is the real training table itself scored the same way (TVD of the 5,000 test rows
against the training rows; TRTR AUC): the ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

SHARED_ADULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "adult.csv.gz"
TARGETS = {1.0: (0.25, 0.75), 10.0: (0.18, 0.80)}


def load_split(seed: int, n_train: int, n_test: int) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """Seeded disjoint train/test rows of Adult and where they came from."""
    from privsynth_core.datasets import ADULT_PATH
    from privsynth_core.table import read_frame

    source = SHARED_ADULT if SHARED_ADULT.is_file() else ADULT_PATH
    frame = read_frame(source).sample(fraction=1.0, shuffle=True, seed=seed)
    return frame.head(n_train), frame.slice(n_train, n_test), str(source)


def score(
    train: pl.DataFrame, test: pl.DataFrame, synthetic: pl.DataFrame, schema: Any
) -> tuple[float, float]:
    """(2-way TVD vs the training rows, TSTR HistGradientBoosting ROC AUC on the test rows)."""
    from privsynth_core.registry import metrics

    tvd = metrics().get("marginal_2way_tvd")().compute(train, synthetic, schema=schema).value
    tstr = (
        metrics()
        .get("tstr")()
        .compute(train, synthetic, schema=schema, holdout=test, target="income", seed=0)
    )
    row = next(r for r in tstr.details["table"]["rows"] if r[0] == "gradient boosting")
    return float(tvd), float(row[1])


def real_reference(train: pl.DataFrame, test: pl.DataFrame, schema: Any) -> tuple[float, float]:
    """The ceiling: real test rows as the 'synthetic' table, and TRTR AUC."""
    from privsynth_core.registry import metrics

    tvd = metrics().get("marginal_2way_tvd")().compute(train, test, schema=schema).value
    tstr = (
        metrics()
        .get("tstr")()
        .compute(train, train, schema=schema, holdout=test, target="income", seed=0)
    )
    row = next(r for r in tstr.details["table"]["rows"] if r[0] == "gradient boosting")
    return float(tvd), float(row[2])


def run_ctgan(table: Any, epochs: int, threads: int, seed: int) -> dict[str, Any]:
    """SDV CTGAN (not DP) at ``epochs`` and at 1 epoch (to time the preprocessing)."""
    from privsynth_core.registry import generators

    cls = generators().get("ctgan")
    started = time.perf_counter()
    cls(epochs=1, num_threads=threads, seed=seed, device="cpu").fit(table, budget=None)
    one = time.perf_counter() - started
    gen = cls(epochs=epochs, num_threads=threads, seed=seed, device="cpu")
    started = time.perf_counter()
    gen.fit(table, budget=None)
    full = time.perf_counter() - started
    per_epoch = (full - one) / (epochs - 1) if epochs > 1 else full
    return {
        "name": "SDV CTGAN (NOT DP)",
        "fit_s": full,
        "s_per_epoch": per_epoch,
        "synthetic": gen.sample(10_000, seed=0),
        "epsilon": None,
    }


def run_dpctgan(
    table: Any,
    epsilon: float,
    delta: float,
    epochs: int,
    threads: int,
    seed: int,
    accountant: str,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """DP-CTGAN at (epsilon, delta) for ``epochs``."""
    from privsynth_core import PrivacyBudget
    from privsynth_core.registry import generators

    params = {"epochs": epochs, "num_threads": threads, "seed": seed, "device": "cpu", **overrides}
    gen = generators().get("dpctgan")(accountant=accountant, **params)
    started = time.perf_counter()
    summary = gen.fit(table, budget=PrivacyBudget(epsilon, delta))
    fit_s = time.perf_counter() - started
    label = ", ".join(f"{k}={v}" for k, v in overrides.items())
    return {
        "name": f"DP-CTGAN eps={epsilon:g}" + (f" ({label})" if label else ""),
        "fit_s": fit_s,
        "s_per_epoch": summary.wall_seconds / max(summary.epochs, 1e-9),
        "synthetic": gen.sample(10_000, seed=0),
        "epsilon": summary.epsilon,
        "sigma": summary.noise_multiplier,
        "steps": summary.steps,
        "split": summary.extra["budget_split"],
        "target_epsilon": epsilon,
    }


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--accountant", default="rdp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="model seed (not the DP noise)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--skip-ctgan", action="store_true")
    parser.add_argument(
        "--dp-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a DP-CTGAN parameter, e.g. batch_size=2000",
    )
    parser.add_argument(
        "--focus",
        action="store_true",
        help="also run DP-CTGAN with focus_columns=income (two-way marginals of "
        "the target, paid from the same budget)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.dp_param)}

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("PRIVSYNTH_HOME", tempfile.mkdtemp(prefix="privsynth-bench-"))
    from privsynth_core import PrivacyLedger, Table
    from privsynth_core.datasets import adult_schema

    train, test, source = load_split(args.split_seed, 10_000, 5_000)
    schema = adult_schema()
    table = Table.from_frame(train, schema, name="adult-train-10k")
    test = Table.from_frame(test, schema).frame
    PrivacyLedger().set_budget(table.fingerprint(), epsilon=1000.0, delta=0.5)
    print(
        f"data: {source}; train {table.n_rows} rows, test {test.height} rows; "
        f"epochs {args.epochs}; torch threads {args.threads}; DP overrides {overrides}"
    )

    rows: list[dict[str, Any]] = []
    tvd, auc = real_reference(table.frame, test, schema)
    rows.append({"name": "real (holdout / TRTR)", "tvd": tvd, "auc": auc})
    ctgan_epoch = None
    if not args.skip_ctgan:
        result = run_ctgan(table, args.epochs, args.threads, args.seed)
        ctgan_epoch = result["s_per_epoch"]
        rows.append(result)
        print(f"  {result['name']}: fit {result['fit_s']:.1f} s", flush=True)
    variants = [overrides] + ([{**overrides, "focus_columns": "income"}] if args.focus else [])
    for epsilon in args.epsilons:
        for variant in variants:
            result = run_dpctgan(
                table,
                epsilon,
                args.delta,
                args.epochs,
                args.threads,
                args.seed,
                args.accountant,
                variant,
            )
            rows.append(result)
            print(
                f"  {result['name']}: fit {result['fit_s']:.1f} s, sigma "
                f"{result['sigma']:.3f}, steps {result['steps']}, epsilon spent "
                f"{result['epsilon']:.4f}, split {result['split']}",
                flush=True,
            )
    for row in rows:
        if "synthetic" in row:
            row["tvd"], row["auc"] = score(table.frame, test, row.pop("synthetic"), schema)

    print()
    print("| model | s/epoch | DP/non-DP | fit s | 2-way TVD | TSTR AUC (HGB) | target |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        per = row.get("s_per_epoch")
        ratio = (
            f"{per / ctgan_epoch:.2f}x"
            if per is not None and ctgan_epoch and row.get("epsilon") is not None
            else ""
        )
        goal = TARGETS.get(row.get("target_epsilon", -1.0))
        target = ""
        if goal is not None:
            ok = row["tvd"] <= goal[0] and row["auc"] >= goal[1]
            target = f"TVD<={goal[0]}, AUC>={goal[1]}: {'met' if ok else 'NOT met'}"
        print(
            f"| {row['name']} | {'' if per is None else f'{per:.2f}'} | {ratio} | "
            f"{row.get('fit_s', 0):.1f} | {row['tvd']:.3f} | {row['auc']:.3f} | {target} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
