"""Shared helpers of the benchmarks: data, child processes, results folders, machine facts.

Every measured step runs in its own child process so that its peak memory is that process'
maximum resident set size (``VmHWM`` of /proc/self/status, reported by the child itself:
interpreter and imported libraries included; not ``ru_maxrss``, which on Linux also counts the
parent's memory at the fork), and so a step that runs too long can be stopped without losing the
rest of the run.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SHARED_DATASETS = REPO_DIR.parent / "shared" / "datasets"
RESULTS_DIR = BENCH_DIR / "results"


def thread_env(threads: int) -> dict[str, str]:
    """Environment of a child process with every thread pool pinned to ``threads``."""
    env = dict(os.environ)
    for name in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "POLARS_MAX_THREADS",
        "BENCH_THREADS",
    ):
        env[name] = str(threads)
    env.setdefault("PYTHONHASHSEED", "0")
    env["PYTHONPATH"] = str(REPO_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def with_marginal_plugin() -> None:
    """Make this process (and its children) load the ``privsynth-marginal`` plugin (MST, AIM)
    too when ``PRIVSYNTH_LOAD_PLUGINS`` limits the plugins loaded (as the test suite does)."""
    wanted = ["privsynth", "privsynth-marginal"]
    loaded = [d.strip() for d in os.environ.get("PRIVSYNTH_LOAD_PLUGINS", "").split(",")]
    names = [d for d in loaded if d]
    os.environ["PRIVSYNTH_LOAD_PLUGINS"] = ",".join(names + [d for d in wanted if d not in names])


def write_rows_json(path: Path, args: Any, rows: list[dict[str, Any]]) -> None:
    """Write a bench's ``rows`` to ``path`` as JSON, with this machine's facts and the
    command's arguments (``args``, an argparse namespace), so a result says how it was made."""
    path.write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": {k: str(v) for k, v in vars(args).items() if k != "func"},
                "rows": rows,
            },
            indent=1,
        )
    )


def machine() -> dict[str, Any]:
    """Facts about this machine, written next to every result."""
    try:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
    except OSError:
        cpu = platform.processor()
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        mem = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        mem = "unknown"
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def results_dir(root: Path | None, label: str) -> Path:
    """``<root>/<date>-<host>/`` (created); ``root`` defaults to ``bench/results``."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    path = (root or RESULTS_DIR) / f"{stamp}-{host}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ChildResult:
    """What a child step reported, or why it reported nothing."""

    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0


def run_child(
    command: list[str],
    *,
    result_path: Path,
    threads: int,
    timeout: float,
    log_path: Path | None = None,
) -> ChildResult:
    """Run ``command`` (which writes JSON to ``result_path``) with a timeout and pinned threads."""
    started = time.perf_counter()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.run(
            command,
            env=thread_env(threads),
            cwd=REPO_DIR,
            stdout=log,
            stderr=log,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ChildResult(
            False, error=f"timed out after {timeout:.0f} s", wall_s=time.perf_counter() - started
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]
    wall = time.perf_counter() - started
    if result_path.is_file():
        data = json.loads(result_path.read_text(encoding="utf-8"))
        if data.get("error"):
            return ChildResult(False, data, error=str(data["error"]), wall_s=wall)
        return ChildResult(True, data, wall_s=wall)
    return ChildResult(
        False, error=f"exit code {proc.returncode}, no result (see log)", wall_s=wall
    )


def python() -> str:
    """The interpreter of this environment (children run in the same one)."""
    return sys.executable


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers rounded, missing values as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
