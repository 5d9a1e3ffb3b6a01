"""dask.array path: lazy logsumexp, softmax, log_softmax, cross_entropy.

Public dask APIs only (``dask.array.reduction``, ``map_blocks``, ``blockwise``).
``fastlse.logsumexp`` & co. call these functions when given a dask array; this
module is imported lazily, so ``import fastlse`` never imports dask.

* logsumexp is one ``dask.array.reduction``: the chunk step runs fastlse's
  kernel and returns the partial pair ``(m, t)`` (a structured array with
  fields ``m``, ``t``), the combine step merges pairs along the reduced axes,
  the aggregate finishes with ``m + log1p(t)``.  With weights ``b`` the pair
  becomes the triple ``(m, w, s)`` of ``_pairs``.
* softmax / log_softmax: a blockwise map of the NumPy functions when the
  reduced axes are each one chunk; otherwise the same pair reduction (keepdims)
  followed by a blockwise map that applies the merged pairs.
* cross_entropy: blockwise over row chunks (the class axis in one chunk), with
  partial sums (loss and the "mean" denominator) combined by dask.

Threads: dask already runs chunks in parallel, so inside a task the kernels run
on one thread.  Set ``dask.config.set({"fastlse.threads-per-task": n})`` (read
when the graph is built and stored in it, so it reaches remote workers) or
pass ``threads_per_task=n`` to the functions of this module to change that.
"""

import functools
import math
import operator

import dask
import dask.array as da
import numpy as np

from . import _args, _ops, _xent_ops
from ._layout import class_axis, compute_dtype, lse_dtype, normalize_axes, softmax_dtype
from ._pairs import (
    finish_pairs,
    finish_triples,
    fold_pairs,
    fold_triples,
    lse_sign,
    lse_triples,
)
from .kernels.drivers import num_threads

__all__ = ["THREADS_KEY", "cross_entropy", "log_softmax", "logsumexp", "softmax"]

#: dask config key: number of kernel threads inside one dask task (default 1)
THREADS_KEY = "fastlse.threads-per-task"

PAIR = np.dtype([("m", "f8"), ("t", "f8")])
TRIPLE = np.dtype([("m", "f8"), ("w", "f8"), ("s", "f8")])


def _threads(threads_per_task):
    n = dask.config.get(THREADS_KEY, 1) if threads_per_task is None else threads_per_task
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"threads_per_task must be >= 1, got {n}")
    return n


def _pack(dtype, **fields):
    first = next(iter(fields.values()))
    out = np.empty(np.shape(first), dtype=dtype)
    for k, v in fields.items():
        out[k] = v
    return out


def _meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype=dtype)


def _as_dask(x):
    return x if _args.is_dask(x) else da.asarray(x)


# ----------------------------------------------------------------------------
# reduction steps (module level: they travel to workers by pickle)
# ----------------------------------------------------------------------------
def _pair_chunk(x, axis, keepdims, *, threads, meta_dtype, computing_meta=False):
    if computing_meta:  # dask asks for the type of the (final) blocks
        return _meta(np.ndim(x), meta_dtype)
    with num_threads(threads):
        m, t = _ops.lse_pairs(x, tuple(sorted(axis)))
    return _pack(PAIR, m=m, t=t)


def _pair_combine(p, axis, keepdims):
    m, t = fold_pairs(p["m"], p["t"], tuple(sorted(axis)))
    return _pack(PAIR, m=m, t=t)


def _pair_aggregate(p, axis, keepdims, *, rdt):
    axes = tuple(sorted(axis))
    res = finish_pairs(*fold_pairs(p["m"], p["t"], axes)).astype(rdt)
    return res if keepdims else np.squeeze(res, axis=axes)


