"""Cumulative log-sum-exp: ``logcumsumexp`` and its scan kernels.

The running sum of exponentials is carried as the pair of ``kernels.rows``:
``sum exp(x) = exp(m) * (1 + t)`` with ``m`` the running max and ``t`` the sum
of ``exp(x - m)`` over every element but one that attains it.  Element ``x``
after a carry ``(m, t)`` gives, with ``e = exp(-|x - m|)``,

* ``x <= m``:  ``t <- t + e``             (``m`` unchanged)
* ``x > m``:   ``t <- (1 + t) * e``       (``m <- x``)

that is the linear recurrence ``t <- a * t + e`` with ``a = e`` or ``1``, and
the output is ``max(m, x) + log1p(t)``, accurate to a few units of the running
sum's conditioning whatever the position.  ``-inf``, ``+inf`` and nan need no
branch: ``x == m`` is taken as ``d = 0`` (so ``inf`` after ``inf`` stays
``inf``), an ``inf`` carry gives ``e == 0``, and nan propagates through ``t``.

Rows (the scanned axis is the last, contiguous one) are scanned in chunks that
stay in L1: a serial running-max sweep, a vectorized exp sweep, the serial
recurrence (one FMA per element), a vectorized ``m + log1p(t)`` sweep.
Columns (a non-last axis) are scanned in memory order, a vector of pairs per
column block, everything vectorized across columns; short rows are
transposed a tile at a time in cache and scanned the same way.  The exp and
log1p are branch-free and vectorize (float32 finishes in float32; the carry
is float64 for both dtypes).  Few long scans are split
into pieces: the pieces' total pairs (a reduction, in parallel), an exclusive
scan of those pairs with ``merge`` (tiny), then every piece scanned from its
carry, in parallel.
"""

from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from . import _interop
from ._layout import Layout, normalize_axes
from ._typing import ArrayLike, NDArray
from .kernels.compile import jit
from .kernels.drivers import PARALLEL_MIN_WORK, kernel
from .kernels.exp import exp64 as exp64v  # noqa: F401 - the scan tests call it by this name
from .kernels.exp import log1p32 as log1p32v
from .kernels.exp import log1p64 as log1p64v
from .kernels.exp import maxnum
from .kernels.rows import cast_to, expn, merge, row_pair, zero_of

__all__ = ["logcumsumexp"]

_NINF = -np.inf


#: elements per chunk of the row scan (its three scratch rows stay in L1)
CHUNK = 512
#: rows shorter than this are scanned TILE at a time, transposed in cache
SHORT = 64
TILE = 128
#: a scan at least this long is split into pieces when rows alone leave
#: threads idle
PIECE = 1 << 14


def exp_neg_abs(d):  # pragma: no cover - replaced by the overload
    return np.exp(-np.abs(d))


@overload(exp_neg_abs)
def _exp_neg_abs_ol(d):
    """exp(-|d|) as float64; 0 where it would be subnormal in d's dtype.

    Subnormal operands cost microcode assists (a row drifting far below its
    max slows down); the terms flushed are below 1e-38 (float32) or
    1e-307 (float64) of the running sum's max term: nothing a result keeps.
    """
    lim = np.float32(-87.0) if d == types.float32 else np.float64(-708.0)

    def impl(d):
        z = -abs(d)
        tiny = z < lim  # false for nan: nan propagates
        return 0.0 if tiny else np.float64(expn(lim if tiny else z))

    return impl


def finish_as(x, m, t):  # pragma: no cover - replaced by the overload
    return m + np.log1p(t)


@overload(finish_as)
def _finish_as_ol(x, m, t):
    """m + log1p(t) in x's dtype.  float32 rounds t to float32 (a relative
    2**-24 in t moves log1p(t) by at most 2**-24 * min(t, 1)) and finishes in
    float32, 8 lanes wide; float64 finishes in float64."""
    if x.dtype == types.float32:
        return lambda x, m, t: np.float32(m) + log1p32v(np.float32(t))
    return lambda x, m, t: np.float64(m) + log1p64v(t)


