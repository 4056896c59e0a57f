"""``python -m bench faults``: inject the faults the privacy ledger must survive, in a loop, and
print what each did to the budget.

Every fault runs ``--iterations`` times, each time against a fresh scratch ``PRIVSYNTH_HOME``
(a new ledger and model store), with real processes: ``privsynth run`` / ``sweep`` children,
a real local Prefect server (started once, or ``--prefect-api-url``), a real local Dask
cluster, SIGKILL for the kills. Faults (``--faults``, default all):

- ``ledger-deleted``, ``ledger-emptied``, ``ledger-truncated``: the ledger file of a home with
  history is removed, cut to 0 bytes, or cut in half; the next run must refuse (never start a
  new budget silently) and leave the file as it found it.
- ``two-runs-at-once``: two processes run one configuration, released together: one trains
  and pays, the other waits and reuses the model.
- ``other-prefect-home``: the same configuration run again with another ``PREFECT_HOME`` (no
  Prefect result storage in common): no second charge.
- ``dask-worker-killed``: a sweep on privsynth's local Dask cluster; the worker training the
  cell is SIGKILLed mid-fit: the cell fails naming its open reservation, nothing is rerun or
  charged twice.
- ``run-killed``: ``privsynth run`` SIGKILLed mid-training (after a checkpoint): the
  reservation stays open and nothing is published; a plain rerun is refused without charging;
  ``privsynth run --resume`` settles the one reservation.
- ``stale-partial``: a writer SIGKILLed while publishing a run directory leaves its hidden
  ``.partial`` folder; the next run of that directory removes it.

The killed and concurrent fits use the repository's small checkpointing DP-SGD test generator
(``tests/flows/dpsgd_marginals.py``, slowed per step so a kill lands mid-training), registered
in every child and Dask worker; the others use ``independent``. Reports are built without their
heavy sections (``PRIVSYNTH_DISABLED_PLUGINS=evidently,report-plots``). The table (fault,
expected, observed, ledger before and after: epsilon spent and open reservations) is printed
and written to ``<out>/faults.md`` and ``faults.json``; the exit code is 1 if any fault did not
behave as expected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import REPO_DIR, machine, markdown_table, results_dir

TEST_FLOWS = REPO_DIR / "tests" / "flows"
SLOW_GENERATOR = "test-dpsgd-marginals"
#: Runs ``privsynth`` in a child with the test generators registered (and in its Dask workers,
#: through a preload), optionally waiting for a start file so children begin together.
LAUNCH_CLI = TEST_FLOWS / "launch_cli.py"


def register(sub: Any) -> None:
    """Add the ``faults`` sub-command."""
    p = sub.add_parser(
        "faults",
        help="inject ledger and runner faults, print the ledger's fate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--iterations", type=int, default=3, help="runs of each fault (default 3)")
    p.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated subset of {', '.join(FAULTS)}"
    )
    p.add_argument("--prefect-api-url", help="use this Prefect server instead of starting one")
    p.add_argument("--scratch", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--timeout", type=float, default=300, help="seconds per child process")
    p.add_argument("--out", type=Path, help="results root (default bench/results)")
    p.set_defaults(func=run)


@dataclass
class Row:
    """One line of the table."""

    fault: str
    iteration: int
    expected: str
    observed: str
    ok: bool
    before: str
    after: str


class Scratch:
    """One fault iteration's world: a PRIVSYNTH_HOME, a table with a budget, child processes."""

    def __init__(self, folder: Path, api_url: str, timeout: float) -> None:
        from privsynth_core import PrivacyLedger
        from privsynth_core.datasets import adult_frame
        from privsynth_core.table import fingerprint_frame, read_frame

        self.folder, self.timeout = folder, timeout
        folder.mkdir(parents=True)
        self.home = folder / "home"
        os.environ["PRIVSYNTH_HOME"] = str(self.home)  # for this process's ledger reads
        self.data = folder / "train.csv"
        adult_frame().head(2000).write_csv(self.data)
        self.fingerprint = fingerprint_frame(read_frame(self.data))
        PrivacyLedger().set_budget(self.fingerprint, epsilon=5.0, delta=1e-4, label="faults")
        self.env = {
            **os.environ,
            "PRIVSYNTH_HOME": str(self.home),
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(folder / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PRIVSYNTH_LOAD_PLUGINS": "privsynth",
            "PRIVSYNTH_DISABLED_PLUGINS": "evidently,report-plots",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO_DIR),
        }

    def config(self, name: str, **overrides: Any) -> Path:
        """A run configuration (YAML) publishing to ``<folder>/out/<name>``."""
        import yaml

        from privsynth_core.datasets import ADULT_SCHEMA_PATH

        data = {
            "input": str(self.data),
            "schema_path": str(ADULT_SCHEMA_PATH),
            "generator": "independent",
            "epsilon": 0.5,
            "metrics": ["tvd"],
            "rows": 300,
            "output_dir": str(self.folder / "out" / name),
            **overrides,
        }
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    def slow(self, name: str, steps: int = 300, **overrides: Any) -> Path:
        """A configuration of the slowed checkpointing DP-SGD test generator."""
        params = {
            "steps": steps,
            "step_seconds": 0.02,
            "checkpoint_every": 25,
            "pid_dir": str(self.folder / "pids"),
        }
        return self.config(
            name, generator=SLOW_GENERATOR, epsilon=1.0, delta=1e-5, params=params, **overrides
        )

    def start(
        self,
        args: list[str],
        log: str,
        *,
        go: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """``privsynth ARGS`` in a child (own session; output to ``<folder>/<log>.log``)."""
        command = [sys.executable, str(LAUNCH_CLI), *(["--go", str(go)] if go else []), *args]
        with open(self.folder / f"{log}.log", "wb") as out:
            return subprocess.Popen(
                command,
                env=env or self.env,
                cwd=REPO_DIR,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def finish(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait for a child (killed with its group past the timeout)."""
        try:
            return proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9

    def cli(self, args: list[str], log: str, **kwargs: Any) -> tuple[int, str]:
        """Run ``privsynth ARGS`` to the end; its exit code and output."""
        code = self.finish(self.start(args, log, **kwargs))
        return code, (self.folder / f"{log}.log").read_text(errors="replace")

    # -- the ledger, as the custodian sees it ---------------------------------------------

    def state(self) -> str:
        """Epsilon spent and open reservations, or why the ledger cannot be read."""
        from privsynth_core import PrivacyLedger
        from privsynth_core.errors import PrivsynthError

        try:
            ledger = PrivacyLedger(read_only=True)
            spent = ledger.status(self.fingerprint).spent.epsilon
            return f"ε spent {spent:.4g}, open {len(ledger.open_reservations())}"
        except PrivsynthError as exc:
            return f"unreadable ({type(exc).__name__})"

    def trainings(self) -> list[Any]:
        """The training entries (not the row count), oldest first."""
        from privsynth_core import PrivacyLedger

        return [
            e
            for e in PrivacyLedger(read_only=True).entries(self.fingerprint)
            if e.mechanism.endswith("training")
        ]

    def kill_when_training(
        self, *, signal_group: subprocess.Popen[bytes] | None = None, checkpoint: Path | None = None
    ) -> int | None:
        """SIGKILL the process that trains once its reservation is open (and, given
        ``checkpoint``, a checkpoint exists); return its pid."""
        from privsynth_core import PrivacyLedger

        pids = self.folder / "pids"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if signal_group is not None and signal_group.poll() is not None:
                return None
            found = sorted(pids.iterdir()) if pids.is_dir() else []
            ready = checkpoint is None or (checkpoint / "latest.json").is_file()
            if found and ready and PrivacyLedger(read_only=True).open_reservations():
                pid = int(found[0].name)
                if signal_group is not None:
                    os.killpg(signal_group.pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
                return pid
            time.sleep(0.05)
        return None


def _refusal(output: str, home: Path) -> str:
    line = next((x for x in output.splitlines() if x.startswith("privsynth: error:")), "")
    text = line.removeprefix("privsynth: error: ").replace(str(home), "$PRIVSYNTH_HOME")
    return text if len(text) <= 100 else text[:99] + "…"


# -- the faults --------------------------------------------------------------------------------


def _ledger_fault(damage: Callable[[Path], None], what: str) -> Callable[[Scratch], list[Row]]:
    def fault(s: Scratch) -> list[Row]:
        from privsynth_core.runs.config import load_run_config
        from privsynth_core.runs.rundir import run_pipeline

        run_pipeline(load_run_config(s.config("history")))  # something to lose
        before = s.state()
        ledger = s.home / "ledger.sqlite"
        for extra in (ledger.with_name("ledger.sqlite-wal"), ledger.with_name("ledger.sqlite-shm")):
            extra.unlink(missing_ok=True)
        damage(ledger)
        left = ledger.read_bytes() if ledger.exists() else None
        code, out = s.cli(["run", str(s.config("after"))], "after")
        untouched = (ledger.read_bytes() if ledger.exists() else None) == left
        ok = code == 2 and untouched and not (s.folder / "out" / "after").exists()
        observed = (
            f"exit {code}: {_refusal(out, s.home) or 'no refusal'}; file "
            f"{'left as found' if untouched else 'CHANGED'}"
        )
        return [
            Row(
                "",
                0,
                f"refused, {what} left as found, no new budget",
                observed,
                ok,
                before,
                s.state(),
            )
        ]

    return fault


def _delete(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def two_runs_at_once(s: Scratch) -> list[Row]:
    before = s.state()
    config, go = s.slow("same", steps=200), s.folder / "go"
    procs = [s.start(["run", str(config)], f"run{i}", go=go) for i in range(2)]
    while len(list(s.folder.glob("go.ready.*"))) < 2 and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    go.touch()
    codes = [s.finish(p) for p in procs]
    reused = sum(
        "reused from the store" in (s.folder / f"run{i}.log").read_text(errors="replace")
        for i in range(2)
    )
    trainings = s.trainings()
    ok = codes == [0, 0] and len(trainings) == 1 and reused == 1
    return [
        Row(
            "",
            0,
            "both succeed; one training charge; the other reuses it",
            f"exits {codes}; {len(trainings)} training charge(s); {reused} reused",
            ok,
            before,
            s.state(),
        )
    ]


def other_prefect_home(s: Scratch) -> list[Row]:
    config = s.config("first")
    code1, _ = s.cli(["run", str(config)], "first")
    before = s.state()
    entries = len(s.trainings())
    other = {**s.env, "PREFECT_HOME": str(s.folder / "other-prefect-home")}
    code2, out = s.cli(["run", str(config)], "second", env=other)
    added = len(s.trainings()) - entries
    reused = "reused from the store" in out
    ok = code1 == 0 and code2 == 0 and added == 0 and reused
    return [
        Row(
            "",
            0,
            "second run reuses the stored model; no charge",
            f"exits {[code1, code2]}; {added} new training charge(s); "
            f"{'reused' if reused else 'NOT reused'}",
            ok,
            before,
            s.state(),
        )
    ]


def dask_worker_killed(s: Scratch) -> list[Row]:
    import yaml

    from privsynth_core.datasets import ADULT_SCHEMA_PATH

    before = s.state()
    params = {
        "steps": 400,
        "step_seconds": 0.02,
        "checkpoint_every": 25,
        "pid_dir": str(s.folder / "pids"),
    }
    sweep = s.folder / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "base": {
                    "input": str(s.data),
                    "schema_path": str(ADULT_SCHEMA_PATH),
                    "metrics": ["tvd"],
                    "rows": 300,
                    "delta": 1e-5,
                },
                "grid": {
                    "generators": [SLOW_GENERATOR],
                    "epsilons": [1.0],
                    "params": {SLOW_GENERATOR: params},
                },
                "output_dir": str(s.folder / "sweep"),
            }
        )
    )
    proc = s.start(["sweep", str(sweep), "--task-runner", "dask", "--dask-workers", "1"], "sweep")
    killed = s.kill_when_training()
    code = s.finish(proc)
    out = (s.folder / "sweep.log").read_text(errors="replace")
    trainings = s.trainings()
    opened = [e.entry_id for e in trainings if e.status == "reserved"]
    named = bool(opened) and f"open reservation #{opened[0]}" in out
    ok = killed is not None and code == 2 and len(trainings) == 1 and len(opened) == 1 and named
    return [
        Row(
            "",
            0,
            "cell failed, naming its open reservation; not rerun, no second charge",
            f"worker {'killed' if killed else 'NOT killed'}; exit {code}; "
            f"{len(trainings)} training charge(s), {len(opened)} open"
            f"{', named in the failure' if named else ''}",
            ok,
            before,
            s.state(),
        )
    ]


def run_killed(s: Scratch) -> list[Row]:
    from privsynth_core.runs.rundir import work_dir_for

    config = s.slow("killed", steps=400)
    run_dir = s.folder / "out" / "killed"
    before = s.state()
    proc = s.start(["run", str(config)], "killed")
    killed = s.kill_when_training(
        signal_group=proc, checkpoint=work_dir_for(run_dir) / "checkpoints"
    )
    proc.wait()
    trainings = s.trainings()
    rows = [
        Row(
            "",
            0,
            "reservation stays open; nothing published",
            f"{'killed' if killed else 'NOT killed'}; {len(trainings)} training "
            f"charge(s), {sum(e.status == 'reserved' for e in trainings)} open; run dir "
            f"{'present' if run_dir.exists() else 'absent'}",
            killed is not None
            and len(trainings) == 1
            and trainings[0].status == "reserved"
            and not run_dir.exists(),
            before,
            s.state(),
        )
    ]
    before = s.state()
    code, out = s.cli(["run", str(config)], "rerun")
    named = bool(trainings) and f"reservation #{trainings[0].entry_id}" in out
    rows.append(
        Row(
            "",
            0,
            "plain rerun refused, naming it; nothing charged",
            f"exit {code}; {len(s.trainings())} training charge(s)"
            f"{'; reservation named' if named else ''}",
            code == 2 and named and len(s.trainings()) == 1,
            before,
            s.state(),
        )
    )
    before = s.state()
    code, _ = s.cli(["run", "--resume", str(run_dir)], "resume")
    after = s.trainings()
    rows.append(
        Row(
            "",
            0,
            "--resume settles the same reservation",
            f"exit {code}; {len(after)} training charge(s), {after[0].status if after else '-'}",
            code == 0
            and len(after) == 1
            and after[0].status == "spent"
            and bool(trainings)
            and after[0].entry_id == trainings[0].entry_id,
            before,
            s.state(),
        )
    )
    return rows


WRITER = """
import sys, time
from privsynth_core.fileio import atomic_directory
with atomic_directory(sys.argv[1], overwrite=True) as tmp:
    (tmp / "synthetic.csv").write_bytes(b"x" * 5_000_000)
    print("writing", flush=True)
    time.sleep(600)
"""


def stale_partial(s: Scratch) -> list[Row]:
    config = s.config("stale")
    run_dir = s.folder / "out" / "stale"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run_dir)], env=s.env, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    writer.stdout.readline()  # its hidden .partial folder is being written
    writer.kill()  # SIGKILL mid-publish: the .partial stays behind
    writer.wait()
    left = [p.name for p in run_dir.parent.glob(".stale.*.partial")]
    before = s.state()
    code, _ = s.cli(["run", str(config)], "stale")
    after = [p.name for p in run_dir.parent.glob(".stale.*.partial")]
    ok = bool(left) and code == 0 and not after and run_dir.is_dir()
    return [
        Row(
            "",
            0,
            "the next run removes the dead writer's .partial and publishes",
            f"{len(left)} stale .partial before, {len(after)} after; exit {code}",
            ok,
            before,
            s.state(),
        )
    ]


FAULTS: dict[str, Callable[[Scratch], list[Row]]] = {
    "ledger-deleted": _ledger_fault(_delete, "the missing file"),
    "ledger-emptied": _ledger_fault(_empty, "the emptied file"),
    "ledger-truncated": _ledger_fault(_truncate, "the cut file"),
    "two-runs-at-once": two_runs_at_once,
    "other-prefect-home": other_prefect_home,
    "dask-worker-killed": dask_worker_killed,
    "run-killed": run_killed,
    "stale-partial": stale_partial,
}
_STEPS = {
    "run-killed": ["kill -9 `privsynth run` mid-training", "… then rerun it", "… then `--resume`"]
}


# -- the Prefect server -----------------------------------------------------------------------


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A local ``prefect server start`` on a free port; its process and API URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError("prefect server did not start; see " + str(home / "server.log"))
        time.sleep(0.5)


def stop_prefect_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server started by :func:`start_prefect_server` (killed if it lingers)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- the loop -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run every chosen fault ``--iterations`` times; print and write the table."""
    # Reports without their heavy sections, here and in every child (see the docstring).
    os.environ["PRIVSYNTH_DISABLED_PLUGINS"] = "evidently,report-plots"
    chosen = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown:
        print(
            f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}",
            file=sys.stderr,
        )
        return 2
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="privsynth-faults-"))
    scratch.mkdir(parents=True, exist_ok=True)
    server = None
    url = args.prefect_api_url
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        if url is None:
            server, url = start_prefect_server(scratch / "prefect-server")
        for name in chosen:
            for i in range(1, args.iterations + 1):
                world = Scratch(scratch / f"{name}-{i}", url, args.timeout)
                labels = _STEPS.get(name, [name])
                for step, row in enumerate(FAULTS[name](world)):
                    row.fault, row.iteration = labels[min(step, len(labels) - 1)], i
                    rows.append(row)
                    print(
                        f"{row.fault} #{i}: {'as expected' if row.ok else 'UNEXPECTED'}: "
                        f"{row.observed}",
                        flush=True,
                    )
    finally:
        if server is not None:
            stop_prefect_server(server)
        if not args.keep and args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    table = markdown_table(
        ["fault", "run", "expected", "observed", "as expected", "ledger before", "ledger after"],
        [
            [
                r.fault,
                r.iteration,
                r.expected,
                r.observed,
                "yes" if r.ok else "**NO**",
                r.before,
                r.after,
            ]
            for r in rows
        ],
    )
    folder = results_dir(args.out, "faults")
    header = (
        f"# privsynth faults ({args.iterations} iteration(s), "
        f"{time.perf_counter() - started:.0f} s)\n\n"
    )
    (folder / "faults.md").write_text(header + table + "\n", encoding="utf-8")
    (folder / "faults.json").write_text(
        json.dumps({"machine": machine(), "rows": [asdict(r) for r in rows]}, indent=2),
        encoding="utf-8",
    )
    print("\n" + table)
    print(f"\nwritten to {folder / 'faults.md'}")
    return 0 if all(r.ok for r in rows) else 1
