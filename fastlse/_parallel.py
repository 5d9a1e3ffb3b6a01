"""Kernel pairs (serial / parallel) and the dispatch between them.

Every kernel body is written once with ``prange`` and compiled twice, lazily,
on first use: once serial, once parallel. ``Kernel.__call__`` picks one:

* tiny inputs (``work`` below ``PARALLEL_MIN_WORK`` elements) never start threads;
* ``numba.set_num_threads(1)`` (or ``fastlse.num_threads(1)``) means serial;
* in a child created by ``fork`` after the parent started a thread pool whose
  layer is not fork-safe (GNU OpenMP hangs, see numba's docs), serial kernels
  run instead of hanging;
* with numba's ``workqueue`` layer, which aborts when two Python threads enter
  a parallel region at once, parallel calls are serialized by a lock.

The threading layer itself is numba's choice (``NUMBA_THREADING_LAYER``, default
order tbb > omp > workqueue); fastlse never overrides a user's configuration.
"""

import contextlib
import os
import threading

import numba
from numba import njit

from ._exp import EXACT

__all__ = ["PARALLEL_MIN_WORK", "Kernel", "kernel", "num_threads"]

#: numba's on-disk cache for compiled kernels; ``FASTLSE_CACHE=0`` turns it off.
CACHE = os.environ.get("FASTLSE_CACHE", "1").lower() not in ("0", "false", "no", "off")

#: inputs with fewer elements than this run serially (threads cost ~2-50 us).
PARALLEL_MIN_WORK = int(os.environ.get("FASTLSE_PARALLEL_MIN_WORK", 32768))


