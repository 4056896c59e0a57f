"""DP-SGD from a partitioned table (privsynth_core.privacy.dpsgd_spool): Poisson batches drawn
over every partition's rows without the table in one process.

What must hold: the spooled source hands training exactly the rows a one-file table of the same
rows would (the same global row numbers, the same encoded rows); the sampler over them includes
each row at rate q independently of every other, whichever partition it is in; the private
spool lives in a folder only its user can read and is gone when training ends or fails; and
DPWGAN, fitted from partitions, trains on exactly the batches the one-machine path would.

The sampler's draws come from the OS and cannot be seeded: its statistical assertions say how
many standard deviations they are from failing. Only the DPWGAN equivalence test replaces the
draws with seeded ones, to hand both paths the same row numbers (it says so).
"""

from __future__ import annotations

import math
import stat
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from partition_helpers import write_parts

from privsynth_core import InputFileError, PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_schema
from privsynth_core.encoding import TableEncoder
from privsynth_core.partitions import PartitionedTable
from privsynth_core.privacy import dpsgd
from privsynth_core.privacy.dpsgd import PoissonSampler
from privsynth_core.privacy.dpsgd_spool import SpooledBatchSource, SpooledRows, batch_source

CPU = torch.device("cpu")
#: rows per partition: uneven, and one partition with a header and no rows
SIZES = (1200, 0, 300, 1500)


@pytest.fixture
def tables(adult_raw: pl.DataFrame, tmp_path: Path) -> tuple[Table, PartitionedTable]:
    """The same 3,000 raw Adult rows as one table and as four partitions (in that order)."""
    frame = adult_raw.sample(sum(SIZES), seed=5)
    one = Table.from_frame(frame, adult_schema(), source="adult")
    parts = PartitionedTable.load(
        write_parts(frame, tmp_path / "parts", SIZES), adult_schema(), source="adult"
    )
    return one, parts


def test_spooled_rows_are_the_one_file_tables_rows_at_the_same_numbers(
    tables: tuple[Table, PartitionedTable], tmp_path: Path
) -> None:
    one, parts = tables
    encoder = TableEncoder(adult_schema())
    reference = torch.from_numpy(encoder.encode(one.frame))
    with SpooledRows(parts, directory=tmp_path) as spooled:
        source = SpooledBatchSource(spooled, encoder, CPU)
        assert not source.holds_table and source.n_rows == one.n_rows == parts.n_rows
        assert len(spooled.files) == 3  # the empty partition spools nothing
        rng = np.random.default_rng(0)
        sampler = PoissonSampler(source.n_rows, 0.05)
        indices = [sampler.draw() for _ in range(5)] + [
            rng.permutation(source.n_rows)[:41],  # unsorted, across partitions
            np.array([1199, 1200, 1499, 1500, 1199, 0, 2999]),  # both sides of every boundary
            np.array([], dtype=np.int64),  # an empty Poisson batch
        ]
        for index in indices:
            batch = source.get(index)
            assert batch.dtype == torch.float32 and batch.shape == (len(index), encoder.output_dim)
            assert torch.equal(batch, reference[torch.from_numpy(index.astype(np.int64))])
        assert spooled.rows(np.array([2, 1201])).equals(one.frame[[2, 1201]])
        assert pl.concat(spooled.frames(7)).equals(one.frame)
        for rows in (7, 1000, None):
            assert torch.equal(torch.cat(list(source.chunks(rows))), reference)
        with pytest.raises(IndexError, match="row numbers outside"):
            source.get(np.array([source.n_rows]))


