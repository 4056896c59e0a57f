"""``privsynth fit`` / ``sample`` / ``privacy``: train a generator, draw rows, price a plan.

- ``fit`` reads the private table with its domain (public schema, or learned with DP), trains the
  chosen generator within the target (epsilon, delta), shows progress on stderr and saves the
  model directory (JSON manifest + weights). It trains through the model store that
  ``privsynth run`` uses: the same data, settings and domain are trained and paid for once, and
  a second identical fit copies the stored model out for free.
- ``sample`` draws rows from a saved model into a CSV or Parquet file (written atomically).
- ``privacy`` answers "what would this training plan spend?" before any data is touched: the
  epsilon of a DP-SGD plan under every registered accountant (or the noise each one needs).

Generator parameters are given as ``--param name=value`` (values are JSON when they parse as JSON,
else text) and validated through the generator's own parameter model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import ConfigError
from privsynth_core.service import spending_lines

from ._common import print_table

if TYPE_CHECKING:
    from privsynth_core import Generator, GeneratorParams, Progress

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def register(subparsers: Any) -> None:
    """Add the ``fit``, ``sample`` and ``privacy`` commands."""
    fit = subparsers.add_parser(
        "fit",
        help="train a generator on a private table",
        description="Train a generator on a private CSV/Parquet table within a privacy budget "
        "and save the model to a directory. Set the dataset's budget first "
        "(`privsynth budget set`).",
    )
    fit.add_argument("data", help="the private CSV or Parquet file")
    fit.add_argument(
        "--generator",
        help="generator id (default: the installed DP generator that serves the "
        "table best, e.g. AIM with privsynth-marginal, MST for wide tables; the "
        "choice and why are printed; see `privsynth plugins list`)",
    )
    fit.add_argument(
        "--target",
        help="the column a model will predict: generators that can weigh it do "
        "(AIM's and MST's selections, DP-CTGAN's focus_columns); nothing changes "
        "without it",
    )
    fit.add_argument("--epsilon", type=float, help="target epsilon of the training (DP generators)")
    fit.add_argument(
        "--delta",
        type=float,
        help="target delta (default: min(1e-5, 1/(10 n̂)) for the released row "
        "count n̂; 0 for pure-epsilon generators)",
    )
    fit.add_argument(
        "--accountant",
        default="rdp",
        help="privacy accountant id (default rdp; approximations are refused)",
    )
    fit.add_argument(
        "--schema",
        required=True,
        help="the reviewed schema file (YAML/JSON): `privsynth schema infer`, "
        "review, `privsynth schema confirm`",
    )
    fit.add_argument(
        "--domain",
        choices=("public", "dp"),
        default="public",
        help="use the schema's declared-public domain, or learn it with DP (then "
        "only the schema's names and kinds are used)",
    )
    fit.add_argument(
        "--domain-epsilon",
        type=float,
        help="epsilon spent on learning the domain (with --domain dp)",
    )
    fit.add_argument(
        "--source",
        help="the data source this file is an extract of (its budget is the "
        "source's; see `privsynth budget set --source`)",
    )
    _add_param_option(fit)
    fit.add_argument("-o", "--output", required=True, help="model directory to write")
    fit.add_argument("--overwrite", action="store_true", help="replace a non-empty directory")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(func=fit_cmd)

    sample = subparsers.add_parser("sample", help="draw synthetic rows from a saved model")
    sample.add_argument("model", help="model directory written by `privsynth fit`")
    sample.add_argument(
        "-n", "--rows", type=int, help="number of rows (default: the model's released row count n̂)"
    )
    sample.add_argument(
        "-o", "--output", required=True, help="output file: .csv, or .parquet for Parquet"
    )
    sample.add_argument("--seed", type=int, help="the same model and seed give the same rows")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing file")
    sample.set_defaults(func=sample_cmd)

    privacy = subparsers.add_parser(
        "privacy",
        help="the epsilon a training plan would spend, with every accountant",
        description="Price a DP-SGD training plan before training: epsilon under every "
        "registered accountant for a given noise multiplier (--sigma), or the noise multiplier "
        "each one needs for a target (--epsilon). Touches no data.",
    )
    privacy.add_argument(
        "--generator",
        required=True,
        help="id of a generator trained with DP-SGD (dpctgan, dpwgan, ...)",
    )
    privacy.add_argument(
        "--rows",
        type=int,
        required=True,
        help="rows to plan for (a fit plans with the released count n̂)",
    )
    privacy.add_argument("--epochs", type=int, help="planned epochs")
    privacy.add_argument("--batch-size", type=int, help="expected (Poisson) batch size")
    privacy.add_argument("--n-critic", type=int, help="critic steps per generator step")
    target = privacy.add_mutually_exclusive_group(required=True)
    target.add_argument("--sigma", type=float, help="noise multiplier")
    target.add_argument("--epsilon", type=float, help="target epsilon (prints the sigma needed)")
    privacy.add_argument(
        "--delta", type=float, help="delta (default: min(1e-5, 1/(10 rows)), as a fit's default)"
    )
    privacy.add_argument(
        "--schema",
        help="schema file (generators whose plan depends on the columns, e.g. dpctgan, need it)",
    )
    _add_param_option(privacy)
    privacy.add_argument("--json", action="store_true", help="print JSON instead of a table")
    privacy.set_defaults(func=privacy_cmd)


def _add_param_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a generator parameter (repeatable), e.g. --param epochs=300 "
        "--param critic_layers=256:leaky_relu,128:leaky_relu",
    )


# -- parameters ----------------------------------------------------------------------------


def parse_param_items(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (JSON values where they parse).

    Raises:
        ConfigError: an item has no ``=`` or names a parameter twice.
    """
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ConfigError(f"--param needs NAME=VALUE, got {item!r}")
        if name in values:
            raise ConfigError(f"--param {name} is given twice")
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
    return values


