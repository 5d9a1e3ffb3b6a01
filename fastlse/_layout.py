"""The one place that turns (array, axis, keepdims) into kernel views and back.

Also the dtype rules (which dtype a result has, which one the kernels
compute in) and the axis normalization, so every public function, the dask
path and the online accumulator share them.

Kernels see either rows, a C-contiguous ``(M, N)`` view reduced along its
last axis, or columns, a C-contiguous ``(P, N, Q)`` view reduced along its
middle axis (read in memory order, no transposed copy).  F-contiguous arrays
are handled as their C-contiguous transpose.  Only arrays whose reduced axes
are not adjacent in memory (or that are not contiguous at all, or of another
dtype) are copied into a C-contiguous array with the reduced axes last: by
blocks of rows through one small buffer where the caller can (``row_blocks``),
else once, whole.

Nothing here knows about exp or the algebra of the reductions.
"""

import math

import numpy as np

try:  # numpy >= 2
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.numeric import normalize_axis_tuple

__all__ = [
    "FAST_DTYPES",
    "ClassLayout",
    "Layout",
    "as_rows",
    "class_axis",
    "compute_dtype",
    "fast_view",
    "lse_dtype",
    "normalize_axes",
    "softmax_dtype",
]

#: the dtypes the kernels compute in; arrays of these are never converted
FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = FAST_DTYPES

#: bytes of the buffer a strided or converted input is copied through, a block
#: of rows at a time (``Layout.row_blocks``); inputs up to twice this are copied
#: whole (fewer kernel calls)
COPY_BLOCK_BYTES = 1 << 22


def normalize_axes(axis, ndim, fn):
    """Sorted tuple of non-negative axes; numpy's errors for bad axes, named
    for the function ``fn``."""
    if axis is None:
        return tuple(range(ndim))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    for ax in items:
        if isinstance(ax, (bool, np.bool_)) or not isinstance(ax, (int, np.integer)):
            raise TypeError(
                f"{fn}: axis must be None, an integer or a tuple of integers, got {axis!r}"
            )
    try:
        axes = normalize_axis_tuple(tuple(int(i) for i in items), ndim, fn)
    except np.exceptions.AxisError:
        raise
    except ValueError:  # numpy's "repeated axis"
        raise ValueError(f"{fn}: repeated axis in axis={axis!r}") from None
    return tuple(sorted(axes))


def class_axis(axis, ndim, fn):
    """The one class axis of a loss, non-negative (numpy's errors)."""
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"{fn}: axis must be a single integer (the class axis), got {axis!r}")
    return normalize_axes(axis, ndim, fn)[0]


# ----------------------------------------------------------------------------
# dtype rules
# ----------------------------------------------------------------------------
def compute_dtype(dt):
    """The kernels' dtype for a real floating dtype: float32 and float64 are
    their own, narrower floats (float16) compute in float32, wider ones
    (longdouble) in float64."""
    dt = np.dtype(dt)
    if dt in FAST_DTYPES:
        return dt
    return np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)


def lse_dtype(a, b, fn="logsumexp"):
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
        raise TypeError(f"{fn}: unsupported dtype {dt} for a (or b)")
    return dt


def softmax_dtype(x, fn):
    """scipy computes exp(x - max(x)): ints follow np.exp (int8 -> float16, ...)."""
    dt = x.dtype
    if dt.kind == "b":
        return np.dtype(np.float64)  # scipy raises for bools; the answer is clear
    if dt.kind in "iu":
        return np.exp(np.zeros(0, dtype=dt)).dtype
    if dt.kind not in "fc":
        raise TypeError(f"{fn}: unsupported dtype {dt} for x")
    return dt


