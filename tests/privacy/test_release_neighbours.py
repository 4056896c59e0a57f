"""The release is DP end to end: D and D plus one adversarial row release the same thing, up to
the outputs of charged mechanisms.

For every registered DP generator x domain mode (declared public, learned with DP) x front end
(the CLI, the Prefect flow, the web app's handlers), the test releases for a table ``D`` and for
``D`` plus one row that is adversarial in every column at once (an outlier beyond the bounds, a
category nobody has, a fractional value in an integer column, a word in a boolean, a date in
another format), each side in its own fresh home and ledger. The two releases are *coupled*
(:mod:`privsynth_core.privacy.coupling`): the released row count and a DP-learned domain come
out the same on both sides, as if their noise had fallen that way. Given that, every field of
the two release folders must be identical, or listed in ``RELEASE_FIELDS`` as the output of a
charged mechanism (weights, noisy marginals, selections, the synthetic rows), a random id or
the date. A hash of the rows, the exact row count, a kind or bound read off the rows, a timing:
each would show up here as a difference nobody explains.

No mock: real plugins (the marginal plugin too when it is installed), a real Prefect server,
the web app's real handlers, real ledgers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from privsynth_core.datasets import adult_frame
from privsynth_core.plugins import reset_plugins
from privsynth_core.privacy.ledger import PrivacyLedger, budget_key
from privsynth_core.privacy.neighbours import coupled_pair, leaks, scratch_home, with_neighbour
from privsynth_core.registry import generators, reset_registries
from privsynth_core.schema import Column, ColumnKind, Schema
from privsynth_core.table import fingerprint_frame, read_frame

# Small on purpose: every generator runs 12 times here (2 sides x 2 domains x 3 front ends).
TINY: dict[str, dict[str, Any]] = {
    "independent": {"bins": 8},
    "dpwgan": {
        "epochs": 1,
        "batch_size": 200,
        "generator_layers": "16:relu",
        "critic_layers": "16:leaky_relu",
        "latent_dim": 8,
        "n_critic": 2,
        "seed": 1,
    },
    "dpctgan": {
        "epochs": 1,
        "batch_size": 200,
        "generator_dim": [16],
        "critic_dim": [16],
        "embedding_dim": 8,
        "seed": 1,
    },
    "mst": {"bins": 8, "iters": 20},
    "aim": {"bins": 8, "iters": 20, "rounds": 1, "round_iters": 10, "selections": 2},
}
EPSILON, DOMAIN_EPSILON = 1.0, 3.0
BUDGET = {"epsilon": 50.0, "delta": 0.01}
FRONT_ENDS = ("cli", "flow", "webapp")
DOMAINS = ("public", "dp")
PLUGINS = "privsynth,privsynth-marginal"


def _dp_generators() -> list[str]:
    """Every registered DP generator, the marginal plugin's too when it is installed."""
    saved = os.environ.get("PRIVSYNTH_LOAD_PLUGINS")
    os.environ["PRIVSYNTH_LOAD_PLUGINS"] = PLUGINS
    reset_plugins()
    reset_registries()
    try:
        return sorted(e.plugin_id for e in generators().entries() if e.cls.is_dp)
    finally:
        os.environ["PRIVSYNTH_LOAD_PLUGINS"] = saved or "privsynth"
        reset_plugins()
        reset_registries()


DP_GENERATORS = _dp_generators()


@pytest.fixture(scope="module", autouse=True)
def every_generator_and_light_reports() -> Iterator[None]:
    """Load the marginal plugin too (when installed); block the heavy report sections."""
    saved = {k: os.environ.get(k) for k in ("PRIVSYNTH_LOAD_PLUGINS", "PRIVSYNTH_DISABLED_PLUGINS")}
    os.environ["PRIVSYNTH_LOAD_PLUGINS"] = PLUGINS
    os.environ["PRIVSYNTH_DISABLED_PLUGINS"] = "evidently,report-plots"
    reset_plugins()
    reset_registries()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_plugins()
    reset_registries()


# -- the tables ---------------------------------------------------------------------------------

