"""``privsynth budget`` in real subprocesses: a lost, damaged, read-only or unwritable ledger gives
one readable line (never a traceback), tampering fails ``verify``, backups round-trip, and the
custodian's commands for reservations, non-DP runs and sources."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from privsynth_core import PrivacyLedger
from privsynth_core.privacy.ledger import budget_key

FP = "c" * 64


def privsynth(
    home: Path, *args: str, prefix: tuple[str, ...] = (), stdout: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """Run the real command line with ``PRIVSYNTH_HOME=home``."""
    env = {**os.environ, "PRIVSYNTH_HOME": str(home)}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "privsynth_ui.cli", "budget", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2 and exactly one ``privsynth: error:`` line that contains ``fragments``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("privsynth: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def unprivileged() -> tuple[str, ...]:
    """A command prefix under which file permissions bind (root's capabilities ignore them)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search", "--")


@pytest.fixture
def home(privsynth_home: Path) -> Iterator[Path]:
    """The test's home, with a ledger that has spent 0.5 of a source's budget of 2."""
    ledger = PrivacyLedger()
    key = budget_key("claims", FP)
    ledger.set_budget(key, epsilon=2.0, delta=1e-5, label="claims")
    ledger.charge(key, mechanism="dp histogram", epsilon=0.5, delta=0.0, run_id="run-1", extract=FP)
    yield privsynth_home
    for path in [privsynth_home, *privsynth_home.rglob("*")]:  # let pytest clean up
        path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)