def _triple_chunk(
    x, w=None, axis=(), keepdims=True, *, cdt, threads, meta_dtype, computing_meta=False
):
    if computing_meta:
        return _meta(np.ndim(x), meta_dtype)
    with num_threads(threads):
        m, wm, s = lse_triples(x, w, tuple(sorted(axis)), cdt)
    return _pack(TRIPLE, m=m, w=wm, s=s)


def _triple_combine(p, axis, keepdims):
    m, w, s = fold_triples(p["m"], p["w"], p["s"], tuple(sorted(axis)))
    return _pack(TRIPLE, m=m, w=w, s=s)


def _triple_aggregate(p, axis, keepdims, *, rdt, return_sign):
    axes = tuple(sorted(axis))
    out, sgn = finish_triples(*fold_triples(p["m"], p["w"], p["s"], axes))
    out = out.astype(rdt)
    sgn = sgn.astype(rdt)
    if not keepdims:
        out, sgn = np.squeeze(out, axis=axes), np.squeeze(sgn, axis=axes)
    if return_sign:
        return _pack(np.dtype([("v", rdt), ("s", rdt)]), v=out, s=sgn)
    out[sgn < 0] = np.nan
    return out


# ----------------------------------------------------------------------------
# logsumexp
# ----------------------------------------------------------------------------
def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, threads_per_task=None):
    """Lazy :func:`fastlse.logsumexp` of a dask array (one dask reduction).

    Called by :func:`fastlse.logsumexp` when `a` or `b` is a dask array;
    the parameters and results are those of the NumPy path.  Nothing is
    computed: the result is a dask array (a pair of them with `return_sign`).

    Parameters
    ----------
    a, b : dask array or array_like
        Input and optional weights (broadcast together, any chunks).
    axis, keepdims, return_sign
        As in :func:`fastlse.logsumexp`.
    threads_per_task : int, optional
        Kernel threads inside one dask task.  Default: the dask config value
        ``"fastlse.threads-per-task"``, itself 1 by default (dask already
        runs the chunks in parallel).

    Returns
    -------
    res : dask array
        ``log(sum(b * exp(a)))`` over `axis`, same dtype rules as NumPy.
    sgn : dask array
        Only if `return_sign` is True.

    Notes
    -----
    The chunk step computes a partial ``(m, t)`` pair per chunk with
    fastlse's kernel (``sum exp(a) == exp(m) * (1 + t)``), the combine step
    merges pairs, the aggregate returns ``m + log1p(t)``, so the result has
    the accuracy of the NumPy path whatever the chunking.  Complex input is
    not supported on dask arrays.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlse
    >>> x = da.from_array(np.arange(12.0).reshape(3, 4), chunks=(2, 3))
    >>> r = fastlse.logsumexp(x, axis=1)  # lazy
    >>> type(r).__name__, r.shape, r.dtype
    ('Array', (3,), dtype('float64'))
    >>> r.compute()
    array([ 3.44018969,  7.44018969, 11.44018969])
    """
    threads = _threads(threads_per_task)
    a = _as_dask(a)
    if b is not None:
        if _args.is_dask(b):
            bd = b
            dt = lse_dtype(a, np.empty(0, dtype=b.dtype))
        else:
            bd = np.asarray(b)
            dt = lse_dtype(a, b)
        shape = _args.weights_shape(a, bd, "logsumexp")
        a = da.broadcast_to(a, shape) if a.shape != shape else a
        bd = _as_dask(bd)
        bd = da.broadcast_to(bd, shape) if bd.shape != shape else bd
    else:
        bd = None
        dt = lse_dtype(a, None)
    if dt.kind == "c":
        raise NotImplementedError(
            "logsumexp: complex dask arrays are not supported; use a NumPy array"
        )
    if a.ndim == 0:
        a = a.reshape(1)
        bd = bd.reshape(1) if bd is not None else None
    axes = normalize_axes(axis, a.ndim, "logsumexp")
    out_nd = a.ndim if keepdims else a.ndim - len(axes)
    cdt = compute_dtype(dt)
    if bd is None:
        res = da.reduction(
            a,
            functools.partial(_pair_chunk, threads=threads, meta_dtype=dt),
            functools.partial(_pair_aggregate, rdt=dt),
            combine=_pair_combine,
            axis=axes,
            keepdims=keepdims,
            dtype=dt,
            concatenate=True,
            meta=_meta(out_nd, dt),
            name="fastlse-logsumexp",
        )
        if not return_sign:
            return res
        return res, res.map_blocks(lse_sign, dtype=dt, meta=_meta(out_nd, dt))
    rec = np.dtype([("v", dt), ("s", dt)]) if return_sign else dt
    res = da.reduction(
        a,
        functools.partial(_triple_chunk, cdt=cdt, threads=threads, meta_dtype=rec),
        functools.partial(_triple_aggregate, rdt=dt, return_sign=return_sign),
        combine=_triple_combine,
        axis=axes,
        keepdims=keepdims,
        dtype=rec,
        concatenate=True,
        meta=_meta(out_nd, rec),
        name="fastlse-logsumexp",
        weights=bd,
    )
    return (res["v"], res["s"]) if return_sign else res


