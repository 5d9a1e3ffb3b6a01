"""The one place that turns (array, axis, keepdims) into kernel views and back.

Kernels see either rows, a C-contiguous ``(M, N)`` view reduced along its
last axis, or columns, a C-contiguous ``(P, N, Q)`` view reduced along its
middle axis (read in memory order, no transposed copy).  F-contiguous arrays
are handled as their C-contiguous transpose.  Only arrays whose reduced axes
are not adjacent in memory (or that are not contiguous at all) are copied
once into a C-contiguous array with the reduced axes last.

Nothing here knows about exp or the algebra of the reductions.
"""

import math

import numpy as np

try:  # numpy >= 2
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.numeric import normalize_axis_tuple

__all__ = ["Plan", "normalize_axes"]


def normalize_axes(axis, ndim, argname="axis"):
    """Sorted tuple of non-negative axes; numpy's own errors for bad axes."""
    if axis is None:
        return tuple(range(ndim))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    for ax in items:
        if isinstance(ax, (bool, np.bool_)) or not isinstance(ax, (int, np.integer)):
            raise TypeError(
                f"{argname} must be None, an integer or a tuple of integers, got {axis!r}"
            )
    return tuple(sorted(normalize_axis_tuple(tuple(int(i) for i in items), ndim, argname)))


class Plan:
    """How to run a reduction of ``a`` over ``axes`` with the kernels.

    Attributes
    ----------
    kind : {"rows", "cols"}
        ``view`` is (M, N) for rows, (P, N, Q) for cols.
    view : ndarray
        C-contiguous view (or one copy) of the data in kernel layout.
    """

    def __init__(self, a, axes, dtype=None):
        nd = a.ndim
        self.shape = a.shape
        self.axes = axes
        self.n = math.prod(a.shape[i] for i in axes)
        dt = a.dtype if dtype is None else np.dtype(dtype)
        x, ax, self.transposed = None, axes, False
        if a.dtype == dt and a.flags.c_contiguous:
            x = a
        elif a.dtype == dt and a.flags.f_contiguous:
            x, ax, self.transposed = a.T, tuple(sorted(nd - 1 - i for i in axes)), True
        self.copied = x is None or (len(ax) > 0 and ax[-1] - ax[0] + 1 != len(ax))
        if self.copied:
            self.transposed = False
            kept = [i for i in range(nd) if i not in axes]
            moved = np.transpose(a, kept + list(axes))
            x = np.ascontiguousarray(moved, dtype=dt)
            ax = tuple(range(len(kept), nd))
            self.perm = kept + list(axes)
        self.x = x
        if len(ax) == 0:
            p_, q_ = math.prod(x.shape), 1
        else:
            p_ = math.prod(x.shape[: ax[0]])
            q_ = math.prod(x.shape[ax[-1] + 1 :])
        self.p, self.q = p_, q_
        if q_ == 1:
            self.kind = "rows"
            self.view = x.reshape(p_, self.n)
        else:
            self.kind = "cols"
            self.view = x.reshape(p_, self.n, q_)
        self._xkept = tuple(s for i, s in enumerate(x.shape) if i not in ax)

    # ------------------------------------------------------------ results --
    def reduced(self, res, keepdims):
        """Kernel result ((M,) or (P, Q)) -> reduced array in a's axis order."""
        r = res.reshape(self._xkept)
        if self.transposed:
            r = r.T
        if keepdims:
            r = r.reshape(tuple(1 if i in self.axes else s for i, s in enumerate(self.shape)))
        return r

    def empty_like_view(self, dtype):
        """Output buffer in kernel layout, and the same memory in a's layout."""
        buf = np.empty(self.x.shape, dtype=dtype)
        return buf.reshape(self.view.shape), self.to_input_layout(buf)

    def to_input_layout(self, buf):
        """Array laid out like ``self.x`` -> the same data indexed like ``a``."""
        if self.transposed:
            return buf.T
        if self.copied:
            return np.transpose(buf, np.argsort(self.perm))
        return buf

    def out_view(self, out):
        """A kernel-layout view of a user's ``out`` if one exists, else None."""
        if out.dtype != self.x.dtype or self.copied:
            return None
        o = out.T if self.transposed else out
        if not o.flags.c_contiguous:
            return None
        return o.reshape(self.view.shape)