def test_the_spool_is_readable_by_its_user_only_and_removed_after_training_or_failure(
    tables: tuple[Table, PartitionedTable], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, parts = tables
    encoder = TableEncoder(adult_schema())
    spools = tmp_path / "spools"
    spools.mkdir()
    written: dict[str, Any] = {}
    real_spool = PartitionedTable.spool

    def watched(self: PartitionedTable, folder: Path) -> list[tuple[Path, int]]:
        out = real_spool(self, folder)
        written.update(mode=stat.S_IMODE(folder.stat().st_mode), files=[p for p, _ in out])
        return out

    monkeypatch.setattr(PartitionedTable, "spool", watched)
    with batch_source(parts, encoder, CPU) as source:
        assert isinstance(source, SpooledBatchSource)
        # while written, the files sit in a folder only this user can read
        assert written["mode"] == 0o700 and len(written["files"]) == 3
        # then (Linux) each is held open and unlinked: the rows go with the process, even one
        # killed outright, and nothing of them is left under a name
        assert not any(p.exists() for p in written["files"])
        assert not source.spooled.folder.exists()
        assert source.spooled.rows(np.array([0, 2999])).equals(one.frame[[0, 2999]])
        assert len(source.spooled._descriptors) == 3
    assert not source.spooled.folder.exists()
    assert source.spooled._descriptors == []  # closed with the source
    # a partition changed after the table was loaded (and its size charged): refused, and the
    # rows spooled so far are removed
    first = sorted((tmp_path / "parts").iterdir())[0]
    changed = pl.read_parquet(first)
    changed.slice(1).write_parquet(first)
    with pytest.raises(InputFileError, match="changed while the fit was running"):
        SpooledRows(parts, directory=spools)
    assert list(spools.iterdir()) == []


def test_poisson_batches_include_every_row_at_rate_q_independently_across_partitions(
    tables: tuple[Table, PartitionedTable], tmp_path: Path
) -> None:
    _, parts = tables
    q, draws = 0.05, 600
    with SpooledRows(parts, directory=tmp_path) as source:
        sampler = PoissonSampler(source.n_rows, q)
        bounds = source.offsets
        sizes = np.diff(bounds)  # 1200, 300, 1500
        per_part = np.zeros((draws, sizes.size))
        hits = np.zeros(source.n_rows)
        for d in range(draws):
            index = sampler.draw()
            hits[index] += 1
            per_part[d] = np.bincount(
                np.searchsorted(bounds, index, side="right") - 1, minlength=sizes.size
            )[: sizes.size]
    # each partition's share of a batch is Binomial(n_p, q): its mean and its spread (a fixed
    # batch size would make the shares hypergeometric, less spread, and negatively correlated)
    for p, n_p in enumerate(sizes):
        sd = math.sqrt(n_p * q * (1 - q))
        assert abs(per_part[:, p].mean() - n_p * q) < 5 * sd / math.sqrt(draws)
        assert 0.8 * sd < per_part[:, p].std() < 1.2 * sd
    # independence across partitions: the shares are uncorrelated (|r| < 5 / sqrt(draws))
    for a, b in ((0, 1), (0, 2), (1, 2)):
        r = np.corrcoef(per_part[:, a], per_part[:, b])[0, 1]
        assert abs(r) < 5 / math.sqrt(draws), (a, b, r)
    # every row at rate q: over 600 draws a row is in Binomial(600, 0.05) batches (mean 30, sd
    # 5.3); the mean over 3,000 rows is within 5 sd of its own spread
    assert abs(hits.mean() - q * draws) < 5 * math.sqrt(q * (1 - q) * draws / source.n_rows)
    assert hits.min() > 0  # no row is left out (P[a row never drawn] = 0.95^600 = 4e-14)


#: Small on purpose: both paths fit each generator once.
TINY: dict[str, dict[str, Any]] = {
    "dpwgan": {
        "epochs": 1,
        "batch_size": 300,
        "generator_layers": "16:relu",
        "critic_layers": "16:leaky_relu",
        "latent_dim": 8,
        "n_critic": 2,
        "seed": 1,
    },
    "dpctgan": {
        "epochs": 1,
        "batch_size": 300,
        "generator_dim": [16],
        "critic_dim": [16],
        "embedding_dim": 8,
        "focus_columns": ["income"],
        "seed": 1,
    },
}


@pytest.mark.parametrize("generator_id", ["dpwgan", "dpctgan"])
def test_a_dpsgd_fit_from_partitions_reads_exactly_what_the_one_machine_fit_reads(
    generator_id: str,
    tables: tuple[Table, PartitionedTable],
    ledger: PrivacyLedger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privsynth_core.registry import generators
    from privsynth_plugins.dpctgan import _marginals
    from privsynth_plugins.dpctgan._model import DPCTGANTrainer
    from privsynth_plugins.dpwgan._model import DPWGANTrainer

    # Test only: seeded draws at a fixed rate, so that both paths are handed the same row
    # numbers (the real sampler's generator comes from the OS and cannot be seeded, and its
    # rate follows each fit's own released row count).
    draws: dict[str, Any] = {}

    def seeded_draw(self: PoissonSampler) -> np.ndarray:
        rng = draws["rng"]
        k = int(rng.binomial(self.n_rows, 0.1))
        return np.sort(rng.choice(self.n_rows, size=k, replace=False))

    seen: dict[str, list[Any]] = {}

    def recording(fn: Any) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            seen[draws["path"]].append(out.clone() if isinstance(out, torch.Tensor) else out)
            return out

        return record

    def recording_step(real: Any) -> Any:
        def step(self: Any, batch: torch.Tensor) -> float:
            seen[draws["path"]].append(batch.clone())
            return float(real(self, batch))

        return step

    monkeypatch.setattr(dpsgd.PoissonSampler, "draw", seeded_draw)
    for trainer in (DPWGANTrainer, DPCTGANTrainer):
        monkeypatch.setattr(trainer, "critic_step", recording_step(trainer.critic_step))
    # DP-CTGAN's exact counts (the trees of its numeric cells, its one- and two-way
    # histograms) are recorded; their noise is removed (test only) so that both fits derive
    # the same cells, encode rows alike and hand DP-SGD comparable batches.
    monkeypatch.setattr(_marginals, "exact_trees", recording(_marginals.exact_trees))
    monkeypatch.setattr(_marginals, "exact_marginals", recording(_marginals.exact_marginals))
    monkeypatch.setattr(_marginals, "noisy_trees", lambda trees, scale: trees)
    monkeypatch.setattr(_marginals, "discrete_gaussian", lambda counts, sigma: counts)
    ledger.set_budget("source:adult", epsilon=20.0, delta=1e-4)
    summaries = {}
    for path, table in zip(("one", "parts"), tables, strict=True):
        draws.update(rng=np.random.default_rng(7), path=path)
        seen[path] = []
        generator = generators().get(generator_id)(**TINY[generator_id])
        summaries[path] = generator.fit(
            table, budget=PrivacyBudget(2.0, 1e-5), ledger=ledger, run_id=path
        )
        assert generator.sample(50, seed=0).height == 50
    one, parts = seen["one"], seen["parts"]
    if generator_id == "dpctgan":  # the exact counts, then the batches
        trees_one, trees_parts = one.pop(0), parts.pop(0)
        # the binned numbers: fnlwgt, capital-gain, capital-loss
        assert trees_one.keys() == trees_parts.keys() and len(trees_one) == 3
        for name in trees_one:
            for a, b in zip(trees_one[name], trees_parts[name], strict=True):
                assert np.array_equal(a, b)
        counts_one, counts_parts = one.pop(0), parts.pop(0)
        assert counts_one.one_way.keys() == counts_parts.one_way.keys()
        assert counts_one.two_way.keys() == counts_parts.two_way.keys() != set()
        for name in counts_one.one_way:
            assert np.array_equal(counts_one.one_way[name], counts_parts.one_way[name])
        for pair in counts_one.two_way:
            assert np.array_equal(counts_one.two_way[pair], counts_parts.two_way[pair])
    # Each fit plans its steps from its own released row count n̂ (the two tables are two
    # extracts, so two releases): the step counts may differ by a step or two, and the batches
    # they share are the same rows.
    steps = min(len(one), len(parts))
    assert steps >= 10
    for a, b in zip(one[:steps], parts[:steps], strict=True):
        assert a.shape[0] > 0 and torch.equal(a, b)
    for summary in summaries.values():
        assert summary.private and 0 < summary.epsilon <= 2.0 and summary.steps > 0
    mechanisms = [e.mechanism for e in ledger.entries("source:adult")]
    assert mechanisms.count(f"{generator_id} training") == 2
