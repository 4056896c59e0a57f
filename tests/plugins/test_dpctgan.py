"""DP-CTGAN's own DP mechanics, checked directly rather than trusted.

The clipped sum is recomputed with ``torch.func`` and compared with what Opacus handed the
optimizer; the Poisson sampler, the accountant's epsilon for the marginals plus the steps really
taken, the refusal of a plan with no step, the noisy marginals' scale and their charge inside the
budget, and the domain of the output are each measured. (Fit/sample/save/load, seeds and the
ledger are in ``test_generator_contract.py``, which runs every generator.)
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import datetime
from functools import partial

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from privsynth_core import (
    AccountingError,
    Column,
    ColumnKind,
    ConfigError,
    PrivacyBudget,
    PrivacyLedger,
    Progress,
    Schema,
    Table,
)
from privsynth_core.datasets import adult_schema
from privsynth_core.privacy import dpsgd
from privsynth_core.privacy.dpsgd import BatchSource, PoissonSampler
from privsynth_core.registry import accountants
from privsynth_plugins.dpctgan import DPCTGANGenerator, DPCTGANParams
from privsynth_plugins.dpctgan._counts import exact_marginals, marginal_count_arrays
from privsynth_plugins.dpctgan._encoding import CTGANEncoder
from privsynth_plugins.dpctgan._marginals import (
    Conditioner,
    count_marginals,
    focus_pairs,
    noise_scale,
    noisy_counts,
    release_marginals,
)
from privsynth_plugins.dpctgan._model import DPCTGANTrainer, make_encoder
from privsynth_plugins.dpctgan._nets import critic_net
from privsynth_plugins.dpctgan._plan import gdp_mu

TINY = {
    "critic_dim": "32,16",
    "generator_dim": "32",
    "embedding_dim": 8,
    "device": "cpu",
    "seed": 0,
}


def _trainer(
    table: Table,
    params: DPCTGANParams,
    sigma: float,
    q: float,
    one_way: dict[str, list[float]] | None = None,
) -> DPCTGANTrainer:
    encoder = make_encoder(table.schema, params)
    if one_way is None:
        data = torch.from_numpy(encoder.encode(table.frame))
        one_way = release_marginals([data], encoder, table.schema.names, (), 20.0).one_way
    conditioner = Conditioner(encoder, one_way, torch.device("cpu"))
    return DPCTGANTrainer(
        encoder,
        conditioner,
        None,
        params,
        n_rows=table.n_rows,
        noise_multiplier=sigma,
        sample_rate=q,
        device=torch.device("cpu"),
    )


def _per_row_clipped_sum(
    trainer: DPCTGANTrainer, before: dict[str, torch.Tensor], clip: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Recompute, from scratch, the sum of every row's clipped gradient in the last step."""
    from torch.func import functional_call, grad, vmap

    assert trainer.last_batch is not None
    batch, m = trainer.last_batch, trainer.last_real_rows
    plain = critic_net(batch.shape[1], trainer.params.critic_dim, 0.0)
    is_real = (torch.arange(len(batch)) < m).float()

    def loss_one(p: dict[str, torch.Tensor], x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        score = functional_call(plain, p, (x.unsqueeze(0),)).squeeze()
        return real * F.softplus(-score) + (1 - real) * F.softplus(score)

    per_row = vmap(grad(loss_one), in_dims=(None, 0, 0))(before, batch, is_real)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_row.values()))
    factor = (clip / (norms + 1e-6)).clamp(max=1.0)
    return (
        {k: torch.einsum("i,i...->...", factor, g) for k, g in per_row.items()},
        norms,
        norms * factor,
    )


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_critic_step_is_the_clipped_sum_of_every_row_plus_noise(
    adult_small: Table, mode: str
) -> None:
    torch.manual_seed(0)
    clip, sigma, q = 0.02, 1.7, 0.2
    params = DPCTGANParams(**TINY, max_grad_norm=clip, grad_sample_mode=mode, critic_dropout=0.0)
    trainer = _trainer(adult_small, params, sigma, q)
    named = list(trainer.critic._module.named_parameters())
    before = {k: p.detach().clone() for k, p in named}
    index = PoissonSampler(adult_small.n_rows, q).draw()
    real = torch.from_numpy(
        make_encoder(adult_small.schema, params).encode(adult_small.frame[index])
    )
    trainer.critic_step(real)

    assert trainer.last_real_rows == len(index)
    assert len(trainer.last_batch) - len(index) == round(q * adult_small.n_rows)  # fixed fakes
    total, raw, clipped = _per_row_clipped_sum(trainer, before, clip)
    m = trainer.last_real_rows
    assert (clipped[:m] <= clip * (1 + 1e-5)).all()  # every record's gradient is bounded
    assert (raw[:m] > clip).float().mean() > 0.5  # and the bound really bites here
    expected = q * adult_small.n_rows
    for name, param in named:
        # Opacus summed exactly the clipped per-row gradients: nothing unclipped from real rows.
        torch.testing.assert_close(param.summed_grad, total[name], rtol=1e-4, atol=1e-6)
        # The update used (clipped sum + noise) / (q n); the noise has std sigma * C.
        noise = param.grad * expected - param.summed_grad
        if noise.numel() >= 500:
            assert noise.std().item() == pytest.approx(sigma * clip, rel=0.12)
        else:
            assert (noise.abs() > 0).all() and noise.abs().max() < 6 * sigma * clip


