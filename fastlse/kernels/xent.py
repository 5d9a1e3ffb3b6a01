"""Fused cross-entropy kernels: loss and gradient from logits in one read.

Every row (a sample's C logits) is handled while it sits in cache: a max
sweep, an exp-and-sum sweep (which also stores ``exp(x - m)`` into the
gradient row when the gradient is wanted), then one sweep that turns those
exponentials into the gradient.  Per row only a few float64 scalars are kept,
so the extra memory is O(rows): the per-row losses.

Both kinds of target reduce to one form.  With per-class coefficients ``B``
(``A = sum(B)``) and the row's ``(m, t)`` pair (see ``kernels.rows``)::

    loss = sum_j B_j * (m - x_j) + A * log1p(t)       # = -sum_j B_j log p_j
    grad = scale * (A * p_j - B_j),   p_j = exp(x_j - m) / (1 + t)

Class index ``y`` with smoothing ``eps`` and weights ``w``:
``B_j = (1 - eps) w_y [j == y] + eps / C * w_j``; probabilities ``q``:
``B_j = w_j * ((1 - eps) q_j + eps / C)`` (torch's definitions).  Terms whose
``B_j`` is structurally zero (the non-target classes without smoothing) are
never formed, so ``-inf`` logits there give a finite loss, as in torch;
where torch multiplies ``0 * inf`` (smoothing, soft targets), so do we.

Layouts: ``rows`` kernels take a C-contiguous ``(M, C)`` view (class axis
last); for C < ``SMALL_C`` blocks of rows are transposed
into an L1 scratch so every sweep runs vectorized across rows.  ``cols`` kernels take
``(P, C, Q)`` (class axis in the middle, the rest of the sample index in Q)
and work on blocks of Q columns, reading memory in order, so no transposed
copy is made; without gradient, smoothing or LM options, ``cols_index_loss``
takes logsumexp's column sweeps (``kernels.columns.slab_pairs``) instead (faster),
whose loss may differ from the gradient kernels' in the last bit.

Each kernel returns the sum of the per-sample losses (float64, a prange
reduction) and writes them one by one only when asked (``per_row``, for
``reduction="none"``).

Language-model options (``cross_entropy``'s ``z_loss``, ``softcap``,
``return_lse``) run in the ``*_lm`` variants of the drivers; the plain
drivers keep their own loops (and so their speed and summation order), while
the row functions (``_index_row``, ``_soft_row``) and the column blocks
(``_index_block``, ``_soft_block``) serve both, with ``zl = zg = 0`` and no
lse for the plain ones.  The ``_lm`` kernels are the same sweeps with a few per-row
(per-column) additions: the row's ``lse = m + log1p(t)`` is written if asked,
the z-loss adds ``zl * lse**2`` to the loss and ``zg * lse * p_j`` to the
gradient, and with ``cap > 0`` each row (or column block) is first capped,
``cap * tanh(x / cap)``, into a per-task scratch that stays in cache; the
sweeps then read the scratch and the gradient is multiplied by the cap's
derivative ``1 - (capped / cap)**2`` in one more in-cache sweep.

Few long rows (fewer rows than threads, rows of many pieces): the
``*_pieces_*`` kernels at the end split each row into cache-sized pieces that
the threads share, the pieces' pairs and partial sums merged per row (the
same loss and gradient formulas, every option included).

The gradient may alias the logits (``out=logits``): each element is read
before it is overwritten.  Nothing here knows about Python objects or axes.
"""

import numpy as np
from numba import prange, types
from numba.extending import overload

from .columns import cols_ahead, slab_pairs
from .compile import jit, jit_alloc, jit_fast, jit_inl, stack_array
from .drivers import kernel
from .exp import expneg64, log1p32, log1p64, maxnum
from .rows import (
    CHUNK,
    INLINE_SWEEP,
    ROW_BLOCK,
    _by_dtype,
    block_max_t,
    block_pairs,
    block_sum_t,
    cast_to,
    expn,
    has_nan,
    merge,
    one_of,
    range_pair,
    row_block,
    row_max,
    row_pair,
    row_sum_excl,
    scratch_t,
    sum_excl_exp,
    sumscale_of,
    t_rows,
    tanhx,
    tasks_of,
    transpose_rows,
    zero_of,
)

_NINF = -np.inf
_INF = np.inf
_NAN = np.nan
#: rows of fewer classes than this (float32 and float64) use the small-C
#: kernels, their blocks of ``t_rows`` rows transposed into an L1 scratch: a
#: whole row's sweeps spend more on their ends (the max's and the sums'
#: reductions, the masked last group) than on the exps.  From 64 classes
#: the row kernels are faster: float32 rows of 64-127 classes, which took
#: the small-C kernels until the exp-sum sweep went into lanes, run
#: 1.03-1.67x faster on them (docs/performance-notes.md)
SMALL_C = 64


# ----------------------------------------------------------------------------
# per-class coefficients: an array, or one scalar for all classes (unweighted)
# ----------------------------------------------------------------------------
def _at(w, j):  # pragma: no cover - replaced by the overload in compiled code
    return w[j] if isinstance(w, np.ndarray) else w


@overload(_at)
def _at_ol(w, j):
    """w[j] for an array of per-class values; w itself for a scalar."""
    if isinstance(w, types.Array):
        return lambda w, j: w[j]
    return lambda w, j: w


def _part(w, lo, hi):  # pragma: no cover - replaced by the overload
    return w[lo:hi] if isinstance(w, np.ndarray) else w


@overload(_part, inline="always")
def _part_ol(w, lo, hi):
    """w[lo:hi] for an array of per-class values; w itself for a scalar
    (inlined: a view returned by a call would need reference counting)."""
    if isinstance(w, types.Array):
        return lambda w, lo, hi: w[lo:hi]
    return lambda w, lo, hi: w


def _by_targets(name, index_fn, soft_fn, doc):
    """A function ``f(targs, *args)`` that compiled code resolves by the kind of
    targets to ``index_fn(targs, *args)`` or ``soft_fn(targs, *args)``.

    ``targs`` is the tuple of a kernel's target-specific arguments, its first
    element the targets: integers are class indices, floats probabilities
    (the rule of ``cross_entropy`` itself).  One driver thus serves both
    kinds, compiled once per kind.  (A factory that captured the jitted
    block in a closure would defeat numba's disk cache: the cache key hashes
    the closure's pickle, and a dispatcher pickles with a per-process uuid.)
    """

    def stub(targs, *args):  # pragma: no cover - replaced by the overload
        raise NotImplementedError(f"{name} runs in compiled code only")

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc

    @overload(stub)
    def _ol(targs, *args):
        if isinstance(targs[0].dtype, types.Integer):
            return lambda targs, *args: index_fn(targs, *args)
        return lambda targs, *args: soft_fn(targs, *args)

    return stub


# ----------------------------------------------------------------------------
# row helpers (x is one row, float32 or float64)
# ----------------------------------------------------------------------------
@jit_fast
def _wdev(x, w, m):
    """sum_j w_j * (m - x_j) in float64 (w in x's dtype, or one scalar)."""
    z = zero_of(x)
    n = x.shape[0]
    total = 0.0
    for c in range(0, n, CHUNK):
        acc = z
        for j in range(c, min(c + CHUNK, n)):
            acc += _at(w, j) * (m - x[j])
        total += acc
    return total


