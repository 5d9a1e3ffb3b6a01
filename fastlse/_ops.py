"""Each reduction declared once: which kernel serves each route.

An op is a table ``route -> runner``; ``_routes.choose`` picks the route of
a view among the table's keys.  Like flox's aggregations (chunk, combine,
finalize), a reduction that cannot finish in its kernel computes partial
``(m, t)`` pairs (``PAIRS``: ``sum exp(x) == exp(m) * (1 + t)``), merges them
(``merge_pieces``) and finishes them (``finish_rows``: ``m + log1p(t)``);
the dask path and the online accumulator use the same pairs.

Runners take the kernels' view (``(M, N)`` rows or ``(P, N, Q)`` columns, or
a ``Layout`` whose copy is deferred: the row routes then copy it a block at
a time) and write ``dest``: the pairs ``(mo, to)``, the reduced values
(``(M,)`` or ``(P, Q)``), or an array of the view's shape.
"""

import numpy as np

from ._layout import FAST_DTYPES, Layout, as_rows, compute_dtype
from ._routes import (
    ROWS_MIN,
    Routes,
    choose,
    fold_plan,
    narrow_block_rows,
    narrow_rows,
    pieces_of,
    rows_work,
    short_vector,
    threads,
)
from .kernels import columns as C
from .kernels import drivers as P
from .kernels import rows as K

_F32, _F64 = FAST_DTYPES

__all__ = [
    "LOG_SOFTMAX",
    "LSE",
    "PAIRS",
    "SOFTMAX",
    "lse",
    "lse_pairs",
    "normalize",
    "pairs",
    "run",
]


def run(op, src, dest, *, vector=False):
    """Run ``op`` on ``src`` (a view, or a ``Layout``) into ``dest`` by the
    route ``_routes.choose`` gives; returns ``dest``."""
    op[choose(op, _shape(src), src.dtype, writes=op is not LSE, vector=vector)](src, dest)
    return dest


def _view(src):
    """The kernels' view of a view or a ``Layout`` (a deferred copy made whole)."""
    return src if type(src) is np.ndarray else src.view


def _shape(src):
    """The shape of ``_view(src)``, without making a deferred copy."""
    return src.shape if type(src) is np.ndarray else src.view_shape


def reduced_shape(shape):
    """(M,) of an (M, N) view, (P, Q) of a (P, N, Q) one."""
    return shape[:1] if len(shape) == 2 else shape[::2]


def _copy_rows(dst, src):
    P.copy_rows(dst.size, src, dst)


def _rows(kern, kind="rows"):
    """Runner of a kernel of whole rows (``kind``: "rows" or "narrow", for
    ``rows_work``): on the view at once, or block by block when the layout's
    copy is deferred (each block with rows for every thread; a block of the
    input's dtype is copied on the threads)."""

    def runner(src, dest):
        if type(src) is np.ndarray or not src.deferred:
            v = _view(src)
            kern(rows_work(v.shape[0], v.shape[1], kind), v, dest)
            return
        for r0, r1, blk in src.row_blocks(4 * threads(), copy=_copy_rows):
            kern(blk.size, blk, dest[r0:r1])

    runner.bind = lambda shape, dtype: kern.bound(rows_work(shape[0], shape[1], kind))
    return runner


def _narrow(kern):
    """Runner of a narrow block kernel, ``kern(x, out, nb)``: blocks of
    ``narrow_block_rows`` rows (fewer on the threads); a deferred copy block
    by block, as ``_rows``."""

    def runner(src, dest):
        if type(src) is np.ndarray or not src.deferred:
            v = _view(src)
            work = rows_work(v.shape[0], v.shape[1], "narrow")
            kern(work, v, dest, narrow_block_rows(v.shape[0], work))
            return
        for r0, r1, blk in src.row_blocks(4 * threads(), copy=_copy_rows):
            runner(blk, dest[r0:r1])

    def bind(shape, dtype):
        work = rows_work(shape[0], shape[1], "narrow")
        run, nb = kern.bound(work), narrow_block_rows(shape[0], work)
        return lambda v, dest: run(v, dest, nb)

    runner.bind = bind
    return runner