def test_one_record_moves_the_released_gradient_by_at_most_max_grad_norm(
    adult_small: Table,
) -> None:
    """Sensitivity measured: the same step with and without one record, noise off."""
    clip = 0.05
    params = DPCTGANParams(**TINY, max_grad_norm=clip, critic_dropout=0.0)
    encoder = make_encoder(adult_small.schema, params)
    rows = torch.from_numpy(encoder.encode(adult_small.frame.head(60)))
    one_way = release_marginals(
        [torch.from_numpy(encoder.encode(adult_small.frame))],
        encoder,
        adult_small.schema.names,
        (),
        20.0,
    ).one_way
    grads = []
    for batch in (rows, rows[:-1]):
        torch.manual_seed(3)  # same weights, same fake rows, same conditions for shared rows
        trainer = _trainer(adult_small, params, 0.0, 0.06, one_way)
        trainer.critic_step(batch)
        grads.append(torch.cat([p.summed_grad.flatten() for p in trainer.critic_params]))
    moved = float((grads[0] - grads[1]).norm())
    assert 0.5 * clip < moved <= clip * (1 + 1e-4)


def test_sampler_is_poisson_with_mean_batch_q_n() -> None:
    n, q, draws = 2000, 0.05, 400
    sampler = PoissonSampler(n, q)
    batches = [sampler.draw() for _ in range(draws)]
    sizes = np.array([len(b) for b in batches])
    sd = math.sqrt(n * q * (1 - q))
    assert abs(sizes.mean() - n * q) < 4 * sd / math.sqrt(draws)
    assert 0.75 * sd < sizes.std() < 1.25 * sd  # sizes vary as Binomial(n, q)
    counts = np.bincount(np.concatenate(batches), minlength=n)
    assert counts.mean() == pytest.approx(q * draws, rel=0.05) and counts.min() > 0
    assert all(len(np.unique(b)) == len(b) for b in batches)
    assert not np.array_equal(PoissonSampler(n, q).draw(), PoissonSampler(n, q).draw())


def _fit(
    table: Table,
    ledger: PrivacyLedger,
    budget: PrivacyBudget,
    accountant: str = "rdp",
    **params: object,
) -> tuple[DPCTGANGenerator, list[Progress]]:
    ledger.set_budget(table.fingerprint(), epsilon=50.0, delta=1e-3)
    generator = DPCTGANGenerator(accountant=accountant, **{**TINY, **params})
    seen: list[Progress] = []
    generator.fit(table, budget=budget, ledger=ledger, progress=seen.append)
    return generator, seen


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_is_the_accountants_value_for_marginals_plus_steps_taken(
    adult_small: Table, ledger: PrivacyLedger, accountant: str
) -> None:
    budget = PrivacyBudget(3.0, 1e-5)
    generator, seen = _fit(
        adult_small, ledger, budget, accountant, noise_multiplier=1.2, batch_size=100, epochs=40
    )
    summary = generator.fit_summary
    assert summary is not None and summary.stopped_early  # the budget ends the run
    acc = accountants().get(accountant)
    # The plan's sample rate comes from the released row count n̂, never the exact size.
    q, sigma_m = (
        100 / summary.noisy_rows,
        summary.extra["budget_split"]["marginals_noise_multiplier"],
    )
    assert summary.accountant_state["history"] == [[sigma_m, 1.0, 1], [1.2, q, summary.steps]]

    def composed(steps: int) -> float:
        a = acc()
        a.step(noise_multiplier=sigma_m, sample_rate=1.0)
        a.step(noise_multiplier=1.2, sample_rate=q, num_steps=steps)
        return a.get_epsilon(delta=1e-5)

    assert summary.epsilon == pytest.approx(composed(summary.steps), rel=1e-12)
    assert summary.epsilon <= budget.epsilon < composed(summary.steps + 1)  # stopped in time
    assert seen[-1].epsilon == pytest.approx(summary.epsilon, rel=1e-12)
    assert [p.epsilon for p in seen] == sorted(p.epsilon for p in seen)
    _, entry = ledger.entries(adult_small.fingerprint())
    assert entry.status == "spent" and entry.epsilon == pytest.approx(summary.epsilon, rel=1e-12)


