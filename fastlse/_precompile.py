"""``fastlse.precompile``: fill numba's on-disk cache before the first real call.

Kernels compile lazily, on first use per dtype and route (seconds each).  A
container image or a CI job can pay that once, at build time: this module
calls every public op on small inputs shaped to take each route of the
library's own chooser (``_routes``), so the kernels compile, or load, through
the same dispatchers and with the same argument types as a user's calls.
A call runs either the serial or the parallel twin of a kernel
(``kernels.threads``), so each twin is then compiled for the other's
signatures as well: the parallel kernels are cached whatever the size of the
inputs here or the thread count.
"""

import itertools
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import numba
import numpy as np

from . import _routes
from ._config import CACHE, PARALLEL_MIN_WORK
from ._cumulative import PIECE as SCAN_PIECE
from ._cumulative import SHORT as SCAN_SHORT
from ._cumulative import logcumsumexp
from ._layout import COPY_BLOCK_BYTES
from ._linear_xent import linear_cross_entropy
from ._online import OnlineLogSumExp
from .kernels.threads import KERNELS, num_threads
from .kernels.xent import SMALL_C
from .losses import cross_entropy, log_sigmoid, nll_loss
from .special import log_softmax, logsumexp, softmax

__all__ = ["OPS", "precompile"]

_RNG = np.random.default_rng(0)


def _frozen(a: np.ndarray, ro: bool) -> np.ndarray:
    """``a``, read-only if ``ro``: numba compiles a kernel apart for read-only
    arrays (``np.broadcast_to`` views, memmaps, ``np.asarray`` of a jax
    array), and an input in kernel layout reaches the kernels as it is."""
    a.setflags(write=not ro)
    return a


def _x(shape: tuple[int, ...], dt: np.dtype, ro: bool) -> np.ndarray:
    return _frozen((3.0 * _RNG.standard_normal(shape)).astype(dt), ro)


def _ints(hi: int, shape: object, ro: bool) -> np.ndarray:
    return _frozen(np.asarray(_RNG.integers(0, hi, size=shape)), ro)


def _long() -> int:
    """A row long enough for the pieces routes (few long rows)."""
    return max(2 * _routes.PIECE, 2 * SCAN_PIECE, PARALLEL_MIN_WORK)


def _route_inputs(dt: np.dtype, ro: bool) -> list[tuple[np.ndarray, int]]:
    """(array, axis) taking each route of the reductions: vector, narrow_t,
    narrow (float64), rows, pieces, columns, folded, folded in pieces, and
    a strided view copied block by block (deferred)."""
    big = COPY_BLOCK_BYTES * 2 // (1000 * dt.itemsize) + 1
    return [
        (_x((100,), dt, ro), -1),
        (_x((64, 7), dt, ro), -1),
        (_x((64, 20), dt, ro), -1),
        (_x((64, 100), dt, ro), -1),
        (_x((1, _long()), dt, ro), -1),
        (_x((4, 50, 64), dt, ro), 1),
        (_x((4, 50, 3), dt, ro), 1),
        (_x((_long(), 2), dt, ro), 0),
        (_x((big, 2000), dt, ro)[:, ::2], -1),
    ]


def _lse(dt: np.dtype, ro: bool) -> None:
    for x, axis in [(_x((3, 0), dt, ro), -1), *_route_inputs(dt, ro)]:
        logsumexp(x, axis=axis)
    for x, y in itertools.product(_rows_both(dt, ro), repeat=2):
        logsumexp(x, axis=-1, where=y > 0)
        logsumexp(x, axis=-1, b=y, return_sign=True)
        logsumexp(x[0], b=y[1])


