"""Public functions: validation, dtype rules, dispatch to the drivers.

Signatures and semantics are those of ``scipy.special`` (1.17), plus ``out=``
for softmax / log_softmax.  Each function validates first (numpy's own errors),
then makes one call into the axis layer and one into a driver.
"""

import math

import numba
import numpy as np

from . import _columns as C
from . import _kernels as K
from . import _parallel as P
from ._axis import Plan, normalize_axes
from ._config import PARALLEL_MIN_WORK
from ._kernels import NARROW
from ._pairs import lse_sign

__all__ = ["log_softmax", "logsumexp", "softmax"]

#: a row at least twice this long, in a batch of fewer rows than twice the
#: threads, is split into pieces of about this size (L2-sized, so the max and
#: exp-sum sweeps read memory once) that threads share, merged as pairs
PIECE = 1 << 15
#: logsumexp of a 1-d float32 / float64 vector up to this length skips the
#: planning and calls the serial row kernel (tiny inputs: a few microseconds)
_SMALL = 4096
_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------
# dtype rules
# ----------------------------------------------------------------------------
def _compute_dtype(dt):
    """Kernel dtype for a real floating result dtype (float16 computes in f32)."""
    if dt == np.float64 or dt == np.float32:
        return dt
    if dt == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)  # longdouble and friends: computed in float64


def _lse_dtype(a, b):
    """scipy's promotion for logsumexp: a with b, ints and bools -> float64."""
    if b is None:
        dt = a.dtype
    elif isinstance(b, (int, float, complex)) and not isinstance(b, bool):
        dt = np.result_type(a.dtype, b)  # python scalars are weak (NEP 50)
    else:
        dt = np.result_type(a.dtype, np.asarray(b).dtype)
    if dt.kind in "biu":
        dt = np.dtype(np.float64)
    if dt.kind not in "fc":
        raise TypeError(f"logsumexp: unsupported dtype {dt} for a (or b)")
    return dt


def _softmax_dtype(x):
    """scipy computes exp(x - max(x)): ints follow np.exp (int8 -> float16, ...)."""
    dt = x.dtype
    if dt.kind == "b":
        return np.dtype(np.float64)  # scipy raises for bools; the answer is clear
    if dt.kind in "iu":
        return np.exp(np.zeros(0, dtype=dt)).dtype
    if dt.kind not in "fc":
        raise TypeError(f"unsupported dtype {dt} for x")
    return dt


#: narrow float64 rows up to this many elements take the transposed kernel
#: (float32: all narrow rows); from about 16 it is slower for float64
_T64_MAX = 12


def _transposed(n, dtype):
    """True where narrow rows of n elements take the transposed kernels."""
    return dtype == np.float32 or n <= _T64_MAX


def _lse_rows_kernel(n, dtype):
    """The logsumexp kernel of whole rows of n elements (narrow: blocks of
    rows, transposed for float32 and very narrow float64)."""
    if n >= NARROW:
        return P.lse_rows
    return P.lse_narrow_t if _transposed(n, dtype) else P.lse_narrow


def _softmax_rows_kernel(n, log):
    """The softmax / log_softmax kernel of whole rows of n elements."""
    if n < NARROW:
        return P.log_softmax_narrow if log else P.softmax_narrow
    return P.log_softmax_rows if log else P.softmax_rows


