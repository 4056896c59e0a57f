"""Plugin discovery through the `privsynth` entry-point group, exactly as third parties use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import privsynth_plugins
from privsynth_core.plugins import pm
from privsynth_core.registry import all_entries

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "privsynth-example-plugin"
HEAVY = ("torch", "opacus", "sdv", "evidently", "gradio", "prefect", "sklearn")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_builtin_entry_points_resolve_to_modules_in_this_repo() -> None:
    entry_points = _pyproject()["project"]["entry-points"]["privsynth"]
    assert entry_points, "the built-in plugins must be declared as entry points"
    plugins_dir = Path(privsynth_plugins.__file__).parent.resolve()
    assert plugins_dir == (ROOT / "plugins").resolve()
    for name, target in entry_points.items():
        module = __import__(target, fromlist=["_"])
        assert Path(module.__file__).resolve().is_relative_to(plugins_dir), name
        assert pm.get_plugin(name) is None or pm.get_plugin(name) is module


def test_every_plugins_subpackage_is_installed() -> None:
    packages = set(_pyproject()["tool"]["setuptools"]["packages"])
    # folders with a pyproject.toml of their own (plugins/marginal) are separate distributions
    separate = {p.parent for p in (ROOT / "plugins").rglob("pyproject.toml")}
    assert separate == {ROOT / "plugins" / "marginal"}
    for init in (ROOT / "plugins").rglob("__init__.py"):
        if any(folder in init.parents for folder in separate):
            continue
        relative = init.parent.relative_to(ROOT / "plugins").parts
        assert ".".join(("privsynth_plugins", *relative)) in packages, init


def test_plugins_list_imports_no_heavy_library() -> None:
    code = (
        "import sys, json; from privsynth_ui.cli import main; main(['plugins', 'list']); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_plugins_list_shows_every_registered_plugin() -> None:
    result = _run("from privsynth_ui.cli import main; main(['plugins', 'list', '--json'])")
    assert result.returncode == 0, result.stderr
    listed = {(row["kind"], row["id"]) for row in json.loads(result.stdout)}
    assert listed == {(e.kind, e.plugin_id) for e in all_entries()}
    assert all(row["distribution"] == "privsynth" for row in json.loads(result.stdout))


def test_disabled_plugins_env_blocks_a_plugin() -> None:
    names = list(_pyproject()["project"]["entry-points"]["privsynth"])
    blocked = names[0]
    code = (
        "from privsynth_core.plugins import load_plugins, pm; load_plugins(); "
        "print(sorted(n for n, p in pm.list_name_plugin() if p is not None))"
    )
    result = _run(code, {"PRIVSYNTH_DISABLED_PLUGINS": blocked})
    assert result.returncode == 0, result.stderr
    loaded = eval(result.stdout)  # a printed list of str
    assert blocked not in loaded and set(loaded) == set(names) - {blocked}


def test_a_reset_forgets_names_blocked_under_an_earlier_setting(
    monkeypatch: pytest.MonkeyPatch, fresh_plugins: None
) -> None:
    """A caller that restores the disabling variable before resetting (as a test's cleanup
    may) gets every plugin back at the next load, not the names it had blocked."""
    from privsynth_core.plugins import load_plugins, reset_plugins

    monkeypatch.setenv("PRIVSYNTH_DISABLED_PLUGINS", "evidently,report-plots")
    load_plugins()
    assert pm.is_blocked("evidently") and pm.get_plugin("report-plots") is None
    monkeypatch.delenv("PRIVSYNTH_DISABLED_PLUGINS")
    reset_plugins()
    load_plugins()
    assert not pm.is_blocked("evidently") and not pm.is_blocked("report-plots")
    assert pm.get_plugin("evidently") is not None and pm.get_plugin("report-plots") is not None


def test_load_plugins_env_limits_to_named_distributions() -> None:
    code = (
        "from privsynth_core.plugins import load_plugins, pm; load_plugins(); "
        "print(len([p for _, p in pm.list_name_plugin() if p is not None]))"
    )
    result = _run(code, {"PRIVSYNTH_LOAD_PLUGINS": "some-other-dist"})
    assert result.stdout.strip() == "0"


def test_a_third_party_plugin_installed_with_pip_is_registered(tmp_path: Path) -> None:
    """pip builds and installs examples/privsynth-example-plugin into a private target folder;
    a fresh interpreter with that folder on its path sees the plugin in the CLI listing."""
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {"PYTHONPATH": str(target), "PRIVSYNTH_LOAD_PLUGINS": ""}
    result = _run("from privsynth_ui.cli import main; main(['plugins', 'list', '--json'])", env)
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows["mean_gap"]["distribution"] == "privsynth-example-plugin"
    assert rows["mean_gap"]["version"] == "0.1.0"
    # ... and the metric really computes through the registry.
    code = (
        "from privsynth_core.registry import metrics; from privsynth_core.datasets import "
        "load_adult; t = load_adult(500); m = metrics().get('mean_gap')(); "
        "print(m.compute(t.frame, t.frame, schema=t.schema).value)"
    )
    computed = _run(code, env)
    assert computed.returncode == 0, computed.stderr
    assert float(computed.stdout) == pytest.approx(0.0)
    # ... and so is its DP generator, which passes privsynth's generator contract.
    assert rows["joint_histogram"]["distribution"] == "privsynth-example-plugin"
    code = (
        "import tempfile, pathlib; from privsynth_core.registry import generators; "
        "from privsynth_core.datasets import load_adult; from privsynth_core import contract; "
        "t = load_adult(2000); cols = ['age', 'gender', 'income']; "
        "t = type(t)(t.frame.select(cols), t.schema.with_columns("
        "[t.schema.column(c) for c in cols], domain='public')); "
        "d = pathlib.Path(tempfile.mkdtemp()); "
        "g, tab, ledger = contract.fit_for_contract(generators().get('joint_histogram'), t, d); "
        "contract.check_output_schema(g, tab); contract.check_seeded_sampling(g); "
        "contract.check_save_load(g, d / 'model'); contract.check_ledger(g, tab, ledger); "
        "print('contract ok')"
    )
    fitted = _run(code, {**env, "PRIVSYNTH_HOME": str(tmp_path / "home")})
    assert fitted.returncode == 0, fitted.stderr
    assert fitted.stdout.strip().endswith("contract ok")


def test_a_misspelled_hook_is_refused(fresh_plugins: None) -> None:
    from privsynth_core.errors import PluginError
    from privsynth_core.hookspecs import hookimpl
    from privsynth_core.plugins import load_plugins

    class Misspelled:
        @hookimpl
        def register_generator(self, register):  # type: ignore[no-untyped-def]
            """Missing the final 's': pluggy must catch it."""

    pm.register(Misspelled(), name="misspelled")
    with pytest.raises(PluginError, match="unknown hook"):
        load_plugins()


def test_the_example_generator_puts_no_null_cell_in_a_column_that_cannot_hold_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every cell as likely as any (what enough noise can make of the histogram): still no
    null in a column the schema declares not nullable, and a null cell where it may be null."""
    import numpy as np

    from privsynth_core.datasets import load_adult

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from privsynth_example_plugin.joint_histogram import JointHistogramGenerator

    schema = load_adult(10).schema
    columns = ("age", "gender", "income")
    schema = schema.with_columns([schema.column(c) for c in columns], domain="public")
    nullable = schema.with_columns(
        [
            schema.column("age").model_copy(update={"nullable": True}),
            *(schema.column(c) for c in columns[1:]),
        ],
        domain="public",
    )
    for table_schema, nulls_allowed in ((schema, False), (nullable, True)):
        generator = JointHistogramGenerator(bins=4)
        sizes = generator._sizes(table_schema.columns)
        generator.schema = table_schema
        # a uniform histogram stands in for a fit
        generator._weights = np.full(int(np.prod(sizes)), 1 / np.prod(sizes)).tolist()
        nulls = generator._sample(4000, seed=0).null_count()
        assert nulls["gender"].item() == nulls["income"].item() == 0
        assert (nulls["age"].item() > 0) is nulls_allowed
