"""``python -m bench peers``: privsynth against SDV and SmartNoise on Adult.

Protocol. Adult (``../shared/datasets/adult.csv.gz`` when present, else privsynth's embedded copy)
is shuffled with ``--seed``; the first ``--rows`` rows train (10,000), the next ``--test-rows``
(5,000, disjoint) are the test set of TSTR and the non-members of the membership attack, and the
next ``--sample-rows`` are a fresh real sample: the ceiling. Every method gets the declared-public
Adult schema (bounds not taken from the rows), delta 1e-5 and, for DP methods, each epsilon of
``--epsilons``; non-DP methods run once. Each (method, epsilon) is fitted and sampled
(``--sample-rows`` rows) in its own child process, one after the other, with the same thread
settings; SmartNoise runs in its own environment (``bench/envs/smartnoise``, created on first use).

Columns. fit s / sample s: wall time inside the child around ``fit`` / ``sample``; x ref: fit time
divided by the reference method's (``--reference``); peak MiB: the child's max RSS (interpreter and
libraries included); 2-way TVD (lower is better), TSTR AUC (gradient boosting trained on synthetic,
ROC AUC on the real test rows; higher is better), detection AUC (a classifier telling real
training rows from synthetic ones; 0.5 is best), MIA AUC (membership attack telling training rows
from test rows with the synthetic table; 0.5 is best) — privsynth's metric plugins, computed in
the parent process on the same rows for every method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .common import (
    SHARED_DATASETS,
    ChildResult,
    machine,
    markdown_table,
    python,
    results_dir,
    run_child,
)

PRIVSYNTH_DP = ["independent", "dpwgan", "dpctgan"]
# privsynth-marginal (a separate distribution: plugins/marginal): benched when installed
MARGINAL = ["mst", "aim"]
NON_DP = ["ctgan", "gaussian_copula"]
SMARTNOISE = ["sn_dpctgan", "sn_patectgan", "sn_mst", "sn_aim"]
ALL_METHODS = ["real", *PRIVSYNTH_DP, *MARGINAL, *NON_DP, *SMARTNOISE]
LABELS = {
    "real": "real sample (ceiling)",
    "independent": "privsynth independent",
    "dpwgan": "privsynth DP-WGAN",
    "dpctgan": "privsynth DP-CTGAN",
    "mst": "privsynth-marginal MST",
    "aim": "privsynth-marginal AIM",
    "ctgan": "SDV CTGAN (not DP)",
    "gaussian_copula": "SDV GaussianCopula (not DP)",
    "sn_dpctgan": "SmartNoise DPCTGAN",
    "sn_patectgan": "SmartNoise PATECTGAN",
    "sn_mst": "SmartNoise MST",
    "sn_aim": "SmartNoise AIM",
}
METRICS = ["marginal_2way_tvd", "tstr", "detection_auc", "mia_classifier"]
TARGET = "income"


def register(sub: Any) -> None:
    """Add the ``peers`` sub-command."""
    p = sub.add_parser(
        "peers",
        help="privsynth vs SDV and SmartNoise on Adult",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=10_000, help="training rows (10,000)")
    p.add_argument("--test-rows", type=int, default=5_000, help="disjoint test rows (5,000)")
    p.add_argument("--sample-rows", type=int, default=10_000, help="rows sampled per method")
    p.add_argument("--epochs", type=int, default=30, help="epochs of every GAN")
    p.add_argument(
        "--methods",
        default=",".join(ALL_METHODS),
        help=f"comma-separated subset of {','.join(ALL_METHODS)}",
    )
    p.add_argument("--epsilons", default="1,3,10", help="comma-separated epsilons of DP methods")
    p.add_argument(
        "--reference",
        default="ctgan",
        help="method whose fit time is 1.0x (default ctgan, else the first run)",
    )
    p.add_argument("--threads", type=int, default=1, help="threads of every child (torch, BLAS)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per (method, epsilon)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data",
        type=Path,
        help="Adult CSV (default ../shared/datasets/adult.csv.gz, else the embedded copy)",
    )
    p.add_argument("--out", type=Path, help="results root (default bench/results)")
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not create SmartNoise's environment; skip it if absent",
    )
    p.set_defaults(func=run)


def _source() -> Path:
    from privsynth_core.datasets import ADULT_PATH

    shared = SHARED_DATASETS / "adult.csv.gz"
    return shared if shared.is_file() else ADULT_PATH


def _spec(schema: Any) -> list[dict[str, Any]]:
    """Columns, kinds and public bounds for SmartNoise's transformer."""
    spec = []
    for col in schema.columns:
        numeric = col.kind.value in {"integer", "float"}
        item: dict[str, Any] = {"name": col.name, "kind": "numeric" if numeric else "categorical"}
        if numeric:
            item["lower"], item["upper"] = col.bounds
        spec.append(item)
    return spec


