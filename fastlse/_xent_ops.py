"""Cross-entropy declared once: the kernels of each route, and how a checked
call (``_args.CrossEntropy``) runs on them.

The route (``_routes.choose_xent``) names a family of fused kernels; within
it, the options pick a variant:

* ``plain``: loss (and gradient) with class weights, ignore_index, label
  smoothing;
* ``lm``: the same with the language-model options (z-loss, softcap, the
  per-row log-sum-exp);
* ``forward``: the loss alone, no smoothing (a lighter kernel where the
  family has one).

Every kernel returns the summed loss in float64; "none" also fills one loss
per row; the gradient, when asked for, is written in the same pass.
"""

from typing import NamedTuple

import numpy as np

from . import _args
from ._layout import FAST_DTYPES, ClassLayout, compute_dtype
from ._routes import (
    choose_xent,
    classes_moved,
    index_rows_route,
    keep,
    narrow_rows,
    pieces_of,
    rows_work,
    xent_col_block,
    xent_cols_width,
)
from .kernels import columns as C
from .kernels import xent as XK

_F32, _F64 = FAST_DTYPES
_I64 = np.dtype(np.int64)

__all__ = ["XENT", "as_result", "compute", "compute_general", "run", "run_small"]


class Family(NamedTuple):
    plain: object
    lm: object
    forward: object  # None: the family has no forward-only kernel


XENT = {
    "index_small": Family(XK.index_rows_small, XK.index_rows_small_lm, XK.index_rows_small_plain),
    "index_rows": Family(XK.index_rows, XK.index_rows_lm, XK.index_rows_plain),
    "soft_rows": Family(XK.soft_rows, XK.soft_rows_lm, None),
    "columns": Family(XK.cols, XK.cols_lm, None),
    "columns_loss": Family(None, None, XK.cols_index_loss),
}

#: (C, dtype) -> the unit class weights of the plain kernels (w, w in x's
#: dtype, the smoothing subtrahend 0): small read-only-by-convention arrays,
#: kept for C up to UNIT_WEIGHTS_MAX_C so small calls do not rebuild them
_UNIT_WEIGHTS = {}
UNIT_WEIGHTS_MAX_C = 4096


def unit_weights(n, cdt):
    key = (n, cdt)
    ws = _UNIT_WEIGHTS.get(key)
    if ws is None:
        ws = (np.ones(n), np.ones(n, dtype=cdt), np.zeros(n, dtype=cdt))
        if n <= UNIT_WEIGHTS_MAX_C:
            _UNIT_WEIGHTS[key] = ws
    return ws


def ieee_div(a, b):
    """a / b as numpy's float64 division gives it (b == 0: +-inf or nan), no warning."""
    if b != 0.0:
        return a / b
    if a != a or a == 0.0:
        return np.nan
    return np.copysign(np.inf, a) * np.copysign(1.0, b)


def z_coefficients(z, reduction, weighted, tk, ii, den):
    """(zl, zg) of the z-loss for class-index targets.

    The z-loss is ``z * lse**2`` per kept row, unweighted; "mean" divides its
    sum by the number of kept rows (Liger-Kernel's choice), while the kernels
    return one sum that is divided by the main loss's denominator ``den``
    (the summed class weights): so for "mean" with weights the kernels get
    ``zl = z * den / count``.  ``zg`` is the gradient's ``2 * z / count``.
    """
    if z == 0.0:
        return 0.0, 0.0
    if reduction != "mean":
        return z, 2.0 * z
    cnt = float(np.count_nonzero(tk != ii)) if weighted else float(den)
    if cnt == 0.0:  # no kept row: nothing to add
        return z, 0.0
    return (z * (float(den) / cnt) if weighted else z), 2.0 * z / cnt


def compute(logits, target, axis, **kw):
    """cross_entropy of numpy inputs along the class ``axis`` (an int), the
    keywords those of ``fastlse.cross_entropy``: its result."""
    if plain(**kw):
        res = run_small(
            logits, target, axis, kw["ignore_index"], kw["reduction"], kw["return_grad"]
        )
        if res is not None:
            return res
    return compute_general(logits, target, axis, **kw)


