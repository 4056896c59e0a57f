"""Child process of ``bench aim-wide``: fit AIM on sampled census KDD once, report time and memory.

Usage (the bench calls it)::

    python -m bench.aim_wide_worker VARIANT ROWS EPSILON OUT.json [--seed S]

``VARIANT`` is ``after`` (the code as it is) or ``before``: the same code with the costs that
issue #18's profiles found put back (mbi's ``hypothetical_model_size`` for every candidate's
model size; every candidate's quality recomputed for every selection instead of once per round;
every exact marginal recounted whenever it is asked for instead of kept; mbi's stock
``MirrorDescent``, whose initial and final marginal-oracle passes compile programs of their
own), so both make the same kind of selections and estimates and differ only in those costs.
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

from .common import with_marginal_plugin
from .procmem import rss_mb


def _before() -> None:
    """Put back the old code path (what the fits cost before issue #18)."""
    from privsynth_marginal import algorithms, counts, estimate
    from privsynth_marginal.estimate import _mbi

    mbi = _mbi()
    qualities = algorithms._qualities
    last: dict[str, Any] = {}

    def mbi_size(sizes: Any, cliques: Any) -> float:
        names = [f"c{i}" for i in range(len(sizes))]
        domain = mbi.Domain(names, list(sizes))
        attrs = [tuple(names[i] for i in c) for c in cliques]
        return float(mbi.junction_tree.hypothetical_model_size(domain, attrs))

    def once(codes: Any, sizes: Any, pool: Any, estimator: Any, sigma: float) -> Any:
        last.update(args=(codes, sizes, estimator, sigma), fresh=True)
        return qualities(codes, sizes, pool, estimator, sigma)

    def each(pool: Any, quality: Any, epsilon0: float, budget: Any) -> Any:
        if not last.pop("fresh", False):  # the old code computed them for every selection
            codes, sizes, estimator, sigma = last["args"]
            quality.update(qualities(codes, sizes, pool, estimator, sigma))
        return worst(pool, quality, epsilon0, budget)

    worst = algorithms._worst_approximated
    estimate.lean_mirror_descent = lambda mbi: mbi.estimation.MirrorDescent()
    algorithms.model_sizes_mb = lambda sizes, cliques, candidates: [
        mbi_size(sizes, [*cliques, c]) for c in candidates
    ]
    counts.COUNTS_CACHE_BYTES = 0  # every request counted again
    algorithms._qualities = once
    algorithms._worst_approximated = each


def _confine_to_threads() -> int | None:
    """Confine this process to ``BENCH_THREADS`` CPUs (Linux) before jax starts; the CPUs it
    may use after that (None where the OS cannot tell).

    The thread variables the bench sets do not reach XLA's thread pool, which sizes itself from
    the CPUs the process may run on: without this a fit "on one thread" used 1.5 CPUs (338 CPU
    seconds in 222 s).
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    threads = int(os.environ.get("BENCH_THREADS", "0"))
    allowed = sorted(os.sched_getaffinity(0))
    if threads > 0:
        os.sched_setaffinity(0, allowed[:threads])
    return len(os.sched_getaffinity(0))


def main(argv: list[str] | None = None) -> int:
    """Load, fit, report; errors go into the result rather than a traceback."""
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["before", "after"])
    parser.add_argument("rows", type=int)
    parser.add_argument("epsilon", type=float)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"variant": args.variant, "rows": args.rows}
    result["cpus"] = _confine_to_threads()
    try:
        os.environ.setdefault("PRIVSYNTH_HOME", tempfile.mkdtemp(prefix="privsynth-bench-"))
        # MST and AIM too, even where PRIVSYNTH_LOAD_PLUGINS names only the core plugins
        with_marginal_plugin()
        from privsynth_core import PrivacyBudget, PrivacyLedger, Table
        from privsynth_core.registry import generators

        from .tables import _load

        # the sample (whole, not split: this measures the fit) and its schema, as bench tables
        train, holdout, schema = _load("census_kdd", args.rows, args.seed)
        import polars as pl

        frame = pl.concat([train, holdout])
        table = Table.from_frame(frame, schema, name="census_kdd")
        PrivacyLedger().set_budget(table.fingerprint(), epsilon=1e6, delta=0.5)
        import privsynth_marginal.estimate as estimate

        estimate._mbi()  # jax and mbi imported before the clock and the memory baseline
        if args.variant == "before":
            _before()
        generator = generators().get("aim")()
        result.update(columns=len(schema.columns), train_rows=frame.height)
        result["import_rss_mb"] = rss_mb()
        rounds: list[float] = []
        tick, cpu = time.perf_counter(), time.process_time()

        def progress(report: Any) -> None:
            # written at every report, so a variant stopped by the timeout still says how far
            # it got in how long
            rounds.append(time.perf_counter() - tick)
            partial = {**result, "progress_s": rounds, "cpu_so_far_s": time.process_time() - cpu}
            partial["stage"] = f"{report.epoch}/{report.epochs} {report.stage}"
            args.out.write_text(json.dumps(partial, indent=2), encoding="utf-8")

        summary = generator.fit(table, budget=PrivacyBudget(args.epsilon, 1e-5), progress=progress)
        result["fit_s"] = time.perf_counter() - tick
        # CPU seconds of every thread of this process: what the fit costs on one core, whatever
        # else the machine runs (wall seconds grow with the load of a shared machine)
        result["fit_cpu_s"] = time.process_time() - cpu
        result["peak_rss_mb"] = rss_mb()
        result["progress_s"] = rounds
        result["bounds"] = summary.extra.get("bounds")
        result["measured"] = len(summary.extra["measured_marginals"])
        result["epsilon"] = summary.epsilon
    except Exception as exc:  # the parent records the failure and goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
