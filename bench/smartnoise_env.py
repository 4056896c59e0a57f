"""SmartNoise's own virtual environment under ``bench/envs/smartnoise`` (gitignored).

smartnoise-synth pins an old Opacus (0.14) and cannot share privsynth's environment, so the bench
creates a separate one with ``python3.11 -m venv`` and installs it there on first use. When that
cannot be done, the reason is returned and the SmartNoise rows read "could not be installed".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .common import BENCH_DIR

ENV_DIR = BENCH_DIR / "envs" / "smartnoise"
# packaging: snsynth.pytorch imports it but does not declare it (smartnoise-synth 1.0.8).
PACKAGES = ["smartnoise-synth", "torch==2.13.0", "packaging"]


def _works(python: Path) -> str | None:
    """None if ``python`` can import snsynth, else why not."""
    if not python.is_file():
        return "no environment yet"
    proc = subprocess.run(
        [str(python), "-c", "import snsynth, opacus; print(opacus.__version__)"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["import failed"])[-1]


def ensure(*, install: bool = True, timeout: float = 1800) -> tuple[Path | None, str]:
    """The environment's python and a note (its versions), or None and why it is missing."""
    python = ENV_DIR / "bin" / "python"
    problem = _works(python)
    if problem is not None and install:
        interpreter = shutil.which("python3.11")
        if interpreter is None:
            return None, "could not be installed: python3.11 is not on PATH"
        log = ENV_DIR.parent / "smartnoise-install.log"
        ENV_DIR.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not python.is_file():
                subprocess.run(
                    [interpreter, "-m", "venv", str(ENV_DIR)],
                    check=True,
                    capture_output=True,
                    timeout=300,
                )
            with open(log, "w", encoding="utf-8") as out:
                proc = subprocess.run(
                    [str(python), "-m", "pip", "install", "-q", *PACKAGES],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"could not be installed: {type(exc).__name__}: {exc}"
        if proc.returncode != 0:
            lines = [
                ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.startswith("ERROR")
            ]
            return None, (
                "could not be installed: "
                + (lines[-1] if lines else f"pip exit code {proc.returncode}")
            )
        problem = _works(python)
    if problem is not None:
        return None, f"could not be installed: {problem}"
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(', '.join(p + ' ' + "
            "m.version(p) for p in ('smartnoise-synth', 'opacus', 'torch')))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return python, versions.stdout.strip()
