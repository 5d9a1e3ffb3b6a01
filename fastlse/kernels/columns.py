"""Reductions along a middle axis: x (P, N, Q) reduced over N, read in memory order.

A task is one slab ``x[p, :, q0:q1]`` (``w`` columns, sized by the caller:
``col_width``, ``softmax_slabs``).  Its rows are taken in blocks
of ``rows`` rows; per block, vectorized over the columns:

* a max sweep: the running max per column, ``M = max(M, block max)``;
* when ``M`` grew, the running pair is rescaled (``T, C -> (T + C) e^(M_old -
  M_new), 0``: the pair algebra's merge, done for all columns of the block at
  once, one float64 exp per column per block);
* an exp sweep with the shift ``M``: the block's sum of ``exp(x - M)`` over
  ``x < M`` in x's dtype (``rows`` terms) and the count of ``x >= M``, added
  into float64 ``T`` and ``C``; softmax instead sums all the block's terms
  (it needs ``1 + t``, not ``t`` apart from the max's 1), stores ``e = exp(x
  - M)`` in out and records the block's shift and smallest term.  The terms
  are ``expt``'s, exp(x - M) * 2**K, normal where exp(x - M) is not (a
  float32 multiply with a subnormal result takes a microcode assist on Intel
  cores); the block's sum is scaled back when it is added to ``T``.

The pair is ``(M, T + C - 1)`` (the log1p form: t excludes the max's own 1).
softmax then scales each block of out in place by ``1 / (S e^(M - shift)
2**K)`` (``S = 1 + t``; exactly ``e / S`` where the block's shift is the
final max, i.e. everywhere except blocks before the column's max), in
float64 for a float32 block with a subnormal quotient;  log_softmax writes
``(x - m) - log1p(t)`` in a second sweep over the slab, still in cache.  So x
is read once from memory and exp computed once per element.

Special values: the max ignores nan; a running max of -inf uses the shift 0
(exp(-inf) = 0, nan stays nan); columns whose max ends at +-inf are rescanned
for nan (rare), as are blocks whose softmax divisor would overflow.
"""

import math

import numpy as np
from numba import prange

from .compile import jit, jit_alloc, jit_inl
from .exp import div_by, expneg64, maxnum, minnum
from .rows import (
    PREFETCH_MIN,
    _quotients_normal,
    _wide_below,
    cast_to,
    expt,
    log_softmax_consts,
    one_of,
    prefetch_row,
    sumscale_of,
    zero_of,
)
from .threads import kernel

_NINF = -np.inf
_INF = np.inf
_NAN = np.nan

#: bytes of a row block (rows x w); the max and exp sweeps of a block run
#: from L1 / L2
BLOCK_BYTES = 1 << 15


def col_width(q):
    """Columns per task of the one-sweep reductions (logsumexp, the loss):
    up to 256, in equal chunks."""
    return _equal_chunks(q, 256)


#: softmax / log_softmax along a middle axis take a slab's rows whole up to
#: this many bytes, wider rows in equal chunks of at most half of it, and so
#: many chunks that the threads have a task each where the chunks stay at
#: least half of it: a slab of part of each row, even one that fits L2,
#: measured up to 2x slower than whole rows that do not
#: (docs/performance-notes.md)
SOFTMAX_ROW_BYTES = 8192
#: rows of a row block of such slabs (a block's per-column work, the
#: rescaling exp and the divisors, is paid once per this many rows)
SOFTMAX_BLOCK_ROWS = 256
#: bytes of a slab (w columns x N rows) that should stay in L2 between the
#: sweeps of softmax / log_softmax, where narrower chunks are needed
SLAB_BYTES = 1 << 18


