"""DP-SGD batches from a partitioned table, without the table in one process's memory.

DP-SGD's Poisson sampling (:class:`~privsynth_core.privacy.dpsgd.PoissonSampler`: each row in a
batch independently with rate q, drawn as ``k ~ Binomial(n, q)`` and a uniform ``k``-subset of
the row numbers) needs random access to every row, every step. A partitioned table
(:class:`~privsynth_core.partitions.PartitionedTable`) keeps its rows in Parquet or CSV files,
which cannot be read row by row. So :class:`SpooledRows` first copies the conformed rows,
one partition at a time, into uncompressed Arrow IPC files in a private temporary folder of the
training process (:meth:`PartitionedTable.spool
<privsynth_core.partitions.PartitionedTable.spool>`); each batch is then gathered from those
files memory-mapped, one partition's file at a time, and encoded
(:class:`SpooledBatchSource`). The process holds one batch, never the table: a map is closed as
soon as its rows are copied out.

The sampling is unchanged: the same sampler draws over the global row numbers ``0 .. n - 1``
(the partitions' rows one after another), so every row is in a batch with probability q,
independently of every other, whichever file it sits in. Nothing here is released: the files
hold private rows; on Linux they are unlinked as soon as they are held open (so they go with the
process, however it ends), elsewhere removed when training ends or fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from .dpsgd import BatchSource, RowEncoder, chunk_size

if TYPE_CHECKING:
    import torch

    from ..partitions import PartitionedTable
    from ..table import Table


#: Where Linux serves a process's open files by path (mapped after their names are unlinked).
_PROC_FD = Path("/proc/self/fd")


class SpooledRows:
    """A partitioned table's conformed rows spooled to local Arrow IPC files, read by row
    number through memory maps (:meth:`rows`) or in consecutive slices (:meth:`frames`).

    Use it as a context manager (or call :meth:`close`): the spool folder is removed on exit.
    Where the system gives a process its open files by path (Linux: ``/proc/self/fd``), each
    file is opened and then unlinked as soon as it is written: the rows are reachable only
    through this process's descriptors and disappear with it, even when it is killed outright.

    Args:
        table: the partitioned table (checked, while spooling, to hold the rows it was loaded
            with).
        directory: where to make the private spool folder (default: the system's temporary
            folder, ``TMPDIR``); it needs room for the conformed table.
    """

    def __init__(self, table: PartitionedTable, *, directory: str | Path | None = None) -> None:
        # mkdtemp makes the folder readable by this user only (0700): it will hold private rows
        self.folder = Path(tempfile.mkdtemp(prefix="privsynth-rows-", dir=directory))
        self._descriptors: list[int] = []
        try:
            spooled = table.spool(self.folder)
            #: the files' paths, as mapped for each gather
            self.files = [self._hold(path) for path, _ in spooled]
        except BaseException:
            self.close()
            raise
        if self._descriptors:
            self.folder.rmdir()  # empty: every file is held open and unlinked
        sizes = np.array([rows for _, rows in spooled], dtype=np.int64)
        #: where each file's rows start in the global row numbers (and, last, ``n_rows``)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        #: **Private**: the true number of rows, for the Poisson sampler inside the mechanism.
        self.n_rows = int(self.offsets[-1])

    def __enter__(self) -> SpooledRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _hold(self, path: Path) -> Path:
        """The path to map ``path`` by from now on: through an open descriptor, the file
        itself unlinked, where ``/proc/self/fd`` serves it; else the file itself."""
        if not _PROC_FD.is_dir():
            return path
        descriptor = os.open(path, os.O_RDONLY)
        self._descriptors.append(descriptor)
        path.unlink()
        return _PROC_FD / str(descriptor)

    def close(self) -> None:
        """Let go of the rows: close the descriptors and remove the spool folder."""
        while self._descriptors:
            os.close(self._descriptors.pop())
        shutil.rmtree(self.folder, ignore_errors=True)

    def _take(self, i: int, local: npt.NDArray[np.int64]) -> pl.DataFrame:
        """Rows ``local`` (increasing) of file ``i``, read through a memory map: a gather
        touches only the pages of the rows it takes, and the map is closed after."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        with pa.memory_map(str(self.files[i])) as mapped:
            reader = ipc.open_file(mapped)
            # record batch by record batch: Arrow's take on one batch is ~50x faster than on
            # the file's chunked table
            pieces, start = [], 0
            for b in range(reader.num_record_batches):
                batch = reader.get_batch(b)
                lo, hi = np.searchsorted(local, [start, start + batch.num_rows])
                if hi > lo:
                    pieces.append(batch.take(pa.array(local[lo:hi] - start)))
                start += batch.num_rows
            taken = pa.Table.from_batches(pieces, schema=reader.schema)
            # a copy out of the map (polars keeps the Enum and datetime types it wrote)
            frame = pl.from_arrow(taken, rechunk=True)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def rows(self, index: npt.NDArray[np.integer[Any]]) -> pl.DataFrame:
        """The conformed rows at ``index`` (global row numbers), in that order.

        Raises:
            IndexError: a row number outside ``[0, n_rows)``.
        """
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.n_rows):
            raise IndexError("row numbers outside the spooled rows")  # (n is private)
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        part = np.searchsorted(self.offsets, ordered, side="right") - 1
        pieces = [self._take(int(i), ordered[part == i] - self.offsets[i]) for i in np.unique(part)]
        if not pieces:
            return self._take(0, np.zeros(0, dtype=np.int64)) if self.files else pl.DataFrame()
        gathered = pl.concat(pieces, how="vertical", rechunk=True)
        return gathered[np.argsort(order, kind="stable")]

    def frames(self, rows: int) -> Iterator[pl.DataFrame]:
        """Every row, file by file, in consecutive frames of at most ``rows`` rows.

        Raises:
            ValueError: ``rows`` is below 1.
        """
        if rows < 1:
            raise ValueError(f"rows per frame must be >= 1, got {rows}")
        for i, size in enumerate(np.diff(self.offsets)):
            for start in range(0, int(size), rows):
                yield self._take(i, np.arange(start, min(start + rows, int(size))))