def test_noisy_marginals_are_charged_inside_the_budget(
    adult_small: Table, ledger: PrivacyLedger
) -> None:
    budget = PrivacyBudget(2.0, 1e-5)
    generator, _ = _fit(
        adult_small, ledger, budget, batch_size=200, epochs=3, focus_columns="income"
    )
    summary = generator.fit_summary
    assert summary is not None and summary.noisy_rows is not None
    assert not summary.stopped_early
    assert summary.steps == 3 * max(1, round(summary.noisy_rows / 200))  # from n̂
    split = summary.extra["budget_split"]
    # The split: sigma_m = 1 / (sqrt(share) * mu), share 0.3 by default with a focus column.
    assert split["marginals_share"] == 0.3
    assert split["marginals_noise_multiplier"] == pytest.approx(
        1 / (math.sqrt(0.3) * gdp_mu(2.0, 1e-5))
    )
    assert split["marginal_tables"] == 15 + 14  # one-way for all, two-way income x each other
    # The marginals really cost something, and the total still meets the target.
    assert split["dpsgd_epsilon_alone"] < summary.epsilon <= budget.epsilon
    assert summary.epsilon >= 0.97 * budget.epsilon  # sigma calibrated on the composition

    plain, _ = _fit(
        adult_small,
        PrivacyLedger(ledger.path.with_name("other.sqlite")),
        budget,
        batch_size=200,
        epochs=3,
        marginals_share=0.0,
    )
    assert plain.fit_summary is not None
    assert plain.fit_summary.accountant_state["history"][0][1] != 1.0  # no marginals release
    assert plain._net.seq[0].fc.in_features == TINY["embedding_dim"]  # no conditional vectors


def test_marginals_noise_is_exact_integer_noise_of_the_declared_scale(adult_small: Table) -> None:
    params = DPCTGANParams(**TINY)
    encoder = make_encoder(adult_small.schema, params)
    data = torch.from_numpy(encoder.encode(adult_small.frame))
    sigma_m, columns = 4.0, adult_small.schema.names
    exact = count_marginals([data], encoder, columns, ())
    k = exact.n_tables
    # k tables, L2 sensitivity sqrt(k): std sigma_m sqrt(k), widened by a hair so that the
    # continuous Gaussian the plan accounts dominates it (dominated_sigma)
    scale = noise_scale(sigma_m, k)
    assert scale == pytest.approx(sigma_m * math.sqrt(k) + 1 / (12 * sigma_m * math.sqrt(k)))
    noise = []
    for _ in range(40):
        noisy = noisy_counts(exact, sigma_m)
        for name, counts in exact.one_way.items():
            assert noisy.one_way[name].dtype == np.int64 == counts.dtype
            noise.append(noisy.one_way[name] - counts)
    values = np.concatenate(noise).astype(np.float64)
    n = values.size
    # The discrete Gaussian of scale ~15.5 has mean 0 and variance scale^2 to within 1e-2000;
    # each bound is 5.5 standard errors (std: about scale / sqrt(2n)): false failure < 4e-8.
    assert abs(values.mean()) < 5.5 * scale / math.sqrt(n)
    assert abs(values.std() - scale) < 5.5 * scale / math.sqrt(2 * n)
    # and the released marginals are the clipped, normalised noisy counts
    released = release_marginals([data], encoder, columns, (), sigma_m).one_way["gender"]
    assert min(released) >= 0 and sum(released) == pytest.approx(1.0)
    true = exact.one_way["gender"] / exact.one_way["gender"].sum()
    # normalising a 2-cell histogram of n rows moves p0 by about (e0 p1 - e1 p0) / n: std
    # scale * sqrt(p0^2 + p1^2) / n; 5.5 of those fails a correct release with P < 4e-8
    tolerance = 5.5 * scale * math.sqrt((true**2).sum()) / exact.one_way["gender"].sum()
    assert np.asarray(released) == pytest.approx(true, abs=tolerance)


