"""Public cross-entropy functions: ``cross_entropy``, ``nll_loss``, ``log_sigmoid``.

Semantics are those of ``torch.nn.functional`` (2.x).  Each function validates
everything first (nothing is computed or written before an error), then turns
the class axis into a kernel layout and makes one call into a fused kernel of
``_xent_kernels``.

Layouts (no copy of the logits in the common cases):

* C-contiguous logits, class axis last: rows ``(M, C)``;
* C-contiguous logits, class axis elsewhere (torch's ``(N, C, d1, ...)``):
  ``(P, C, Q)`` handled by a strided column kernel;
* F-contiguous logits: the same, on the C-contiguous transpose;
* any other strided view, and float16 / longdouble logits (computed in
  float32 / float64): one contiguous copy of the logits first.

Few long rows (fewer than twice the threads, each at least ``2 * PIECE``
long, as logsumexp decides in ``_api``) are split into pieces of about
``PIECE`` classes that the threads share (``_few_long_rows``, then
``_long_rows_index`` or ``_long_rows_soft``).
"""

import math

import numpy as np

from . import _columns as C
from . import _xent_kernels as K
from ._api import _FAST_DTYPES, PIECE, _is_dask, _nthreads
from ._api import _few_long_rows as _api_few_long_rows
from ._axis import normalize_axes
from ._config import PARALLEL_MIN_WORK

__all__ = ["cross_entropy", "log_sigmoid", "nll_loss"]

_REDUCTIONS = ("mean", "sum", "none")
#: bytes of one column block of the (P, C, Q) kernels: whole rows of the slab
#: where they fit (contiguous reads: middle-axis shapes ran 1.1-2.3x faster
#: with 512 KiB - 1 MiB blocks than with 128 KiB ones, whose rows were read a
#: quarter at a time, although a block and its grad no longer fit in L2)
_COL_BLOCK_BYTES = 1 << 20


# ----------------------------------------------------------------------------
# validation helpers (all raise before any work)
# ----------------------------------------------------------------------------
def _float_input(a, name, fn):
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(
            f"{fn}: {name} must be a floating-point array, got dtype {a.dtype} "
            f"(convert with {name}.astype(np.float32) or np.float64)"
        )
    if a.ndim == 0:
        raise ValueError(f"{fn}: {name} must have at least one dimension (the class axis)")
    return a


def _compute_dtype(dt):
    if dt == np.float32 or dt == np.float64:
        return np.dtype(dt)
    return np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)


def _class_axis(axis, ndim, fn):
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"{fn}: axis must be a single integer (the class axis), got {axis!r}")
    return normalize_axes(axis, ndim, "axis")[0]


def default_class_axis(shape, target_shape, soft, fn):
    """The class axis when none is given: the last for 1-D and 2-D logits
    (torch's and numpy's conventions agree there); with more dimensions the
    one the targets' shape implies, torch's axis 1 of ``(N, C, d1, ...)`` or
    classes last, and an error where both fit (never a silent guess)."""
    nd = len(shape)
    if nd <= 2:
        return -1
    torch_fits = target_shape == shape[:1] + shape[2:]
    last_fits = target_shape == shape[:-1]
    if soft or (torch_fits and last_fits):
        what = "class probabilities" if soft else "class indices"
        raise ValueError(
            f"{fn}: the class axis of logits of shape {shape} with {what} of shape "
            f"{target_shape} is ambiguous: pass axis=1 (torch's (N, C, d1, ...) layout) "
            f"or axis=-1 (classes last)"
        )
    if not (torch_fits or last_fits):
        raise ValueError(
            f"{fn}: target has shape {target_shape}; class indices need the logits' shape "
            f"without the class axis: {shape[:1] + shape[2:]} for torch's layout (axis=1) "
            f"or {shape[:-1]} for classes last (axis=-1)"
        )
    return 1 if torch_fits else -1


def _check_reduction(reduction, fn):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")


def _check_weight(weight, n, fn):
    """Per-class weights as float64 (ones when None)."""
    if weight is None:
        return np.ones(n), False
    w = np.asarray(weight)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"{fn}: weight must be a real numeric array, got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(
            f"{fn}: weight must be a 1-D array of length C = {n} (one weight per class), "
            f"got shape {w.shape}"
        )
    return np.ascontiguousarray(w, dtype=np.float64), True


def _index_target(target, shape, axis, fn):
    """Class-index targets: integer array of ``shape`` minus ``axis``."""
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{fn}: class-index target must have an integer dtype, got {t.dtype}")
    want = shape[:axis] + shape[axis + 1 :]
    if t.shape != want:
        raise ValueError(
            f"{fn}: target has shape {t.shape}; class indices need the logits' shape "
            f"without the class axis, {want} (or the logits' own shape {shape} for "
            f"class probabilities)"
        )
    if t.dtype == np.uint64:
        t = np.minimum(t, np.iinfo(np.int64).max)  # out of range anyway, keep it so
    return t.astype(np.int64, copy=False)


