"""CI smoke of the benchmarks: every entry point at tiny sizes, so the bench never rots.

Only the embedded Adult table is read (never ../shared); SmartNoise is not run (its environment
is a separate install). Asserts that the tables and files are produced, not timing values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from privsynth_core.datasets import ADULT_PATH, adult_frame

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.extended  # the bench's harness; CI runs it
def test_peers_smoke(tmp_path: Path) -> None:
    proc = _bench(
        "peers",
        "--rows",
        "500",
        "--test-rows",
        "300",
        "--sample-rows",
        "500",
        "--epochs",
        "1",
        "--methods",
        "real,independent,dpwgan",
        "--epsilons",
        "1",
        "--data",
        str(ADULT_PATH),
        "--out",
        str(tmp_path / "results"),
        "--timeout",
        "240",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (tmp_path / "results").iterdir()
    table = (folder / "peers.md").read_text(encoding="utf-8")
    assert "| method | epsilon | fit s |" in table
    assert "threads: 1 per child" in table
    for label in ("real sample (ceiling)", "privsynth independent", "privsynth DP-WGAN"):
        assert label in table and label in proc.stdout
    rows = json.loads((folder / "peers.json").read_text(encoding="utf-8"))["rows"]
    assert [r["method"] for r in rows] == ["real", "independent", "dpwgan"]
    for row in rows:
        assert "error" not in row, row
        for key in ("marginal_2way_tvd", "tstr", "detection_auc", "mia_classifier"):
            assert row[key] is not None and 0.0 <= row[key] <= 1.0, (row["method"], key)
    for row in rows[1:]:
        assert row["fit_s"] > 0 and row["sample_s"] > 0 and row["peak_rss_mb"] > 0
    png = folder / "peers_privacy_utility.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.extended  # the bench's harness; CI runs it
def test_scale_smoke(tmp_path: Path) -> None:
    data = tmp_path / "adult-5k.csv"
    adult_frame(5000, seed=3).write_csv(data)
    proc = _bench(
        "scale",
        "--data",
        str(data),
        "--sizes",
        "5000",
        "--sample-rows",
        "2000",
        "--target",
        "income",
        "--out",
        str(tmp_path / "results"),
        "--timeout",
        "240",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (tmp_path / "results").iterdir()
    table = (folder / "scale.md").read_text(encoding="utf-8")
    assert "load+validate+domain s" in table and "1 DP epoch s" in table
    (row,) = json.loads((folder / "scale.json").read_text(encoding="utf-8"))["rows"]
    assert not [k for k in row if k.endswith("_error")], row
    assert row["load"]["rows"] == pl.read_csv(data).height
    assert row["train"]["generator"] in {"dpctgan", "dpwgan"}
    assert row["evaluate"]["evaluate_s"] > 0 and "tstr" in row["evaluate"]["metric_s"]


def _faults(tmp_path: Path, faults: str) -> tuple[subprocess.CompletedProcess[str], str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "faults",
            "--iterations",
            "1",
            "--faults",
            faults,
            "--out",
            str(tmp_path / "results"),
            "--scratch",
            str(tmp_path / "scratch"),
            "--timeout",
            "240",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (folder,) = (tmp_path / "results").iterdir()
    return proc, (folder / "faults.md").read_text(encoding="utf-8")


@pytest.mark.extended  # the bench's harness; CI runs it
def test_faults_smoke(tmp_path: Path) -> None:
    """One iteration of two faults: the harness (Prefect server, scratch homes, children
    released together, the table) and two of its checks."""
    proc, table = _faults(tmp_path, "ledger-deleted,two-runs-at-once")
    assert (
        "| fault | run | expected | observed | as expected | ledger before | ledger after |"
        in table
    )
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| ledger-deleted") or line.startswith("| two-runs-at-once")
    ]
    assert len(rows) == 2 and all("| yes |" in row for row in rows), table
    assert "unreadable (LedgerMissingError)" in rows[0]
    assert "1 training charge(s)" in rows[1] and "ε spent" in rows[1]
    assert "two-runs-at-once #1: as expected" in proc.stdout


@pytest.mark.extended
def test_faults_every_fault_once(tmp_path: Path) -> None:
    from bench.faults import FAULTS

    _, table = _faults(tmp_path, ",".join(FAULTS))
    assert "**NO**" not in table
    assert table.count("| yes |") == len(FAULTS) + 2  # run-killed has three steps


def test_tables_smoke(tmp_path: Path) -> None:
    # Adult only (the embedded copy when ../shared is absent), the fast independent generator
    folder = tmp_path / "results"
    proc = _bench(
        "tables",
        "--tables",
        "adult",
        "--generators",
        "independent",
        "--rows",
        "600",
        "--variants",
        "bins=8;default",
        "--out",
        str(folder),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((folder / "tables.json").read_text(encoding="utf-8"))["rows"]
    assert [r["variant"] for r in rows] == ["bins=8", "default"]
    for row in rows:
        assert 0 <= row["tvd_2way"] <= 1 and row["worst_ks_column"] is not None
        # the references are computed once per table, not per fit
        assert (row["tvd_real_holdout"], row["tvd_shuffled"]) == (
            rows[0]["tvd_real_holdout"],
            rows[0]["tvd_shuffled"],
        )
        assert row["tstr"] is not None  # income is Adult's target
        assert 0 <= row["detection_auc"] <= 1 and row["fit_peak_mb"] > 0
    assert "| adult | independent |" in (folder / "tables.md").read_text(encoding="utf-8")


def test_scale_partitioned_refuses_an_unknown_generator(tmp_path: Path) -> None:
    proc = _bench("scale-partitioned", "--generators", "mst,ctgan", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--generators: unknown ctgan; choose from counts, mst, aim" in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_scale_partitioned_fit_rows_of_a_later_run_replace_only_their_own(
    tmp_path: Path,
) -> None:
    from bench.common import machine
    from bench.partitioned import _write_fits

    def row(generator: str, rows: int, tvd: float) -> dict[str, object]:
        fit = {"load_s": 1.0, "fit_s": 2.0, "wall_s": 3.0, "peak_mb": 500.0, "tvd_2way": tvd}
        return {
            "generator": generator,
            "rows": rows,
            "partitions": rows // 250_000,
            "disk_mb": 1.0,
            "tvd_floor": 0.02,
            "load_avg": 1.0,
            "single": {**fit, "worker_peaks_mb": []},
            "cluster": {**fit, "worker_peaks_mb": [300.0, 290.0], "tvd_2way": tvd + 0.001},
        }

    info = {
        "machine": machine(),
        "workers": 2,
        "memory_limit": "2GiB",
        "rows_per_part": 250_000,
        "epsilon": 1.0,
        "sample_rows": 20_000,
    }
    # a first run, then a second that writes each fit as it ends (the last call: none new)
    _write_fits(tmp_path, {**info, "started": "a"}, [row("mst", 1_000_000, 0.05)])
    _write_fits(tmp_path, {**info, "started": "a"}, [row("aim", 1_000_000, 0.04)])
    _write_fits(tmp_path, {**info, "started": "b"}, [row("mst", 10_000_000, 0.06)])
    _write_fits(tmp_path, {**info, "started": "b"}, [row("mst", 1_000_000, 0.07)])
    text = _write_fits(tmp_path, {**info, "started": "b"}, [])
    saved = json.loads((tmp_path / "partitioned-marginal.json").read_text(encoding="utf-8"))
    assert [(r["generator"], r["rows"], r["single"]["tvd_2way"]) for r in saved["rows"]] == [
        ("mst", 1_000_000, 0.07),
        ("mst", 10_000_000, 0.06),
        ("aim", 1_000_000, 0.04),
    ]
    assert [r["started"] for r in saved["runs"]] == ["a", "b"]
    assert text == (tmp_path / "partitioned-marginal.md").read_text(encoding="utf-8")
    assert "| mst | 10,000,000 | 40 | 1.0 | 1 + 2 | 500 | 1 + 2 | 300 / 290 |" in text
    assert "| 0.0600 | 0.0610 | +0.0010 | 0.0200 |" in text


@pytest.mark.extended  # the bench's harness; CI runs it
def test_scale_partitioned_smoke(tmp_path: Path) -> None:
    # the bundled Adult sample, two partitions of 1,000 rows, the counts, an MST fit and a
    # DPWGAN epoch both ways
    proc = _bench(
        "scale-partitioned",
        "--data",
        str(ADULT_PATH),
        "--sizes",
        "2000",
        "--rows-per-part",
        "1000",
        "--generators",
        "counts,mst,dpwgan",
        "--sample-rows",
        "500",
        "--out",
        str(tmp_path / "results"),
        "--timeout",
        "240",
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (folder,) = (tmp_path / "results").iterdir()
    (counts,) = json.loads((folder / "partitioned.json").read_text(encoding="utf-8"))["rows"]
    assert counts["single"]["digest"] == counts["cluster"]["digest"]
    fits = json.loads((folder / "partitioned-marginal.json").read_text(encoding="utf-8"))["rows"]
    assert [(f["generator"], f["rows"], f["partitions"]) for f in fits] == [
        ("mst", 2000, 2),
        ("dpwgan", 2000, 2),
    ]
    for fit in fits:
        for mode in ("single", "cluster"):
            assert "error" not in fit[mode], fit[mode]
            assert 0 < fit[mode]["tvd_2way"] < 1 and fit[mode]["fit_s"] > 0
        assert len(fit["cluster"]["worker_peaks_mb"]) == 2
    assert "| mst | 2,000 | 2 |" in (folder / "partitioned-marginal.md").read_text(encoding="utf-8")


@pytest.mark.extended  # the bench's harness; CI runs it
def test_scale_partitioned_runs_only_the_partitioned_path_above_single_max_rows(
    tmp_path: Path,
) -> None:
    # 100M rows would not fit one process: above --single-max-rows only the cluster runs, and
    # the table says why the one-process cells are empty
    proc = _bench(
        "scale-partitioned",
        "--data",
        str(ADULT_PATH),
        "--sizes",
        "1000,2000",
        "--rows-per-part",
        "1000",
        "--single-max-rows",
        "1000",
        "--out",
        str(tmp_path / "results"),
        "--timeout",
        "240",
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "counts single 2,000 rows" not in proc.stdout
    (folder,) = (tmp_path / "results").iterdir()
    small, large = json.loads((folder / "partitioned.json").read_text(encoding="utf-8"))["rows"]
    assert small["single"]["digest"] == small["cluster"]["digest"]
    assert large["single"] == {"error": "not run: over --single-max-rows 1,000"}
    assert "digest" in large["cluster"] and len(large["cluster"]["worker_peaks_mb"]) == 2
    table = (folder / "partitioned.md").read_text(encoding="utf-8")
    assert "| 2,000 | 2 |" in table and "not run: over --single-max-rows 1,000" in table