@pytest.mark.parametrize("noise", [0.3, None])
def test_budget_that_allows_no_step_is_refused_before_the_training_is_reserved(
    adult_small: Table, ledger: PrivacyLedger, noise: float | None
) -> None:
    ledger.set_budget(adult_small.fingerprint(), epsilon=1.0, delta=1e-3)
    generator = DPCTGANGenerator(**TINY, noise_multiplier=noise, batch_size=500)
    tiny = PrivacyBudget(1e-4 if noise is None else 0.05, 1e-5)
    with pytest.raises(AccountingError, match="0 training steps|no noise multiplier"):
        generator.fit(adult_small, budget=tiny, ledger=ledger)
    # Only the released row count (needed to price the plan) was charged; no training.
    [count] = ledger.entries(adult_small.fingerprint())
    assert count.mechanism == "noisy row count"
    assert not generator.is_fitted


def test_unknown_focus_column_is_refused_before_anything_is_reserved(
    adult_small: Table, ledger: PrivacyLedger
) -> None:
    ledger.set_budget(adult_small.fingerprint(), epsilon=5.0, delta=1e-3)
    generator = DPCTGANGenerator(**TINY, focus_columns="salary")
    with pytest.raises(ConfigError, match="salary"):
        generator.fit(adult_small, budget=PrivacyBudget(1.0, 1e-5), ledger=ledger)
    assert ledger.entries(adult_small.fingerprint()) == []


def _mixed_table() -> Table:
    rng = np.random.default_rng(0)
    n = 400
    frame = pl.DataFrame(
        {
            "colour": rng.choice(["red", "green", "mauve", None], n).tolist(),  # mauve: off-domain
            "size": rng.choice(["S", "M"], n).tolist(),
            "flag": rng.random(n) < 0.3,
            "score": np.where(rng.random(n) < 0.1, None, rng.normal(50, 10, n)).tolist(),
            "visits": rng.integers(0, 20, n),
            "when": [datetime(2020, 1, 1 + int(d)) for d in rng.integers(0, 28, n)],
        }
    )
    schema = Schema(
        domain="public",
        columns=[
            Column(
                name="colour",
                kind=ColumnKind.CATEGORICAL,
                nullable=True,
                categories=("red", "green", "blue"),
            ),  # blue never occurs
            Column(name="size", kind=ColumnKind.CATEGORICAL, categories=("S", "M", "L")),
            Column(name="flag", kind=ColumnKind.BOOLEAN),
            Column(name="score", kind=ColumnKind.CONTINUOUS, nullable=True, bounds=(0.0, 100.0)),
            Column(name="visits", kind=ColumnKind.INTEGER, bounds=(0, 30)),
            Column(
                name="when",
                kind=ColumnKind.DATETIME,
                bounds=(datetime(2020, 1, 1), datetime(2020, 2, 1)),
            ),
        ],
    )
    return Table.from_frame(frame, schema, name="mixed")