def _check_targets(t, n, ignore_index, w, fn):
    """IndexError for out-of-range targets; returns sum(w[y]) over kept rows."""
    flat = np.ascontiguousarray(t).reshape(-1)
    nbad, den = K.check_targets(flat.size, flat, n, int(ignore_index), w)
    if nbad:
        bad = np.flatnonzero((flat != ignore_index) & ((flat < 0) | (flat >= n)))[0]
        raise IndexError(
            f"{fn}: target {int(flat[bad])} is out of bounds for {n} classes "
            f"(at flat position {bad}; ignore_index is {ignore_index})"
        )
    return den


def _check_ignore_index(ignore_index, fn):
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(
        ignore_index, (int, np.integer)
    ):
        raise TypeError(f"{fn}: ignore_index must be an integer, got {ignore_index!r}")
    ii = int(ignore_index)
    if not -(2**63) <= ii < 2**63:
        raise ValueError(f"{fn}: ignore_index {ii} does not fit in int64")
    return ii


def _check_z_loss(z_loss, fn):
    try:
        z = float(z_loss)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: z_loss must be a number, got {z_loss!r}") from None
    if not (math.isfinite(z) and z >= 0.0):
        raise ValueError(f"{fn}: z_loss must be a finite number >= 0, got {z_loss!r}")
    return z


def _check_softcap(softcap, dtype, fn):
    """The cap as a float (0.0 for None): finite, > 0, and so in the compute dtype."""
    if softcap is None:
        return 0.0
    cdt = _compute_dtype(dtype)
    try:
        cap = float(softcap)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: softcap must be None or a number, got {softcap!r}") from None
    if not (math.isfinite(cap) and cap > 0.0):
        raise ValueError(f"{fn}: softcap must be None or a finite number > 0, got {softcap!r}")
    with np.errstate(over="ignore", under="ignore"):
        c, r = cdt.type(cap), cdt.type(1.0 / cap)
    if not (np.isfinite(c) and np.isfinite(r) and c > 0 and r > 0):
        raise ValueError(f"{fn}: softcap {softcap!r} (or 1 / softcap) is out of {cdt}'s range")
    return cap


def _check_out(out, logits, fn):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a numpy array, got {type(out).__name__}")
    if out.shape != logits.shape:
        raise ValueError(f"{fn}: out has shape {out.shape}, expected logits' shape {logits.shape}")
    if out.dtype != logits.dtype:
        raise ValueError(f"{fn}: out has dtype {out.dtype}, expected logits' dtype {logits.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out is read-only")