class SpooledBatchSource:
    """:class:`~privsynth_core.privacy.dpsgd.BatchSource`'s interface (``n_rows``, ``get``,
    ``chunks``) over :class:`SpooledRows`: each batch gathered, then encoded.

    Args:
        rows: the spooled rows (their owner removes them).
        encoder: turns rows into float32 vectors.
        device: where the returned tensors live.
    """

    holds_table = False

    def __init__(self, rows: SpooledRows, encoder: RowEncoder, device: torch.device) -> None:
        self.spooled, self.encoder, self.device = rows, encoder, device
        #: **Private**: the true number of rows, for the Poisson sampler inside the mechanism.
        self.n_rows = rows.n_rows

    def get(self, index: npt.NDArray[np.integer[Any]]) -> torch.Tensor:
        """The encoded rows at ``index`` (global row numbers), in that order."""
        import torch

        encoded = self.encoder.encode(self.spooled.rows(index))
        return torch.from_numpy(encoded.reshape(-1, self.encoder.output_dim)).to(self.device)

    def chunk_rows(self) -> int:
        """Rows per chunk of :meth:`chunks` by default (about ``CHUNK_MAX_BYTES`` encoded)."""
        return chunk_size(self.encoder, None)

    def chunks(self, rows: int | None = None) -> Iterator[torch.Tensor]:
        """The whole table encoded, file by file, in chunks of at most ``rows`` rows.

        Raises:
            ValueError: ``rows`` is below 1.
        """
        import torch

        for frame in self.spooled.frames(chunk_size(self.encoder, rows)):
            yield torch.from_numpy(self.encoder.encode(frame)).to(self.device)


@contextmanager
def spooled_rows(table: Table) -> Iterator[SpooledRows | None]:
    """The rows of a partitioned table spooled for DP-SGD (removed when the block ends); None
    for a one-file table, whose frame already is its rows."""
    if not table.partitioned:
        yield None
        return
    from ..partitions import PartitionedTable

    assert isinstance(table, PartitionedTable)
    with SpooledRows(table) as rows:
        yield rows


@contextmanager
def batch_source(
    table: Table,
    encoder: RowEncoder,
    device: torch.device,
    *,
    max_encoded_bytes: int | None = None,
) -> Iterator[BatchSource | SpooledBatchSource]:
    """The rows DP-SGD draws its batches from: the table's frame (:class:`BatchSource`), or,
    for a partitioned table, its rows spooled to local files (:class:`SpooledBatchSource`,
    removed when the block ends)."""
    with spooled_rows(table) as spooled:
        if spooled is not None:
            yield SpooledBatchSource(spooled, encoder, device)
        else:
            yield BatchSource(table.frame, encoder, device, max_encoded_bytes=max_encoded_bytes)


__all__ = ["SpooledBatchSource", "SpooledRows", "batch_source", "spooled_rows"]
