"""Partial reductions as arrays: pairs, weighted triples, their merge and finish.

Outside the kernels a partial log-sum-exp travels as arrays of the kernels'
algebra (see STYLE.md and ``kernels.rows``):

* a pair ``(m, t)``: ``sum exp(x) == exp(m) * (1 + t)``, merged by
  ``kernels.rows.merge`` and finished by ``kernels.rows.finish`` (``m + log1p(t)``);
* a weighted triple ``(m, w, s)``: ``sum b * exp(a) == exp(m) * (w + s)``,
  ``m`` the max of ``a`` where ``b != 0``, ``w`` the summed weight of the
  elements at the max (kept exactly, so weights that cancel at the max
  cancel exactly) and ``s`` the weighted sum of ``exp(a - m)`` over the rest.
  Special triples: ``(-inf, 0, 0)`` is the empty sum, ``(+inf, +-1, 0)`` an
  infinite sum of that sign, and nan (also for ``+inf`` terms of both signs)
  propagates.

The dask path (chunk, combine, aggregate), :class:`fastlse.OnlineLogSumExp`
and any NumPy-level merge use these functions, so each formula lives once:
the scalar ``merge`` / ``finish`` / ``merge_triple`` / ``finish_triple``,
applied elementwise by small loops.  Everything here is float64.
"""

import math

import numpy as np
from numba import prange

from .kernels.compile import jit
from .kernels.drivers import kernel
from .kernels.rows import finish, finish_triple, merge, merge_triple, row_triple

__all__ = [
    "finish_pairs",
    "finish_triples",
    "fold_pairs",
    "fold_triples",
    "lse_sign",
    "lse_triples",
    "merge_pairs",
    "merge_triples",
    "pairs_to_triples",
]

_NAN = np.nan
_INF = np.inf
_NINF = -np.inf


# ----------------------------------------------------------------------------
# elementwise loops
# ----------------------------------------------------------------------------
@jit
def _merge_pairs_flat(m1, t1, m2, t2, mo, to):
    for i in range(m1.size):
        mo[i], to[i] = merge(m1[i], t1[i], m2[i], t2[i])


@jit
def _fold_pairs_rows(m, t, mo, to):
    for i in range(m.shape[0]):
        mi, ti = _NINF, 0.0
        for j in range(m.shape[1]):
            mi, ti = merge(mi, ti, m[i, j], t[i, j])
        mo[i], to[i] = mi, ti


@jit
def _finish_pairs_flat(m, t, out):
    for i in range(m.size):
        out[i] = finish(m[i], t[i])


@jit
def _merge_triples_flat(m1, w1, s1, m2, w2, s2, mo, wo, so):
    for i in range(m1.size):
        mo[i], wo[i], so[i] = merge_triple(m1[i], w1[i], s1[i], m2[i], w2[i], s2[i])


@jit
def _fold_triples_rows(m, w, s, mo, wo, so):
    for i in range(m.shape[0]):
        mi, wi, si = _NINF, 0.0, 0.0
        for j in range(m.shape[1]):
            mi, wi, si = merge_triple(mi, wi, si, m[i, j], w[i, j], s[i, j])
        mo[i], wo[i], so[i] = mi, wi, si


@jit
def _finish_triples_flat(m, w, s, out, sgn):
    for i in range(m.size):
        out[i], sgn[i] = finish_triple(m[i], w[i], s[i])


@kernel
def _triple_rows(a, b, mo, wo, so):
    n = a.shape[1]
    for i in prange(a.shape[0]):
        mo[i], wo[i], so[i] = row_triple(a[i], b[i], 0, n)


# ----------------------------------------------------------------------------
# array functions
# ----------------------------------------------------------------------------
def _flat(*arrays):
    """Broadcast to one shape; C-contiguous float64 1-D views and the shape."""
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in arrays))
    shape = arrays[0].shape
    return [np.ascontiguousarray(x).reshape(-1) for x in arrays], shape


def _rows(x, axes):
    """x (float64) with ``axes`` moved last, as a C-contiguous (K, N) array."""
    kept = [i for i in range(x.ndim) if i not in axes]
    n = math.prod(x.shape[i] for i in axes)
    k = math.prod(x.shape[i] for i in kept)
    x = np.transpose(np.asarray(x, dtype=np.float64), kept + list(axes))
    return np.ascontiguousarray(x).reshape(k, n)


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def merge_pairs(m1, t1, m2, t2):
    """Elementwise merge of two pair arrays (broadcast); float64 ``(m, t)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse._pairs import finish_pairs, merge_pairs
    >>> m, t = merge_pairs(np.array([0.0]), np.array([0.0]), np.array([0.0]), np.array([0.0]))
    >>> finish_pairs(m, t)  # log(e**0 + e**0)
    array([0.69314718])
    """
    (m1, t1, m2, t2), shape = _flat(m1, t1, m2, t2)
    mo = np.empty_like(m1)
    to = np.empty_like(m1)
    _merge_pairs_flat(m1, t1, m2, t2, mo, to)
    return mo.reshape(shape), to.reshape(shape)


