"""Limit proxies: how fast memory alone allows an op to be on each dataset.

``time_row_sum`` reads every element once and writes one value per reduced row
(what logsumexp must at least do); ``time_row_copy`` reads every element and writes
it into a freshly allocated array (what softmax / log_softmax must at least do,
allocation included, as they allocate their result).  Both are parallel numba
kernels on numba's threads, split like fastlse's drivers: threads over rows, or
over pieces of rows when there are few rows; the middle-axis dataset is summed
along axis 1 in memory order, and narrow rows are read as one flat row (so the
proxy measures memory, not a loop per ten elements).  Their inner loops
vectorize (slices from index 0, see ``row_copy``).  Compare fastlse to them
within one run.

``MaskedLimitProxies.time_row_sum_where`` is the ``where=`` ops' bound on the
masked datasets: it reads every element and its mask byte once and writes one
value per row.
"""

import numba
import numpy as np
from numba import njit, prange

from . import common
from .common import CASES, DTYPES


@njit(parallel=True, fastmath=True, cache=True)
def row_sum(x, piece, partial):
    """partial[i, k] = sum of x[i, k*piece : (k+1)*piece]."""
    n = x.shape[1]
    npc = partial.shape[1]
    for k in prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        xs = x[i, lo : min(n, lo + piece)]  # a slice from 0: see row_copy
        s = x.dtype.type(0)
        for j in range(xs.shape[0]):
            s += xs[j]
        partial[i, k % npc] = s


@njit(parallel=True, fastmath=True, cache=True)
def row_sum_where(x, m, piece, partial):
    """partial[i, k] = sum of x[i, j] over j in piece k where m[i, j]."""
    npc = partial.shape[1]
    for k in prange(x.shape[0] * npc):
        i, lo = k // npc, (k % npc) * piece
        hi = min(x.shape[1], lo + piece)
        xs, ms = x[i, lo:hi], m[i, lo:hi]
        s = x.dtype.type(0)
        for j in range(xs.shape[0]):
            s += xs[j] if ms[j] else 0
        partial[i, k % npc] = s


@njit(parallel=True, fastmath=True, cache=True)
def mid_sum(x, out):
    """out[p, q] = sum over j of x[p, j, q], reading x in memory order."""
    for p in prange(x.shape[0]):
        for q in range(x.shape[2]):
            out[p, q] = 0
        for j in range(x.shape[1]):
            for q in range(x.shape[2]):
                out[p, q] += x[p, j, q]


@njit(parallel=True, cache=True)
def row_copy(x, piece, out):
    n = x.shape[1]
    npc = (n + piece - 1) // piece
    for k in prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        # loops over slices from index 0: with x[i, j] for j from a variable
        # lo, LLVM cannot prove j >= 0 (numba wraps negative indices) and the
        # loop stays scalar, which made these proxies 2-4x slower than memory
        xs, os = x[i, lo:hi], out[i, lo:hi]
        for j in range(xs.shape[0]):
            os[j] = xs[j]


def split(rows, n):
    """Piece length: whole rows when there are enough rows to keep threads busy."""
    tasks = 4 * numba.get_num_threads()
    if rows >= tasks:
        return n
    pieces_per_row = -(-tasks // rows)
    return max(1, -(-n // pieces_per_row))


def sum_proxy(x, axis):
    """One read: a sum along ``axis`` (the last, or the middle of three)."""
    if x.ndim == 3 and axis % 3 == 1:
        out = np.empty((x.shape[0], x.shape[2]), dtype=x.dtype)
        mid_sum(x, out)
        return out
    x2 = _rows(x)
    piece = split(*x2.shape)
    partial = np.empty((x2.shape[0], -(-x2.shape[1] // piece)), dtype=x.dtype)
    row_sum(x2, piece, partial)
    return partial[:, 0] if partial.shape[1] == 1 else partial.sum(axis=1)


#: rows narrower than this are read as one flat row: a loop per row of ten
#: elements measures loop overhead, not memory
NARROW = 64


def _rows(x):
    """x as 2-d rows along its last axis, or as one flat row if they are narrow."""
    return x.reshape(1, -1) if x.shape[-1] < NARROW else x.reshape(-1, x.shape[-1])


def sum_where_proxy(x, m):
    """One read of ``x`` and of its mask: a masked sum along the last axis."""
    piece = split(*x.shape)
    partial = np.empty((x.shape[0], -(-x.shape[1] // piece)), dtype=x.dtype)
    row_sum_where(x, m, piece, partial)
    return partial.sum(axis=1)


def copy_proxy(x):
    """One read and one write into a new array."""
    x2 = _rows(x)
    out = np.empty_like(x2)
    row_copy(x2, split(*x2.shape), out)
    return out.reshape(x.shape)


class LimitProxies:
    """Memory-limit proxies over the same datasets as the ops."""

    params = (list(CASES), DTYPES)
    param_names = ("shape", "dtype")
    timeout = 300

    def setup(self, shape, dtype):
        self.x, self.axis = common.dataset(shape, dtype)
        sum_proxy(self.x, self.axis)  # compile (or load from cache) outside the timing
        copy_proxy(self.x)

    def time_row_sum(self, shape, dtype):
        sum_proxy(self.x, self.axis)

    def time_row_copy(self, shape, dtype):
        copy_proxy(self.x)


class MaskedLimitProxies:
    """The memory-limit proxy of the ``where=`` benchmarks, on their datasets and mask."""

    params = (common.MASK_CASES, DTYPES)
    param_names = ("shape", "dtype")
    timeout = 300

    def setup(self, shape, dtype):
        self.x, _ = common.dataset(shape, dtype)
        self.m = common.mask(shape)
        sum_where_proxy(self.x, self.m)  # compile (or load from cache) outside the timing

    def time_row_sum_where(self, shape, dtype):
        sum_where_proxy(self.x, self.m)
