"""Dask worker preload for the flow tests: the test generators in every worker process.

Give it to a cluster with ``dask.config.set({"distributed.worker.preload": [this file]})``
before the cluster starts; a nanny passes it on to the workers it (re)starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def dask_setup(worker: Any) -> None:
    """Register ``dpsgd_marginals`` in this worker's plugin manager."""
    flows = str(Path(__file__).parent)
    if flows not in sys.path:
        sys.path.insert(0, flows)
    import dpsgd_marginals

    from privsynth_core.plugins import load_plugins, pm
    from privsynth_core.registry import reset_registries

    load_plugins()
    if pm.get_plugin("test-dpsgd") is None:
        pm.register(dpsgd_marginals, name="test-dpsgd")
    reset_registries()
