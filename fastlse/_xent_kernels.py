"""Fused cross-entropy kernels: loss and gradient from logits in one read.

Every row (a sample's C logits) is handled while it sits in cache: a max
sweep, an exp-and-sum sweep (which also stores ``exp(x - m)`` into the
gradient row when the gradient is wanted), then one sweep that turns those
exponentials into the gradient.  Per row only a few float64 scalars are kept,
so the extra memory is O(rows): the per-row losses.

Both kinds of target reduce to one form.  With per-class coefficients ``B``
(``A = sum(B)``) and the row's ``(m, t)`` pair (see ``_kernels``)::

    loss = sum_j B_j * (m - x_j) + A * log1p(t)       # = -sum_j B_j log p_j
    grad = scale * (A * p_j - B_j),   p_j = exp(x_j - m) / (1 + t)

Class index ``y`` with smoothing ``eps`` and weights ``w``:
``B_j = (1 - eps) w_y [j == y] + eps / C * w_j``; probabilities ``q``:
``B_j = w_j * ((1 - eps) q_j + eps / C)`` (torch's definitions).  Terms whose
``B_j`` is structurally zero (the non-target classes without smoothing) are
never formed, so ``-inf`` logits there give a finite loss, as in torch;
where torch multiplies ``0 * inf`` (smoothing, soft targets), so do we.

Layouts: ``rows`` kernels take a C-contiguous ``(M, C)`` view (class axis
last); for C <= ``SMALL_C`` blocks of rows are transposed into an L1 scratch
so every sweep runs vectorized across rows.  ``cols`` kernels take
``(P, C, Q)`` (class axis in the middle, the rest of the sample index in Q)
and work on blocks of Q columns, reading memory in order, so no transposed
copy is made.

Each kernel returns the sum of the per-sample losses (float64, a prange
reduction) and writes them one by one only when asked (``per_row``, for
``reduction="none"``).

The gradient may alias the logits (``out=logits``): each element is read
before it is overwritten.  Nothing here knows about Python objects or axes.
"""

import numpy as np
from numba import prange, types
from numba.extending import overload

from ._exp import exp64, log1p32, log1p64, maxnum
from ._kernels import (
    CHUNK,
    VW,
    cast_to,
    expx,
    jit,
    jit_fast,
    one_of,
    row_max,
    row_sum_excl,
    zero_of,
)
from ._parallel import kernel

_NINF = -np.inf
#: rows per block in the small-C kernel (transposed into an L1 scratch)
SBLOCK = 256
#: classes up to this count use the small-C kernel
SMALL_C = 32
#: tasks of the small-C kernel (each allocates its scratch once; a numba
#: kernel that calls get_num_threads() cannot be cached)
MAXTASKS = 256