def _scores(train: Any, test: Any, synthetic: Any, schema: Any) -> dict[str, float | None]:
    from privsynth_core.registry import metrics

    out: dict[str, float | None] = {}
    for metric_id in METRICS:
        try:
            res = (
                metrics()
                .get(metric_id)()
                .compute(train, synthetic, schema=schema, holdout=test, target=TARGET, seed=0)
            )
            out[metric_id] = float(res.value)
        except Exception as exc:  # a metric failing on one method must not stop the table
            print(f"    {metric_id} failed: {type(exc).__name__}: {exc}", flush=True)
            out[metric_id] = None
    return out


def _job(
    method: str,
    epsilon: float | None,
    args: argparse.Namespace,
    work: Path,
    train_csv: Path,
    spec: Path,
    sn_python: Path | None,
) -> ChildResult:
    tag = f"{method}-{'nondp' if epsilon is None else f'eps{epsilon:g}'}"
    out = work / tag
    out.mkdir(parents=True, exist_ok=True)
    if method.startswith("sn_"):
        assert sn_python is not None
        cmd = [
            str(sn_python),
            str(Path(__file__).with_name("smartnoise_worker.py")),
            method[3:],
            str(epsilon),
            str(train_csv),
            str(spec),
            str(out),
        ]
    else:
        cmd = [
            python(),
            "-m",
            "bench.fit_worker",
            method,
            "none" if epsilon is None else str(epsilon),
            str(train_csv),
            str(out),
        ]
    cmd += ["--rows", str(args.sample_rows), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    return run_child(
        cmd,
        result_path=out / "result.json",
        threads=args.threads,
        timeout=args.timeout,
        log_path=work / f"{tag}.log",
    )


def run(args: argparse.Namespace) -> int:
    """Run every (method, epsilon), score them, write the table, the plot and the JSON."""
    import os
    import tempfile

    import polars as pl

    os.environ.setdefault("PRIVSYNTH_HOME", tempfile.mkdtemp(prefix="privsynth-bench-"))
    from privsynth_core.datasets import adult_schema
    from privsynth_core.evaluation.runner import type_frame
    from privsynth_core.table import read_frame

    started = time.perf_counter()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {ALL_METHODS}")
    epsilons = [float(e) for e in args.epsilons.split(",") if e.strip()]
    schema = adult_schema()
    source = args.data or _source()
    frame = read_frame(source).sample(fraction=1.0, shuffle=True, seed=args.seed)
    need = args.rows + args.test_rows + args.sample_rows
    if frame.height < need:
        raise SystemExit(f"Adult has {frame.height} rows; the split needs {need}")
    train_raw = frame.head(args.rows)
    test = type_frame(frame.slice(args.rows, args.test_rows), schema, "test")
    fresh = type_frame(frame.slice(args.rows + args.test_rows, args.sample_rows), schema, "real")
    train = type_frame(train_raw, schema, "train")
    out_dir = results_dir(args.out, "peers")
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    train_csv = work / "train.csv"
    train_raw.write_csv(train_csv)
    spec = work / "spec.json"
    spec.write_text(json.dumps(_spec(schema)), encoding="utf-8")

    sn_python, sn_note = None, ""
    if any(m.startswith("sn_") for m in methods):
        from .smartnoise_env import ensure

        print("SmartNoise environment ...", flush=True)
        sn_python, sn_note = ensure(install=not args.no_install)
        print(f"  {sn_note}", flush=True)

    rows: list[dict[str, Any]] = []
    for method in methods:
        for epsilon in [None] if method in {"real", *NON_DP} else epsilons:
            row: dict[str, Any] = {"method": method, "label": LABELS[method], "epsilon": epsilon}
            rows.append(row)
            if method == "real":
                row.update(_scores(train, test, fresh, schema))
                continue
            if method.startswith("sn_") and sn_python is None:
                row["error"] = sn_note
                continue
            tick = time.perf_counter()
            res = _job(method, epsilon, args, work, train_csv, spec, sn_python)
            print(
                f"  {row['label']} eps={epsilon}: "
                f"{'ok' if res.ok else res.error} ({time.perf_counter() - tick:.0f} s)",
                flush=True,
            )
            row.update(
                {
                    k: res.data.get(k)
                    for k in ("fit_s", "sample_s", "peak_rss_mb", "import_rss_mb", "epsilon_spent")
                }
            )
            if not res.ok:
                row["error"] = res.error
                continue
            tag_dir = work / f"{method}-{'nondp' if epsilon is None else f'eps{epsilon:g}'}"
            syn_path = next(
                p for p in (tag_dir / "synthetic.parquet", tag_dir / "synthetic.csv") if p.is_file()
            )
            raw = (
                pl.read_parquet(syn_path)
                if syn_path.suffix == ".parquet"
                else pl.read_csv(syn_path, infer_schema=False)
            )
            try:
                synthetic = type_frame(raw.select(schema.names), schema, "synthetic")
            except Exception as exc:
                row["error"] = f"output does not fit the schema: {exc}"
                continue
            row.update(_scores(train, test, synthetic, schema))
            _write(rows, args, out_dir, source, sn_note, started, plot=False)

    text = _write(rows, args, out_dir, source, sn_note, started, plot=True)
    print(text)
    print(f"written to {out_dir}")
    return 0


def _write(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    out_dir: Path,
    source: Path,
    sn_note: str,
    started: float,
    *,
    plot: bool,
) -> str:
    """Write the table and JSON (after every job, so an interrupted run keeps what it did)."""
    reference = next(
        (r for r in rows if r["method"] == args.reference and r.get("fit_s")),
        next((r for r in rows if r.get("fit_s")), None),
    )
    for row in rows:
        if reference and row.get("fit_s"):
            row["fit_ratio"] = row["fit_s"] / reference["fit_s"]
    info = {
        "machine": machine(),
        "threads": args.threads,
        "source": str(source),
        "rows": args.rows,
        "test_rows": args.test_rows,
        "sample_rows": args.sample_rows,
        "epochs": args.epochs,
        "seed": args.seed,
        "delta": 1e-5,
        "smartnoise": sn_note,
        "reference": reference["label"] if reference else None,
        "wall_s": time.perf_counter() - started,
    }
    table = _table(rows)
    text = _markdown(info, table)
    (out_dir / "peers.md").write_text(text, encoding="utf-8")
    (out_dir / "peers.json").write_text(
        json.dumps({"info": info, "rows": rows}, indent=2), encoding="utf-8"
    )
    if plot:
        _plot(rows, out_dir / "peers_privacy_utility.png")
    return text


def _table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "method",
        "epsilon",
        "fit s",
        "x ref",
        "sample s",
        "peak MiB",
        "2-way TVD ↓",
        "TSTR AUC ↑",
        "detection AUC (0.5 best)",
        "MIA AUC (0.5 best)",
        "note",
    ]
    body = []
    for r in rows:
        eps = (
            "–"
            if r["method"] == "real"
            else ("not DP" if r["epsilon"] is None else f"{r['epsilon']:g}")
        )
        ratio = f"{r['fit_ratio']:.3g}x" if r.get("fit_ratio") else None
        peak = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else None
        body.append(
            [
                r["label"],
                eps,
                r.get("fit_s"),
                ratio,
                r.get("sample_s"),
                peak,
                r.get("marginal_2way_tvd"),
                r.get("tstr"),
                r.get("detection_auc"),
                r.get("mia_classifier"),
                r.get("error", ""),
            ]
        )
    return markdown_table(headers, body)


