"""The vectorizable exp / log1p against numpy over their whole range, in ulps."""

import numpy as np
import pytest
from numba import njit

from fastlse.kernels.exp import (
    EXACT,
    FASTMATH,
    div_by,
    exp32,
    exp64,
    expneg32,
    expneg64,
    log1p64,
    maxnum,
)
from fastlse.kernels.lanes import lanes_exp_sum_exp


def _mapper(f):
    """out[i] = f(x[i]), compiled (f inlined into a vectorizable loop)."""

    @njit(fastmath=FASTMATH)
    def _map(x, out):
        for i in range(x.size):
            out[i] = f(x[i])

    return _map


_map_exp64 = _mapper(exp64)
_map_exp32 = _mapper(exp32)
_map_expneg64 = _mapper(expneg64)
_map_expneg32 = _mapper(expneg32)
_map_log1p = _mapper(log1p64)


def _both(f):
    """expneg of each d <= 0 twice: the scalar f in a loop, and the IR of
    ``expterm_vector`` (the exp-sum sweep's stores, m = 0)."""

    @njit(fastmath=EXACT)
    def both(d, scalar, vector, zero):
        for i in range(d.size):
            scalar[i] = f(d[i])
        lanes_exp_sum_exp(d, vector, 0, d.size, zero)

    return both


_EXPNEG_BOTH = {np.float32: _both(expneg32), np.float64: _both(expneg64)}


@njit(fastmath=FASTMATH)
def _max(x):
    m = -np.inf
    for i in range(x.size):
        m = maxnum(m, x[i])
    return m


def ulp_error(res, ref_hi, dtype):
    """|res - ref| in units of the spacing of ref rounded to dtype."""
    ref = ref_hi.astype(dtype)
    spacing = np.spacing(np.abs(ref)).astype(np.float64)
    return np.abs(res.astype(np.float64) - ref_hi) / spacing


def test_exp64_ulp_whole_range(rng):
    x = np.concatenate([rng.uniform(-708, 709.7, 400_000), rng.uniform(-2, 2, 100_000)])
    out = np.empty_like(x)
    _map_exp64(x, out)
    ref = np.exp(x)
    assert ulp_error(out, ref, np.float64).max() <= 2.0


def test_exp32_ulp_whole_range(rng):
    x = np.concatenate([rng.uniform(-87.3, 88.7, 400_000), rng.uniform(-2, 2, 100_000)]).astype(
        np.float32
    )
    out = np.empty_like(x)
    _map_exp32(x, out)
    ref = np.exp(x.astype(np.float64))  # exact enough for float32
    assert ulp_error(out, ref, np.float32).max() <= 2.0


@pytest.mark.parametrize(
    ("f", "dtype", "big", "sub"),
    [(_map_exp64, np.float64, 709.79, -740.0), (_map_exp32, np.float32, 88.73, -100.0)],
)
def test_exp_special_values(f, dtype, big, sub):
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, big, 1e5, -1e5, sub], dtype=dtype)
    out = np.empty_like(x)
    f(x, out)
    assert out[0] == 0.0 and out[1] == np.inf and np.isnan(out[2])
    assert out[3] == 1.0 and out[4] == 1.0
    assert out[5] == np.inf and out[6] == np.inf and out[7] == 0.0
    # gradual underflow: a subnormal close to the true value
    ref = np.exp(np.float64(x[8]))
    assert 0 < out[8] < np.finfo(dtype).tiny
    assert abs(out[8] - ref) <= 2 * np.finfo(dtype).smallest_subnormal


def _ulp_with_subnormals(res, ref_ld, dtype):
    """|res - ref| in ulps of dtype, the subnormal grid's spacing included."""
    spacing = np.maximum(
        np.spacing(np.abs(ref_ld.astype(dtype))), np.finfo(dtype).smallest_subnormal
    ).astype(np.longdouble)
    return (np.abs(res.astype(np.longdouble) - ref_ld) / spacing).astype(np.float64)


