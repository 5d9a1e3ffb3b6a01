"""logcumsumexp against torch, numpy's logaddexp.accumulate and mpmath."""

import math

import numpy as np
import pytest
from conftest import FLOAT_DTYPES, LAYOUTS, make_layout
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastlse
from fastlse import _cumulative as C
from fastlse import logcumsumexp

INF = np.inf
NAN = np.nan


def tol(dtype):
    return {np.float16: 2e-3, np.float32: 3e-6, np.float64: 1e-13}[np.dtype(dtype).type]


def torch_ref(x, axis, reverse):
    """torch.logcumsumexp in float64 (the axis normalized, reverse by flips)."""
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(np.array(x, dtype=np.float64))
    if axis is None:
        t, axis = t.reshape(-1), 0
    if reverse:
        t = t.flip(axis)
    r = torch.logcumsumexp(t, axis)
    if reverse:
        r = r.flip(axis)
    return r.numpy()


# (shape, axis): short rows (tiles), long rows (chunks of CHUNK), columns,
# middle axes, axis=None
CASES = [
    ((7,), 0),
    ((7,), -1),
    ((7,), None),
    ((5, 9), 0),
    ((5, 9), 1),
    ((5, 9), None),
    ((300, 5), 1),
    ((300, 5), 0),
    ((3, 1100), -1),
    ((3, 1100), 0),
    ((4, 6, 5), 0),
    ((4, 6, 5), 1),
    ((4, 6, 5), -1),
    ((3, 4, 5, 2), 1),
    ((3, 4, 5, 2), -1),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_torch(rng, dtype, shape, axis, reverse, layout):
    x = make_layout((rng.standard_normal(shape) * 5).astype(dtype), layout)
    ref = torch_ref(x, axis, reverse)
    res = logcumsumexp(x, axis=axis, reverse=reverse)
    assert res.shape == ref.shape and res.dtype == dtype
    np.testing.assert_allclose(res, ref, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), [((40, 700), 1), ((700, 40), 0), ((9, 70), 1)])
def test_matches_numpy_accumulate(rng, dtype, shape, axis):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ref = np.logaddexp.accumulate(x.astype(np.float64), axis=axis)
    np.testing.assert_allclose(logcumsumexp(x, axis=axis), ref, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    ("shape", "axis", "view"),
    [((2, 5000), 1, (2, 5000)), ((5000, 3), 0, (1, 5000, 3)), ((2, 3000, 20), 1, (2, 3000, 20))],
)
def test_pieces_match_unsplit(monkeypatch, rng, dtype, reverse, shape, axis, view):
    # few long scans are cut into pieces joined by carries: force the split
    trend = np.linspace(-20, 20, shape[axis]).reshape(
        [-1 if i == axis else 1 for i in range(len(shape))]
    )
    x = rng.standard_normal(shape) * 4 + trend
    x = x.astype(dtype)
    x.flat[7] = -INF
    whole = logcumsumexp(x, axis=axis, reverse=reverse)
    monkeypatch.setattr(C, "PIECE", 256)
    out = np.empty(view, dtype=dtype)
    C.scan(x.reshape(view), out, reverse, nth=8)
    np.testing.assert_allclose(out.reshape(shape), whole, rtol=tol(dtype), atol=tol(dtype))


# ----------------------------------------------------------- accuracy ------
def mp_reference(x, fast=False):
    """Forward cumulative lse of a 1-D float64 array in mpmath (dps=50), and
    the conditioning sum_j |x_j| softmax_j over each prefix.

    ``fast`` takes exp and log in float64 around the exact mpmath sums
    (1e-16 relative: plenty to judge float32, and 5x faster for long rows).
    """
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    s = mp.mpf(0)
    w = mp.mpf(0)
    ref = np.empty(x.size)
    cond = np.empty(x.size)
    for i, xi in enumerate(x.tolist()):
        e = mp.mpf(math.exp(xi)) if fast and abs(xi) < 700 else mp.exp(xi)
        s += e
        w += abs(xi) * e
        if fast:
            man, ex = mp.frexp(s)
            ref[i] = math.log(man) + ex * math.log(2.0)
        else:
            ref[i] = float(mp.log(s))
        cond[i] = float(w / s)
    return ref, cond


