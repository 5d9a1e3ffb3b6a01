"""Accuracy against high-precision references, in units of the conditioning bound.

For log-sum-exp the rounding error any algorithm working in precision eps can
be charged with is eps * max(|lse|, sum_j |x_j| softmax_j); errors are reported
as multiples of that bound (a few units is the goal) and compared with scipy's.
"""

import math

import mpmath as mp
import numpy as np
import pytest

import fastlse

sp = pytest.importorskip("scipy.special")
mp.mp.dps = 40


def mp_lse(row):
    return mp.log(mp.fsum(mp.exp(mp.mpf(float(v))) for v in row))


def cond_bound(row, lse, eps):
    x = np.asarray(row, dtype=np.float64)
    w = np.exp(x - float(lse))
    return eps * max(abs(float(lse)), float(np.sum(np.abs(x) * w)), np.finfo(float).tiny)


def make_rows(rng, dtype, n_rows=12, n=200):
    rows = []
    for k in range(n_rows):
        scale = [0.1, 1, 10, 100][k % 4]
        shift = [0, 50, -700, 1e4][k % 4] if dtype == np.float64 else [0, 20, -60, 300][k % 4]
        rows.append((rng.standard_normal(n) * scale + shift).astype(dtype))
    # one dominant element: the log1p form matters here
    r = np.full(n, -40.0, dtype=dtype)
    r[min(3, n - 1)] = 0.0
    rows.append(r)
    return np.array(rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [200, 31, 10, 3])  # wide rows, and narrow rows' own kernels
def test_logsumexp_within_conditioning_bound(rng, dtype, n):
    x = make_rows(rng, dtype, n=n)
    eps = np.finfo(dtype).eps
    ours = fastlse.logsumexp(x, axis=1)
    theirs = sp.logsumexp(x, axis=1)
    worst, worst_scipy = 0.0, 0.0
    for i, row in enumerate(x):
        ref = mp_lse(row)
        b = cond_bound(row, ref, eps)
        worst = max(worst, float(abs(mp.mpf(float(ours[i])) - ref)) / b)
        worst_scipy = max(worst_scipy, float(abs(mp.mpf(float(theirs[i])) - ref)) / b)
    assert worst <= 4.0, worst
    assert worst <= worst_scipy + 1.0, (worst, worst_scipy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [100, 31, 10])
def test_log_softmax_within_conditioning_bound(rng, dtype, n):
    x = make_rows(rng, dtype, n_rows=6, n=n)
    eps = np.finfo(dtype).eps
    ours = fastlse.log_softmax(x, axis=1)
    worst = 0.0
    for i, row in enumerate(x):
        ref = mp_lse(row)
        b = cond_bound(row, ref, eps)
        for j, v in enumerate(row):
            exact = mp.mpf(float(v)) - ref
            # x_j - lse rounds once more: a bound of eps * |x_j - lse| on top
            bj = b + eps * float(abs(exact)) + eps * abs(float(v))
            worst = max(worst, float(abs(mp.mpf(float(ours[i, j])) - exact)) / bj)
    assert worst <= 4.0, worst


def test_log_softmax_dominant_element_beats_scipy():
    x = np.array([0.0, -40.0, -45.0])
    exact = [mp.mpf(float(v)) - mp_lse(x) for v in x]
    ours = fastlse.log_softmax(x)
    for o, e in zip(ours, exact):
        assert abs(mp.mpf(float(o)) - e) <= abs(e) * 2.3e-16
    assert sp.log_softmax(x)[0] == 0.0  # scipy loses the tiny term entirely


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_relative_error(rng, dtype):
    x = make_rows(rng, dtype, n_rows=6, n=100)
    eps = np.finfo(dtype).eps
    ours = fastlse.softmax(x, axis=1)
    worst = 0.0
    for i, row in enumerate(x):
        ref = mp_lse(row)
        b = cond_bound(row, ref, eps)
        for j, v in enumerate(row):
            exact = mp.exp(mp.mpf(float(v)) - ref)
            if exact < np.finfo(dtype).tiny * 1e3:
                continue
            bj = b + eps * abs(float(v)) + eps
            worst = max(worst, float(abs(mp.mpf(float(ours[i, j])) / exact - 1)) / bj)
    assert worst <= 6.0, worst


def test_float32_long_row_accuracy(rng):
    # millions of float32 terms: summation order matters; blocks sum into float64
    n = 3_000_000
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x64 = x.astype(np.float64)
    m = x64.max()
    ref = m + math.log(math.fsum(np.exp(x64 - m)))  # float64: exact for float32's purposes
    b = cond_bound(x64, ref, np.finfo(np.float32).eps)
    err = abs(float(fastlse.logsumexp(x)) - ref) / b
    assert err <= 4.0, err
    # and the same data as one of several rows (row kernel rather than pieces)
    rows = x.reshape(3, -1)
    res = fastlse.logsumexp(rows, axis=1)
    for r, v in zip(rows.astype(np.float64), res):
        mr = r.max()
        refr = mr + math.log(math.fsum(np.exp(r - mr)))
        assert abs(float(v) - refr) / cond_bound(r, refr, np.finfo(np.float32).eps) <= 4.0


def test_column_reduction_accuracy(rng):
    x = rng.standard_normal((5000, 7)) * 20
    res = fastlse.logsumexp(x, axis=0)
    for j in range(7):
        col = x[:, j]
        m = col.max()
        ref = m + math.log(math.fsum(np.exp(col - m)))
        assert abs(res[j] - ref) <= 4 * cond_bound(col, ref, np.finfo(float).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [200, 45])  # rows of 32 / 16 folds, and a rest of 13 / 13
def test_few_columns_within_conditioning_bound(rng, dtype, n):
    """A middle axis of few columns is read folded (k rows as one): the rows
    of make_rows as the 13 columns of an (n, 13) array reduced along axis 0,
    logsumexp, log_softmax and softmax within the bounds of the rows' tests."""
    x = np.ascontiguousarray(make_rows(rng, dtype, n=n).T)
    eps = np.finfo(dtype).eps
    lse = fastlse.logsumexp(x, axis=0)
    ls = fastlse.log_softmax(x, axis=0)
    sm = fastlse.softmax(x, axis=0)
    worst = [0.0, 0.0, 0.0]
    for i, col in enumerate(x.T):
        ref = mp_lse(col)
        b = cond_bound(col, ref, eps)
        worst[0] = max(worst[0], float(abs(mp.mpf(float(lse[i])) - ref)) / b)
        for j, v in enumerate(col):
            exact = mp.mpf(float(v)) - ref
            bj = b + eps * float(abs(exact)) + eps * abs(float(v))
            worst[1] = max(worst[1], float(abs(mp.mpf(float(ls[j, i])) - exact)) / bj)
            e = mp.exp(exact)
            if e >= np.finfo(dtype).tiny * 1e3:
                bj = b + eps * abs(float(v)) + eps
                worst[2] = max(worst[2], float(abs(mp.mpf(float(sm[j, i])) / e - 1)) / bj)
    assert worst[0] <= 4.0 and worst[1] <= 4.0 and worst[2] <= 6.0, worst