# ----------------------------------------------------------------------------
# layout: (array, class axis) -> kernel view
# ----------------------------------------------------------------------------
class _Layout:
    """Kernel view of logits with class axis ``axis``: rows (M, C) or cols (P, C, Q).

    ``transposed``: the view is of the (C-contiguous) transpose of an
    F-contiguous input; every array with the logits' (or targets') shape is
    then transposed the same way.
    """

    def __init__(self, logits, axis, cdt):
        nd = logits.ndim
        self.shape = logits.shape
        self.transposed = False
        x = logits
        if x.dtype == cdt and x.flags.c_contiguous:
            pass
        elif x.dtype == cdt and x.flags.f_contiguous:
            x, axis, self.transposed = x.T, nd - 1 - axis, True
        else:  # strided view or float16 / longdouble: one copy
            x = np.ascontiguousarray(x, dtype=cdt)
        self.x = x
        self.axis = axis
        self.n = x.shape[axis]
        self.p = math.prod(x.shape[:axis])
        self.q = math.prod(x.shape[axis + 1 :])
        self.rows = self.q == 1
        self.view = x.reshape((self.p, self.n) if self.rows else (self.p, self.n, self.q))

    def like_x(self, a, dtype):
        """An array of the logits' shape in kernel layout (a contiguous copy if needed)."""
        a = a.T if self.transposed else a
        a = np.ascontiguousarray(a, dtype=dtype)
        return a.reshape(self.view.shape)

    def like_target(self, t):
        t = t.T if self.transposed else t
        t = np.ascontiguousarray(t)
        return t.reshape((self.p,) if self.rows else (self.p, self.q))

    def loss_shape(self, loss):
        """Per-row losses (kernel layout) -> the targets' shape."""
        kshape = self.x.shape[: self.axis] + self.x.shape[self.axis + 1 :]
        r = loss.reshape(kshape)
        return r.T if self.transposed else r

    def grad_buffers(self, out, others):
        """(kernel-layout buffer, result array, copy needed afterwards)."""
        cdt = self.x.dtype
        if out is not None and out.dtype == cdt:
            o = out.T if self.transposed else out
            same = (
                o.flags.c_contiguous
                and o.__array_interface__["data"][0] == self.x.__array_interface__["data"][0]
                and o.strides == self.x.strides
            )
            shared = any(np.may_share_memory(o, a) for a in others)
            if o.flags.c_contiguous and (same or not shared):
                return o.reshape(self.view.shape), out, False
        buf = np.empty(self.x.shape, dtype=cdt)
        full = buf.T if self.transposed else buf
        return buf.reshape(self.view.shape), full, out is not None

    def qchunk(self):
        """Columns per block: ``_COL_BLOCK_BYTES`` of logits (8 to 1024
        columns), fewer where that would leave under four blocks per thread."""
        isz = self.x.dtype.itemsize
        qc = int(min(max(_COL_BLOCK_BYTES // max(1, self.n * isz), 8), 1024))
        need = 4 * _nthreads()
        if self.p * -(-self.q // qc) < need:
            qc = max(8, -(-self.q // -(-need // self.p)))
        return qc


def _as_result(v, dt):
    v = np.asarray(v).astype(dt)
    return v[()] if v.ndim == 0 else v


# ----------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------
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
):
    r"""Cross-entropy loss between logits and targets, optionally with its gradient.

    The semantics and numbers of :func:`torch.nn.functional.cross_entropy`
    (class weights, ``ignore_index``, reductions, label smoothing, class
    probability targets), computed by fused parallel kernels: each row of
    logits is read once, and with ``return_grad=True`` the gradient is written
    in the same pass. No probabilities array is formed; the extra memory is
    one float64 per sample.

    Parameters
    ----------
    logits : array_like of float
        Unnormalized scores, classes along `axis`. float32 and float64 are
        computed in their own precision (float16 in float32).
    target : array_like
        Either integer class indices with the logits' shape without the class
        axis, or floating class probabilities with the logits' own shape.
    axis : int, optional
        The class axis. By default the last one for 1-D and 2-D logits (the
        same as torch's); for logits of more dimensions, the axis that the
        class-index target's shape implies: torch's ``(N, C, d1, ...)``
        layout (axis 1) or classes last (axis -1). Where both would fit, or
        the target holds probabilities, a ValueError asks for it.
    weight : array_like, optional
        Per-class weights, a 1-D array of length C.
    ignore_index : int, optional
        Class-index targets equal to it contribute nothing to the loss and the
        gradient, and are left out of the mean's denominator. Default -100.
        Not supported (must be negative) with probability targets, as in torch.
    reduction : {"mean", "sum", "none"}, optional
        "mean" divides by the summed weights of the non-ignored targets (by the
        number of samples for probability targets); "none" returns one loss
        per sample with the targets' shape.
    label_smoothing : float, optional
        In [0, 1]: the target becomes a mix of the given one and the uniform
        distribution over classes, ``(1 - eps) * target + eps / C``.
    return_grad : bool, optional
        If True, also return the gradient of the loss with respect to the
        logits (for "none": of the sum of the per-sample losses).
    out : ndarray, optional
        With ``return_grad=True``, an array of the logits' shape and dtype to
        write the gradient into (``out=logits`` overwrites the logits).
    z_loss : float, optional
        Coefficient of the z-loss (PaLM's auxiliary loss, Liger-Kernel's
        ``lse_square_scale``): ``z_loss * lse**2`` is added to the loss of
        every sample whose target is not ignored, ``lse`` the log-sum-exp of
        its (softcapped) logits. It is not multiplied by class weights or
        label smoothing; "sum" adds it up and "mean" divides its sum by the
        number of non-ignored samples (the number of samples for probability
        targets), not by the summed class weights -- Liger-Kernel's
        definition. Default 0 (none).
    softcap : float, optional
        If given (> 0), the logits are replaced by
        ``softcap * tanh(logits / softcap)`` (Gemma 2's logit soft-capping)
        before everything else, and the gradient flows through the cap.
    return_lse : bool, optional
        If True, also return each sample's log-sum-exp of the (softcapped)
        logits, ignored samples included.

    Returns
    -------
    loss : scalar or ndarray
        In the logits' dtype; an array of the targets' shape for "none".
    grad : ndarray
        Only if `return_grad` is True: same shape and dtype as `logits`.
    lse : scalar or ndarray
        Only if `return_lse` is True: the logits' shape without the class
        axis, in the logits' dtype.

    With more than one output they come as a tuple ``(loss, grad, lse)``
    (leaving out those not asked for).

    Raises
    ------
    TypeError
        Non-floating `logits`, a non-integer class-index `target`, a
        non-numeric `z_loss` or `softcap`.
    ValueError
        A `target`, `weight` or `out` of the wrong shape, an unknown
        `reduction`, `label_smoothing` outside [0, 1], a negative or
        non-finite `z_loss`, a `softcap` that is not finite and > 0.
    IndexError
        A class-index `target` outside ``[0, C)`` other than `ignore_index`.

    See Also
    --------
    nll_loss, fastlse.log_softmax

    Notes
    -----
    With ``m`` the row max and ``t`` the sum of the other ``exp(x - m)``, the
    log-normalizer is ``m + log1p(t)``, so confident predictions keep tiny
    losses accurate. The reductions are summed in float64. Special values
    follow torch: ``-inf`` logits of non-target classes give a finite loss
    (and zero gradient there); with label smoothing or probability targets
    they give ``inf`` or nan, because torch multiplies them in.

    In torch terms, with ``c = softcap * tanh(x / softcap)`` (``c = x``
    without a cap), ``lse = logsumexp(c, dim=1)`` and ``keep`` the mask of
    non-ignored targets, the loss is
    ``F.cross_entropy(c, ...) + z_loss * R(keep * lse**2)`` where ``R`` is
    the identity for "none", the sum for "sum" and
    ``sum(.) / sum(keep)`` for "mean"; its gradient is that of this formula.
    A softcap costs one more sweep over each row while it is in cache (its
    ``tanh`` into a row-sized scratch per thread, then the derivative
    ``1 - (c / softcap)**2``); the z-loss and the lse come from the same
    pass at no extra cost.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import cross_entropy
    >>> logits = np.array([[2, 1, 0.1], [0.5, 2.5, 0.3]])
    >>> cross_entropy(logits, [0, 2])
    np.float64(1.41853977)
    >>> loss, grad = cross_entropy(logits, [0, 2], return_grad=True)
    >>> grad
    array([[-0.17049943,  0.12121649,  0.04928295],
           [ 0.05430187,  0.40123953, -0.45554139]])
    >>> cross_entropy(logits, [0, -100], reduction="none")  # second row ignored
    array([0.41703002, 0.        ])
    >>> probs = np.array([[0.9, 0.1, 0.0], [0.0, 0.5, 0.5]])
    >>> cross_entropy(logits, probs, label_smoothing=0.1)
    np.float64(0.976873103)

    float32 logits give float32 results (printed here with fewer digits: the
    last bits of float32 depend on the CPU's vector width):

    >>> cross_entropy(logits.astype(np.float32), [0, 2])
    np.float32(1.41854)

    Language-model options: a z-loss, soft-capped logits, and the per-row
    log-sum-exp for reuse:

    >>> loss, grad, lse = cross_entropy(
    ...     logits, [0, 2], z_loss=1e-4, softcap=2.0, return_grad=True, return_lse=True)
    >>> loss
    np.float64(1.20889953)
    >>> lse
    array([2.10557739, 2.13228205])
    """
    fn = "cross_entropy"
    if _is_dask(logits) or _is_dask(target):
        from . import _dask

        return _dask.cross_entropy(
            logits,
            target,
            axis=axis,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            return_grad=return_grad,
            out=out,
            z_loss=z_loss,
            softcap=softcap,
            return_lse=return_lse,
        )
    if axis is None:
        tdt = target.dtype if isinstance(target, np.ndarray) else np.asarray(target).dtype
        axis = default_class_axis(np.shape(logits), np.shape(target), tdt.kind == "f", fn)
    if (
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
        and reduction in _REDUCTIONS
    ):
        res = _unplanned_index_rows(logits, target, axis, ignore_index, reduction, return_grad)
        if res is not None:
            return res
    moved = _classes_moved_last(logits, target, axis, out)
    if moved is not None:  # few columns behind the class axis: as rows
        ax, rows, target = moved
        res = cross_entropy(
            rows,
            target,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            return_grad=return_grad,
            z_loss=z_loss,
            softcap=softcap,
            return_lse=return_lse,
        )
        return _moved_back(res, logits.shape, ax, reduction == "none", return_grad, return_lse)
    logits = _float_input(logits, "logits", fn)
    ax = _class_axis(axis, logits.ndim, fn)
    _check_reduction(reduction, fn)
    ii = _check_ignore_index(ignore_index, fn)
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(
            f"{fn}: label_smoothing must be a number, got {label_smoothing!r}"
        ) from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    z = _check_z_loss(z_loss, fn)
    cap = _check_softcap(softcap, logits.dtype, fn)
    n = logits.shape[ax]
    # no weights: one scalar weight, made an array for the kernels that need one
    w = np.float64(1.0) if weight is None else _check_weight(weight, n, fn)[0]
    if out is not None:
        if not return_grad:
            raise ValueError(f"{fn}: out is the gradient's buffer; it needs return_grad=True")
        _check_out(out, logits, fn)
    tarr = np.asarray(target)
    soft = tarr.dtype.kind == "f"
    if soft:
        if tarr.shape != logits.shape:
            raise ValueError(
                f"{fn}: floating target (class probabilities) must have the logits' "
                f"shape {logits.shape}, got {tarr.shape}; class indices must be integers"
            )
        if ii >= 0:
            raise ValueError(f"{fn}: ignore_index is not supported for probability targets")
    else:
        tarr = _index_target(tarr, logits.shape, ax, fn)
    if not soft:
        den = _check_targets(tarr, n, ii, w, fn)
    if n == 0 and math.prod(logits.shape[:ax] + logits.shape[ax + 1 :]) > 0:
        raise ValueError(f"{fn}: logits have no classes along axis {axis}")
    # ------------------------------------------------------------ compute --
    rdt = logits.dtype
    cdt = _compute_dtype(rdt)
    lay = _Layout(logits, ax, cdt)
    x = lay.view
    nrows = lay.p * lay.q
    per_row = reduction == "none"
    loss = np.empty(nrows if per_row else 0)  # float64, O(rows), only for "none"
    lossk = loss if lay.rows else loss.reshape((lay.p, lay.q) if per_row else (0, 0))
    lse = np.empty(nrows, dtype=cdt) if return_lse else None  # the per-row lse
    total = 0.0
    # few long rows: pieces of each row in parallel (every option); they take
    # a scalar weight, so no array of C weights is made for C in the millions
    long_rows = nrows > 0 and lay.rows and _few_long_rows(nrows, n)
    if weight is None and not long_rows:
        w = np.ones(n)
    if soft:
        q = lay.like_x(tarr, cdt)
        with np.errstate(divide="ignore"):
            scale = 1.0 / np.float64(nrows) if reduction == "mean" else 1.0
        zl, zg = (z, 2.0 * z * scale) if z else (0.0, 0.0)  # (scale is inf for no rows)
    else:
        tk = lay.like_target(tarr)
        with np.errstate(divide="ignore"):
            scale = 1.0 / np.float64(den) if reduction == "mean" else 1.0
        zl, zg = _z_coefficients(z, reduction, weight is not None, tk, ii, den)
    if return_grad:
        others = [lay.x] + ([q] if soft else [])
        gbuf, grad, copy_back = lay.grad_buffers(out, others)
    else:
        gbuf = np.empty(x.shape[:1] + (0,) * (x.ndim - 1), dtype=cdt)
    if nrows > 0:
        # the LM options go to the *_lm kernels; the plain path keeps its own
        lm = None
        if z or cap or return_lse:
            ksh = (nrows,) if lay.rows else (lay.p, lay.q)
            lsek = lse.reshape(ksh) if return_lse else np.empty((0,) * len(ksh), dtype=cdt)
            lm = (zl, zg, lsek, return_lse)
        lmv = (zl, zg, lse if return_lse else np.empty(0, dtype=cdt), return_lse, cap)
        if soft:
            w1 = (w * (1.0 - eps)).astype(cdt)
            w0 = (w * (eps / max(n, 1))).astype(cdt)
            with np.errstate(invalid="ignore"):
                g1 = (scale * w1.astype(np.float64)).astype(cdt)
                g0 = (scale * w0.astype(np.float64)).astype(cdt)
            targs = (q, w1, w0, g1, g0)
            args = (x, *targs, scale, lossk, per_row, gbuf, return_grad)
            kerns = (K.soft_rows, K.soft_rows_lm, None)  # (no forward-only kernel)
        else:
            wl = w.astype(cdt)
            wsum = float(w.sum()) if weight is not None else float(n)
            with np.errstate(invalid="ignore"):  # inf * 0 -> nan, as torch's grad
                wg = (w * (scale * eps / max(n, 1))).astype(cdt)
            targs = (tk, w, wl, wsum, ii, eps, wg)
            args = (x, tk, w, wl, wsum, ii, eps, scale, lossk, per_row, gbuf, wg, return_grad)
            kerns = _index_rows_kernels(n)
        if long_rows:
            total = (_long_rows_soft if soft else _long_rows_index)(*args, *lmv)
        elif not lay.rows:  # the column kernels serve both kinds of targets
            common = (scale, lossk, per_row, gbuf, return_grad)
            cw = None
            if lm is None and not (soft or return_grad or eps):
                cw = _pairs_cols_width(lay)
            if cw is not None:
                rows = C.block_rows(cw, x.itemsize)
                total = K.cols_index_loss(x.size, x, cw, rows, tk, w, ii, lossk, per_row)
            elif lm is None:
                total = K.cols(x.size, x, targs, *common, lay.qchunk())
            else:
                total = K.cols_lm(x.size, x, targs, *common, *lm, lay.qchunk(), cap)
        elif lm is None and kerns[2] is not None and not (return_grad or eps):
            total = kerns[2](x.size, x, tk, w, ii, lossk, per_row)
        elif lm is None:
            total = kerns[0](x.size, *args)
        else:
            total = kerns[1](x.size, *args, *lm, cap)
    # ------------------------------------------------------------ reduce --
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            res = _as_result(lay.loss_shape(loss), rdt)
        elif reduction == "sum":
            res = _as_result(total, rdt)
        else:
            d = np.float64(nrows) if soft else np.float64(den)
            res = _as_result(np.float64(total) / d, rdt)
    outs = [res]
    if return_grad:
        if copy_back:
            np.copyto(out, grad, casting="unsafe")
            grad = out
        elif grad.dtype != rdt:
            grad = grad.astype(rdt)
        outs.append(grad)
    if return_lse:
        outs.append(_as_result(lay.loss_shape(lse), rdt))
    return outs[0] if len(outs) == 1 else tuple(outs)


#: class-index cross-entropy along a middle axis (no gradient, no smoothing)
#: takes logsumexp's column sweeps from this many classes on; with fewer, a
#: slab is one block of rows and the general column kernel is as fast
_PAIRS_COLS_MIN_C = 64


def _pairs_cols_width(lay):
    """The slab width of ``cols_index_loss`` for these logits, or None where
    it does not suit them: too few classes, or too few slabs for the threads
    (its slabs are no narrower than ``col_width``, where the general column
    kernel goes down to 8)."""
    if lay.n < _PAIRS_COLS_MIN_C:
        return None
    w = C.col_width(lay.n, lay.q, lay.x.dtype.itemsize, False)
    if _nthreads() == 1 or lay.p * -(-lay.q // w) >= 4 * _nthreads():
        return w
    return None


#: (C, dtype) -> the unit class weights of the plain kernels (w, w in x's
#: dtype, the smoothing subtrahend 0): small read-only-by-convention arrays,
#: kept for C up to _UNIT_WEIGHTS_MAX_C so small calls do not rebuild them
_UNIT_WEIGHTS = {}
_UNIT_WEIGHTS_MAX_C = 4096


def _index_rows_kernels(n):
    """(plain, LM options, forward only) kernels of class-index rows of n
    classes: blocks of rows vectorized across rows for few classes, one row
    at a time otherwise."""
    if n <= K.SMALL_C:
        return K.index_rows_small, K.index_rows_small_lm, K.index_rows_small_plain
    return K.index_rows, K.index_rows_lm, K.index_rows_plain


def _unit_weights(n, cdt):
    key = (n, cdt)
    ws = _UNIT_WEIGHTS.get(key)
    if ws is None:
        ws = (np.ones(n), np.ones(n, dtype=cdt), np.zeros(n, dtype=cdt))
        if n <= _UNIT_WEIGHTS_MAX_C:
            _UNIT_WEIGHTS[key] = ws
    return ws


def _ieee_div(a, b):
    """a / b as numpy's float64 division gives it (b == 0: +-inf or nan), no warning."""
    if b != 0.0:
        return a / b
    if a != a or a == 0.0:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


#: a class axis with fewer bytes than this behind it (float32: up to 8
#: positions, float64: 4) is moved last: (N, C, d) logits are copied as
#: (N, d, C) rows, whose kernels are vectorized across the classes; the column
#: kernels, vectorized across the d positions, ran such narrow blocks scalar
#: ((4096, 3, 4) float32: 1.2 ms against 0.25 ms moved; (1000, 10, 2) 0.71
#: against 0.09 ms).  From 16 float32 positions on the columns win.
_MOVE_CLASSES_MAX_BYTES = 32


def _classes_moved_last(logits, target, axis, out):
    """(class axis, (M, C) rows, targets as rows) with the class axis moved
    last in one contiguous copy (so the rows call itself may skip the
    planning), or None (keep the layout: many positions behind the axis,
    ``out=``, or an input the general path is to check)."""
    if (
        out is not None
        or type(logits) is not np.ndarray
        or type(axis) is not int
        or logits.dtype not in _FAST_DTYPES
        or logits.size == 0
        or not -logits.ndim <= axis < logits.ndim
    ):
        return None
    ax = axis % logits.ndim
    q = math.prod(logits.shape[ax + 1 :])
    if ax == logits.ndim - 1 or q * logits.itemsize > _MOVE_CLASSES_MAX_BYTES:
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


def _moved_back(res, shape, ax, per_row, grad, lse):
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


def _unplanned_index_rows(logits, target, axis, ii, reduction, return_grad):
    """cross_entropy of (M, C) or (C,) logits along their last axis with int64
    class indices and no option beyond ``ignore_index`` / ``reduction`` /
    ``return_grad``, or None (the general path, which also raises every error).

    The kernel the general path picks (serial below ``PARALLEL_MIN_WORK``
    elements), called with the arguments it builds (the same bits), without
    its validation and planning, which cost ~30 us a call: (32, 10) float32
    with its gradient ~60 -> ~10 us, a vector of 100 logits 36 -> 5 us.
    Few long rows (split into pieces across the threads) take the general path.
    """
    if (
        type(logits) is not np.ndarray
        or logits.dtype not in _FAST_DTYPES
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
    if tv.dtype != np.int64:
        return None
    m, n = x.shape
    if _few_long_rows(m, n):
        return None
    small = x.size < PARALLEL_MIN_WORK  # (a Kernel's own test costs ~0.5 us)
    nbad, den = (
        K.check_targets.serial(tv, n, ii, 1.0) if small else K.check_targets(m, tv, n, ii, 1.0)
    )
    if nbad:
        return None  # the general path raises the IndexError
    w, wl, wg = _unit_weights(n, x.dtype)
    per_row = reduction == "none"
    loss = np.empty(m if per_row else 0)
    scale = _ieee_div(1.0, den) if reduction == "mean" else 1.0
    gbuf = np.empty((m, n) if return_grad else (m, 0), dtype=x.dtype)
    kern, _, fwd = _index_rows_kernels(n)
    if fwd is not None and not return_grad:
        args = (x, tv, w, ii, loss, per_row)
        total = fwd.serial(*args) if small else fwd(x.size, *args)
    else:
        args = (x, tv, w, wl, float(n), ii, 0.0, scale, loss, per_row, gbuf, wg, return_grad)
        total = kern.serial(*args) if small else kern(x.size, *args)
    dt = x.dtype.type
    if per_row:
        res = loss.astype(x.dtype) if nd == 2 else dt(loss[0])
    elif reduction == "sum":
        res = dt(total)
    else:
        res = dt(_ieee_div(total, den))
    if not return_grad:
        return res
    return res, (gbuf if nd == 2 else gbuf[0])


def _few_long_rows(nrows, n):
    """True when rows (M, C) are split into pieces: the rule of softmax's."""
    return _api_few_long_rows(nrows, n) and nrows * n >= PARALLEL_MIN_WORK


def _pieces(n):
    """(number of pieces, piece length) of a row of n classes: pieces of at most
    about ``PIECE`` classes, all of one length but the last (none empty)."""
    piece = -(-n // -(-n // PIECE))
    return -(-n // piece), piece


def _long_rows_index(
    x, tk, w, wl, wsum, ii, eps, scale, loss, per_row, gbuf, wg, want_grad, zl, zg, lse,
    want_lse, cap,
):  # fmt: skip
    """Class-index targets on few long rows x (M, C): the pieces in parallel.

    The row kernels' arguments (``index_rows_lm``'s: ``w`` the float64 class
    weights, ``wl`` / ``wg`` the smoothing term's weights in x's dtype,
    ``zl, zg`` the z-loss coefficients, ``cap`` 0 for none), but each of
    ``w, wl, wg`` may be one scalar for every class (no weights); returns
    the summed loss.  Scratch: a few float64 per row and piece.
    """
    nr, n = x.shape
    npc, piece = _pieces(n)
    smooth = eps > 0.0
    mo = np.empty((nr, npc))
    to = np.empty((nr, npc))
    so = np.empty((nr, npc) if smooth else (0, 0))
    wo = np.empty_like(so)
    xy = np.zeros(nr)
    K.pieces_sums(x.size, x, (tk, ii, wl, smooth, xy), piece, cap, mo, to, so, wo)
    mr = np.empty(nr)
    cr = np.zeros(nr)
    sr = np.zeros(nr)
    total = K.index_pieces_merge(
        mo, to, so, wo, xy, tk, w, wsum, ii, eps, scale, n, zl, zg, loss, per_row, lse,
        want_lse, mr, cr, sr,
    )  # fmt: skip
    if want_grad:
        K.pieces_grad(x.size, x, (tk, ii, sr, wg, smooth), piece, cap, mr, cr, gbuf)
    return total


def _long_rows_soft(
    x, q, w1, w0, g1, g0, scale, loss, per_row, gbuf, want_grad, zl, zg, lse, want_lse, cap
):
    """Probability targets on few long rows: as ``_long_rows_index``, with
    ``soft_rows_lm``'s arguments (``w1, w0, g1, g0`` arrays or scalars)."""
    nr, n = x.shape
    npc, piece = _pieces(n)
    mo = np.empty((nr, npc))
    to = np.empty((nr, npc))
    so = np.empty((nr, npc))
    ao = np.empty((nr, npc))
    K.pieces_sums(x.size, x, (q, w1, w0), piece, cap, mo, to, so, ao)
    mr = np.empty(nr)
    cr = np.empty(nr)
    total = K.soft_pieces_merge(mo, to, so, ao, scale, zl, zg, loss, per_row, lse, want_lse, mr, cr)
    if want_grad:
        K.pieces_grad(x.size, x, (q, g1, g0), piece, cap, mr, cr, gbuf)
    return total


def _z_coefficients(z, reduction, weighted, tk, ii, den):
    """(zl, zg) of the z-loss for class-index targets.

    The z-loss is ``z * lse**2`` per kept row, unweighted; "mean" divides its
    sum by the number of kept rows (Liger-Kernel's choice), while the kernels
    return one sum that Python divides by the main loss's denominator ``den``
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


def nll_loss(log_probs, target, *, axis=None, weight=None, ignore_index=-100, reduction="mean"):
    r"""Negative log-likelihood loss for log-probabilities and class indices.

    The semantics of :func:`torch.nn.functional.nll_loss`: the per-sample loss
    is ``-weight[y] * log_probs[..., y, ...]`` (``y`` the target class along
    `axis`), ``0`` where ``y == ignore_index``.

    Parameters
    ----------
    log_probs : array_like of float
        Log-probabilities (e.g. from :func:`fastlse.log_softmax`), classes
        along `axis`.
    target : array_like of int
        Class indices with the shape of `log_probs` without the class axis.
    axis : int, optional
        The class axis; by default chosen as in :func:`cross_entropy`: the
        last one for 1-D and 2-D input, else the one the target's shape
        implies (torch's axis 1, or -1), a ValueError where both fit.
    weight : array_like, optional
        Per-class weights, a 1-D array of length C.
    ignore_index : int, optional
        Targets equal to it contribute 0 and are left out of the mean's
        denominator. Default -100.
    reduction : {"mean", "sum", "none"}, optional
        "mean" divides by the summed weights of the non-ignored targets.

    Returns
    -------
    loss : scalar or ndarray
        In the dtype of `log_probs`; an array of the targets' shape for "none".

    See Also
    --------
    cross_entropy

    Examples
    --------
    Mix two groups of classes in log space (``log(s) + log_softmax``) rather
    than multiplying probabilities, then take the NLL:

    >>> import numpy as np
    >>> from fastlse import log_softmax, nll_loss
    >>> logits = np.array([[0.5, -1.0, 2.0, 0.0, 1.0], [1.5, 0.2, -0.3, 2.2, 0.1]])
    >>> s = 1 / 3
    >>> lp = np.concatenate(
    ...     [np.log(s) + log_softmax(logits[:, :3], axis=1),
    ...      np.log(1 - s) + log_softmax(logits[:, 3:], axis=1)], axis=1)
    >>> nll_loss(lp, [2, 3])
    np.float64(0.9304541083)
    >>> nll_loss(lp, [2, 3], reduction="none", weight=[1, 1, 1, 2, 2])
    array([1.33992359, 1.04196926])
    """
    fn = "nll_loss"
    lp = _float_input(log_probs, "log_probs", fn)
    if axis is None:
        axis = default_class_axis(lp.shape, np.shape(target), False, fn)
    ax = _class_axis(axis, lp.ndim, fn)
    _check_reduction(reduction, fn)
    ii = _check_ignore_index(ignore_index, fn)
    n = lp.shape[ax]
    w, _ = _check_weight(weight, n, fn)
    t = _index_target(target, lp.shape, ax, fn)
    den = _check_targets(t, n, ii, w, fn)
    if n and lp.dtype in (np.float32, np.float64):
        # one gather kernel over the (P, C, Q) view: no index arrays
        lay = _Layout(lp, ax, lp.dtype)
        tk = lay.like_target(t)
        v3 = lay.view if not lay.rows else lay.view.reshape(lay.p, lay.n, 1)
        per = np.empty((lay.p, lay.q))
        # threads pay off from a few thousand rows: each gather is a cache miss
        K.nll_gather(per.size * 64, v3, tk.reshape(lay.p, lay.q), w, ii, per)
        if reduction == "none":
            return _as_result(lay.loss_shape(per), lp.dtype)
        total = per.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            return _as_result(total if reduction == "sum" else total / np.float64(den), lp.dtype)
    keep = t != ii
    if n == 0:
        picked = np.zeros(t.shape)
    else:
        safe = np.where(keep, t, 0)
        picked = np.take_along_axis(lp, np.expand_dims(safe, ax), axis=ax)
        picked = np.squeeze(picked, axis=ax).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        wy = w[np.where(keep, t, 0)] if n else np.zeros(t.shape)
        per = np.where(keep, -(wy * picked), 0.0)
        if reduction == "none":
            return _as_result(per, lp.dtype)
        if reduction == "sum":
            return _as_result(per.sum(), lp.dtype)
        return _as_result(per.sum() / np.float64(den), lp.dtype)


def log_sigmoid(x):
    r"""Elementwise ``log(1 / (1 + exp(-x)))``, computed stably.

    Evaluated as ``min(x, 0) - log1p(exp(-|x|))``: no overflow for large
    ``|x|``, and full relative accuracy for large positive ``x`` (where the
    result is about ``-exp(-x)``) as well as for large negative ``x`` (about
    ``x``). The same as :func:`torch.nn.functional.logsigmoid`.

    Parameters
    ----------
    x : array_like
        Real input. float32 stays float32 (float16 is computed in float32);
        integers and booleans are computed in float64.

    Returns
    -------
    out : ndarray or scalar
        ``log(sigmoid(x))``, same shape as `x`; a numpy scalar for 0-d input.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import log_sigmoid
    >>> log_sigmoid(np.array([-1000.0, 0.0, 40.0]))  # naive formula: -inf, ..., 0
    array([-1.00000000e+03, -6.93147181e-01, -4.24835426e-18])
    >>> log_sigmoid(np.float32(30.0))  # -exp(-30), float32 stays float32
    np.float32(-9.35762e-14)
    """
    a = np.asarray(x)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    if a.dtype.kind != "f":
        raise TypeError(f"log_sigmoid: x must be real, got dtype {a.dtype}")
    rdt = a.dtype
    cdt = _compute_dtype(rdt)
    src = np.ascontiguousarray(a, dtype=cdt).reshape(a.shape)
    res = np.empty(src.shape, dtype=cdt)
    if src.size:
        K.log_sigmoid_flat(src.size, src.reshape(-1), res.reshape(-1))
    return _as_result(res, rdt)