# ----------------------------------------------------------------------------
# pairs: (m, t) float64, one per reduced slice
# ----------------------------------------------------------------------------
def _pairs_empty(src, dest):
    dest[0].fill(-np.inf)
    dest[1].fill(0.0)


def _pairs_narrow(src, dest):
    v = _view(src)
    m = v.shape[0]
    work = rows_work(m, v.shape[1], "narrow")
    P.pair_narrow(work, v, *dest, narrow_block_rows(m, work))


def _pairs_of(kern, kind="rows"):
    def runner(src, dest):
        v = _view(src)
        kern(rows_work(v.shape[0], v.shape[1], kind), v, *dest)

    return runner


def _piece_scratch(v):
    """(piece length, two float64 (M, pieces) arrays) for rows split in pieces."""
    npc, piece = pieces_of(v.shape[1])
    return piece, np.empty((v.shape[0], npc)), np.empty((v.shape[0], npc))


def _pairs_pieces(src, dest):
    v = _view(src)
    piece, mp, tp = _piece_scratch(v)
    P.pair_pieces(v.size, v, piece, mp, tp)
    P.merge_pieces(mp, tp, *dest)


def _pairs_columns(src, dest):
    v = _view(src)
    w = C.col_width(v.shape[2])
    C.pairs_cols(v.size, v, w, C.block_rows(w, v.itemsize), *dest)


def _pairs_folded(src, dest):
    v = _view(src)
    p_, _, q_ = v.shape
    mo, to = dest
    k, piece, npc, rows, nt = fold_plan(v)
    if npc == 1:
        mk, tk = mo.reshape(p_, q_, 1), to.reshape(p_, q_, 1)
        C.pairs_folded(v.size, v, k, piece, rows, nt, mk, tk)
        return
    mp = np.empty((p_ * q_, npc))
    tp = np.empty((p_ * q_, npc))
    mk, tk = mp.reshape(p_, q_, npc), tp.reshape(p_, q_, npc)
    C.pairs_folded(v.size, v, k, piece, rows, nt, mk, tk)
    P.merge_pieces(mp, tp, mo.reshape(-1), to.reshape(-1))


PAIRS = Routes(
    {
        "empty": _pairs_empty,
        "narrow": _pairs_narrow,
        "narrow_t": _pairs_of(P.pair_narrow_t, "narrow"),
        "pieces": _pairs_pieces,
        "rows": _pairs_of(P.pair_rows),
        "columns": _pairs_columns,
        "folded": _pairs_folded,
    }
)


def pairs(src):
    """(m, t) float64 arrays of the view's reductions ((M,) or (P, Q))."""
    shape = _shape(src)
    mo, to = np.empty(reduced_shape(shape)), np.empty(reduced_shape(shape))
    PAIRS[choose(PAIRS, shape, src.dtype, writes=True)](src, (mo, to))
    return mo, to


# ----------------------------------------------------------------------------
# logsumexp: the reduced values in the view's dtype
# ----------------------------------------------------------------------------
def _lse_vector(src, dest):
    v = _view(src)
    dest[0] = K.row_lse(v[0], 0, v.shape[1])


def lse(src, vector):
    """logsumexp of a view or a ``Layout`` by the chooser's route: the
    reduced array ((M,) or (P, Q)) in the view's dtype.  (``run``'s work,
    without its frame: small calls come here, so ``_shape`` and
    ``reduced_shape`` are written out.)"""
    shape = src.shape if type(src) is np.ndarray else src.view_shape
    res = np.empty(shape[:1] if len(shape) == 2 else shape[::2], src.dtype)
    LSE[choose(LSE, shape, src.dtype, vector=vector)](src, res)
    return res


def _plain_vector(a, axis):
    """``a`` is a C-contiguous float32 / float64 1-d ndarray reduced along
    its one axis (axis None, 0 or -1): the short-vector paths' inputs."""
    if type(a) is not np.ndarray or a.ndim != 1:
        return False
    if not (axis is None or (type(axis) is int and (axis == 0 or axis == -1))):
        return False
    dt = a.dtype
    return (dt is _F64 or dt is _F32) and a.flags.c_contiguous