@jit_fast
def _soft_coef(x, q, w1, w0, m):
    """(sum_j B_j (m - x_j), sum_j B_j) with B_j = w1_j q_j + w0_j, float64
    (w1, w0 arrays in x's dtype, or scalars)."""
    z = zero_of(x)
    n = x.shape[0]
    s = 0.0
    a = 0.0
    for c in range(0, n, CHUNK):
        acc = z
        acb = z
        for j in range(c, min(c + CHUNK, n)):
            b = _at(w1, j) * q[j] + _at(w0, j)
            acc += b * (m - x[j])
            acb += b
        s += acc
        a += acb
    return s, a


# ----------------------------------------------------------------------------
# class-index targets, class axis last: x (M, C)
# ----------------------------------------------------------------------------
@jit
def _row_t(x, g, m, want_grad):
    """t of the row's pair (m, t), m its max; with want_grad, g = exp(x - m)
    (one sweep: the loss has the same bits with or without the gradient)."""
    if want_grad:
        s, cnt = sum_excl_exp(x, g, m)
    else:
        s, cnt = row_sum_excl(x, 0, x.shape[0], m)
    return s + (cnt - 1.0)


@jit
def _index_row(x, y, wy, wl, wsum, keep, eps, scale, g, wg, want_grad, zl, zg):
    """(loss, lse) of one row with target y; writes the gradient row if wanted.

    Three sweeps while the row is in cache: max, exp-sum (storing the
    exponentials into the gradient row), gradient.  ``wl`` (x's dtype) are
    the weights of the smoothing term, ``wg`` the gradient's smoothing
    subtrahend ``scale * eps / C * w`` (g's dtype); ``keep = 1 - eps``;
    ``zl, zg`` the z-loss coefficients (0: none).
    """
    n = x.shape[0]
    m = row_max(x, 0, n)
    xy = np.float64(x[y])
    mf = np.float64(m)
    smooth = eps > 0.0
    sm = _wdev(x, wl, m) if smooth else 0.0
    t = _row_t(x, g, m, want_grad)
    lg = log1p64(t)
    lse = _lse_of(x, mf, lg)
    loss = keep * wy * ((mf - xy) + lg)
    if smooth:
        loss += eps / n * (sm + wsum * lg)
    if zl != 0.0:
        loss += zl * (lse * lse)
    if want_grad:
        a = scale * (keep * wy + eps / n * wsum)
        if zg != 0.0:
            a += zg * lse
        c = cast_to(g, a / (1.0 + t))
        if smooth:
            for j in range(n):
                g[j] = c * g[j] - wg[j]
        else:
            for j in range(n):
                g[j] = c * g[j]
        g[y] -= cast_to(g, scale * keep * wy)
    return loss, lse


