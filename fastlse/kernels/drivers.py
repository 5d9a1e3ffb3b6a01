"""Drivers: prange over rows, over pieces of long rows, over column blocks.

Each driver is a :class:`~fastlse.kernels.threads.Kernel` (compiled serial and
parallel, lazily); the split is chosen from the shape by the caller (_api):
many rows -> threads over rows; few long rows -> threads over pieces of a row,
merged with the pair algebra; narrow rows -> blocks of rows with one flat
vectorized exp; reductions along a middle axis -> column blocks in memory order.
"""

import numpy as np
from numba import prange

from .compile import jit, jit_alloc, stack_array
from .exp import exp64, expneg64, log1p64
from .rows import (
    FUSED_BYTES,
    INLINE_SWEEP,
    PAIR_ROWS,
    ROW_BLOCK,
    block_max_t,
    block_pairs,
    block_shift_pairs,
    block_softmax,
    block_sum_t,
    cast_to,
    divide_piece,
    finish_block,
    has_nan,
    log_softmax_consts,
    log_softmax_consts_lg,
    log_softmax_store,
    merge,
    narrow_pairs,
    narrow_scratch_len,
    narrow_softmax,
    pairs_t,
    range_pair,
    row_block,
    row_log_softmax,
    row_lse_weighted,
    row_max_min,
    row_numer_store,
    row_pair_masked,
    row_shift_pair,
    row_softmax,
    row_softmax_any,
    row_softmax_masked,
    row_softmax_masked_fast,
    row_sub,
    scratch_t,
    smallest_numer,
    spread,
    t_rows,
    tasks_of,
    transpose_rows,
)
from .threads import CACHE, PARALLEL_MIN_WORK, Kernel, kernel, num_threads

__all__ = ["CACHE", "PARALLEL_MIN_WORK", "Kernel", "kernel", "num_threads"]  # + drivers

_NAN = np.nan
_INF = np.inf