# ----------------------------------------------------------------------------
# one row: chunked scan
# ----------------------------------------------------------------------------
@jit
def _scan_chunk(x, out, c0, c1, rev, m, t, pb, eb, ab):
    """Scan x[c0:c1] (1-D) into out[c0:c1] from the carry (m, t); returns
    the new carry.  ``m`` has x's dtype, ``t`` is float64; ``pb`` (x's
    dtype), ``eb`` and ``ab`` (float64) are scratch of length >= c1 - c0.
    ``rev`` scans from c1 - 1 down to c0.
    """
    w = c1 - c0
    # 1. running max before each element (serial: one maxnum per element)
    if rev:
        for k in range(w - 1, -1, -1):
            pb[k] = m
            m = maxnum(m, x[c0 + k])
    else:
        for k in range(w):
            pb[k] = m
            m = maxnum(m, x[c0 + k])
    # 2. e = exp(-|x - m_before|) and the recurrence's factor (vectorized)
    for k in range(w):
        xv = x[c0 + k]
        pv = pb[k]
        d = xv - pv
        d = zero_of(x) if xv == pv else d  # inf after inf (or -inf after -inf): e = 1
        e = exp_neg_abs(d)
        eb[k] = e
        ab[k] = e if xv > pv else 1.0
    # 3. t <- a t + e (serial: one FMA per element); t stored over e
    if rev:
        for k in range(w - 1, -1, -1):
            t = t * ab[k] + eb[k]
            eb[k] = t
    else:
        for k in range(w):
            t = t * ab[k] + eb[k]
            eb[k] = t
    # 4. out = max(m_before, x) + log1p(t) (vectorized)
    for k in range(w):
        out[c0 + k] = finish_as(x, maxnum(pb[k], x[c0 + k]), eb[k])
    return m, t


@jit
def scan_row(x, out, lo, hi, rev, m, t, pb, eb, ab):
    """Scan x[lo:hi] into out from the carry (m, t), chunk by chunk."""
    if rev:
        for c1 in range(hi, lo, -CHUNK):
            m, t = _scan_chunk(x, out, max(lo, c1 - CHUNK), c1, True, m, t, pb, eb, ab)
    else:
        for c0 in range(lo, hi, CHUNK):
            m, t = _scan_chunk(x, out, c0, min(hi, c0 + CHUNK), False, m, t, pb, eb, ab)
    return m, t