def _unplanned_rows(x, axis):
    """The ``(M, N)`` rows view of a C-contiguous float32 / float64 ndarray
    reduced along its last axis (``axis=None``: all of it), or None.

    Such a call (the common ``(batch, classes)`` case, and every vector) skips
    the planning and runs the kernel of whole rows the general path would pick
    anyway: the same bits, without the general path's ~15 us (a few microseconds for a
    small call instead of tens).  Few long rows (split into pieces across the
    threads) are left to the general path.
    """
    if type(x) is not np.ndarray or x.dtype not in _FAST_DTYPES or not x.flags.c_contiguous:
        return None
    nd = x.ndim
    size = x.size
    if nd == 0 or size == 0:
        return None
    if axis is None or (nd == 1 and type(axis) is int and (axis == -1 or axis == 0)):
        if _few_long_rows(1, size):
            return None  # one long row: pieces (the general path)
        return x[None] if nd == 1 else x.reshape(1, size)
    if type(axis) is int and (axis == -1 or axis == nd - 1):
        n = x.shape[-1]
        if _few_long_rows(size // n, n):
            return None  # few long rows: pieces (the general path)
        return x if nd == 2 else x.reshape(size // n, n)
    return None


def _unplanned_cols(x, axis):
    """The ``(P, N, Q)`` view of a C-contiguous float32 / float64 ndarray
    reduced along one axis that is not its last (Q > 1, N > 0), or None: the
    general path's kernels without its planning (~15-20 us)."""
    if (
        type(x) is not np.ndarray
        or type(axis) is not int
        or x.dtype not in _FAST_DTYPES
        or not x.flags.c_contiguous
    ):
        return None
    nd = x.ndim
    ax = axis + nd if axis < 0 else axis
    if not 0 <= ax < nd - 1 or x.size == 0:
        return None
    n = x.shape[ax]
    q = math.prod(x.shape[ax + 1 :])
    if q == 1:
        return None
    return x.reshape(x.size // (n * q), n, q)


def _out_qualifies(out, x):
    """out can be written by the kernels directly (else: the general path)."""
    return (
        type(out) is np.ndarray
        and out.shape == x.shape
        and out.dtype == x.dtype
        and out.flags.c_contiguous
        and out.flags.writeable
        and not np.may_share_memory(out, x)
    )


def _unplanned_softmax(x, axis, out, log):
    """softmax / log_softmax through ``_unplanned_rows``, or None (general path).

    ``out`` qualifies when it is a C-contiguous ndarray of x's shape and dtype
    that shares no memory with x; anything else takes the general path (and
    its checks).
    """
    v = _unplanned_rows(x, axis)
    if v is None:
        v = _unplanned_cols(x, axis)
        if v is None:
            return None
        if out is None:
            res = np.empty(x.shape, dtype=x.dtype)
        elif _out_qualifies(out, x):
            res = out
        else:
            return None
        _softmax_cols(v, res.reshape(v.shape), log)
        return res
    if out is None:  # made in the rows' shape: a vector's row [0] is cheaper than a reshape
        rv = np.empty(v.shape, dtype=x.dtype)
        res = rv if v is x else (rv[0] if x.ndim == 1 else rv.reshape(x.shape))
    elif _out_qualifies(out, x):
        res = out
        rv = out if v is x else (out[None] if x.ndim == 1 else out.reshape(v.shape))
    else:
        return None
    kern = _softmax_rows_kernel(v.shape[1], log)
    if v.size < PARALLEL_MIN_WORK:  # (without the Kernel's own test: ~0.5 us)
        kern.serial(v, rv)
    else:
        kern(v.size, v, rv)
    return res


def _is_dask(x):
    """True for a dask array, without importing dask (it is optional)."""
    t = type(x)
    return t is not np.ndarray and t.__module__.startswith("dask.") and hasattr(x, "dask")


def _nthreads():
    return numba.config.NUMBA_NUM_THREADS


def _few_long_rows(m, n):
    """True when m rows of n elements are split into pieces across the
    threads: fewer rows than two a thread, each at least ``2 * PIECE`` long
    (logsumexp's rule; the ops that write an array, softmax, log_softmax and
    cross_entropy, also want ``PARALLEL_MIN_WORK`` elements in all)."""
    return n >= 2 * PIECE and m < 2 * _nthreads()


# ----------------------------------------------------------------------------
# pairs: (m, t) along axes, in kernel layout; shared by logsumexp and dask
# ----------------------------------------------------------------------------
def _pairs(plan):
    """(m, t) float64 arrays of the plan's reductions, kernel-result shape."""
    v = plan.view
    if plan.kind == "rows":
        m_, n_ = v.shape
        mo = np.empty(m_)
        to = np.empty(m_)
        if n_ == 0:
            mo.fill(-np.inf)
            to.fill(0.0)
        elif n_ < NARROW:
            kern = P.pair_narrow_t if _transposed(n_, v.dtype) else P.pair_narrow
            kern(v.size, v, mo, to)
        elif _few_long_rows(m_, n_) and m_ * n_ >= PARALLEL_MIN_WORK:
            npc = (n_ + PIECE - 1) // PIECE  # pieces sized for L2: two sweeps, one read
            piece = (n_ + npc - 1) // npc
            mp = np.empty((m_, npc))
            tp = np.empty((m_, npc))
            P.pair_pieces(v.size, v, piece, mp, tp)
            P.merge_pieces(mp, tp, mo, to)
        else:
            P.pair_rows(v.size, v, mo, to)
        return mo, to
    return _cols_pairs(v)


def _cols_pairs(v):
    """(m, t) float64 arrays (P, Q) of a (P, N, Q) view reduced over N."""
    p_, n_, q_ = v.shape
    mo = np.empty((p_, q_))
    to = np.empty((p_, q_))
    if n_ == 0:
        mo.fill(-np.inf)
        to.fill(0.0)
    elif C.folded(n_, q_, v.itemsize):
        k, piece, npc, rows, nt = _fold_plan(v)
        if npc == 1:
            mk, tk = mo.reshape(p_, q_, 1), to.reshape(p_, q_, 1)
            C.pairs_folded(v.size, v, k, piece, rows, nt, mk, tk)
        else:
            mp = np.empty((p_ * q_, npc))
            tp = np.empty((p_ * q_, npc))
            mk, tk = mp.reshape(p_, q_, npc), tp.reshape(p_, q_, npc)
            C.pairs_folded(v.size, v, k, piece, rows, nt, mk, tk)
            P.merge_pieces(mp, tp, mo.reshape(-1), to.reshape(-1))
    else:
        w = C.col_width(n_, q_, v.itemsize, False)
        C.pairs_cols(v.size, v, w, C.block_rows(w, v.itemsize), mo, to)
    return mo, to


def _fold_plan(v):
    """(k, piece, pieces, block rows, tasks) of a middle axis read folded
    (``_columns``)."""
    p_, n_, q_ = v.shape
    k = C.fold_rows(q_, v.itemsize)
    piece, npc = C.fold_pieces(p_, n_, q_, k, v.itemsize, _nthreads())
    nt = C.fold_tasks(p_ * npc, min(piece, n_) * q_)
    return k, piece, npc, C.block_rows(k * q_, v.itemsize), nt


def lse_pairs(a, axes):
    """Partial ``(m, t)`` pairs of a real array over ``axes`` (keepdims shape).

    ``sum exp(a) == exp(m) * (1 + t)`` along the axes; float64 results. Used by
    the dask path and :class:`OnlineLogSumExp` to merge partial reductions.
    """
    a = np.asarray(a)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    cdt = _compute_dtype(a.dtype)
    plan = Plan(a, axes, dtype=cdt)
    mo, to = _pairs(plan)
    return plan.reduced(mo, True), plan.reduced(to, True)


def _copy_rows(dst, src):
    P.copy_rows(dst.size, src, dst)


def _run_rows(plan, kern, dest):
    """kern(work, rows, dest rows) over the plan's rows: once on the view, or
    block by block through ``row_blocks`` when the copy is deferred (each
    block has rows for every thread; a block of x's dtype is copied on the
    threads).  Strided views of a (4096, 2000) float32 array: logsumexp
    1.2-1.5x, softmax 2.3-3.5x faster than a whole copy by numpy; int32
    1.2-2.5x; the copy is 4 MiB instead of the input's size (inputs of up to
    8 MiB are copied whole: ``Plan``)."""
    if not plan.deferred:
        v = plan.view
        kern(v.size, v, dest)
        return
    for r0, r1, blk in plan.row_blocks(4 * _nthreads(), copy=_copy_rows):
        kern(blk.size, blk, dest[r0:r1])


def _lse_plain(a, axes, keepdims, cdt, rdt):
    plan = Plan(a, axes, dtype=cdt)
    m_, n_ = plan.p, plan.n
    if plan.kind == "rows" and n_ > 0 and not _few_long_rows(m_, n_):
        res = np.empty(m_, dtype=cdt)
        _run_rows(plan, _lse_rows_kernel(n_, cdt), res)
    else:
        mo, to = _pairs(plan)
        res = np.empty(mo.size, dtype=cdt)
        P.finish_rows(res.size, mo.ravel(), to.ravel(), res)
    res = plan.reduced(res, keepdims)
    return res.astype(rdt, copy=False)


def _lse_weighted(a, b, axes, keepdims, cdt, rdt):
    x, perm, _ = _as_rows(a, axes, cdt)
    w, _, _ = _as_rows(b, axes, np.float64)
    kept = perm[: a.ndim - len(axes)]
    out = np.empty(x.shape[0])
    sgn = np.empty(x.shape[0])
    if x.shape[1] == 0:
        out.fill(-np.inf)
        sgn.fill(0.0)
    else:
        P.lse_weighted_rows(x.size, x, w, out, sgn)
    shape = tuple(a.shape[i] for i in kept)
    out = out.reshape(shape)
    sgn = sgn.reshape(shape)
    if keepdims:
        kd = tuple(1 if i in axes else s for i, s in enumerate(a.shape))
        out, sgn = out.reshape(kd), sgn.reshape(kd)
    return out.astype(rdt, copy=False), sgn.astype(rdt, copy=False)


def _check_where(where, shape, name, grow=False):
    """where= as a bool array broadcast to ``shape`` (numpy-style errors).

    With ``grow`` the mask may also broadcast ``shape`` up (as ``b`` may)."""
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"{name}: where must be a boolean array, got dtype {w.dtype}")
    try:
        if grow:
            shape = np.broadcast_shapes(shape, w.shape)
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"{name}: where with shape {w.shape} does not broadcast to the shape {shape}"
        ) from None


def _unmasked(arrays, where, name):
    """The data of any ``np.ma.MaskedArray`` among ``arrays``, and ``where``
    narrowed so their masked elements are absent (scipy's logsumexp leaves
    them out of the sum; fastlse does so in all three functions)."""
    keep = None
    data = []
    for arr in arrays:
        if isinstance(arr, np.ma.MaskedArray):
            m = ~np.ma.getmaskarray(arr)
            keep = m if keep is None else keep & m
            arr = arr.data
        data.append(arr)
    if keep is None:
        return data, where
    if where is not None:
        w = np.asarray(where)
        if w.dtype != np.bool_:
            raise TypeError(f"{name}: where must be a boolean array, got dtype {w.dtype}")
        try:
            keep = keep & w
        except ValueError:
            raise ValueError(
                f"{name}: where with shape {w.shape} does not broadcast to the mask's "
                f"shape {keep.shape}"
            ) from None
    return data, keep


def _as_rows(arr, axes, dtype):
    """(M, N) C-contiguous arrangement with the reduced axes last (a view when
    the data already is laid out so), and the permutation used."""
    nd = arr.ndim
    perm = [i for i in range(nd) if i not in axes] + list(axes)
    n = int(np.prod([arr.shape[i] for i in axes], dtype=np.int64))
    moved = np.transpose(arr, perm)
    m = int(np.prod(moved.shape[: nd - len(axes)], dtype=np.int64))
    return np.ascontiguousarray(moved, dtype=dtype).reshape(m, n), perm, moved.shape


def _mask_rows(w, axes):
    """The bool mask in the rows arrangement, as uint8 for the kernels (a view
    of the mask's bytes: no conversion copy)."""
    wv, _, _ = _as_rows(w, axes, np.bool_)
    return wv.view(np.uint8)


def _lse_masked(a, w, axes, keepdims, cdt, rdt):
    x, _, moved = _as_rows(a, axes, cdt)
    wv = _mask_rows(w, axes)
    mo = np.empty(x.shape[0])
    to = np.empty(x.shape[0])
    if x.shape[1] == 0:
        mo.fill(-np.inf)
        to.fill(0.0)
    else:
        P.pair_rows_masked(x.size, x, wv, mo, to)
    res = np.empty(x.shape[0], dtype=cdt)
    P.finish_rows(res.size, mo, to, res)
    res = res.reshape(moved[: a.ndim - len(axes)])
    if keepdims:
        res = res.reshape(tuple(1 if i in axes else s for i, s in enumerate(a.shape)))
    return res.astype(rdt, copy=False)


def _softmax_masked(x, w, axes, rdt, out, log):
    cdt = _compute_dtype(rdt)
    xv, perm, moved = _as_rows(x, axes, cdt)
    wv = _mask_rows(w, axes)
    direct = (
        out is not None
        and perm == sorted(perm)
        and out.dtype == cdt
        and out.flags.c_contiguous
        and not np.may_share_memory(out, x)
    )
    buf = out.reshape(xv.shape) if direct else np.empty(xv.shape, dtype=cdt)
    if xv.size:
        P.softmax_rows_masked(xv.size, xv, wv, buf, log)
    if direct:
        return out
    res = np.transpose(buf.reshape(moved), np.argsort(perm))
    if out is not None:
        np.copyto(out, res, casting="unsafe")
        return out
    return np.ascontiguousarray(res)


def _lse_complex(a, b, axes, keepdims, return_sign):
    """NumPy path for complex input: scipy 1.17's algorithm, step for step
    (correct, not fast): the term of the element with the largest real part
    is kept apart (``log1p`` of the rest), results that come out infinite
    are taken from the direct ``log(sum(b * exp(a)))``, phases are wrapped
    to (-pi, pi] without touching those already inside."""
    with np.errstate(all="ignore"):
        if a.size == 0:
            out = np.full(np.sum(a.real, axis=axes, keepdims=True).shape, -np.inf, a.dtype)
            sgn = np.sign(out)
        else:
            direct = np.sum(np.exp(a) if b is None else b * np.exp(a), axis=axes, keepdims=True)
            sgn_direct = np.sign(direct)
            out_direct = np.log(np.abs(direct) if return_sign else direct)
            out, sgn = _lse_complex_shifted(a, b, axes)
            if return_sign:
                out = out.real
            finite = np.isfinite(out)
            out = np.where(finite, out, out_direct)
            sgn = np.where(finite, sgn, sgn_direct)
        if return_sign:
            sgn = sgn.real + 1j * _wrap_radians(sgn.imag)
        else:
            out = out.real + 1j * _wrap_radians(out.imag)
    if not keepdims:
        out = np.squeeze(out, axis=axes)
        sgn = np.squeeze(sgn, axis=axes)
    if return_sign:
        out = out.real
    out = out[()] if out.ndim == 0 else out
    sgn = sgn[()] if sgn.ndim == 0 else sgn
    return (out, sgn) if return_sign else out


def _lse_complex_shifted(a, b, axes):
    """(log, sign) of sum b * exp(a) with one element of the largest real
    part kept apart (scipy's ``_logsumexp`` for complex a), keepdims shape."""
    if b is not None:
        a = np.where(b == 0, -np.inf, a)
    real = a.real
    at_max = real == np.max(real, axis=axes, keepdims=True)
    # one element of the largest real part per slice: the last in C order
    idx = np.where(at_max, np.arange(a.size).reshape(a.shape), -1)
    one = idx == np.max(idx, axis=axes, keepdims=True)
    a_max = np.sum(np.where(one, a, 0), axis=axes, keepdims=True, dtype=a.dtype)
    rest = np.where(one, -np.inf, a)
    w_max = one.astype(a.dtype) if b is None else b * one
    m = np.sum(w_max, axis=axes, keepdims=True, dtype=a.dtype)
    e = np.exp(rest - a_max) if b is None else b * np.exp(rest - a_max)
    s = np.sum(e, axis=axes, keepdims=True, dtype=e.dtype)
    s = np.where(s == 0, s, s / m)
    sgn = np.sign(s + 1) * np.sign(m) * np.exp(a_max.imag * 1j)
    return np.log1p(s) + np.log(m) + a_max, sgn


def _wrap_radians(x):
    """Angles to (-pi, pi]; those already inside are kept (their bits)."""
    wrapped = -((-x + np.pi) % (2 * np.pi) - np.pi)
    return np.where(np.abs(x) < np.pi, x, wrapped)


# ----------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------
def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, where=None):
    """Compute the log of the sum of exponentials of input elements.

    A drop-in for :func:`scipy.special.logsumexp`: same signature, results,
    dtype rules and special values, computed by parallel Numba kernels that
    read the data once and finish with the accurate ``m + log1p(t)`` form.

    Parameters
    ----------
    a : array_like
        Input array.
    axis : None or int or tuple of ints, optional
        Axis or axes over which the sum is taken. By default (None) all
        elements are summed.
    b : array_like, optional
        Weights for ``exp(a)``, broadcast against `a`; may be negative.
        Elements whose weight is zero are ignored, even if they are inf or nan.
    keepdims : bool, optional
        If True, the reduced axes are left in the result with size one.
    return_sign : bool, optional
        If True, return ``(res, sgn)`` where ``res`` is the log of the absolute
        value of the sum and ``sgn`` its sign (+1, 0 or -1). If False,
        negative sums give nan.
    where : array_like of bool, optional
        Elements to include, broadcast against `a`. Excluded elements are
        absent (an excluded inf or nan has no effect); a fully excluded slice
        gives ``-inf``. Not in scipy. The masked elements of a
        ``np.ma.MaskedArray`` `a` (or `b`) are left out in the same way, as
        scipy does.

    Returns
    -------
    res : ndarray or scalar
        ``log(sum(b * exp(a)))`` over the reduced axes. A numpy scalar when the
        result is 0-d, like scipy.
    sgn : ndarray or scalar
        Only if `return_sign` is True.

    See Also
    --------
    softmax, log_softmax, scipy.special.logsumexp

    Notes
    -----
    Integer and boolean inputs are computed in float64; float16, float32 and
    float64 keep their dtype (float16 is computed in float32). Complex input
    takes a plain NumPy path with scipy's results.

    An empty sum (no elements, only ``-inf``, only zero weights, or an exact
    cancellation such as ``b=[1, -1]`` at equal values) gives ``-inf`` with
    sign 0, where scipy sometimes gives sign -1 or nan; see "Differences
    from scipy and torch" in the README for every deliberate difference.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import logsumexp
    >>> logsumexp([1000.0, 1000.0])  # 1000 + log(2), no overflow
    np.float64(1000.69314718056)
    >>> logsumexp([0.0, -40.0])  # the log1p form keeps tiny contributions
    np.float64(4.2483542553e-18)
    >>> logsumexp(np.arange(6.0).reshape(2, 3), axis=1)
    array([2.40760596, 5.40760596])
    >>> logsumexp([1.0, 2.0], b=[1.0, -1.0], return_sign=True)
    (np.float64(1.54132485461), np.float64(-1.0))
    >>> logsumexp([0.0, np.nan, 0.0], where=[True, False, True])  # log 2
    np.float64(0.69314718056)
    """
    if (
        type(a) is np.ndarray
        and b is None
        and where is None
        and not return_sign
        and not keepdims
        and a.ndim == 1
        and (axis is None or (type(axis) is int and -1 <= axis <= 0))
        and a.dtype in _FAST_DTYPES
        and 0 < a.shape[0] <= _SMALL
    ):
        # a small vector: no planning, the serial kernel directly (a few us)
        return a.dtype.type(K.row_lse(a, 0, a.shape[0]))
    if b is None and where is None and not return_sign:
        v = _unplanned_rows(a, axis)
        if v is not None:  # rows along the last axis: see _unplanned_rows
            res = np.empty(v.shape[0], dtype=a.dtype)
            kern = _lse_rows_kernel(v.shape[1], v.dtype)
            if v.size < PARALLEL_MIN_WORK:
                kern.serial(v, res)
            else:
                kern(v.size, v, res)
            if keepdims:
                return res.reshape((1,) * a.ndim if axis is None else (*a.shape[:-1], 1))
            return res[0] if axis is None or a.ndim == 1 else res.reshape(a.shape[:-1])
        v = _unplanned_cols(a, axis)
        if v is not None:  # one axis, not the last: see _unplanned_cols
            mo, to = _cols_pairs(v)
            res = np.empty(mo.size, dtype=a.dtype)
            P.finish_rows(res.size, mo.reshape(-1), to.reshape(-1), res)
            ax = axis % a.ndim
            kept = a.shape[:ax] + ((1,) if keepdims else ()) + a.shape[ax + 1 :]
            return res.reshape(kept)
    if _is_dask(a) or _is_dask(b):
        from . import _dask

        if where is not None:
            raise NotImplementedError("logsumexp: where= is not supported for dask arrays")
        return _dask.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
    (a, b), where = _unmasked((a, b), where, "logsumexp")
    a = np.asarray(a)
    dt = _lse_dtype(a, b)
    if b is not None:
        b = np.asarray(b)
        if b.dtype.kind not in "biufc":
            raise TypeError(f"logsumexp: b must be numeric, got dtype {b.dtype}")
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"logsumexp: b with shape {b.shape} does not broadcast to a's shape {a.shape}"
            ) from None
        a = np.broadcast_to(a, shape)
        b = np.broadcast_to(b, shape)
    if where is not None:
        where = _check_where(where, a.shape, "logsumexp", grow=True)
        if where.shape != a.shape:
            a = np.broadcast_to(a, where.shape)
            b = np.broadcast_to(b, where.shape) if b is not None else None
    if a.ndim == 0:
        a = a.reshape(1)
        b = b.reshape(1) if b is not None else None
        where = where.reshape(1) if where is not None else None
    axes = normalize_axes(axis, a.ndim)
    if where is not None and (b is not None or dt.kind == "c"):
        # weights already hide elements: a masked element is a zero weight
        b = np.where(where, 1 if b is None else b, 0)
        where = None
    if dt.kind == "c":
        return _lse_complex(a.astype(dt), b, axes, keepdims, return_sign)
    cdt = _compute_dtype(dt)
    if b is None and where is not None:
        out = _lse_masked(a, where, axes, keepdims, cdt, dt)
        if return_sign:
            sgn = lse_sign(out)
    elif b is None:
        out = _lse_plain(a, axes, keepdims, cdt, dt)
        if return_sign:
            sgn = lse_sign(out)
    else:
        out, sgn = _lse_weighted(a, b, axes, keepdims, cdt, dt)
        if not return_sign:
            out[sgn < 0] = np.nan
    out = out[()] if out.ndim == 0 else out
    if return_sign:
        sgn = sgn[()] if sgn.ndim == 0 else sgn
        return out, sgn
    return out


