"""Reductions along a middle axis: x (P, N, Q) reduced over N, read in memory order.

A task is one slab ``x[p, :, q0:q1]`` (``w`` columns, sized by the caller so
that a slab of x or of the output stays in L2).  Its rows are taken in blocks
of ``rows`` rows; per block, vectorized over the columns:

* a max sweep: the running max per column, ``M = max(M, block max)``;
* when ``M`` grew, the running pair is rescaled (``T, C -> (T + C) e^(M_old -
  M_new), 0``: the pair algebra's merge, done for all columns of the block at
  once, one float64 exp per column per block);
* an exp sweep with the shift ``M``: the block's sum of ``exp(x - M)`` over
  ``x < M`` in x's dtype (``rows`` terms) and the count of ``x >= M``, added
  into float64 ``T`` and ``C``; softmax instead sums all the block's terms
  (it needs ``1 + t``, not ``t`` apart from the max's 1), stores ``e = exp(x
  - M)`` in out and records the block's shift.

The pair is ``(M, T + C - 1)`` (the log1p form: t excludes the max's own 1).
softmax then scales each block of out in place by ``1 / (S e^(M - shift))``
(``S = 1 + t``; exactly ``e / S`` where the block's shift is the final max,
i.e. everywhere except blocks before the column's max);  log_softmax writes
``(x - m) - log1p(t)`` in a second sweep over the slab, still in cache.  So x
is read once from memory and exp computed once per element.

Special values: the max ignores nan; a running max of -inf uses the shift 0
(exp(-inf) = 0, nan stays nan); columns whose max ends at +-inf are rescanned
for nan (rare), as are blocks whose softmax divisor would overflow.
"""

import numpy as np
from numba import prange

from ._exp import div_by, expneg64, maxnum
from ._kernels import cast_to, expn, jit, log_softmax_consts, one_of, zero_of
from ._threads import kernel

_NINF = -np.inf
_INF = np.inf
_NAN = np.nan

#: bytes of one slab (w columns x N rows) that should stay in L2 between the
#: sweeps of softmax / log_softmax
SLAB_BYTES = 1 << 18
#: bytes of a row block (rows x w); the max and exp sweeps of a block run
#: from L1 / L2
BLOCK_BYTES = 1 << 15


def col_width(n, q, itemsize, second_pass):
    """Columns per task: up to 256; with a second pass, fewer if the slab
    would not fit SLAB_BYTES, but never below 64 (the vectorized loops run
    32 float32 / 16 float64 per step: narrower rows run their scalar
    remainder, which costs more than a slab spilling to L3)."""
    w = 256
    if second_pass:
        w = SLAB_BYTES // max(1, n * itemsize)
        w = max(64, min(256, w - w % 16))
    if w >= q:
        return q
    # equal chunks, multiples of 8 where possible
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
    r4 = r0 + (r1 - r0) // 4 * 4
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


@jit
def _advance(w, mrun, mb, sh, tt, cc):
    """Rescale the running (T, C) from max mrun to mb; set mrun = mb and the
    exp shift sh (0 where the max is still -inf)."""
    z = zero_of(mb)
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
def _block_sum(xp, r0, r1, q0, w, sh, tb, cb):
    """tb = sum exp(x - sh) over x < sh, cb = count of x >= sh (x's dtype)."""
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
            ea = expn(da)
            eb = expn(db)
            ec = expn(dc)
            ed = expn(dd)
            ta = (z if da >= z else ea) + (z if db >= z else eb)
            tc = (z if dc >= z else ec) + (z if dd >= z else ed)
            tb[q] += ta + tc
            ca = (o if da >= z else z) + (o if db >= z else z)
            cc = (o if dc >= z else z) + (o if dd >= z else z)
            cb[q] += ca + cc
    for r in range(r4, r1):
        xr = xp[r, q0 : q0 + w]
        for q in range(w):
            d = xr[q] - sh[q]
            e = expn(d)
            tb[q] += z if d >= z else e
            cb[q] += o if d >= z else z


@jit
def _block_store(xp, op, r0, r1, q0, w, sh, tb):
    """softmax's exp sweep: op = e = exp(x - sh), tb = the block's sum of
    all of them (softmax needs 1 + t, not t apart from the max's 1: no
    count, so fewer operations a term than ``_block_sum``)."""
    z = zero_of(xp)
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
            ea = expn(xa[q] - s)
            eb = expn(xb[q] - s)
            ec = expn(xc[q] - s)
            ed = expn(xd[q] - s)
            oa[q] = ea
            ob[q] = eb
            oc[q] = ec
            od[q] = ed
            tb[q] += (ea + eb) + (ec + ed)
    for r in range(r4, r1):
        xr = xp[r, q0 : q0 + w]
        orow = op[r, q0 : q0 + w]
        for q in range(w):
            e = expn(xr[q] - sh[q])
            orow[q] = e
            tb[q] += e


