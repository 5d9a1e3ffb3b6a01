"""The one place that turns (array, axis, keepdims) into kernel views and back.

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

__all__ = ["Plan", "normalize_axes"]

#: bytes of the buffer a strided or converted input is copied through, a block
#: of rows at a time (``Plan.row_blocks``); inputs up to twice this are copied
#: whole (fewer kernel calls)
COPY_BLOCK_BYTES = 1 << 22


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


def _rows_view(moved, m, n):
    """moved as an (m, n) view without a copy, or None (a reshape would copy)."""
    try:
        return np.reshape(moved, (m, n), copy=False)
    except (ValueError, TypeError):  # a copy is needed (or numpy < 2.1)
        return None


class Plan:
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
            r = r.reshape(tuple(1 if i in self.axes else s for i, s in enumerate(self.shape)))
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
