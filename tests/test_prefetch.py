"""Narrow rows of large arrays: the kernels that ask for their next block's
rows ahead (``prefetch_ahead``) give the bits of the same rows in arrays too
small to ask, and scipy's / torch's values.

The route tests' arrays are all under ``PREFETCH_MIN``; these are just over
it, with rows of at least ``PREFETCH_BYTES``, for the narrow block kernels
(softmax, log_softmax; logsumexp of float64 rows of 13-31) and the
transposed ones (logsumexp of float32, cross-entropy), on the threads and
serially.  A prefetch is a hint: if it changed anything, it would be a value.
"""

import numpy as np
import pytest
import scipy.special as sc
import torch

import fastlse
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
    """logsumexp and the loss along a middle axis of an array over
    PREFETCH_MIN (the column sweeps ask for the next row block): scipy's /
    torch's values, and for logsumexp the bits of each (N, Q) slab alone (a
    slab's loss alone takes another route)."""
    q = 96
    p = PREFETCH_MIN // (300 * q * np.dtype(dtype).itemsize) + 1
    rng = np.random.default_rng(3)
    x = rng.uniform(-500, 500, (p, 300, q)).astype(dtype)
    y = rng.integers(0, 300, (p, q))
    assert x.nbytes >= PREFETCH_MIN > x[:1].nbytes
    with fastlse.num_threads(threads):
        lse = fastlse.logsumexp(x, axis=1)
        loss = fastlse.cross_entropy(x, y, reduction="none")
        alone = [fastlse.logsumexp(x[i : i + 1], axis=1) for i in range(p)]
    np.testing.assert_array_equal(lse, np.concatenate(alone))
    x64 = x.astype(np.float64)
    want = sc.logsumexp(x64, axis=1)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(lse - want) <= 8 * eps * np.abs(want))
    xt = torch.from_numpy(x64)
    want_loss = torch.nn.functional.cross_entropy(xt, torch.from_numpy(y), reduction="none")
    assert np.all(np.abs(loss - want_loss.numpy()) <= 8 * eps * np.abs(want))