def _markdown(info: dict[str, Any], table: str) -> str:
    m = info["machine"]
    return (
        f"# privsynth vs peers on Adult\n\n"
        f"- machine: {m['host']}, {m['cpu']}, {m['cores']} cores, {m['memory']}; "
        f"Python {m['python']}\n"
        f"- threads: {info['threads']} per child (OMP/MKL/OpenBLAS/polars and torch), "
        f"children run one at a time\n"
        f"- data: {info['source']}; train {info['rows']} rows, disjoint test "
        f"{info['test_rows']} rows, {info['sample_rows']} rows sampled; seed {info['seed']}\n"
        f"- GAN epochs: {info['epochs']}; delta {info['delta']:g}; "
        f"fit-time reference: {info['reference']}\n"
        f"- SmartNoise: {info['smartnoise'] or 'not run'}\n"
        f"- peak MiB: max RSS of the child process that fitted and sampled "
        f"(interpreter and libraries included)\n"
        f"- total wall time: {info['wall_s']:.0f} s\n\n{table}\n"
    )


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    dp_eps = sorted({r["epsilon"] for r in rows if r["epsilon"] is not None})
    for ax, key, title in (
        (axes[0], "tstr", "TSTR ROC AUC (higher is better)"),
        (axes[1], "marginal_2way_tvd", "2-way marginal TVD (lower is better)"),
    ):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [
                (r["epsilon"], r.get(key))
                for r in rows
                if r["method"] == method and r.get(key) is not None
            ]
            if not pts:
                continue
            label = LABELS[method]
            if pts[0][0] is None:
                ax.axhline(
                    pts[0][1],
                    linestyle="--" if method == "real" else ":",
                    color={"real": "black", "ctgan": "tab:gray"}.get(method, "tab:olive"),
                    label=label,
                )
            else:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        if dp_eps:
            ax.set_xscale("log")
            ax.set_xticks(dp_eps, [f"{e:g}" for e in dp_eps])
        ax.set_xlabel("epsilon (delta 1e-5)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["register", "run"]
