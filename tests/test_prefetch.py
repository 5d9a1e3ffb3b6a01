"""Narrow rows of large arrays: the kernels that ask for their next block's
rows ahead (``prefetch_ahead``) give the bits of the same rows in arrays too
small to ask, and scipy's / torch's values.

The route tests' arrays are all under ``PREFETCH_MIN``; these are just over
it, with rows of at least ``PREFETCH_BYTES``, for the narrow block kernels
(softmax, log_softmax; logsumexp of float64 rows of 13-31), the
transposed ones (logsumexp of float32, cross-entropy) and the column
sweeps of a middle axis, on the threads and serially.  A prefetch is a
hint: if it changed anything, it would be a value.
"""

import numpy as np
import pytest
import scipy.special as sc
import torch

import fastlse
from fastlse._routes import threads as pool_size
from fastlse.kernels.columns import AHEAD_ROW_BYTES
from fastlse.kernels.rows import PREFETCH_BYTES, PREFETCH_MIN, prefetch_ahead

#: (dtype, row length): narrow rows of at least PREFETCH_BYTES
CASES = [(np.float32, 32), (np.float32, 63), (np.float64, 16), (np.float64, 31)]
#: rows of each piece computed apart: far under PREFETCH_MIN
PIECE = 1000


def large(dtype, n, seed=0):
    """Rows of n elements, PREFETCH_MIN bytes and a partial block more,
    spread over +-500 with some rows shifted far."""
    m = PREFETCH_MIN // (n * np.dtype(dtype).itemsize) + 777
    rng = np.random.default_rng(seed)
    x = rng.uniform(-500, 500, (m, n))
    x[::7] -= 3000.0
    return x.astype(dtype)


def by_pieces(f, x):
    """f applied to x's rows PIECE at a time (no piece asks ahead)."""
    return np.concatenate([f(x[i : i + PIECE]) for i in range(0, len(x), PIECE)])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("dtype", "n"), CASES)
def test_narrow_rows_asking_ahead(dtype, n, threads):
    x = large(dtype, n)
    assert n * x.itemsize >= PREFETCH_BYTES and prefetch_ahead(x)
    assert not prefetch_ahead(x[:PIECE])
    eps = np.finfo(dtype).eps
    ops = {
        "logsumexp": (fastlse.logsumexp, sc.logsumexp),
        "softmax": (fastlse.softmax, sc.softmax),
        "log_softmax": (fastlse.log_softmax, sc.log_softmax),
    }
    with fastlse.num_threads(threads):
        for name, (ours, ref) in ops.items():
            got = ours(x, axis=-1)
            np.testing.assert_array_equal(got, by_pieces(lambda v, f=ours: f(v, axis=-1), x), name)
            x64 = x.astype(np.float64)
            want = ref(x64, axis=-1)
            # the conditioning of each result: lse's |lse|; x_j - lse's
            # |x_j| + |lse|; softmax's value (subnormal float32 ones to
            # their spacing)
            lse = np.abs(sc.logsumexp(x64, axis=-1, keepdims=True))
            scale = {"logsumexp": lse[:, 0], "softmax": want, "log_softmax": np.abs(x64) + lse}
            tiny = np.finfo(dtype).smallest_normal if name == "softmax" else 0.0
            assert np.all(np.abs(got - want) <= 8 * eps * scale[name] + tiny), name


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("dtype", "n"), CASES)
def test_cross_entropy_asking_ahead(dtype, n, threads):
    x = large(dtype, n, seed=1)
    y = np.random.default_rng(2).integers(0, n, len(x))
    with fastlse.num_threads(threads):
        got = fastlse.cross_entropy(x, y, reduction="none")
        pieces = [
            fastlse.cross_entropy(x[i : i + PIECE], y[i : i + PIECE], reduction="none")
            for i in range(0, len(x), PIECE)
        ]
    np.testing.assert_array_equal(got, np.concatenate(pieces))
    xt = torch.from_numpy(x.astype(np.float64))
    want = torch.nn.functional.cross_entropy(xt, torch.from_numpy(y), reduction="none").numpy()
    # loss = lse - x_y: eps of the larger of the two terms
    bound = np.maximum(np.abs(x).max(axis=1), 1.0)
    assert np.all(np.abs(got - want) <= 8 * np.finfo(dtype).eps * bound)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_asking_ahead(dtype, threads):
    """logsumexp, softmax, log_softmax and the loss along a middle axis of an
    array over PREFETCH_MIN, in slabs of rows of AHEAD_ROW_BYTES or more
    (the column sweeps ask for the next row block): scipy's / torch's
    values, and the bits of the same slabs in arrays too small to ask, of
    as many slabs as the pool has threads (softmax takes the same slabs of
    whole rows there; fewer slabs are cut for the threads otherwise).  The
    loss of fewer slabs takes another route: its values only."""
    q, k = 128, pool_size()
    n = max(64, PREFETCH_MIN // (2 * k * q * np.dtype(dtype).itemsize))
    rng = np.random.default_rng(3)
    x = rng.uniform(-500, 500, (3 * k, n, q)).astype(dtype)
    x[:, ::7] -= 3000.0  # rows far below their column's max
    y = rng.integers(0, n, (3 * k, q))
    assert x.nbytes >= PREFETCH_MIN > x[:k].nbytes
    assert q * x.itemsize >= AHEAD_ROW_BYTES
    ops = {
        "logsumexp": (fastlse.logsumexp, sc.logsumexp),
        "softmax": (fastlse.softmax, sc.softmax),
        "log_softmax": (fastlse.log_softmax, sc.log_softmax),
    }
    with fastlse.num_threads(threads):
        got = {name: f(x, axis=1) for name, (f, _) in ops.items()}
        loss = fastlse.cross_entropy(x, y, reduction="none")
        for name, (f, _) in ops.items():
            apart = [f(x[i : i + k], axis=1) for i in range(0, 3 * k, k)]
            np.testing.assert_array_equal(got[name], np.concatenate(apart), name)
    x64 = x.astype(np.float64)
    lse = sc.logsumexp(x64, axis=1, keepdims=True)
    eps = np.finfo(dtype).eps
    # each result's conditioning: lse's |lse|; x_j - lse's |x_j| + |lse|;
    # softmax's value times its exponent's (subnormal float32 ones to
    # their spacing; the float64 reference carries that error too)
    for name, (_, ref) in ops.items():
        want = ref(x64, axis=1)
        if name == "logsumexp":
            scale = np.abs(lse[:, 0])
        elif name == "softmax":
            scale = want * (1.0 + np.abs(x64 - lse))
        else:
            scale = np.abs(x64) + np.abs(lse)
        tiny = np.finfo(dtype).smallest_normal if name == "softmax" else 0.0
        bound = 8 * eps * scale + tiny
        assert np.all(np.abs(got[name] - want) <= bound), name
    xt = torch.from_numpy(x64)
    want_loss = torch.nn.functional.cross_entropy(xt, torch.from_numpy(y), reduction="none")
    bound = 8 * eps * np.maximum(np.abs(x64).max(axis=1), 1.0)
    assert np.all(np.abs(loss - want_loss.numpy()) <= bound)