def _whole_table_counts(
    encoded: torch.Tensor, encoder: CTGANEncoder, focus: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """The counts as first written: float64 one-hot group matrices of the whole table."""
    onehots = {}
    for g in encoder.groups:
        to_group = torch.zeros(g.span.width, g.n_groups, dtype=torch.float64)
        to_group[torch.arange(g.span.width), torch.tensor(g.group_of_slot)] = 1.0
        onehots[g.column] = encoded[:, g.span.start : g.span.end].double() @ to_group
    pairs = focus_pairs(list(onehots), focus)
    return (
        {c: m.sum(dim=0).numpy() for c, m in onehots.items()},
        {(f, o): (onehots[f].T @ onehots[o]).numpy() for f, o in pairs},
    )


@pytest.mark.parametrize("which", ["adult", "mixed"])
def test_chunked_marginal_counts_equal_the_whole_table_counts(
    adult_small: Table, which: str
) -> None:
    table = adult_small if which == "adult" else _mixed_table()  # mixed: nulls, off-domain
    focus = ("income", "gender") if which == "adult" else ("colour", "score")
    encoder = make_encoder(table.schema, DPCTGANParams(**TINY))
    encoded = torch.from_numpy(encoder.encode(table.frame))
    one_way, two_way = _whole_table_counts(encoded, encoder, focus)
    assert len(two_way) >= len(table.schema.names)  # the focus pairs are really there
    source = BatchSource(table.frame, encoder, torch.device("cpu"), max_encoded_bytes=0)
    for chunks in ([encoded], source.chunks(137), source.chunks(7)):
        counts = count_marginals(chunks, encoder, table.schema.names, focus)
        assert counts.one_way.keys() == one_way.keys()
        assert counts.two_way.keys() == two_way.keys()
        for name, expected in one_way.items():
            assert counts.one_way[name].dtype == np.int64
            np.testing.assert_array_equal(counts.one_way[name], expected)
        for pair, expected in two_way.items():
            np.testing.assert_array_equal(counts.two_way[pair], expected)
    # the release's own pass (Table.reduce of the frame, encoded in chunks): the same counts
    for rows in (None, 137):
        fn = partial(
            marginal_count_arrays,
            encoder=encoder,
            columns=table.schema.names,
            focus=focus,
            chunk_rows=rows,
        )
        arrays = list(table.reduce(fn).values())
        assert len(arrays) == len(one_way) + len(two_way)
        for got, expected in zip(arrays, [*one_way.values(), *two_way.values()], strict=True):
            np.testing.assert_array_equal(got, expected)
    counts = exact_marginals(table, encoder, table.schema.names, focus)
    for name, expected in one_way.items():
        np.testing.assert_array_equal(counts.one_way[name], expected)
    for pair, expected in two_way.items():
        np.testing.assert_array_equal(counts.two_way[pair], expected)
    full = "income" if which == "adult" else "size"  # not nullable, always in the domain
    assert counts.one_way[full].sum() == table.n_rows  # every row counted once
    if which == "mixed":  # "mauve" is off-domain: conformed to null, counted in the null group
        assert counts.one_way["colour"][-1] == table.frame["colour"].null_count()


def test_fit_that_encodes_batch_by_batch_trains_and_samples(
    adult_raw: pl.DataFrame, ledger: PrivacyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path large tables take (no encoded copy of the table), forced on a small one."""
    monkeypatch.setattr(dpsgd, "ENCODED_TABLE_MAX_BYTES", 0)
    table = Table.from_frame(adult_raw.sample(3000, seed=2), adult_schema(), name="a3k")
    encoder = make_encoder(table.schema, DPCTGANParams(**TINY))
    assert not BatchSource(table.frame, encoder, torch.device("cpu")).holds_table
    generator, seen = _fit(
        table, ledger, PrivacyBudget(3.0, 1e-5), batch_size=300, epochs=2, focus_columns="income"
    )
    summary = generator.fit_summary
    assert summary is not None and summary.steps == 20 and [p.epoch for p in seen] == [1, 2]
    assert summary.extra["budget_split"]["marginal_tables"] > 0  # marginals counted by chunks
    out = generator.sample(2000, seed=0)
    assert out.height == 2000 and out.columns == table.schema.names
    assert set(out["income"]) <= set(table.frame["income"].unique())


_FIT_MEMORY = """
import ctypes, gc, os, tempfile
import torch
from privsynth_core import PrivacyBudget, PrivacyLedger
from privsynth_core.privacy import dpsgd
from privsynth_core.datasets import load_adult
from privsynth_plugins.dpctgan import DPCTGANGenerator

def high_water_mib():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024

def added_peak_mib(rows, epochs, keep_table):
    table = load_adult(rows)
    ledger.set_budget(table.fingerprint(), epsilon=100.0, delta=0.5)
    dpsgd.ENCODED_TABLE_MAX_BYTES = 2**40 if keep_table else 0
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := the current RSS
    before = high_water_mib()
    DPCTGANGenerator(**params, epochs=epochs).fit(
        table, budget=PrivacyBudget(3.0, 1e-5), ledger=ledger)
    return high_water_mib() - before

torch.set_num_threads(1)
dpsgd.CHUNK_MAX_BYTES = 2**22
ledger = PrivacyLedger(os.path.join(tempfile.mkdtemp(), "ledger.sqlite"))
params = dict(critic_dim="32,16", generator_dim="32", embedding_dim=8, device="cpu", seed=0,
              num_threads=1, batch_size=2000)
added_peak_mib(300, 1, False)  # imports, allocator arenas, torch's lazy state: not counted
# About 20 steps each: the allocator's warm-up grows with the steps taken, not the rows.
print(added_peak_mib(5_000, 8, False), added_peak_mib(40_000, 1, False),
      added_peak_mib(40_000, 1, True))
"""


@pytest.mark.skipif(
    not os.path.exists("/proc/self/clear_refs"),
    reason="needs Linux's resettable peak RSS (/proc/self/clear_refs)",
)
@pytest.mark.extended  # a memory check on a large table; bench/ measures memory too
def test_fit_memory_does_not_grow_with_the_table_on_the_batch_path() -> None:
    """Peak RSS added by a fit is measured for 5,000 and 40,000 Adult rows (same number of
    steps) on the batch path, and for 40,000 rows with the encoded table kept (the control: one
    float32 copy of 40,000 encoded rows is 56 MiB). The batch path must not grow with the
    table; the control shows the measurement sees a table-sized copy."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        # polars' jemalloc returns freed pages at once: steadier peaks between fits.
        "_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0",
    }
    out = subprocess.run(
        [sys.executable, "-c", _FIT_MEMORY], check=True, capture_output=True, text=True, env=env
    )
    small, large, kept = map(float, out.stdout.split())
    encoded_40k = 40_000 * make_encoder(adult_schema(), DPCTGANParams()).output_dim * 4 / 2**20
    assert encoded_40k > 50
    assert kept - small > 0.75 * encoded_40k, (small, large, kept)  # the copy is seen
    assert large - small < 20, (small, large, kept)  # and the batch path makes none


def test_output_holds_only_domain_values_with_the_schemas_dtypes(ledger: PrivacyLedger) -> None:
    table = _mixed_table()
    generator, _ = _fit(table, ledger, PrivacyBudget(5.0, 1e-5), batch_size=50, epochs=2)
    out = generator.sample(2000, seed=1)
    assert out.schema == pl.Schema(
        {
            "colour": pl.String,
            "size": pl.String,
            "flag": pl.Boolean,
            "score": pl.Float64,
            "visits": pl.Int64,
            "when": pl.Datetime("us"),
        }
    )
    assert set(out["colour"].drop_nulls()) <= {"red", "green", "blue"}  # never "mauve"
    assert set(out["size"]) <= {"S", "M", "L"} and out["size"].null_count() == 0
    assert out["flag"].null_count() == 0 and out["visits"].null_count() == 0
    assert out["visits"].min() >= 0 and out["visits"].max() <= 30
    score = out["score"].drop_nulls()
    assert score.min() >= 0.0 and score.max() <= 100.0
    assert datetime(2020, 1, 1) <= out["when"].min() and out["when"].max() <= datetime(2020, 2, 1)


def test_encoder_is_built_from_the_domain_and_round_trips(adult_small: Table) -> None:
    table = _mixed_table()
    encoder = CTGANEncoder(table.schema, numeric_bins=10, max_exact_values=40)
    assert encoder.numeric["visits"].exact and not encoder.numeric["score"].exact
    again = CTGANEncoder(table.schema, numeric_bins=10, max_exact_values=40)
    assert again.output_dim == encoder.output_dim  # nothing depends on data
    back = encoder.decode(encoder.encode(table.frame))
    for name in ("colour", "size", "flag", "visits"):
        assert back[name].equals(table.frame[name])
    assert back["score"].is_null().equals(table.frame["score"].is_null())
    diff = (back["score"] - table.frame["score"]).abs().drop_nulls()
    assert diff.max() < 1e-6  # bin + offset is exact up to float error
    adult = CTGANEncoder(adult_small.schema, numeric_bins=20, max_exact_values=100)
    assert adult.decode(adult.encode(adult_small.frame)).equals(adult_small.frame)


def test_dp_plan_matches_the_steps_a_fit_takes(adult_small: Table, ledger: PrivacyLedger) -> None:
    params = DPCTGANParams(**TINY, batch_size=250, epochs=2)
    assert DPCTGANGenerator.dp_plan(n_rows=1000, params=params) == (0.25, 8)
    generator, seen = _fit(adult_small, ledger, PrivacyBudget(4.0, 1e-5), batch_size=250, epochs=2)
    assert generator.fit_summary is not None and generator.fit_summary.steps == 8
    assert [p.epoch for p in seen] == [1, 2] and all(p.losses for p in seen)
    with pytest.raises(ConfigError, match="epochs is empty"):
        DPCTGANGenerator.dp_plan(n_rows=1000, params=DPCTGANParams(epochs=None))


def test_importing_the_plugins_loads_no_torch_or_sdv() -> None:
    code = (
        "import sys, privsynth_plugins.dpctgan, privsynth_plugins.ctgan_baseline; "
        "print(sorted(m for m in ('torch', 'opacus', 'sdv', 'ctgan') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