def _rows_both(dt: np.dtype, ro: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows for where= and b=: C (reach the kernels as they are, the mask a
    read-only broadcast view) and F (copied to rows: writeable); the data
    and the mask or weights are taken in every pair of the two."""
    return _x((64, 100), dt, ro), _x((100, 64), dt, ro).T


def _normalizer(fn: Callable[..., object]) -> Callable[[np.dtype, bool], None]:
    def run(dt: np.dtype, ro: bool) -> None:
        for x, axis in _route_inputs(dt, ro):
            fn(x, axis=axis)
        for x, y in itertools.product(_rows_both(dt, ro), repeat=2):
            fn(x, axis=-1, where=y > 0)
        fn(x, axis=-1, out=np.empty_like(x, order="F"))

    return run


def _cumulative(dt: np.dtype, ro: bool) -> None:
    # pieces of long scans are planned for numba.get_num_threads() threads
    with num_threads(numba.config.NUMBA_NUM_THREADS):
        for shape, axis in [
            ((64, SCAN_SHORT // 2), -1),
            ((64, 2 * SCAN_SHORT), -1),
            ((1, _long()), -1),
            ((4, 50, 64), 1),
            ((1, _long(), 2), 1),
        ]:
            logcumsumexp(_x(shape, dt, ro), axis=axis)
            logcumsumexp(_x(shape, dt, ro), axis=axis, reverse=True)


def _xent_inputs(dt: np.dtype, ro: bool) -> list[tuple[np.ndarray, int]]:
    """(logits, class axis) of each cross-entropy route: small C, wide rows,
    one sample, pieces, columns, classes moved last, columns_loss (enough
    slabs for the threads)."""
    slabs = 4 * _routes.threads()
    small_c = SMALL_C - 1  # the most classes of the small-C route
    return [
        (_x((64, small_c // 2), dt, ro), -1),
        (_x((64, 2 * small_c), dt, ro), -1),
        (_x((2 * small_c,), dt, ro), -1),
        (_x((1, _long()), dt, ro), -1),
        (_x((4, 2 * small_c, 64), dt, ro), 1),
        (_x((4, 10, 2), dt, ro), 1),
        (_x((slabs, _routes.PAIRS_COLS_MIN_C, 64), dt, ro), 1),
    ]


#: the options with kernels (or argument types) of their own
_XENT_OPTIONS = (
    {},
    {"return_grad": True},
    {"reduction": "none"},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.1, "return_grad": True},
    {"weight": True, "return_grad": True},
    {"z_loss": 1e-4, "return_lse": True},
    {"z_loss": 1e-4, "return_grad": True, "softcap": 30.0},
    {"softcap": 30.0},
)


def _xent(dt: np.dtype, ro: bool) -> None:
    for x, axis in _xent_inputs(dt, ro):
        n = x.shape[axis]
        t = _ints(n, np.delete(x.shape, axis % x.ndim), ro)
        p = _frozen(softmax(x, axis=axis), ro)
        for opts in _XENT_OPTIONS:
            kw = dict(opts, weight=_frozen(np.ones(n), ro)) if "weight" in opts else opts
            cross_entropy(x, t, axis=axis, **kw)
            if "reduction" not in opts:  # probabilities as targets
                cross_entropy(x, p, axis=axis, **kw)


def _nll(dt: np.dtype, ro: bool) -> None:
    for x, axis in _xent_inputs(dt, ro):
        t = _ints(x.shape[axis], np.delete(x.shape, axis % x.ndim), ro)
        nll_loss(x, t, axis=axis)
        nll_loss(x, t, axis=axis, weight=_frozen(np.ones(x.shape[axis]), ro), reduction="none")


def _sigmoid(dt: np.dtype, ro: bool) -> None:
    log_sigmoid(_x((10,), dt, ro))
    log_sigmoid(_x((PARALLEL_MIN_WORK,), dt, ro))


def _online(dt: np.dtype, ro: bool) -> None:
    for shape, axis in [((4, 300), 1), ((300, 4), 0), ((50,), None)]:
        x = _x(shape, dt, ro)
        acc = OnlineLogSumExp(axis=axis).update(x)
        acc.merge(OnlineLogSumExp(axis=axis).update(x)).result()
        wacc = OnlineLogSumExp(axis=axis).update(x, b=x)
        wacc.merge(OnlineLogSumExp(axis=axis).update(x, b=x)).result(return_sign=True)


def _linear(dt: np.dtype, ro: bool) -> None:
    h, w, b = _x((64, 16), dt, ro), _x((100, 16), dt, ro), _x((100,), dt, ro)
    t = _ints(100, 64, ro)
    for kw in ({}, {"block_vocab": 32}):
        linear_cross_entropy(h, w, t, **kw)
        linear_cross_entropy(h, w, t, bias=b, return_grad=True, **kw)
        linear_cross_entropy(
            h, w, t, label_smoothing=0.1, z_loss=1e-4, softcap=30.0, return_grad=True,
            return_lse=True, reduction="none", **kw,
        )  # fmt: skip


def _dask(dt: np.dtype, ro: bool) -> None:
    """The dask path's merges of the chunks' partial sums (the chunks run the
    kernels of the other ops); nothing without dask."""
    try:
        import dask.array as da
    except ImportError:
        return
    x = da.from_array(_x((64, 300), dt, ro), chunks=(32, 100))
    logsumexp(x, axis=1).compute(scheduler="sync")
    logsumexp(x, axis=1, b=x).compute(scheduler="sync")


#: name -> the calls that compile its kernels for one dtype
OPS: dict[str, Callable[[np.dtype, bool], None]] = {
    "logsumexp": _lse,
    "softmax": _normalizer(softmax),
    "log_softmax": _normalizer(log_softmax),
    "logcumsumexp": _cumulative,
    "cross_entropy": _xent,
    "nll_loss": _nll,
    "log_sigmoid": _sigmoid,
    "OnlineLogSumExp": _online,
    "linear_cross_entropy": _linear,
    "dask": _dask,
}


def _signatures() -> list[set[object]]:
    """The signatures of every kernel's twins so far (serial, parallel, ...)."""
    return [set(d.signatures) for k in KERNELS for d in (k.serial, k.parallel)]


def _twins(before: list[set[object]]) -> int:
    """Compile each kernel's serial and parallel twins for the signatures the
    other one gained since ``before`` (the calls of the ops asked for, not
    those of earlier calls in this process); returns how many."""
    added = 0
    for i, k in enumerate(KERNELS):
        for j, have, want in ((0, k.serial, k.parallel), (1, k.parallel, k.serial)):
            for sig in set(have.signatures) - before[2 * i + j] - set(want.signatures):
                want.compile(sig)
                added += 1
    return added


def _picked(names: Iterable[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    chosen = list(allowed if names is None else names)
    bad = [n for n in chosen if n not in allowed]
    if bad:
        raise ValueError(f"precompile: unknown {what} {bad} (choose from {list(allowed)})")
    return chosen


def precompile(
    dtypes: Iterable[str] = ("float32", "float64"),
    ops: Iterable[str] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """Compile fastlse's kernels into numba's on-disk cache.

    For container images and CI: run once at build time (or ``python -m
    fastlse --precompile``), and later processes load the kernels from the
    cache instead of compiling them on first use.  Every public op is called
    on small inputs that take each of its routes, writeable and read-only;
    each kernel is compiled serial and parallel.  Kernels already cached are loaded, not compiled.

    The cache is the package's ``__pycache__`` or ``NUMBA_CACHE_DIR``
    (numba's own setting); it must be the same, with the same fastlse, numba
    and CPU, where the kernels are used.  Routes that depend on the thread
    count are those of this process's ``NUMBA_NUM_THREADS``.

    Parameters
    ----------
    dtypes : iterable of {"float32", "float64"}, optional
        The dtypes to compile for (float16 input computes in float32,
        integers in float64).
    ops : iterable of str, optional
        A subset of ``fastlse._precompile.OPS`` (``"logsumexp"``,
        ``"softmax"``, ``"log_softmax"``, ``"logcumsumexp"``,
        ``"cross_entropy"``, ``"nll_loss"``, ``"log_sigmoid"``,
        ``"OnlineLogSumExp"``, ``"linear_cross_entropy"``, ``"dask"``: the
        merges of the dask path, where dask is installed); all by default.
    verbose : bool, optional
        Print each op's time as it finishes.

    Returns
    -------
    dict
        Seconds spent per op and dtype (``"logsumexp float32"``), and on the
        parallel / serial twins (``"twins"``).

    Raises
    ------
    ValueError
        An unknown dtype or op.

    Notes
    -----
    numba compiles a kernel apart for read-only arrays (``np.broadcast_to``
    views, read-only memmaps, ``np.asarray`` of a jax array): the inputs are
    passed all writeable, then all read-only.  A call that mixes the two
    (say read-only targets with writeable logits) may still compile on first
    use.  Every op in both dtypes takes about 13 minutes on 2 cores and
    leaves about 95 MB of cache files.

    Examples
    --------
    >>> import fastlse
    >>> times = fastlse.precompile(dtypes=["float64"], ops=["log_sigmoid"])
    >>> sorted(times)
    ['log_sigmoid float64', 'twins']
    """
    dts = [np.dtype(d) for d in _picked(dtypes, ("float32", "float64"), "dtype")]
    names = _picked(ops, list(OPS), "op")
    if not CACHE:
        warnings.warn("FASTLSE_CACHE is off: kernels compile for this process only", stacklevel=2)
    times = {}
    before = _signatures()
    for name in names:
        for dt in dts:
            t0 = time.perf_counter()
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                for ro in (False, True):  # writeable and read-only inputs
                    OPS[name](dt, ro)
            times[f"{name} {dt}"] = time.perf_counter() - t0
            if verbose:
                print(f"precompile: {name} {dt}: {times[f'{name} {dt}']:.1f} s", flush=True)
    t0 = time.perf_counter()
    added = _twins(before)
    times["twins"] = time.perf_counter() - t0
    if verbose:
        print(f"precompile: {added} serial / parallel twins: {times['twins']:.1f} s", flush=True)
    return times
