"""Child process of ``bench peers`` run in SmartNoise's own environment (no privsynth import).

Usage (the bench calls it with ``bench/envs/smartnoise/bin/python``)::

    python bench/smartnoise_worker.py METHOD EPSILON TRAIN.csv SPEC.json OUT_DIR --rows N

METHOD is one of dpctgan, patectgan, mst, aim. SPEC.json lists the columns with their kind and,
for numeric columns, the declared-public bounds of privsynth's Adult schema: SmartNoise gets the
same public domain as privsynth (no budget spent on bounds). Numeric columns are binned into
``--bins`` equal-width bins for MST/AIM (marginal methods need discrete data) and min-max scaled
for the GANs. Writes ``synthetic.csv`` and ``result.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

DELTA = 1e-5


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    ``VmHWM`` from /proc (the high-water mark of this process' own memory, fresh after exec);
    ``ru_maxrss`` would also count the parent's memory at the fork on Linux.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """Fit one SmartNoise synthesizer, sample, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("method")
    parser.add_argument("epsilon", type=float)
    parser.add_argument("train", type=Path)
    parser.add_argument("spec", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"method": f"smartnoise-{args.method}"}
    try:
        import os

        import numpy as np
        import pandas as pd
        import torch

        threads = int(os.environ.get("BENCH_THREADS", "1"))
        torch.set_num_threads(threads)
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        from snsynth import Synthesizer
        from snsynth.transform import BinTransformer, MinMaxTransformer, TableTransformer

        spec = json.loads(args.spec.read_text(encoding="utf-8"))
        data = pd.read_csv(args.train, dtype=str, keep_default_na=False)
        cats = [c["name"] for c in spec if c["kind"] == "categorical"]
        nums = [c for c in spec if c["kind"] != "categorical"]
        for col in nums:
            data[col["name"]] = pd.to_numeric(data[col["name"]]).clip(col["lower"], col["upper"])
        data = data[[c["name"] for c in spec]]
        cube = args.method in {"mst", "aim"}
        constraints = {
            c["name"]: (
                BinTransformer(bins=args.bins, lower=c["lower"], upper=c["upper"])
                if cube
                else MinMaxTransformer(lower=c["lower"], upper=c["upper"], negative=False)
            )
            for c in nums
        }
        transformer = TableTransformer.create(
            data, style="cube" if cube else "gan", categorical_columns=cats, constraints=constraints
        )
        kwargs: dict[str, Any] = {"delta": DELTA}
        if not cube:
            kwargs.update(epochs=args.epochs, cuda=False, verbose=False)
        synth = Synthesizer.create(args.method, epsilon=args.epsilon, **kwargs)
        result["import_rss_mb"] = rss_mb()
        tick = time.perf_counter()
        synth.fit(
            data,
            transformer=transformer,
            categorical_columns=cats,
            continuous_columns=[c["name"] for c in nums],
            preprocessor_eps=0.0,
        )
        result["fit_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        synthetic = synth.sample(args.rows)
        result["sample_s"] = time.perf_counter() - tick
        synthetic = pd.DataFrame(synthetic, columns=data.columns)
        for col in nums:
            synthetic[col["name"]] = pd.to_numeric(synthetic[col["name"]]).round().astype("Int64")
        synthetic.to_csv(args.out / "synthetic.csv", index=False)
        result.update(peak_rss_mb=rss_mb(), epsilon_spent=None, delta=DELTA)
    except Exception as exc:  # the parent records the failure and goes on
        result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        traceback.print_exc()
    (args.out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