def compute_general(logits, target, axis, **kw):
    """``compute`` past the small-call route, for a caller that tried it."""
    moved = classes_moved_last(logits, target, axis, kw["out"])
    if moved is not None:  # few columns behind the class axis: as rows
        ax, rows, target = moved
        res = compute(rows, target, -1, **kw)
        return moved_back(
            res, logits.shape, ax, kw["reduction"] == "none", kw["return_grad"], kw["return_lse"]
        )
    c = _args.cross_entropy(logits, target, axis, **kw)
    loss, grad, lse = run(c)
    outs = [loss] + ([grad] if c.return_grad else []) + ([lse] if c.return_lse else [])
    return outs[0] if len(outs) == 1 else tuple(outs)


def plain(
    weight, out, return_lse, softcap, z_loss, label_smoothing, ignore_index, reduction, return_grad
):
    """No option beyond ``ignore_index`` / ``reduction`` / ``return_grad``
    (python numbers only: anything else the general checks look at)."""
    return (
        weight is None
        and out is None
        and not return_lse
        and softcap is None
        and type(z_loss) in (int, float)
        and z_loss == 0.0
        and type(label_smoothing) in (int, float)
        and label_smoothing == 0.0
        and type(ignore_index) is int
        and type(reduction) is str
        and reduction in _args.REDUCTIONS
    )


# ----------------------------------------------------------------------------
# small calls, and classes moved last
# ----------------------------------------------------------------------------
def run_small(logits, target, axis, ii, reduction, return_grad):
    """cross_entropy of C-contiguous (M, C) or (C,) float32 / float64 logits
    along their last axis with int64 class indices and no option beyond
    ``ignore_index`` / ``reduction`` / ``return_grad``, or None (the general
    path, which also raises every error).

    The route the chooser gives these rows, its kernel called with the
    arguments the general path builds (the same bits), without the general
    validation: what small calls of the common shape go through.
    """
    if (
        type(logits) is not np.ndarray
        or (logits.dtype is not _F32 and logits.dtype is not _F64)
        or not logits.flags.c_contiguous
        or logits.size == 0
        or type(axis) is not int
    ):
        return None
    nd = logits.ndim
    if nd == 2 and axis in (-1, 1):
        if type(target) is not np.ndarray or target.shape != logits.shape[:1]:
            return None
        x, tv = logits, target
    elif nd == 1 and axis in (-1, 0):  # one sample: torch's (C,) input, () target
        tv = np.asarray(target) if type(target) is not np.ndarray else target
        if tv.shape != ():
            return None
        x, tv = logits[None], tv.reshape(1)
    else:
        return None
    if tv.dtype is not _I64:  # (the builtin descriptor; anything else: general path)
        return None
    m, n = x.shape
    plan = _small_plan(m, n, x.dtype, return_grad)
    if plan is None:
        return None
    check, run_rows, forward = plan
    nbad, den = check(tv, n, ii, 1.0)
    if nbad:
        return None  # the general path raises the IndexError
    w, wl, wg = unit_weights(n, x.dtype)
    per_row = reduction == "none"
    loss = np.empty(m) if per_row else _NO_LOSS
    if forward:
        total = run_rows(x, tv, w, ii, loss, per_row)
    else:
        scale = ieee_div(1.0, den) if reduction == "mean" else 1.0
        gbuf = np.empty((m, n) if return_grad else (m, 0), dtype=x.dtype)
        args = (x, tv, w, wl, float(n), ii, 0.0, scale, loss, per_row, gbuf, wg, return_grad)
        total = run_rows(*args)
    dt = x.dtype.type
    if per_row:
        res = loss.astype(x.dtype) if nd == 2 else dt(loss[0])
    elif reduction == "sum":
        res = dt(total)
    else:
        res = dt(ieee_div(total, den))
    if not return_grad:
        return res
    return res, (gbuf if nd == 2 else gbuf[0])


