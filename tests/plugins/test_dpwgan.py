"""DPWGAN specifics: parameters and architectures, mixed tables, progress, privacy hygiene."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from privsynth_core import (
    Column,
    ColumnKind,
    ConfigError,
    PrivacyBudget,
    PrivacyLedger,
    Progress,
    Schema,
    Table,
)
from privsynth_plugins.dpwgan import DPWGANGenerator, DPWGANParams, Layer

QUICK = {"epochs": 3, "device": "cpu", "seed": 0}


def test_defaults_are_valid_and_documented() -> None:
    params = DPWGANParams()
    assert params.sigma is None and params.optimizer in ("rmsprop", "adam")
    assert params.critic_layers and params.generator_layers
    schema = DPWGANParams.model_json_schema()
    for name, field in DPWGANParams.model_fields.items():
        assert field.description, f"{name} has no description"
        assert name in schema["properties"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"critic_layers": []}, "critic_layers"),
        ({"critic_layers": [{"width": 0}]}, "width"),
        ({"generator_layers": "64:batchnorm"}, "activation"),
        ({"critic_layers": "64:relu:1.0"}, "dropout"),
        ({"critic_layers": "64:relu:0.1:extra"}, "width\\[:activation\\[:dropout\\]\\]"),
        ({"critic_layers": "[{bad json"}, "not valid JSON"),
        ({"generator_layers": ",".join(["8"] * 17)}, "generator_layers"),
        ({"n_critic": 0}, "n_critic"),
        ({"latent_distribution": "cauchy"}, "latent_distribution"),
        ({"sigma": -1}, "sigma"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_invalid_parameters_are_a_config_error_listing_known_ones(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        DPWGANGenerator(**values)
    assert "Known parameters:" in str(info.value) and "critic_layers" in str(info.value)


def test_layers_in_compact_or_json_form() -> None:
    params = DPWGANParams(
        critic_layers="128:leaky_relu, 64:tanh:0.25",
        generator_layers='[{"width": 32, "activation": "gelu"}, {"width": 16}]',
    )
    assert params.critic_layers == (
        Layer(width=128, activation="leaky_relu"),
        Layer(width=64, activation="tanh", dropout=0.25),
    )
    assert params.generator_layers == (Layer(width=32, activation="gelu"), Layer(width=16))
    # Round trip through the manifest's JSON form.
    assert DPWGANParams(**params.model_dump(mode="json")) == params


def test_dp_plan_counts_one_accounted_step_per_critic_step() -> None:
    plan = DPWGANGenerator.dp_plan(n_rows=1000, params=DPWGANParams(batch_size=100, epochs=3))
    assert plan == (0.1, 30)
    assert DPWGANGenerator.dp_plan(n_rows=50, params=DPWGANParams(batch_size=100, epochs=4)) == (
        1.0,
        4,
    )


def _mixed_table(n: int, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    start = datetime(2020, 1, 1)
    age = rng.integers(18, 90, n)
    frame = pl.DataFrame(
        {
            "age": age,
            "score": np.where(rng.random(n) < 0.3, None, rng.normal(50, 10, n)).tolist(),
            "group": rng.choice(["a", "b", "c", "d"], n).tolist(),
            "maybe": np.where(rng.random(n) < 0.25, None, rng.choice(["x", "y"], n)).tolist(),
            "flag": (age > 50).tolist(),
            "opt_flag": np.where(rng.random(n) < 0.2, None, rng.random(n) < 0.5).tolist(),
            "when": [start + timedelta(days=int(d)) for d in rng.integers(0, 365, n)],
            "maybe_when": [
                None if rng.random() < 0.4 else start + timedelta(hours=int(h))
                for h in rng.integers(0, 48, n)
            ],
        }
    )
    schema = Schema(
        domain="public",
        columns=(
            Column(name="age", kind=ColumnKind.INTEGER, bounds=(18.0, 90.0)),
            Column(name="score", kind=ColumnKind.CONTINUOUS, nullable=True, bounds=(0.0, 100.0)),
            Column(name="group", kind=ColumnKind.CATEGORICAL, categories=("a", "b", "c", "d")),
            Column(name="maybe", kind=ColumnKind.CATEGORICAL, nullable=True, categories=("x", "y")),
            Column(name="flag", kind=ColumnKind.BOOLEAN),
            Column(name="opt_flag", kind=ColumnKind.BOOLEAN, nullable=True),
            Column(
                name="when",
                kind=ColumnKind.DATETIME,
                bounds=(datetime(2020, 1, 1), datetime(2020, 12, 31)),
            ),
            Column(
                name="maybe_when",
                kind=ColumnKind.DATETIME,
                nullable=True,
                bounds=(datetime(2020, 1, 1), datetime(2020, 1, 3)),
            ),
        ),
    )
    return Table.from_frame(frame, schema, name="mixed")


def _fit(table: Table, ledger: PrivacyLedger, **params: object) -> DPWGANGenerator:
    ledger.set_budget(table.fingerprint(), epsilon=10.0, delta=1e-4)
    generator = DPWGANGenerator(**{**QUICK, **params})
    generator.fit(table, budget=PrivacyBudget(5.0, 1e-5), ledger=ledger)
    return generator


def test_mixed_table_with_nulls_and_dates_on_default_settings(ledger: PrivacyLedger) -> None:
    table = _mixed_table(800)
    out = _fit(table, ledger).sample(3000, seed=0)
    assert out.schema == table.frame.schema
    for name in ("score", "maybe", "opt_flag", "maybe_when"):
        assert 0 < out[name].null_count() < out.height, name  # nulls generated, not everywhere
    for name in ("age", "group", "flag", "when"):
        assert out[name].null_count() == 0
    assert out["when"].min() >= datetime(2020, 1, 1)
    assert out["maybe_when"].max() <= datetime(2020, 1, 3)
    assert set(out["group"]) <= {"a", "b", "c", "d"}


@pytest.mark.parametrize("width", [1, 60])
def test_narrow_and_wide_tables(ledger: PrivacyLedger, width: int) -> None:
    rng = np.random.default_rng(width)
    n = 500
    columns, data = [], {}
    for i in range(width):
        if i % 3 == 0:
            columns.append(Column(name=f"n{i}", kind=ColumnKind.CONTINUOUS, bounds=(-1.0, 1.0)))
            data[f"n{i}"] = rng.uniform(-1, 1, n)
        elif i % 3 == 1:
            columns.append(
                Column(
                    name=f"c{i}",
                    kind=ColumnKind.CATEGORICAL,
                    categories=tuple(f"v{k}" for k in range(12)),
                )
            )
            data[f"c{i}"] = rng.choice([f"v{k}" for k in range(12)], n)
        else:
            columns.append(Column(name=f"i{i}", kind=ColumnKind.INTEGER, bounds=(0.0, 9.0)))
            data[f"i{i}"] = rng.integers(0, 10, n)
    table = Table.from_frame(pl.DataFrame(data), Schema(domain="public", columns=tuple(columns)))
    out = _fit(table, ledger, epochs=2).sample(200, seed=1)
    assert out.schema == table.frame.schema and out.height == 200


def test_every_option_trains(ledger: PrivacyLedger, adult_small: Table) -> None:
    generator = _fit(
        adult_small,
        ledger,
        epochs=2,
        batch_size=100,
        optimizer="adam",
        latent_distribution="uniform",
        latent_dim=16,
        categorical_output="softmax",
        grad_sample_mode="functorch",
        critic_layers="32:elu:0.1,16:gelu",
        generator_layers="32:tanh:0.1",
        n_critic=2,
        weight_clip=0.02,
        max_grad_norm=0.5,
    )
    assert generator.fit_summary is not None and generator.fit_summary.steps == 20
    assert generator.fit_summary.extra["generator_steps"] == 10
    assert generator.sample(50, seed=0).height == 50


def test_progress_every_epoch_with_losses_and_epsilon(
    ledger: PrivacyLedger, adult_small: Table
) -> None:
    ledger.set_budget(adult_small.fingerprint(), epsilon=10.0, delta=1e-4)
    seen: list[Progress] = []
    generator = DPWGANGenerator(**QUICK, batch_size=200, critic_layers="32:relu")
    summary = generator.fit(
        adult_small, budget=PrivacyBudget(2.0, 1e-5), ledger=ledger, progress=seen.append
    )
    assert [p.epoch for p in seen] == [1, 2, 3] and [p.step for p in seen] == [5, 10, 15]
    assert all(set(p.losses) == {"critic", "generator"} for p in seen)
    epsilons = [p.epsilon for p in seen]
    assert epsilons == sorted(epsilons) and epsilons[-1] == summary.epsilon <= 2.0


def test_manifest_keeps_no_real_data_statistics(
    ledger: PrivacyLedger, adult_small: Table, tmp_path: Path
) -> None:
    generator = _fit(adult_small, ledger, epochs=1, batch_size=200)
    generator.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["differentially_private"] is True
    training = manifest["privacy"]["parts"][-1]
    assert training["step"] == "training" and training["epsilon"] <= 5.0
    assert manifest["privacy"]["epsilon"] == math.fsum(
        p["epsilon"] for p in manifest["privacy"]["parts"]
    )  # end to end, with the row count
    text = json.dumps(manifest)
    assert "critic_loss" not in text and '"losses"' not in text
    # Nothing computed from the rows outside a mechanism: no fingerprint, timing or ledger id.
    for word in ("fingerprint", "seconds", "ledger_entry", "run_id", adult_small.fingerprint()):
        assert word not in text, word
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["generator.pt", "manifest.json"]


def test_same_seed_fits_differ_because_the_noise_is_never_seeded(
    ledger: PrivacyLedger, adult_small: Table
) -> None:
    ledger.set_budget(adult_small.fingerprint(), epsilon=20.0, delta=1e-3)
    rows = []
    for _ in range(2):
        generator = DPWGANGenerator(**{**QUICK, "epochs": 1, "batch_size": 200})
        generator.fit(adult_small, budget=PrivacyBudget(5.0, 1e-5), ledger=ledger)
        rows.append(generator.sample(200, seed=3))
    assert not rows[0].equals(rows[1])


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the refusal when there is no GPU"
)
def test_cuda_without_a_gpu_is_refused_before_anything_is_charged(
    ledger: PrivacyLedger, adult_small: Table
) -> None:
    ledger.set_budget(adult_small.fingerprint(), epsilon=10.0, delta=1e-4)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        DPWGANGenerator(device="cuda").fit(
            adult_small, budget=PrivacyBudget(1.0, 1e-5), ledger=ledger
        )
    assert ledger.entries(adult_small.fingerprint()) == []


def test_importing_the_plugin_loads_no_torch() -> None:
    code = (
        "import sys, privsynth_plugins.dpwgan as m; m.DPWGANParams(); "
        "print(sorted(k for k in ('torch', 'opacus') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
