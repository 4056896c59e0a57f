"""Partitioned tables: read as parts, checked per part, counted in one pass with the same exact
counts as one machine, released by the same mechanism code, and fitted by ``independent`` from
those counts (issue #19)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from privsynth_core import (
    ConfigError,
    GeneratorError,
    InputFileError,
    PrivacyBudget,
    PrivacyLedger,
    SchemaError,
    Table,
)
from privsynth_core.datasets import adult_schema
from privsynth_core.partitions import (
    CountPlan,
    PartitionedTable,
    count_partitions,
    discover_partitions,
    is_partitioned,
    partition_rows,
    sample_partitions,
)
from privsynth_core.privacy import count as count_module
from privsynth_core.privacy import domain as domain_module
from privsynth_core.privacy.count import ensure_row_count
from privsynth_core.privacy.domain import (
    categories_from_counts,
    coarse_range_from_counts,
    quantile_from_counts,
    quantile_scores,
    quantile_selection,
)
from privsynth_core.privacy.histograms import (
    category_counts,
    column_histogram,
    grid_counts,
    magnitude_counts,
    numeric_values,
)
from privsynth_core.schema import Column, ColumnKind, Schema
from privsynth_core.validation import cast_column

BINS = 16
PLAN = CountPlan(histogram_bins=BINS, domain=True)


def _write_parts(frame: pl.DataFrame, directory: Path, parts: int, *, csv: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    size = -(-frame.height // parts)
    for i in range(parts):
        chunk = frame.slice(i * size, size)
        if csv:
            chunk.write_csv(directory / f"part-{i:03d}.csv")
        else:
            chunk.write_parquet(directory / f"part-{i:03d}.parquet")
    return directory


@pytest.fixture
def adult_3k(adult_raw: pl.DataFrame) -> pl.DataFrame:
    """3,000 raw Adult rows (text, as read from the CSV)."""
    return adult_raw.sample(3000, seed=3)


def _single_machine_counts(frame: pl.DataFrame) -> dict[str, object]:
    schema = adult_schema()
    table = Table.from_frame(frame, schema)
    hist = {c.name: column_histogram(table.frame[c.name], c, BINS) for c in schema.columns}
    mags, cats = {}, {}
    for col in schema.columns:
        series, _ = cast_column(frame[col.name], col)
        if col.kind is ColumnKind.CATEGORICAL:
            cats[col.name] = category_counts(series)
        elif col.kind is not ColumnKind.BOOLEAN:
            mags[col.name] = magnitude_counts(numeric_values(series, col.kind))
    return {"rows": table.n_rows, "hist": hist, "mags": mags, "cats": cats}


@pytest.mark.parametrize("csv", [False, True], ids=["parquet", "csv"])
def test_partitioned_counts_equal_the_single_machine_counts_exactly(
    adult_3k: pl.DataFrame, tmp_path: Path, csv: bool
) -> None:
    parts = _write_parts(adult_3k, tmp_path / "t", 4, csv=csv)
    with ThreadPoolExecutor(2) as pool:
        counts = count_partitions(parts, adult_schema(), plan=PLAN, executor=pool)
    single = _single_machine_counts(adult_3k)
    assert counts.raw_rows == 3000 and counts.rows == single["rows"]
    assert set(counts.histograms) == set(adult_schema().names)
    for name, vector in single["hist"].items():  # type: ignore[attr-defined]
        assert np.array_equal(counts.histograms[name], vector), name
    for name, vector in single["mags"].items():  # type: ignore[attr-defined]
        assert np.array_equal(counts.magnitudes[name], vector), name
    assert counts.categories == single["cats"]


def test_a_partitioned_table_counts_what_a_file_table_counts_for_independent(
    adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    # Table.column_histograms is what the independent generator noises; a partitioned table
    # answers the same call with the same function summed over its parts.
    table = Table.from_frame(adult_3k, adult_schema())
    parts = _write_parts(adult_3k, tmp_path / "t", 3)
    with ThreadPoolExecutor(2) as pool:
        partitioned = PartitionedTable.load(parts, adult_schema(), executor=pool)
        there = partitioned.column_histograms(BINS)
    here = table.column_histograms(BINS)
    assert partitioned.n_rows == table.n_rows and set(there) == set(here)
    for name, counts in here.items():
        assert np.array_equal(there[name], counts), name
    counted = count_partitions(parts, adult_schema(), plan=CountPlan(histogram_bins=BINS))
    assert partitioned.fingerprint() == counted.fingerprint
    with pytest.raises(GeneratorError, match="partitioned table"):
        _ = partitioned.frame


@pytest.mark.parametrize("numeric_cells", ["equal_width", "learned"])
def test_independent_fitted_from_partitions_is_the_one_machine_model(
    numeric_cells: str,
    adult_3k: pl.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ledger: PrivacyLedger,
) -> None:
    from privsynth_core.privacy.cells import column_grid, count_fine
    from privsynth_plugins import independent

    seen: list[tuple[np.ndarray, float]] = []
    real = independent.discrete_laplace

    def recording(counts: object, *, scale: float) -> np.ndarray:
        seen.append((np.asarray(counts).copy(), scale))
        return real(counts, scale=scale)

    monkeypatch.setattr(independent, "discrete_laplace", recording)
    ledger.set_budget("source:adult", epsilon=1e10, delta=1e-5)
    # epsilon 1e9 over 15 columns: noise of scale 1.5e-8 (times a tree's depth), zero but
    # with chance e^(-2e7)
    models = []
    single = Table.from_frame(adult_3k, adult_schema(), source="adult")
    partitioned = PartitionedTable.load(
        _write_parts(adult_3k, tmp_path / "t", 4), adult_schema(), source="adult"
    )
    for table in (single, partitioned):
        generator = independent.IndependentGenerator(bins=BINS, numeric_cells=numeric_cells)
        generator.fit(table, budget=PrivacyBudget(1e9, 0.0), ledger=ledger, run_id="r")
        models.append(generator._probabilities)
    calls = len(seen) // 2
    assert len(seen) == 2 * calls and calls >= len(adult_schema().columns)
    # the same noise function on the same exact counts, at the same scale, on both paths
    for (here, scale_here), (there, scale_there) in zip(seen[:calls], seen[calls:], strict=True):
        assert np.array_equal(here, there) and scale_here == scale_there
    assert models[0] == models[1]
    histograms = single.column_histograms(BINS)
    for col in adult_schema().columns:
        counts = histograms[col.name].astype(np.float64)
        if numeric_cells == "learned" and col.bounds is not None:
            grid = column_grid(col)
            fine = count_fine(single.frame, grids={col.name: grid}, schema=single.schema)
            counts = np.concatenate([fine[col.name], counts[-1:]]).astype(np.float64)
        if not col.nullable:
            counts[-1] = 0.0
        # at (almost) no noise, the model is the exact histogram (fine cells: the estimate
        # from the tree, whose shrinkage is noise-sized)
        assert np.allclose(models[1][col.name], counts / counts.sum(), rtol=0, atol=1e-6)
    # one row count and one training per fit, charged to the source
    mechanisms = [e.mechanism for e in ledger.entries("source:adult")]
    assert mechanisms.count("independent training") == 2


def test_a_generator_that_needs_a_frame_is_refused_a_partitioned_table_before_any_charge(
    adult_3k: pl.DataFrame, tmp_path: Path, ledger: PrivacyLedger
) -> None:
    from privsynth_core.service import create_generator, fit_generator

    ledger.set_budget("source:adult", epsilon=5.0, delta=1e-5)
    table = PartitionedTable.load(
        _write_parts(adult_3k, tmp_path / "t", 2), adult_schema(), source="adult"
    )
    with pytest.raises(
        ConfigError,
        match="generators that fit from partitions: (.*, )?dpctgan, dpwgan, (.*, )?independent",
    ):
        fit_generator(
            table,
            create_generator("ctgan", {}),
            epsilon=None,
            delta=None,
            ledger=ledger,
            run_id="r",
        )
    assert ledger.entries("source:adult") == []


def test_one_row_added_to_a_partition_moves_each_histogram_by_at_most_one(
    adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    schema = adult_schema()
    parts = _write_parts(adult_3k, tmp_path / "d", 3)
    middle = parts / "part-001.parquet"

    def grow(row: pl.DataFrame) -> tuple[int, dict[str, np.ndarray]]:
        pl.concat([pl.read_parquet(middle), row.select(adult_3k.columns)]).write_parquet(middle)
        table = PartitionedTable.load(parts, schema)
        return table.n_rows, table.column_histograms(BINS)

    start = PartitionedTable.load(parts, schema)
    rows, before = start.n_rows, start.column_histograms(BINS)
    # an ordinary row (kept): every histogram moves by exactly one count
    rows_plus, plus = grow(adult_3k.tail(1))
    assert rows_plus == rows + 1
    for name, counts in before.items():
        assert int(np.abs(plus[name] - counts).sum()) == 1, name
    # a row odd everywhere it can be (beyond the bounds, an unknown category, blanks)
    odd = {c: "" for c in adult_3k.columns}
    for col in schema.columns:
        if col.kind in (ColumnKind.INTEGER, ColumnKind.CONTINUOUS):
            odd[col.name] = "-1e15"
        elif col.kind is ColumnKind.CATEGORICAL:
            odd[col.name] = "a category nobody has"
    _, plus_odd = grow(pl.DataFrame([odd]))
    for name, counts in plus.items():
        assert int(np.abs(plus_odd[name] - counts).sum()) <= 1, name


def test_the_fingerprint_ignores_how_rows_are_split_and_sees_one_more_row(
    adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    schema = adult_schema()
    four = count_partitions(_write_parts(adult_3k, tmp_path / "a", 4), schema)
    shuffled = adult_3k.sample(fraction=1.0, shuffle=True, seed=9)
    seven = count_partitions(_write_parts(shuffled, tmp_path / "b", 7), schema)
    plus = count_partitions(
        _write_parts(pl.concat([adult_3k, adult_3k.head(1)]), tmp_path / "c", 4), schema
    )
    assert four.fingerprint == seven.fingerprint
    assert plus.fingerprint != four.fingerprint


def test_one_added_row_moves_every_count_vector_by_at_most_one(
    adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    # The neighbour: D plus one row that is odd everywhere it can be (out of every bound, an
    # unknown category, missing values), in a partition of its own.
    schema = adult_schema()
    base = _write_parts(adult_3k, tmp_path / "d", 3)
    odd = {c: "" for c in adult_3k.columns}
    for col in schema.columns:
        if col.kind in (ColumnKind.INTEGER, ColumnKind.CONTINUOUS):
            odd[col.name] = "1e15"
        elif col.kind is ColumnKind.CATEGORICAL:
            odd[col.name] = "a category nobody has"
    d = count_partitions(base, schema, plan=PLAN)
    pl.DataFrame([odd]).select(adult_3k.columns).write_parquet(base / "part-999.parquet")
    d_plus = count_partitions(base, schema, plan=PLAN)
    assert 0 <= d_plus.rows - d.rows <= 1
    for group in ("histograms", "magnitudes"):
        for name, vector in getattr(d, group).items():
            assert np.abs(getattr(d_plus, group)[name] - vector).sum() <= 1, (group, name)
    for name, values in d.categories.items():
        after = d_plus.categories[name]
        assert (
            sum(abs(after.get(k, 0) - values.get(k, 0)) for k in set(after) | set(values)) <= 1
        ), name


def test_the_releases_go_through_the_same_noise_function_on_the_same_counts(
    adult_3k: pl.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ledger: PrivacyLedger,
) -> None:
    seen: list[np.ndarray] = []
    real = domain_module.discrete_laplace

    def recording(counts: object, *, scale: float) -> np.ndarray:
        seen.append(np.asarray(counts).copy())
        return real(counts, scale=scale)

    monkeypatch.setattr(domain_module, "discrete_laplace", recording)
    monkeypatch.setattr(count_module, "discrete_laplace", recording)
    counts = count_partitions(_write_parts(adult_3k, tmp_path / "t", 4), adult_schema(), plan=PLAN)
    age, _ = cast_column(adult_3k["age"], adult_schema().column("age"))
    domain_module.dp_coarse_range(numeric_values(age, ColumnKind.INTEGER), epsilon=1.0)
    coarse_range_from_counts(counts.magnitudes["age"], epsilon=1.0)
    assert np.array_equal(seen[0], seen[1])
    work, _ = cast_column(adult_3k["workclass"], adult_schema().column("workclass"))
    domain_module.dp_categories(work, epsilon=1.0, delta=1e-6)
    categories_from_counts(counts.categories["workclass"], epsilon=1.0, delta=1e-6)
    assert np.array_equal(seen[2], seen[3])
    # n̂: the row-count mechanism is handed the summed exact count
    ledger.set_budget("k", epsilon=1.0, delta=1e-5)
    ensure_row_count(ledger, "k", extract=counts.fingerprint, n_rows=counts.rows, run_id="r")
    assert seen[4].tolist() == [Table.from_frame(adult_3k, adult_schema()).n_rows]


def test_discovery_reads_directories_and_globs_and_skips_marker_files(
    adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    parts = _write_parts(adult_3k, tmp_path / "t" / "year=2020", 2)
    (parts / "_SUCCESS").write_text("")
    (parts / ".part-000.parquet.crc").write_text("x")
    assert is_partitioned(tmp_path / "t") and is_partitioned(f"{tmp_path}/t/*/*.parquet")
    assert not is_partitioned(parts / "part-000.parquet")
    odd_name = tmp_path / "extract[2020].csv"
    adult_3k.head(3).write_csv(odd_name)
    assert not is_partitioned(odd_name)
    assert [p.name for p in discover_partitions(tmp_path / "t")] == [
        "part-000.parquet",
        "part-001.parquet",
    ]
    assert len(discover_partitions(f"{tmp_path}/t/**/*.parquet")) == 2


def test_bad_partitioned_inputs_get_one_message_naming_the_file_never_a_value(
    adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    schema = adult_schema()
    with pytest.raises(InputFileError, match="no Parquet"):
        count_partitions(f"{tmp_path}/nothing-*.parquet", schema)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no Parquet"):
        count_partitions(tmp_path / "empty", schema)
    mixed = _write_parts(adult_3k, tmp_path / "mixed", 2)
    adult_3k.head(5).write_csv(mixed / "extra.csv")
    with pytest.raises(InputFileError, match="mixes Parquet and CSV"):
        count_partitions(mixed, schema)
    disagree = _write_parts(adult_3k, tmp_path / "disagree", 3)
    adult_3k.head(9).rename({"age": "years"}).write_parquet(disagree / "part-001.parquet")
    with pytest.raises(InputFileError, match="part-001.parquet lacks age; has extra years"):
        count_partitions(disagree, schema)
    lacking = _write_parts(adult_3k.drop("age"), tmp_path / "lacking", 2)
    with pytest.raises(
        SchemaError,
        match=r"part-000.parquet.*lacks column\(s\) of the schema: "
        r"age",
    ):
        count_partitions(lacking, schema)
    broken = _write_parts(adult_3k, tmp_path / "broken", 2)
    (broken / "part-001.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(InputFileError, match="part-001.parquet") as caught:
        count_partitions(broken, schema)
    assert "Traceback" not in str(caught.value)
    secret = adult_3k["native-country"][0]
    assert secret not in str(caught.value)


def test_the_evaluation_sample_is_uniform_over_the_partitions_and_of_the_stated_size(
    tmp_path: Path,
) -> None:
    frame = pl.DataFrame({"id": list(range(40)), "x": ["v"] * 40})
    small = tmp_path / "s"
    small.mkdir()
    frame.head(10).write_parquet(small / "a.parquet")
    frame.tail(30).write_parquet(small / "b.parquet")
    files, rows = [str(small / "a.parquet"), str(small / "b.parquet")], [10, 30]
    from_first = []
    for seed in range(200):
        sample = sample_partitions(files, rows, 8, columns=["id", "x"], seed=seed)
        assert sample.height == 8 and sample["id"].n_unique() == 8
        from_first.append(int((sample["id"] < 10).sum()))
    # hypergeometric mean 8 * 10 / 40 = 2, sd about 1.1: the mean of 200 draws is within 0.25
    assert abs(np.mean(from_first) - 2.0) < 0.25
    assert sample_partitions(files, rows, 100, columns=["x", "id"], seed=0).height == 40


def test_dp_quantile_scores_from_grid_counts_are_opendps_and_the_selection_is_epsilon_dp() -> None:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    rng = np.random.default_rng(5)
    grid = np.linspace(-3.0, 5.0, 41)
    # values between candidates and on them (ties), clipped to the grid's span as dp_quantile
    values = np.clip(np.concatenate([rng.normal(size=400), rng.choice(grid, 100)]), -3.0, 5.0)
    counts = grid_counts(values, grid)
    assert counts.sum() == values.size and counts.size == 2 * grid.size - 1
    for alpha in (0.01, 0.99, 0.5, 0.3):
        scorer = dp.t.make_quantile_score_candidates(
            dp.vector_domain(dp.atom_domain(T=float, nan=False)),
            dp.symmetric_distance(),
            candidates=grid.tolist(),
            alpha=alpha,
        )
        numerator, denominator, select = quantile_selection(grid, alpha, epsilon=0.7)
        scores = quantile_scores(counts, numerator=numerator, denominator=denominator)
        assert scores == list(scorer(values.tolist())), alpha
        # the selection after OpenDP's own transformation is 0.7-DP, to OpenDP's rounding
        assert 0.7 * (1 - 1e-9) <= (scorer >> select).map(1) <= 0.7
        # with noise of no weight it picks a best-scored candidate
        best = quantile_from_counts(counts, alpha, candidates=grid, epsilon=1e9)
        assert scores[int(np.flatnonzero(grid == best)[0])] == min(scores), alpha


def test_the_dp_domain_learned_from_partitions_is_the_one_machine_domain(
    tmp_path: Path, ledger: PrivacyLedger
) -> None:
    rng = np.random.default_rng(11)
    frame = pl.DataFrame(
        {
            "n": rng.integers(0, 200, 3000).astype(str),
            "c": rng.choice(["a", "b", "c", "rare"], 3000, p=[0.5, 0.3, 0.1999, 0.0001]),
            "f": rng.integers(0, 2, 3000).astype(bool).astype(str),
        }
    )
    skeleton = Schema(
        domain="public",
        columns=(
            Column(name="n", kind=ColumnKind.INTEGER, bounds=(0, 1)),
            Column(name="c", kind=ColumnKind.CATEGORICAL, categories=("a",)),
            Column(name="f", kind=ColumnKind.BOOLEAN),
        ),
    )
    ledger.set_budget("one", epsilon=1e8, delta=1e-3)
    ledger.set_budget("parts", epsilon=1e8, delta=1e-3)
    # epsilon of no weight: each mechanism gives its best answer on both sides (the integer
    # column is dense, so its best quantiles round to the same whole numbers)
    here = domain_module.learn_domain(
        frame, skeleton, epsilon=1e7, delta=1e-4, ledger=ledger, fingerprint="one"
    )
    with ThreadPoolExecutor(2) as pool:
        there = domain_module.learn_domain_from_partitions(
            _write_parts(frame, tmp_path / "t", 3),
            skeleton,
            epsilon=1e7,
            delta=1e-4,
            ledger=ledger,
            fingerprint="parts",
            executor=pool,
        )
    assert there == here and there.domain == "dp"
    assert there.column("c").categories == ("a", "b", "c")
    lower, upper = there.column("n").bounds  # type: ignore[misc]
    assert 0 <= lower <= 3 and 196 <= upper <= 199
    # the same mechanisms charged the same way
    assert [(e.mechanism, e.epsilon, e.delta) for e in ledger.entries("parts")] == [
        (e.mechanism, e.epsilon, e.delta) for e in ledger.entries("one")
    ]


def test_a_partition_changed_after_its_budget_key_was_read_charges_nothing(
    adult_3k: pl.DataFrame, tmp_path: Path, ledger: PrivacyLedger
) -> None:
    # The run derives the budget key from one read of the partitions and the domain learns
    # from another: one person added in between must not be charged to the old table's key.
    parts = _write_parts(adult_3k, tmp_path / "k", 3)
    skeleton = Schema(
        domain="public", columns=(Column(name="age", kind=ColumnKind.INTEGER, bounds=(0, 1)),)
    )
    extract = count_partitions(parts, skeleton).fingerprint
    ledger.set_budget("key", epsilon=10.0, delta=1e-3)
    added = pl.concat([pl.read_parquet(parts / "part-002.parquet"), adult_3k.head(1)])
    added.write_parquet(parts / "part-002.parquet")
    with pytest.raises(InputFileError, match="changed since the run read them"):
        domain_module.learn_domain_from_partitions(
            parts,
            skeleton,
            epsilon=1.0,
            delta=1e-4,
            ledger=ledger,
            fingerprint="key",
            extract=extract,
        )
    assert ledger.entries("key") == []  # nothing charged


def test_the_quantile_grid_counts_of_partitions_sum_and_move_by_one_with_a_row(
    adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    schema = adult_schema()
    parts = _write_parts(adult_3k, tmp_path / "q", 3)
    plan = CountPlan(quantile_ranges=(("age", 16.0, 128.0), ("hours-per-week", 0.0, 64.0)))
    counts = count_partitions(parts, schema, plan=plan).quantiles
    for name, lower, upper in plan.quantile_ranges:
        series, _ = cast_column(adult_3k[name], schema.column(name))
        values = np.clip(numeric_values(series, schema.column(name).kind), lower, upper)
        expected = grid_counts(values, np.linspace(lower, upper, domain_module.QUANTILE_GRID))
        assert np.array_equal(counts[name], expected), name
    adult_3k.head(1).write_parquet(parts / "part-999.parquet")
    plus = count_partitions(parts, schema, plan=plan).quantiles
    for name, vector in counts.items():
        assert int(np.abs(plus[name] - vector).sum()) == 1, name


@pytest.mark.parametrize("csv", [False, True])
def test_a_partition_with_no_rows_adds_nothing_and_fails_nothing(
    csv: bool, adult_3k: pl.DataFrame, tmp_path: Path
) -> None:
    # Refusing a part with a header and no rows would make a run fail or not depending on
    # whether that part holds 0 rows or 1: a fact about the rows, told outside a mechanism.
    parts = _write_parts(adult_3k, tmp_path / "t", 3, csv=csv)
    empty = adult_3k.head(0)
    if csv:
        empty.write_csv(parts / "part-empty.csv")
    else:
        empty.write_parquet(parts / "part-empty.parquet")
    table = PartitionedTable.load(parts, adult_schema())
    here = Table.from_frame(adult_3k, adult_schema()).column_histograms(BINS)
    assert table.n_rows == 3000
    there = table.column_histograms(BINS)
    for name, counts in here.items():
        assert np.array_equal(there[name], counts), name
    assert partition_rows(table.files).count(0) == 1
    sample = sample_partitions(
        table.files, partition_rows(table.files), 50, columns=adult_schema().names, seed=1
    )
    assert sample.height == 50

    for part in parts.iterdir():
        part.unlink()
    for i in range(2):
        empty.write_parquet(parts / f"part-{i}.parquet")
    with pytest.raises(InputFileError, match="2 partition.* no data rows"):
        PartitionedTable.load(parts, adult_schema())