@kernel(error_model="numpy", alloc=True)
def index_rows(x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad):
    """Sum of the per-row losses (float64, in row order: ``_sum_rows``);
    each into ``loss`` if ``per_row``; gradient rows into ``grad`` if
    ``want_grad``."""
    nr = x.shape[0]
    lo = loss if per_row else np.empty(nr)
    rb = row_block(nr)
    for b in prange((nr + rb - 1) // rb):  # numba splits the blocks evenly between the threads
        r0 = b * rb
        r1 = min(nr, r0 + rb)
        _index_rows_block(x, tgt, w, wl, wsum, ignore, eps, scale, lo, grad, wg, want_grad, r0, r1)
    return _sum_rows(lo)


@jit
def _sum_rows(lo):
    """The rows' losses summed in row order, after the threads: the loss has
    the same bits on any number of threads (a prange reduction would add
    each thread's partial sum)."""
    total = 0.0
    for i in range(lo.shape[0]):
        total += lo[i]
    return total


@jit
def _index_rows_block(x, tgt, w, wl, wsum, ignore, eps, scale, lo, grad, wg, want_grad, r0, r1):
    """``index_rows``' rows r0..r1: each loss into lo (0 where ignored).  A
    ``jit`` helper given whole arrays: its row views are not reference
    counted (the kernel allocates, so it counts every view it takes)."""
    n = x.shape[1]
    keep = 1.0 - eps
    for i in range(r0, r1):
        y = tgt[i]
        li = 0.0
        if y == ignore:
            if want_grad:
                gz = zero_of(grad)
                for j in range(n):
                    grad[i, j] = gz
        else:
            li = _index_row(
                x[i], y, w[y], wl, wsum, keep, eps, scale, grad[i], wg, want_grad, 0.0, 0.0
            )[0]
        lo[i] = li


@jit_inl
def _pair_loss(m, t, xy, wy):
    """A class-index sample's loss from its pair (m, t) and target logit:
    ``wy * ((m - xy) + log1p(t))``, nan where m is +-inf or nan or t is nan
    (what ``_index_row`` and ``_index_block`` give there)."""
    bad = m != m or t != t or m == _INF or m == _NINF
    return _NAN if bad else wy * ((m - xy) + log1p64(t))


@jit
def _pair_losses(mo, to, xo, wo, lo):
    """lo = ``_pair_loss`` of each row of a block: one vectorized loop."""
    for i in range(mo.shape[0]):
        lo[i] = _pair_loss(mo[i], to[i], xo[i], wo[i])


@kernel(error_model="numpy", alloc=True)
def index_rows_plain(x, tgt, w, ignore, loss, per_row):
    """``index_rows`` without gradient, smoothing or LM options: each row's
    pair (``row_pair``, inlined: the same max and exp-sum sweeps as
    ``_index_row``, so the same bits), then the losses of a block of rows
    as one vectorized loop (``_pair_losses``: a scalar log1p per row is a
    visible share of a short row), summed in ``index_rows``' order; 0 where
    ignored.  A block's pairs wait on its stack (``_plain_block``)."""
    nr = x.shape[0]
    rb = row_block(nr)
    lo = loss if per_row else np.empty(nr)
    for b in prange((nr + rb - 1) // rb):
        r0 = b * rb
        _plain_block(x, tgt, w, ignore, lo, r0, min(nr, r0 + rb))
    return _sum_rows(lo)


@jit
def _plain_block(x, tgt, w, ignore, lo, r0, r1):
    """``index_rows_plain``' losses of rows r0..r1 (at most ``ROW_BLOCK``):
    their pairs, target logits and weights into scratch on the stack
    (``stack_array``; row views uncounted, as in ``_index_rows_block``),
    then the losses into lo."""
    n, k = x.shape[1], r1 - r0
    mo = stack_array(ROW_BLOCK, np.float64)
    to = stack_array(ROW_BLOCK, np.float64)
    xo = stack_array(ROW_BLOCK, np.float64)
    wo = stack_array(ROW_BLOCK, np.float64)
    if n <= INLINE_SWEEP:  # short rows' pairs by ``block_pairs``, as in ``drivers._lse_block``
        block_pairs(x, r0, r1, mo, to)
        for i in range(r0, r1):
            _plain_target(x, tgt, w, ignore, mo, to, xo, wo, i, i - r0)
    else:
        for i in range(r0, r1):
            _plain_row(x, tgt, w, ignore, mo, to, xo, wo, i, i - r0)
    _pair_losses(mo[:k], to[:k], xo[:k], wo[:k], lo[r0:r1])


@jit_inl
def _plain_row(x, tgt, w, ignore, mo, to, xo, wo, i, j):
    """``_plain_block``'s row i, its pair and more at j."""
    if tgt[i] != ignore:
        mo[j], to[j] = row_pair(x[i], 0, x.shape[1])
    _plain_target(x, tgt, w, ignore, mo, to, xo, wo, i, j)


@jit_inl
def _plain_target(x, tgt, w, ignore, mo, to, xo, wo, i, j):
    """Row i's target logit and weight at j, after its pair; a row whose
    target is ignored: zeros (a loss of 0)."""
    y = tgt[i]
    if y != ignore:
        xo[j] = x[i, y]
        wo[j] = w[y]
    else:
        mo[j] = to[j] = xo[j] = wo[j] = 0.0


# ----------------------------------------------------------------------------
# class-index targets, few classes: blocks of rows, vectorized across rows
# ----------------------------------------------------------------------------
#: log1p in t's own precision (8 float32 lanes, or 4 float64 lanes)
log1px = _by_dtype("log1px", log1p32, log1p64, "log1p in t's own precision.")


@kernel(error_model="numpy", alloc=True)
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
    tb = t_rows(x)
    nblk = (nr + tb - 1) // tb
    ntask, per = tasks_of(nblk)
    total = 0.0
    for tk in prange(ntask):
        xt, mv, acc, cnt = scratch_t(x, tb)
        tv = np.empty(tb)
        xyv = np.empty(tb)
        smv = np.empty(tb)
        bsum = 0.0
        for b in range(tk * per, min(nblk, (tk + 1) * per)):
            r0 = b * tb
            nb = min(nr, r0 + tb) - r0
            transpose_rows(x, r0, nb, xt)
            for r in range(nb):
                y = tgt[r0 + r]
                xyv[r] = x[r0 + r, y] if y != ignore else 0.0
            block_max_t(xt, nb, mv)
            if smooth:
                for r in range(nb):
                    smv[r] = 0.0
                for j in range(n):
                    wj = wl[j]
                    for r in range(nb):
                        smv[r] += wj * (mv[r] - xt[j, r])
            if want_grad:  # exps stored for the gradient, one class a pass
                _block_exp(xt, nb, mv, acc, cnt)
                for r in range(nb):
                    acc[r] = log1px(acc[r] + (cnt[r] - one_of(acc)))  # lg, in x's dtype
            else:  # four classes a pass, nothing stored (another order)
                _block_lg(xt, nb, mv, acc, cnt)
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


@kernel(error_model="numpy", alloc=True)
def index_rows_small_plain(x, tgt, w, ignore, loss, per_row):
    """``index_rows_small`` without gradient or smoothing (the arguments of
    ``index_rows_plain``: fewer arguments to type-check on a small call,
    where the dispatch is much of the time): the same sweeps and
    the same bits as its forward."""
    nr = x.shape[0]
    tb = t_rows(x)
    nblk = (nr + tb - 1) // tb
    ntask, per = tasks_of(nblk)
    total = 0.0
    for tk in prange(ntask):
        xt, mv, acc, cnt = scratch_t(x, tb)
        bsum = 0.0
        for b in range(tk * per, min(nblk, (tk + 1) * per)):
            r0 = b * tb
            nb = min(nr, r0 + tb) - r0
            transpose_rows(x, r0, nb, xt)
            block_max_t(xt, nb, mv)
            _block_lg(xt, nb, mv, acc, cnt)
            for r in range(nb):
                i = r0 + r
                y = tgt[i]
                lo = 0.0
                if y != ignore:
                    lo = w[y] * ((np.float64(mv[r]) - np.float64(x[i, y])) + np.float64(acc[r]))
                if per_row:
                    loss[i] = lo
                bsum += lo
        total += bsum
    return total


@jit
def _block_lg(xt, nb, mv, acc, cnt):
    """acc[r] = log1p(t) of row r of the block (x's dtype), t from
    ``block_sum_t`` (four classes a pass, no stores)."""
    block_sum_t(xt, nb, mv, acc, cnt)
    sc = cast_to(acc, sumscale_of(acc))
    for r in range(nb):
        acc[r] = acc[r] * sc
    for r in range(nb):
        acc[r] = log1px(acc[r] + (cnt[r] - one_of(acc)))


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
            e = expn(d)
            xt[j, r] = e
            acc[r] += z if d >= z else e
            cnt[r] += o if d >= z else z


@jit
def _block_grad(xt, nb, lg, a, wg, grad, r0):
    """grad[r0 + r, j] = a[r] * exp(-lg[r]) * xt[j, r] - wg[j] (the softmax times a)."""
    for r in range(nb):
        lg[r] = cast_to(lg, a[r]) * expn(-lg[r])
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
@kernel(error_model="numpy", alloc=True)  # the losses' scratch
def soft_rows(x, q, w1, w0, g1, g0, scale, loss, per_row, grad, want_grad):
    """Soft targets: B_j = w1_j q_j + w0_j (x's dtype); g1, g0 = scale * w1, w0."""
    lo = loss if per_row else np.empty(x.shape[0])
    for i in prange(x.shape[0]):
        lo[i] = _soft_row_at(x, q, w1, w0, g1, g0, scale, grad, want_grad, i)
    return _sum_rows(lo)


@jit
def _soft_row_at(x, q, w1, w0, g1, g0, scale, grad, want_grad, i):
    """``soft_rows``' row i: its loss.  A ``jit`` helper given whole arrays:
    its row views are not reference counted (the kernel allocates, so it
    counts every view it takes)."""
    return _soft_row(x[i], q[i], w1, w0, g1, g0, scale, grad[i], want_grad, 0.0, 0.0)[0]


@jit
def _soft_row(xi, qi, w1, w0, g1, g0, scale, gi, want_grad, zl, zg):
    """(loss, lse) of one row of ``soft_rows``, with the z-loss; writes the
    gradient row if wanted."""
    n = xi.shape[0]
    m = row_max(xi, 0, n)
    sb, a = _soft_coef(xi, qi, w1, w0, m)
    t = _row_t(xi, gi, m, want_grad)
    lg = log1p64(t)
    lse = _lse_of(xi, np.float64(m), lg)
    li = sb + a * lg
    if zl != 0.0:
        li += zl * (lse * lse)
    if want_grad:
        ca = scale * a
        if zg != 0.0:
            ca += zg * lse
        c = cast_to(gi, ca / (1.0 + t))
        for j in range(n):
            gi[j] = c * gi[j] - (g1[j] * qi[j] + g0[j])
    return li, lse


# ----------------------------------------------------------------------------
# class axis in the middle: x (P, C, Q), blocks of Q columns
# ----------------------------------------------------------------------------
@jit
def _cols_max(x, p, q0, q1, mb):
    """mb[j] = max over classes of x[p, :, q0 + j] (nan ignored)."""
    w = q1 - q0
    for j in range(w):
        mb[j] = _NINF
    for c in range(x.shape[1]):
        xr = x[p, c, q0:q1]  # a slice from 0: LLVM sees non-negative indices
        for j in range(w):
            mb[j] = maxnum(mb[j], xr[j])


@kernel(error_model="numpy", alloc=True)
def cols(x, targs, scale, loss, per_row, grad, want_grad, qchunk):
    """x (P, C, Q), loss (P, Q) float64; ``targs`` the target's arguments:
    class indices ``(tgt (P, Q), w, wl, wsum, ignore, eps, wg)`` or
    probabilities ``(q (P, C, Q), w1, w0, g1, g0)`` (see ``_index_block``,
    ``_soft_block``)."""
    pn, qn = x.shape[0], x.shape[2]
    nq = (qn + qchunk - 1) // qchunk
    lse = np.empty((0, 0), dtype=x.dtype)  # (not written)
    total = 0.0
    for k in prange(pn * nq):
        p = k // nq
        q0 = (k % nq) * qchunk
        nw = min(qn, q0 + qchunk) - q0
        total += _col_block(
            targs, x, p, q0, p, q0, nw, scale, loss, per_row, grad, want_grad, 0.0, 0.0, lse,
            False,
        )  # fmt: skip
    return total


@kernel(error_model="numpy", alloc=True)
def cols_index_loss(x, w_, rows, tgt, w, ignore, loss, per_row):
    """The loss of class-index targets along axis 1 of x (P, C, Q), no
    gradient and no smoothing, by slabs of ``w_`` columns: each slab's
    ``(m, t)`` pairs from logsumexp's column sweeps (``slab_pairs``: row
    blocks, four rows a pass), then ``_pair_loss`` per column while the slab
    is in cache; 0 where ignored.
    Returns the sum of the kept columns' losses."""
    pn, qn = x.shape[0], x.shape[2]
    nq = (qn + w_ - 1) // w_
    total = 0.0
    ahead = cols_ahead(x, w_, False)
    for k in prange(pn * nq):
        p = k // nq
        q0 = (k % nq) * w_
        nw = min(qn, q0 + w_) - q0
        mv = np.empty(nw)
        tv = np.empty(nw)
        none = np.empty((1, 1, 1), dtype=x.dtype)  # (no stores)
        shifts = np.empty((1, 1), dtype=x.dtype)
        slab_pairs(x, p, q0, nw, rows, mv, tv, none, shifts, shifts, False, ahead)
        bsum = 0.0
        for j in range(nw):
            y = tgt[p, q0 + j]
            lo = 0.0
            if y != ignore:
                lo = _pair_loss(mv[j], tv[j], np.float64(x[p, y, q0 + j]), w[y])
            if per_row:
                loss[p, q0 + j] = lo
            bsum += lo
        total += bsum
    return total


# ----------------------------------------------------------------------------
# targets: validation and the mean's denominator in one pass (O(rows))
# ----------------------------------------------------------------------------
@kernel(error_model="numpy")
def nll_gather(lp, tgt, w, ignore, per):
    """per[p, q] = -w[y] * lp[p, y, q] for y = tgt[p, q] (0 where ignored), in
    float64 (targets already checked)."""
    for p in prange(lp.shape[0]):
        for q in range(lp.shape[2]):
            y = tgt[p, q]
            if y == ignore:
                per[p, q] = 0.0
            else:
                per[p, q] = -(w[y] * np.float64(lp[p, y, q]))


@kernel(error_model="numpy", alloc=True)  # a prange reduction allocates
def check_targets(tgt, n, ignore, w):
    """(number of targets outside [0, n) other than ignore, sum of w[y] over kept rows);
    w: the class weights, or one scalar weight of every class."""
    nbad = 0
    den = 0.0
    for i in prange(tgt.shape[0]):
        y = tgt[i]
        if y != ignore:
            if y < 0 or y >= n:
                nbad += 1
            else:
                den += _at(w, y)
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
        lo = b * 4096
        hi = min(x.shape[0], lo + 4096)
        xs = x[lo:hi]  # slices from 0: the loop vectorizes
        os = out[lo:hi]
        for i in range(xs.shape[0]):
            v = np.float64(xs[i])
            mn = v if v < 0.0 else 0.0
            mn = v if v != v else mn
            os[i] = cast_to(out, mn - log1p64(expneg64(-abs(v))))


@kernel(error_model="numpy")
def tanh_flat(x, out):
    """out = tanh(x) elementwise (tests of tanh32 / tanh64 against np.tanh)."""
    for i in prange(x.shape[0]):
        out[i] = tanhx(x[i])


# ============================================================================
# language-model options: z-loss, lse output, softcap (the ``*_lm`` kernels)
# ============================================================================
# Shared arguments: ``zl`` the z-loss coefficient of the loss (``zl * lse**2``
# per kept row; 0: none), ``zg`` that of the gradient (``zg * lse * p_j``),
# ``lse`` / ``want_lse`` the per-row lse output (ignored rows too), ``cap``
# the softcap (0: none).  ``_lse_of`` gives ``m`` itself for rows whose max
# is +-inf (nan if the row has a nan), like torch.logsumexp.
@jit
def _lse_of(x, mf, lg):
    """The row's lse ``m + log1p(t)`` (``lg = log1p(t)``), special rows as torch."""
    if mf == _INF or mf == _NINF:
        return _NAN if has_nan(x, 0, x.shape[0]) else mf
    return mf + lg


@jit
def _row_lse(x):
    """lse of a whole row (for rows whose loss is not computed)."""
    n = x.shape[0]
    m = row_max(x, 0, n)
    s, cnt = row_sum_excl(x, 0, n, m)
    return _lse_of(x, np.float64(m), log1p64(s + (cnt - 1.0)))


@jit
def _cap_row(x, cx, cap, rcap):
    """cx = cap * tanh(x * rcap) (the softcapped row; cap, rcap in x's dtype)."""
    for j in range(x.shape[0]):
        cx[j] = cap * tanhx(x[j] * rcap)


@jit
def _dcap_row(g, cx, rcap):
    """g *= 1 - (cx / cap)**2: the gradient through the cap (torch's tanh backward)."""
    o = one_of(g)
    for j in range(g.shape[0]):
        u = cx[j] * rcap
        g[j] = g[j] * (o - u * u)


def _cap_consts(x, cap):  # pragma: no cover - replaced by the overload
    return cap, 1.0 / cap


@overload(_cap_consts)
def _cap_consts_ol(x, cap):
    """(cap, 1 / cap) in x's dtype; (1, 1) for cap == 0 (no cap)."""

    def impl(x, cap):
        c = cap if cap > 0.0 else 1.0
        return cast_to(x, c), cast_to(x, 1.0 / c)

    return impl


# ---------------------------------------------------------- rows, class index
@kernel(error_model="numpy", alloc=True)
def index_rows_lm(
    x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad, zl, zg, lse,
    want_lse, cap,
):  # fmt: skip
    """``index_rows`` with the LM options; tasks of rows, each with a row scratch
    for the capped row (the gradient row is multiplied by the cap's derivative)."""
    nr, n = x.shape
    capped = cap > 0.0
    ntask, per = tasks_of(nr)
    total = 0.0
    for tk in prange(ntask):
        cx = np.empty(n if capped else 0, dtype=x.dtype)
        total += _index_lm_task(
            x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad, zl, zg,
            lse, want_lse, cap, cx, tk * per, min(nr, (tk + 1) * per),
        )  # fmt: skip
    return total


@jit
def _index_lm_task(
    x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad, zl, zg, lse,
    want_lse, cap, cx, r0, r1,
):  # fmt: skip
    """``index_rows_lm``' rows r0..r1 (cx: the task's row scratch for the
    cap): the sum of their losses, row by row.  Row views uncounted, as in
    ``_soft_row_at``."""
    n = x.shape[1]
    keep = 1.0 - eps
    capped = cap > 0.0
    cp, rc = _cap_consts(x, cap)
    bsum = 0.0
    for i in range(r0, r1):
        y = tgt[i]
        xi = x[i]
        if capped and (want_lse or y != ignore):
            _cap_row(x[i], cx, cp, rc)
            xi = cx
        li = 0.0
        if y == ignore:
            if want_lse:
                lse[i] = cast_to(lse, _row_lse(xi))
            if want_grad:
                gz = zero_of(grad)
                for j in range(n):
                    grad[i, j] = gz
        else:
            li, le = _index_row(
                xi, y, w[y], wl, wsum, keep, eps, scale, grad[i], wg, want_grad, zl, zg
            )
            if want_lse:
                lse[i] = cast_to(lse, le)
            if capped and want_grad:
                _dcap_row(grad[i], cx, rc)
        if per_row:
            loss[i] = li
        bsum += li
    return bsum


# ---------------------------------------------------- few classes, class index
@kernel(error_model="numpy", alloc=True)
def index_rows_small_lm(
    x, tgt, w, wl, wsum, ignore, eps, scale, loss, per_row, grad, wg, want_grad, zl, zg, lse,
    want_lse, cap,
):  # fmt: skip
    """``index_rows_small`` with the LM options: the block is capped in its
    transposed scratch (a copy kept for the derivative) before the sweeps."""
    nr, n = x.shape
    keep = 1.0 - eps
    smooth = eps > 0.0
    capped = cap > 0.0
    cp, rc = _cap_consts(x, cap)
    epsn = eps / n
    sk = scale * keep
    tb = t_rows(x)
    nblk = (nr + tb - 1) // tb
    ntask, per = tasks_of(nblk)
    total = 0.0
    for tk in prange(ntask):
        xt, mv, acc, cnt = scratch_t(x, tb)
        ct = np.empty((n if capped else 0, tb), dtype=x.dtype)
        tv = np.empty(tb)
        xyv = np.empty(tb)
        smv = np.empty(tb)
        bsum = 0.0
        for b in range(tk * per, min(nblk, (tk + 1) * per)):
            r0 = b * tb
            nb = min(nr, r0 + tb) - r0
            transpose_rows(x, r0, nb, xt)
            if capped:
                _block_cap(xt, ct, nb, cp, rc)
            for r in range(nb):
                y = tgt[r0 + r]
                xyv[r] = xt[y, r] if y != ignore else 0.0
            block_max_t(xt, nb, mv)
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
                mf = np.float64(mv[r])
                lo = keep * wy * ((mf - xyv[r]) + lg)
                if smooth:
                    lo += epsn * (smv[r] + wsum * lg)
                # the gradient's scale: exp(-lse) relative to m is 1 / (1 + t) = exp(-lg)
                tv[r] = scale * (keep * wy + epsn * wsum)
                le = _lse_of(x[i], mf, lg)  # (nan-ness of x is that of the capped row)
                if want_lse:
                    lse[i] = cast_to(lse, le)
                if zl != 0.0:
                    lo += zl * (le * le)
                    tv[r] += zg * le
                lo = lo if y != ignore else 0.0
                if per_row:
                    loss[i] = lo
                bsum += lo
            if want_grad:
                if capped:  # the target's term and the derivative in the scratch
                    _block_grad_capped(xt, nb, acc, tv, wg, r0, tgt, ignore, w, sk, ct, rc)
                    _block_store(xt, nb, grad, r0)
                else:
                    _block_grad(xt, nb, acc, tv, wg, grad, r0)
                for r in range(nb):
                    i = r0 + r
                    y = tgt[i]
                    if y == ignore:
                        for j in range(n):
                            grad[i, j] = zero_of(grad)
                    elif not capped:
                        grad[i, y] -= cast_to(grad, sk * w[y])
        total += bsum
    return total


@jit
def _block_cap(xt, ct, nb, cap, rcap):
    """xt = ct = cap * tanh(xt * rcap), vectorized over the rows r < nb."""
    for j in range(xt.shape[0]):
        for r in range(nb):
            c = cap * tanhx(xt[j, r] * rcap)
            xt[j, r] = c
            ct[j, r] = c


@jit
def _block_grad_capped(xt, nb, lg, a, wg, r0, tgt, ignore, w, sk, ct, rc):
    """xt = the gradient of the capped block: ``_block_grad``'s, less the
    target's ``sk * w[y]``, times the cap's derivative ``1 - (ct / cap)**2``."""
    for r in range(nb):
        lg[r] = cast_to(lg, a[r]) * expn(-lg[r])
    n = xt.shape[0]
    for j in range(n):
        wj = wg[j]
        for r in range(nb):
            xt[j, r] = lg[r] * xt[j, r] - wj
    for r in range(nb):
        y = tgt[r0 + r]
        if y != ignore:
            xt[y, r] -= cast_to(xt, sk * w[y])
    o = one_of(xt)
    for j in range(n):
        for r in range(nb):
            u = ct[j, r] * rc
            xt[j, r] = xt[j, r] * (o - u * u)


@jit
def _block_store(xt, nb, grad, r0):
    """grad[r0 + r, j] = xt[j, r] (transposed back: contiguous stores)."""
    for r in range(nb):
        for j in range(xt.shape[0]):
            grad[r0 + r, j] = xt[j, r]


# ---------------------------------------------------- rows, probability targets
@kernel(error_model="numpy", alloc=True)
def soft_rows_lm(
    x, q, w1, w0, g1, g0, scale, loss, per_row, grad, want_grad, zl, zg, lse, want_lse, cap
):
    """``soft_rows`` with the LM options (see ``index_rows_lm``)."""
    nr, n = x.shape
    capped = cap > 0.0
    ntask, per = tasks_of(nr)
    total = 0.0
    for tk in prange(ntask):
        cx = np.empty(n if capped else 0, dtype=x.dtype)
        total += _soft_lm_task(
            x, q, w1, w0, g1, g0, scale, loss, per_row, grad, want_grad, zl, zg, lse, want_lse,
            cap, cx, tk * per, min(nr, (tk + 1) * per),
        )  # fmt: skip
    return total


@jit
def _soft_lm_task(
    x, q, w1, w0, g1, g0, scale, loss, per_row, grad, want_grad, zl, zg, lse, want_lse, cap, cx,
    r0, r1,
):  # fmt: skip
    """``soft_rows_lm``' rows r0..r1: the sum of their losses, row by row
    (as ``_index_lm_task``)."""
    capped = cap > 0.0
    cp, rc = _cap_consts(x, cap)
    bsum = 0.0
    for i in range(r0, r1):
        xi = x[i]
        if capped:
            _cap_row(x[i], cx, cp, rc)
            xi = cx
        li, le = _soft_row(xi, q[i], w1, w0, g1, g0, scale, grad[i], want_grad, zl, zg)
        if capped and want_grad:
            _dcap_row(grad[i], cx, rc)
        if want_lse:
            lse[i] = cast_to(lse, le)
        if per_row:
            loss[i] = li
        bsum += li
    return bsum


# ------------------------------------------------------ class axis in the middle
# The block helpers read the logits at x[xp, :, xq0 + j] and write everything
# else (targets' losses, lse, grad) at [p, :, q0 + j], j < nw: without a cap
# both are the kernel's, with one x is a capped scratch copy of the block.
#: classes per block in the column kernels' sums (in x's dtype, then float64)
_CBLOCK = 64


@jit_alloc
def _cols_exp_at(x, xp, xq0, nw, mb, want_grad, grad, p, q0, sb, cb, tv):
    """tv[j] = t of column q0 + j (float64 sums); grad = exp(x - m) if wanted;
    x read at [xp, :, xq0 + j], grad written at [p, :, q0 + j].

    Vectorized over the columns (slices from 0, the want_grad test outside
    the loops), four classes a pass (``_exp_rows4``); both branches sum in
    the same order, so the loss does not depend on want_grad.
    """
    for j in range(nw):
        sb[j] = 0.0
        cb[j] = 0.0
    z = zero_of(x)
    o = one_of(x)
    tb = np.empty(nw, dtype=x.dtype)  # per block of classes, in x's dtype
    kb = np.empty(nw, dtype=x.dtype)
    n = x.shape[1]
    for c0 in range(0, n, _CBLOCK):
        for j in range(nw):
            tb[j] = z
            kb[j] = z
        c1 = min(n, c0 + _CBLOCK)
        c4 = c0 + (c1 - c0) // 4 * 4
        for c in range(c0, c4, 4):
            _exp_rows4(x, xp, xq0, nw, mb, want_grad, grad, p, q0, c, tb, kb)
        for c in range(c4, c1):
            xr = x[xp, c, xq0 : xq0 + nw]
            if want_grad:
                gr = grad[p, c, q0 : q0 + nw]
                for j in range(nw):
                    d = xr[j] - mb[j]
                    e = expn(d)
                    gr[j] = e
                    tb[j] += z if d >= z else e
                    kb[j] += o if d >= z else z
            else:
                for j in range(nw):
                    d = xr[j] - mb[j]
                    e = expn(d)
                    tb[j] += z if d >= z else e
                    kb[j] += o if d >= z else z
        for j in range(nw):
            sb[j] += np.float64(tb[j])
            cb[j] += np.float64(kb[j])
    for j in range(nw):
        tv[j] = sb[j] + (cb[j] - 1.0)


@jit_inl
def _terms4(a, b, e, d, z, o):
    """(sum, count) of four terms of a column: a term equal to 1 is counted
    instead of summed (see ``_exp_rows4``), pairwise."""
    ta = (z if a >= o else a) + (z if b >= o else b)
    te = (z if e >= o else e) + (z if d >= o else d)
    ka = (o if a >= o else z) + (o if b >= o else z)
    ke = (o if e >= o else z) + (o if d >= o else z)
    return ta + te, ka + ke


@jit
def _exp_rows4(x, xp, xq0, nw, mb, want_grad, grad, p, q0, c, tb, kb):
    """Classes c..c+3 of ``_cols_exp_at``: the four terms of a column summed
    in one update of its sums.  A term is left out of t and counted instead
    where it is 1 (the max's own; or one within half an ulp of it, which
    adds the same 1 to 1 + t).  With the gradient, the exps are stored row by
    row (each logit read before its gradient element is written, so grad may
    be x's memory) and summed from there in the same order, so the loss does
    not depend on want_grad."""
    z = zero_of(x)
    o = one_of(x)
    if want_grad:
        for i in range(4):
            xr = x[xp, c + i, xq0 : xq0 + nw]
            gr = grad[p, c + i, q0 : q0 + nw]
            for j in range(nw):
                gr[j] = expn(xr[j] - mb[j])
        ea = grad[p, c, q0 : q0 + nw]
        eb = grad[p, c + 1, q0 : q0 + nw]
        ec = grad[p, c + 2, q0 : q0 + nw]
        ed = grad[p, c + 3, q0 : q0 + nw]
        for j in range(nw):
            t, k = _terms4(ea[j], eb[j], ec[j], ed[j], z, o)
            tb[j] += t
            kb[j] += k
    else:
        xa = x[xp, c, xq0 : xq0 + nw]
        xb = x[xp, c + 1, xq0 : xq0 + nw]
        xc = x[xp, c + 2, xq0 : xq0 + nw]
        xd = x[xp, c + 3, xq0 : xq0 + nw]
        for j in range(nw):
            m = mb[j]
            a = expn(xa[j] - m)
            b = expn(xb[j] - m)
            e = expn(xc[j] - m)
            d = expn(xd[j] - m)
            t, k = _terms4(a, b, e, d, z, o)
            tb[j] += t
            kb[j] += k


@jit
def _col_lse(x, xp, xq0, j, mf, lg):
    """``_lse_of`` for one column of a block."""
    if mf == _INF or mf == _NINF:
        for c in range(x.shape[1]):
            if x[xp, c, xq0 + j] != x[xp, c, xq0 + j]:
                return _NAN
        return mf
    return mf + lg


@jit_alloc
def _index_block(
    targs, x, xp, xq0, p, q0, nw, scale, loss, per_row, grad, want_grad, zl, zg, lse, want_lse
):
    """A column block's summed loss for class-index targets (every option);
    ``targs = (tgt, w, wl, wsum, ignore, eps, wg)``."""
    tgt, w, wl, wsum, ignore, eps, wg = targs
    n = x.shape[1]
    keep = 1.0 - eps
    smooth = eps > 0.0
    epsn = eps / n
    mb = np.empty(nw, dtype=x.dtype)
    sb = np.empty(nw)
    cb = np.empty(nw)
    tv = np.empty(nw)
    xy = np.empty(nw)
    sm = np.zeros(nw)
    for j in range(nw):
        y = tgt[p, q0 + j]
        xy[j] = np.float64(x[xp, y, xq0 + j]) if y != ignore else 0.0
    _cols_max(x, xp, xq0, xq0 + nw, mb)
    if smooth:
        for c in range(n):
            for j in range(nw):
                sm[j] += np.float64(wl[c] * (mb[j] - x[xp, c, xq0 + j]))
    _cols_exp_at(x, xp, xq0, nw, mb, want_grad, grad, p, q0, sb, cb, tv)
    bsum = 0.0
    for j in range(nw):
        y = tgt[p, q0 + j]
        lg = log1p64(tv[j])
        mf = np.float64(mb[j])
        if want_lse or (zl != 0.0 and y != ignore):
            le = _col_lse(x, xp, xq0, j, mf, lg)
        else:
            le = 0.0
        if want_lse:
            lse[p, q0 + j] = cast_to(lse, le)
        if y == ignore:
            if per_row:
                loss[p, q0 + j] = 0.0
            sb[j] = 0.0  # gradient coefficient
            cb[j] = 0.0
        else:
            wy = w[y]
            lo = keep * wy * ((mf - xy[j]) + lg)
            if smooth:
                lo += epsn * (sm[j] + wsum * lg)
            ca = scale * (keep * wy + epsn * wsum)
            if zl != 0.0:
                lo += zl * (le * le)
                ca += zg * le
            if per_row:
                loss[p, q0 + j] = lo
            bsum += lo
            sb[j] = ca / (1.0 + tv[j])
            cb[j] = scale * keep * wy
    if want_grad:
        cg = np.empty(nw, dtype=grad.dtype)
        for j in range(nw):
            cg[j] = cast_to(grad, sb[j])
        for c in range(n):
            gr = grad[p, c, q0 : q0 + nw]  # a slice from 0: the loop vectorizes
            if smooth:
                wc = wg[c]
                for j in range(nw):
                    gr[j] = cg[j] * gr[j] - wc
            else:
                for j in range(nw):
                    gr[j] = cg[j] * gr[j]
        for j in range(nw):
            y = tgt[p, q0 + j]
            if y == ignore:
                for c in range(n):
                    grad[p, c, q0 + j] = zero_of(grad)
            else:
                grad[p, y, q0 + j] -= cast_to(grad, cb[j])
    return bsum


@jit_alloc
def _soft_block(
    targs, x, xp, xq0, p, q0, nw, scale, loss, per_row, grad, want_grad, zl, zg, lse, want_lse
):
    """A column block's summed loss for probability targets (every option);
    ``targs = (q, w1, w0, g1, g0)``."""
    q, w1, w0, g1, g0 = targs
    n = x.shape[1]
    mb = np.empty(nw, dtype=x.dtype)
    sb = np.empty(nw)
    cb = np.empty(nw)
    tv = np.empty(nw)
    sbv = np.zeros(nw)
    av = np.zeros(nw)
    _cols_max(x, xp, xq0, xq0 + nw, mb)
    for c in range(n):
        for j in range(nw):
            b = w1[c] * q[p, c, q0 + j] + w0[c]
            sbv[j] += np.float64(b * (mb[j] - x[xp, c, xq0 + j]))
            av[j] += np.float64(b)
    _cols_exp_at(x, xp, xq0, nw, mb, want_grad, grad, p, q0, sb, cb, tv)
    bsum = 0.0
    for j in range(nw):
        lg = log1p64(tv[j])
        lo = sbv[j] + av[j] * lg
        ca = scale * av[j]
        le = _col_lse(x, xp, xq0, j, np.float64(mb[j]), lg) if want_lse or zl != 0.0 else 0.0
        if want_lse:
            lse[p, q0 + j] = cast_to(lse, le)
        if zl != 0.0:
            lo += zl * (le * le)
            ca += zg * le
        if per_row:
            loss[p, q0 + j] = lo
        bsum += lo
        sb[j] = ca / (1.0 + tv[j])  # gradient coefficient
    if want_grad:
        cg = np.empty(nw, dtype=grad.dtype)
        for j in range(nw):
            cg[j] = cast_to(grad, sb[j])
        for c in range(n):
            gr = grad[p, c, q0 : q0 + nw]
            qr = q[p, c, q0 : q0 + nw]
            g1c = g1[c]
            g0c = g0[c]
            for j in range(nw):
                gr[j] = cg[j] * gr[j] - (g1c * qr[j] + g0c)
    return bsum


@jit
def _cap_block(x, p, q0, nw, cx, cap, rcap):
    """cx[0, :, :nw] = cap * tanh(x[p, :, q0:q0 + nw] * rcap)."""
    for c in range(x.shape[1]):
        for j in range(nw):
            cx[0, c, j] = cap * tanhx(x[p, c, q0 + j] * rcap)


@jit
def _dcap_block(grad, p, q0, nw, cx, rcap):
    """grad[p, :, q0:q0 + nw] *= 1 - (cx / cap)**2."""
    o = one_of(grad)
    for c in range(grad.shape[1]):
        for j in range(nw):
            u = cx[0, c, j] * rcap
            grad[p, c, q0 + j] = grad[p, c, q0 + j] * (o - u * u)


_col_block = _by_targets(
    "_col_block",
    _index_block,
    _soft_block,
    "A column block's summed loss, for class-index or probability targets.",
)


@kernel(error_model="numpy", alloc=True)
def cols_lm(
    x, targs, scale, loss, per_row, grad, want_grad, zl, zg, lse, want_lse, qchunk, cap
):  # fmt: skip
    """``cols`` with the LM options: tasks of column blocks, each with a block
    scratch for the capped logits."""
    pn, n, qn = x.shape
    nq = (qn + qchunk - 1) // qchunk
    capped = cap > 0.0
    cp, rc = _cap_consts(x, cap)
    nblk = pn * nq
    ntask, per = tasks_of(nblk)
    total = 0.0
    for tk in prange(ntask):
        cx = np.empty((1, n, qchunk if capped else 0), dtype=x.dtype)
        bsum = 0.0
        for k in range(tk * per, min(nblk, (tk + 1) * per)):
            p = k // nq
            q0 = (k % nq) * qchunk
            nw = min(qn, q0 + qchunk) - q0
            if capped:
                _cap_block(x, p, q0, nw, cx, cp, rc)
                bsum += _col_block(
                    targs, cx, 0, 0, p, q0, nw, scale, loss, per_row, grad, want_grad, zl, zg,
                    lse, want_lse,
                )  # fmt: skip
                if want_grad:
                    _dcap_block(grad, p, q0, nw, cx, rc)
            else:
                bsum += _col_block(
                    targs, x, p, q0, p, q0, nw, scale, loss, per_row, grad, want_grad, zl, zg,
                    lse, want_lse,
                )  # fmt: skip
        total += bsum
    return total


# ============================================================================
# few long rows: the pieces of each row in parallel
# ============================================================================
# With fewer rows than threads, row i is cut into pieces [p * piece, (p + 1) *
# piece) (the last one shorter), each small enough for L2.
#
# Pass 1 (``*_pieces_sums``), parallel over (row, piece), one read of the
# logits: each piece's (m, t) pair (``range_pair``) and the partial sums the
# loss needs.  The row kernels' ``sum_j b_j (m - x_j)`` (b = the smoothing
# weights, or the probability targets' B) needs the row's max m; a piece sums
# ``S = sum_j b_j (r - x_j)`` and ``W = sum_j b_j`` with r its own max (0 if
# that is not finite) and the merge adds ``S + (m - r) W``.
#
# The merge (``*_pieces_merge``, serial, O(rows * pieces)) gives each row's m,
# ``lg = log1p(t)``, lse, loss (the row kernels' formulas) and the gradient's
# coefficients.  A row whose max is +-inf gets t = nan, as in the row kernels
# (whose exp-sum of x - m is then nan), so losses and gradients match theirs.
#
# Pass 2 (``*_pieces_grad``, only for the gradient), parallel over the pieces
# again, one read and one write: ``g = c * exp(x - m) - B'_j``, the target's
# term, the cap's derivative.  With a softcap, each pass caps the piece into a
# per-task scratch first.
@jit_alloc  # returns a view: its reference must be counted
def _piece_view(x, i, lo, hi, capped, cx, cp, rc):
    """Piece [lo, hi) of row i: a view of x, or its capped copy in cx."""
    if capped:
        c = cx[: hi - lo]
        _cap_row(x[i, lo:hi], c, cp, rc)
        return c
    return x[i, lo:hi]


@jit
def _piece_ref(m):
    """The reference of a piece's deviation sums: its max, 0 if not finite."""
    return m if m - m == 0.0 else 0.0


@jit_fast
def _wsum(w, n):
    """sum(w) of n per-class values in float64 (an array, or a scalar: n * w)."""
    total = 0.0
    for j in range(n):
        total += np.float64(_at(w, j))
    return total


@jit
def _row_of_pieces(mo, to, i):
    """(m, t, lg, lse) of row i from its pieces' pairs."""
    m, t = _NINF, 0.0
    for p in range(mo.shape[1]):
        m, t = merge(m, t, mo[i, p], to[i, p])
    if m == _INF or m == _NINF:
        return m, _NAN, _NAN, m  # (nan in the row: m is nan already)
    lg = log1p64(t)
    return m, t, lg, m + lg


@jit
def _dev_of_pieces(mo, so, wo, i, m):
    """``sum_j b_j (m - x_j)`` of row i from its pieces' (S, W)."""
    s = 0.0
    for p in range(mo.shape[1]):
        s += so[i, p] + (m - _piece_ref(mo[i, p])) * wo[i, p]
    return s


@jit
def _exp_grad(xs, g, m, c, wg, smooth):
    """g = c * exp(xs - m) (- wg where smoothing)."""
    if smooth:
        for j in range(xs.shape[0]):
            g[j] = c * expn(xs[j] - m) - _at(wg, j)
    else:
        for j in range(xs.shape[0]):
            g[j] = c * expn(xs[j] - m)


@kernel(error_model="numpy", alloc=True)
def pieces_sums(x, targs, piece, cap, mo, to, so, wo):
    """Pass 1: per piece (m, t) into ``mo, to`` (rows, pieces), and the
    target's sums (``_index_piece_sums``, ``_soft_piece_sums``)."""
    nr, n = x.shape
    npc = mo.shape[1]
    capped = cap > 0.0
    cp, rc = _cap_consts(x, cap)
    ntask, per = tasks_of(nr * npc)
    nall = nr * npc
    for tk in prange(ntask):
        cx = np.empty(piece if capped else 0, dtype=x.dtype)
        for k in range(tk * per, min(nall, (tk + 1) * per)):
            i = k // npc
            p = k - i * npc
            lo = p * piece
            hi = min(n, lo + piece)
            xs = _piece_view(x, i, lo, hi, capped, cx, cp, rc)
            m, t = range_pair(xs, 0, hi - lo)
            mo[i, p] = m
            to[i, p] = t
            _piece_sums(targs, xs, i, p, lo, hi, m, so, wo)


@jit_alloc  # takes _part's views
def _index_piece_sums(targs, xs, i, p, lo, hi, m, so, wo):
    """Class-index targets, ``targs = (tgt, ignore, wl, smooth, xy)``: with
    smoothing ``so, wo`` = S, W of the weights ``wl``; each kept row's (capped)
    target logit into ``xy``."""
    tgt, ignore, wl, smooth, xy = targs
    y = tgt[i]
    if y != ignore and lo <= y < hi:
        xy[i] = np.float64(xs[y - lo])
    if smooth:
        wp = _part(wl, lo, hi)
        so[i, p] = _wdev(xs, wp, cast_to(xs, _piece_ref(m)))
        wo[i, p] = _wsum(wp, hi - lo)


@jit_alloc  # takes _part's views
def _soft_piece_sums(targs, xs, i, p, lo, hi, m, so, wo):
    """Probability targets, ``targs = (q, w1, w0)``: S, W of
    ``B_j = w1_j q_j + w0_j`` into ``so, wo``."""
    q, w1, w0 = targs
    r = cast_to(xs, _piece_ref(m))
    so[i, p], wo[i, p] = _soft_coef(xs, q[i, lo:hi], _part(w1, lo, hi), _part(w0, lo, hi), r)


_piece_sums = _by_targets(
    "_piece_sums", _index_piece_sums, _soft_piece_sums, "A piece's sums for the loss (pass 1)."
)


@jit
def index_pieces_merge(
    mo, to, so, wo, xy, tgt, w, wsum, ignore, eps, scale, n, zl, zg, loss, per_row, lse,
    want_lse, mr, cr, sr,
):  # fmt: skip
    """Merge of pass 1 for class-index targets: the summed loss (float64).

    Per row: ``loss`` (if ``per_row``), ``lse`` (if ``want_lse``), and for
    pass 2 the max ``mr``, the coefficient ``cr`` of ``exp(x - m)`` and the
    target's subtrahend ``sr``.
    """
    keep = 1.0 - eps
    smooth = eps > 0.0
    epsn = eps / n
    total = 0.0
    for i in range(mo.shape[0]):
        m, t, lg, le = _row_of_pieces(mo, to, i)
        mr[i] = m
        if want_lse:
            lse[i] = cast_to(lse, le)
        y = tgt[i]
        li = 0.0
        if y != ignore:
            wy = _at(w, y)
            li = keep * wy * ((m - xy[i]) + lg)
            if smooth:
                li += epsn * (_dev_of_pieces(mo, so, wo, i, m) + wsum * lg)
            ca = scale * (keep * wy + epsn * wsum)
            if zl != 0.0:
                li += zl * (le * le)
            if zg != 0.0:
                ca += zg * le
            cr[i] = ca / (1.0 + t)
            sr[i] = scale * keep * wy
        if per_row:
            loss[i] = li
        total += li
    return total


@jit
def soft_pieces_merge(mo, to, so, ao, scale, zl, zg, loss, per_row, lse, want_lse, mr, cr):
    """Merge of pass 1 for probability targets: the summed loss (float64); per
    row ``loss``, ``lse`` and pass 2's ``mr``, ``cr`` as ``index_pieces_merge``."""
    total = 0.0
    for i in range(mo.shape[0]):
        m, t, lg, le = _row_of_pieces(mo, to, i)
        mr[i] = m
        if want_lse:
            lse[i] = cast_to(lse, le)
        a = 0.0
        for p in range(mo.shape[1]):
            a += ao[i, p]
        li = _dev_of_pieces(mo, so, ao, i, m) + a * lg
        ca = scale * a
        if zl != 0.0:
            li += zl * (le * le)
        if zg != 0.0:
            ca += zg * le
        cr[i] = ca / (1.0 + t)
        if per_row:
            loss[i] = li
        total += li
    return total


@kernel(error_model="numpy", alloc=True)
def pieces_grad(x, targs, piece, cap, mr, cr, grad):
    """Pass 2: the gradient, piece by piece (``_index_piece_grad``,
    ``_soft_piece_grad``); ignored rows' pieces are zeros."""
    nr, n = x.shape
    npc = (n + piece - 1) // piece
    capped = cap > 0.0
    cp, rc = _cap_consts(x, cap)
    ntask, per = tasks_of(nr * npc)
    nall = nr * npc
    for tk in prange(ntask):
        cx = np.empty(piece if capped else 0, dtype=x.dtype)
        for k in range(tk * per, min(nall, (tk + 1) * per)):
            i = k // npc
            lo = (k - i * npc) * piece
            hi = min(n, lo + piece)
            g = grad[i, lo:hi]
            if _row_ignored(targs, i):
                gz = zero_of(grad)
                for j in range(hi - lo):
                    g[j] = gz
                continue
            xs = _piece_view(x, i, lo, hi, capped, cx, cp, rc)
            m = cast_to(x, mr[i])
            _piece_grad(targs, xs, g, i, lo, hi, m, cast_to(grad, cr[i]))
            if capped:
                _dcap_row(g, xs, rc)


@jit_alloc  # takes _part's views
def _index_piece_grad(targs, xs, g, i, lo, hi, m, c):
    """g = c * exp(xs - m) (- wg with smoothing), less the target's ``sr`` term;
    ``targs = (tgt, ignore, sr, wg, smooth)``."""
    tgt, _, sr, wg, smooth = targs
    _exp_grad(xs, g, m, c, _part(wg, lo, hi), smooth)
    y = tgt[i]
    if lo <= y < hi:
        g[y - lo] -= cast_to(g, sr[i])


@jit_alloc  # takes _part's views
def _soft_piece_grad(targs, xs, g, i, lo, hi, m, c):
    """g = c * exp(xs - m) - (g1 q + g0); ``targs = (q, g1, g0)``."""
    q, g1, g0 = targs
    qs = q[i, lo:hi]
    g1s = _part(g1, lo, hi)
    g0s = _part(g0, lo, hi)
    for j in range(xs.shape[0]):
        g[j] = c * expn(xs[j] - m) - (_at(g1s, j) * qs[j] + _at(g0s, j))


_piece_grad = _by_targets(
    "_piece_grad", _index_piece_grad, _soft_piece_grad, "A piece's gradient (pass 2)."
)


@jit
def _index_ignored(targs, i):
    return targs[0][i] == targs[1]


@jit
def _soft_ignored(targs, i):
    return False


_row_ignored = _by_targets(
    "_row_ignored", _index_ignored, _soft_ignored, "Whether row i's target is ignore_index."
)