# ----------------------------------------------------------------------------
# views
# ----------------------------------------------------------------------------
def fast_view(x, axis):
    """The kernels' view of a C-contiguous float32 / float64 ndarray reduced
    along one axis (or all of it: ``axis=None``) without building a
    ``Layout``, and the kept shape; None for anything else.

    The view is the one ``Layout`` makes of such an array: ``(M, N)`` rows
    for the last axis, a vector or all of it, ``(P, N, Q)`` columns for
    another axis.  This is what small calls of the common shapes go through.
    """
    if type(x) is not np.ndarray:
        return None
    dt = x.dtype  # identity: the builtin descriptors (another byte order is not)
    if (dt is not _F64 and dt is not _F32) or not x.flags.c_contiguous:
        return None
    shape = x.shape
    nd, size = len(shape), x.size
    if nd == 0 or size == 0:
        return None
    if axis is None or (nd == 1 and type(axis) is int and (axis == -1 or axis == 0)):
        return (x[None] if nd == 1 else x.reshape(1, size)), ()
    if type(axis) is not int or not -nd <= axis < nd:
        return None
    if nd == 2 and (axis == -1 or axis == 1):
        return x, shape[:1]  # already the (M, N) rows
    ax = axis % nd
    n, q = shape[ax], math.prod(shape[ax + 1 :])
    kept = shape[:ax] + shape[ax + 1 :]
    if q == 1:
        return x.reshape(size // n, n), kept
    return x.reshape(size // (n * q), n, q), kept


def as_rows(arr, axes, dtype):
    """(M, N) C-contiguous arrangement with the reduced axes last (a view when
    the data already is laid out so), the permutation used and the moved
    shape: the layout of the masked and weighted kernels, which read two
    arrays of the same shape."""
    nd = arr.ndim
    perm = [i for i in range(nd) if i not in axes] + list(axes)
    n = math.prod(arr.shape[i] for i in axes)
    moved = np.transpose(arr, perm)
    m = math.prod(moved.shape[: nd - len(axes)])
    return np.ascontiguousarray(moved, dtype=dtype).reshape(m, n), perm, moved.shape


def keepdims_shape(shape, axes):
    """``shape`` with the reduced ``axes`` kept as ones."""
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _rows_view(moved, m, n):
    """moved as an (m, n) view without a copy, or None (a reshape would copy)."""
    try:
        return np.reshape(moved, (m, n), copy=False)
    except (ValueError, TypeError):  # a copy is needed (or numpy < 2.1)
        return None


class Layout:
    """How to run a reduction of ``a`` over ``axes`` with the kernels.

    Attributes
    ----------
    kind : {"rows", "cols"}
        ``view`` is (M, N) for rows, (P, N, Q) for cols.
    view : ndarray
        C-contiguous view (or one copy) of the data in kernel layout.
    deferred : bool
        The copy is not made yet: ``row_blocks`` makes it a block of rows
        at a time.
    """

    def __init__(self, a, axes, dtype=None):
        nd = a.ndim
        self.shape = a.shape
        self.axes = axes
        self.n = math.prod(a.shape[i] for i in axes)
        dt = a.dtype if dtype is None else np.dtype(dtype)
        self.dtype = dt
        x, ax, self.transposed = None, axes, False
        if a.dtype == dt and a.flags.c_contiguous:
            x = a
        elif a.dtype == dt and a.flags.f_contiguous:
            x, ax, self.transposed = a.T, tuple(sorted(nd - 1 - i for i in axes)), True
        self.copied = x is None or (len(ax) > 0 and ax[-1] - ax[0] + 1 != len(ax))
        #: the (M, N) rows still to be copied (strided, or of another dtype),
        #: when they are a view of ``a``: see ``row_blocks``
        self.src = None
        if self.copied:
            self.transposed = False
            kept = [i for i in range(nd) if i not in axes]
            moved = np.transpose(a, kept + list(axes))
            ax = tuple(range(len(kept), nd))
            self.perm = kept + list(axes)
            if a.size * dt.itemsize > 2 * COPY_BLOCK_BYTES:  # else a whole copy is cheaper
                self.src = _rows_view(moved, math.prod(moved.shape[: len(kept)]), self.n)
            x = np.ascontiguousarray(moved, dtype=dt) if self.src is None else None
            xshape = moved.shape
        else:
            xshape = x.shape
        self.x = x
        self._xshape = xshape
        if len(ax) == 0:
            p_, q_ = math.prod(xshape), 1
        else:
            p_ = math.prod(xshape[: ax[0]])
            q_ = math.prod(xshape[ax[-1] + 1 :])
        self.p, self.q = p_, q_
        self.kind = "rows" if q_ == 1 else "cols"
        self._view = None
        if x is not None:
            self._view = x.reshape(p_, self.n) if q_ == 1 else x.reshape(p_, self.n, q_)
        self._xkept = tuple(s for i, s in enumerate(xshape) if i not in ax)

    @property
    def view(self):
        """The kernels' view: ``(M, N)`` rows or ``(P, N, Q)`` columns,
        C-contiguous (a deferred copy is made here, whole)."""
        if self._view is None:
            self.x = np.ascontiguousarray(self.src, dtype=self.dtype)
            self._view = self.x
        return self._view

    @property
    def view_shape(self):
        """The shape of ``view`` (without making a deferred copy)."""
        return (self.p, self.n) if self.kind == "rows" else (self.p, self.n, self.q)

    @property
    def deferred(self):
        """True when the rows are still to be copied: ``row_blocks`` copies
        them a block at a time instead of ``view`` at once."""
        return self._view is None

    def row_blocks(self, min_rows, nbytes=None, copy=None):
        """``(r0, r1, rows)``: the view's rows r0..r1 copied into one
        C-contiguous buffer of about ``nbytes`` (default ``COPY_BLOCK_BYTES``;
        at least ``min_rows`` rows),
        reused from block to block, so a strided or converted input is never
        copied whole (and each block is read from cache by the kernel).
        ``copy(dst, src)`` copies a block of the same dtype (numpy's
        ``copyto`` otherwise, and for conversions)."""
        nbytes = COPY_BLOCK_BYTES if nbytes is None else nbytes
        rows = max(min_rows, nbytes // max(1, self.n * self.dtype.itemsize), 1)
        buf = np.empty((min(rows, self.p), self.n), dtype=self.dtype)
        for r0 in range(0, self.p, rows):
            r1 = min(self.p, r0 + rows)
            blk = buf[: r1 - r0]
            if copy is not None and self.src.dtype == self.dtype:
                copy(blk, self.src[r0:r1])
            else:
                np.copyto(blk, self.src[r0:r1], casting="unsafe")
            yield r0, r1, blk

    # ------------------------------------------------------------ results --
    def reduced(self, res, keepdims):
        """Kernel result ((M,) or (P, Q)) -> reduced array in a's axis order."""
        r = res.reshape(self._xkept)
        if self.transposed:
            r = r.T
        if keepdims:
            r = r.reshape(keepdims_shape(self.shape, self.axes))
        return r

    def empty_like_view(self, dtype):
        """Output buffer in kernel layout, and the same memory in a's layout."""
        buf = np.empty(self._xshape, dtype=dtype)
        return buf.reshape(self.view_shape), self.to_input_layout(buf)

    def to_input_layout(self, buf):
        """Array laid out like ``self.x`` -> the same data indexed like ``a``."""
        if self.transposed:
            return buf.T
        if self.copied:
            return np.transpose(buf, np.argsort(self.perm))
        return buf

    def out_view(self, out):
        """A kernel-layout view of a user's ``out`` if one exists, else None."""
        if out.dtype != self.dtype or self.copied:
            return None
        o = out.T if self.transposed else out
        if not o.flags.c_contiguous:
            return None
        return o.reshape(self.view_shape)


class ClassLayout:
    """Kernel view of logits with class axis ``axis``: rows (M, C) or cols (P, C, Q).

    Unlike ``Layout``, a copy keeps the axes in their order (the class axis
    stays where it is: the column kernels read it in place), and is made
    whole.  ``transposed``: the view is of the (C-contiguous) transpose of an
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

    @classmethod
    def of_rows(cls, x):
        """The layout of C-contiguous (M, C) logits of a kernel dtype (what
        ``__init__`` gives them, without its tests: for small calls)."""
        lay = cls.__new__(cls)
        lay.shape = x.shape
        lay.x = lay.view = x
        lay.transposed, lay.axis, lay.q, lay.rows = False, 1, 1, True
        lay.p, lay.n = x.shape
        return lay

    def like_x(self, a, dtype):
        """An array of the logits' shape in kernel layout (a contiguous copy if needed)."""
        a = a.T if self.transposed else a
        a = np.ascontiguousarray(a, dtype=dtype)
        return a.reshape(self.view.shape)

    def like_target(self, t):
        """Class indices (the logits' shape without the class axis) in kernel layout."""
        t = t.T if self.transposed else t
        t = np.ascontiguousarray(t)
        return t.reshape((self.p,) if self.rows else (self.p, self.q))

    def loss_shape(self, loss):
        """Per-row losses (kernel layout) -> the targets' shape."""
        kshape = self.x.shape[: self.axis] + self.x.shape[self.axis + 1 :]
        r = loss.reshape(kshape)
        return r.T if self.transposed else r

    def grad_buffers(self, out, others):
        """(kernel-layout buffer, result array, copy needed afterwards): the
        user's ``out`` itself where the kernels can write it (it may be the
        logits themselves, read and written row by row in place), else a new
        array."""
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