def _drop_stale_cache():
    """Numba keys a cached kernel on its own file only: a kernel in one module
    that inlined a helper from another goes stale when that helper changes.
    Keep one stamp of every module of the package; when it changes, drop the
    package's cache files (a few stat calls at import; nothing is compiled).
    """
    pkg = os.path.dirname(os.path.abspath(__file__))
    cache = os.path.join(pkg, "__pycache__")
    try:
        names = sorted(f for f in os.listdir(pkg) if f.endswith(".py"))
        stats = [os.stat(os.path.join(pkg, n)) for n in names]
        stamp = ";".join(f"{n}:{s.st_mtime_ns}:{s.st_size}" for n, s in zip(names, stats))
        path = os.path.join(cache, "fastlse-cache-stamp.txt")
        if os.path.exists(path):
            with open(path) as f:
                if f.read() == stamp:
                    return
        if os.path.isdir(cache):
            for f in os.listdir(cache):
                if f.endswith((".nbi", ".nbc")):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(cache, f))
        os.makedirs(cache, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(stamp)
        os.replace(tmp, path)
    except OSError:  # read-only install: numba uses its user-wide cache dir
        pass


if CACHE:
    _drop_stale_cache()

_lock = threading.Lock()
_state = {"forked_unsafe": False, "layer": None}


def _after_fork_in_child():
    from numba.np.ufunc import parallel as _p

    if getattr(_p, "_is_initialized", False) and _state["layer"] != "tbb":
        _state["forked_unsafe"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _threads_usable():
    if _state["forked_unsafe"]:
        return False
    return numba.get_num_threads() > 1


class Kernel:
    """A kernel body compiled serial and parallel, dispatched by work size."""

    def __init__(self, fn, **options):
        opts = {"fastmath": EXACT, "cache": CACHE, "nogil": True, **options}
        self.py_func = fn
        self.serial = njit(**opts)(fn)
        self.parallel = njit(parallel=True, **opts)(fn)

    def __call__(self, work, *args):
        if work < PARALLEL_MIN_WORK or not _threads_usable():
            return self.serial(*args)
        layer = _state["layer"]
        if layer is None or layer == "workqueue":
            with _lock:
                res = self.parallel(*args)
                _state["layer"] = numba.threading_layer()
            return res
        return self.parallel(*args)


def kernel(fn=None, **options):
    """Decorator: ``@kernel`` turns a ``prange`` body into a :class:`Kernel`."""
    if fn is None:
        return lambda f: Kernel(f, **options)
    return Kernel(fn, **options)


@contextlib.contextmanager
def num_threads(n):
    """Context manager: run fastlse kernels of this Python thread on ``n`` threads.

    A thin wrapper over ``numba.set_num_threads`` (which is per Python thread);
    ``n == 1`` selects the serial kernels, so no thread pool is touched.

    Examples
    --------
    >>> import numpy as np, fastlse
    >>> with fastlse.num_threads(1):
    ...     float(fastlse.logsumexp(np.zeros(4)))
    1.3862943611198906
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"num_threads: n must be >= 1, got {n}")
    old = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old)


# ============================================================================
# drivers: prange over rows, over pieces of long rows, over column blocks
# ============================================================================
import numpy as np  # noqa: E402
from numba import prange  # noqa: E402

from ._exp import exp64, log1p64  # noqa: E402
from ._kernels import (  # noqa: E402
    cast_to,
    cols_pair,
    cols_softmax_store,
    finish,
    has_nan,
    jit,
    log_softmax_store,
    merge,
    row_exp_store,
    row_lse,
    row_lse_weighted,
    row_max,
    row_pair,
    row_scale,
    row_softmax,
)

_NAN = np.nan
_INF = np.inf

#: columns per task in the column kernels
QCHUNK = 256


@jit
def log_softmax_consts(m, t):
    """(c1, c2) with log_softmax = (x - c1) - c2, scipy's specials encoded."""
    if m != m or t != t or m == -_INF:
        return _NAN, 0.0
    if m == _INF:
        return _INF, 0.0
    return m, log1p64(t)


# ---------------------------------------------------------------- rows -----
@kernel
def lse_rows(x, out):
    n = x.shape[1]
    for i in prange(x.shape[0]):
        out[i] = row_lse(x[i], 0, n)


@kernel
def pair_rows(x, mo, to):
    n = x.shape[1]
    for i in prange(x.shape[0]):
        mo[i], to[i] = row_pair(x[i], 0, n)


@kernel
def softmax_rows(x, out):
    n = x.shape[1]
    for i in prange(x.shape[0]):
        row_softmax(x[i], out[i], 0, n)


@kernel
def log_softmax_rows(x, out):
    n = x.shape[1]
    for i in prange(x.shape[0]):
        m, t = row_pair(x[i], 0, n)
        c1, c2 = log_softmax_consts(m, t)
        log_softmax_store(x[i], out[i], 0, n, c1, c2)


@kernel
def lse_weighted_rows(a, b, out, sgn):
    n = a.shape[1]
    for i in prange(a.shape[0]):
        out[i], sgn[i] = row_lse_weighted(a[i], b[i], 0, n)


# ------------------------------------------------ few long rows: pieces -----
@kernel
def pair_pieces(x, piece, mo, to):
    n = x.shape[1]
    npc = mo.shape[1]
    for k in prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        mo[i, k % npc], to[i, k % npc] = row_pair(x[i], lo, hi)


@jit
def merge_pieces(mo, to, mr, tr):
    for i in range(mo.shape[0]):
        m, t = -_INF, 0.0
        for k in range(mo.shape[1]):
            m, t = merge(m, t, mo[i, k], to[i, k])
        mr[i] = m
        tr[i] = t


@jit
def finish_rows(mr, tr, out):
    for i in range(mr.shape[0]):
        out[i] = finish(mr[i], tr[i])


@kernel
def softmax_pieces_exp(x, out, piece, mo, so):
    """Phase 1: out = exp(x - m_piece), so = piece sums (nan if unusable)."""
    n = x.shape[1]
    npc = mo.shape[1]
    for k in prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        m = row_max(x[i], lo, hi)
        mo[i, k % npc] = m
        if m == -_INF:
            for j in range(lo, hi):
                out[i, j] = 0.0
            so[i, k % npc] = _NAN if has_nan(x[i], lo, hi) else 0.0
        elif m == _INF:
            so[i, k % npc] = _NAN
        else:
            so[i, k % npc] = row_exp_store(x[i], out[i], lo, hi, m)


@jit
def softmax_piece_divisors(mo, so):
    """Per piece divisor S * exp(M - m_piece); nan where scipy gives nan."""
    for i in range(mo.shape[0]):
        big = -_INF
        for k in range(mo.shape[1]):
            big = max(big, mo[i, k])
        s = 0.0
        for k in range(mo.shape[1]):
            if mo[i, k] != -_INF or so[i, k] != 0.0:
                s += so[i, k] * exp64(mo[i, k] - big)
        bad = s != s or big == _INF or big == -_INF
        for k in range(mo.shape[1]):
            so[i, k] = _NAN if bad else s * exp64(big - mo[i, k])


@kernel
def softmax_pieces_scale(out, piece, so):
    n = out.shape[1]
    npc = so.shape[1]
    for k in prange(out.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        row_scale(out[i], lo, hi, cast_to(out, so[i, k % npc]))


@kernel
def log_softmax_pieces(x, out, piece, mr, tr):
    n = x.shape[1]
    npc = (n + piece - 1) // piece
    for k in prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        c1, c2 = log_softmax_consts(mr[i], tr[i])
        log_softmax_store(x[i], out[i], lo, hi, c1, c2)


# ------------------------------------------------------------- columns -----
@kernel
def pair_cols(x, mo, to):
    """(m, t) over axis 1 of x (P, N, Q) into mo, to (P, Q) float64."""
    p_, q_ = x.shape[0], x.shape[2]
    nq = (q_ + QCHUNK - 1) // QCHUNK
    for k in prange(p_ * nq):
        p = k // nq
        q0 = (k % nq) * QCHUNK
        q1 = min(q_, q0 + QCHUNK)
        mb = np.empty(q1 - q0, dtype=x.dtype)
        sc = np.empty((2, q1 - q0))
        cols_pair(x, p, q0, q1, mo[p, q0:q1], to[p, q0:q1], mb, sc)


@kernel
def softmax_cols(x, out, mo, to, log):
    """softmax / log_softmax over axis 1 of x (P, N, Q) given the pairs."""
    p_, q_ = x.shape[0], x.shape[2]
    nq = (q_ + QCHUNK - 1) // QCHUNK
    for k in prange(p_ * nq):
        p = k // nq
        q0 = (k % nq) * QCHUNK
        q1 = min(q_, q0 + QCHUNK)
        if log:
            c1 = np.empty(q1 - q0)
            c2 = np.empty(q1 - q0)
            for q in range(q0, q1):
                c1[q - q0], c2[q - q0] = log_softmax_consts(mo[p, q], to[p, q])
            cols_softmax_store(x, out, p, q0, q1, c1, c2, True)
        else:
            mv = np.empty(q1 - q0, dtype=x.dtype)
            sv = np.empty(q1 - q0, dtype=x.dtype)
            for q in range(q0, q1):
                m, t = mo[p, q], to[p, q]
                bad = m != m or t != t or m == _INF or m == -_INF
                mv[q - q0] = m
                sv[q - q0] = _NAN if bad else 1.0 + t
            cols_softmax_store(x, out, p, q0, q1, mv, sv, False)
