"""SDV is an optional extra: without it privsynth works and the non-DP baseline is not offered."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Run privsynth in a fresh interpreter where `import sdv` fails, as in an install without the
# `sdv` extra (a meta-path finder that refuses sdv, installed before privsynth loads).
_WITHOUT_SDV = """
import importlib.abc, importlib.machinery, sys
class NoSDV(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sdv" or name.startswith("sdv."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, NoSDV())
"""


def _run(code: str) -> str:
    env = {**os.environ, "PRIVSYNTH_LOAD_PLUGINS": "privsynth"}
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SDV + code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_without_sdv_the_baseline_is_not_registered_and_the_rest_works() -> None:
    out = _run("""
import json
from privsynth_core.registry import generators
from privsynth_ui.cli import main
print(json.dumps(sorted(generators().names())))
""")
    names = json.loads(out.strip().splitlines()[-1])
    assert "ctgan" not in names
    assert {"dpctgan", "dpwgan", "independent"} <= set(names)


def test_with_sdv_the_baseline_is_registered() -> None:
    from privsynth_core.registry import generators

    assert "ctgan" in generators().names()  # the dev install includes the extra
