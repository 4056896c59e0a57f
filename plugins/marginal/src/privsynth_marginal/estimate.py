"""Private-PGM (``mbi``) estimation: noisy marginals in, a graphical model out.

The only module that imports jax and mbi; it is imported when a model is fitted, never to list
plugins, load a saved model or sample from it.

After each estimate the model's potentials are copied out to numpy and calibrated on their
junction tree (:mod:`.junction`); every marginal the algorithms need (AIM's errors, the sampling
chain) is computed from that: exact, and without the jax compilation that each new marginal query
to mbi would cost (which is what makes public AIM take minutes and gigabytes on a 15-column
table).

jax is switched to 64-bit floats before mbi is first imported (mbi's advice for tables past
~100k rows), and XLA's CPU fusion emitters are turned off (see ``_XLA_FLAG``): both are
process-wide settings.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .junction import CalibratedTree, model_size_mb
from .sampler import SamplingChain, conditional


@dataclass(frozen=True)
class Measurement:
    """One noisy marginal: the columns (indices, ascending), the noisy counts and their noise."""

    clique: tuple[int, ...]
    noisy: np.ndarray
    sigma: float


# XLA's CPU fusion emitters make each compilation of mbi's estimator take about 1.5x the
# memory and time (measured: 809 -> 539 MiB peak, 11.0 -> 9.9 s on a 15-column model); without
# them the compiled program runs as fast here. Only set when jax has not started yet.
_XLA_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _mbi() -> Any:
    import os
    import sys

    if "jax" not in sys.modules and _XLA_FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_FLAG}".strip()
    import jax

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its import-time advice on jax settings
        import mbi
    return mbi


def release_compiled_programs() -> None:
    """Drop jax's compiled programs and hand the freed heap back to the system.

    Each estimate compiles programs for its own set of cliques (a new set every AIM round), so
    none is run again by a later estimate, yet jax keeps them all and glibc keeps the heap its
    compilations used. On census KDD's 42 columns (issue #18, ``python -m bench aim-wide``)
    the process grew by 300-500 MiB per round that way; with both released after each estimate
    it starts the next one back near its size before the first. ``malloc_trim`` is glibc's
    (Linux); elsewhere only the caches are dropped.
    """
    import ctypes
    import ctypes.util

    import jax

    jax.clear_caches()  # type: ignore[no-untyped-call]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


@dataclass(frozen=True)
class _Fitted:
    """What is kept of an estimate: its potentials (a warm start reads them) and total."""

    potentials: Any
    total: float


_LEAN: dict[str, Any] = {}


def lean_mirror_descent(mbi: Any) -> Any:
    """mbi's ``MirrorDescent`` without the marginal-oracle passes outside its loop.

    Its ``_init`` computes the initial marginals and loss and its ``_finalize`` the final
    marginals, each an eager run of message passing that compiles its own XLA program (16 s of
    a 70 s estimate on census KDD's 42 columns, issue #18). Nothing reads them: each step
    computes its marginals from the potentials again, and the model's marginals come from
    :mod:`.junction`. The iterates are the same (same step size, same line search).
    """
    if "class" not in _LEAN:
        import dataclasses

        import jax.numpy as jnp

        estimation = mbi.estimation

        @dataclasses.dataclass(frozen=True)
        class LeanMirrorDescent(estimation.MirrorDescent):  # type: ignore[misc,name-defined]
            def _init(  # type: ignore[no-untyped-def]
                self, domain, loss_fn, known_total, *, warm_start=None, constraints=()
            ):
                potentials = estimation._extract_potentials(warm_start, domain, loss_fn.cliques)
                lipschitz = loss_fn.lipschitz
                alpha = 2.0 / (lipschitz * known_total) if self.stepsize is None else self.stepsize
                # placeholders of the loop's own types: every step recomputes both
                mu = mbi.CliqueVector.zeros(domain, loss_fn.cliques)
                return estimation.MirrorDescentState(
                    mu, potentials, alpha, jnp.asarray(jnp.inf, dtype=jnp.float64)
                )

            def _finalize(self, state, known_total, constraints=()):  # type: ignore[no-untyped-def]
                return _Fitted(potentials=state.potentials, total=float(known_total))

        _LEAN["class"] = LeanMirrorDescent
    return _LEAN["class"]()


class PGMEstimator:
    """Fits a graphical model to noisy marginals over a fixed set of columns.

    Args:
        names: column names (the model's attributes), in schema order.
        sizes: cells per column.
    """

    def __init__(self, names: Sequence[str], sizes: Sequence[int]) -> None:
        self.mbi = _mbi()
        self.names = list(names)
        self.sizes = list(sizes)
        self.domain = self.mbi.Domain(self.names, self.sizes)
        self.estimator = lean_mirror_descent(self.mbi)
        self.model: Any = None
        self.tree: CalibratedTree | None = None
        self._drawing: list[int] = []

    def _attrs(self, clique: Sequence[int]) -> tuple[str, ...]:
        return tuple(self.names[i] for i in clique)

    def _calibrate(
        self, log_factors: list[tuple[tuple[int, ...], np.ndarray]], total: float
    ) -> None:
        jt = self.mbi.junction_tree
        index = {name: i for i, name in enumerate(self.names)}
        jtree, elimination = jt.make_junction_tree(
            self.domain, [self._attrs(a) for a, _ in log_factors]
        )
        # drawing in the reverse of the order that built this tree keeps every column's
        # conditional inside one of its cliques (see chain())
        self._drawing = [index[name] for name in list(elimination)[::-1]]

        def axes(clique: Sequence[str]) -> tuple[int, ...]:
            return tuple(sorted(index[name] for name in clique))

        self.tree = CalibratedTree(
            log_factors,
            [axes(c) for c in jtree.nodes],
            [(axes(c1), axes(c2)) for c1, c2 in jtree.edges],
            total,
        )

    def set_independent(self, one_way: Sequence[Measurement]) -> None:
        """A model of independent columns from noisy 1-way marginals (no estimation run)."""
        log_factors = []
        for m in one_way:
            clipped = np.clip(m.noisy, 0.0, None)
            probs = clipped / clipped.sum() if clipped.sum() > 0 else np.ones_like(clipped)
            with np.errstate(divide="ignore"):
                log_factors.append((m.clique, np.log(probs)))
        self._calibrate(log_factors, max(float(np.mean([m.noisy.sum() for m in one_way])), 1.0))

    def fit(self, measurements: Sequence[Measurement], iters: int, warm: bool = True) -> None:
        """Estimate the model (warm-started from the previous one when ``warm``)."""
        linear = [
            self.mbi.LinearMeasurement(m.noisy, self._attrs(m.clique), stddev=m.sigma)
            for m in measurements
        ]
        self.model = self.estimator.estimate(
            self.domain,
            linear,
            iters=iters,
            warm_start=self.model if warm and self.model is not None else None,
        )
        index = {name: i for i, name in enumerate(self.names)}
        log_factors = []
        for factor in self.model.potentials.tables.values():
            attrs = factor.domain.attributes
            order = sorted(range(len(attrs)), key=lambda k: index[attrs[k]])
            log_factors.append(
                (
                    tuple(index[attrs[k]] for k in order),
                    np.transpose(np.asarray(factor.values, dtype=np.float64), order),
                )
            )
        self._calibrate(log_factors, float(self.model.total))
        release_compiled_programs()

    def marginal(self, clique: Sequence[int]) -> np.ndarray:
        """The model's estimated counts on ``clique``, shape ``sizes[clique]`` in its order."""
        assert self.tree is not None, "no model yet"
        return self.tree.marginal(clique)

    def model_size_mb(self, cliques: Sequence[Sequence[int]]) -> float:
        """Megabytes of the junction tree a model over ``cliques`` would have (mbi's figure,
        see :func:`.junction.model_size_mb`)."""
        return model_size_mb(self.sizes, cliques)

    def chain(self) -> SamplingChain:
        """The model as a chain of conditional tables (see :mod:`.sampler`)."""
        assert self.tree is not None, "no model yet"
        cliques = [set(c) for c in self.tree.marginals]
        order: list[int] = []
        parents: list[list[int]] = []
        tables: list[np.ndarray] = []
        drawn: set[int] = set()
        for column in self._drawing:
            # in reverse elimination order, a column's earlier-drawn neighbours and the column
            # lie in one clique of the triangulated graph: its conditional is local
            neighbours = set().union(*[c for c in cliques if column in c]) & drawn
            own = self.marginal((column,))
            own = own / own.sum() if own.sum() > 0 else np.full(own.shape, 1.0 / own.size)
            parent_list = sorted(neighbours)
            order.append(column)
            parents.append(parent_list)
            tables.append(conditional(self.marginal((*parent_list, column)), own))
            drawn.add(column)
        return SamplingChain(order=order, parents=parents, tables=tables)