def params_help(cls: type[Generator[Any]]) -> str:
    """One line per parameter of a generator: name, type, default, description."""
    lines = []
    for name, field in cls.Params.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, tuple | list):
            default = json.dumps([getattr(v, "model_dump", lambda v=v: v)() for v in default])
        lines.append(f"  {name} (default {default}): {field.description or ''}")
    return "\n".join(lines)


def build_params(cls: type[Generator[Any]], values: dict[str, Any]) -> GeneratorParams:
    """Validate ``values`` with the generator's model; on error, list the allowed parameters.

    Raises:
        ConfigError: invalid or unknown parameters.
    """
    try:
        return cls.make_params(values)
    except ConfigError as exc:
        raise ConfigError(f"{exc}\nparameters of {cls.generator_id}:\n{params_help(cls)}") from None


# -- progress ------------------------------------------------------------------------------


class TextProgress:
    """A one-line progress bar on stderr (a line per update when stderr is not a terminal).

    It counts in the report's own unit (epoch, round, stage, metric), shows the time since the
    bar was made and an estimate of the time left (from the fraction done, once there is one).
    Training losses are computed on real rows: they are shown on a terminal only, never written
    to a file or pipe that stderr may be going to (a log).

    Args:
        stream: where to write (default stderr).
        width: characters of the bar.
        clock: a monotonic clock in seconds (for tests).
    """

    def __init__(
        self, stream: Any = None, width: int = 24, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self.stream = stream or sys.stderr
        self.width = width
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock or time.monotonic
        self.started = self.clock()
        self.last_shown = -1.0
        self.last_stage = ""
        self.shown_any = False

    def __call__(self, progress: Progress) -> None:
        """Show one update."""
        fraction = progress.fraction
        new_stage = progress.stage != self.last_stage
        if not self.live and fraction < 1 and fraction - self.last_shown < 0.1 and not new_stage:
            return  # in logs, about ten lines per fit
        self.last_shown, self.last_stage = fraction, progress.stage
        filled = round(self.width * fraction)
        stage = f" ({progress.stage})" if progress.stage else ""
        parts = [
            f"[{'#' * filled}{'-' * (self.width - filled)}] {progress.unit} "
            f"{progress.epoch}/{progress.epochs}{stage}"
        ]
        if self.live and progress.losses:
            parts.append("  ".join(f"{k} {v:.4g}" for k, v in progress.losses.items()))
        if progress.epsilon is not None:
            parts.append(f"epsilon {progress.epsilon:.4g}")
        elapsed = self.clock() - self.started
        timing = f"elapsed {_duration(elapsed)}"
        if 0 < fraction < 1:
            timing += f", about {_duration(elapsed * (1 - fraction) / fraction)} left"
        parts.append(timing)
        end = "" if self.live else "\n"
        self.stream.write(("\r\x1b[2K" if self.live else "") + "  ".join(parts) + end)
        self.stream.flush()
        self.shown_any = True

    def close(self) -> None:
        """End the live line."""
        if self.live and self.shown_any:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- commands ------------------------------------------------------------------------------


def check_output_folder(output: Path, *, overwrite: bool) -> None:
    """Refuse, before anything is read or charged, a model folder that cannot be written.

    Raises:
        InputFileError: it exists and is not empty (without ``overwrite``), it is the current
            folder or a parent of it, or its parent folder is not writable.
    """
    import os

    from privsynth_core.errors import InputFileError

    resolved = output.resolve()
    if resolved == Path.cwd().resolve() or Path.cwd().resolve().is_relative_to(resolved):
        raise InputFileError(
            f"output {output} is the current folder (or holds it); give a new "
            f"folder for the model, e.g. -o model/"
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise InputFileError(
            f"output {output} already exists and is not empty; choose another "
            f"path or pass --overwrite"
        )
    parent = resolved.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputFileError(
            f"cannot write the model to {output}: {parent} is not writable; choose another folder"
        )


def describe_guarantee(manifest: dict[str, Any]) -> str:
    """The end-to-end guarantee of a model manifest, with its parts, in one line."""
    privacy = manifest["privacy"]
    parts = " + ".join(f"{p['step']} {p['epsilon']:.4g}" for p in privacy["parts"])
    return f"epsilon={privacy['epsilon']:.4g}, delta={privacy['delta']:.3g} end to end ({parts})"


def fit_cmd(args: argparse.Namespace) -> int:
    """Fit a generator through the model store and save a copy of the model.

    The fit goes through the same store as ``privsynth run`` (:func:`privsynth_core.runs.pipeline.
    fit_model`): a model already trained and paid for with the same data, settings and domain is
    copied out without training or charging again; an identical fit running elsewhere is waited
    for; a fit whose earlier attempt left its reservation open is refused.
    """
    import uuid

    from privsynth_core.fileio import atomic_directory
    from privsynth_core.registry import settling_accountant
    from privsynth_core.runs import pipeline
    from privsynth_core.runs.config import run_config_from_dict

    cls = _fit_generator(args)
    params = build_params(cls, cls.params_for_target(parse_param_items(args.param), args.target))
    if cls.is_dp:
        if args.epsilon is None:
            raise ConfigError(
                f"generator {cls.generator_id} is differentially private: give the "
                f"target --epsilon of the training (and optionally --delta)"
            )
        settling_accountant(args.accountant)  # refused before any work
    elif args.epsilon is not None or args.delta is not None:
        raise ConfigError(
            f"generator {cls.generator_id} is not differentially private: it "
            f"takes no --epsilon/--delta"
        )
    output = Path(args.output)
    # Checked before anything is charged, so no budget is spent on a model that cannot be saved.
    check_output_folder(output, overwrite=args.overwrite)
    config = run_config_from_dict(
        {
            "input": args.data,
            "schema_path": args.schema,
            "domain": args.domain,
            "domain_epsilon": args.domain_epsilon,
            "source": args.source,
            "generator": cls.generator_id,
            "params": params.model_dump(mode="json"),
            "epsilon": args.epsilon,
            "delta": args.delta,
            "accountant": args.accountant,
            "target": args.target,
            "output_dir": output,
        }
    )
    run_id = uuid.uuid4().hex
    info = pipeline.load_input(config)
    schema = pipeline.resolve_domain(
        config,
        pipeline.cache_dir() / "domains" / pipeline.domain_key(config, info.fingerprint),
        run_id=run_id,
    )
    bar = None if args.quiet else TextProgress()
    try:
        stored = pipeline.fit_model(config, schema, run_id=run_id, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    with atomic_directory(output, overwrite=args.overwrite) as tmp:
        shutil.copytree(stored, tmp, dirs_exist_ok=True)
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    fit, private = manifest["fit"], bool(manifest.get("differentially_private"))
    if pipeline.fit_reused(stored, run_id):
        record = pipeline.fit_record(stored)
        paid = (
            f"paid for by run {str(record.get('run_id'))[:12]}, ledger entry "
            f"#{record.get('ledger_entry_id')}"
        )
        what = (
            f"it spends {describe_guarantee(manifest)}"
            if private
            else "NOT differentially private, do not release its output"
        )
        print(
            f"reused the {cls.generator_id} model already trained with these data and "
            f"settings ({paid}): nothing was trained or charged now; {what}; saved to {output}"
        )
    elif private:
        early = " (stopped early: the budget ran out)" if fit.get("stopped_early") else ""
        print(
            f"fitted {cls.generator_id} in {fit.get('steps')} steps{early}; the model spends "
            f"{describe_guarantee(manifest)}; saved to {output}"
        )
        for line in spending_lines(fit.get("extra") or {}):
            print(f"  {line}")
    else:
        print(
            f"fitted {cls.generator_id}: NOT differentially private, do not release its "
            f"output; model saved to {output}"
        )
    return 0


def _fit_generator(args: argparse.Namespace) -> type[Generator[Any]]:
    """The generator ``--generator`` names, or the one that serves the table best (said why).

    The choice reads the schema file (public) only; ``--delta 0`` keeps it to pure-epsilon
    generators. A ``--target`` must be a column of the schema.
    """
    from privsynth_core.registry import choose_generator, generators
    from privsynth_core.schema import Schema

    registry = generators()
    if args.generator is not None and args.target is None:
        return registry.get(args.generator)
    schema = Schema.load(args.schema)
    if args.target is not None and args.target not in schema.names:
        raise ConfigError(
            f"--target {args.target!r} is not a column of {args.schema}; columns: "
            f"{', '.join(schema.names)}"
        )
    if args.generator is not None:
        return registry.get(args.generator)
    installed = [e.plugin_id for e in registry.entries() if args.delta != 0 or e.cls.pure_epsilon]
    choice = choose_generator(schema, None, installed, target=args.target)
    print(f"generator {choice.generator_id}: {choice.why}; --generator ID chooses another")
    return registry.get(choice.generator_id)


def sample_cmd(args: argparse.Namespace) -> int:
    """Sample rows from a saved model into a file (checked writable before the model is read)."""
    import os

    from privsynth_core.errors import InputFileError
    from privsynth_core.fileio import atomic_write
    from privsynth_core.registry import load_model
    from privsynth_core.runs.pipeline import default_rows

    output = Path(args.output)
    if not output.name.lower().endswith(TABLE_SUFFIXES):
        raise ConfigError(f"output {output} must end in .csv or .parquet")
    if output.is_dir():
        raise InputFileError(
            f"output {output} is a folder; give a file name such as {output / 'synthetic.csv'}"
        )
    if output.exists() and not args.overwrite:
        raise InputFileError(f"{output} already exists; choose another path or pass --overwrite")
    parent = output.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputFileError(
            f"cannot write {output}: {parent} is not writable; choose another folder"
        )
    if args.rows is not None and args.rows < 0:
        raise ConfigError(f"--rows must be >= 0, got {args.rows}")
    generator = load_model(args.model)
    rows = default_rows(generator) if args.rows is None else args.rows
    frame = generator.sample(rows, seed=args.seed)
    if output.suffix.lower() == ".csv":
        atomic_write(output, lambda tmp: frame.write_csv(tmp))
    else:
        atomic_write(output, lambda tmp: frame.write_parquet(tmp))
    label = "" if generator.is_dp else " (NOT differentially private: do not release)"
    print(f"wrote {frame.height} rows to {output}{label}")
    return 0


def privacy_cmd(args: argparse.Namespace) -> int:
    """Print what a training plan would spend under each registered accountant."""
    from privsynth_core.errors import AccountingError
    from privsynth_core.privacy.count import default_delta
    from privsynth_core.registry import accountants, generators
    from privsynth_core.service import is_dpsgd, price_plan

    cls = generators().get(args.generator)
    if not is_dpsgd(cls.generator_id):
        raise ConfigError(
            f"generator {cls.generator_id} is not trained with DP-SGD; it has no "
            f"training plan to price (it spends exactly its target)"
        )
    if args.rows < 1:
        raise ConfigError(f"--rows must be >= 1, got {args.rows}")
    values = parse_param_items(args.param)
    for option, name in (
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("n_critic", "n_critic"),
    ):
        given = getattr(args, option)
        if given is None:
            continue
        if name not in cls.Params.model_fields:
            raise ConfigError(f"generator {cls.generator_id} has no parameter {name}")
        values[name] = given
    params = build_params(cls, values)
    delta = args.delta if args.delta is not None else default_delta(args.rows)
    schema = None
    if args.schema:
        from privsynth_core.schema import Schema

        schema = Schema.load(args.schema)
    rows, results = [], []
    from privsynth_core.privacy.dpsgd_generator import DPSGDGenerator

    assert issubclass(cls, DPSGDGenerator)  # checked above
    sample_rate, steps = cls.dp_plan(n_rows=args.rows, params=params)
    for entry in accountants().entries():
        acc = entry.cls
        try:
            price = price_plan(
                cls.generator_id,
                params,
                rows=args.rows,
                accountant=entry.plugin_id,
                delta=delta,
                schema=schema,
                sigma=args.sigma,
                epsilon=args.epsilon,
            )
            value = price.epsilon if args.sigma is not None else price.sigma
            text, error = f"{value:.4g}", None
        except AccountingError as exc:
            value, text, error = None, "n/a", str(exc)
        note = "approximation: may under-report; never used to fit" if acc.approximate else ""
        rows.append([entry.plugin_id, text, error or note])
        results.append(
            {
                "accountant": entry.plugin_id,
                "value": value,
                "error": error,
                "approximate": acc.approximate,
            }
        )
    what = "epsilon" if args.sigma is not None else "sigma"
    if args.json:
        print(
            json.dumps(
                {
                    "generator": cls.generator_id,
                    "rows": args.rows,
                    "sample_rate": sample_rate,
                    "steps": steps,
                    "delta": delta,
                    "sigma": args.sigma,
                    "epsilon": args.epsilon,
                    "quantity": what,
                    "results": results,
                },
                indent=2,
            )
        )
        return 0
    given = (
        f"sigma {args.sigma:g}" if args.sigma is not None else f"target epsilon {args.epsilon:g}"
    )
    print(
        f"{cls.generator_id}: {args.rows} rows, sample rate q = {sample_rate:.4g}, {steps} DP "
        f"steps, {given}, delta {delta:.3g}"
    )
    print_table(["ACCOUNTANT", what.upper(), "NOTE"], rows)
    return 0