def _prepare_softmax(x, axis, out, name):
    x = np.asarray(x)
    rdt = _softmax_dtype(x)
    if x.ndim == 0 and isinstance(axis, (int, np.integer)) and axis in (0, -1):
        axis = None  # scipy takes the axis 0 (or -1) of a 0-d x
    axes = normalize_axes(axis, x.ndim)
    n = math.prod(x.shape[i] for i in axes)
    if n == 0:
        raise ValueError(f"{name}: zero-size reduction: the axes {axis!r} of x have no elements")
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name}: out must be a numpy array, got {type(out).__name__}")
        if out.shape != x.shape:
            raise ValueError(f"{name}: out has shape {out.shape}, expected x's shape {x.shape}")
        if out.dtype.kind != rdt.kind or not np.can_cast(rdt, out.dtype, "same_kind"):
            raise ValueError(f"{name}: out has dtype {out.dtype}; the result's dtype is {rdt}")
        if not out.flags.writeable:
            raise ValueError(f"{name}: out is read-only")
    return x, rdt, axes


def _finish_out(res, rdt, out):
    if out is not None:
        if res is not out:
            np.copyto(out, res, casting="unsafe")
        return out
    res = res.astype(rdt, copy=False)
    return res[()] if res.ndim == 0 else res


def _softmax_kernel(x, axes, rdt, out, log):
    cdt = _compute_dtype(rdt)
    plan = Plan(x, axes, dtype=cdt)
    # out sharing x's memory (in place, or overlapping): the kernels write
    # into a buffer, copied at the end (as numpy's ufuncs do); in place, the
    # vectorized loops would fall back to their scalar versions anyway, which
    # sum in another order
    shared = out is not None and np.may_share_memory(out, x)
    dest = plan.out_view(out) if out is not None and not shared else None
    if dest is None:
        dest, full = plan.empty_like_view(cdt)
    else:
        full = out
    if x.size == 0:
        return full
    if plan.kind == "rows":
        m_, n_ = plan.p, plan.n
        if _few_long_rows(m_, n_) and m_ * n_ >= PARALLEL_MIN_WORK:
            v = plan.view
            npc = (n_ + PIECE - 1) // PIECE
            piece = (n_ + npc - 1) // npc
            if log:
                mo, to = _pairs(plan)
                P.log_softmax_pieces(v.size, v, dest, piece, mo, to)
            else:
                mp = np.empty((m_, npc))
                sp = np.empty((m_, npc))
                P.softmax_pieces_exp(v.size, v, dest, piece, mp, sp)
                P.softmax_piece_divisors(mp, sp)
                P.softmax_pieces_scale(v.size, dest, piece, sp)
        else:
            _run_rows(plan, _softmax_rows_kernel(n_, log), dest)
    else:
        _softmax_cols(plan.view, dest, log)
    return full