def _remove_db(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (home / f"ledger.sqlite{suffix}").unlink(missing_ok=True)


def test_a_deleted_ledger_is_refused_with_the_way_to_restore_it(home: Path) -> None:
    _remove_db(home)
    for args in (
        ["show"],
        ["set", "--source", "claims", "--epsilon", "9", "--delta", "1e-5"],
        ["reservations"],
        ["verify"],
    ):
        one_line_error(
            privsynth(home, *args), "is missing or empty", "privsynth budget import BACKUP"
        )
    assert not (home / "ledger.sqlite").exists()
    init = privsynth(home, "init", "--new-ledger", "--note", "lost with the old laptop")
    assert init.returncode == 0 and "started a new privacy ledger" in init.stdout
    assert "no budgets set yet" in privsynth(home, "show").stdout


def test_an_emptied_or_truncated_ledger_gives_one_line(home: Path) -> None:
    db = home / "ledger.sqlite"
    ledger = PrivacyLedger()
    for i in range(20):  # a file of many pages
        ledger.record_non_private(
            budget_key("claims", FP), mechanism=f"m{i}", run_id="r", params={"blob": "x" * 4000}
        )
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    one_line_error(privsynth(home, "show"), "is damaged", "privsynth budget import BACKUP")
    db.write_bytes(b"")
    one_line_error(privsynth(home, "show"), "is missing or empty")
    assert db.stat().st_size == 0


def test_an_unwritable_home_gives_one_line(privsynth_home: Path) -> None:
    privsynth_home.mkdir()
    privsynth_home.chmod(0o555)
    try:
        result = privsynth(
            privsynth_home,
            "set",
            "--source",
            "claims",
            "--epsilon",
            "1",
            "--delta",
            "1e-5",
            prefix=unprivileged(),
        )
        one_line_error(result, "cannot create the privacy ledger", "writable")
        assert (
            "no budgets set yet" in privsynth(privsynth_home, "show", prefix=unprivileged()).stdout
        )
    finally:
        privsynth_home.chmod(0o755)
    assert list(privsynth_home.iterdir()) == []


def test_show_and_verify_work_on_a_read_only_ledger(home: Path) -> None:
    for path in home.iterdir():
        path.chmod(0o444)
    home.chmod(0o555)
    before = sorted(p.name for p in home.iterdir())
    show = privsynth(home, "show", "--source", "claims", prefix=unprivileged())
    assert show.returncode == 0, show.stderr
    assert "spent (epsilon=0.5" in show.stdout and "dp histogram" in show.stdout
    verify = privsynth(home, "verify", prefix=unprivileged())
    assert verify.returncode == 0 and "is intact" in verify.stdout
    one_line_error(
        privsynth(
            home,
            "set",
            "--source",
            "claims",
            "--epsilon",
            "9",
            "--delta",
            "1e-5",
            prefix=unprivileged(),
        ),
        "privacy ledger",
    )
    assert sorted(p.name for p in home.iterdir()) == before


def test_verify_reports_an_edited_epsilon(home: Path) -> None:
    conn = sqlite3.connect(home / "ledger.sqlite")
    conn.execute("UPDATE entries SET epsilon = 0.05")
    conn.commit()
    conn.close()
    result = privsynth(home, "verify")
    one_line_error(result, "1 integrity problem(s)")
    assert "entry 1: epsilon is 0.05 in the tables but 0.5 by the events" in result.stdout
    show = privsynth(home, "show")  # reading still answers, and says the figures are suspect
    assert show.returncode == 0 and "SPENT" in show.stdout
    assert "warning: the privacy ledger" in show.stderr and "1 problem(s)" in show.stderr
    one_line_error(privsynth(home, "close", "1", "--note", "x"), "fails its integrity check")


def test_export_delete_import_round_trip(home: Path, tmp_path: Path) -> None:
    backup = tmp_path / "ledger-backup.json"
    before = privsynth(home, "show", "--source", "claims").stdout
    assert privsynth(home, "export", str(backup)).returncode == 0
    _remove_db(home)
    restored = privsynth(home, "import", str(backup))
    assert restored.returncode == 0 and "verified intact" in restored.stdout
    assert privsynth(home, "show", "--source", "claims").stdout == before
    assert privsynth(home, "verify").returncode == 0
    one_line_error(privsynth(home, "import", str(backup)), "is present")
    one_line_error(privsynth(home, "import", str(tmp_path / "nope.json")), "no backup file")


def test_reservations_are_listed_and_closed(home: Path) -> None:
    entry = PrivacyLedger().reserve(
        budget_key("claims", FP),
        mechanism="dpctgan training",
        epsilon=1.0,
        delta=1e-6,
        run_id="killed-run",
    )
    listed = privsynth(home, "reservations")
    assert "dpctgan training" in listed.stdout and "killed-run" in listed.stdout
    closed = privsynth(home, "close", str(entry.entry_id), "--note", "worker OOM-killed")
    assert closed.returncode == 0 and "spent in full" in closed.stdout
    assert "no open reservations" in privsynth(home, "reservations").stdout
    one_line_error(
        privsynth(home, "close", str(entry.entry_id), "--note", "again"), "not an open reservation"
    )
    assert PrivacyLedger().status(budget_key("claims", FP)).spent.epsilon == 1.5


def test_a_non_dp_run_shows_unbounded_until_acknowledged(home: Path) -> None:
    PrivacyLedger().record_non_private(
        budget_key("claims", FP), mechanism="ctgan", run_id="baseline"
    )
    unbounded = "unbounded (1 non-DP run(s), not acknowledged)"
    assert unbounded in privsynth(home, "show").stdout
    assert unbounded in privsynth(home, "show", "--source", "claims").stdout
    ack = privsynth(home, "acknowledge", "--source", "claims", "--note", "internal baseline")
    assert ack.returncode == 0 and "acknowledged 1 non-DP run(s)" in ack.stdout
    assert "unbounded" not in privsynth(home, "show").stdout
    one_line_error(
        privsynth(home, "acknowledge", "--source", "claims", "--note", "x"),
        "nothing to acknowledge",
    )


def test_set_and_show_by_source_or_file(home: Path, tmp_path: Path) -> None:
    result = privsynth(home, "set", "--source", "visits", "--epsilon", "3", "--delta", "1e-6")
    assert result.returncode == 0 and "budget of visits (source:visits)" in result.stdout
    data = tmp_path / "extract.csv"
    data.write_text("a,b\n1,x\n2,y\n")
    assert privsynth(home, "set", str(data), "--epsilon", "1", "--delta", "1e-6").returncode == 0
    listing = privsynth(home, "show").stdout
    assert "source:visits" in listing and "extract.csv" in listing and "claims" in listing
    one_line_error(
        privsynth(home, "set", str(data), "--source", "visits", "--epsilon", "1", "--delta", "0"),
        "not both",
    )
    one_line_error(
        privsynth(home, "set", "--source", "bad id", "--epsilon", "1", "--delta", "0"),
        "invalid data source id",
    )
    one_line_error(privsynth(home, "show", "--source", "unknown"), "no privacy budget is set")


def test_a_closed_pipe_ends_quietly(home: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, like `| head -0`
    try:
        result = privsynth(home, "show", stdout=write_end)
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert result.returncode == 141
