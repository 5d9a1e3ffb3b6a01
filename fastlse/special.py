"""logsumexp, softmax, log_softmax: scipy.special's signatures and semantics.

Each function follows one pattern: validate (``_args``), view the data in
kernel layout (``_layout``), let the chooser pick the route and run the op's
table (``_ops``), shape the result.  A C-contiguous float32 / float64 array
reduced along one axis (or all of it) has its view made directly
(``_layout.fast_view``): the same view and route as the general path, so the
same bits, without its checks; softmax / log_softmax remember that route,
its kernel and its view's shape as a plan by the array's shape, strides,
dtype and axis (``_FAST_PLANS``).  dask arrays go to ``_dask`` (imported
on first use).
"""

from typing import Any, Literal, overload

import numpy as np

from . import _args, _interop, _ops
from ._complex import lse_complex, softmax_complex
from ._layout import FAST_DTYPES, Layout, fast_view, keepdims_shape
from ._pairs import lse_sign
from ._routes import choose, keep
from ._typing import ArrayLike, Axis, NDArray, Reduced

__all__ = ["log_softmax", "logsumexp", "softmax"]


def _scalar(r):
    return r[()] if r.ndim == 0 else r


@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: Literal[False] = False,
    where: ArrayLike | None = None,
) -> Reduced: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    *,
    return_sign: Literal[True],
    where: ArrayLike | None = None,
) -> tuple[Reduced, Reduced]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis,
    b: ArrayLike | None,
    keepdims: bool,
    return_sign: Literal[True],
    where: ArrayLike | None = None,
) -> tuple[Reduced, Reduced]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    where: ArrayLike | None = None,
) -> Reduced | tuple[Reduced, Reduced]: ...
def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    where: ArrayLike | None = None,
) -> Any:
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
    sign 0, where scipy sometimes gives sign -1 or nan; see the page
    "Differences from scipy and torch" of the documentation
    (``docs/differences.md``) for every deliberate difference.

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
    if b is None and where is None and not return_sign:
        v = None if keepdims else _ops.lse_short_vector(a, axis)
        if v is not None:
            return v
        plan = _plan(_LSE_PLANS, _make_lse_plan, keepdims, a, axis)
        if plan is not None:
            return plan(a)
    if _interop.foreign(a, b, where):
        kw = dict(axis=axis, keepdims=keepdims, return_sign=return_sign)
        return _interop.call(logsumexp, "logsumexp", dict(a=a, b=b, where=where), **kw)
    if _args.is_dask(a) or _args.is_dask(b):
        return _dask_call(
            "logsumexp", a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign, where=where
        )
    r = _args.reduce(a, axis, b, keepdims, where)
    if r.dtype.kind == "c":
        return lse_complex(r.a.astype(r.dtype), r.b, r.axes, keepdims, return_sign)
    if r.b is not None:
        out, sgn, kept = _ops.lse_weighted(r.a, r.b, r.axes, r.cdt)
        out, sgn = (_reduced(v, kept, r).astype(r.dtype, copy=False) for v in (out, sgn))
        if not return_sign:
            out[sgn < 0] = np.nan
    else:
        if r.where is not None:
            out, kept = _ops.lse_masked(r.a, r.where, r.axes, r.cdt)
            out = _reduced(out, kept, r)
        else:
            lay = Layout(r.a, r.axes, dtype=r.cdt)
            out = lay.reduced(_ops.lse(lay, vector=r.a.ndim == 1), keepdims)
        out = out.astype(r.dtype, copy=False)
        sgn = lse_sign(out) if return_sign else None
    return (_scalar(out), _scalar(sgn)) if return_sign else _scalar(out)


def _make_lse_plan(keepdims, a, axis):
    """``plan(a)``: logsumexp of an array laid out like a along axis, shaped
    as the general path shapes it (a scalar where nothing is kept).  The
    route and kernel are those ``_ops.lse`` chooses for a's view (same
    bits).  None where a is not on the fast path."""
    fast = fast_view(a, axis)
    if fast is None:
        return None
    vshape, dt = fast[0].shape, a.dtype
    run = _ops.bound(_ops.LSE, choose(_ops.LSE, vshape, dt, vector=a.ndim == 1), vshape, dt)
    rshape = _ops.reduced_shape(vshape)
    shape = _keepdims_of(a.shape, axis) if keepdims else fast[1]
    as_view, same, scalar = vshape != a.shape, shape == rshape, shape == ()

    def plan(a):
        res = np.empty(rshape, dt)
        run(a.reshape(vshape) if as_view else a, res)
        return res if same else (res[0] if scalar else res.reshape(shape))

    return plan


#: logsumexp's plans (``_make_lse_plan``) by (keepdims, shape, strides,
#: dtype, axis), as softmax's (``_FAST_PLANS``)
_LSE_PLANS: dict = {}


def _keepdims_of(shape, axis):
    """The keepdims shape of a reduction over ``axis`` (an int or None)."""
    if axis is None:
        return (1,) * len(shape)
    return keepdims_shape(shape, (axis % len(shape),))


def _reduced(res, kept, r):
    """Values of the kept axes (``as_rows`` order) -> the result's shape."""
    res = res.reshape(kept)
    return res.reshape(keepdims_shape(r.a.shape, r.axes)) if r.keepdims else res


def _dask_call(name, *args, **kw):
    from . import _dask

    if kw.pop("where", None) is not None:
        raise NotImplementedError(f"{name}: where= is not supported for dask arrays")
    return getattr(_dask, name)(*args, **kw)