# Nullable and required columns of every kind, so the adversarial row hits both ways a value
# can be handled (read as missing, clamped) and is still kept: D' has one row more than D.
DECLARED = Schema(
    domain="public",
    columns=(
        Column(name="age", kind=ColumnKind.INTEGER, bounds=(0.0, 100.0)),
        Column(name="hours", kind=ColumnKind.INTEGER, nullable=True, bounds=(0.0, 100.0)),
        Column(name="weight", kind=ColumnKind.CONTINUOUS, bounds=(0.0, 1_500_000.0)),
        Column(
            name="gender", kind=ColumnKind.CATEGORICAL, nullable=True, categories=("Female", "Male")
        ),
        Column(name="income", kind=ColumnKind.CATEGORICAL, categories=("<=50K", ">50K")),
        Column(name="married", kind=ColumnKind.BOOLEAN, nullable=True),
        Column(
            name="visit",
            kind=ColumnKind.DATETIME,
            nullable=True,
            bounds=(datetime(2015, 1, 1), datetime(2030, 1, 1)),
        ),
    ),
)
#: What a person confirms before learning the domain with DP: names and kinds only.
SKELETON = Schema(
    domain="public",
    columns=tuple(Column(name=c.name, kind=c.kind, nullable=c.nullable) for c in DECLARED.columns),
)


def _table(n: int = 1000) -> pl.DataFrame:
    """``n`` Adult rows as raw text (as a CSV holds them), with a boolean and an ISO date."""
    raw = adult_frame(n, seed=11)
    weight = raw["fnlwgt"].cast(pl.Int64)
    visit = pl.select(pl.lit(date(2020, 1, 1)) + pl.duration(days=weight % 1000)).to_series()
    return pl.DataFrame(
        {
            "age": raw["age"],
            "hours": raw["hours-per-week"],
            "weight": weight.cast(pl.String),
            "gender": raw["gender"],
            "income": raw["income"],
            "married": raw["marital-status"].str.starts_with("Married").cast(pl.String),
            "visit": visit.cast(pl.String),
        }
    )


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """D and D plus the adversarial row, as CSV files; the declared schema and skeleton."""
    folder = tmp_path_factory.mktemp("neighbours")
    base = _table()
    files = {
        "first": folder / "d.csv",
        "second": folder / "d-plus-one.csv",
        "public": folder / "declared.yaml",
        "dp": folder / "skeleton.yaml",
    }
    base.write_csv(files["first"])
    with_neighbour(base, DECLARED).write_csv(files["second"])
    DECLARED.save(files["public"])
    SKELETON.save(files["dp"])
    return files


def _budget(data: Path) -> None:
    PrivacyLedger().set_budget(budget_key(None, fingerprint_frame(read_frame(data))), **BUDGET)


# -- one release per front end ------------------------------------------------------------------


