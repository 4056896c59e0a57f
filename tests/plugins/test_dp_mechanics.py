"""DP-SGD mechanics checked directly, not trusted: clipping, noise, sampling, accounting, refusal.
(And the ``independent`` generator's noise: fresh on every fit, never seeded.)

Each check recomputes what the mechanism must have done from first principles (per-record
gradients by ``torch.func``, the accountant's own value) and compares it with what the training
code really did to the critic's parameters.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from privsynth_core import (
    AccountingError,
    ConfigError,
    PrivacyBudget,
    PrivacyLedger,
    Progress,
    Table,
)
from privsynth_core.encoding import TableEncoder
from privsynth_core.privacy.calibration import max_steps_for
from privsynth_core.privacy.dpsgd import PoissonSampler
from privsynth_core.registry import accountants
from privsynth_plugins.dpwgan import DPWGANGenerator, DPWGANParams
from privsynth_plugins.dpwgan._model import DPWGANTrainer, mlp
from privsynth_plugins.independent import IndependentGenerator, IndependentParams

TINY = {
    "critic_layers": "32:leaky_relu,16:elu",
    "generator_layers": "32:relu",
    "latent_dim": 8,
    "device": "cpu",
    "seed": 0,
}


def _clipped_sum(
    critic: nn.Module,
    params: dict[str, torch.Tensor],
    rows: torch.Tensor,
    sign: float,
    clip: float,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Sum of per-row gradients of ``sign * D(x)`` clipped to ``clip``; raw and clipped norms."""
    from torch.func import functional_call, grad, vmap

    def loss_one(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return sign * functional_call(critic, p, (x.unsqueeze(0),)).squeeze()

    per_row = vmap(grad(loss_one), in_dims=(None, 0))(params, rows)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_row.values()))
    factor = (clip / (norms + 1e-6)).clamp(max=1.0)
    clipped = {k: torch.einsum("i,i...->...", factor, g) for k, g in per_row.items()}
    return clipped, norms, norms * factor


def _step_and_check(
    trainer: DPWGANTrainer, real: torch.Tensor, params: DPWGANParams, sigma: float
) -> dict[str, torch.Tensor]:
    """Take one critic step; check it against an independent recomputation; return the noise."""
    clip = params.max_grad_norm
    named = list(trainer.critic._module.named_parameters())
    before = {k: p.detach().clone() for k, p in named}

    trainer.critic_step(real)

    plain = mlp(trainer.critic._module[0].in_features, params.critic_layers, 1)
    assert trainer.last_fake is not None
    assert len(trainer.last_fake) == round(trainer.expected_batch_size)
    fake_sum, _, fake_clipped = _clipped_sum(plain, before, trainer.last_fake, 1.0, clip)
    assert (fake_clipped <= clip * (1 + 1e-5)).all()
    total = fake_sum
    if len(real):
        real_sum, raw, clipped = _clipped_sum(plain, before, real, -1.0, clip)
        assert (clipped <= clip * (1 + 1e-5)).all()  # every record's gradient is bounded
        assert (raw > clip).float().mean() > 0.5  # and the bound really bites in this test
        total = {k: real_sum[k] + fake_sum[k] for k in total}
    ebs = trainer.expected_batch_size
    noises = {}
    for name, param in named:
        # What Opacus summed is exactly the clipped per-row sum: no unclipped real gradient.
        torch.testing.assert_close(param.summed_grad, total[name], rtol=1e-4, atol=1e-5)
        # The update used (clipped sum + noise) / (q n), nothing else.
        noise = param.grad * ebs - param.summed_grad
        assert noise.shape == param.shape
        noises[name] = noise
        if noise.numel() >= 500:
            assert noise.std().item() == pytest.approx(sigma * clip, rel=0.12)
            assert abs(noise.mean().item()) < 4 * sigma * clip / math.sqrt(noise.numel())
        else:
            assert (noise.abs() > 0).all()
            assert noise.abs().max().item() < 6 * sigma * clip
    # Weight clipping after the step.
    for param in trainer.critic_params:
        assert param.abs().max().item() <= params.weight_clip * (1 + 1e-6)  # float32
    return noises


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_critic_step_is_clipped_sum_plus_noise_of_each_parameters_shape(
    adult_small: Table, mode: str
) -> None:
    torch.manual_seed(0)
    encoder = TableEncoder(adult_small.schema)
    sigma, n = 1.3, adult_small.n_rows
    params = DPWGANParams(**TINY, max_grad_norm=0.05, grad_sample_mode=mode)
    trainer = DPWGANTrainer(
        encoder,
        params,
        n_rows=n,
        noise_multiplier=sigma,
        sample_rate=0.2,
        device=torch.device("cpu"),
    )
    index = PoissonSampler(n, 0.2).draw()
    real = torch.from_numpy(encoder.encode(adult_small.frame[index]))
    noises = _step_and_check(trainer, real, params, sigma)
    # Independent draws per parameter (not one tensor reused or broadcast).
    biases = [v for k, v in noises.items() if k.endswith("bias")]
    assert all(not torch.allclose(a[: len(b)], b[: len(a)]) for a, b in itertools.pairwise(biases))