def softmax(
    x: ArrayLike,
    axis: Axis = None,
    *,
    out: NDArray[Any] | None = None,
    where: ArrayLike | None = None,
) -> NDArray[Any]:
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
    if out is None and where is None:  # small calls: no frame before the plan
        plan = _plan(_FAST_PLANS, _make_plan, False, x, axis)
        if plan is not None:
            return plan(x, None)
    return _normalize(x, axis, out, where, False)


def log_softmax(
    x: ArrayLike,
    axis: Axis = None,
    *,
    out: NDArray[Any] | None = None,
    where: ArrayLike | None = None,
) -> NDArray[Any]:
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
    if out is None and where is None:  # small calls: no frame before the plan
        plan = _plan(_FAST_PLANS, _make_plan, True, x, axis)
        if plan is not None:
            return plan(x, None)
    return _normalize(x, axis, out, where, True)


def _normalize(x, axis, out, where, log):
    """softmax (log: log_softmax) of every kind of input."""
    fn = "log_softmax" if log else "softmax"
    op = _ops.LOG_SOFTMAX if log else _ops.SOFTMAX
    if where is None and out is not None and _fast_out(x, out):
        plan = _plan(_FAST_PLANS, _make_plan, log, x, axis)
        if plan is not None:
            return plan(x, out)
    if _interop.foreign(x, out, where):
        f = log_softmax if log else softmax
        return _interop.call(f, fn, dict(x=x, out=out, where=where), axis=axis)
    if _args.is_dask(x):
        return _dask_call(fn, x, axis=axis, out=out, where=where)
    if isinstance(x, np.ma.MaskedArray):
        return _normalize_masked_array(x, axis, out, where, log)
    r = _args.normalize(x, axis, out, where, fn)
    if r.where is not None:
        res = _ops.normalize_masked(r.x, r.where, r.axes, r.cdt, r.out, log)
    elif r.dtype.kind == "c":
        res = softmax_complex(r.x.astype(r.dtype), r.axes, log)
    else:
        res = _ops.normalize(op, r)
    if out is not None:
        if res is not out:
            np.copyto(out, res, casting="unsafe")
        return out
    return _scalar(res.astype(r.dtype, copy=False))


#: entries of ``_FAST_PLANS`` and ``_LSE_PLANS`` at most
_FAST_PLANS_MAX = 256
_F32, _F64 = FAST_DTYPES


def _plan(plans, make, tag, x, axis):
    """The plan in ``plans`` of a float32 / float64 ndarray x along axis (an
    int or None) on the fast path, by (tag, x's layout, axis), made by
    ``make(tag, x, axis)`` the first time; None where x is not on it."""
    if type(x) is not np.ndarray or not (axis is None or type(axis) is int):
        return None
    dt = x.dtype
    if dt is not _F64 and dt is not _F32:  # identity: the builtin descriptors
        return None
    key = (tag, x.shape, x.strides, dt, axis)
    plan = plans.get(key, plans)
    if plan is plans:
        plan = keep(plans, key, make(tag, x, axis), _FAST_PLANS_MAX)
    return plan


def _make_plan(log, x, axis):
    """``plan(x, out)``: softmax or log_softmax (``log``) of an array laid out
    like x along axis, into ``out`` (None: a new array; else C-contiguous,
    of x's shape and dtype, apart from x: ``_fast_out``).  The route and
    its kernel are those the general path chooses for x's view (same bits);
    the "vector" route's kernel runs on the row itself.  None where x is
    not on the fast path."""
    fast = fast_view(x, axis)
    if fast is None:
        return None
    shape, dt, vshape = x.shape, x.dtype, fast[0].shape
    op = _ops.LOG_SOFTMAX if log else _ops.SOFTMAX
    route = choose(op, vshape, dt, writes=True, vector=True)
    run = _ops.bound(op, route, vshape, dt)
    if route == "vector":
        vshape = vshape[1:]
    if shape == vshape:

        def plan(x, out):
            dest = np.empty(shape, dt) if out is None else out
            run(x, dest)
            return dest

    else:

        def plan(x, out):
            dest = np.empty(shape, dt) if out is None else out
            run(x.reshape(vshape), dest.reshape(vshape))
            return dest

    return plan


#: the fast path's plans (``_make_plan``) by (log, shape, strides, dtype,
#: axis) of a C-contiguous float32 / float64 ndarray: ``fast_view`` and
#: ``choose`` depend on nothing else (the thread pool's size is fixed in a
#: process), so a repeated call skips them and the runner's own decisions
#: (~2 us of a small call)
_FAST_PLANS: dict = {}


def _fast_out(x, out):
    """``out`` can take the fast path's result directly: a C-contiguous ndarray
    of x's shape and dtype apart from x's memory (in place and overlaps take
    the general path's buffer)."""
    return (
        type(out) is np.ndarray
        and type(x) is np.ndarray
        and out.dtype is x.dtype
        and out.shape == x.shape
        and out.flags.c_contiguous
        and out.flags.writeable
        and not np.may_share_memory(out, x)
    )


def _normalize_masked_array(x, axis, out, where, log):
    """A MaskedArray: its unmasked elements, the result masked like x."""
    fn = "log_softmax" if log else "softmax"
    mask = np.ma.getmaskarray(x)
    (x,), where = _args.unmasked((x,), where, fn)
    res = _normalize(x, axis, _args.unmasked((out,), None, fn)[0][0], where, log)
    if isinstance(out, np.ma.MaskedArray):
        out.mask = mask
        return out
    return res if out is not None else np.ma.MaskedArray(res, mask=mask)
