"""``privsynth ARGS`` in a fresh process with the flow tests' generators registered.

Usage: ``python tests/flows/launch_cli.py [--go FILE] ARGS...``. The test generators are
registered in this process and, through a worker preload, in every Dask worker it starts. With
``--go FILE`` the process first finishes its imports, says so (``FILE.ready.<pid>``), then waits
for ``FILE`` to exist: processes released together start their runs together. Used by the flow
tests (``flowhelpers.start_cli``) and ``python -m bench faults``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _wait_for(go: str) -> None:
    open(f"{go}.ready.{os.getpid()}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.02)


def launch(args: list[str]) -> int:
    """Register the test generators (here and in Dask workers), then run ``privsynth ARGS``."""
    sys.path.insert(0, str(HERE))
    import dask

    dask.config.set({"distributed.worker.preload": [str(HERE / "dask_preload.py")]})
    from privsynth_core.plugins import load_plugins, pm

    load_plugins()
    import dpsgd_marginals

    pm.register(dpsgd_marginals, name="test-dpsgd")
    import privsynth_flows.synthesize  # noqa: F401  (imported before a start signal: runs start together)
    from privsynth_ui.cli import main

    if args[:1] == ["--go"]:
        _wait_for(args[1])
        args = args[2:]
    return main(args)


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