def lse_short_vector(a, axis):
    """logsumexp of a contiguous float32 / float64 1-d ``a`` (axis None, 0 or
    -1) as a scalar when the chooser routes its one row to "vector"; None for
    anything else.  No view or result array is built: the route's kernel on
    ``a`` itself (the bits of ``LSE["vector"]``)."""
    if not _plain_vector(a, axis):
        return None
    n = a.shape[0]
    if not short_vector(n):  # choose's rule for the vector route
        return None
    return a.dtype.type(K.row_lse(a, 0, n))


def _lse_from_pairs(src, dest):
    mo, to = pairs(src)
    P.finish_rows(dest.size, mo.reshape(-1), to.reshape(-1), dest.reshape(-1))


LSE = Routes(
    {
        "empty": _lse_from_pairs,
        "vector": _lse_vector,
        "narrow": _narrow(P.lse_narrow),
        "narrow_t": _rows(P.lse_narrow_t, "narrow"),
        "pieces": _lse_from_pairs,
        "rows": _rows(P.lse_rows),
        "columns": _lse_from_pairs,
        "folded": _lse_from_pairs,
    },
    rows_min=ROWS_MIN,
)


# ----------------------------------------------------------------------------
# softmax, log_softmax: an array of the view's shape
# ----------------------------------------------------------------------------
def _softmax_pieces(src, dest):
    v = _view(src)
    piece, mp, sp = _piece_scratch(v)
    tmin = np.empty_like(sp)
    P.softmax_pieces_exp(v.size, v, dest, piece, mp, sp, tmin)
    P.softmax_piece_divisors(mp, sp)
    P.softmax_pieces_scale(v.size, dest, piece, sp, tmin)


def _log_softmax_pieces(src, dest):
    v = _view(src)
    mo, to = pairs(v)
    P.log_softmax_pieces(v.size, v, dest, pieces_of(v.shape[1])[1], mo, to)


def _normalize_columns(log):
    def runner(src, dest):
        v = _view(src)
        p_, n_, q_ = v.shape
        w, rows = C.softmax_slabs(p_, n_, q_, v.itemsize, threads())
        C.softmax_cols(v.size, v, dest, w, rows, log)

    return runner


def _normalize_folded(log):
    def runner(src, dest):
        v = _view(src)
        k, piece, npc, rows, nt = fold_plan(v)
        if npc == 1:  # a slab at a time: its output while it is in cache
            C.softmax_folded(v.size, v, dest, k, rows, nt, log)
        else:
            mo, to = pairs(v)
            C.apply_folded(v.size, v, dest, k, piece, nt, mo, to, log)

    return runner


def _nothing(src, dest):
    pass


def _vector(row, narrow, rows_min=None):
    """Runner of the ``vector`` route of softmax or log_softmax, serial, with
    the bits of the route of the view's one row: a narrow row by ``narrow``,
    the narrow block kernel's sweeps on one row without its scratch, a wider
    one by ``row``, the ``rows`` kernel's function of a row (1-d in and
    out, nothing else built); ``rows_min``: the table's (``Routes``)."""

    def row_kernel(n, itemsize):
        return narrow if narrow_rows(n, itemsize, rows_min) else row

    def runner(src, dest):
        v = _view(src)
        row_kernel(v.shape[1], v.itemsize)(v[0], dest[0])

    # (bound: the row kernel itself, on the row: 1-d in and out)
    runner.bind = lambda shape, dtype: row_kernel(shape[1], np.dtype(dtype).itemsize)
    return runner


SOFTMAX = Routes(
    {
        "empty": _nothing,
        "vector": _vector(P.softmax_vector, K.narrow_softmax_row),
        "narrow": _narrow(P.softmax_narrow),
        "pieces": _softmax_pieces,
        "rows": _rows(P.softmax_rows),
        "columns": _normalize_columns(False),
        "folded": _normalize_folded(False),
    }
)

LOG_SOFTMAX = Routes(
    {
        "empty": _nothing,
        "vector": _vector(P.log_softmax_vector, K.narrow_log_softmax_row, ROWS_MIN),
        "narrow": _narrow(P.log_softmax_narrow),
        "pieces": _log_softmax_pieces,
        "rows": _rows(P.log_softmax_rows),
        "columns": _normalize_columns(True),
        "folded": _normalize_folded(True),
    },
    rows_min=ROWS_MIN,
)


