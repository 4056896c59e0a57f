"""The ``ctgan`` generator: SDV's CTGANSynthesizer as it is -- NOT differentially private.

A comparison baseline only. SDV's CTGAN fits its transforms (Gaussian-mixture modes, category
frequencies, min/max) on the raw data, samples training rows by category (training-by-sampling
with log frequencies), packs 10 rows per critic input and trains with a gradient penalty on real
data: every one of those is what DESIGN §4 forbids in DP mode. Its output carries **no privacy
guarantee**: the description, ``privsynth plugins list``, the model manifest and the ledger say
so (the ledger records the fit as non-DP and refuses to treat it as private).

Persistence without pickle: SDV can only save a synthesizer as a cloudpickle (unpickling runs
code), so the fitted object graph is written as a JSON state tree plus a ``torch.save`` of plain
tensors, and rebuilt on load from an allow-list of classes without running any of their code
(see ``_state``). A loaded model samples exactly the rows the fitted one did.

sdv and torch load inside the methods, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from privsynth_core import (
    ConfigError,
    FitSummary,
    Generator,
    GeneratorError,
    GeneratorParams,
    Progress,
    hookimpl,
)
from privsynth_core.generator import NOT_DP_LABEL
from privsynth_core.schema import ColumnKind

if TYPE_CHECKING:
    import polars as pl

    from privsynth_core import PrivacyBudget, Schema, Table
    from privsynth_core.generator import ProgressCallback

STATE_FILE = "sdv_state.json"
TENSORS_FILE = "sdv_tensors.pt"
_TABLE = "table"


def _widths(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return tuple(int(p) for p in value.split(",") if p.strip())
        except ValueError:
            msg = f"layer widths must be integers like '256,256', got {value!r}"
            raise ValueError(msg) from None
    return value


class CTGANParams(GeneratorParams):
    """Parameters of SDV's CTGANSynthesizer (its defaults), plus threads and seed."""

    epochs: int = Field(300, ge=1, le=100_000, description="training epochs")
    batch_size: int = Field(
        500, ge=2, le=1_000_000, description="batch size (a multiple of pac, as SDV requires)"
    )
    embedding_dim: int = Field(128, ge=1, le=4096, description="latent noise dimension")
    generator_dim: tuple[int, ...] = Field(
        (256, 256), min_length=1, max_length=16, description="generator residual layer widths"
    )
    discriminator_dim: tuple[int, ...] = Field(
        (256, 256), min_length=1, max_length=16, description="discriminator layer widths"
    )
    generator_lr: float = Field(2e-4, gt=0.0, le=1.0, description="generator learning rate")
    discriminator_lr: float = Field(2e-4, gt=0.0, le=1.0, description="discriminator learning rate")
    discriminator_steps: int = Field(
        1, ge=1, le=100, description="discriminator steps per generator step"
    )
    pac: int = Field(10, ge=1, le=100, description="rows packed into one critic input")
    log_frequency: bool = Field(True, description="log-frequency conditional sampling")
    num_threads: int = Field(1, ge=1, le=256, description="CPU threads for torch while fitting")
    seed: int | None = Field(None, ge=0, description="seed of the fit's randomness")
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="cpu, cuda or auto")

    @field_validator("generator_dim", "discriminator_dim", mode="before")
    @classmethod
    def _parse_widths(cls, value: Any) -> Any:
        return _widths(value)


def sdv_metadata(schema: Schema) -> Any:
    """SDV 2.x metadata built from the schema (no detection on the data)."""
    from sdv.metadata import Metadata

    columns: dict[str, dict[str, Any]] = {}
    for col in schema.columns:
        if col.kind is ColumnKind.CATEGORICAL:
            columns[col.name] = {"sdtype": "categorical"}
        elif col.kind is ColumnKind.BOOLEAN:
            columns[col.name] = {"sdtype": "boolean"}
        elif col.kind is ColumnKind.DATETIME:
            columns[col.name] = {"sdtype": "datetime"}
        else:
            spec: dict[str, Any] = {"sdtype": "numerical"}
            if col.kind is ColumnKind.INTEGER:
                spec["decimal_places"] = 0
            columns[col.name] = spec
    return Metadata.load_from_dict({"tables": {_TABLE: {"columns": columns}}})


