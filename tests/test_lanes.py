"""The sixteen-lane reductions (kernels/lanes.py) against numpy, in their order."""

import numpy as np
import pytest
from numba import njit

from fastlse.kernels.compile import EXACT, FASTMATH
from fastlse.kernels.lanes import LANES, lanes_max, lanes_min_pos, lanes_sum, lanes_sum64


@njit(fastmath=EXACT)
def _reduce(a, lo, n):
    return lanes_max(a, lo, n), lanes_sum(a, lo, n), lanes_sum64(a, lo, n)


def _in_lane_order(v, acc_dtype):
    """The documented order, with numpy's IEEE adds: lane k sums v[k],
    v[k + 16], ... from 0, then lanes k and k + h are added for h = 8, 4, 2, 1."""
    lanes = np.zeros(LANES, dtype=acc_dtype)
    for j, e in enumerate(v.astype(acc_dtype)):
        lanes[j % LANES] = lanes[j % LANES] + e
    h = LANES // 2
    while h:
        lanes = lanes[:h] + lanes[h : 2 * h]
        h //= 2
    return lanes[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 5, 15, 16, 17, 31, 32, 33, 48, 63, 64, 100])
def test_lanes_match_numpy_in_their_order(dtype, n):
    rng = np.random.default_rng(n)
    lo = 3  # an offset: the groups need no alignment
    a = (rng.standard_normal(lo + n + 20) * 10.0 ** rng.integers(-3, 4, lo + n + 20)).astype(dtype)
    v = a[lo : lo + n]
    m, s, s64 = _reduce(a, lo, n)
    assert m == (v.max() if n else -np.inf)
    assert s == _in_lane_order(v, dtype)  # summed in the array's dtype
    assert dtype(s) == s
    assert s64 == _in_lane_order(v, np.float64)
    if n:
        np.testing.assert_allclose(s64, v.astype(np.float64).sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lanes_special_values(dtype):
    a = np.array([1.0, np.nan, 3.0, -np.inf] + [0.5] * 30, dtype=dtype)
    m, s, s64 = _reduce(a, 0, a.size)
    assert m == 3.0  # the max ignores nan
    assert np.isnan(s) and np.isnan(s64)
    a[1] = np.nan
    a[2:] = -np.inf
    m, _, _ = _reduce(a, 1, a.size - 1)
    assert m == -np.inf  # only nan and -inf: -inf
    m, s, _ = _reduce(np.array([np.inf, 1.0, -np.inf], dtype=dtype), 0, 2)
    assert m == np.inf and s == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 16, 17, 40, 100])
def test_lanes_min_pos_and_max_in_reassoc_code(dtype, n):
    """The max and the smallest positive element are exact in any order, so
    they compile in ``reassoc`` code too; zeros, negatives, nan are skipped."""

    @njit(fastmath=FASTMATH)
    def minmax(a, lo, n):
        return lanes_max(a, lo, n), lanes_min_pos(a, lo, n)

    rng = np.random.default_rng(n)
    a = rng.standard_normal(n + 2).astype(dtype)
    a[::5] = 0.0
    a[1::7] = np.nan
    v = a[1 : 1 + n]
    m, p = minmax(a, 1, n)
    assert m == (np.nanmax(v) if np.isfinite(v).any() else -np.inf)
    pos = v[v > 0]
    assert p == (pos.min() if pos.size else np.inf)


def test_lanes_refused_in_reassoc_code():
    @njit(fastmath=FASTMATH)
    def reassoc(a):
        return lanes_sum(a, 0, a.shape[0])

    with pytest.raises(TypeError, match="reassoc"):
        reassoc(np.ones(4))