def bound(op, route, shape, dtype):
    """``op``'s runner of ``route`` for views of ``shape`` and ``dtype``, with
    what depends only on them decided once (the serial or parallel twin, the
    narrow block rows; a runner's ``bind``): ``runner(view, dest)``.  The
    "vector" route's is its row kernel, on the row itself (1-d in and out).
    For the memoized small calls (``special._plan``); same bits as
    ``op[route]``."""
    runner = op[route]
    bind = getattr(runner, "bind", None)
    return runner if bind is None else bind(shape, dtype)


def normalize(op, r):
    """softmax or log_softmax (``op``) of a checked call ``r`` (``_args.Normalize``,
    real, no mask) through the general layout, into ``r.out`` where the
    kernels can write it: not where it shares memory with x (in place, or
    overlapping), then a buffer is copied at the end, as numpy's ufuncs do.
    Returns the result in kernel dtype, laid out like x (``r.out`` or new)."""
    lay = Layout(r.x, r.axes, dtype=r.cdt)
    shared = r.out is not None and np.may_share_memory(r.out, r.x)
    dest = lay.out_view(r.out) if r.out is not None and not shared else None
    if dest is None:
        dest, full = lay.empty_like_view(r.cdt)
    else:
        full = r.out
    if r.x.size:
        run(op, lay, dest, vector=True)  # one row: its bits, by the vector route
    return full


# ----------------------------------------------------------------------------
# where= and b=: two arrays of one shape, rows only
# ----------------------------------------------------------------------------
def _mask_rows(w, axes):
    """The bool mask in the rows arrangement, as uint8 for the kernels (a view
    of the mask's bytes: no conversion copy)."""
    return as_rows(w, axes, np.bool_)[0].view(np.uint8)


def lse_masked(a, where, axes, cdt):
    """logsumexp of ``a`` over ``axes`` where ``where``: ``(M,)`` values in
    ``cdt`` and the kept shape."""
    x, _, moved = as_rows(a, axes, cdt)
    mo = np.empty(x.shape[0])
    to = np.empty(x.shape[0])
    if x.shape[1] == 0:
        _pairs_empty(x, (mo, to))
    else:
        P.pair_rows_masked(x.size, x, _mask_rows(where, axes), mo, to)
    res = np.empty(x.shape[0], dtype=cdt)
    P.finish_rows(res.size, mo, to, res)
    return res, moved[: a.ndim - len(axes)]


def normalize_masked(x, where, axes, cdt, out, log):
    """softmax (log: log_softmax) of ``x`` where ``where``, written into
    ``out`` directly where its layout allows; returns the result."""
    xv, perm, moved = as_rows(x, axes, cdt)
    direct = (
        out is not None
        and perm == sorted(perm)
        and out.dtype == cdt
        and out.flags.c_contiguous
        and not np.may_share_memory(out, x)
    )
    buf = out.reshape(xv.shape) if direct else np.empty(xv.shape, dtype=cdt)
    if xv.size:
        P.softmax_rows_masked(xv.size, xv, _mask_rows(where, axes), buf, log)
    if direct:
        return out
    res = np.transpose(buf.reshape(moved), np.argsort(perm))
    return res if out is not None else np.ascontiguousarray(res)


def lse_weighted(a, b, axes, cdt):
    """(log|sum b exp(a)|, sign) over ``axes``, float64 ``(M,)``, and the kept shape."""
    x, _, moved = as_rows(a, axes, cdt)
    w, _, _ = as_rows(b, axes, np.float64)
    out = np.empty(x.shape[0])
    sgn = np.empty(x.shape[0])
    if x.shape[1] == 0:
        out.fill(-np.inf)
        sgn.fill(0.0)
    else:
        P.lse_weighted_rows(x.size, x, w, out, sgn)
    return out, sgn, moved[: a.ndim - len(axes)]


def lse_pairs(a, axes):
    """Partial ``(m, t)`` pairs of a real array over ``axes`` (keepdims shape).

    ``sum exp(a) == exp(m) * (1 + t)`` along the axes; float64 results. Used by
    the dask path and :class:`OnlineLogSumExp` to merge partial reductions.
    """
    a = np.asarray(a)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    lay = Layout(a, axes, dtype=compute_dtype(a.dtype))
    mo, to = pairs(lay)
    return lay.reduced(mo, True), lay.reduced(to, True)