#: ``run_small``'s plans by (rows, classes, dtype, return_grad)
_SMALL_PLANS: dict = {}
_SMALL_PLANS_MAX = 256
#: the per-row losses of a reduced call: none (the kernels write loss only
#: per row; an empty array is never written, so one serves every call)
_NO_LOSS = np.empty(0)


def _small_plan(m, n, dtype, return_grad):
    """(target check, row kernel, whether it is the forward-only one) of
    m rows of n classes of dtype, each kernel the twin its work runs
    (``Kernel.bound``), decided once per shape; None where the rows take the
    general path (few long rows: pieces).  The route is ``choose_xent``'s."""
    key = (m, n, dtype, return_grad)
    plan = _SMALL_PLANS.get(key, _SMALL_PLANS)  # (None is a plan: the general path)
    if plan is not _SMALL_PLANS:
        return plan
    route = index_rows_route(m, n, dtype.itemsize == 4 and not return_grad)
    plan = None
    if route != "pieces":
        kern, _, fwd = XENT[route]
        forward = fwd is not None and not return_grad
        work = _row_work(route, m, n, dtype.itemsize)
        plan = XK.check_targets.bound(m), (fwd if forward else kern).bound(work), forward
    return keep(_SMALL_PLANS, key, plan, _SMALL_PLANS_MAX)


def classes_moved_last(logits, target, axis, out):
    """(class axis, (M, C) rows, targets as rows) with the class axis moved
    last in one contiguous copy (so the rows call itself may skip the
    planning), or None (keep the layout: many positions behind the axis,
    ``out=``, or an input the general path is to check)."""
    if (
        out is not None
        or type(logits) is not np.ndarray
        or type(axis) is not int
        or logits.dtype not in FAST_DTYPES
        or logits.size == 0
        or not -logits.ndim <= axis < logits.ndim
    ):
        return None
    ax = axis % logits.ndim
    if not classes_moved(logits.shape, ax, logits.itemsize):
        return None
    n = logits.shape[ax]
    t = np.asarray(target)
    if t.dtype.kind == "f":  # class probabilities: the logits' layout
        if t.shape != logits.shape:
            return None
        t = np.ascontiguousarray(np.moveaxis(t, ax, -1)).reshape(-1, n)
    elif t.shape == logits.shape[:ax] + logits.shape[ax + 1 :]:
        t = t.reshape(-1)
    else:
        return None
    rows = np.ascontiguousarray(np.moveaxis(logits, ax, -1)).reshape(-1, n)
    return ax, rows, t


def moved_back(res, shape, ax, per_row, grad, lse):
    """cross_entropy's results on moved rows -> the logits' layout."""
    outs = list(res) if (grad or lse) else [res]
    tshape = shape[:ax] + shape[ax + 1 :]
    if per_row:
        outs[0] = outs[0].reshape(tshape)
    if grad:
        g = outs[1].reshape((*tshape, shape[ax]))
        outs[1] = np.ascontiguousarray(np.moveaxis(g, -1, ax))
    if lse:
        outs[-1] = outs[-1].reshape(tshape)
    return outs[0] if len(outs) == 1 else tuple(outs)