# ---------------------------------------------------------------- rows -----
@kernel
def lse_rows(x, out):
    """Each row's pair, then ``m + log1p(t)`` by blocks of rows as one
    vectorized loop (``finish_block``: the bits of ``finish``); a
    scalar log1p per row is a large share of a short row.  Blocks
    of ``row_block`` rows, whose pairs wait in ``_lse_block``'s scratch."""
    m_ = x.shape[0]
    rb = row_block(m_)
    for b in prange((m_ + rb - 1) // rb):
        r0 = b * rb
        _lse_block(x, out, r0, min(m_, r0 + rb))


@jit
def _lse_block(x, out, r0, r1):
    """``lse_rows``' rows r0..r1 (at most ``ROW_BLOCK``).  A ``jit`` helper
    given whole arrays: the row views are taken here, without reference
    counting; the pairs wait on its stack (``stack_array``: the kernel
    allocates nothing, so it counts nothing either)."""
    n = x.shape[1]
    mo = stack_array(ROW_BLOCK, np.float64)
    to = stack_array(ROW_BLOCK, np.float64)
    # two copies of one loop (``rows.INLINE_SWEEP``): rows this short have
    # their exp-sum inlined, its constants held across the rows; longer rows
    # call it, in a loop that holds nothing for it
    if n <= INLINE_SWEEP:
        block_pairs(x, r0, r1, mo, to)
    else:
        for i in range(r0, r1):
            mo[i - r0], to[i - r0] = range_pair(x[i], 0, n)
    finish_block(mo[: r1 - r0], to[: r1 - r0], out, r0, r1)


@kernel
def pair_rows(x, mo, to):
    n = x.shape[1]
    m_ = x.shape[0]
    if n <= INLINE_SWEEP:  # rows by PAIR_ROWS (``block_pairs``), as in ``_lse_block``
        for b in prange((m_ + PAIR_ROWS - 1) // PAIR_ROWS):
            r0 = b * PAIR_ROWS
            r1 = min(m_, r0 + PAIR_ROWS)
            block_pairs(x, r0, r1, mo[r0:r1], to[r0:r1])
    else:
        for i in prange(x.shape[0]):
            mo[i], to[i] = range_pair(x[i], 0, n)


@kernel
def softmax_rows(x, out):
    n = x.shape[1]
    m_ = x.shape[0]
    if n <= INLINE_SWEEP:  # rows by PAIR_ROWS (``block_softmax``), as in ``pair_rows``
        for b in prange((m_ + PAIR_ROWS - 1) // PAIR_ROWS):
            r0 = b * PAIR_ROWS
            block_softmax(x, out, r0, min(m_, r0 + PAIR_ROWS))
    else:
        for i in prange(x.shape[0]):
            row_softmax(x[i], out[i], 0, n)


@jit
def softmax_vector(x, out):
    """softmax of one 1-d row x into out: ``softmax_rows``' row, serial."""
    row_softmax_any(x, out, 0, x.shape[0])


@jit
def log_softmax_vector(x, out):
    """log_softmax of one short 1-d row x into out (up to ``FUSED_BYTES``):
    ``log_softmax_rows``' row, serial, its log1p a scalar one."""
    row_log_softmax(x, out)


#: log_softmax rows up to this many bytes run ``row_log_softmax``'s sweeps by
#: blocks of rows, the log1p of a block's rows as one vectorized loop (a
#: scalar log1p per row is a visible share of a short row); longer rows
#: run ``row_log_softmax`` itself
LSM_BLOCK_BYTES = 1024


@kernel
def log_softmax_rows(x, out):
    m_, n = x.shape
    if n * x.itemsize <= LSM_BLOCK_BYTES:
        rb = row_block(m_)
        for b in prange((m_ + rb - 1) // rb):
            r0 = b * rb
            _log_softmax_block(x, out, r0, min(m_, r0 + rb))
    else:
        for i in prange(m_):
            _log_softmax_row(x, out, i)


@jit
def _log_softmax_block(x, out, r0, r1):
    """``log_softmax_rows``' short rows r0..r1 (at most ``ROW_BLOCK``; row
    views uncounted and pairs on the stack, as in ``_lse_block``)."""
    mo = stack_array(ROW_BLOCK, np.float64)
    to = stack_array(ROW_BLOCK, np.float64)
    if x.shape[1] <= INLINE_SWEEP:  # two copies, as in ``_lse_block``
        block_shift_pairs(x, out, r0, r1, mo, to)
    else:
        for i in range(r0, r1):
            mo[i - r0], to[i - r0] = row_shift_pair(x[i], out[i])
    _lg_block(to[: r1 - r0])
    for i in range(r0, r1):
        row_sub(x[i], out[i], mo[i - r0], to[i - r0])


@jit
def _log_softmax_row(x, out, i):
    """``log_softmax_rows``' long row i: fused sweeps up to ``FUSED_BYTES``,
    else pairs by blocks and one store sweep."""
    n = x.shape[1]
    if n * x.itemsize <= FUSED_BYTES:
        row_log_softmax(x[i], out[i])
    else:
        m, t = range_pair(x[i], 0, n)
        c1, c2 = log_softmax_consts(m, t)
        log_softmax_store(x[i], out[i], 0, n, c1, c2)


@jit
def _lg_block(to):
    """t -> log1p(t) in place, one vectorized loop."""
    for i in range(to.shape[0]):
        to[i] = log1p64(to[i])


@kernel
def lse_weighted_rows(a, b, out, sgn):
    n = a.shape[1]
    for i in prange(a.shape[0]):
        out[i], sgn[i] = row_lse_weighted(a[i], b[i], 0, n)


@kernel
def pair_rows_masked(x, w, mo, to):
    n = x.shape[1]
    for i in prange(x.shape[0]):
        mo[i], to[i] = row_pair_masked(x[i], w[i], 0, n)


@kernel
def softmax_rows_masked(x, w, out, log):
    n = x.shape[1]
    for i in prange(x.shape[0]):
        if log:
            row_softmax_masked(x[i], w[i], out[i], 0, n, True)
        else:
            row_softmax_masked_fast(x[i], w[i], out[i], 0, n)


@kernel
def copy_rows(src, dst):
    """dst = src, rows on the threads (src: a strided view of x's dtype; a
    copy through numpy runs on one thread)."""
    n = dst.shape[1]
    for i in prange(dst.shape[0]):
        s = src[i]
        d = dst[i]
        for j in range(n):
            d[j] = s[j]


# ------------------------------------------- narrow rows: blocks of rows -----
@jit
def _block_rows(x, nb):
    """Rows of a block's scratch: nb, or fewer when x has fewer rows (a
    small call does not allocate scratch for NB rows)."""
    return min(nb, x.shape[0])


@jit_alloc
def _narrow_scratch(x, nb):
    n = x.shape[1]
    nb = _block_rows(x, nb)
    return (
        np.empty(nb, dtype=x.dtype),
        np.empty(narrow_scratch_len(nb, n), dtype=x.dtype),
        np.empty(nb * n, dtype=x.dtype),
        np.empty(nb * n, dtype=x.dtype),
    )


# The narrow kernels take blocks of nb rows (``_routes.narrow_block_rows``:
# NB, fewer on the threads).  A row's sweeps do not depend on its block, so
# every nb gives the same bits.
@kernel(alloc=True)
def pair_narrow(x, mo, to, nb):
    m_ = x.shape[0]
    for b in prange((m_ + nb - 1) // nb):
        r0 = b * nb
        mb, rep, e, f = _narrow_scratch(x, nb)
        narrow_pairs(x, r0, min(m_, r0 + nb), mo, to, r0, mb, rep, e, f)


@kernel(alloc=True)
def lse_narrow(x, out, nb):
    m_ = x.shape[0]
    for b in prange((m_ + nb - 1) // nb):
        r0 = b * nb
        r1 = min(m_, r0 + nb)
        mb, rep, e, f = _narrow_scratch(x, nb)
        mo = np.empty(_block_rows(x, nb))
        to = np.empty(_block_rows(x, nb))
        narrow_pairs(x, r0, r1, mo, to, 0, mb, rep, e, f)
        finish_block(mo, to, out, r0, r1)


@kernel(alloc=True)
def lse_narrow_t(x, out):
    """logsumexp of narrow rows by transposed blocks: ``t_rows`` rows copied
    into an (N, rows) scratch, then the max, exp-sum and log1p sweeps
    vectorized across the rows (no per-row reduction chains, no per-element
    copy of the row's max); each task allocates its scratch once.  Faster
    than ``lse_narrow`` for float32 (docs/performance-notes.md)."""
    nr = x.shape[0]
    tb = t_rows(x)
    nblk = (nr + tb - 1) // tb
    ntask, per = tasks_of(nblk)
    for tk in prange(ntask):
        xt, mv, acc, cnt = scratch_t(x, tb)
        mo = np.empty(tb)
        to = np.empty(tb)
        for b in range(tk * per, min(nblk, (tk + 1) * per)):
            r0 = b * tb
            nb = min(nr, r0 + tb) - r0
            _pairs_t(x, r0, nb, xt, mv, acc, cnt, mo, to)
            finish_block(mo, to, out, r0, r0 + nb)


@kernel(alloc=True)
def pair_narrow_t(x, mo, to):
    """The (m, t) pairs of narrow rows by transposed blocks (``lse_narrow_t``'s)."""
    nr = x.shape[0]
    tb = t_rows(x)
    nblk = (nr + tb - 1) // tb
    ntask, per = tasks_of(nblk)
    for tk in prange(ntask):
        xt, mv, acc, cnt = scratch_t(x, tb)
        for b in range(tk * per, min(nblk, (tk + 1) * per)):
            r0 = b * tb
            nb = min(nr, r0 + tb) - r0
            _pairs_t(x, r0, nb, xt, mv, acc, cnt, mo[r0 : r0 + nb], to[r0 : r0 + nb])


@jit
def _pairs_t(x, r0, nb, xt, mv, acc, cnt, mo, to):
    """mo, to = the pairs of rows r0..r0 + nb (scratch: xt, mv, acc, cnt)."""
    transpose_rows(x, r0, nb, xt)
    block_max_t(xt, nb, mv)
    block_sum_t(xt, nb, mv, acc, cnt)
    pairs_t(x, r0, nb, mv, acc, cnt, mo, to)


@kernel(alloc=True)
def softmax_narrow(x, out, nb):
    m_ = x.shape[0]
    for b in prange((m_ + nb - 1) // nb):
        r0 = b * nb
        mb = np.empty(_block_rows(x, nb), dtype=x.dtype)  # the max and its copies: no e, f
        rep = np.empty(narrow_scratch_len(_block_rows(x, nb), x.shape[1]), dtype=x.dtype)
        rrep = np.empty_like(rep)
        narrow_softmax(x, out, r0, min(m_, r0 + nb), mb, rep, rrep)


@kernel(alloc=True)
def log_softmax_narrow(x, out, nb):
    m_ = x.shape[0]
    n = x.shape[1]
    for b in prange((m_ + nb - 1) // nb):
        r0 = b * nb
        r1 = min(m_, r0 + nb)
        mb, rep, e, f = _narrow_scratch(x, nb)
        mo = np.empty(_block_rows(x, nb))
        to = np.empty(_block_rows(x, nb))
        of = out[r0:r1].reshape((r1 - r0) * n)
        narrow_pairs(x, r0, r1, mo, to, 0, mb, rep, e, f, of)
        _narrow_log_softmax_finish(of, n, mo, to, r1 - r0, rep)


@jit
def _narrow_log_softmax_finish(of, n, mo, to, nr, rep):
    """of holds x - max (stored by the exp sweep); subtract each row's
    log1p(t) in place.  log_softmax_consts' specials become a nan row
    constant (nan elements, or only -inf: of already holds nan where
    x - max is -inf - -inf) or 0 (an inf max: of holds x - inf).  The
    log1p runs as one vectorized loop over the block (a scalar log per row
    cost as much as the rows), and the row constants are spread over the
    block so the subtraction is one flat, vectorized loop, with the bits of
    (x - c1) - c2."""
    _lg_block(to[:nr])
    for i in range(nr):
        c1, c2 = log_softmax_consts_lg(mo[i], to[i])
        spread(rep, i * n, n, cast_to(rep, _NAN if c1 != c1 else c2))
    _flat_sub(of, rep, nr * n)


@jit
def _flat_sub(of, c, size):
    for k in range(size):
        of[k] = of[k] - c[k]


# ------------------------------------------------ few long rows: pieces -----
@kernel
def pair_pieces(x, piece, mo, to):
    n = x.shape[1]
    npc = mo.shape[1]
    for k in prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        mo[i, k % npc], to[i, k % npc] = range_pair(x[i], lo, hi)


@jit
def merge_pieces(mo, to, mr, tr):
    for i in range(mo.shape[0]):
        m, t = -_INF, 0.0
        for k in range(mo.shape[1]):
            m, t = merge(m, t, mo[i, k], to[i, k])
        mr[i] = m
        tr[i] = t


@kernel
def finish_rows(mr, tr, out):
    """out = finish(m, t) elementwise, by blocks on the threads: selects,
    no branch, so it vectorizes (a branchy loop per element can cost more
    than the reduction itself for wide columns)."""
    nb = (mr.shape[0] + 4095) // 4096
    for b in prange(nb):
        lo = b * 4096
        hi = min(mr.shape[0], lo + 4096)
        ms = mr[lo:hi]  # slices from 0: the loop vectorizes
        ts = tr[lo:hi]
        os = out[lo:hi]
        for i in range(ms.shape[0]):
            m = ms[i]
            y = m + log1p64(ts[i])
            os[i] = cast_to(out, m if (m == _INF or m == -_INF) else y)


@kernel
def softmax_pieces_exp(x, out, piece, mo, so, tmin):
    """Phase 1: out = softmax's numerators against each piece's max
    (``row_numer_store``: float32 scaled by 2**K), so = their sums (nan if
    unusable), tmin = a bound of their smallest (``smallest_numer``)."""
    n = x.shape[1]
    npc = mo.shape[1]
    for k in prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        m, xmin = row_max_min(x[i], lo, hi)
        mo[i, k % npc] = m
        tmin[i, k % npc] = 0.0
        if m == -_INF:
            for j in range(lo, hi):
                out[i, j] = 0.0
            so[i, k % npc] = _NAN if has_nan(x[i], lo, hi) else 0.0
        elif m == _INF:
            so[i, k % npc] = _NAN
        else:
            tmin[i, k % npc] = smallest_numer(xmin, m)
            so[i, k % npc] = row_numer_store(x[i], out[i], lo, hi, m)


@jit
def softmax_piece_divisors(mo, so):
    """Per piece divisor S * exp(M - m_piece), scaled as the numerators
    (float64); nan where scipy gives nan."""
    for i in range(mo.shape[0]):
        big = -_INF
        for k in range(mo.shape[1]):
            big = max(big, mo[i, k])
        s = 0.0
        for k in range(mo.shape[1]):
            if mo[i, k] != -_INF or so[i, k] != 0.0:
                s += so[i, k] * expneg64(mo[i, k] - big)
        bad = s != s or big == _INF or big == -_INF
        for k in range(mo.shape[1]):
            so[i, k] = _NAN if bad else s * exp64(big - mo[i, k])


@kernel
def softmax_pieces_scale(out, piece, so, tmin):
    n = out.shape[1]
    npc = so.shape[1]
    for k in prange(out.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        divide_piece(out[i], lo, hi, so[i, k % npc], tmin[i, k % npc])


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