def test_empty_poisson_batch_still_releases_noise(adult_small: Table) -> None:
    encoder = TableEncoder(adult_small.schema)
    params = DPWGANParams(**{**TINY, "critic_layers": "256:relu"}, max_grad_norm=0.5)
    trainer = DPWGANTrainer(
        encoder,
        params,
        n_rows=1000,
        noise_multiplier=2.0,
        sample_rate=0.01,
        device=torch.device("cpu"),
    )
    _step_and_check(trainer, torch.zeros((0, encoder.output_dim)), params, 2.0)


def test_critic_has_no_batchnorm_and_only_linear_activation_dropout(adult_small: Table) -> None:
    encoder = TableEncoder(adult_small.schema)
    params = DPWGANParams(**{**TINY, "critic_layers": "64:gelu:0.2,32:tanh"})
    trainer = DPWGANTrainer(
        encoder,
        params,
        n_rows=1000,
        noise_multiplier=1.0,
        sample_rate=0.1,
        device=torch.device("cpu"),
    )
    kinds = {type(m) for m in trainer.critic._module.modules()}
    assert kinds <= {nn.Sequential, nn.Linear, nn.GELU, nn.Tanh, nn.Dropout}
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in trainer.critic.modules())


def test_sampler_is_poisson_over_the_whole_table() -> None:
    n, q, draws = 2000, 0.05, 400
    sampler = PoissonSampler(n, q)
    batches = [sampler.draw() for _ in range(draws)]
    sizes = np.array([len(b) for b in batches])
    expected_sd = math.sqrt(n * q * (1 - q))
    assert abs(sizes.mean() - n * q) < 4 * expected_sd / math.sqrt(draws)
    assert 0.75 * expected_sd < sizes.std() < 1.25 * expected_sd  # sizes vary as Binomial(n, q)
    counts = np.bincount(np.concatenate(batches), minlength=n)
    assert counts.mean() == pytest.approx(q * draws, rel=0.05)  # every row, rate q
    assert counts.min() > 0 and (counts > 0).all()  # the whole table, not a fixed subset
    assert all(len(np.unique(b)) == len(b) for b in batches)  # no repeats within a batch
    # Not a shuffled partition: consecutive batches overlap as independent draws do.
    overlaps = [len(np.intersect1d(a, b)) for a, b in itertools.pairwise(batches)]
    assert np.mean(overlaps) == pytest.approx(n * q * q, rel=0.3)
    # Secret randomness: two samplers built the same way draw different batches.
    assert not np.array_equal(PoissonSampler(n, q).draw(), PoissonSampler(n, q).draw())


def _fit(
    table: Table, ledger: PrivacyLedger, budget: PrivacyBudget, accountant: str, **params: object
) -> tuple[DPWGANGenerator, list[Progress]]:
    ledger.set_budget(table.fingerprint(), epsilon=20.0, delta=1e-3)
    generator = DPWGANGenerator(accountant=accountant, **{**TINY, **params})
    seen: list[Progress] = []
    generator.fit(table, budget=budget, ledger=ledger, progress=seen.append)
    return generator, seen


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_reported_epsilon_is_the_accountants_value_for_the_steps_taken(
    adult_small: Table, ledger: PrivacyLedger, accountant: str
) -> None:
    budget = PrivacyBudget(4.0, 1e-5)
    generator, seen = _fit(
        adult_small, ledger, budget, accountant, sigma=1.5, batch_size=100, epochs=40
    )
    summary = generator.fit_summary
    assert summary is not None
    acc = accountants().get(accountant)
    # The plan's sample rate comes from the released row count n̂, never the exact size.
    q = 100 / summary.noisy_rows
    assert summary.sample_rate == q
    allowed = max_steps_for(
        acc, target_epsilon=4.0, delta=1e-5, noise_multiplier=1.5, sample_rate=q
    )
    assert 0 < allowed < 400  # the budget ends the run early
    assert summary.stopped_early and summary.steps == allowed
    exact = acc.epsilon_for(noise_multiplier=1.5, sample_rate=q, steps=summary.steps, delta=1e-5)
    assert summary.epsilon == pytest.approx(exact, rel=1e-12)
    assert summary.epsilon <= budget.epsilon
    # Stopped *before* the step that would have passed the target.
    assert (
        acc.epsilon_for(noise_multiplier=1.5, sample_rate=q, steps=summary.steps + 1, delta=1e-5)
        > budget.epsilon
    )
    assert seen[-1].step == summary.steps and seen[-1].epsilon == pytest.approx(exact, rel=1e-12)
    assert [p.epsilon for p in seen] == sorted(p.epsilon for p in seen)
    count, entry = ledger.entries(adult_small.fingerprint())
    assert count.params["noisy_rows"] == summary.noisy_rows
    assert entry.status == "spent" and entry.epsilon == pytest.approx(summary.epsilon, rel=1e-12)
    assert entry.params["steps"] == summary.steps


