"""OnlineLogSumExp: log-sum-exp of data that arrives in pieces.

The state is the pair ``(m, t)`` of the kernels' algebra per output element
(the triple ``(m, w, s)`` once weights are used, see ``_pairs``): each chunk
goes through fastlse's kernel once and its pairs are merged in, so memory is
O(result size) however many chunks go through, and the result equals
``logsumexp`` of the concatenated data whatever the chunking.
"""

from typing import Any

import numpy as np

from . import _ops
from ._layout import compute_dtype, lse_dtype, normalize_axes
from ._pairs import (
    finish_pairs,
    finish_triples,
    lse_sign,
    lse_triples,
    merge_pairs,
    merge_triples,
    pairs_to_triples,
)
from ._typing import ArrayLike, Axis

__all__ = ["OnlineLogSumExp"]


class OnlineLogSumExp:
    """Accumulate ``logsumexp`` over chunks of data, one chunk at a time.

    For data that does not fit in memory or arrives as a stream (a
    generator, a ``np.memmap`` read chunk by chunk, pieces computed in other
    processes): :meth:`update` folds a chunk in, :meth:`merge` combines two
    accumulators, :meth:`result` returns the log-sum-exp of everything seen.

    Parameters
    ----------
    axis : None or int or tuple of ints, optional
        The reduced axes. Chunks are pieces of the data along these axes:
        their sizes along them may differ from chunk to chunk, the other
        dimensions must be the same. None (default) reduces every element of
        every chunk to a scalar (chunks of any shape).
    keepdims : bool, optional
        If True, :meth:`result` keeps the reduced axes with size one.

    Notes
    -----
    The state is one float64 pair ``(m, t)`` per output element with
    ``sum exp(x) == exp(m) * (1 + t)``, merged the same way as between the
    threads of the kernels; with weights a triple ``(m, w, s)`` with
    ``sum b * exp(x) == exp(m) * (w + s)``.  The result is the log-sum-exp of
    the concatenation of all chunks, to the accuracy of
    :func:`fastlse.logsumexp`, with its dtype rules (applied to all chunks
    seen) and special values.  Accumulators pickle (state and settings only).

    :meth:`update` and :meth:`merge` change the accumulator in place and
    return it.  The kernels use fastlse's threads (see
    :func:`fastlse.num_threads`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import OnlineLogSumExp, logsumexp
    >>> x = np.random.default_rng(0).standard_normal((4, 1000))
    >>> acc = OnlineLogSumExp(axis=1)
    >>> for lo in range(0, 1000, 300):  # chunks of 300, 300, 300, 100 columns
    ...     _ = acc.update(x[:, lo:lo + 300])
    >>> bool(np.allclose(acc.result(), logsumexp(x, axis=1)))
    True

    Two accumulators (e.g. from two processes) merge; weights may be
    negative and the sign is available:

    >>> a = OnlineLogSumExp().update([1.0, 2.0], b=[1.0, -1.0])
    >>> b = OnlineLogSumExp().update([0.5])
    >>> a.merge(b).result(return_sign=True)
    (np.float64(1.10593640168), np.float64(-1.0))
    """

    def __init__(self, axis: Axis = None, keepdims: bool = False) -> None:
        if axis is not None:
            normalize_axes(axis, 64, "OnlineLogSumExp")  # type checks only; ndim is known at update
        self.axis = axis
        self.keepdims = bool(keepdims)
        self._axes = None  # normalized axes, set by the first chunk
        self._ndim = None
        self._kept = None  # the kept dimensions' sizes
        self._dtype = None  # the result's dtype, promoted over chunks
        self._state = None  # (m, t) or (m, w, s), float64, keepdims shape

    # ------------------------------------------------------------------ state
    @property
    def weighted(self):
        """True once a weighted chunk (or accumulator) went in."""
        return self._state is not None and len(self._state) == 3

    @property
    def empty(self):
        """True while nothing went in."""
        return self._state is None

    def __repr__(self):
        shape = None if self._state is None else self._state[0].shape
        return (
            f"OnlineLogSumExp(axis={self.axis!r}, keepdims={self.keepdims}) "
            f"[state shape {shape}, dtype {self._dtype}, weighted={self.weighted}]"
        )

    def _bind(self, shape):
        """Normalize the axes for data of this shape; check the kept sizes."""
        nd = len(shape)
        if self.axis is None:
            axes = tuple(range(nd))
            if self._ndim is None:
                self._ndim = nd
            return axes
        if self._axes is None:
            self._axes = normalize_axes(self.axis, nd, "OnlineLogSumExp.update")
            self._ndim = nd
            self._kept = tuple(s for i, s in enumerate(shape) if i not in self._axes)
        elif nd != self._ndim:
            raise ValueError(
                f"OnlineLogSumExp: chunks have {self._ndim} dimensions, got one with {nd}"
            )
        kept = tuple(s for i, s in enumerate(shape) if i not in self._axes)
        if kept != self._kept:
            raise ValueError(
                f"OnlineLogSumExp: a chunk of shape {shape} does not match the others: "
                f"the dimensions not in axis={self.axis!r} must be {self._kept}, got {kept}"
            )
        return self._axes

    def _fold(self, state, dtype):
        """Merge a chunk's state (keepdims shape for this chunk) into ours."""
        if self.axis is None:  # any ndim: the state is a scalar pair
            state = tuple(np.reshape(x, ()) for x in state)
        self._dtype = dtype if self._dtype is None else np.promote_types(self._dtype, dtype)
        if self._state is None:
            self._state = tuple(np.array(x, dtype=np.float64) for x in state)
            return self
        mine = self._state
        if len(state) == 3 or len(mine) == 3:
            if len(state) == 2:
                state = pairs_to_triples(*state)
            if len(mine) == 2:
                mine = pairs_to_triples(*mine)
            self._state = merge_triples(*mine, *state)
        else:
            self._state = merge_pairs(*mine, *state)
        return self

    # ---------------------------------------------------------------- public
    def update(self, chunk: ArrayLike, b: ArrayLike | None = None) -> "OnlineLogSumExp":
        """Fold a chunk of data (and optional weights) into the accumulator.

        Parameters
        ----------
        chunk : array_like
            A piece of the data along the reduced axes (real dtype).
        b : array_like, optional
            Weights for ``exp(chunk)``, broadcast against it, as in
            :func:`fastlse.logsumexp`; zeros hide inf and nan, negative
            weights are allowed.

        Returns
        -------
        self : OnlineLogSumExp
        """
        a = np.asarray(chunk)
        dt = lse_dtype(a, b)
        if dt.kind == "c":
            raise TypeError("OnlineLogSumExp: complex data is not supported")
        if b is None:
            if a.ndim == 0:
                a = a.reshape(1)
            axes = self._bind(a.shape)
            return self._fold(_ops.lse_pairs(a, axes), dt)
        b = np.asarray(b)
        if b.dtype.kind not in "biuf":
            raise TypeError(f"OnlineLogSumExp: b must be real numeric, got dtype {b.dtype}")
        try:
            a, b = np.broadcast_arrays(a, b)
        except ValueError:
            raise ValueError(
                f"OnlineLogSumExp: b with shape {b.shape} does not broadcast to the "
                f"chunk's shape {a.shape}"
            ) from None
        if a.ndim == 0:
            a, b = a.reshape(1), b.reshape(1)
        axes = self._bind(a.shape)
        return self._fold(lse_triples(a, b, axes, compute_dtype(dt)), dt)

    def merge(self, other: "OnlineLogSumExp") -> "OnlineLogSumExp":
        """Fold another accumulator (same `axis`, same kept shape) into this one.

        The merge is associative and commutative (up to rounding), so partial
        accumulators from several workers can be combined in any order.

        Returns
        -------
        self : OnlineLogSumExp
        """
        if not isinstance(other, OnlineLogSumExp):
            raise TypeError(f"merge: expected an OnlineLogSumExp, got {type(other).__name__}")
        if other.axis != self.axis and not (
            other._axes is not None and self._axes is not None and other._axes == self._axes
        ):
            raise ValueError(f"merge: axis {other.axis!r} differs from {self.axis!r}")
        if other._state is None:
            return self
        if self.axis is not None:
            if self._axes is None:
                self._axes, self._ndim, self._kept = other._axes, other._ndim, other._kept
            elif (other._ndim, other._kept) != (self._ndim, self._kept):
                raise ValueError(
                    f"merge: the kept dimensions differ: {other._kept} (ndim {other._ndim}) "
                    f"vs {self._kept} (ndim {self._ndim})"
                )
        elif self._ndim is None:
            self._ndim = other._ndim
        return self._fold(other._state, other._dtype)

    def result(self, return_sign: bool = False) -> Any:
        """The log-sum-exp of every chunk seen so far.

        Parameters
        ----------
        return_sign : bool, optional
            If True, return ``(res, sgn)`` as :func:`fastlse.logsumexp`
            does; otherwise a negative weighted sum gives nan.

        Returns
        -------
        res : ndarray or scalar
            In the result dtype of :func:`fastlse.logsumexp` for the chunks
            seen (a numpy scalar for a 0-d result).  With no chunk yet,
            ``-inf`` for ``axis=None``; otherwise a ValueError (the shape is
            not known).
        sgn : ndarray or scalar
            Only if `return_sign` is True.
        """
        if self._state is None:
            if self.axis is not None:
                raise ValueError("OnlineLogSumExp.result: no chunk yet, the shape is unknown")
            state = (np.array(-np.inf), np.array(0.0))
            dt = np.dtype(np.float64)
        else:
            state, dt = self._state, self._dtype
        if len(state) == 2:
            out = finish_pairs(*state)
            sgn = lse_sign(out)
        else:
            out, sgn = finish_triples(*state)
            if not return_sign:
                out[sgn < 0] = np.nan
        out, sgn = out.astype(dt), sgn.astype(dt)
        if self.axis is None:
            if self.keepdims:
                shape = (1,) * (self._ndim if self._ndim else 1)
                out, sgn = out.reshape(shape), sgn.reshape(shape)
        elif not self.keepdims:
            out, sgn = np.squeeze(out, axis=self._axes), np.squeeze(sgn, axis=self._axes)
        out = out[()] if out.ndim == 0 else out
        sgn = sgn[()] if sgn.ndim == 0 else sgn
        return (out, sgn) if return_sign else out