@pytest.mark.parametrize(
    ("f", "dtype", "low"),
    [(_map_expneg64, np.float64, -746.0), (_map_expneg32, np.float32, -104.0)],
)
def test_expneg_ulp_whole_range(rng, f, dtype, low):
    """exp of d <= 0 (every kernel's exp(x - max)): <= 2 ulp down to the
    underflow limit, the subnormal range included (gradual underflow)."""
    x = np.concatenate(
        [
            rng.uniform(low, 0.0, 400_000),
            rng.uniform(-2.0, 0.0, 100_000),
            -(10.0 ** rng.uniform(-30, 0, 50_000)),
        ]
    ).astype(dtype)
    out = np.empty_like(x)
    f(x, out)
    ref = np.exp(x.astype(np.longdouble))
    assert _ulp_with_subnormals(out, ref, dtype).max() <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_expterm_vector_is_expneg_bit_for_bit(rng, dtype):
    """The exp of the lanes sweeps (IR) and of the loops (expneg32 /
    expneg64) are one function: the same bits, subnormals and the clamp
    included."""
    tiny = np.log(np.finfo(dtype).smallest_subnormal)
    d = np.concatenate(
        [
            rng.uniform(1.2 * tiny, 0.0, 200_000),
            -(10.0 ** rng.uniform(-30, 0, 50_000)),
            [-np.inf, np.nan, 0.0, -0.0, 2 * tiny, -3e38],
        ]
    ).astype(dtype)
    scalar, vector = np.empty_like(d), np.empty_like(d)
    _EXPNEG_BOTH[dtype](d, scalar, vector, dtype(0.0))
    np.testing.assert_array_equal(vector, scalar)


@pytest.mark.parametrize(("f", "dtype"), [(_map_expneg64, np.float64), (_map_expneg32, np.float32)])
def test_expneg_special_values(f, dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([-np.inf, np.nan, 0.0, -0.0, -1e5, -1e300 if dtype == np.float64 else -3e38])
    x = x.astype(dtype)
    out = np.empty_like(x)
    f(x, out)
    assert out[0] == 0.0 and np.isnan(out[1]) and out[2] == 1.0 and out[3] == 1.0
    assert out[4] == 0.0 and out[5] == 0.0
    # the last subnormals: exp(log(tiny)) is tiny, half of it rounds to 0 or tiny
    d = np.array([np.log(tiny), np.log(tiny) + np.log(5.0)], dtype=np.longdouble).astype(dtype)
    out = np.empty_like(d)
    f(d, out)
    ref = np.exp(d.astype(np.longdouble))
    assert np.all(np.abs(out.astype(np.longdouble) - ref) <= tiny)


def test_log1p64_ulp(rng):
    t = np.concatenate([10 ** rng.uniform(-20, 15, 300_000), rng.uniform(0, 10, 100_000)])
    out = np.empty_like(t)
    _map_log1p(t, out)
    assert ulp_error(out, np.log1p(t), np.float64).max() <= 4.0
    s = np.array([0.0, 1e-300, np.inf, np.nan, 1e308])
    o = np.empty_like(s)
    _map_log1p(s, o)
    assert o[0] == 0.0 and o[1] == 1e-300 and o[2] == np.inf and np.isnan(o[3])
    assert o[4] == np.log1p(1e308)


def test_maxnum_reduction(rng):
    x = rng.standard_normal(10_001)
    assert _max(x) == x.max()
    x[17] = np.nan
    assert _max(x) == np.nanmax(x)  # maxNum ignores nan; kernels check nan separately


@njit(fastmath=FASTMATH)
def _map_div_by(a, b, out):
    rb = np.ones(1, dtype=a.dtype)[0] / b
    for i in range(a.size):
        out[i] = div_by(a[i], b, rb)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_div_by_is_the_division_bit_for_bit(rng, dtype):
    """softmax's e / s as e * (1/s) plus an FMA correction: numpy's quotient."""
    lo = -30 if dtype == np.float32 else -290
    for _ in range(8):
        b = dtype(10.0 ** rng.uniform(0, 7))
        a = (rng.random(200_000) * 10.0 ** rng.uniform(lo, 0, 200_000)).astype(dtype)
        a[:4] = [0.0, 1.0, b, np.nan]
        out = np.empty_like(a)
        _map_div_by(a, b, out)
        np.testing.assert_array_equal(out, a / b)