# ----------------------------------------------------------------------------
# row helpers (x is one row, float32 or float64)
# ----------------------------------------------------------------------------
@jit_fast
def _store_excl(x, g, m):
    """``row_sum_excl`` of a whole row that also stores g = exp(x - m).

    The last partial vector is one full overlapping vector whose stores are
    masked, so ``g`` may be ``x`` itself (nothing is read after it is written).
    """
    z = zero_of(x)
    o = one_of(x)
    hi = x.shape[0]
    total = 0.0
    cnt = 0.0
    main = hi if hi < VW else (hi // VW) * VW
    for c in range(0, main, CHUNK):
        acc = z
        k = z
        for j in range(c, min(c + CHUNK, main)):
            d = x[j] - m
            e = expx(d)
            g[j] = e
            acc += z if d >= z else e
            k += o if d >= z else z
        total += acc
        cnt += k
    if main < hi:
        acc = z
        k = z
        for i in range(VW):
            j = hi - VW + i
            keep = j >= main
            d = x[j] - m
            e = expx(d)
            g[j] = e if keep else g[j]
            acc += (z if d >= z else e) if keep else z
            k += (o if d >= z else z) if keep else z
        total += acc
        cnt += k
    return total, cnt


@jit_fast
def _wdev(x, w, m):
    """sum_j w_j * (m - x_j) in float64 (w in x's dtype)."""
    z = zero_of(x)
    n = x.shape[0]
    total = 0.0
    for c in range(0, n, CHUNK):
        acc = z
        for j in range(c, min(c + CHUNK, n)):
            acc += w[j] * (m - x[j])
        total += acc
    return total


@jit_fast
def _soft_coef(x, q, w1, w0, m):
    """(sum_j B_j (m - x_j), sum_j B_j) with B_j = w1_j q_j + w0_j, float64."""
    z = zero_of(x)
    n = x.shape[0]
    s = 0.0
    a = 0.0
    for c in range(0, n, CHUNK):
        acc = z
        acb = z
        for j in range(c, min(c + CHUNK, n)):
            b = w1[j] * q[j] + w0[j]
            acc += b * (m - x[j])
            acb += b
        s += acc
        a += acb
    return s, a


# ----------------------------------------------------------------------------
# class-index targets, class axis last: x (M, C)
# ----------------------------------------------------------------------------
@jit
def _index_row(x, y, wy, wl, wsum, keep, eps, scale, g, wg, want_grad):
    """Loss of one row with target y; writes the gradient row if wanted.

    Three sweeps while the row is in cache: max, exp-sum (storing the
    exponentials into the gradient row), gradient.  ``wl`` (x's dtype) are
    the weights of the smoothing term, ``wg`` the gradient's smoothing
    subtrahend ``scale * eps / C * w`` (g's dtype); ``keep = 1 - eps``.
    """
    n = x.shape[0]
    m = row_max(x, 0, n)
    xy = np.float64(x[y])
    mf = np.float64(m)
    smooth = eps > 0.0
    sm = _wdev(x, wl, m) if smooth else 0.0
    if want_grad:
        s, cnt = _store_excl(x, g, m)
    else:
        s, cnt = row_sum_excl(x, 0, n, m)
    t = s + (cnt - 1.0)
    lg = log1p64(t)
    loss = keep * wy * ((mf - xy) + lg)
    if smooth:
        loss += eps / n * (sm + wsum * lg)
    if want_grad:
        a = keep * wy + eps / n * wsum
        c = cast_to(g, scale * a / (1.0 + t))
        if smooth:
            for j in range(n):
                g[j] = c * g[j] - wg[j]
        else:
            for j in range(n):
                g[j] = c * g[j]
        g[y] -= cast_to(g, scale * keep * wy)
    return loss


@kernel(error_model="numpy")
def index_rows(x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad):
    """Sum of the per-row losses (float64); each into ``loss`` if ``per_row``;
    gradient rows into ``grad`` if ``want_grad``."""
    nr, n = x.shape
    keep = 1.0 - eps
    total = 0.0
    for i in prange(nr):  # numba splits the rows evenly between the threads
        y = tgt[i]
        li = 0.0
        if y == ignore:
            if want_grad:
                gz = zero_of(grad)
                for j in range(n):
                    grad[i, j] = gz
        else:
            li = _index_row(x[i], y, w[y], wl, wsum, keep, eps, scale, grad[i], wg, want_grad)
        if per_row:
            loss[i] = li
        total += li
    return total


# ----------------------------------------------------------------------------
# class-index targets, few classes: blocks of rows, vectorized across rows
# ----------------------------------------------------------------------------
def log1px(t):  # pragma: no cover - replaced by the overload in compiled code
    return np.log1p(t)


@overload(log1px)
def _log1px_ol(t):
    """log1p in t's own precision (8 float32 lanes, or 4 float64 lanes)."""
    if t == types.float32:
        return lambda t: log1p32(t)
    if t == types.float64:
        return lambda t: log1p64(t)
    return None


@kernel(error_model="numpy")
def index_rows_small(x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad):
    """As ``index_rows`` for small C (tall, narrow logits).

    Loops over C ~ 10 per row leave SIMD lanes idle and their reductions are
    latency chains; here a block of rows is copied transposed into a scratch
    ``(C, rows)`` array (in L1), and every sweep (max, exp-sum, log1p, grad)
    runs vectorized across the rows of the block.  Each task allocates its
    scratch once and runs several blocks.
    """
    nr, n = x.shape
    keep = 1.0 - eps
    smooth = eps > 0.0
    epsn = eps / n
    nblk = (nr + SBLOCK - 1) // SBLOCK
    ntask = min(nblk, MAXTASKS)
    per = (nblk + ntask - 1) // ntask
    total = 0.0
    for tk in prange(ntask):
        xt = np.empty((n, SBLOCK), dtype=x.dtype)
        mv = np.empty(SBLOCK, dtype=x.dtype)
        acc = np.empty(SBLOCK, dtype=x.dtype)
        cnt = np.empty(SBLOCK, dtype=x.dtype)
        tv = np.empty(SBLOCK)
        xyv = np.empty(SBLOCK)
        smv = np.empty(SBLOCK)
        bsum = 0.0
        for b in range(tk * per, min(nblk, (tk + 1) * per)):
            r0 = b * SBLOCK
            nb = min(nr, r0 + SBLOCK) - r0
            for r in range(nb):
                i = r0 + r
                for j in range(n):
                    xt[j, r] = x[i, j]
            for r in range(nb):
                y = tgt[r0 + r]
                xyv[r] = x[r0 + r, y] if y != ignore else 0.0
            _block_max(xt, nb, mv)
            if smooth:
                for r in range(nb):
                    smv[r] = 0.0
                for j in range(n):
                    wj = wl[j]
                    for r in range(nb):
                        smv[r] += wj * (mv[r] - xt[j, r])
            _block_exp(xt, nb, mv, acc, cnt)
            for r in range(nb):
                acc[r] = log1px(acc[r] + (cnt[r] - one_of(acc)))  # lg, in x's dtype
            for r in range(nb):
                i = r0 + r
                y = tgt[i]
                lg = np.float64(acc[r])
                wy = w[y] if y != ignore else 0.0
                lo = keep * wy * ((np.float64(mv[r]) - xyv[r]) + lg)
                if smooth:
                    lo += epsn * (smv[r] + wsum * lg)
                lo = lo if y != ignore else 0.0
                if per_row:
                    loss[i] = lo
                bsum += lo
                # the gradient's scale: exp(-lse) relative to m is 1 / (1 + t) = exp(-lg)
                tv[r] = scale * (keep * wy + epsn * wsum)
            if want_grad:
                _block_grad(xt, nb, acc, tv, wg, grad, r0)
                for r in range(nb):
                    i = r0 + r
                    y = tgt[i]
                    if y != ignore:
                        grad[i, y] -= cast_to(grad, scale * keep * w[y])
                    else:
                        for j in range(n):
                            grad[i, j] = zero_of(grad)
        total += bsum
    return total


@jit_fast
def _block_max(xt, nb, mv):
    """mv[r] = max_j xt[j, r] (nan ignored), vectorized over r < nb."""
    for r in range(nb):
        mv[r] = cast_to(xt, _NINF)
    for j in range(xt.shape[0]):
        for r in range(nb):
            mv[r] = maxnum(mv[r], xt[j, r])


@jit_fast
def _block_exp(xt, nb, mv, acc, cnt):
    """xt = exp(xt - mv) in place; acc: sum of those below the max, cnt: count of the rest."""
    z = zero_of(xt)
    o = one_of(xt)
    for r in range(nb):
        acc[r] = z
        cnt[r] = z
    for j in range(xt.shape[0]):
        for r in range(nb):
            d = xt[j, r] - mv[r]
            e = expx(d)
            xt[j, r] = e
            acc[r] += z if d >= z else e
            cnt[r] += o if d >= z else z


@jit
def _block_grad(xt, nb, lg, a, wg, grad, r0):
    """grad[r0 + r, j] = a[r] * exp(-lg[r]) * xt[j, r] - wg[j] (the softmax times a)."""
    for r in range(nb):
        lg[r] = cast_to(lg, a[r]) * expx(-lg[r])
    n = xt.shape[0]
    for j in range(n):  # vectorized over rows, in place
        wj = wg[j]
        for r in range(nb):
            xt[j, r] = lg[r] * xt[j, r] - wj
    for r in range(nb):  # transposed back: contiguous stores
        for j in range(n):
            grad[r0 + r, j] = xt[j, r]


# ----------------------------------------------------------------------------
# probability targets, class axis last: x, q (M, C)
# ----------------------------------------------------------------------------
@kernel(error_model="numpy")
def soft_rows(x, q, w1, w0, g1, g0, scale, loss, per_row, grad, want_grad):
    """Soft targets: B_j = w1_j q_j + w0_j (x's dtype); g1, g0 = scale * w1, w0."""
    nr, n = x.shape
    total = 0.0
    for i in prange(nr):
        xi = x[i]
        qi = q[i]
        m = row_max(xi, 0, n)
        sb, a = _soft_coef(xi, qi, w1, w0, m)
        gi = grad[i]
        if want_grad:
            s, cnt = _store_excl(xi, gi, m)
        else:
            s, cnt = row_sum_excl(xi, 0, n, m)
        t = s + (cnt - 1.0)
        li = sb + a * log1p64(t)
        if per_row:
            loss[i] = li
        total += li
        if want_grad:
            c = cast_to(grad, scale * a / (1.0 + t))
            for j in range(n):
                gi[j] = c * gi[j] - (g1[j] * qi[j] + g0[j])
    return total


# ----------------------------------------------------------------------------
# class axis in the middle: x (P, C, Q), blocks of Q columns
# ----------------------------------------------------------------------------
@jit
def _cols_max(x, p, q0, q1, mb):
    """mb[j] = max over classes of x[p, :, q0 + j] (nan ignored)."""
    for j in range(q1 - q0):
        mb[j] = _NINF
    for c in range(x.shape[1]):
        for j in range(q1 - q0):
            mb[j] = maxnum(mb[j], x[p, c, q0 + j])


@jit
def _cols_exp(x, p, q0, q1, mb, want_grad, grad, sb, cb, tv):
    """tv[j] = t of column q0 + j (float64 sums); grad = exp(x - m) if wanted."""
    w = q1 - q0
    for j in range(w):
        sb[j] = 0.0
        cb[j] = 0.0
    for c in range(x.shape[1]):
        for j in range(w):
            d = x[p, c, q0 + j] - mb[j]
            e = expx(d)
            if want_grad:
                grad[p, c, q0 + j] = e
            sb[j] += 0.0 if d >= 0 else np.float64(e)
            cb[j] += 1.0 if d >= 0 else 0.0
    for j in range(w):
        tv[j] = sb[j] + (cb[j] - 1.0)


@kernel(error_model="numpy")
def index_cols(x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad, qchunk):
    """Class-index targets for x (P, C, Q), tgt (P, Q); loss (P, Q) float64."""
    pn, n, qn = x.shape
    nq = (qn + qchunk - 1) // qchunk
    keep = 1.0 - eps
    smooth = eps > 0.0
    epsn = eps / n
    total = 0.0
    for k in prange(pn * nq):
        p = k // nq
        q0 = (k % nq) * qchunk
        q1 = min(qn, q0 + qchunk)
        nw = q1 - q0
        mb = np.empty(nw, dtype=x.dtype)
        sb = np.empty(nw)
        cb = np.empty(nw)
        tv = np.empty(nw)
        xy = np.empty(nw)
        sm = np.zeros(nw)
        for j in range(nw):
            y = tgt[p, q0 + j]
            xy[j] = np.float64(x[p, y, q0 + j]) if y != ignore else 0.0
        _cols_max(x, p, q0, q1, mb)
        if smooth:
            for c in range(n):
                for j in range(nw):
                    sm[j] += np.float64(wl[c] * (mb[j] - x[p, c, q0 + j]))
        _cols_exp(x, p, q0, q1, mb, want_grad, grad, sb, cb, tv)
        bsum = 0.0
        for j in range(nw):
            y = tgt[p, q0 + j]
            if y == ignore:
                if per_row:
                    loss[p, q0 + j] = 0.0
                sb[j] = 0.0  # gradient coefficient
                cb[j] = 0.0
            else:
                lg = log1p64(tv[j])
                wy = w[y]
                lo = keep * wy * ((np.float64(mb[j]) - xy[j]) + lg)
                if smooth:
                    lo += epsn * (sm[j] + wsum * lg)
                if per_row:
                    loss[p, q0 + j] = lo
                bsum += lo
                sb[j] = scale * (keep * wy + epsn * wsum) / (1.0 + tv[j])
                cb[j] = scale * keep * wy
        total += bsum
        if want_grad:
            cg = np.empty(nw, dtype=grad.dtype)
            for j in range(nw):
                cg[j] = cast_to(grad, sb[j])
            for c in range(n):
                if smooth:
                    for j in range(nw):
                        grad[p, c, q0 + j] = cg[j] * grad[p, c, q0 + j] - wg[c]
                else:
                    for j in range(nw):
                        grad[p, c, q0 + j] = cg[j] * grad[p, c, q0 + j]
            for j in range(nw):
                y = tgt[p, q0 + j]
                if y == ignore:
                    for c in range(n):
                        grad[p, c, q0 + j] = zero_of(grad)
                else:
                    grad[p, y, q0 + j] -= cast_to(grad, cb[j])
    return total


@kernel(error_model="numpy")
def soft_cols(x, q, w1, w0, g1, g0, scale, loss, per_row, grad, want_grad, qchunk):
    """Probability targets for x, q (P, C, Q); loss (P, Q) float64."""
    pn, n, qn = x.shape
    nq = (qn + qchunk - 1) // qchunk
    total = 0.0
    for k in prange(pn * nq):
        p = k // nq
        q0 = (k % nq) * qchunk
        q1 = min(qn, q0 + qchunk)
        nw = q1 - q0
        mb = np.empty(nw, dtype=x.dtype)
        sb = np.empty(nw)
        cb = np.empty(nw)
        tv = np.empty(nw)
        sbv = np.zeros(nw)
        av = np.zeros(nw)
        _cols_max(x, p, q0, q1, mb)
        for c in range(n):
            for j in range(nw):
                b = w1[c] * q[p, c, q0 + j] + w0[c]
                sbv[j] += np.float64(b * (mb[j] - x[p, c, q0 + j]))
                av[j] += np.float64(b)
        _cols_exp(x, p, q0, q1, mb, want_grad, grad, sb, cb, tv)
        bsum = 0.0
        for j in range(nw):
            lo = sbv[j] + av[j] * log1p64(tv[j])
            if per_row:
                loss[p, q0 + j] = lo
            bsum += lo
        total += bsum
        if want_grad:
            cg = np.empty(nw, dtype=grad.dtype)
            for j in range(nw):
                cg[j] = cast_to(grad, scale * av[j] / (1.0 + tv[j]))
            for c in range(n):
                for j in range(nw):
                    grad[p, c, q0 + j] = cg[j] * grad[p, c, q0 + j] - (
                        g1[c] * q[p, c, q0 + j] + g0[c]
                    )
    return total


# ----------------------------------------------------------------------------
# targets: validation and the mean's denominator in one pass (O(rows))
# ----------------------------------------------------------------------------
@kernel(error_model="numpy")
def check_targets(tgt, n, ignore, w):
    """(number of targets outside [0, n) other than ignore, sum of w[y] over kept rows)."""
    nbad = 0
    den = 0.0
    for i in prange(tgt.shape[0]):
        y = tgt[i]
        if y != ignore:
            if y < 0 or y >= n:
                nbad += 1
            else:
                den += w[y]
    return nbad, den


# ----------------------------------------------------------------------------
# log_sigmoid, elementwise over a flat array
# ----------------------------------------------------------------------------
@kernel(error_model="numpy")
def log_sigmoid_flat(x, out):
    """out = min(x, 0) - log1p(exp(-|x|)), evaluated in float64 for both dtypes
    (float32 results are then correctly rounded but for rare ties)."""
    nb = (x.shape[0] + 4095) // 4096
    for b in prange(nb):
        for i in range(b * 4096, min(x.shape[0], (b + 1) * 4096)):
            v = np.float64(x[i])
            mn = min(v, 0.0) if v == v else v
            out[i] = cast_to(out, mn - log1p64(exp64(-abs(v))))
