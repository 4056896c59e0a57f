"""RunConfig / SweepConfig: validation through the registry, YAML loading, stable hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from privsynth_core.datasets import ADULT_SCHEMA_PATH
from privsynth_core.errors import ConfigError
from privsynth_core.runs.config import (
    RunConfig,
    load_run_config,
    load_sweep_config,
    run_config_from_dict,
)


def _base(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "input": str(tmp_path / "data.csv"),
        "schema_path": str(ADULT_SCHEMA_PATH),
        "generator": "independent",
        "epsilon": 1.0,
        "output_dir": str(tmp_path / "run"),
        **extra,
    }


def test_config_lists_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "input": "data.csv",
                "generator": "independent",
                "params": {"bins": 1, "colour": 2},
                "metrics": ["tvd", "no-such-metric"],
                "rows": 0,
                "unknown_key": True,
                "domain": "dp",
                "output_dir": "out",
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    text = str(info.value)
    for expected in (
        "rows",
        "unknown_key",
        "domain_epsilon",
        "bins",
        "colour",
        "no-such-metric",
        "needs a target epsilon",
    ):
        assert expected in text, expected
    assert "problem(s)" in text and str(path) in text


def test_config_unknown_generator_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown generator 'nope'; available: .*independent"):
        run_config_from_dict(_base(tmp_path, generator="nope"))


def test_config_yaml_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "input": "../data/x.csv",
                "generator": "independent",
                "schema_path": "schema.yaml",
                "epsilon": 0.5,
                "output_dir": "runs/a",
            }
        )
    )
    config = load_run_config(path)
    assert config.input == (tmp_path / "data" / "x.csv").resolve()
    assert config.output_dir == (folder / "runs" / "a").resolve()
    assert config.schema_path == (folder / "schema.yaml").resolve()


def test_a_run_needs_a_reviewed_schema_and_never_confirms_one_unseen(tmp_path: Path) -> None:
    data = _base(tmp_path)
    del data["schema_path"]
    with pytest.raises(
        ConfigError, match="schema_path: a run needs a schema file a person has reviewed"
    ) as info:
        run_config_from_dict(data)
    assert "Field required" not in str(info.value)
    with pytest.raises(ConfigError, match="confirm_public: removed"):
        run_config_from_dict(_base(tmp_path, confirm_public=True))


def test_an_approximate_accountant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="accountant: accountant 'gdp' is an approximation"):
        run_config_from_dict(_base(tmp_path, accountant="gdp"))


def test_config_is_frozen_and_params_normalised(tmp_path: Path) -> None:
    config = run_config_from_dict(_base(tmp_path))
    assert config.params == {"numeric_cells": "learned", "bins": 32}  # the plugin's defaults
    with pytest.raises(Exception, match="frozen"):
        config.epsilon = 2.0


def test_config_hash_is_stable_and_fit_hash_ignores_evaluation(tmp_path: Path) -> None:
    a = run_config_from_dict(_base(tmp_path))
    b = run_config_from_dict(dict(reversed(list(_base(tmp_path, params={"bins": 32}).items()))))
    assert a.config_hash() == b.config_hash() and len(a.config_hash()) == 64
    c = run_config_from_dict(
        _base(tmp_path, metrics=["tvd"], rows=10, output_dir=str(tmp_path / "elsewhere"))
    )
    assert c.config_hash() != a.config_hash()
    assert c.fit_hash() == a.fit_hash()  # same model: the cache is reused
    assert run_config_from_dict(_base(tmp_path, seed=1)).fit_hash() != a.fit_hash()
    assert run_config_from_dict(_base(tmp_path, epsilon=2.0)).fit_hash() != a.fit_hash()


def test_fit_hash_follows_schema_content_not_path(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text(ADULT_SCHEMA_PATH.read_text())
    a = run_config_from_dict(_base(tmp_path))
    b = run_config_from_dict(_base(tmp_path, schema_path=str(copy)))
    assert a.fit_hash() == b.fit_hash()
    copy.write_text(ADULT_SCHEMA_PATH.read_text().replace("- 100", "- 99", 1))
    assert run_config_from_dict(_base(tmp_path, schema_path=str(copy))).fit_hash() != a.fit_hash()


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    config = run_config_from_dict(
        _base(tmp_path, domain="dp", domain_epsilon=0.2, metrics=["tvd"], target="income")
    )
    again = RunConfig.model_validate(config.model_dump(mode="json"))
    assert again == config and again.config_hash() == config.config_hash()
    assert config.total_epsilon == pytest.approx(1.2)


def test_sweep_config_builds_one_valid_run_per_cell(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base": {
                    "input": "data.csv",
                    "schema_path": str(ADULT_SCHEMA_PATH),
                    "metrics": ["tvd"],
                },
                "grid": {
                    "generators": ["independent"],
                    "epsilons": [0.5, 1.0],
                    "seeds": [0, 1, 2],
                    "params": {"independent": {"bins": 8}},
                },
                "output_dir": "sweep",
            }
        )
    )
    sweep = load_sweep_config(path)
    cells = sweep.cells()
    assert len(cells) == 6
    assert {c.output_dir.name for c in cells} >= {
        "independent-eps0.5-seed0",
        "independent-eps1-seed2",
    }
    assert all(c.params["bins"] == 8 and c.input == tmp_path / "data.csv" for c in cells)


def test_sweep_config_reports_invalid_cells(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base": {"input": "data.csv", "schema_path": str(ADULT_SCHEMA_PATH)},
                "grid": {"generators": ["independent", "nope"], "epsilons": [1.0]},
                "output_dir": "sweep",
            }
        )
    )
    with pytest.raises(ConfigError, match="cell nope-eps1-seed0: generator: unknown generator"):
        load_sweep_config(path)


def test_the_runs_target_reaches_the_generators_that_can_use_it(tmp_path: Path) -> None:
    # DP-CTGAN focuses on the target (privsynth run, the flows and the web app build a
    # RunConfig, so they all get it); without a target its params are the defaults
    focused = run_config_from_dict(_base(tmp_path, generator="dpctgan", target="income"))
    assert focused.params["focus_columns"] == ["income"]
    plain = run_config_from_dict(_base(tmp_path, generator="dpctgan"))
    assert plain.params["focus_columns"] == []
    assert plain.fit_hash() != focused.fit_hash()  # a different fit, never a cache hit
    # the user's own choice stands; a generator that cannot use a target is unchanged
    own = run_config_from_dict(
        _base(tmp_path, generator="dpctgan", target="income", params={"focus_columns": ["age"]})
    )
    assert own.params["focus_columns"] == ["age"]
    independent = run_config_from_dict(_base(tmp_path, target="income"))
    assert independent.params == run_config_from_dict(_base(tmp_path)).params


def test_a_run_without_a_generator_gets_the_best_suited_one(tmp_path: Path) -> None:
    base = {k: v for k, v in _base(tmp_path).items() if k != "generator"}
    # the built-ins (the suite's default plugins): DP-CTGAN declares itself the best of them,
    # from the schema file (public) alone
    assert run_config_from_dict(base).generator == "dpctgan"
    assert run_config_from_dict({**base, "delta": 0}).generator == "independent"
    # no schema to choose from: the missing generator is reported with the missing schema
    with pytest.raises(ConfigError, match="generator") as raised:
        run_config_from_dict({k: v for k, v in base.items() if k != "schema_path"})
    assert "schema_path" in str(raised.value)