def _softmax_cols(v, dest, log):
    """softmax / log_softmax of a (P, N, Q) view over N into dest (N > 0)."""
    n_, q_ = v.shape[1], v.shape[2]
    if C.folded(n_, q_, v.itemsize):
        k, piece, npc, rows, nt = _fold_plan(v)
        if npc == 1:  # a slab at a time: its output while it is in cache
            C.softmax_folded(v.size, v, dest, k, rows, nt, log)
        else:
            mo, to = _cols_pairs(v)
            C.apply_folded(v.size, v, dest, k, piece, nt, mo, to, log)
    else:
        w = C.col_width(n_, q_, v.itemsize, True)
        C.softmax_cols(v.size, v, dest, w, C.block_rows(w, v.itemsize), log)


def _softmax_complex(x, axes, log):
    with np.errstate(all="ignore"):
        xmax = np.max(x, axis=axes, keepdims=True)
        if log:
            xmax = np.where(np.isfinite(xmax), xmax, 0)
            tmp = x - xmax
            return tmp - np.log(np.sum(np.exp(tmp), axis=axes, keepdims=True))
        e = np.exp(x - xmax)
        return e / np.sum(e, axis=axes, keepdims=True)


def _softmax_family(x, axis, out, where, log):
    """softmax (log: log_softmax) of every kind of input."""
    name = "log_softmax" if log else "softmax"
    if _is_dask(x):
        from . import _dask

        if where is not None:
            raise NotImplementedError(f"{name}: where= is not supported for dask arrays")
        return (_dask.log_softmax if log else _dask.softmax)(x, axis=axis, out=out)
    if isinstance(x, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(x)
        (x,), where = _unmasked((x,), where, name)
        res = _softmax_family(x, axis, _unmasked((out,), None, name)[0][0], where, log)
        if isinstance(out, np.ma.MaskedArray):
            out.mask = mask
            return out
        return res if out is not None else np.ma.MaskedArray(res, mask=mask)
    if where is None:
        res = _unplanned_softmax(x, axis, out, log)
        if res is not None:
            return res
    x, rdt, axes = _prepare_softmax(x, axis, out, name)
    if where is not None:
        w = _check_where(where, x.shape, name)
        if rdt.kind == "c":
            raise TypeError(f"{name}: where= is not supported for complex input")
        return _finish_out(_softmax_masked(x, w, axes, rdt, out, log), rdt, out)
    if rdt.kind == "c":
        return _finish_out(_softmax_complex(x.astype(rdt), axes, log), rdt, out)
    return _finish_out(_softmax_kernel(x, axes, rdt, out, log), rdt, out)


def softmax(x, axis=None, *, out=None, where=None):
    r"""Compute the softmax function.

    A drop-in for :func:`scipy.special.softmax`: ``exp(x) / sum(exp(x))``
    along `axis`, computed with the max shift so it never overflows.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes to compute values along. Default is None: the softmax
        is computed over the entire array.
    out : ndarray, optional
        Array of x's shape and a floating dtype to write the result into
        (``out=x`` works and overwrites `x`).
    where : array_like of bool, optional
        Elements to include, broadcast against `x`. Excluded elements are
        absent from the sum and get 0; a fully excluded slice is all zeros
        (jax's convention). A ``np.ma.MaskedArray`` `x` is computed the same
        way over its unmasked elements and the result is a MaskedArray with
        x's mask.

    Returns
    -------
    s : ndarray or scalar
        An array of x's shape that sums to 1 along `axis` (`out` if given).

    See Also
    --------
    log_softmax, logsumexp, scipy.special.softmax

    Notes
    -----
    Rows with ``+inf``, with nan, or with only ``-inf`` give nan, as in scipy.
    Integer input follows ``np.exp``'s result dtype, as in scipy; boolean
    input gives float64 (scipy raises).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import softmax
    >>> softmax(np.array([1000.0, 1001.0, 1002.0]))  # naive exp overflows
    array([0.09003057, 0.24472847, 0.66524096])
    >>> softmax(np.array([[1.0, 1.0], [0.0, np.log(3.0)]]), axis=1)
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    >>> softmax(np.array([1.0, 1.0, np.inf]), where=np.array([True, True, False]))
    array([0.5, 0.5, 0. ])
    """
    return _softmax_family(x, axis, out, where, False)


def log_softmax(x, axis=None, *, out=None, where=None):
    r"""Compute the logarithm of the softmax function.

    A drop-in for :func:`scipy.special.log_softmax`, computed as
    ``(x - max) - log1p(t)`` where ``t`` is the sum of the other shifted
    exponentials: more accurate than scipy where one element dominates.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes to compute values along. Default is None: computed over
        the entire array.
    out : ndarray, optional
        Array of x's shape and a floating dtype to write the result into.
    where : array_like of bool, optional
        Elements to include, broadcast against `x`. Excluded elements are
        absent from the sum and get ``-inf``; a fully excluded slice is all
        ``-inf`` (jax's convention). A ``np.ma.MaskedArray`` `x` is computed
        the same way over its unmasked elements and the result is a
        MaskedArray with x's mask.

    Returns
    -------
    s : ndarray or scalar
        An array of x's shape whose exponential sums to 1 along `axis`.

    See Also
    --------
    softmax, logsumexp, scipy.special.log_softmax

    Notes
    -----
    Special values follow scipy: a row with ``+inf`` gives ``x - inf``
    (nan at the inf itself), a row with nan or with only ``-inf`` gives nan.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import log_softmax
    >>> log_softmax(np.array([1000.0, 1.0]))
    array([   0., -999.])
    >>> log_softmax(np.array([0.0, -40.0]))[0]  # scipy returns exactly 0.0
    np.float64(-4.2483542553e-18)
    """
    return _softmax_family(x, axis, out, where, True)