def test_calibrated_sigma_spends_close_to_the_target(
    adult_small: Table, ledger: PrivacyLedger
) -> None:
    budget = PrivacyBudget(3.0, 1e-5)
    generator, _ = _fit(adult_small, ledger, budget, "rdp", batch_size=200, epochs=4)
    summary = generator.fit_summary
    assert summary is not None and summary.extra["noise_calibrated"]
    assert summary.noisy_rows is not None
    steps = 4 * max(1, round(summary.noisy_rows / 200))  # epochs x steps per epoch, from n̂
    assert summary.steps == steps and not summary.stopped_early
    assert 0.97 * budget.epsilon <= summary.epsilon <= budget.epsilon
    rdp = accountants().get("rdp")
    assert summary.epsilon == pytest.approx(
        rdp.epsilon_for(
            noise_multiplier=summary.noise_multiplier,
            sample_rate=200 / summary.noisy_rows,
            steps=steps,
            delta=1e-5,
        ),
        rel=1e-12,
    )


@pytest.mark.parametrize("sigma", [0.3, None])
def test_budget_that_allows_no_step_is_refused_before_the_training_is_reserved(
    adult_small: Table, ledger: PrivacyLedger, sigma: float | None
) -> None:
    ledger.set_budget(adult_small.fingerprint(), epsilon=1.0, delta=1e-3)
    generator = DPWGANGenerator(**TINY, sigma=sigma, batch_size=500)
    tiny = PrivacyBudget(1e-4 if sigma is None else 0.05, 1e-5)
    for _ in range(2):
        with pytest.raises(AccountingError, match="0 training steps|no noise multiplier") as info:
            generator.fit(adult_small, budget=tiny, ledger=ledger)
        assert "epsilon" in str(info.value)
    # Pricing the plan needed the released row count; it was charged once and reused, and
    # no training was reserved.
    [count] = ledger.entries(adult_small.fingerprint())
    assert count.mechanism == "noisy row count"
    assert ledger.status(adult_small.fingerprint()).spent.epsilon == count.epsilon
    assert not generator.is_fitted


# -- the independent generator: discrete Laplace histograms, never seeded -----------------------


def test_independent_fits_draw_fresh_noise(adult_small: Table, ledger: PrivacyLedger) -> None:
    """No parameter seeds the noise, so two fits of one table release different histograms.

    Each count gets discrete Laplace noise of scale 15 / epsilon = 15; the ~150 cells of two
    fits all agree with probability under (sum_k P(k)^2)^150 < 0.04^150.
    """
    ledger.set_budget(adult_small.fingerprint(), epsilon=10.0, delta=1e-5)
    fits = []
    for _ in range(2):
        generator = IndependentGenerator()
        summary = generator.fit(adult_small, budget=PrivacyBudget(1.0, 0.0), ledger=ledger)
        assert summary.extra["laplace_scale"] == pytest.approx(15 / 1.0)
        assert "discrete Laplace" in summary.extra["mechanism"]
        fits.append(generator._probabilities)
    assert fits[0].keys() == fits[1].keys()
    assert any(fits[0][c] != fits[1][c] for c in fits[0])
    assert sum(fits[0][c] != fits[1][c] for c in fits[0]) >= 10  # not one column by chance


def test_independent_refuses_a_noise_seed() -> None:
    with pytest.raises(ValidationError, match="seed"):
        IndependentParams(seed=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="seed"):
        IndependentGenerator(seed=1)
    assert "seed" not in IndependentParams.model_fields