@jit
def _add_block(w, tt, cc, tb, cb):
    for q in range(w):
        tt[q] += np.float64(tb[q])
        cc[q] += np.float64(cb[q])


@jit
def slab_pairs(x, p, q0, w, rows, mv, tv, out, shifts, store):
    """(m, t) per column of x[p, :, q0:q0+w] into mv, tv (float64, length w).

    With ``store``, out[p] gets e = exp(x - shift) and shifts[b, :] the shift
    of row block b, and t is the sum of all terms less 1 (exactly: the sum is
    at least 1), softmax's divisor less 1.
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
        _advance(w, mrun, mb, sh, tt, cc)
        if store:
            _block_store(xp, out[p], r0, r1, q0, w, sh, tb)
            for q in range(w):
                shifts[b, q] = sh[q]
                cb[q] = z  # (T sums every term: t = T - 1)
        else:
            _block_sum(xp, r0, r1, q0, w, sh, tb, cb)
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


@jit
def slab_softmax_scale(x, out, p, q0, w, rows, mv, tv, shifts):
    """out[p, :, q0:q0+w] /= S e^(M - shift) per row block, S = 1 + t.

    Columns scipy gives nan (nan, +-inf max) get nan; a block whose divisor
    would overflow (far below the column's max) is recomputed from x.
    """
    n = x.shape[1]
    xp = x[p]
    op = out[p]
    dv = np.empty(w, dtype=x.dtype)
    rv = np.empty(w, dtype=x.dtype)
    big = cast_to(x, 1e30)  # 1 / big is a normal number in float32
    b = 0
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        slow = False
        for q in range(w):
            m, t = mv[q], tv[q]
            bad = m != m or t != t or m == _INF or m == _NINF
            s = 1.0 + t
            sh = np.float64(shifts[b, q])
            d = s if sh == m else s * np.exp(m - sh)
            d = _NAN if bad else d
            slow = slow or d > big
            dv[q] = cast_to(x, d)
            rv[q] = one_of(x) / dv[q]
        for r in range(r0, r1):
            orow = op[r, q0 : q0 + w]
            for q in range(w):
                orow[q] = div_by(orow[q], dv[q], rv[q])
        if slow:
            for q in range(w):
                if dv[q] > big:
                    s = cast_to(x, 1.0 + tv[q])
                    rs = one_of(x) / s
                    m = cast_to(x, mv[q])
                    for r in range(r0, r1):
                        op[r, q0 + q] = div_by(expn(xp[r, q0 + q] - m), s, rs)
        b += 1


@jit
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
@kernel
def pairs_cols(x, w, rows, mo, to):
    """(m, t) over axis 1 of x (P, N, Q) into mo, to (P, Q) float64."""
    p_, q_ = x.shape[0], x.shape[2]
    nq = (q_ + w - 1) // w
    for k in prange(p_ * nq):
        p = k // nq
        q0 = (k % nq) * w
        q1 = min(q_, q0 + w)
        none = np.empty((1, 1, 1), dtype=x.dtype)  # no stores without softmax
        shifts = np.empty((1, 1), dtype=x.dtype)
        slab_pairs(x, p, q0, q1 - q0, rows, mo[p, q0:q1], to[p, q0:q1], none, shifts, False)


@kernel
def softmax_cols(x, out, w, rows, log):
    """softmax / log_softmax over axis 1 of x (P, N, Q), slab by slab."""
    p_, n_, q_ = x.shape
    nq = (q_ + w - 1) // w
    nb = (n_ + rows - 1) // rows
    for k in prange(p_ * nq):
        p = k // nq
        q0 = (k % nq) * w
        q1 = min(q_, q0 + w)
        mv = np.empty(q1 - q0)
        tv = np.empty(q1 - q0)
        if log:
            none = np.empty((1, 1, 1), dtype=x.dtype)
            shifts = np.empty((1, 1), dtype=x.dtype)
            slab_pairs(x, p, q0, q1 - q0, rows, mv, tv, none, shifts, False)
            slab_log_softmax(x, out, p, q0, q1 - q0, mv, tv)
        else:
            shifts = np.empty((nb, q1 - q0), dtype=x.dtype)
            slab_pairs(x, p, q0, q1 - q0, rows, mv, tv, out, shifts, True)
            slab_softmax_scale(x, out, p, q0, q1 - q0, rows, mv, tv, shifts)
