"""The audit flow: training runs fan out on a local Dask cluster; the CLI writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privsynth_core import PrivacyLedger
from privsynth_core.privacy.audit import AuditConfig
from privsynth_ui.cli import main


@pytest.mark.extended  # the audit's claim: test_cli_audit_writes_json_plot_and_summary
def test_audit_flow_runs_trials_on_dask(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from distributed import Client, LocalCluster

    from privsynth_flows.audit import audit
    from privsynth_flows.runtime import make_task_runner

    config = AuditConfig(
        input=str(adult_files["train"]),
        schema_path=str(adult_files["schema"]),
        generator="independent",
        epsilon=1.0,
        canaries=60,
        runs=2,
    )
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,  # type: ignore[no-untyped-call]
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # type: ignore[no-untyped-call]
        runner = make_task_runner("dask", address=cluster.scheduler_address)
        output = audit.with_options(task_runner=runner)(config, str(tmp_path / "audit"))
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)

    assert sum(executed.values()) == 2, executed  # the two training runs ran on the workers
    result = output.result
    assert result.runs == 2 and result.canaries_total == 120
    assert not result.refuted and result.epsilon_lower_bound <= 1.0
    saved = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert saved["epsilon_lower_bound"] == result.epsilon_lower_bound
    assert [t["index"] for t in saved["trials"]] == [0, 1]
    assert PrivacyLedger().datasets() == []  # audit trainings never touch the user's ledger


def test_cli_audit_writes_json_plot_and_summary(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "audit"
    code = main(
        [
            "audit",
            str(adult_files["train"]),
            "--generator",
            "independent",
            "--param",
            "bins=16",
            "--epsilon",
            "0.5",
            "--canaries",
            "80",
            "--schema",
            str(adult_files["schema"]),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "lower bound (95%)" in printed and "not refuted" in printed
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "roc.png", "summary.md"]
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "audit.json").read_text())
    assert data["claimed_epsilon"] == 0.5 and data["params"] == {"bins": 16}
    assert len(data["roc"]["fpr"]) == len(data["roc"]["tpr"]) >= 2
    assert "custodian-only" in (out / "summary.md").read_text()
    # A second run into the same directory is refused without --overwrite.
    assert (
        main(
            [
                "audit",
                str(adult_files["train"]),
                "--generator",
                "independent",
                "--epsilon",
                "0.5",
                "--canaries",
                "80",
                "--schema",
                str(adult_files["schema"]),
                "-o",
                str(out),
            ]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err


def test_cli_audit_refuses_non_dp_generator(
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "audit",
            str(adult_files["train"]),
            "--generator",
            "ctgan",
            "--epsilon",
            "1",
            "--schema",
            str(adult_files["schema"]),
            "-o",
            str(tmp_path / "a"),
        ]
    )
    assert code == 2
    assert "makes no DP claim" in capsys.readouterr().err