# ----------------------------------------------------------------------------
# the general call
# ----------------------------------------------------------------------------
def run(c):
    """The results of a checked call ``c``: ``(loss, grad, lse)`` in the
    logits' dtype (``grad`` / ``lse`` None where not asked for)."""
    rdt = c.logits.dtype
    cdt = compute_dtype(rdt)
    lay = ClassLayout(c.logits, c.axis, cdt)
    x = lay.view
    nrows = lay.p * lay.q
    per_row = c.reduction == "none"
    loss = np.empty(nrows if per_row else 0)  # float64, O(rows), only for "none"
    lossk = loss if lay.rows else loss.reshape((lay.p, lay.q) if per_row else (0, 0))
    lse = np.empty(nrows, dtype=cdt) if c.return_lse else None
    route = choose_xent(
        lay, soft=c.soft, lm=c.lm,
        grad=c.return_grad, smoothing=bool(c.smoothing),
    )  # fmt: skip
    targs, scale, zl, zg = _targets(c, lay, cdt, pieces=route == "pieces")
    if c.return_grad:
        others = [lay.x] + ([targs[0]] if c.soft else [])
        gbuf, grad, copy_back = lay.grad_buffers(c.out, others)
    else:
        gbuf, grad, copy_back = np.empty(x.shape[:1] + (0,) * (x.ndim - 1), dtype=cdt), None, 0
    total = 0.0
    if route != "empty":
        common = (scale, lossk, per_row, gbuf, c.return_grad)
        ksh = (nrows,) if lay.rows or route == "pieces" else (lay.p, lay.q)
        lsev = lse.reshape(ksh) if c.return_lse else np.empty((0,) * len(ksh), dtype=cdt)
        lm = (zl, zg, lsev, c.return_lse)
        total = _RUNNERS.get(route, _run_family)(route, c, lay, targs, common, lm)
    return _results(c, lay, total, loss, grad, copy_back, lse, rdt)


def _targets(c, lay, cdt, pieces):
    """(the kernels' target arguments, the mean's scale, zl, zg)."""
    n = lay.n
    # no weights on pieces: one scalar weight, no array of C weights for C
    # in the millions
    w = c.weight if c.weight is not None else (np.float64(1.0) if pieces else np.ones(n))
    if c.soft:
        q = lay.like_x(c.target, cdt)
        nrows = lay.p * lay.q
        with np.errstate(divide="ignore"):
            scale = 1.0 / np.float64(nrows) if c.reduction == "mean" else 1.0
        zl, zg = (c.z_loss, 2.0 * c.z_loss * scale) if c.z_loss else (0.0, 0.0)
        w1 = (w * (1.0 - c.smoothing)).astype(cdt)
        w0 = (w * (c.smoothing / max(n, 1))).astype(cdt)
        with np.errstate(invalid="ignore"):
            g1 = (scale * w1.astype(np.float64)).astype(cdt)
            g0 = (scale * w0.astype(np.float64)).astype(cdt)
        return (q, w1, w0, g1, g0), scale, zl, zg
    tk = lay.like_target(c.target)
    with np.errstate(divide="ignore"):
        scale = 1.0 / np.float64(c.den) if c.reduction == "mean" else 1.0
    zl, zg = z_coefficients(c.z_loss, c.reduction, c.weight is not None, tk, c.ignore_index, c.den)
    wl = w.astype(cdt)
    wsum = float(w.sum()) if c.weight is not None else float(n)
    with np.errstate(invalid="ignore"):  # inf * 0 -> nan, as torch's grad
        wg = (w * (scale * c.smoothing / max(n, 1))).astype(cdt)
    return (tk, w, wl, wsum, c.ignore_index, c.smoothing, wg), scale, zl, zg


def _row_work(route, m, n, itemsize):
    """``rows_work`` of m rows of n classes of itemsize bytes on a row route:
    ``index_small`` rows narrow by logsumexp's bound count as its narrow
    blocks' rows; wider ones as whole rows (their blocks of 64-128 rows cost
    as much a row)."""
    narrow = route == "index_small" and narrow_rows(n, itemsize)
    return rows_work(m, n, "narrow" if narrow else "rows")


def _run_family(route, c, lay, targs, common, lm):
    """A row or column route: its forward, plain or lm kernel."""
    x = lay.view
    fam = XENT[route]
    if lay.rows:
        args = _row_args(c, x, targs, common)
        work = _row_work(route, *x.shape, x.itemsize)
        if not c.lm and fam.forward is not None and not (c.return_grad or c.smoothing):
            tk, w, ii = targs[0], targs[1], targs[4]
            return fam.forward(work, x, tk, w, ii, common[1], common[2])
        if not c.lm:
            return fam.plain(work, *args)
        return fam.lm(work, *args, *lm, c.softcap)
    if not c.lm:
        return fam.plain(x.size, x, targs, *common, xent_col_block(lay))
    return fam.lm(x.size, x, targs, *common, *lm, xent_col_block(lay), c.softcap)


