"""The model store: a fit is paid for once; a dead attempt's reservation is refused, not paid
again; OS locks freed by a dying process; stale temporary siblings of dead writers removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from privsynth_core import PrivacyLedger
from privsynth_core.datasets import ADULT_SCHEMA_PATH
from privsynth_core.errors import BudgetExceededError
from privsynth_core.fileio import host_tag, remove_stale_siblings
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import RunConfig, run_config_from_dict
from privsynth_core.runs.rundir import run_pipeline
from privsynth_core.runs.sweep import check_grid_budget
from privsynth_core.store import (
    FIT_KEY_PARAM,
    UnfinishedFitError,
    check_unfinished,
    exclusive_lock,
)
from privsynth_core.table import fingerprint_frame, read_frame

pytestmark = pytest.mark.usefixtures("light_reports")  # a report is written, not its heavy sections


@pytest.fixture
def adult_csv(tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger) -> Path:
    path = tmp_path / "adult.csv"
    adult_raw.sample(1500, seed=5).write_csv(path)
    ledger.set_budget(fingerprint_frame(read_frame(path)), epsilon=2.0, delta=1e-4)
    return path


def _config(data: Path, out: Path, **overrides: object) -> RunConfig:
    return run_config_from_dict(
        {
            "input": str(data),
            "schema_path": str(ADULT_SCHEMA_PATH),
            "generator": "independent",
            "epsilon": 0.5,
            "metrics": [],
            "output_dir": str(out),
            **overrides,
        }
    )


def _schema(config: RunConfig) -> Path:
    fingerprint = fingerprint_frame(read_frame(config.input))
    return pipeline.resolve_domain(
        config,
        pipeline.cache_dir() / "domains" / pipeline.domain_key(config, fingerprint),
        run_id="test",
    )


def _dead_attempt(
    ledger: PrivacyLedger, config: RunConfig, schema: Path, epsilon: float = 0.5
) -> int:
    """What a fit killed mid-training leaves in the ledger: its reservation, open."""
    fingerprint = fingerprint_frame(read_frame(config.input))
    key = pipeline.fit_key(config, fingerprint, schema)
    entry = ledger.reserve(
        fingerprint,
        mechanism="independent training",
        epsilon=epsilon,
        delta=0.0,
        run_id="dead-run",
        extract=fingerprint,
        params={FIT_KEY_PARAM: key},
    )
    return entry.entry_id


def test_fit_after_a_dead_attempt_is_refused_until_the_custodian_closes_it(
    adult_csv: Path,
    tmp_path: Path,
    ledger: PrivacyLedger,
) -> None:
    config = _config(adult_csv, tmp_path / "run")
    schema = _schema(config)
    entry_id = _dead_attempt(ledger, config, schema)
    before = ledger.entries(fingerprint_frame(read_frame(adult_csv)))

    with pytest.raises(UnfinishedFitError) as refused:
        pipeline.fit_model(config, schema, run_id="retry")
    message = str(refused.value)
    assert f"reservation #{entry_id}" in message and "privsynth budget reservations" in message
    assert f"privsynth budget close {entry_id} --note" in message
    assert [e.entry_id for e in refused.value.entries] == [entry_id]
    assert ledger.entries(fingerprint_frame(read_frame(adult_csv))) == before  # nothing paid
    # A whole run is refused the same way, before anything is published.
    with pytest.raises(UnfinishedFitError):
        run_pipeline(config)
    assert not (tmp_path / "run").exists()

    ledger.close_reservation(entry_id, note="attempt killed by the OOM killer; reviewed")
    result = run_pipeline(config)
    trained = [
        e
        for e in ledger.entries(fingerprint_frame(read_frame(adult_csv)))
        if e.mechanism == "independent training"
    ]
    assert [e.status for e in trained] == ["spent", "spent"]
    assert result.manifest["fit"]["ledger_entry"] == trained[-1].entry_id
    # The stored model names the entry that paid for it; a rerun reuses it for free.
    record = pipeline.fit_record(
        pipeline.model_store_entry(config, fingerprint_frame(read_frame(adult_csv)), schema)
        / pipeline.MODEL_SUBDIR
    )
    assert record["ledger_entry_id"] == trained[-1].entry_id
    entries = ledger.entries(fingerprint_frame(read_frame(adult_csv)))
    assert run_pipeline(config).manifest["fit"]["reused_from_store"] is True
    assert ledger.entries(fingerprint_frame(read_frame(adult_csv))) == entries


def test_only_the_attempt_own_checkpoints_may_continue_its_reservation(
    adult_csv: Path,
    tmp_path: Path,
    ledger: PrivacyLedger,
) -> None:
    import json

    config = _config(adult_csv, tmp_path / "run")
    schema = _schema(config)
    entry_id = _dead_attempt(ledger, config, schema)
    fingerprint = fingerprint_frame(read_frame(adult_csv))
    key = pipeline.fit_key(config, fingerprint, schema)
    own = tmp_path / "own"
    own.mkdir()
    (own / "reservation.json").write_text(json.dumps({"entry_id": entry_id}))
    check_unfinished(ledger, fingerprint, key, checkpoint_dir=own)  # its resume: allowed
    for other in (None, tmp_path / "other"):
        with pytest.raises(UnfinishedFitError):
            check_unfinished(ledger, fingerprint, key, checkpoint_dir=other)
    # Another fit of the same data (another epsilon) is not held back by it.
    check_unfinished(
        ledger,
        fingerprint,
        pipeline.fit_key(_config(adult_csv, tmp_path / "run", epsilon=0.4), fingerprint, schema),
    )


def test_budget_precheck_counts_stored_models_and_open_reservations_as_paid(
    adult_csv: Path,
    tmp_path: Path,
    ledger: PrivacyLedger,
) -> None:
    fingerprint = fingerprint_frame(read_frame(adult_csv))
    stored = _config(adult_csv, tmp_path / "a", epsilon=0.6)
    dead = _config(adult_csv, tmp_path / "b", epsilon=0.7)
    new = _config(adult_csv, tmp_path / "c", epsilon=0.3)
    run_pipeline(stored)
    schema = _schema(stored)
    _dead_attempt(ledger, dead, schema, epsilon=0.7)
    remaining = ledger.status(fingerprint).remaining.epsilon
    assert remaining < 0.7 + 0.6  # counting either cell again would refuse the grid
    cost = check_grid_budget([stored, dead, new], fingerprint=fingerprint, schema_path=schema)
    assert cost.epsilon == pytest.approx(0.3)
    with pytest.raises(BudgetExceededError):
        check_grid_budget(
            [new, _config(adult_csv, tmp_path / "d", epsilon=remaining)],
            fingerprint=fingerprint,
            schema_path=schema,
        )


HOLDER = """
import sys, time
from privsynth_core.store import exclusive_lock
with exclusive_lock(sys.argv[1], what="test"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_lock_waits_for_its_holder_and_is_freed_when_the_holder_dies(tmp_path: Path) -> None:
    target = tmp_path / "entry"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        acquired = threading.Event()
        killed = threading.Event()
        order: list[str] = []

        def take() -> None:
            with exclusive_lock(target, what="test"):
                order.append("killed first" if killed.is_set() else "acquired while held")
                acquired.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not acquired.wait(timeout=1.0)  # blocked while the holder lives
        killed.set()
        os.kill(holder.pid, signal.SIGKILL)
        assert acquired.wait(timeout=60)
        assert order == ["killed first"]
    finally:
        holder.kill()
        holder.wait()


WRITER = """
import sys, time
from privsynth_core.fileio import atomic_directory
with atomic_directory(sys.argv[1]) as tmp:
    (tmp / "big.bin").write_bytes(b"x" * 1_000_000)
    print("writing", flush=True)
    time.sleep(600)
"""


def _writer(target: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def test_stale_siblings_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "run"
    dead = _writer(target)
    dead.kill()  # SIGKILL: its `finally` never runs, the .partial stays
    dead.wait()
    (dead_partial,) = [p.name for p in tmp_path.glob(".run.owner-*.partial")]
    live = _writer(target)
    try:
        other_host = tmp_path / f".run.owner-elsewhere{host_tag()}-{dead.pid}.abc123.partial"
        other_host.mkdir()
        legacy = tmp_path / ".run.k2j4h5.partial"  # an older privsynth's name, recent
        legacy.mkdir()
        unrelated = tmp_path / ".run.lock"
        unrelated.write_text("")

        removed = remove_stale_siblings(target)

        assert [p.name for p in removed] == [dead_partial]
        left = {p.name for p in tmp_path.iterdir()}
        assert dead_partial not in left
        assert any(f"-{live.pid}." in n for n in left)  # a live writer's work is kept
        assert {other_host.name, legacy.name, unrelated.name} <= left
    finally:
        live.kill()
        live.wait()


def test_a_run_removes_what_a_killed_publish_left(
    adult_csv: Path,
    tmp_path: Path,
) -> None:
    config = _config(adult_csv, tmp_path / "out" / "run")
    dead = _writer(config.output_dir)
    dead.kill()
    dead.wait()
    assert list((tmp_path / "out").glob(".run.owner-*.partial"))
    result = run_pipeline(config)
    assert result.run_dir.is_dir()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".run.lock", "run"]