_EPOCH_CALLBACKS: dict[int, Callable[[int], None]] = {}


def _install_epoch_hook() -> None:
    """Make ctgan's epoch loop report each finished epoch to the fit running in this thread.

    ctgan's ``CTGAN.fit`` has no callback; it iterates its epochs through the module's ``tqdm``.
    That name is replaced (once, idempotently) by a wrapper that calls the callback registered
    for the current thread, if any, as each epoch ends; other threads and callers see plain
    tqdm.
    """
    import ctgan.synthesizers.ctgan as module

    original = module.tqdm
    if getattr(original, "_privsynth_hook", False):
        return

    def hooked(*args: Any, **kwargs: Any) -> Any:
        inner = original(*args, **kwargs)
        callback = _EPOCH_CALLBACKS.get(threading.get_ident())
        return inner if callback is None else _Reporting(inner, callback)

    hooked._privsynth_hook = True  # type: ignore[attr-defined]
    module.tqdm = hooked


class _Reporting:
    """An epoch iterator that reports ``done`` epochs each time the next one is asked for."""

    def __init__(self, inner: Any, callback: Callable[[int], None]) -> None:
        self._inner = inner
        self._callback = callback

    def __iter__(self) -> Iterator[Any]:
        done = 0
        for item in self._inner:
            if done:
                self._callback(done)
            yield item
            done += 1
        self._callback(done)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # set_description etc.


@contextmanager
def _epoch_reports(synth: Any, epochs: int, progress: ProgressCallback | None) -> Iterator[None]:
    """Report every finished epoch of SDV's CTGAN fit (with its last losses) to ``progress``.

    The losses are computed on real rows: the progress display shows them to the custodian
    only (see :class:`privsynth_core.generator.Progress`).
    """
    if progress is None:
        yield
        return
    _install_epoch_hook()

    def report(done: int) -> None:
        losses: dict[str, float] = {}
        values = getattr(getattr(synth, "_model", None), "loss_values", None)
        if values is not None and len(values):
            last = values.iloc[-1]
            losses = {
                "generator": float(last.get("Generator Loss", math.nan)),
                "critic": float(last.get("Discriminator Loss", math.nan)),
            }
        progress(Progress(epoch=done, epochs=epochs, step=done, losses=losses))

    key = threading.get_ident()
    _EPOCH_CALLBACKS[key] = report
    try:
        yield
    finally:
        _EPOCH_CALLBACKS.pop(key, None)


@contextmanager
def _seeded(seed: int | None, threads: int) -> Iterator[None]:
    """Global numpy/torch RNGs seeded for the block (then restored), torch threads set."""
    import numpy as np
    import torch

    state = np.random.get_state()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SDV's advisory warnings are not for our users
            if seed is not None:
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(state)
        torch.set_num_threads(old_threads)


