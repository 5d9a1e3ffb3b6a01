"""Validation: the public functions' arguments into small frozen objects.

Everything is checked here, before any work, with numpy's and scipy's kinds
of errors, each naming the function and the argument.  The objects carry
what the routes need (arrays already broadcast, axes normalized, the result
and compute dtypes) and nothing else.
"""

import math
from typing import NamedTuple

import numpy as np

from ._layout import class_axis, compute_dtype, lse_dtype, normalize_axes, softmax_dtype
from .kernels.xent import check_targets

__all__ = [
    "CrossEntropy",
    "Normalize",
    "Reduce",
    "cross_entropy",
    "default_class_axis",
    "is_dask",
    "normalize",
    "reduce",
    "unmasked",
]


def is_dask(x):
    """True for a dask array, without importing dask (it is optional)."""
    t = type(x)
    return t is not np.ndarray and t.__module__.startswith("dask.") and hasattr(x, "dask")


def _bool_mask(where, fn):
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"{fn}: where must be a boolean array, got dtype {w.dtype}")
    return w


def check_where(where, shape, fn, grow=False):
    """where= as a bool array broadcast to ``shape`` (numpy-style errors).

    With ``grow`` the mask may also broadcast ``shape`` up (as ``b`` may)."""
    w = _bool_mask(where, fn)
    try:
        if grow:
            shape = np.broadcast_shapes(shape, w.shape)
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"{fn}: where with shape {w.shape} does not broadcast to the shape {shape}"
        ) from None


def unmasked(arrays, where, fn):
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
        w = _bool_mask(where, fn)
        try:
            keep = keep & w
        except ValueError:
            raise ValueError(
                f"{fn}: where with shape {w.shape} does not broadcast to the mask's "
                f"shape {keep.shape}"
            ) from None
    return data, keep


# ----------------------------------------------------------------------------
# logsumexp
# ----------------------------------------------------------------------------
class Reduce(NamedTuple):
    """A checked logsumexp call: ``a`` (and ``b``, ``where``) broadcast to one
    shape, at least 1-d; ``b`` None or the weights (a mask folded in);
    ``where`` None or a bool mask (only without weights)."""

    a: np.ndarray
    b: np.ndarray | None
    where: np.ndarray | None
    axes: tuple
    dtype: np.dtype  # the result's (scipy's promotion)
    cdt: np.dtype  # the kernels'
    keepdims: bool


def weights_shape(a, b, fn):
    """The shape a and the weights b (numpy or dask arrays) broadcast to."""
    if b.dtype.kind not in "biufc":
        raise TypeError(f"{fn}: b must be numeric, got dtype {b.dtype}")
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{fn}: b with shape {b.shape} does not broadcast to a's shape {a.shape}"
        ) from None


def _weights(a, b, fn):
    b = np.asarray(b)
    shape = weights_shape(a, b, fn)
    return np.broadcast_to(a, shape), np.broadcast_to(b, shape)


def reduce(a, axis, b, keepdims, where, fn="logsumexp"):
    """logsumexp's arguments checked and broadcast (``Reduce``)."""
    (a, b), where = unmasked((a, b), where, fn)
    a = np.asarray(a)
    dt = lse_dtype(a, b, fn)
    if b is not None:
        a, b = _weights(a, b, fn)
    if where is not None:
        where = check_where(where, a.shape, fn, grow=True)
        if where.shape != a.shape:
            a = np.broadcast_to(a, where.shape)
            b = np.broadcast_to(b, where.shape) if b is not None else None
    if a.ndim == 0:
        a = a.reshape(1)
        b = b.reshape(1) if b is not None else None
        where = where.reshape(1) if where is not None else None
    axes = normalize_axes(axis, a.ndim, fn)
    if where is not None and (b is not None or dt.kind == "c"):
        # weights already hide elements: a masked element is a zero weight
        b = np.where(where, 1 if b is None else b, 0)
        where = None
    cdt = dt if dt.kind == "c" else compute_dtype(dt)
    return Reduce(a, b, where, axes, dt, cdt, bool(keepdims))


# ----------------------------------------------------------------------------
# softmax, log_softmax
# ----------------------------------------------------------------------------
class Normalize(NamedTuple):
    """A checked softmax / log_softmax call."""

    x: np.ndarray
    axes: tuple
    dtype: np.dtype  # the result's (np.exp's for integers)
    cdt: np.dtype  # the kernels'
    out: np.ndarray | None
    where: np.ndarray | None


def check_out(out, shape, dtype, fn, what="x"):
    """``out=``: a writeable ndarray of the input's shape that can hold ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{fn}: out has shape {out.shape}, expected {what}'s shape {shape}")
    if out.dtype.kind != dtype.kind or not np.can_cast(dtype, out.dtype, "same_kind"):
        raise ValueError(f"{fn}: out has dtype {out.dtype}; the result's dtype is {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out is read-only")


def normalize(x, axis, out, where, fn):
    """softmax's arguments checked (``Normalize``)."""
    x = np.asarray(x)
    rdt = softmax_dtype(x, fn)
    if x.ndim == 0 and isinstance(axis, (int, np.integer)) and axis in (0, -1):
        axis = None  # scipy takes the axis 0 (or -1) of a 0-d x
    axes = normalize_axes(axis, x.ndim, fn)
    if math.prod(x.shape[i] for i in axes) == 0:
        raise ValueError(f"{fn}: zero-size reduction: the axes {axis!r} of x have no elements")
    if out is not None:
        check_out(out, x.shape, rdt, fn)
    if where is not None:
        where = check_where(where, x.shape, fn)
        if rdt.kind == "c":
            raise TypeError(f"{fn}: where= is not supported for complex input")
    cdt = rdt if rdt.kind == "c" else compute_dtype(rdt)
    return Normalize(x, axes, rdt, cdt, out, where)


