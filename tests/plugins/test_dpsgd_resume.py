"""A killed DP-SGD training resumes from its last checkpoint, under its original reservation,
and the epsilon it settles counts every step ever taken (the killed attempt's lost ones too).

Real processes: the first fit runs in a child process that is killed with SIGKILL once it has
written a checkpoint; the second fit, here, resumes from the same checkpoint folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from privsynth_core import PrivacyBudget, PrivacyLedger
from privsynth_core.datasets import load_adult
from privsynth_core.privacy.checkpoint import CheckpointStore
from privsynth_core.privacy.count import COUNT_MECHANISM
from privsynth_core.registry import accountants, generators
from privsynth_core.service import fit_generator

PARAMS = {
    "dpwgan": {
        "epochs": 40,
        "batch_size": 100,
        "generator_layers": "32:relu",
        "critic_layers": "32:leaky_relu",
        "latent_dim": 8,
        "seed": 3,
        "device": "cpu",
    },
    "dpctgan": {
        "epochs": 40,
        "batch_size": 100,
        "generator_dim": [32],
        "critic_dim": [32],
        "embedding_dim": 8,
        "seed": 3,
        "device": "cpu",
    },
}
BUDGET = PrivacyBudget(8.0, 1e-5)

_CHILD = """
import sys
from privsynth_core import PrivacyLedger
from privsynth_core.privacy.checkpoint import CheckpointStore
from privsynth_core.datasets import load_adult
from privsynth_core.service import create_generator, fit_generator
import json
generator_id, params, store = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
table = load_adult(1000, seed=2)
generator = create_generator(generator_id, params)
fit_generator(table, generator, epsilon=8.0, delta=1e-5,
              ledger=PrivacyLedger(), run_id="first-attempt",
              checkpoints=CheckpointStore(store))
"""


def _kill_after_first_checkpoint(generator_id: str, store: Path) -> None:
    import json

    env = {**os.environ, "PRIVSYNTH_LOAD_PLUGINS": "privsynth", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, generator_id, json.dumps(PARAMS[generator_id]), str(store)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300  # a guard against a hung child, not a speed assertion
    while not list(store.glob("step-*")):
        if child.poll() is not None:
            raise AssertionError(
                f"the first attempt ended on its own: {child.stderr.read().decode()[-2000:]}"
            )  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()


# The same loop serves both (privsynth_core.privacy.dpsgd_loop): DP-CTGAN's kill runs in CI.
@pytest.mark.parametrize(
    "generator_id", ["dpwgan", pytest.param("dpctgan", marks=pytest.mark.extended)]
)
def test_a_killed_fit_resumes_under_its_reservation_and_counts_every_step(
    generator_id: str,
    tmp_path: Path,
    ledger: PrivacyLedger,
) -> None:
    table = load_adult(1000, seed=2)
    key = table.budget_key()
    ledger.set_budget(key, epsilon=10.0, delta=1e-4)
    store = tmp_path / "checkpoints"
    _kill_after_first_checkpoint(generator_id, store)
    [count, reservation] = ledger.entries(key)
    assert count.mechanism == COUNT_MECHANISM and reservation.status == "reserved"
    spent_while_killed = ledger.status(key).spent.epsilon

    generator = generators().get(generator_id)(**PARAMS[generator_id])
    fit_generator(
        table,
        generator,
        epsilon=BUDGET.epsilon,
        delta=BUDGET.delta,
        ledger=ledger,
        run_id="second-attempt",
        checkpoints=CheckpointStore(store),
    )
    summary = generator.fit_summary
    assert summary is not None
    # It continued from the checkpoint, not from scratch ...
    assert summary.extra["resumed_from_step"] > 0
    # ... under the first attempt's reservation: no new reservation, no second count.
    entries = ledger.entries(key)
    assert [e.entry_id for e in entries] == [count.entry_id, reservation.entry_id]
    settled = ledger.entry(reservation.entry_id)
    assert settled.status == "spent" and settled.epsilon <= BUDGET.epsilon
    assert ledger.status(key).spent.epsilon <= spent_while_killed
    # The epsilon settled is the accountant's for every step ever taken: the model's steps plus
    # the killed attempt's steps after its checkpoint (logged ahead, counted, never released).
    history = summary.accountant_state["history"]
    dp_steps = sum(t for s, q, t in history if q < 1.0)
    assert dp_steps == summary.steps + summary.extra["lost_steps_counted"]
    exact = accountants().get("rdp")._epsilon([tuple(h) for h in history], BUDGET.delta)
    assert settled.epsilon == pytest.approx(exact, rel=1e-12) == summary.epsilon
    if generator_id == "dpctgan":  # the marginals were released once and reused
        assert sum(1 for _, q, _ in history if q == 1.0) == 1
    # The resumed model samples within its schema like any other.
    assert generator.sample(50, seed=1).height == 50