# ----------------------------------------------------------------------------
# softmax, log_softmax
# ----------------------------------------------------------------------------
def _numpy_block(x, *, log, axes, threads):
    """softmax / log_softmax of a block holding whole slices: the kernels'."""
    name = "log_softmax" if log else "softmax"
    with num_threads(threads):
        r = _args.normalize(x, axes, None, None, name)
        res = _ops.normalize(_ops.LOG_SOFTMAX if log else _ops.SOFTMAX, r)
    return res.astype(r.dtype, copy=False)


def _from_pairs(x, p, *, log, rdt):
    """softmax / log_softmax of a block given the merged pairs of its rows.

    The formulas of the kernels: ``exp(x - m) / (1 + t)`` in the compute
    dtype, ``(x - m) - log1p(t)`` in float64; scipy's special values.
    """
    m, t = p["m"], p["t"]
    with np.errstate(all="ignore"):
        if log:
            bad = np.isnan(m) | np.isnan(t) | (m == -np.inf)
            c1 = np.where(bad, np.nan, m)
            c2 = np.where(bad | (m == np.inf), 0.0, np.log1p(t))
            res = (x.astype(np.float64) - c1) - c2
        else:
            cdt = compute_dtype(rdt)
            bad = ~np.isfinite(m) | np.isnan(t)
            mv = np.where(bad, 0.0, m).astype(cdt)
            sv = np.where(bad, np.nan, 1.0 + t).astype(cdt)
            res = np.exp(x.astype(cdt) - mv) / sv
    return res.astype(rdt, copy=False)


def _softmax(x, axis, out, log, threads_per_task):
    name = "log_softmax" if log else "softmax"
    if out is not None:
        raise TypeError(
            f"{name}: out= is not supported for dask arrays (they are immutable); "
            "use the returned dask array, e.g. da.store(result, out)"
        )
    threads = _threads(threads_per_task)
    x = _as_dask(x)
    rdt = softmax_dtype(x, name)
    if rdt.kind == "c":
        raise NotImplementedError(f"{name}: complex dask arrays are not supported")
    axes = normalize_axes(axis, x.ndim, name)
    if math.prod(x.shape[i] for i in axes) == 0:
        raise ValueError(f"{name}: zero-size reduction: the axes {axis!r} of x have no elements")
    meta = _meta(x.ndim, rdt)
    if all(x.numblocks[i] == 1 for i in axes):
        f = functools.partial(_numpy_block, log=log, axes=axes, threads=threads)
        return x.map_blocks(f, dtype=rdt, meta=meta, name=f"fastlse-{name}")
    pairs = da.reduction(
        x,
        functools.partial(_pair_chunk, threads=threads, meta_dtype=PAIR),
        _pair_combine,
        axis=axes,
        keepdims=True,
        dtype=PAIR,
        concatenate=True,
        meta=_meta(x.ndim, PAIR),
        name=f"fastlse-{name}-lse",
    )
    f = functools.partial(_from_pairs, log=log, rdt=rdt)
    return da.map_blocks(f, x, pairs, dtype=rdt, meta=meta, name=f"fastlse-{name}")