def softmax_slabs(p, n, q, itemsize, tasks):
    """(columns per task, rows per block) of softmax / log_softmax over axis
    1 of (p, n, q), for ``tasks`` threads.

    Rows of up to ``SOFTMAX_ROW_BYTES`` whole, wider ones in equal chunks of
    at most half of it (multiples of 16 columns), cut further while the
    slabs are fewer than ``tasks`` if the chunks keep half of it: by
    ``SOFTMAX_BLOCK_ROWS``.  Else slabs that fit ``SLAB_BYTES``, never below
    64 columns (the vectorized loops run 32 float32 / 16 float64 per step:
    narrower rows run their scalar remainder, which costs more than a slab
    spilling to L3), by ``block_rows``.  The values depend on the block
    rows, not on the columns per task (columns are independent)."""
    row = q * itemsize
    half = SOFTMAX_ROW_BYTES // 2
    nq = 1 if row <= SOFTMAX_ROW_BYTES else -(-row // half)
    split = max(nq, -(-tasks // p))
    if split == nq or row // split >= half:
        w = min(q, (-(-q // split) + 15) // 16 * 16)
        return w, SOFTMAX_BLOCK_ROWS
    w = SLAB_BYTES // max(1, n * itemsize)
    w = max(64, min(256, w - w % 16))
    w = _equal_chunks(q, w)
    return w, block_rows(w, itemsize)


def _equal_chunks(q, w):
    """At most w columns a task, in equal chunks of q (multiples of 8 where
    possible)."""
    if w >= q:
        return q
    nq = (q + w - 1) // w
    w = (q + nq - 1) // nq
    w = (w + 7) // 8 * 8
    return min(w, q)


def block_rows(w, itemsize):
    return max(16, min(256, BLOCK_BYTES // max(1, w * itemsize)))


# ---------------------------------------------------------------- sweeps ---
@jit
def _block_max(xp, r0, r1, q0, w, mrun, mb):
    """mb = max(mrun, max of rows r0..r1) per column (nan ignored)."""
    for q in range(w):
        mb[q] = mrun[q]
    nr = r1 - r0
    r4 = r0 + nr // 4 * 4
    for r in range(r0, r4, 4):  # four rows per pass over mb
        xa = xp[r, q0 : q0 + w]
        xb = xp[r + 1, q0 : q0 + w]
        xc = xp[r + 2, q0 : q0 + w]
        xd = xp[r + 3, q0 : q0 + w]
        for q in range(w):
            mb[q] = maxnum(mb[q], maxnum(maxnum(xa[q], xb[q]), maxnum(xc[q], xd[q])))
    for r in range(r4, r1):
        xr = xp[r, q0 : q0 + w]
        for q in range(w):
            mb[q] = maxnum(mb[q], xr[q])


@jit_inl
def _ask_ahead(xp, r, nr, q0, w):
    """Ask for rows r + nr .. r + nr + 3 of xp (columns q0..q0+w): the rows
    of the next block of nr rows that sit where this pass's four rows sit.

    A block's max sweep is its one sweep over memory; its exp sweep (and
    softmax's scale, log_softmax's store) run in cache and read none, so the
    hardware prefetcher, which follows misses, idles through them and the
    next block's max sweep waits on memory.  Asked for during the exp
    sweep, whose exps keep the core busy, the next block arrives while it
    runs (as the narrow kernels' ``_block_maxima``)."""
    for k in range(r + nr, min(r + nr + 4, xp.shape[0])):
        prefetch_row(xp[k, q0 : q0 + w])


@jit
def _advance(w, mrun, mb, sh, tt, cc, first):
    """Rescale the running (T, C) from max mrun to mb; set mrun = mb and the
    exp shift sh (0 where the max is still -inf).  For the ``first`` block
    (T = C = 0) nothing is rescaled: no float64 exp per column (with few rows,
    one block, it cost as much as the block's own exps)."""
    z = zero_of(mb)
    if first:
        for q in range(w):
            mrun[q] = mb[q]
            sh[q] = z if mb[q] == _NINF else mb[q]
        return
    for q in range(w):
        mo = np.float64(mrun[q])
        mn = np.float64(mb[q])
        f = expneg64(mo - mn)
        grew = mn != mo
        tt[q] = (tt[q] + cc[q]) * f if grew else tt[q]
        cc[q] = 0.0 if grew else cc[q]
        mrun[q] = mb[q]
        sh[q] = z if mb[q] == _NINF else mb[q]


@jit
def _block_sum(xp, r0, r1, q0, w, sh, tb, cb, ahead=False):
    """tb = sum of the terms ``expt(x - sh)`` (exp(x - sh) * 2**K: normal where
    exp(x - sh) is not, see ``_add_block``) over x < sh, cb = count of
    x >= sh (x's dtype)."""
    z = zero_of(xp)
    o = one_of(xp)
    for q in range(w):
        tb[q] = z
        cb[q] = z
    r4 = r0 + (r1 - r0) // 4 * 4
    for r in range(r0, r4, 4):  # four rows per pass over tb, cb
        xa = xp[r, q0 : q0 + w]
        xb = xp[r + 1, q0 : q0 + w]
        xc = xp[r + 2, q0 : q0 + w]
        xd = xp[r + 3, q0 : q0 + w]
        for q in range(w):
            s = sh[q]
            da = xa[q] - s
            db = xb[q] - s
            dc = xc[q] - s
            dd = xd[q] - s
            ea = expt(da)
            eb = expt(db)
            ec = expt(dc)
            ed = expt(dd)
            ta = (z if da >= z else ea) + (z if db >= z else eb)
            tc = (z if dc >= z else ec) + (z if dd >= z else ed)
            tb[q] += ta + tc
            ca = (o if da >= z else z) + (o if db >= z else z)
            cc = (o if dc >= z else z) + (o if dd >= z else z)
            cb[q] += ca + cc
        if ahead:
            _ask_ahead(xp, r, r1 - r0, q0, w)
    for r in range(r4, r1):
        xr = xp[r, q0 : q0 + w]
        for q in range(w):
            d = xr[q] - sh[q]
            e = expt(d)
            tb[q] += z if d >= z else e
            cb[q] += o if d >= z else z


@jit
def _block_store(xp, op, r0, r1, q0, w, sh, tb, lo, ahead=False):
    """softmax's exp sweep: op = e = ``expt(x - sh)`` (scaled by 2**K, so
    normal where exp(x - sh) is not: a float32 multiply with a subnormal
    result takes a microcode assist on Intel cores, ~150 cycles), tb = the
    block's sum of all of them (softmax needs 1 + t, not t apart from the
    max's 1: no count, so fewer operations a term than ``_block_sum``); lo
    = min(lo, the smallest nonzero one) (nan ignored; a zero term,
    exp(-inf), gives a zero quotient, exactly and without an assist:
    ``slab_softmax_scale``)."""
    z = zero_of(xp)
    inf = cast_to(xp, _INF)
    for q in range(w):
        tb[q] = z
    r4 = r0 + (r1 - r0) // 4 * 4
    for r in range(r0, r4, 4):  # four rows per pass over tb
        xa = xp[r, q0 : q0 + w]
        xb = xp[r + 1, q0 : q0 + w]
        xc = xp[r + 2, q0 : q0 + w]
        xd = xp[r + 3, q0 : q0 + w]
        oa = op[r, q0 : q0 + w]
        ob = op[r + 1, q0 : q0 + w]
        oc = op[r + 2, q0 : q0 + w]
        od = op[r + 3, q0 : q0 + w]
        for q in range(w):
            s = sh[q]
            ea = expt(xa[q] - s)
            eb = expt(xb[q] - s)
            ec = expt(xc[q] - s)
            ed = expt(xd[q] - s)
            oa[q] = ea
            ob[q] = eb
            oc[q] = ec
            od[q] = ed
            tb[q] += (ea + eb) + (ec + ed)
            pa = ea if ea > z else inf
            pb = eb if eb > z else inf
            pc = ec if ec > z else inf
            pd = ed if ed > z else inf
            lo[q] = minnum(lo[q], minnum(minnum(pa, pb), minnum(pc, pd)))
        if ahead:
            _ask_ahead(xp, r, r1 - r0, q0, w)
    for r in range(r4, r1):
        xr = xp[r, q0 : q0 + w]
        orow = op[r, q0 : q0 + w]
        for q in range(w):
            e = expt(xr[q] - sh[q])
            orow[q] = e
            tb[q] += e
            lo[q] = minnum(lo[q], e if e > z else inf)


@jit
def _add_block(w, tt, cc, tb, cb):
    """T += the block's sum of terms scaled back by 2**-K (exact), C += its count."""
    for q in range(w):
        tt[q] += np.float64(tb[q]) * sumscale_of(tb)
        cc[q] += np.float64(cb[q])


@jit_alloc
def slab_pairs(x, p, q0, w, rows, mv, tv, out, shifts, lows, store, ahead):
    """(m, t) per column of x[p, :, q0:q0+w] into mv, tv (float64, length w).

    With ``store``, out[p] gets e = ``expt(x - shift)``, shifts[b, :] the
    shift of row block b and lows[b, :] its smallest e, and t is the sum of
    all terms less 1 (exactly: the sum is at least 1), softmax's divisor
    less 1.  ``ahead``: the exp sweep asks for the next block's rows
    (``_ask_ahead``).
    """
    n = x.shape[1]
    xp = x[p]
    mrun = np.empty(w, dtype=x.dtype)
    mb = np.empty(w, dtype=x.dtype)
    sh = np.empty(w, dtype=x.dtype)
    tb = np.empty(w, dtype=x.dtype)
    cb = np.empty(w, dtype=x.dtype)
    tt = tv  # float64 scratch until the end: T in tv, C in mv
    cc = mv
    z = zero_of(x)
    for q in range(w):
        mrun[q] = cast_to(x, _NINF)
        tt[q] = 0.0
        cc[q] = 0.0
    b = 0
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        _block_max(xp, r0, r1, q0, w, mrun, mb)
        _advance(w, mrun, mb, sh, tt, cc, r0 == 0)
        if store:
            for q in range(w):
                cb[q] = cast_to(x, _INF)
            _block_store(xp, out[p], r0, r1, q0, w, sh, tb, cb, ahead)
            for q in range(w):
                # the running max, not sh: where it is still -inf (every
                # element so far -inf) sh is 0 and the block's e are 0, and
                # s * exp(m - 0) for the column's max m far below 0 would
                # underflow float32 to a divisor of 0 (0 / 0: nan); -inf
                # sends the block to the scale's recomputation (0 / s)
                shifts[b, q] = mrun[q]
                lows[b, q] = cb[q]
                cb[q] = z  # (T sums every term: t = T - 1)
        else:
            _block_sum(xp, r0, r1, q0, w, sh, tb, cb, ahead)
        _add_block(w, tt, cc, tb, cb)
        b += 1
    for q in range(w):
        t = tt[q] + (cc[q] - 1.0)
        tv[q] = t
        mv[q] = np.float64(mrun[q])
    for q in range(w):
        m = mv[q]
        if m == _NINF or m == _INF:
            nan = False
            for r in range(n):
                v = xp[r, q0 + q]
                if v != v:
                    nan = True
            mv[q], tv[q] = (_NAN, _NAN) if nan else (m, 0.0)
        elif tv[q] != tv[q]:
            mv[q] = _NAN


#: an unscaled divisor S e^(M - shift) above this is recomputed (its block
#: lies far below the column's max): scaled by 2**K it and its reciprocal stay
#: normal in float32 (2**64 * 1e18 < 2**126)
_BIG_DIVISOR = 1e18


@jit_alloc
def slab_softmax_scale(x, out, p, q0, w, rows, mv, tv, shifts, lows):
    """out[p, :, q0:q0+w] /= S e^(M - shift) 2**K per row block, S = 1 + t
    (the stored terms are ``expt``'s, scaled by 2**K).

    Columns scipy gives nan (nan, +-inf max) get nan; a block whose divisor
    would overflow (far below the column's max, or all -inf up to it: shift
    -inf) is recomputed from x.  A block with a subnormal quotient (its
    smallest term, lows, below its divisor times the smallest normal) is
    divided in float64 and rounded: the same rounding, no assist
    (``rows._divide_row``).
    """
    n = x.shape[1]
    xp = x[p]
    op = out[p]
    dv = np.empty(w, dtype=x.dtype)
    rv = np.empty(w, dtype=x.dtype)
    rw = np.empty(w)
    scale = 1.0 / sumscale_of(x)  # 2**K
    b = 0
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        slow = False
        normal = True
        for q in range(w):
            d = _block_divisor(mv[q], tv[q], shifts[b, q])
            big = d > _BIG_DIVISOR
            slow = slow or big
            dv[q] = cast_to(x, 1.0 if big else d * scale)
            rv[q] = one_of(x) / dv[q]
            normal = normal and _quotients_normal(x, lows[b, q], dv[q])
        if normal:
            for r in range(r0, r1):
                orow = op[r, q0 : q0 + w]
                for q in range(w):
                    orow[q] = div_by(orow[q], dv[q], rv[q])
        else:
            _divide_block_wide(op, r0, r1, q0, dv, rw)
        if slow:
            for q in range(w):
                if _block_divisor(mv[q], tv[q], shifts[b, q]) > _BIG_DIVISOR:
                    _recompute_column(xp, op, r0, r1, q0 + q, mv[q], (1.0 + tv[q]) * scale)
        b += 1


@jit_inl
def _block_divisor(m, t, shift):
    """S e^(m - shift), S = 1 + t: a block's divisor, unscaled (float64), of
    a column whose pair is (m, t); nan where scipy gives nan (a nan, +inf or
    only -inf column)."""
    if m != m or t != t or m == _INF or m == _NINF:
        return _NAN
    s = 1.0 + t
    sh = np.float64(shift)
    return s if sh == m else s * np.exp(m - sh)


@jit
def _divide_block_wide(op, r0, r1, q0, dv, rw):
    """op[r0:r1, q0:q0 + w] /= dv (w = len(dv)) in float64 (``_divide_wide_cols``);
    rw: float64 scratch for the reciprocals."""
    w = dv.shape[0]
    _reciprocals64(dv, rw)
    for r in range(r0, r1):
        _divide_wide_cols(op[r, q0 : q0 + w], dv, rw)


@jit_inl
def _reciprocals64(dv, rw):
    """rw[:w] = 1 / dv in float64 (w = len(dv))."""
    for q in range(dv.shape[0]):
        rw[q] = 1.0 / np.float64(dv[q])


@jit_inl
def _divide_wide_cols(orow, dv, rw):
    """orow /= dv elementwise in float64 (rw = 1 / dv, float64), rounded once
    more to orow's dtype (``rows._divide_wide``, a divisor per column)."""
    for q in range(orow.shape[0]):
        orow[q] = cast_to(orow, div_by(np.float64(orow[q]), np.float64(dv[q]), rw[q]))


#: ``_divide_cols``' modes: check the row's quotients, or they are known
#: normal (or zero), or known to hold a subnormal one
CHECK_ROWS, NORMAL, WIDE = 0, 1, 2


@jit_inl
def _divide_cols(orow, dv, rv, fv, rw, mode):
    """orow /= dv elementwise, correctly rounded (rv = 1 / dv): by ``div_by``
    where every quotient is normal or zero (orow >= fv = dv * the smallest
    normal quotient, or 0: checked with ``CHECK_ROWS``), else in float64
    (``_divide_wide_cols``, rw = 1 / dv in float64: the same rounding, no
    assist).  float64 has no wider type: fv is 0."""
    w = orow.shape[0]
    z = zero_of(orow)
    low = 1 if mode == WIDE else 0
    if mode == CHECK_ROWS and _wide_below(orow) != 0.0:
        for q in range(w):
            v = orow[q]
            low += 1 if (v < fv[q]) & (v > z) else 0
    if low == 0:
        for q in range(w):
            orow[q] = div_by(orow[q], dv[q], rv[q])
    else:
        _divide_wide_cols(orow, dv, rw)


@jit
def _recompute_column(xp, op, r0, r1, c, m, d):
    """op[r0:r1, c] = e / d from x, e = ``expt(x - m)`` with the column's
    max m, d its scaled divisor (float64), the quotients rounded from float64."""
    mx = cast_to(xp, m)
    rd = 1.0 / d
    for r in range(r0, r1):
        e = np.float64(expt(xp[r, c] - mx))
        op[r, c] = cast_to(op, div_by(e, d, rd))


@jit_alloc
def slab_log_softmax(x, out, p, q0, w, mv, tv):
    """out[p, :, q0:q0+w] = (x - c1) - c2, constants per column in out's dtype:
    the two roundings of the rows' ``log_softmax_store``, and float32 stays
    float32 (float64 constants cost two conversions per element)."""
    n = x.shape[1]
    xp = x[p]
    op = out[p]
    c1 = np.empty(w, dtype=out.dtype)
    c2 = np.empty(w, dtype=out.dtype)
    for q in range(w):
        a1, a2 = log_softmax_consts(mv[q], tv[q])
        c1[q] = cast_to(out, a1)
        c2[q] = cast_to(out, a2)
    for r in range(n):
        xr = xp[r, q0 : q0 + w]
        orow = op[r, q0 : q0 + w]
        for q in range(w):
            orow[q] = (xr[q] - c1[q]) - c2[q]


# --------------------------------------------------------------- drivers ---
#: softmax / log_softmax slabs of rows of at least this many bytes ask for
#: their next row block (``cols_ahead``): float32 slabs of 64 columns ran
#: 0.89-1.02x on two threads with it (docs/performance-notes.md)
AHEAD_ROW_BYTES = 512


@jit_inl
def cols_ahead(x, w, writes):
    """Whether ``slab_pairs`` on slabs of w columns asks for its next row
    block ahead (``_ask_ahead``): in arrays of ``PREFETCH_MIN`` bytes or
    more (smaller ones are mostly in cache already); for an op that
    ``writes`` the slab (softmax, log_softmax) in rows of
    ``AHEAD_ROW_BYTES`` or more."""
    wide = not writes or w * x.itemsize >= AHEAD_ROW_BYTES
    return wide and x.size * x.itemsize >= PREFETCH_MIN


@kernel(alloc=True)
def pairs_cols(x, w, rows, mo, to):
    """(m, t) over axis 1 of x (P, N, Q) into mo, to (P, Q) float64."""
    p_, q_ = x.shape[0], x.shape[2]
    nq = (q_ + w - 1) // w
    ahead = cols_ahead(x, w, False)
    for k in prange(p_ * nq):
        p = k // nq
        q0 = (k % nq) * w
        q1 = min(q_, q0 + w)
        none = np.empty((1, 1, 1), dtype=x.dtype)  # no stores without softmax
        shifts = np.empty((1, 1), dtype=x.dtype)
        mp, tp = mo[p, q0:q1], to[p, q0:q1]
        slab_pairs(x, p, q0, q1 - q0, rows, mp, tp, none, shifts, shifts, False, ahead)


@kernel(alloc=True)
def softmax_cols(x, out, w, rows, log):
    """softmax / log_softmax over axis 1 of x (P, N, Q), slab by slab."""
    p_, n_, q_ = x.shape
    nq = (q_ + w - 1) // w
    nb = (n_ + rows - 1) // rows
    ahead = cols_ahead(x, w, True)
    for k in prange(p_ * nq):
        p = k // nq
        q0 = (k % nq) * w
        q1 = min(q_, q0 + w)
        mv = np.empty(q1 - q0)
        tv = np.empty(q1 - q0)
        if log:
            none = np.empty((1, 1, 1), dtype=x.dtype)
            shifts = np.empty((1, 1), dtype=x.dtype)
            slab_pairs(x, p, q0, q1 - q0, rows, mv, tv, none, shifts, shifts, False, ahead)
            slab_log_softmax(x, out, p, q0, q1 - q0, mv, tv)
        else:
            shifts = np.empty((nb, q1 - q0), dtype=x.dtype)
            lows = np.empty((nb, q1 - q0), dtype=x.dtype)
            slab_pairs(x, p, q0, q1 - q0, rows, mv, tv, out, shifts, lows, True, ahead)
            slab_softmax_scale(x, out, p, q0, q1 - q0, rows, mv, tv, shifts, lows)


# ------------------------------------------------------ folded columns ---
# A middle axis with few columns (Q * itemsize < FOLD_BYTES: float32 Q < 32,
# float64 Q < 16) leaves the sweeps above too narrow to vectorize (their
# loops run 32 float32 / 16 float64 a step; a 4-column slab runs scalar).
# A slab (N, Q) is C-contiguous, so k consecutive rows are one row of k * Q
# elements: the slab is read as (N // k, k * Q) "folded"
# rows (plus N % k rows of Q), virtual column v holding real column v % Q.
# The sweeps run on the folded rows at full width; per real column the
# folds are combined: first the max (a max pass over the piece), then, with
# that max as every fold's shift, the sums and counts of the exp sweep are
# added up.  So no pair is merged (no exp) per fold, and a piece (a range of
# rows of one slab, sized for L2) is read from memory once.
FOLD_BYTES = 128
#: bytes of a piece: its two sweeps (max, exp) run from L2
FOLD_PIECE_BYTES = 1 << 18


def fold_rows(q, itemsize):
    """k: rows of q columns read as one folded row of k * q elements, the
    least multiple of FOLD_BYTES (the vectorized loops' step).  k is a power
    of two, so folds combine by halving (``_fold_max``).  (Wider folds, up to
    2 KiB, measured slower: fewer rows of the same per-row work.)"""
    v = FOLD_BYTES // itemsize
    return v // math.gcd(q, v)


def folded(n, q, itemsize):
    """True when a middle axis of n rows of q columns is read folded (with
    fewer rows than a fold, as narrow as before: the old sweeps)."""
    return 0 < q * itemsize < FOLD_BYTES and n >= fold_rows(q, itemsize)


def fold_pieces(p, n, q, k, itemsize, nthreads):
    """(piece rows, pieces per slab): pieces of at most FOLD_PIECE_BYTES, a
    multiple of k rows, smaller (down to 16k elements) where the slabs would
    leave threads idle."""
    piece = max(k, FOLD_PIECE_BYTES // (q * itemsize) // k * k)
    want = 4 * nthreads
    if nthreads > 1 and 0 < p * -(-n // piece) < want:
        per = max(-(-n // -(-want // p)), -(-(1 << 14) // q))
        piece = min(piece, -(-per // k) * k)
    piece = min(piece, -(-n // k) * k)
    return piece, -(-n // piece)


def fold_tasks(items, item_size):
    """Tasks for ``items`` pieces of ``item_size`` elements: each task takes a
    run of pieces of about 16k elements or more (its scratch is allocated
    once; a slab of 1024 elements a task spent half its time allocating)."""
    return max(1, min(items, items * item_size >> 14))


@jit_alloc  # returns views: their references must be counted
def _fold_views(x, p, r0, r1, k):
    """Rows r0..r1 of slab p as (folded rows (n1, k * Q), the rest (R, Q))."""
    q = x.shape[2]
    seg = x[p].reshape(x.shape[1] * q)[r0 * q : r1 * q]
    n1 = (r1 - r0) // k
    xm = seg[: n1 * k * q].reshape((n1, k * q))
    xr = seg[n1 * k * q :].reshape((r1 - r0 - n1 * k, q))
    return xm, xr


@jit
def _column_has_nan(xm, xr, qq):
    q = xr.shape[1]
    for r in range(xm.shape[0]):
        for v in range(qq, xm.shape[1], q):
            if xm[r, v] != xm[r, v]:
                return True
    for r in range(xr.shape[0]):
        if xr[r, qq] != xr[r, qq]:
            return True
    return False


@jit
def _fold_max(a, w, q):
    """a[:q] = the max over the folds of a[:w] (w = k * q, k a power of two),
    by halving: vectorized loops (nested loops over q columns ran scalar)."""
    while w > q:
        h = w // 2
        for v in range(h):
            a[v] = maxnum(a[v], a[v + h])
        w = h


@jit
def _fold_add(a, w, q):
    """a[:q] = the sum over the folds of a[:w], by halving."""
    while w > q:
        h = w // 2
        for v in range(h):
            a[v] += a[v + h]
        w = h


@jit
def _fold_rep(a, w, q):
    """a[:w] = a[:q] repeated (every fold of a column gets its value), by doubling."""
    c = q
    while c < w:
        for v in range(c):
            a[c + v] = a[v]
        c *= 2


@jit
def fold_pairs(xm, xr, rows, mq, tq, xs, fs, om, orr, store):
    """(m, t) per real column of a folded piece into mq, tq (float64, Q).

    With ``store`` (softmax), om / orr get e = ``expt(x - m)``, xs[4] the
    smallest nonzero e per folded column, and t is the sum of every term
    less 1 (softmax's divisor less 1).  Scratch: xs (5, k * Q) of x's dtype,
    fs (2, k * Q) float64."""
    n1, wv = xm.shape
    q = xr.shape[1]
    nr = xr.shape[0]
    ninf = cast_to(xm, _NINF)
    z = zero_of(xm)
    mrun, sh, tb, cb, lo = xs[0, :wv], xs[1, :wv], xs[2, :wv], xs[3, :wv], xs[4, :wv]
    tt, cc = fs[0, :wv], fs[1, :wv]
    for v in range(wv):
        mrun[v] = ninf
    for b0 in range(0, n1, rows):
        _block_max(xm, b0, min(b0 + rows, n1), 0, wv, mrun, mrun)
    _fold_max(mrun, wv, q)
    mx = mrun[:q]
    if nr > 0:
        _block_max(xr, 0, nr, 0, q, mx, mx)
    for qq in range(q):  # every fold's shift: its column's max
        sh[qq] = z if mx[qq] == _NINF else mx[qq]
    _fold_rep(sh, wv, q)
    for v in range(wv):
        tt[v] = 0.0
        cc[v] = 0.0
        cb[v] = z  # (softmax sums every term: no count)
        lo[v] = cast_to(xm, _INF)
    for b0 in range(0, n1, rows):
        if store:
            _block_store(xm, om, b0, min(b0 + rows, n1), 0, wv, sh, tb, lo)
        else:
            _block_sum(xm, b0, min(b0 + rows, n1), 0, wv, sh, tb, cb)
        _add_block(wv, tt, cc, tb, cb)
    _fold_add(tt, wv, q)
    _fold_add(cc, wv, q)
    if nr > 0:
        if store:
            _block_store(xr, orr, 0, nr, 0, q, sh, tb, lo)
        else:
            _block_sum(xr, 0, nr, 0, q, sh, tb, cb)
        _add_block(q, tt, cc, tb, cb)
    for qq in range(q):
        m = np.float64(mx[qq])
        t = tt[qq] + (cc[qq] - 1.0)
        if m == _NINF or m == _INF:
            m, t = (_NAN, _NAN) if _column_has_nan(xm, xr, qq) else (m, 0.0)
        elif t != t:
            m = _NAN
        mq[qq] = m
        tq[qq] = t


@jit
def _apply_rows(xp, op, c1, c2, rv, fv, rw, log, mode):
    """op = (x - c1) - c2 (log) or e / c2, e = ``expt(x - c1)`` (or op
    itself, stored, ``mode`` > 0), per column: the scaled divisor c2, rv =
    1 / c2, fv, rw and mode (``_divide_cols``)."""
    w = xp.shape[1]
    for r in range(xp.shape[0]):
        xr = xp[r]
        orow = op[r]
        if log:
            for v in range(w):
                orow[v] = (xr[v] - c1[v]) - c2[v]
        else:
            if mode == CHECK_ROWS:
                for v in range(w):
                    orow[v] = expt(xr[v] - c1[v])
            _divide_cols(orow, c2, rv, fv, rw, mode)


@jit
def fold_apply(xm, xr, om, orr, mq, tq, log, xs, rw, stored):
    """softmax / log_softmax of a folded piece given its columns' pairs
    (``stored``: om / orr hold softmax's scaled exps already, xs[4] their
    smallest nonzero one per folded column: ``fold_pairs``); scratch xs
    (4 rows or more, k * Q; 5 when stored) of the output's dtype, rw
    (k * Q) float64."""
    wv = xm.shape[1]
    q = xr.shape[1]
    c1, c2, rv, fv = xs[0, :wv], xs[1, :wv], xs[2, :wv], xs[3, :wv]
    for qq in range(q):
        m, t = mq[qq], tq[qq]
        if log:
            a1, a2 = log_softmax_consts(m, t)
        else:  # scipy: nan for a nan, +inf or only -inf column
            bad = m != m or t != t or m == _INF or m == _NINF
            a1, a2 = (_NAN, _NAN) if bad else (m, (1.0 + t) / sumscale_of(om))
        c1[qq] = cast_to(om, a1)
        c2[qq] = cast_to(om, a2)
        rv[qq] = one_of(om) / c2[qq]
        fv[qq] = cast_to(om, np.float64(c2[qq]) * _wide_below(om))
    _fold_rep(c1, wv, q)
    _fold_rep(c2, wv, q)
    _fold_rep(rv, wv, q)
    _fold_rep(fv, wv, q)
    rw = rw[:wv]
    _reciprocals64(c2, rw)
    mode = CHECK_ROWS
    if stored:
        lo = xs[4, :wv]
        normal = True
        for v in range(wv):
            normal = normal and lo[v] >= fv[v]
        mode = NORMAL if normal else WIDE
    _apply_rows(xm, om, c1, c2, rv, fv, rw, log, mode)
    if xr.shape[0] > 0:
        _apply_rows(xr, orr, c1, c2, rv, fv, rw, log, mode)


@jit_alloc
def _fold_scratch(x, k):
    """A task's scratch for ``fold_pairs`` (once per task, not per slab)."""
    q = x.shape[2]
    return np.empty((5, k * q), dtype=x.dtype), np.empty((2, k * q)), np.empty(q), np.empty(q)


@kernel(alloc=True)
def pairs_folded(x, k, piece, rows, ntask, mp, tp):
    """(m, t) over axis 1 of x (P, N, Q), Q folded: mp, tp (P, Q, pieces);
    ntask tasks, each a run of (slab, piece) items."""
    p_, n_, q_ = x.shape
    npc = mp.shape[2]
    items = p_ * npc
    for task in prange(ntask):
        xs, fs, mq, tq = _fold_scratch(x, k)
        for it in range(task * items // ntask, (task + 1) * items // ntask):
            p = it // npc
            i = it % npc
            xm, xr = _fold_views(x, p, i * piece, min(n_, (i + 1) * piece), k)
            fold_pairs(xm, xr, rows, mq, tq, xs, fs, xs[:0], xs[:0], False)  # (no stores)
            for qq in range(q_):
                mp[p, qq, i] = mq[qq]
                tp[p, qq, i] = tq[qq]


@kernel(alloc=True)
def softmax_folded(x, out, k, rows, ntask, log):
    """softmax / log_softmax over axis 1 of x (P, N, Q), Q folded, a run of
    slabs a task (each slab's pairs, then its output while it is in cache;
    softmax stores its exps with the sums, then divides them)."""
    p_, n_ = x.shape[0], x.shape[1]
    for task in prange(ntask):
        xs, fs, mq, tq = _fold_scratch(x, k)
        for p in range(task * p_ // ntask, (task + 1) * p_ // ntask):
            xm, xr = _fold_views(x, p, 0, n_, k)
            om, orr = _fold_views(out, p, 0, n_, k)
            fold_pairs(xm, xr, rows, mq, tq, xs, fs, om, orr, not log)
            fold_apply(xm, xr, om, orr, mq, tq, log, xs, fs[0], not log)


@kernel(alloc=True)
def apply_folded(x, out, k, piece, ntask, mo, to, log):
    """softmax / log_softmax over axis 1 of x (P, N, Q), Q folded, by pieces,
    given the pairs mo, to (P, Q)."""
    p_, n_, q_ = x.shape
    npc = -(-n_ // piece)
    items = p_ * npc
    for task in prange(ntask):
        xs = np.empty((4, k * q_), dtype=out.dtype)
        rw = np.empty(k * q_)
        for it in range(task * items // ntask, (task + 1) * items // ntask):
            p = it // npc
            r0 = (it % npc) * piece
            r1 = min(n_, r0 + piece)
            xm, xr = _fold_views(x, p, r0, r1, k)
            om, orr = _fold_views(out, p, r0, r1, k)
            fold_apply(xm, xr, om, orr, mo[p], to[p], log, xs, rw, False)
