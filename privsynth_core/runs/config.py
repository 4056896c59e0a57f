"""Run configurations: everything one synthesis run (or a sweep of runs) needs, validated up front.

A :class:`RunConfig` is the single input of the ``synthesize`` flow and of ``privsynth run``: the
private table and its domain, the generator and its parameters (validated against the plugin's
own ``Params`` model through the registry), the privacy target, what to sample and evaluate, and
where the run directory goes. It is frozen, rejects unknown keys, and is written into the run's
manifest. Two hashes identify it:

- :meth:`RunConfig.config_hash`: the whole configuration (what the run directory holds);
- :meth:`RunConfig.fit_hash`: only what changes the trained model (domain, generator, params,
  budget, accountant, seed). The flows cache training on it, so changing the metrics or the rows
  to sample reuses the model instead of spending the budget again.

:func:`load_run_config` reads a YAML file and reports every problem in one
:class:`~privsynth_core.errors.ConfigError`, not the first one only. Nothing here imports Prefect.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError, PrivsynthError

if TYPE_CHECKING:
    from ..registry import GeneratorChoice

DomainMode = Literal["public", "dp"]
_CONFIRM_PUBLIC_REMOVED = (
    "confirm_public: removed; a domain is never declared public unseen. Review the schema file, "
    "run `privsynth schema confirm FILE`, and give the file as `schema_path`"
)


def _file_digest(path: Path | None) -> str | None:
    """SHA-256 of a file's bytes (None when there is no file to hash)."""
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _plugin_problems(data: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    """Problems with the plugin ids and generator params in ``data``; normalised params if valid.

    Looked up through the registry, so a third-party generator's parameters are checked exactly
    like a built-in's.
    """
    from ..registry import generators, metrics

    problems: list[str] = []
    normalised = None
    generator_id = data.get("generator")
    generator_cls = None
    if isinstance(generator_id, str):
        try:
            generator_cls = generators().get(generator_id)
        except PrivsynthError as exc:
            problems.append(f"generator: {exc}")
    if generator_cls is not None:
        params = data.get("params") or {}
        if isinstance(params, dict):
            try:
                # the run's target (public, the user's) shapes the fit where the generator
                # can use it: AIM's and MST's selections, DP-CTGAN's focus
                target = data.get("target")
                normalised = generator_cls.make_params(
                    generator_cls.params_for_target(
                        params, target if isinstance(target, str) else None
                    )
                ).model_dump(mode="json")
            except PrivsynthError as exc:
                problems.append(f"params: {exc}")
        epsilon = data.get("epsilon")
        if generator_cls.is_dp and epsilon is None:
            problems.append(
                f"epsilon: generator {generator_id!r} is differentially private and "
                f"needs a target epsilon (e.g. `epsilon: 1.0`)"
            )
        if not generator_cls.is_dp and epsilon is not None:
            problems.append(
                f"epsilon: generator {generator_id!r} is NOT differentially private "
                f"and cannot spend a budget; remove `epsilon` or pick a DP generator"
            )
    accountant = data.get("accountant", "rdp")
    if isinstance(accountant, str) and (generator_cls is None or generator_cls.is_dp):
        from ..registry import settling_accountant

        try:
            settling_accountant(accountant)
        except PrivsynthError as exc:
            problems.append(f"accountant: {exc}")
    metric_ids = data.get("metrics")
    for metric_id in metric_ids if isinstance(metric_ids, list) else []:
        if isinstance(metric_id, str):
            try:
                metrics().get(metric_id)
            except PrivsynthError as exc:
                problems.append(f"metrics: {exc}")
    return problems, normalised


def _model_problems(data: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    """Problems that involve several settings or the plugin registry."""
    problems = []
    if data.get("schema_path") in (None, ""):
        problems.append(
            "schema_path: a run needs a schema file a person has reviewed (`privsynth "
            "schema infer DATA -o schema.yaml`, review, `privsynth schema confirm "
            "schema.yaml`); with `domain: dp` only its names and kinds are used"
        )
    if data.get("domain") == "dp" and data.get("domain_epsilon") is None:
        problems.append(
            "domain_epsilon: `domain: dp` needs the epsilon to learn it with "
            "(e.g. `domain_epsilon: 0.1`)"
        )
    if data.get("domain", "public") == "public" and data.get("domain_epsilon") is not None:
        problems.append("domain_epsilon: only used with `domain: dp`")
    plugin_problems, normalised = _plugin_problems(data)
    return problems + plugin_problems, normalised


def chosen_generator(data: dict[str, Any]) -> GeneratorChoice | None:
    """The generator a run configuration without one gets: the installed DP generator that
    serves its table best (:func:`privsynth_core.registry.choose_generator`, from the schema
    file, which is public, and the run's target; ``delta: 0`` keeps it to pure-epsilon
    generators). None when there is no readable schema file to choose from (the missing
    generator is then reported as such)."""
    from ..registry import choose_generator, generators
    from ..schema import Schema

    path = data.get("schema_path")
    if not isinstance(path, (str, Path)) or not str(path):
        return None
    try:
        schema = Schema.load(Path(path).expanduser().resolve())
    except (PrivsynthError, OSError):
        return None
    target = data.get("target")
    installed = [
        e.plugin_id for e in generators().entries() if data.get("delta") != 0 or e.cls.pure_epsilon
    ]
    try:
        return choose_generator(
            schema, None, installed, target=target if isinstance(target, str) else None
        )
    except PrivsynthError:
        return None


class RunConfig(BaseModel):
    """One synthesis run: load, validate, domain, fit, sample, evaluate, report, publish.

    Relative paths in a YAML file are resolved against the file's folder
    (:func:`load_run_config`).

    Attributes:
        name: a label for the run (shown in Prefect and the manifest).
        input: the private table: a CSV or Parquet file, or a partitioned table (a directory
            or glob of them).
        source: the data source ``input`` is an extract of; its budget is the source's, shared
            by every extract (e.g. nightly ones). Default: the input's own content.
        budget_key: the ledger key to charge, when ``input`` was split from a larger file whose
            budget it spends (the web app's train split of an upload is charged to the whole
            file's content key; :attr:`privsynth_core.table.Table.parent_key`). It overrides
            ``source``. A key of the form ``source:<id>`` or a content fingerprint (64 hex
            digits); a fingerprint is a hash of private rows, so keep such a configuration with
            the custodian (a file), never in an orchestrator's parameters. Default: none.
        schema_path: its schema file, reviewed by a person: with ``domain: public`` its domain
            is used as declared (``domain: public`` in the file, e.g. after ``privsynth schema
            confirm``); with ``domain: dp`` only its column names, kinds and formats are used.
        domain: ``public`` (declared) or ``dp`` (learned with DP, charged to the ledger).
        domain_epsilon, domain_delta: cost of learning the domain with DP.
        generator: the generator plugin's id; omitted: the installed DP generator that serves
            the table best (:func:`chosen_generator`).
        params: its parameters, checked against the plugin's ``Params`` (defaults filled in).
        epsilon, delta: the training target; ``epsilon`` must be omitted for a non-DP generator.
            ``delta`` defaults to ``1 / (10 n̂)`` (at most 1e-5) for the released row count n̂.
        accountant: the accountant plugin's id for DP-SGD generators (never an approximation).
        rows: synthetic rows to sample (default: the released row count n̂).
        metrics: metric ids to compute (default: every registered metric whose inputs exist).
        target: the column the utility metrics predict; generators that can use it are told
            (:meth:`~privsynth_core.generator.Generator.params_for_target`: AIM's and MST's
            selections, DP-CTGAN's ``focus_columns``).
        holdout: real rows never used for training (privacy attacks, fidelity ceiling).
        seed: seed of sampling and evaluation; part of the training cache key.
        output_dir: the run directory; it appears complete, or not at all.
        dask_address: scheduler of an existing Dask cluster: the flow's tasks run there, and a
            partitioned ``input`` (a directory or glob of Parquet/CSV parts) is read there one
            partition per task (:mod:`privsynth_core.partitions`). Default: none.
        eval_sample_rows: how many real rows the metrics read from a partitioned input, drawn
            uniformly from its partitions (the report states it). Default 100,000.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", description="a label for the run")
    input: Path = Field(description="the private table (CSV or Parquet)")
    source: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="data source id whose budget this extract shares",
    )
    budget_key: str | None = Field(
        None,
        pattern=r"^(source:[A-Za-z0-9._-]{1,64}|[0-9a-f]{64})$",
        description="ledger key of the file this input was split from (overrides source)",
    )
    # Required, but checked with the settings across fields (_model_problems) for one clear
    # message, not pydantic's bare "Field required".
    schema_path: Path = Field(
        None,  # type: ignore[assignment]
        description="reviewed schema file (.yaml/.json)",
    )
    domain: DomainMode = Field("public", description="public (declared) or dp (learned with DP)")
    domain_epsilon: float | None = Field(None, gt=0, description="epsilon of the DP domain")
    domain_delta: float = Field(1e-6, gt=0, lt=1, description="delta of the DP domain")
    generator: str = Field(
        description="generator id (see `privsynth plugins list`); omitted: "
        "the installed DP generator that serves the table best"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="generator parameters")
    epsilon: float | None = Field(None, gt=0, description="training epsilon")
    delta: float | None = Field(
        None, ge=0, lt=1, description="training delta (default: 1/(10 n̂), at most 1e-5)"
    )
    accountant: str = Field("rdp", description="accountant id")
    rows: int | None = Field(None, ge=1, description="synthetic rows (default: n̂)")
    metrics: list[str] | None = Field(None, description="metric ids (default: all applicable)")
    target: str | None = Field(
        None, description="target column of the utility metrics; generators that can weigh it do"
    )
    holdout: Path | None = Field(None, description="real holdout table (never trained on)")
    seed: int = Field(0, ge=0, description="seed of sampling and evaluation")
    output_dir: Path = Field(description="the run directory")
    dask_address: str | None = Field(
        None,
        pattern=r"^(tcp|tls|ucx|inproc)://\S+$",
        description="scheduler of an existing Dask cluster (tcp://HOST:8786): the flow's tasks "
        "and a partitioned input's reading run there (not part of the run's hash)",
    )
    eval_sample_rows: int | None = Field(
        None,
        ge=1,
        description="real rows the metrics read, a uniform sample, when the input is "
        "partitioned (default 100,000)",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "confirm_public" in data:
            raise ValueError(_CONFIRM_PUBLIC_REMOVED)
        if isinstance(data, dict) and data.get("generator") in (None, ""):
            choice = chosen_generator(data)
            if choice is not None:
                data = {**data, "generator": choice.generator_id}
        return data

    @field_validator("input", "schema_path", "holdout", "output_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Absolute, so a flow run in another process or on a Dask worker finds the same files.
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        problems, normalised = _model_problems(self.model_dump())
        if problems:
            # One line per problem; _describe() splits them again.
            raise ValueError("\n".join(problems))
        if normalised is not None:
            # Defaults filled in, so `{}` and the explicit defaults hash the same.
            object.__setattr__(self, "params", normalised)
        return self

    # -- identity -----------------------------------------------------------------------------

    def config_hash(self) -> str:
        """SHA-256 of the whole configuration (stable across processes and key order).

        Where it runs (``dask_address``) is left out: the same run on another cluster is the
        same run. ``eval_sample_rows`` enters only when set, so configurations without it hash
        as they did before it existed.
        """
        unset = {"eval_sample_rows"} if self.eval_sample_rows is None else set()
        return _digest(self.model_dump(mode="json", exclude={"dask_address", *unset}))

    def fit_hash(self) -> str:
        """SHA-256 of what determines the trained model, and only that.

        The schema file enters by content, not by path; the input by the dataset fingerprint
        that the flows add to the cache key.
        """
        return _digest(
            {
                "schema": _file_digest(self.schema_path),
                "domain": self.domain,
                "domain_epsilon": self.domain_epsilon,
                "domain_delta": self.domain_delta,
                "generator": self.generator,
                "params": self.params,
                "epsilon": self.epsilon,
                "delta": self.delta,
                "accountant": self.accountant,
                "seed": self.seed,
                "source": self.source,
                **self._charged_to(),
            }
        )

    def domain_hash(self) -> str:
        """SHA-256 of what determines the run's domain (schema content and domain settings)."""
        return _digest(
            {
                "schema": _file_digest(self.schema_path),
                "domain": self.domain,
                "domain_epsilon": self.domain_epsilon,
                "domain_delta": self.domain_delta,
                "source": self.source,
                **self._charged_to(),
            }
        )

    def _charged_to(self) -> dict[str, str]:
        # Only when set: the hashes of every configuration without it (and so the model store's
        # keys of models already paid for) stay what they were.
        return {"budget_key": self.budget_key} if self.budget_key is not None else {}

    @property
    def total_epsilon(self) -> float:
        """Epsilon of the whole release: the DP domain (if learned) plus training."""
        return (self.domain_epsilon or 0.0) + (self.epsilon or 0.0)

    @property
    def label(self) -> str:
        """``name`` or, failing that, the run directory's name."""
        return self.name or self.output_dir.name


class SweepGrid(BaseModel):
    """The grid of a sweep: every generator x epsilon x seed becomes one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generators: list[str] = Field(min_length=1, description="generator ids")
    epsilons: list[float] = Field(min_length=1, description="training epsilons (each > 0)")
    seeds: list[int] = Field([0], min_length=1, description="seeds")
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="parameters per generator id"
    )


class SweepConfig(BaseModel):
    """A sweep over one dataset: a base run configuration and the grid to vary in it.

    Attributes:
        base: the run configuration shared by every cell (``generator``, ``params``,
            ``epsilon``, ``seed`` and ``output_dir`` are set per cell).
        grid: the generators, epsilons and seeds.
        output_dir: the sweep directory; cell ``g``/``e``/``s`` writes ``g-eps<e>-seed<s>/``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: dict[str, Any] = Field(description="run settings shared by every cell")
    grid: SweepGrid
    output_dir: Path

    def cells(self) -> list[RunConfig]:
        """One validated :class:`RunConfig` per grid cell (all problems in one ConfigError)."""
        configs, problems = [], []
        for generator in self.grid.generators:
            for epsilon in self.grid.epsilons:
                for seed in self.grid.seeds:
                    data = {
                        **self.base,
                        "generator": generator,
                        "epsilon": epsilon,
                        "seed": seed,
                        "params": self.grid.params.get(generator, {}),
                        "name": f"{generator}-eps{epsilon:g}-seed{seed}",
                    }
                    data["output_dir"] = self.output_dir / data["name"]
                    try:
                        configs.append(RunConfig.model_validate(data))
                    except ValidationError as exc:
                        problems += [f"cell {data['name']}: {p}" for p in _describe(exc)]
        if problems:
            raise ConfigError("the sweep has invalid cells:", problems)
        return configs


def _describe(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        out += [f"{where}: {line}" if where else line for line in message.splitlines()]
    return out


class ConfigFileError(ConfigError):
    """A configuration file is invalid; :attr:`problems` lists every problem found."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{path} is not a valid configuration ({len(problems)} problem(s)):\n{listed}"
        )


_PATH_KEYS = ("input", "schema_path", "holdout", "output_dir")


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(data)
    for key in _PATH_KEYS:
        if isinstance(out.get(key), str) and out[key]:
            out[key] = str((base / Path(out[key]).expanduser()).resolve())
    return out


def _read_yaml(path: str | Path) -> tuple[Path, dict[str, Any]]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of settings (key: value), not {type(data).__name__}"
        )
    return path, data


def run_config_from_dict(data: dict[str, Any], *, source: Path | None = None) -> RunConfig:
    """Validate ``data`` into a :class:`RunConfig`, listing every problem at once.

    Raises:
        ConfigError: unknown keys, bad values, unknown plugins, invalid generator params.
    """
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = _describe(exc)
        # Field errors stop pydantic before the checks across settings and plugins run: add
        # those too, so the user sees everything in one go.
        if all(err["loc"] for err in exc.errors()):
            problems += _model_problems(data)[0]
        raise ConfigFileError(source or Path("<config>"), problems) from None


def load_run_config(path: str | Path, **overrides: Any) -> RunConfig:
    """Read a run configuration from YAML; relative paths are relative to the file.

    Args:
        path: the YAML file.
        overrides: settings that replace the file's (e.g. ``output_dir``), not resolved.

    Raises:
        ConfigError: the file cannot be read or is invalid (every problem listed).
    """
    path, data = _read_yaml(path)
    data = {**_resolve_paths(data, path.parent), **overrides}
    return run_config_from_dict(data, source=path)


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read a sweep configuration (``base``, ``grid``, ``output_dir``) from YAML.

    Raises:
        ConfigError: the file or one of its cells is invalid (every problem listed).
    """
    path, data = _read_yaml(path)
    if isinstance(data.get("base"), dict):
        data["base"] = _resolve_paths(data["base"], path.parent)
    data = _resolve_paths(data, path.parent)
    try:
        sweep = SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(path, _describe(exc)) from None
    sweep.cells()  # every cell must be valid before anything runs
    return sweep


__all__ = [
    "ConfigFileError",
    "DomainMode",
    "RunConfig",
    "SweepConfig",
    "SweepGrid",
    "load_run_config",
    "load_sweep_config",
    "run_config_from_dict",
]