def softmax(x, axis=None, out=None, *, threads_per_task=None):
    """Lazy :func:`fastlse.softmax` of a dask array.

    Called by :func:`fastlse.softmax` for a dask array.  When the axes of the
    softmax are each one chunk, every chunk runs fastlse's kernel; otherwise
    a pair reduction over the axes (as in :func:`logsumexp`) is followed by a
    blockwise ``exp(x - m) / (1 + t)``.  `out` must be None (dask arrays are
    immutable).  `threads_per_task` as in :func:`logsumexp`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlse
    >>> x = da.from_array(np.log([[1.0, 1.0, 2.0, 4.0]]), chunks=(1, 2))
    >>> fastlse.softmax(x, axis=1).compute()  # the axis spans two chunks
    array([[0.125, 0.125, 0.25 , 0.5  ]])
    """
    return _softmax(x, axis, out, False, threads_per_task)


def log_softmax(x, axis=None, out=None, *, threads_per_task=None):
    """Lazy :func:`fastlse.log_softmax` of a dask array.

    Like :func:`softmax`: the kernel per chunk when the axes are each one
    chunk, else a pair reduction then a blockwise ``(x - m) - log1p(t)``.
    `out` must be None.  `threads_per_task` as in :func:`logsumexp`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlse
    >>> x = da.from_array(np.array([1000.0, 1.0, 1000.0]), chunks=1)
    >>> r = fastlse.log_softmax(x).compute()  # the axis spans three chunks
    >>> float(r[0]), float(r[1])
    (-0.69314718056, -999.69314718056)
    """
    return _softmax(x, axis, out, True, threads_per_task)


# ----------------------------------------------------------------------------
# cross_entropy
# ----------------------------------------------------------------------------
def _one(x):
    """The block of an axis that is one chunk (blockwise passes a list)."""
    while isinstance(x, list):
        (x,) = x
    return x


def _xent_block(x, t, *, kw, red, grad, threads):
    """The NumPy cross_entropy of one row block."""
    kw = dict(kw, reduction=red, return_grad=grad, out=None, return_lse=False)
    with num_threads(threads):
        return _xent_ops.compute(_one(x), _one(t), kw.pop("axis"), **kw)


def _xent_none(x, t, *, kw, threads):
    return _xent_block(x, t, kw=kw, red="none", grad=False, threads=threads)


def _xent_sum(x, t, *, kw, threads, ndim):
    """The block's summed loss (float64), shaped (1,) * ndim."""
    v = _xent_block(x, t, kw=kw, red="sum", grad=False, threads=threads)
    return np.full((1,) * ndim, np.float64(v))


def _xent_rec(x, t, *, kw, red, threads):
    """(loss part, grad block) of one row block: a record, never a final chunk."""
    return _xent_block(x, t, kw=kw, red=red, grad=True, threads=threads)


def _rec_loss(rec, *, ndim):
    v = rec[0]
    return np.full((1,) * ndim, np.float64(v)) if ndim is not None else v


def _rec_grad(rec, t=None, scale=None, *, ax=None, ii=None):
    """The grad block; for "mean" scaled by 1 / den, rows of ignored targets 0."""
    g = rec[1]
    if scale is None:
        return g
    with np.errstate(all="ignore"):
        res = g * np.float64(scale)
        if t is not None:  # 0 * inf: the NumPy kernel writes 0 for ignored rows
            res = np.where(np.expand_dims(np.asarray(t) == ii, ax), 0.0, res)
        return res.astype(g.dtype)