def _cli(generator: str, domain: str, tables: dict[str, Path], side: str, out: Path) -> Path:
    from privsynth_ui.cli import main

    data = tables[side]
    assert (
        main(
            [
                "budget",
                "set",
                str(data),
                "--epsilon",
                str(BUDGET["epsilon"]),
                "--delta",
                str(BUDGET["delta"]),
            ]
        )
        == 0
    )
    fit = [
        "fit",
        str(data),
        "--schema",
        str(tables[domain]),
        "--generator",
        generator,
        "--epsilon",
        str(EPSILON),
        "-o",
        str(out / "release" / "model"),
        "--quiet",
    ]
    if domain == "dp":
        fit += ["--domain", "dp", "--domain-epsilon", str(DOMAIN_EPSILON)]
    for name, value in TINY[generator].items():
        fit += ["--param", f"{name}={value if isinstance(value, str) else _json(value)}"]
    assert main(fit) == 0
    assert (
        main(
            [
                "sample",
                str(out / "release" / "model"),
                "-o",
                str(out / "release" / "synthetic.csv"),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    return out / "release"


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _flow(generator: str, domain: str, tables: dict[str, Path], side: str, out: Path) -> Path:
    from privsynth_core.runs.config import run_config_from_dict
    from privsynth_flows.synthesize import synthesize

    _budget(tables[side])
    config = run_config_from_dict(
        {
            "input": str(tables[side]),
            "schema_path": str(tables[domain]),
            "domain": domain,
            "domain_epsilon": DOMAIN_EPSILON if domain == "dp" else None,
            "generator": generator,
            "params": TINY[generator],
            "epsilon": EPSILON,
            "metrics": [],
            "seed": 3,
            "output_dir": str(out / "run"),
        }
    )
    return synthesize(config).release_dir


def _webapp(generator: str, domain: str, tables: dict[str, Path], side: str, out: Path) -> Path:
    from privsynth_flows.served import InlineFlows
    from privsynth_ui import data_handlers as data
    from privsynth_ui import domain_handlers as domains
    from privsynth_ui import run_handlers as runs
    from privsynth_ui.settings import UISettings
    from privsynth_ui.training import WebFlows
    from privsynth_ui.workspace import Workspace

    settings = UISettings(home=out / "app", failure_delay=0.0)
    # The app's flow runs (synthesize, generate) run in this process: the coupling of the row
    # count and the DP domain works within one process (privacy/coupling.py); the app serves
    # the same flows from a runner process.
    flows = WebFlows(settings, InlineFlows())
    # A custodian: fixing a source's domain and setting its budget are theirs to do.
    ws = Workspace(settings.home, "alice", role="custodian")
    upload = settings.cache_dir / "upload" / "table.csv"
    upload.parent.mkdir(parents=True)
    shutil.copy(tables[side], upload)
    record = data.add_uploaded(
        ws, settings, upload, name="table.csv", holdout_share=0.0, exclude=""
    )
    ws.ledger.set_budget(record.key, **BUDGET)
    # The person fills the schema table on the page with the declared domain (public), or
    # with the reviewed names and kinds (dp).
    record = domains.set_domain(
        ws,
        record.dataset_id,
        domains.schema_rows(DECLARED),
        mode=domain,
        epsilon=DOMAIN_EPSILON if domain == "dp" else None,
        delta=None,
        accept_flagged=True,
    )
    request = runs.check_training(
        ws, record.dataset_id, generator, TINY[generator], EPSILON, None, "rdp"
    )
    run = runs.refresh(ws, runs.train(ws, runs.new_run(ws, request), flows), flows)
    assert run.status == "done", run.message
    sample, _ = runs.generate(ws, settings, run.run_id, 1000, 3, flows)
    release = out / "release"
    shutil.copytree(run.model_dir, release / "model")
    shutil.copy(sample, release / "synthetic.csv")
    return release


RELEASE: dict[str, Callable[[str, str, dict[str, Path], str, Path], Path]] = {
    "cli": _cli,
    "flow": _flow,
    "webapp": _webapp,
}


def _combinations() -> list[Any]:
    """Every generator x domain mode x front end. The default suite runs every generator and
    domain mode through the CLI, and the flow and the web app with ``independent`` (they share
    the CLI's service layer and run directory, so what differs between front ends is their own
    code around it); CI runs the whole matrix (``-m extended``)."""
    return [
        pytest.param(
            generator,
            domain,
            front_end,
            id=f"{generator}-{domain}-{front_end}",
            marks=() if front_end == "cli" or generator == "independent" else pytest.mark.extended,
        )
        for generator in DP_GENERATORS
        for domain in DOMAINS
        for front_end in FRONT_ENDS
    ]


@pytest.mark.parametrize(("generator", "domain", "front_end"), _combinations())
def test_a_neighbouring_table_changes_only_mechanism_outputs(
    generator: str,
    domain: str,
    front_end: str,
    tables: dict[str, Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if front_end == "flow":
        request.getfixturevalue("prefect_env")

    def release(side: str) -> Path:
        out = tmp_path / side
        with scratch_home(out / "home"):
            return RELEASE[front_end](generator, domain, tables, side, out)

    differences = coupled_pair(release)
    found = leaks(differences)
    assert not found, "the release depends on the rows outside a charged mechanism:\n" + "\n".join(
        d.describe() for d in found
    )
    # The check has teeth: the mechanism outputs did differ (real noise, real rows).
    assert any(d.allowed is not None and d.allowed.why == "mechanism" for d in differences)