# ----------------------------------------------------------------------------
# cross_entropy, nll_loss
# ----------------------------------------------------------------------------
REDUCTIONS = ("mean", "sum", "none")


def float_input(a, name, fn, ndim=None):
    """``a`` as a floating-point array of ``ndim`` dimensions (None: logits,
    at least one, the class axis)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(
            f"{fn}: {name} must be a floating-point array, got dtype {a.dtype} "
            f"(convert with {name}.astype(np.float32) or np.float64)"
        )
    if ndim is None and a.ndim == 0:
        raise ValueError(f"{fn}: {name} must have at least one dimension (the class axis)")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {a.shape}")
    return a


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


def check_reduction(reduction, fn):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")


def check_weight(weight, n, fn):
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


def index_target(target, shape, axis, fn):
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


def targets_den(t, n, ignore_index, w, fn):
    """IndexError for out-of-range targets; returns sum(w[y]) over kept rows."""
    flat = np.ascontiguousarray(t).reshape(-1)
    nbad, den = check_targets(flat.size, flat, n, int(ignore_index), w)
    if nbad:
        bad = np.flatnonzero((flat != ignore_index) & ((flat < 0) | (flat >= n)))[0]
        raise IndexError(
            f"{fn}: target {int(flat[bad])} is out of bounds for {n} classes "
            f"(at flat position {bad}; ignore_index is {ignore_index})"
        )
    return den


def check_ignore_index(ignore_index, fn):
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(
        ignore_index, (int, np.integer)
    ):
        raise TypeError(f"{fn}: ignore_index must be an integer, got {ignore_index!r}")
    ii = int(ignore_index)
    if not -(2**63) <= ii < 2**63:
        raise ValueError(f"{fn}: ignore_index {ii} does not fit in int64")
    return ii


def check_z_loss(z_loss, fn):
    try:
        z = float(z_loss)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: z_loss must be a number, got {z_loss!r}") from None
    if not (math.isfinite(z) and z >= 0.0):
        raise ValueError(f"{fn}: z_loss must be a finite number >= 0, got {z_loss!r}")
    return z


def check_softcap(softcap, dtype, fn):
    """The cap as a float (0.0 for None): finite, > 0, and so in the compute dtype."""
    if softcap is None:
        return 0.0
    cdt = compute_dtype(dtype)
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


def check_grad_out(out, logits, fn):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a numpy array, got {type(out).__name__}")
    if out.shape != logits.shape:
        raise ValueError(f"{fn}: out has shape {out.shape}, expected logits' shape {logits.shape}")
    if out.dtype != logits.dtype:
        raise ValueError(f"{fn}: out has dtype {out.dtype}, expected logits' dtype {logits.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out is read-only")


def check_smoothing(label_smoothing, fn):
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(
            f"{fn}: label_smoothing must be a number, got {label_smoothing!r}"
        ) from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return eps


class CrossEntropy(NamedTuple):
    """A checked cross_entropy call.  ``target``: int64 class indices (the
    logits' shape without the class axis) or, ``soft``, class probabilities
    (the logits' shape); ``weight`` float64 (None: no weights); ``den`` the
    summed weight of the kept class-index targets (the mean's denominator)."""

    logits: np.ndarray
    target: np.ndarray
    soft: bool
    axis: int
    weight: np.ndarray | None
    ignore_index: int
    reduction: str
    smoothing: float
    z_loss: float
    softcap: float  # 0.0: none
    out: np.ndarray | None
    return_grad: bool
    return_lse: bool
    den: float

    @property
    def lm(self):
        """The language-model options (z-loss, softcap, per-row lse) are on."""
        return bool(self.z_loss or self.softcap or self.return_lse)


def cross_entropy(
    logits,
    target,
    axis,
    weight,
    ignore_index,
    reduction,
    label_smoothing,
    return_grad,
    out,
    z_loss,
    softcap,
    return_lse,
    fn="cross_entropy",
):
    """cross_entropy's arguments checked (``CrossEntropy``); ``axis`` given
    (``default_class_axis`` chooses one)."""
    logits = float_input(logits, "logits", fn)
    ax = class_axis(axis, logits.ndim, fn)
    check_reduction(reduction, fn)
    ii = check_ignore_index(ignore_index, fn)
    eps = check_smoothing(label_smoothing, fn)
    z = check_z_loss(z_loss, fn)
    cap = check_softcap(softcap, logits.dtype, fn)
    n = logits.shape[ax]
    w = None if weight is None else check_weight(weight, n, fn)[0]
    if out is not None:
        if not return_grad:
            raise ValueError(f"{fn}: out is the gradient's buffer; it needs return_grad=True")
        check_grad_out(out, logits, fn)
    t = np.asarray(target)
    soft = t.dtype.kind == "f"
    den = 0.0
    if soft:
        if t.shape != logits.shape:
            raise ValueError(
                f"{fn}: floating target (class probabilities) must have the logits' "
                f"shape {logits.shape}, got {t.shape}; class indices must be integers"
            )
        if ii >= 0:
            raise ValueError(f"{fn}: ignore_index is not supported for probability targets")
    else:
        t = index_target(t, logits.shape, ax, fn)
        den = targets_den(t, n, ii, np.float64(1.0) if w is None else w, fn)
    if n == 0 and math.prod(logits.shape[:ax] + logits.shape[ax + 1 :]) > 0:
        raise ValueError(f"{fn}: logits have no classes along axis {axis}")
    return CrossEntropy(
        logits,
        t,
        soft,
        ax,
        w,
        ii,
        reduction,
        eps,
        z,
        cap,
        out,
        bool(return_grad),
        bool(return_lse),
        den,
    )
