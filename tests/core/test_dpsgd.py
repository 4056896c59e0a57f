"""The shared DP-SGD pieces that are not DP mechanics: :class:`BatchSource`.

Both ways of serving rows (the whole table encoded once, or each batch encoded as it is drawn)
must hand training exactly the same rows, or the memory-saving path would train on other data.
(The Poisson sampler and the private critic are checked in ``tests/plugins``.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privsynth_core import Table
from privsynth_core.encoding import TableEncoder
from privsynth_core.privacy.dpsgd import (
    ENCODED_TABLE_MAX_BYTES,
    BatchSource,
    PoissonSampler,
    leave_seeded_phase,
    training_session,
)

CPU = torch.device("cpu")


def _sources(table: Table) -> tuple[BatchSource, BatchSource, TableEncoder]:
    encoder = TableEncoder(table.schema)
    whole = BatchSource(table.frame, encoder, CPU)
    batchwise = BatchSource(table.frame, encoder, CPU, max_encoded_bytes=0)
    return whole, batchwise, encoder


def test_batchwise_source_returns_the_same_rows_as_the_whole_table(adult_small: Table) -> None:
    whole, batchwise, encoder = _sources(adult_small)
    assert whole.holds_table and not batchwise.holds_table
    assert batchwise.data is None  # nothing of the table's size is kept
    reference = torch.from_numpy(encoder.encode(adult_small.frame))
    rng = np.random.default_rng(0)
    sampler = PoissonSampler(adult_small.n_rows, 0.05)
    indices = [sampler.draw() for _ in range(5)] + [
        rng.permutation(adult_small.n_rows)[:37],  # unsorted
        np.array([3, 3, 999, 0]),  # repeats and both ends
        np.array([], dtype=np.int64),  # an empty Poisson batch
    ]
    for index in indices:
        a, b = whole.get(index), batchwise.get(index)
        assert a.dtype == b.dtype == torch.float32 and a.shape == (len(index), encoder.output_dim)
        assert torch.equal(a, b)
        assert torch.equal(a, reference[torch.from_numpy(index.astype(np.int64))])


@pytest.mark.parametrize("rows", [7, 137, 1000, 5000, None])
def test_chunks_cover_the_table_in_order_either_way(adult_small: Table, rows: int | None) -> None:
    whole, batchwise, encoder = _sources(adult_small)
    reference = torch.from_numpy(encoder.encode(adult_small.frame))
    for source in (whole, batchwise):
        chunks = list(source.chunks(rows))
        size = rows if rows is not None else source.chunk_rows()
        assert all(len(c) <= size for c in chunks)
        assert torch.equal(torch.cat(chunks), reference)


def test_threshold_is_on_the_encoded_bytes(adult_small: Table) -> None:
    encoder = TableEncoder(adult_small.schema)
    exact = adult_small.n_rows * encoder.output_dim * 4
    assert BatchSource(adult_small.frame, encoder, CPU, max_encoded_bytes=exact).holds_table
    assert not BatchSource(adult_small.frame, encoder, CPU, max_encoded_bytes=exact - 1).holds_table
    # The default keeps a small table (1,000 Adult rows) whole.
    assert (
        exact <= ENCODED_TABLE_MAX_BYTES
        and BatchSource(adult_small.frame, encoder, CPU).holds_table
    )
    with pytest.raises(ValueError, match="chunk rows"):
        next(BatchSource(adult_small.frame, encoder, CPU).chunks(0))


def test_a_seed_fixes_the_initial_weights_but_no_draw_made_while_training() -> None:
    """A user seed may fix the initialisation; every draw after ``leave_seeded_phase`` (latents,
    dropout masks, Gumbel noise, conditions: their number can depend on the secret Poisson
    batch) comes from the OS, so a known seed cannot replay them."""
    device = torch.device("cpu")
    weights, draws = [], []
    for _ in range(2):
        with training_session(device, num_threads=1, seed=7):
            weights.append(torch.nn.Linear(4, 4).weight.detach().clone())
            leave_seeded_phase()
            draws.append(torch.randn(8))
    assert torch.equal(weights[0], weights[1])  # the seed still fixes the initial weights
    assert not torch.equal(draws[0], draws[1])  # ... and nothing drawn while training