def fold_pairs(m, t, axes):
    """Merge the pairs along ``axes`` (a tuple of ints); keepdims shape."""
    m = np.asarray(m, dtype=np.float64)
    shape = _keepdims_shape(m.shape, axes)
    m2, t2 = _rows(m, axes), _rows(t, axes)
    mo = np.empty(m2.shape[0])
    to = np.empty(m2.shape[0])
    _fold_pairs_rows(m2, t2, mo, to)
    return mo.reshape(shape), to.reshape(shape)


def finish_pairs(m, t):
    """``m + log1p(t)`` elementwise (float64 array, special pairs handled)."""
    (m, t), shape = _flat(m, t)
    out = np.empty_like(m)
    _finish_pairs_flat(m, t, out)
    return out.reshape(shape)


def lse_sign(res):
    """The sign of an unweighted sum from its log: +1, 0 for -inf (the empty
    sum), nan for nan; in res's dtype.  (Not ``sign(exp(res))``: exp
    underflows to 0 for finite results below log(tiny) of the dtype.)"""
    res = np.asarray(res)
    sgn = np.where(res == _NINF, 0.0, 1.0).astype(res.dtype)
    sgn[np.isnan(res)] = _NAN
    return sgn


def pairs_to_triples(m, t):
    """The triples ``(m, w, s)`` of unweighted pairs (``w = 1``, 0 if empty)."""
    m = np.asarray(m, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    w = np.where(m == _NINF, 0.0, 1.0)
    w[np.isnan(m)] = _NAN
    return m.copy(), w, np.where(m == _NINF, 0.0, t)


def merge_triples(m1, w1, s1, m2, w2, s2):
    """Elementwise merge of two triple arrays (broadcast); float64 ``(m, w, s)``."""
    flat, shape = _flat(m1, w1, s1, m2, w2, s2)
    outs = [np.empty_like(flat[0]) for _ in range(3)]
    _merge_triples_flat(*flat, *outs)
    return tuple(o.reshape(shape) for o in outs)


def fold_triples(m, w, s, axes):
    """Merge the triples along ``axes`` (a tuple of ints); keepdims shape."""
    m = np.asarray(m, dtype=np.float64)
    shape = _keepdims_shape(m.shape, axes)
    rows = [_rows(x, axes) for x in (m, w, s)]
    outs = [np.empty(rows[0].shape[0]) for _ in range(3)]
    _fold_triples_rows(*rows, *outs)
    return tuple(o.reshape(shape) for o in outs)


def finish_triples(m, w, s):
    """``(log|sum|, sign)`` of triples, elementwise float64 arrays."""
    (m, w, s), shape = _flat(m, w, s)
    out = np.empty_like(m)
    sgn = np.empty_like(m)
    _finish_triples_flat(m, w, s, out, sgn)
    return out.reshape(shape), sgn.reshape(shape)


def lse_triples(a, b, axes, dtype=np.float64):
    """Partial triples ``(m, w, s)`` of ``sum b * exp(a)`` over ``axes``.

    ``a`` and ``b`` are broadcast together; ``a`` is read in ``dtype`` (the
    kernel dtype, float32 or float64), ``b`` in float64.  Results are float64
    arrays of the keepdims shape.  Runs on fastlse's threads (a serial kernel
    under ``fastlse.num_threads(1)``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse._pairs import finish_triples, lse_triples
    >>> m, w, s = lse_triples(np.array([0.0, 0.0, -40.0]), np.array([1.0, -1.0, 1.0]), (0,))
    >>> float(m[0]), float(w[0])  # the weights at 0 cancel exactly: the rest's triple
    (-40.0, 1.0)
    >>> float(finish_triples(m, w, s)[0][0])
    -40.0
    """
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    shape = _keepdims_shape(a.shape, axes)
    kept = [i for i in range(a.ndim) if i not in axes]
    n = math.prod(a.shape[i] for i in axes)
    k = math.prod(a.shape[i] for i in kept)
    perm = kept + list(axes)
    x = np.ascontiguousarray(np.transpose(a, perm), dtype=dtype).reshape(k, n)
    y = np.ascontiguousarray(np.transpose(b, perm), dtype=np.float64).reshape(k, n)
    mo, wo, so = np.empty(k), np.empty(k), np.empty(k)
    _triple_rows(x.size, x, y, mo, wo, so)
    return mo.reshape(shape), wo.reshape(shape), so.reshape(shape)
