"""Child process of ``bench peers``: fit one privsynth or SDV method, sample, report.

Usage (the bench calls it)::

    python -m bench.fit_worker METHOD EPSILON|none TRAIN.csv OUT_DIR --rows N --epochs E

Writes ``OUT_DIR/synthetic.parquet`` and ``OUT_DIR/result.json`` (fit and sample seconds, this
process' peak RSS, and the RSS after imports so the cost of the libraries can be told apart).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .procmem import rss_mb

DELTA = 1e-5
TORCH_METHODS = {"dpwgan", "dpctgan", "ctgan"}


def _privsynth(
    method: str, epsilon: float | None, table: Any, epochs: int, threads: int, seed: int
) -> Any:
    from privsynth_core import PrivacyBudget
    from privsynth_core.registry import generators

    cls = generators().get(method)
    params: dict[str, Any] = {
        "seed": seed,
        "epochs": epochs,
        "num_threads": threads,
        "device": "cpu",
    }
    # each generator gets the settings it has (MST and AIM, say, have no epochs or seed)
    gen = cls(**{k: v for k, v in params.items() if k in cls.Params.model_fields})
    budget = None if epsilon is None else PrivacyBudget(epsilon, DELTA)
    summary = gen.fit(table, budget=budget)
    return gen, (summary.epsilon if epsilon is not None else None)


def _gaussian_copula(table: Any, seed: int) -> Any:
    """SDV's GaussianCopulaSynthesizer (not DP), with metadata from the declared schema."""
    import numpy as np
    from sdv.single_table import GaussianCopulaSynthesizer

    from privsynth_plugins.ctgan_baseline import sdv_metadata

    np.random.seed(seed)
    synth = GaussianCopulaSynthesizer(sdv_metadata(table.schema))
    synth.fit({"table": table.frame.to_pandas()})
    return synth


def main(argv: list[str] | None = None) -> int:
    """Fit, sample and report; errors go into result.json rather than a traceback."""
    parser = argparse.ArgumentParser()
    parser.add_argument("method")
    parser.add_argument("epsilon")
    parser.add_argument("train", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"method": args.method, "threads": threads}
    try:
        import polars as pl

        if args.method in TORCH_METHODS:  # others do not pay for importing torch
            import torch

            torch.set_num_threads(threads)
        os.environ.setdefault("PRIVSYNTH_HOME", tempfile.mkdtemp(prefix="privsynth-bench-"))
        from privsynth_core import PrivacyLedger, Table
        from privsynth_core.datasets import adult_schema

        epsilon = None if args.epsilon == "none" else float(args.epsilon)
        schema = adult_schema()
        table = Table.from_frame(pl.read_csv(args.train, infer_schema=False), schema, name="train")
        PrivacyLedger().set_budget(table.fingerprint(), epsilon=1e6, delta=0.5)
        if args.method == "gaussian_copula":
            import sdv  # noqa: F401  (import cost outside the timed fit)
        result["import_rss_mb"] = rss_mb()
        tick = time.perf_counter()
        if args.method == "gaussian_copula":
            model = _gaussian_copula(table, args.seed)
            spent = None
        else:
            model, spent = _privsynth(args.method, epsilon, table, args.epochs, threads, args.seed)
        result["fit_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        if args.method == "gaussian_copula":
            sampled = model.sample(args.rows)
            sampled = sampled["table"] if isinstance(sampled, dict) else sampled
            synthetic = pl.from_pandas(sampled)
        else:
            synthetic = model.sample(args.rows, seed=args.seed)
        result["sample_s"] = time.perf_counter() - tick
        synthetic.write_parquet(args.out / "synthetic.parquet")
        result.update(peak_rss_mb=rss_mb(), epsilon_spent=spent, delta=DELTA)
    except Exception as exc:  # the parent records the failure and goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    (args.out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