def _partial_den(t, *, w, ii, ndim):
    """The block's share of the "mean" denominator: sum of w[y] over kept y."""
    t = np.asarray(t)
    keep = t != ii
    safe = np.where(keep, t, 0).clip(0, len(w) - 1)
    return np.full((1,) * ndim, np.where(keep, w[safe], 0.0).sum())


def _finish_mean(total, den, *, rdt):
    with np.errstate(all="ignore"):
        return np.asarray(np.float64(total) / np.float64(den)).astype(rdt)


def _inv(den):
    with np.errstate(divide="ignore"):
        return np.asarray(1.0 / np.float64(den))


def cross_entropy(
    logits,
    target,
    *,
    axis=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    return_grad=False,
    out=None,
    z_loss=0.0,
    softcap=None,
    return_lse=False,
    threads_per_task=None,
):
    """Lazy :func:`fastlse.cross_entropy` of dask logits and targets.

    Called by :func:`fastlse.cross_entropy` when `logits` or `target` is a
    dask array; the parameters and results are those of the NumPy function.
    The logits may be chunked along any axis but the class axis (a split
    class axis is rechunked into one chunk); the targets are rechunked to the
    logits' row chunks.  Each row block runs the fused NumPy kernel; "sum"
    and "mean" add the blocks' partial sums in float64, "mean" divides by the
    global denominator (the summed class weights of the non-ignored targets,
    or the number of samples for probability targets) and scales the
    gradient by it.  `out` must be None and `weight` a NumPy array;
    `threads_per_task` as in :func:`logsumexp`.  `softcap` and `z_loss` are
    passed to the blocks (each row's terms are its own), except a `z_loss`
    with "mean" and class weights (its denominator is not the loss's);
    ``return_lse=True`` is not supported.

    With ``return_grad=True`` the loss and the gradient come from one kernel
    call per block when computed together (``dask.compute(loss, grad)``).
    Out-of-range targets raise IndexError at compute time.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from fastlse._dask import cross_entropy
    >>> logits = da.from_array(np.float64([[2, 1, 0.1], [0.5, 2.5, 0.3]]), chunks=(1, 3))
    >>> target = da.from_array(np.array([0, 2]), chunks=1)
    >>> round(float(cross_entropy(logits, target).compute()), 6)
    1.41854
    """
    fn = "cross_entropy"
    if out is not None:
        raise TypeError(f"{fn}: out= is not supported for dask arrays (they are immutable)")
    if _args.is_dask(weight):
        raise TypeError(f"{fn}: weight must be a NumPy array (one weight per class), not dask")
    if return_lse:
        raise NotImplementedError(f"{fn}: return_lse=True is not supported for dask arrays")
    threads = _threads(threads_per_task)
    logits = _as_dask(logits)
    target = _as_dask(target)
    nd = logits.ndim
    if nd == 0:
        raise ValueError(f"{fn}: logits must have at least one dimension (the class axis)")
    soft = target.dtype.kind == "f"
    if axis is None:
        axis = _args.default_class_axis(logits.shape, target.shape, soft, fn)
    ax = class_axis(axis, nd, fn)
    row_shape = logits.shape[:ax] + logits.shape[ax + 1 :]
    if target.shape != (logits.shape if soft else row_shape):
        raise ValueError(
            f"{fn}: target has shape {target.shape}; class indices need the logits' shape "
            f"without the class axis, {row_shape} (or the logits' own shape "
            f"{logits.shape} for class probabilities)"
        )
    n = logits.shape[ax]
    nrows = math.prod(row_shape)
    if n == 0 and nrows > 0:
        raise ValueError(f"{fn}: logits have no classes along axis {axis}")
    kw = dict(
        axis=ax,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
    )
    # every other check (dtypes, reduction, weight, ignore_index, smoothing)
    # with the NumPy function's own errors, on empty stand-ins of the inputs
    lmeta = np.empty(tuple(n if i == ax else 0 for i in range(nd)), dtype=logits.dtype)
    tmeta = np.empty(lmeta.shape if soft else (0,) * (nd - 1), dtype=target.dtype)
    checks = dict(kw, reduction=reduction, return_grad=return_grad, out=None, return_lse=False)
    _args.cross_entropy(lmeta, tmeta, checks.pop("axis"), **checks)
    if reduction == "mean" and weight is not None and not soft and float(z_loss) != 0.0:
        raise NotImplementedError(
            f"{fn}: z_loss with reduction='mean' and class weights is not supported for dask "
            f"arrays (its mean is over the kept rows, not the summed weights)"
        )
    rdt = logits.dtype

    if logits.numblocks[ax] > 1:
        logits = logits.rechunk({ax: -1})
    lind = tuple(range(nd))
    rind = tuple(i for i in lind if i != ax)
    tind = lind if soft else rind
    nr = len(rind)
    rows = tuple(c for i, c in enumerate(logits.chunks) if i != ax)
    target = target.rechunk(logits.chunks if soft else rows)
    # the class axis is one block: concatenate=False hands it over uncopied
    args = (logits, lind, target, tind)
    opts = dict(align_arrays=False, concatenate=False)
    ones = dict.fromkeys(rind, 1)
    f64 = np.float64

    den = None
    if reduction == "mean":
        if soft:
            den = da.from_array(f64(nrows))
        else:
            w = np.ones(n) if weight is None else np.asarray(weight, dtype=f64)
            f = functools.partial(_partial_den, w=w, ii=int(ignore_index), ndim=nr)
            parts = da.blockwise(
                f, rind, target, rind, dtype=f64, adjust_chunks=ones, meta=_meta(nr, f64), **opts
            )
            den = parts.sum(dtype=f64)

    def _mean(total):
        f = functools.partial(_finish_mean, rdt=rdt)
        return da.map_blocks(f, total, den, dtype=rdt, meta=_meta(0, rdt))

    if not return_grad:
        if reduction == "none":
            f = functools.partial(_xent_none, kw=kw, threads=threads)
            return da.blockwise(f, rind, *args, dtype=rdt, meta=_meta(nr, rdt), **opts)
        f = functools.partial(_xent_sum, kw=kw, threads=threads, ndim=nr)
        parts = da.blockwise(
            f, rind, *args, dtype=f64, adjust_chunks=ones, meta=_meta(nr, f64), **opts
        )
        total = parts.sum(dtype=f64)
        return total.astype(rdt) if reduction == "sum" else _mean(total)

    # one kernel call per block gives the block's loss part and grad block
    red = "none" if reduction == "none" else "sum"
    f = functools.partial(_xent_rec, kw=kw, red=red, threads=threads)
    rec = da.blockwise(f, rind, *args, dtype=rdt, meta=_meta(nr, rdt), **opts)
    if reduction == "none":
        f = functools.partial(_rec_loss, ndim=None)
        loss = da.blockwise(f, rind, rec, rind, dtype=rdt, meta=_meta(nr, rdt), **opts)
    else:
        f = functools.partial(_rec_loss, ndim=nr)
        parts = da.blockwise(
            f, rind, rec, rind, dtype=f64, adjust_chunks=ones, meta=_meta(nr, f64), **opts
        )
        total = parts.sum(dtype=f64)
        loss = total.astype(rdt) if reduction == "sum" else _mean(total)
    gargs = (rec, rind)
    f = _rec_grad
    if reduction == "mean":
        inv = den.map_blocks(_inv, dtype=f64, meta=_meta(0, f64))
        if soft:  # den > 0 unless there are no rows
            gargs += (None, None, inv, ())
        else:
            gargs += (target, tind, inv, ())
            f = functools.partial(_rec_grad, ax=ax, ii=int(ignore_index))
    grad = da.blockwise(f, lind, *gargs, new_axes={ax: n}, dtype=rdt, meta=_meta(nd, rdt), **opts)
    return loss, grad
