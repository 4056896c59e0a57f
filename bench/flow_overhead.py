"""What Prefect adds to a small run: the synthesize flow vs the same steps called directly.

One process, one configuration (an Adult sample, the ``independent`` generator, three cheap
metrics, report sections limited to the built-in tables), timed four ways:

1. ``core``: :func:`privsynth_core.runs.rundir.run_pipeline`, no orchestrator (each run trains
afresh);
2. ``flow, first``: the first flow run, which starts Prefect's temporary local server;
3. ``flow``: later flow runs with fresh seeds (so training is not cached: same work as core);
4. ``flow, cached``: a rerun of an identical configuration (training comes from the cache).

Usage::

    .venv/bin/python bench/flow_overhead.py [--rows 2000] [--repeats 3] [--full-report]

Everything goes to a temporary PRIVSYNTH_HOME / PREFECT_HOME, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--full-report", action="store_true", help="keep every report section (plots, Evidently)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="privsynth-overhead-"))
    os.environ.update(
        {
            "PRIVSYNTH_HOME": str(tmp / "home"),
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "OMP_NUM_THREADS": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    os.environ.pop("PREFECT_API_URL", None)
    if not args.full_report:
        os.environ["PRIVSYNTH_DISABLED_PLUGINS"] = "evidently,report-plots"

    from privsynth_core import PrivacyLedger
    from privsynth_core.datasets import ADULT_SCHEMA_PATH, adult_frame
    from privsynth_core.runs.config import run_config_from_dict
    from privsynth_core.runs.rundir import run_pipeline
    from privsynth_core.table import fingerprint_frame

    frame = adult_frame(args.rows, seed=1)
    data = tmp / "train.csv"
    frame.write_csv(data)
    PrivacyLedger().set_budget(fingerprint_frame(frame), epsilon=1000, delta=0.5)

    def config(seed: int, name: str):  # type: ignore[no-untyped-def]
        return run_config_from_dict(
            {
                "input": str(data),
                "schema_path": str(ADULT_SCHEMA_PATH),
                "generator": "independent",
                "epsilon": 1.0,
                "metrics": ["tvd", "ks", "marginal_2way_tvd"],
                "seed": seed,
                "output_dir": str(tmp / "runs" / name),
            }
        )

    def timed(fn, *a, **kw) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        fn(*a, **kw)
        return time.perf_counter() - start

    config(0, "warm")  # plugin loading, imports: paid by neither side below
    core = [timed(run_pipeline, config(seed, f"core-{seed}")) for seed in range(args.repeats)]

    from privsynth_flows.runtime import prefect_session
    from privsynth_flows.synthesize import synthesize

    with prefect_session():
        first = timed(synthesize, config(100, "flow-first"))
        flow = [timed(synthesize, config(200 + s, f"flow-{s}")) for s in range(args.repeats)]
        cached = [timed(synthesize, config(200, "flow-0")) for _ in range(args.repeats)]

    med_core, med_flow = statistics.median(core), statistics.median(flow)
    print(
        f"\nprivsynth flow overhead: {args.rows} Adult rows, independent generator, "
        f"3 metrics, report sections {'all' if args.full_report else 'core only'}, "
        f"median of {args.repeats}, python {sys.version.split()[0]}"
    )
    print(f"  core (no Prefect)          {med_core:7.2f} s   {_fmt(core)}")
    print(f"  flow, first (temp server)  {first:7.2f} s")
    print(f"  flow                       {med_flow:7.2f} s   {_fmt(flow)}")
    print(f"  flow, cached training      {statistics.median(cached):7.2f} s   {_fmt(cached)}")
    print(
        f"  overhead per flow run      {med_flow - med_core:+7.2f} s "
        f"({(med_flow / med_core - 1) * 100:+.0f}%); first run also "
        f"{first - med_flow:+.2f} s of server start"
    )
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())
