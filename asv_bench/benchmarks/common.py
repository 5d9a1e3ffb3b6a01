"""Datasets and peers shared by every benchmark.

Datasets
    ``CASES`` names each input: shape, reduced axis, seed.  Data is built lazily on
    first use, once per process (asv runs every benchmark and parameter set in its
    own process), from a fixed seed, and handed out read-only.  **Append only**:
    never edit an existing entry (shape, axis, seed or the way values are drawn),
    add a new name instead, so results stay comparable across history.

Masks
    ``mask(case)``: a causal-style ``where=`` mask for a 2-D dataset (row ``i`` of
    ``R`` keeps its first ``ceil((i + 1) * C / R)`` of ``C`` elements: from one
    element to all, about half overall), built like the datasets.

Peers
    ``IMPLS[op][peer]`` (from ``fastlse.bench.peers``, shared with ``python -m
    fastlse``) builds a zero-argument callable computing
    ``op`` on one dataset; conversions (torch tensors, jax device arrays,
    ``jax.jit``) happen there, outside the timed call.  ``prepare`` builds it once
    per process and calls it once (compilation, thread-pool start), so no first-call
    cost is ever timed, and raises ``NotImplementedError`` (asv: skipped) for a peer that is not
    installed; scipy, torch and jax are optional.  Benchmarks take the peer as a
    parameter, so each asv process imports and warms only the peer it times.
    torch runs on numba's thread count (``equal_threads``); jax keeps XLA's pool,
    which is all cores by default.
"""

from typing import NamedTuple

import numpy as np

from fastlse.bench import peers as _peers


class Case(NamedTuple):
    shape: tuple
    axis: int
    seed: int


#: name -> dataset.  APPEND ONLY (see the module docstring).
CASES = {
    "wide_4096x1000": Case((4096, 1000), -1, 1),
    "vocab_64x50257": Case((64, 50257), -1, 2),
    "tall_1e6x10": Case((1_000_000, 10), -1, 3),
    "row_1x1e7": Case((1, 10_000_000), -1, 4),
    "mid_64x1000x64_ax1": Case((64, 1000, 64), 1, 5),
}

#: small inputs (``bench_small``): the per-call cost, where planning and dispatch
#: are most of the time.  APPEND ONLY, like ``CASES``, and apart from it so the
#: large-data benchmarks keep their parameters.
SMALL_CASES = {
    "vec_10": Case((10,), -1, 6),
    "batch_32x10": Case((32, 10), -1, 7),
    "batch_128x100": Case((128, 100), -1, 8),
}

DTYPES = ["float32", "float64"]


def case_of(name):
    """The ``Case`` of a dataset name, large or small."""
    return CASES[name] if name in CASES else SMALL_CASES[name]


#: the datasets ``mask`` is defined for (2-D, reduced along the last axis)
MASK_CASES = ["wide_4096x1000", "vocab_64x50257"]

_DATA = {}
_PREPARED = {}


def clear_caches():
    """Forget every dataset and prepared callable (tests shrink ``CASES``)."""
    _DATA.clear()
    _PREPARED.clear()


def dataset(case, dtype):
    """``(x, axis)``: the named input, standard normal times 3, read-only."""
    key = ("x", case, dtype)
    if key not in _DATA:
        c = case_of(case)
        rng = np.random.default_rng(c.seed)
        x = (3.0 * rng.standard_normal(c.shape)).astype(dtype)
        x.flags.writeable = False
        _DATA[key] = x
    return _DATA[key], case_of(case).axis


def targets(case):
    """Integer class labels for ``case`` (its shape without the class axis), read-only."""
    key = ("y", case)
    if key not in _DATA:
        c = case_of(case)
        shape = list(c.shape)
        n_classes = shape.pop(c.axis)
        rng = np.random.default_rng(1000 + c.seed)
        y = rng.integers(0, n_classes, size=tuple(shape), dtype=np.int64)
        y.flags.writeable = False
        _DATA[key] = y
    return _DATA[key]


def mask(case):
    """The causal-style ``where=`` mask of a 2-D ``case`` (see the module docstring), read-only."""
    key = ("mask", case)
    if key not in _DATA:
        c = CASES[case]
        if len(c.shape) != 2 or c.axis % 2 != 1:
            raise ValueError(f"{case}: masks are defined for 2-D data reduced along axis -1")
        rows, cols = c.shape
        i = np.arange(rows)[:, None]
        j = np.arange(cols)[None, :]
        m = j * rows < (i + 1) * cols
        m.flags.writeable = False
        _DATA[key] = m
    return _DATA[key]


IMPLS = _peers.IMPLS
WARM_ON_INPUT = _peers.WARM_ON_INPUT
available = _peers.available
equal_threads = _peers.equal_threads


def _args(op, case, dtype):
    x, axis = dataset(case, dtype)
    if op in _peers.TARGET_OPS:
        return x, axis, targets(case)
    if op in _peers.MASK_OPS:
        return x, axis, mask(case)
    return x, axis


def prepare(op, peer, case, dtype):
    """The callable timing ``op`` by ``peer`` on ``(case, dtype)``, built and warmed once."""
    key = (op, peer, case, dtype)
    if key not in _PREPARED:
        if not available(peer):
            raise NotImplementedError(f"{peer} is not installed")
        run = _peers.make(op, peer, *_args(op, case, dtype))
        equal_threads()
        if peer in WARM_ON_INPUT:
            run()
        else:
            c = case_of(case)
            _peers.make(op, peer, *_peers.tiny_args(op, len(c.shape), c.axis, dtype))()
        _PREPARED[key] = run
    return _PREPARED[key]


def peers(op):
    """Every peer of ``op``, installed or not (asv lists the missing ones as skipped)."""
    return list(IMPLS[op])


class PeerBenchmark:
    """Base of a benchmark of one op over datasets x dtypes x peers.

    A subclass names ``op`` (a key of ``IMPLS``), optionally ``cases`` (the dataset
    names, all of ``CASES`` by default), and defines one ``time_<op>`` method that
    calls ``self.run()``; ``params``, ``param_names`` and ``setup`` come from here.
    """

    op = None
    cases = None
    param_names = ("shape", "dtype", "peer")
    timeout = 300

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.params = (list(cls.cases or CASES), DTYPES, peers(cls.op))

    def setup(self, shape, dtype, peer):
        self.run = prepare(self.op, peer, shape, dtype)