class CTGANGenerator(Generator[CTGANParams]):
    """SDV's CTGAN, unmodified: a quality reference that is NOT differentially private."""

    generator_id = "ctgan"
    description = (
        f"SDV CTGANSynthesizer as is -- {NOT_DP_LABEL}: no privacy guarantee, for comparison only"
    )
    is_dp = False
    Params = CTGANParams

    def __init__(self, params: CTGANParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._synth: Any = None
        p = self.params
        if p.batch_size % p.pac or (p.batch_size // p.pac) % 2:
            raise ConfigError(
                f"SDV's CTGAN needs batch_size to be an even multiple of pac; got batch_size="
                f"{p.batch_size}, pac={p.pac} (e.g. batch_size={2 * p.pac * 25})"
            )

    def _sdv_kwargs(self) -> dict[str, Any]:
        p = self.params
        return {
            "epochs": p.epochs,
            "batch_size": p.batch_size,
            "embedding_dim": p.embedding_dim,
            "generator_dim": p.generator_dim,
            "discriminator_dim": p.discriminator_dim,
            "generator_lr": p.generator_lr,
            "discriminator_lr": p.discriminator_lr,
            "discriminator_steps": p.discriminator_steps,
            "pac": p.pac,
            "log_frequency": p.log_frequency,
            "enable_gpu": p.device != "cpu",
        }

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        import time

        import torch
        from sdv.single_table import CTGANSynthesizer

        p = self.params
        if p.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU here")
        synth = CTGANSynthesizer(sdv_metadata(table.schema), **self._sdv_kwargs())
        started = time.perf_counter()
        with _seeded(p.seed, p.num_threads), _epoch_reports(synth, p.epochs, progress):
            try:
                synth.fit({_TABLE: table.frame.to_pandas()})
            except Exception as exc:  # SDV raises many kinds; none may reach the user raw
                raise GeneratorError(
                    f"SDV's CTGAN failed to fit: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from exc
        elapsed = time.perf_counter() - started
        self._synth = synth
        return FitSummary(
            private=False,
            epochs=float(p.epochs),
            extra={
                "label": NOT_DP_LABEL,
                "library": "sdv.single_table.CTGANSynthesizer",
                "seconds_per_epoch": elapsed / p.epochs,
            },
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        import secrets

        import polars as pl

        from privsynth_core.validation import conform

        assert self.schema is not None
        if n_rows == 0:
            return conform(pl.DataFrame(schema=self.schema.names), self.schema)
        synth = self._synth
        with _seeded(None, self.params.num_threads):
            synth.reset_sampling()
            synth._set_random_state(seed if seed is not None else secrets.randbits(32))
            frame = synth.sample(n_rows)[_TABLE]
        out = pl.from_pandas(frame)
        try:
            return conform(out, self.schema)
        except Exception as exc:
            raise GeneratorError(f"SDV's CTGAN produced rows outside the schema: {exc}") from exc

    def _save_state(self, directory: Path) -> None:
        import torch

        from ._state import StateError, dump

        try:
            tree, tensors = dump(self._synth, skip=_placeholders(self._synth))
        except StateError as exc:
            raise GeneratorError(
                f"cannot save this SDV CTGAN model without pickling it: {exc}"
            ) from None
        (directory / STATE_FILE).write_text(json.dumps(tree), encoding="utf-8")
        torch.save(tensors, directory / TENSORS_FILE)

    def _load_state(self, directory: Path) -> None:
        import torch
        from sdv.single_table import CTGANSynthesizer

        from ._state import StateError, load

        assert self.schema is not None
        try:
            tree = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
            tensors = torch.load(directory / TENSORS_FILE, map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise GeneratorError(f"cannot read the CTGAN model in {directory}: {exc}") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            skeleton = CTGANSynthesizer(sdv_metadata(self.schema), **self._sdv_kwargs())
        skipped = {name: _resolve(skeleton, name) for name in _PLACEHOLDERS}
        try:
            self._synth = load(tree, tensors, skipped=skipped)
        except (StateError, KeyError, TypeError, AttributeError, ImportError) as exc:
            raise GeneratorError(
                f"the CTGAN model in {directory} does not fit this SDV version or is damaged: "
                f"{type(exc).__name__}: {exc}"
            ) from None


# Unfitted parts of a synthesizer that are rebuilt from the schema instead of being stored: the
# metadata objects and the per-sdtype transformer templates (one holds a Faker instance).
_PLACEHOLDERS = (
    "_input_metadata",
    "_original_metadata",
    "_data_processor.metadata",
    "_data_processor._transformers_by_sdtype",
)


def _resolve(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _placeholders(synth: Any) -> dict[int, str]:
    found = {}
    for name in _PLACEHOLDERS:
        try:
            found[id(_resolve(synth, name))] = name
        except AttributeError:
            continue
    return found


@hookimpl
def register_generators(register: Callable[[type[Generator[Any]]], None]) -> None:
    """Register the non-DP CTGAN baseline, when SDV (the ``privsynth[sdv]`` extra) is installed.

    Only whether SDV can be found is checked (no import): listing plugins stays cheap.
    """
    if sdv_installed():
        register(CTGANGenerator)


def sdv_installed() -> bool:
    """Whether SDV, which the baseline wraps, is installed (the ``sdv`` extra)."""
    from importlib.util import find_spec

    try:
        return find_spec("sdv") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as absent
        return False