def error_units(res, x, dtype):
    """max |res - ref| in units of eps * max(|ref|, sum |x| softmax)."""
    ref, cond = mp_reference(x.astype(np.float64), fast=dtype == np.float32)
    scale = np.finfo(dtype).eps * np.maximum(np.abs(ref), cond)
    return np.max(np.abs(res.astype(np.float64) - ref) / scale)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "kind", ["normal", "wide", "near-zero", "trend", "column", "reverse", "short-rows"]
)
def test_accuracy_vs_mpmath(rng, dtype, kind):
    n = 3000
    x = rng.standard_normal(n)
    if kind == "wide":
        x = x * 300
    elif kind == "near-zero":
        x = x * 1e-3 - np.log(np.arange(1, n + 1))  # running sum near 1
    elif kind == "trend":
        x = x * 3 + np.linspace(-50, 50, n)  # the max keeps moving
    x = x.astype(dtype)
    if kind == "column":
        res = logcumsumexp(np.stack([x, x[::-1], x], axis=1), axis=0)[:, 0]
    elif kind == "reverse":
        res = logcumsumexp(x[::-1].copy(), reverse=True)[::-1]
    elif kind == "short-rows":
        x = x[:40]
        res = logcumsumexp(np.tile(x, (200, 1)), axis=1)[137]
    else:
        res = logcumsumexp(x)
    units = error_units(res, x, dtype)
    assert units <= 8, units


@pytest.mark.parametrize(("dtype", "n"), [(np.float32, 100_000), (np.float64, 30_000)])
def test_accuracy_long_row_with_trend(rng, dtype, n):
    # error grows with conditioning, not position: a long row stays within
    # a few units (float32 carries its sum in float64)
    x = (rng.standard_normal(n) * 2 + np.linspace(-30, 30, n)).astype(dtype)
    units = error_units(logcumsumexp(x), x, dtype)
    assert units <= 8, units


def test_first_element_is_exact():
    x = np.array([1e-5, 100.0, 3.0, -7.0])
    assert logcumsumexp(x)[0] == 1e-5
    assert logcumsumexp(x, reverse=True)[-1] == -7.0
    assert logcumsumexp(x[:, None], axis=0)[0, 0] == 1e-5


def test_tiny_increment_kept():
    # log(1 + exp(-40)) = 4.248e-18: the log1p form keeps it, log(1 + t) loses it
    res = logcumsumexp(np.array([0.0, -40.0]))
    assert res[0] == 0.0
    np.testing.assert_allclose(res[1], np.log1p(np.exp(-40.0)), rtol=1e-15)


def test_no_overflow():
    res = logcumsumexp(np.array([1000.0, 1000.0, 1000.0]))
    np.testing.assert_allclose(res, 1000 + np.log([1.0, 2.0, 3.0]), rtol=1e-15)
    res = logcumsumexp(np.array([-1000.0, -1000.0], dtype=np.float32))
    np.testing.assert_allclose(res, np.float32(-1000 + np.log([1.0, 2.0])), rtol=1e-7)