@kernel(alloc=True)
def scan_rows(x, out, piece, mc, tc, rev, per):
    """Scan every row of x (M, N) into out, piece by piece.

    Piece k of row i, x[i, k*piece : (k+1)*piece], starts from the carry
    (mc[i, k], tc[i, k]) (float64), or from the empty sum if mc is empty.
    Threads take ``per`` pieces at a time: scratch is allocated per group.
    """
    n = x.shape[1]
    npc = -(-n // piece) if n > 0 else 1
    ntask = x.shape[0] * npc
    carry = mc.shape[0] > 0
    for g in prange(-(-ntask // per)):
        pb = np.empty(CHUNK, dtype=x.dtype)
        eb = np.empty(CHUNK)
        ab = np.empty(CHUNK)
        for task in range(g * per, min(ntask, (g + 1) * per)):
            i = task // npc
            k = task % npc
            lo = k * piece
            m0 = cast_to(x, mc[i, k] if carry else _NINF)
            t0 = tc[i, k] if carry else 0.0
            scan_row(x[i], out[i], lo, min(n, lo + piece), rev, m0, t0, pb, eb, ab)


@kernel
def pair_row_pieces(x, piece, mo, to):
    """(m, t) of every piece of every row (float64): the pieces' totals."""
    n = x.shape[1]
    npc = mo.shape[1]
    for task in prange(x.shape[0] * npc):
        i = task // npc
        k = task % npc
        lo = k * piece
        mo[i, k], to[i, k] = row_pair(x[i], lo, min(n, lo + piece))


@jit
def exclusive_carries(mo, to, rev):
    """Pieces' totals (P, npc, Q) -> the carry into each piece, in place.

    (mo, to)[p, k, q] becomes the merge of the pieces before k (after k if
    ``rev``); the first piece starts from the empty sum (-inf, 0).
    """
    npc = mo.shape[1]
    for i in range(mo.shape[0]):
        for q in range(mo.shape[2]):
            m, t = _NINF, 0.0
            for kk in range(npc):
                k = npc - 1 - kk if rev else kk
                mk, tk = mo[i, k, q], to[i, k, q]
                mo[i, k, q], to[i, k, q] = m, t
                m, t = merge(m, t, mk, tk)


# ----------------------------------------------------------------------------
# columns: x (P, N, Q) scanned along N, a vector of pairs per column block
# ----------------------------------------------------------------------------
@jit
def _cols_step(xr, mv, tv):
    """One row of a column block: carries (mv, tv) updated by the row xr."""
    for q in range(xr.shape[0]):
        xv = xr[q]
        pv = mv[q]
        d = xv - pv
        d = zero_of(xr) if xv == pv else d
        e = exp_neg_abs(d)
        tv[q] = tv[q] * (e if xv > pv else 1.0) + e
        mv[q] = maxnum(pv, xv)


@jit
def scan_cols_block(x, out, p, r0, r1, q0, q1, rev, mv, tv):
    """Scan x[p, r0:r1, q0:q1] along its rows into out from the carries
    mv (x's dtype) and tv (float64), which are updated in place."""
    for rr in range(r1 - r0):
        r = r1 - 1 - rr if rev else r0 + rr
        _cols_step(x[p, r, q0:q1], mv, tv)
        orow = out[p, r, q0:q1]
        for q in range(q1 - q0):
            orow[q] = finish_as(x, mv[q], tv[q])


@kernel(alloc=True)
def scan_cols(x, out, qc, piece, mc, tc, rev):
    """Scan x (P, N, Q) along N into out; tasks are (p, row piece, column block).

    Piece k of the rows starts from the carries (mc[p, k, :], tc[p, k, :])
    (float64), or from the empty sum if mc is empty.
    """
    p_, n, q_ = x.shape
    npc = -(-n // piece) if n > 0 else 1
    nq = -(-q_ // qc)
    carry = mc.shape[0] > 0
    for task in prange(p_ * npc * nq):
        p = task // (npc * nq)
        k = (task // nq) % npc
        q0 = (task % nq) * qc
        q1 = min(q_, q0 + qc)
        mv = np.empty(q1 - q0, dtype=x.dtype)
        tv = np.empty(q1 - q0)
        for q in range(q0, q1):
            mv[q - q0] = cast_to(x, mc[p, k, q] if carry else _NINF)
            tv[q - q0] = tc[p, k, q] if carry else 0.0
        r0 = k * piece
        scan_cols_block(x, out, p, r0, min(n, r0 + piece), q0, q1, rev, mv, tv)


@kernel(alloc=True)
def pair_col_pieces(x, qc, piece, mo, to):
    """(m, t) of every (p, row piece, column) of x (P, N, Q), float64."""
    p_, n, q_ = x.shape
    npc = mo.shape[1]
    nq = -(-q_ // qc)
    for task in prange(p_ * npc * nq):
        p = task // (npc * nq)
        k = (task // nq) % npc
        q0 = (task % nq) * qc
        q1 = min(q_, q0 + qc)
        mv = np.empty(q1 - q0, dtype=x.dtype)
        tv = np.zeros(q1 - q0)
        mv[:] = _NINF
        for r in range(k * piece, min(n, (k + 1) * piece)):
            _cols_step(x[p, r, q0:q1], mv, tv)
        for q in range(q0, q1):
            mo[p, k, q] = mv[q - q0]
            to[p, k, q] = tv[q - q0]


# ----------------------------------------------------------------------------
# short rows: tiles of rows transposed in cache, scanned like columns
# ----------------------------------------------------------------------------
@kernel(alloc=True)
def scan_short_rows(x, out, rev, per):
    """Scan short rows of x (M, n) in tiles of TILE rows, transposed in cache.

    A short row leaves the chunked scan nothing to vectorize; a tile
    transposed to (n, TILE) is scanned like columns, TILE rows at once.
    Threads take ``per`` tiles at a time.
    """
    m_, n = x.shape
    ntile = -(-m_ // TILE)
    for g in prange(-(-ntile // per)):
        xb = np.empty((n, TILE), dtype=x.dtype)
        mv = np.empty(TILE, dtype=x.dtype)
        tv = np.empty(TILE)
        for i0 in range(g * per * TILE, min(m_, (g + 1) * per * TILE), TILE):
            w = min(m_, i0 + TILE) - i0
            for i in range(w):
                for j in range(n):
                    xb[j, i] = x[i0 + i, j]
            for i in range(w):
                mv[i] = cast_to(x, _NINF)
                tv[i] = 0.0
            for jj in range(n):
                j = n - 1 - jj if rev else jj
                _cols_step(xb[j, :w], mv[:w], tv[:w])
                for i in range(w):
                    xb[j, i] = finish_as(x, mv[i], tv[i])
            for i in range(w):
                for j in range(n):
                    out[i0 + i, j] = xb[j, i]


# ----------------------------------------------------------------------------
# drivers: the split follows the shape
# ----------------------------------------------------------------------------
def _col_chunk(q_, nth):
    """Columns per task: about two tasks per thread, 16 to 512 columns each."""
    qc = -(-q_ // (2 * nth))
    return int(min(512, max(16, -(-qc // 16) * 16)))


def _npieces(n, tasks, nth, min_piece):
    """How many pieces to cut scans of length n into (1: none)."""
    if nth < 2 or tasks >= 2 * nth or n < 2 * min_piece:
        return 1
    return int(min(-(-4 * nth // tasks), n // min_piece))


def scan(v, dest, rev, nth=None):
    """Cumulative log-sum-exp of a kernel view into dest (same shape, dtype).

    v is (M, N) rows or (P, N, Q) columns, C-contiguous, scanned along N.
    Rows in parallel; columns in blocks in parallel; when that leaves
    threads idle, long scans are cut into pieces whose carries come from a
    parallel reduction and an exclusive scan of the pieces' totals.  ``nth``
    (threads to plan for) defaults to numba's setting, 1 for small inputs.
    """
    if v.size == 0:
        return
    if nth is None:
        nth = numba.get_num_threads() if v.size >= PARALLEL_MIN_WORK else 1
    none = np.empty((0, 1, 1))  # no carries: every scan starts empty
    if v.ndim == 2:
        m_, n = v.shape
        if n < SHORT:
            per = max(1, -(-m_ // TILE) // (8 * nth))
            scan_short_rows(v.size, v, dest, rev, per)
            return
        npc = _npieces(n, m_, nth, PIECE)
        piece = -(-n // npc)
        if npc > 1:
            npc = -(-n // piece)
            mo = np.empty((m_, npc, 1))
            to = np.empty((m_, npc, 1))
            pair_row_pieces(v.size, v, piece, mo[:, :, 0], to[:, :, 0])
            exclusive_carries(mo, to, rev)
            mc, tc = mo[:, :, 0], to[:, :, 0]
        else:
            mc, tc = none[:, :, 0], none[:, :, 0]
        per = max(1, (m_ * npc) // (8 * nth))
        scan_rows(v.size, v, dest, piece, mc, tc, rev, per)
    else:
        p_, n, q_ = v.shape
        qc = _col_chunk(q_, nth)
        npc = _npieces(n, p_ * -(-q_ // qc), nth, max(64, PIECE // qc))
        piece = -(-n // npc)
        if npc > 1:
            npc = -(-n // piece)
            mc = np.empty((p_, npc, q_))
            tc = np.empty((p_, npc, q_))
            pair_col_pieces(v.size, v, qc, piece, mc, tc)
            exclusive_carries(mc, tc, rev)
        else:
            mc, tc = none, none
        scan_cols(v.size, v, dest, qc, piece, mc, tc, rev)


# ----------------------------------------------------------------------------
# public function
# ----------------------------------------------------------------------------
def _result_dtype(dt):
    """float32 / float64 (and float16, longdouble) keep their dtype; ints and
    bools give float64 like numpy's exp.  Returns (result, compute) dtypes."""
    if dt.kind in "biu":
        return np.dtype(np.float64), np.dtype(np.float64)
    if dt.kind != "f":
        raise TypeError(f"logcumsumexp: unsupported dtype {dt} for a (real input only)")
    if dt == np.float16:
        return dt, np.dtype(np.float32)
    return dt, (dt if dt == np.float32 else np.dtype(np.float64))


def _check_out(out, shape, rdt):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"logcumsumexp: out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"logcumsumexp: out has shape {out.shape}, expected {shape}")
    if out.dtype.kind != "f" or not np.can_cast(rdt, out.dtype, "same_kind"):
        raise TypeError(f"logcumsumexp: out has dtype {out.dtype}; the result's dtype is {rdt}")
    if not out.flags.writeable:
        raise ValueError("logcumsumexp: out is read-only")


def _same_view(u, v):
    """u and v are the same elements in the same layout (safe to scan in place)."""
    return (
        u.__array_interface__["data"][0] == v.__array_interface__["data"][0]
        and u.shape == v.shape
        and u.strides == v.strides
    )


def logcumsumexp(
    a: ArrayLike, axis: int | None = -1, reverse: bool = False, out: NDArray[Any] | None = None
) -> NDArray[Any]:
    """Cumulative log-sum-exp along an axis.

    ``out[..., i] = log(sum(exp(a[..., :i + 1])))`` along `axis`, computed
    without overflow and accurately: the running sum is carried as a pair
    ``(m, t)`` with ``sum = exp(m) * (1 + t)`` and each output is
    ``m + log1p(t)``, so its error follows the running sum's conditioning,
    not the position.  Like ``torch.logcumsumexp``, ``jax.lax.cumlogsumexp``
    and ``np.logaddexp.accumulate`` (which is slower and less accurate).

    Parameters
    ----------
    a : array_like
        Real input.  float32 and float64 are computed in their own dtype,
        float16 in float32 (returned as float16); integers and bools give
        float64.
    axis : int or None, optional
        Axis along which to accumulate (default: the last).  None flattens
        `a` first (C order), like ``np.cumsum``.  A 0-d `a` is taken as
        shape ``(1,)``, also like ``np.cumsum``.
    reverse : bool, optional
        If True, accumulate from the end: ``out[..., i] =
        log(sum(exp(a[..., i:])))`` (the risk sets of a Cox partial
        likelihood, the backward pass of an HMM).
    out : ndarray, optional
        Destination of the result's shape and a floating dtype the result
        casts to (``same_kind``).  ``out=a`` scans in place.

    Returns
    -------
    ndarray
        The cumulative log-sum-exp (`out` if given).

    Notes
    -----
    Special values follow ``torch.logcumsumexp``: ``-inf`` entries add
    nothing (a prefix of ``-inf`` gives ``-inf``); from a ``+inf`` entry on
    the result is ``+inf``; from a nan entry on it is nan.  Rows run in
    parallel; a non-last axis is scanned in memory order, many columns at
    once; few long scans are split into pieces joined by the (m, t) merge.

    Examples
    --------
    >>> import numpy as np, fastlse
    >>> x = np.log([1.0, 2.0, 3.0, 4.0])
    >>> np.exp(fastlse.logcumsumexp(x))
    array([ 1.,  3.,  6., 10.])
    >>> np.exp(fastlse.logcumsumexp(x, reverse=True))
    array([10.,  9.,  7.,  4.])
    >>> fastlse.logcumsumexp([1000.0, 1000.0, -np.inf])  # no overflow
    array([1000.        , 1000.69314718, 1000.69314718])
    >>> np.exp(fastlse.logcumsumexp(np.log([[1.0, 2.0], [3.0, 4.0]]), axis=0))
    array([[1., 2.],
           [4., 6.]])
    """
    if _interop.foreign(a, out):
        kw = dict(axis=axis, reverse=reverse)
        return _interop.call(logcumsumexp, "logcumsumexp", dict(a=a, out=out), **kw)
    a = np.asarray(a)
    rdt, cdt = _result_dtype(a.dtype)
    if axis is None:
        a = a.reshape(-1)
        axis = 0
    elif a.ndim == 0:
        a = a.reshape(1)
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"logcumsumexp: axis must be an integer or None, got {axis!r}")
    axes = normalize_axes(int(axis), a.ndim, "logcumsumexp")
    if out is not None:
        _check_out(out, a.shape, rdt)
    if a.size == 0:
        return out if out is not None else np.empty(a.shape, dtype=rdt)
    plan = Layout(a, axes, dtype=cdt)
    dest = plan.out_view(out) if out is not None else None
    if dest is not None and np.may_share_memory(dest, a) and not _same_view(dest, plan.view):
        dest = None  # out overlaps a in another layout: scan into a buffer
    if dest is None:
        dest, full = plan.empty_like_view(cdt)
    else:
        full = out
    scan(plan.view, dest, bool(reverse))
    if out is not None:
        if full is not out:
            np.copyto(out, full, casting="unsafe")
        return out
    return full.astype(rdt, copy=False)