def _row_args(c, x, targs, common):
    scale, lossk, per_row, gbuf, want_grad = common
    if c.soft:
        return (x, *targs, scale, lossk, per_row, gbuf, want_grad)
    tk, w, wl, wsum, ii, eps, wg = targs
    return (x, tk, w, wl, wsum, ii, eps, scale, lossk, per_row, gbuf, wg, want_grad)


def _run_columns_loss(route, c, lay, targs, common, lm):
    x = lay.view
    cw = xent_cols_width(lay)
    rows = C.block_rows(cw, x.itemsize)
    tk, w, ii = targs[0], targs[1], targs[4]
    return XK.cols_index_loss(x.size, x, cw, rows, tk, w, ii, common[1], common[2])


def _run_pieces(route, c, lay, targs, common, lm):
    """Few long rows: pieces of each row on the threads, merged per row."""
    x = lay.view
    scale, loss, per_row, gbuf, want_grad = common
    zl, zg, lse, want_lse = lm
    nr, n = x.shape
    npc, piece = pieces_of(n)
    mo, to = np.empty((nr, npc)), np.empty((nr, npc))
    mr, cr = np.empty(nr), np.zeros(nr)
    if c.soft:
        q, w1, w0, g1, g0 = targs
        so, ao = np.empty((nr, npc)), np.empty((nr, npc))
        XK.pieces_sums(x.size, x, (q, w1, w0), piece, c.softcap, mo, to, so, ao)
        total = XK.soft_pieces_merge(
            mo, to, so, ao, scale, zl, zg, loss, per_row, lse, want_lse, mr, cr
        )
        if want_grad:
            XK.pieces_grad(x.size, x, (q, g1, g0), piece, c.softcap, mr, cr, gbuf)
        return total
    tk, w, wl, wsum, ii, eps, wg = targs
    smooth = eps > 0.0
    so = np.empty((nr, npc) if smooth else (0, 0))
    wo = np.empty_like(so)
    xy = np.zeros(nr)
    XK.pieces_sums(x.size, x, (tk, ii, wl, smooth, xy), piece, c.softcap, mo, to, so, wo)
    sr = np.zeros(nr)
    total = XK.index_pieces_merge(
        mo, to, so, wo, xy, tk, w, wsum, ii, eps, scale, n, zl, zg, loss, per_row, lse,
        want_lse, mr, cr, sr,
    )  # fmt: skip
    if want_grad:
        XK.pieces_grad(x.size, x, (tk, ii, sr, wg, smooth), piece, c.softcap, mr, cr, gbuf)
    return total


_RUNNERS = {"columns_loss": _run_columns_loss, "pieces": _run_pieces}


def as_result(v, dt):
    v = np.asarray(v).astype(dt)
    return v[()] if v.ndim == 0 else v


def _results(c, lay, total, loss, grad, copy_back, lse, rdt):
    """(loss reduced, grad, lse) in the logits' dtype and layout."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if c.reduction == "none":
            res = as_result(lay.loss_shape(loss), rdt)
        elif c.reduction == "sum":
            res = as_result(total, rdt)
        else:
            d = np.float64(lay.p * lay.q) if c.soft else np.float64(c.den)
            res = as_result(np.float64(total) / d, rdt)
    if grad is not None:
        if copy_back:
            np.copyto(c.out, grad, casting="unsafe")
            grad = c.out
        elif grad.dtype != rdt:
            grad = grad.astype(rdt)
    return res, grad, (as_result(lay.loss_shape(lse), rdt) if c.return_lse else None)