# ------------------------------------------------------ special values ------
SPECIAL_ROWS = [
    [-INF, -INF, 1.0, 2.0],
    [1.0, INF, 2.0, -INF],
    [1.0, NAN, 2.0, INF],
    [INF, INF, 1.0],
    [-INF, INF, -INF],
    [1.0, -INF, NAN, 3.0],
    [INF, NAN, 1.0],
    [NAN, INF],
    [-INF, -INF],
    [INF, -INF, INF],
    [1.0, 2.0, -INF],
    [-INF, 5.0, -INF, -INF, 5.0],
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("row", SPECIAL_ROWS, ids=[str(r) for r in SPECIAL_ROWS])
def test_special_values_like_torch(dtype, reverse, row):
    x = np.array(row, dtype=dtype)
    ref = torch_ref(x, 0, reverse)
    np.testing.assert_allclose(logcumsumexp(x, reverse=reverse), ref, rtol=tol(dtype))
    # the same values down a column and in a row long enough for chunks
    np.testing.assert_allclose(
        logcumsumexp(np.stack([x, x], axis=1), axis=0, reverse=reverse)[:, 1], ref, rtol=tol(dtype)
    )
    long = np.zeros(1400, dtype=dtype) - 50
    long[::280][: len(row)] = x
    long_ref = torch_ref(long, 0, reverse)
    np.testing.assert_allclose(logcumsumexp(long, reverse=reverse), long_ref, rtol=tol(dtype))


def test_special_values_rules():
    res = logcumsumexp(np.array([1.0, INF, 2.0, NAN, 3.0]))
    assert res[0] == 1.0 and np.all(res[1:3] == INF) and np.all(np.isnan(res[3:]))
    assert np.all(logcumsumexp(np.full(5, -INF)) == -INF)
    # nan from its position on, not before (both directions)
    res = logcumsumexp(np.array([1.0, 2.0, NAN, 4.0]), reverse=True)
    assert np.all(np.isnan(res[:3])) and res[3] == 4.0


# ------------------------------------------------------- dtypes, API ------
@pytest.mark.parametrize(
    ("x", "dtype"),
    [
        (np.array([1, 2, 3], dtype=np.int32), np.float64),
        (np.array([True, False]), np.float64),
        ([1.0, 2.0], np.float64),
        (np.float16([1, 2, 3]), np.float16),
        (np.float32([1, 2, 3]), np.float32),
        (np.longdouble([1, 2, 3]), np.longdouble),
    ],
)
def test_dtypes(x, dtype):
    res = logcumsumexp(x)
    assert res.dtype == dtype
    ref = torch_ref(np.asarray(x, dtype=np.float64), 0, False)
    np.testing.assert_allclose(res.astype(np.float64), ref, rtol=2e-3)


@pytest.mark.parametrize("x", [np.array([1 + 1j]), np.array(["a"]), np.array([None])])
def test_unsupported_dtypes(x):
    with pytest.raises(TypeError, match="logcumsumexp"):
        logcumsumexp(x)


def test_axis_none_flattens_like_cumsum(rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(
        logcumsumexp(x, axis=None), np.log(np.cumsum(np.exp(x), axis=None)), rtol=1e-14
    )
    np.testing.assert_allclose(
        logcumsumexp(np.asfortranarray(x), axis=None), logcumsumexp(x.ravel()), rtol=1e-15
    )


def test_zero_d_like_cumsum():
    assert logcumsumexp(np.float64(3.0)).shape == np.cumsum(np.float64(3.0)).shape == (1,)
    assert logcumsumexp(3.0, axis=None)[0] == 3.0


@pytest.mark.parametrize(("shape", "axis"), [((0,), 0), ((3, 0), 1), ((0, 5), 0), ((2, 0, 3), -1)])
def test_empty(shape, axis):
    x = np.ones(shape)
    res = logcumsumexp(x, axis=axis)
    assert res.shape == shape and res.dtype == np.float64


@pytest.mark.parametrize(
    ("axis", "err"),
    [
        (2, np.exceptions.AxisError),
        (-3, np.exceptions.AxisError),
        ((0,), TypeError),
        (1.0, TypeError),
        (True, TypeError),
    ],
)
def test_bad_axis(axis, err):
    with pytest.raises(err):
        logcumsumexp(np.ones((2, 3)), axis=axis)


def test_input_not_modified_and_read_only(rng):
    for shape, axis in [((40, 700), 1), ((700, 40), 0), ((50, 9), 1)]:
        x = rng.standard_normal(shape)
        x.flags.writeable = False
        keep = x.copy()
        res = logcumsumexp(x, axis=axis, reverse=True)
        np.testing.assert_array_equal(x, keep)
        np.testing.assert_allclose(res, torch_ref(keep, axis, True), rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- out ------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", [0, 1])
def test_out(rng, layout, axis):
    x = rng.standard_normal((6, 70))
    ref = logcumsumexp(x, axis=axis)
    out = make_layout(np.zeros((6, 70)), layout)
    assert logcumsumexp(x, axis=axis, out=out) is out
    np.testing.assert_allclose(out, ref, rtol=1e-15)
    out32 = np.zeros((6, 70), dtype=np.float32)  # same_kind cast
    logcumsumexp(x, axis=axis, out=out32)
    np.testing.assert_allclose(out32, ref, rtol=1e-6)


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("axis", [0, 1])
def test_out_is_input(rng, layout, axis):
    x = make_layout(rng.standard_normal((9, 700)), layout)
    ref = logcumsumexp(x, axis=axis, reverse=True)
    assert logcumsumexp(x, axis=axis, reverse=True, out=x) is x
    np.testing.assert_allclose(x, ref, rtol=1e-15)


def test_out_overlapping_input_elsewhere(rng):
    x = rng.standard_normal(1000)
    ref = logcumsumexp(x)
    logcumsumexp(x, out=x[::-1])
    np.testing.assert_allclose(x[::-1], ref, rtol=1e-15)


@pytest.mark.parametrize(
    ("out", "err"),
    [
        ([0.0, 0.0, 0.0], TypeError),
        (np.zeros(4), ValueError),
        (np.zeros((3, 1)), ValueError),
        (np.zeros(3, dtype=np.int64), TypeError),
        (np.zeros(3, dtype=np.complex128), TypeError),
    ],
)
def test_bad_out(out, err):
    with pytest.raises(err, match="out"):
        logcumsumexp(np.ones(3), out=out)


def test_read_only_out():
    out = np.zeros(3)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        logcumsumexp(np.ones(3), out=out)


# ----------------------------------------------------------- threads ------
@pytest.mark.parametrize(("shape", "axis"), [((200, 400), 1), ((400, 200), 0), ((4, 20000), 1)])
def test_parallel_matches_serial(rng, shape, axis):
    x = rng.standard_normal(shape) * 3
    with fastlse.num_threads(1):
        serial = logcumsumexp(x, axis=axis)
    np.testing.assert_allclose(logcumsumexp(x, axis=axis), serial, rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------- properties ------
@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=30),
        elements=st.floats(-50, 50),
    ),
    st.floats(-100, 100),
    st.booleans(),
)
def test_properties(x, c, reverse):
    res = logcumsumexp(x, axis=-1, reverse=reverse)
    # translation: lcse(x + c) == lcse(x) + c
    np.testing.assert_allclose(
        logcumsumexp(x + c, reverse=reverse), res + c, rtol=1e-13, atol=1e-12
    )
    # the last (first if reversed) entry is the row's logsumexp
    end = res[..., 0] if reverse else res[..., -1]
    np.testing.assert_allclose(end, fastlse.logsumexp(x, axis=-1), rtol=1e-13, atol=1e-13)
    # reverse is the flipped forward scan; results never decrease along the scan
    flipped = np.flip(logcumsumexp(np.flip(x, -1), axis=-1, reverse=not reverse), -1)
    np.testing.assert_allclose(flipped, res, rtol=1e-13, atol=1e-13)
    steps = np.diff(res, axis=-1) * (-1 if reverse else 1)
    assert np.all(steps >= -1e-12 * np.maximum(1, np.abs(res[..., 1:])))


# ------------------------------------------------- vectorizable exp/log1p ---
@pytest.fixture(scope="module")
def prims():
    """Loops over C.exp64v (and _exp.exp64), C.log1p64v, C.log1p32v."""
    numba = pytest.importorskip("numba")
    from fastlse.kernels.exp import exp64

    @numba.njit
    def apply(x, which):
        out = np.empty_like(x)
        for i in range(x.size):
            if which == 0:
                out[i] = C.exp64v(x[i])
            elif which == 1:
                out[i] = exp64(x[i])
            else:
                out[i] = C.log1p64v(x[i])
        return out

    @numba.njit
    def apply32(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = C.log1p32v(x[i])
        return out

    return apply, apply32


def ulps(res, ref):
    ref = np.asarray(ref, dtype=np.float64)
    tiny = np.finfo(res.dtype).tiny
    return np.abs(res - ref) / (np.finfo(res.dtype).eps * np.maximum(np.abs(ref), tiny))


def test_exp64v(rng, prims):
    mp = pytest.importorskip("mpmath")
    x = np.concatenate([rng.uniform(-708, 709, 3000), rng.uniform(-1, 1, 1000), [0.0, 709.7]])
    ref = [float(mp.exp(v)) for v in x.tolist()]
    # the same polynomial and reduction as _exp.exp64, scaled without fptosi
    np.testing.assert_array_equal(prims[0](x, 0), prims[0](x, 1))
    assert ulps(prims[0](x, 0), ref).max() <= 2.5
    special = np.array([-INF, INF, NAN, 710.0, -746.0, -740.0])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(prims[0](special, 0), np.exp(special))


def test_log1p64v(rng, prims):
    mp = pytest.importorskip("mpmath")
    t = np.concatenate(
        [10 ** rng.uniform(-20, 300, 2000), rng.uniform(0, 3, 2000), [0.4142135623730951]]
    )
    ref = [float(mp.log1p(v)) for v in t.tolist()]
    assert ulps(prims[0](t, 2), ref).max() <= 3
    special = np.array([0.0, 5e-324, 1e-17, 1.7e308, np.finfo(np.float64).max, INF, NAN])
    np.testing.assert_allclose(prims[0](special, 2), np.log1p(special), rtol=1e-15)


def test_log1p32v(rng, prims):
    t = np.concatenate([10 ** rng.uniform(-12, 38, 20000), rng.uniform(0, 3, 20000)])
    t = np.concatenate([t.astype(np.float32), np.float32([0, 1e-45, 1e-8, 0.41421354, 3.4e38])])
    assert ulps(prims[1](t), np.log1p(t.astype(np.float64))).max() <= 2.5
    special = np.float32([INF, NAN])
    np.testing.assert_array_equal(prims[1](special), np.log1p(special))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), [((16, 1000), 1), ((16, 1000), 0), ((3, 70_000), 1)])
def test_in_place_and_overlapping_out_same_bits(rng, dtype, shape, axis):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    want = logcumsumexp(x, axis=axis)
    ref = np.logaddexp.accumulate(x.astype(np.float64), axis=axis)
    np.testing.assert_allclose(want, ref, rtol=tol(dtype), atol=tol(dtype))
    y = x.copy()
    assert logcumsumexp(y, axis=axis, out=y) is y
    np.testing.assert_array_equal(y, want)
    a = np.concatenate([x, x[:, :1]], axis=1)  # out overlaps x shifted by one element
    logcumsumexp(a[:, :-1], axis=axis, out=a[:, 1:])
    np.testing.assert_array_equal(a[:, 1:], want)
