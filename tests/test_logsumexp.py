"""logsumexp against scipy.special.logsumexp, closed forms and edge cases."""

import numpy as np
import pytest
from conftest import AXIS_CASES, FLOAT_DTYPES, LAYOUTS, make_layout

import fastlse

sp = pytest.importorskip("scipy.special")


def tol(dtype):
    return {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-13}[np.dtype(dtype).type]


def assert_same(res, ref, dtype, rtol=None):
    assert type(res) is type(ref), (type(res), type(ref))
    assert np.shape(res) == np.shape(ref)
    assert np.asarray(res).dtype == np.asarray(ref).dtype
    r = tol(dtype) if rtol is None else rtol
    np.testing.assert_allclose(res, ref, rtol=r, atol=r)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), AXIS_CASES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_scipy(rng, dtype, shape, axis, keepdims, layout):
    x = make_layout((rng.standard_normal(shape) * 5).astype(dtype), layout)
    ref = sp.logsumexp(x, axis=axis, keepdims=keepdims)
    res = fastlse.logsumexp(x, axis=axis, keepdims=keepdims)
    assert_same(res, ref, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), AXIS_CASES[::2])
@pytest.mark.parametrize("return_sign", [False, True])
def test_weights_match_scipy(rng, dtype, shape, axis, return_sign):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    b = rng.uniform(-0.5, 2, shape).astype(dtype)
    b[rng.random(shape) < 0.2] = 0
    ref = sp.logsumexp(x, axis=axis, b=b, return_sign=return_sign)
    res = fastlse.logsumexp(x, axis=axis, b=b, return_sign=return_sign)
    if return_sign:
        np.testing.assert_array_equal(res[1], ref[1])
        np.testing.assert_allclose(res[0], ref[0], rtol=tol(dtype) * 100, atol=tol(dtype) * 100)
    else:
        np.testing.assert_allclose(res, ref, rtol=tol(dtype) * 100, atol=tol(dtype) * 100)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 2.0], [[1.0, 1.0], [1.0, 1.0]]),  # b broadcasts a up
        (np.ones((3, 4)), np.arange(4.0)),
        (np.ones((3, 4)), 2.0),
        (np.ones((3, 4)), np.ones((3, 1))),
    ],
)
def test_weights_broadcast(a, b):
    for axis in (None, 0, -1):
        np.testing.assert_allclose(
            fastlse.logsumexp(a, b=b, axis=axis), sp.logsumexp(a, b=b, axis=axis), rtol=1e-14
        )


# ------------------------------------------------------------ dtype rules --
@pytest.mark.parametrize(
    "a",
    [
        3.0,
        np.float32(3),
        np.float16(2),
        [1, 2, 3],
        [True, False],
        np.int8([1, 2]),
        np.uint16([1, 2]),
        np.float16([1, 2]),
        np.float32([[1, 2], [3, 4]]),
        [[1.0, 2.0]],
    ],
)
@pytest.mark.parametrize("keepdims", [False, True])
def test_dtype_and_return_type(a, keepdims):
    ref = sp.logsumexp(a, keepdims=keepdims)
    res = fastlse.logsumexp(a, keepdims=keepdims)
    assert_same(res, ref, np.asarray(ref).dtype)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.float32([1, 2]), np.float32([1, 1])),
        (np.float32([1, 2]), [1, 1]),  # int64 b promotes to float64
        (np.float32([1, 2]), 2),  # python scalar is weak
        (np.float32([1, 2]), np.float64([1, 1])),
        ([1, 2], np.float32([1, 1])),
    ],
)
def test_weight_promotion(a, b):
    ref = sp.logsumexp(a, b=b)
    res = fastlse.logsumexp(a, b=b)
    assert_same(res, ref, np.asarray(ref).dtype)


@pytest.mark.parametrize("a", [[1 + 1j, 2], np.array([[1j, 2, -3 + 0.5j]]), [3j, -1000 + 4j]])
@pytest.mark.parametrize("return_sign", [False, True])
def test_complex_like_scipy(a, return_sign):
    ref = sp.logsumexp(a, return_sign=return_sign)
    res = fastlse.logsumexp(a, return_sign=return_sign)
    np.testing.assert_allclose(res, ref, rtol=1e-13, atol=1e-15)


def test_complex_weights():
    np.testing.assert_allclose(
        fastlse.logsumexp([1, 2], b=[1j, 1]), sp.logsumexp([1, 2], b=[1j, 1]), rtol=1e-13
    )


# ------------------------------------------------------- special values ----
def test_closed_form_overflow():
    assert fastlse.logsumexp([1000.0, 1000.0]) == 1000 + np.log(2)
    assert fastlse.logsumexp(np.float32([1000, 1000])) == np.float32(1000 + np.log(2))
    assert fastlse.logsumexp([-1000.0, -1000.0]) == -1000 + np.log(2)


def test_tiny_contribution_log1p():
    # the log1p form: scipy 1.15+ gives the same, a naive log(sum) gives 0.0
    assert fastlse.logsumexp([0.0, -40.0]) == 4.248354255291589e-18
    res = fastlse.logsumexp(np.float32([0, -20]))
    assert res.dtype == np.float32
    np.testing.assert_allclose(res, np.log1p(np.exp(-20.0)), rtol=2.5e-7)  # 2 ulp


def test_all_neg_inf_row():
    res, sgn = fastlse.logsumexp([[-np.inf, -np.inf], [0, 0]], axis=1, return_sign=True)
    assert res[0] == -np.inf and sgn[0] == 0
    assert res[1] == np.log(2) and sgn[1] == 1


def test_inf_present():
    assert fastlse.logsumexp([np.inf, 1.0]) == np.inf
    assert fastlse.logsumexp([np.inf, -np.inf]) == np.inf
    assert fastlse.logsumexp([np.inf, np.inf]) == np.inf


def test_nan_propagates():
    assert np.isnan(fastlse.logsumexp([np.nan, 1.0]))
    assert np.isnan(fastlse.logsumexp([np.inf, np.nan]))
    assert np.isnan(fastlse.logsumexp([-np.inf, np.nan]))
    assert np.isnan(fastlse.logsumexp([np.nan, np.nan]))
    res, sgn = fastlse.logsumexp([np.nan], return_sign=True)
    assert np.isnan(res) and np.isnan(sgn)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_special_rows_match_scipy(dtype):
    x = np.array(
        [
            [-np.inf, -np.inf, -np.inf, -np.inf],
            [np.inf, 1, 2, -np.inf],
            [np.nan, 1, 2, 3],
            [np.inf, np.nan, 0, 0],
            [-np.inf, np.nan, -np.inf, -np.inf],
            [1e30, 1e30, -1e30, 0],
            [-1e30, -1e30, -1e30, -1e30],
            [5, 5, 5, 5],
        ],
        dtype=dtype,
    )
    for axis in (1, 0):
        xx = x if axis == 1 else np.ascontiguousarray(x.T)
        with np.errstate(all="ignore"):
            ref = sp.logsumexp(xx, axis=axis)
        np.testing.assert_allclose(fastlse.logsumexp(xx, axis=axis), ref, rtol=tol(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "shape", [(300, 40), (1100, 100), (70, 20000), (3000, 10), (3000, 13), (700, 4), (600, 31)]
)
def test_special_rows_in_row_blocks(rng, dtype, shape):
    """Rows of 32 classes or more are finished by blocks of rows (one
    vectorized log1p), narrow rows run by transposed blocks of 256 rows (or
    blocks of 512): special rows at the start, middle and end of blocks
    (all -inf, +inf, nan, -inf with nan, huge) among ordinary ones, against
    scipy, on the threads and serial."""
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    m = shape[0]
    for i in (0, 1, 63, 64, 65, 255, 256, 511, 512, m // 2, m - 2, m - 1):
        x[i % m] = -np.inf
    x[1, 3] = np.inf
    x[63, 3] = np.nan
    x[64, :3] = np.nan
    x[65, 2] = 1e30
    x[255 % m, 1] = np.nan  # nan and -inf only: nan
    x[256 % m, 0] = np.inf  # inf and -inf only: inf
    x[511 % m, 3] = np.inf  # inf and nan: nan
    x[511 % m, 1] = np.nan
    x[m // 2, 0] = 0.0  # one finite element
    with np.errstate(all="ignore"):
        ref = sp.logsumexp(x.astype(np.float64), axis=1)
    for threads in (None, 1):
        if threads is None:
            res = fastlse.logsumexp(x, axis=1)
        else:
            with fastlse.num_threads(threads):
                res = fastlse.logsumexp(x, axis=1)
        assert res.dtype == dtype
        np.testing.assert_array_equal(np.isnan(res), np.isnan(ref))
        np.testing.assert_allclose(res, ref.astype(dtype), rtol=tol(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", [10, 40, 5000, 70000])
def test_one_finite_among_neg_inf_is_exact(dtype, n):
    """[0, -inf, ..., -inf]: logsumexp is exactly 0 and log_softmax exactly
    [0, -inf, ...] (closed form), on every path: narrow rows, rows, pieces of
    a long row, a vector, the middle axis.  (The exp's clamp once left a
    subnormal term per -inf: n * 6.8e-46 in float32.)"""
    x = np.full((3, n), -np.inf, dtype=dtype)
    x[:, 0] = 0.0
    x[1, n // 2] = -200.0  # exp(-200) is below float32's range: still 0 there
    expect = np.zeros(3, dtype)
    if dtype == np.float64:
        expect[1] = np.exp(-200.0)
    cases = [(x, 1), (np.ascontiguousarray(x.T), 0), (np.ascontiguousarray(x.T)[None], 1)]
    for a, axis in cases:
        np.testing.assert_array_equal(fastlse.logsumexp(a, axis=axis).ravel(), expect)
        ls = np.moveaxis(fastlse.log_softmax(a, axis=axis), axis, -1).reshape(3, n)
        assert np.all(ls[:, 0] == -expect) and np.all(ls[[0, 2], 1:] == -np.inf)
    assert fastlse.logsumexp(x[0]) == 0.0


def test_inf_with_opposite_weights_is_nan():
    assert np.isnan(fastlse.logsumexp([np.inf, np.inf], b=[1, -1]))
    assert np.isnan(sp.logsumexp([np.inf, np.inf], b=[1, -1]))


def test_zero_weights_hide_inf_and_nan():
    assert fastlse.logsumexp([np.nan, 1.0], b=[0, 1]) == 1.0
    assert fastlse.logsumexp([np.inf, 1.0], b=[0, 1]) == 1.0
    res, sgn = fastlse.logsumexp([np.inf, np.nan], b=[0, 0], return_sign=True)
    assert res == -np.inf and sgn == 0


def test_negative_weights_and_sign():
    res = fastlse.logsumexp([1, 2], b=[1, -1], return_sign=True)
    assert res == sp.logsumexp([1, 2], b=[1, -1], return_sign=True)
    assert np.isnan(fastlse.logsumexp([1, 2], b=[1, -1]))
    res, sgn = fastlse.logsumexp([1, 2], b=[-1, -1], return_sign=True)
    assert sgn == -1 and np.isclose(res, np.log(np.e + np.e**2), rtol=1e-15)


def test_exact_cancellation_is_minus_inf_with_sign_zero():
    res, sgn = fastlse.logsumexp([0.0, 0.0], b=[1, -1], return_sign=True)
    assert res == -np.inf and sgn == 0
    # scipy's direct fallback overflows to nan here; the sum is exactly zero
    res, sgn = fastlse.logsumexp([1000.0, 1000.0], b=[1, -1], return_sign=True)
    assert res == -np.inf and sgn == 0


def test_weighted_inf_one_sign():
    res, sgn = fastlse.logsumexp([np.inf, 1.0], b=[-2, 1], return_sign=True)
    assert res == np.inf and sgn == -1
    assert np.isnan(fastlse.logsumexp([np.inf, 1.0], b=[-2, 1]))


def test_max_weight_zero_sum_from_others():
    # the weight at the max cancels: the result comes from the other terms
    res, sgn = fastlse.logsumexp([0.0, 0.0, -1.0], b=[1, -1, 2], return_sign=True)
    assert sgn == 1 and np.isclose(res, np.log(2) - 1, rtol=1e-15)


# ------------------------------------------------------------------ empty --
def test_empty():
    assert fastlse.logsumexp([]) == -np.inf
    res = fastlse.logsumexp(np.zeros((3, 0)), axis=1)
    np.testing.assert_array_equal(res, [-np.inf] * 3)
    res = fastlse.logsumexp(np.zeros((0, 3)), axis=1)
    assert res.shape == (0,)
    res = fastlse.logsumexp(np.zeros((0, 3)), axis=0, keepdims=True)
    assert res.shape == (1, 3) and np.all(res == -np.inf)


def test_empty_sign_is_zero():
    # an empty sum is 0: sign 0 (scipy reports -1, the sign of its -inf)
    res, sgn = fastlse.logsumexp(np.zeros((2, 0)), axis=1, return_sign=True)
    np.testing.assert_array_equal(res, [-np.inf, -np.inf])
    np.testing.assert_array_equal(sgn, [0.0, 0.0])


def test_axis_empty_tuple_is_identity():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(fastlse.logsumexp(x, axis=()), sp.logsumexp(x, axis=()))


# ---------------------------------------------------------- large shapes ---
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((2, 300_000), 1), ((300_000,), None), ((3, 70_000, 2), 1), ((70_000, 40), 0)],
)
def test_parallel_paths_match_scipy(rng, dtype, shape, axis):
    # long rows split across threads, columns, many rows: all on the same algebra
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[7] = 30  # a clear max in one piece
    ref = sp.logsumexp(x.astype(np.float64), axis=axis)
    np.testing.assert_allclose(fastlse.logsumexp(x, axis=axis), ref, rtol=tol(dtype) * 4)


def test_long_row_specials_across_pieces():
    x = np.zeros(300_000)
    x[-1] = np.inf
    assert fastlse.logsumexp(x) == np.inf
    x[5] = np.nan
    assert np.isnan(fastlse.logsumexp(x))
    y = np.full(300_000, -np.inf)
    assert fastlse.logsumexp(y) == -np.inf
    y[200_000] = 3.0
    assert fastlse.logsumexp(y) == 3.0


# ------------------------------------------------------------- bad input ---
def test_axis_out_of_range():
    with pytest.raises(np.exceptions.AxisError):
        fastlse.logsumexp(np.ones((2, 3)), axis=2)
    with pytest.raises(np.exceptions.AxisError):
        fastlse.logsumexp(np.ones((2, 3)), axis=(0, -3))


def test_repeated_axis():
    with pytest.raises(ValueError, match="axis"):
        fastlse.logsumexp(np.ones((2, 3)), axis=(0, 0))


def test_axis_wrong_type():
    with pytest.raises(TypeError, match="axis"):
        fastlse.logsumexp(np.ones((2, 3)), axis=1.0)


def test_b_does_not_broadcast():
    with pytest.raises(ValueError, match="b"):
        fastlse.logsumexp([1, 2], b=[1, 1, 1])


def test_non_numeric():
    with pytest.raises(TypeError):
        fastlse.logsumexp(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="b"):
        fastlse.logsumexp([1.0, 2.0], b=np.array(["a", "b"]))


def test_input_not_modified_and_read_only(rng):
    x = rng.standard_normal((40, 50))
    b = rng.standard_normal((40, 50))
    x.setflags(write=False)
    b.setflags(write=False)
    x0, b0 = x.copy(), b.copy()
    fastlse.logsumexp(x, axis=1)
    fastlse.logsumexp(x, axis=0, b=b, return_sign=True)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(b, b0)


def test_empty_weighted_and_masked():
    res, sgn = fastlse.logsumexp(np.zeros((3, 0)), b=np.ones((3, 0)), axis=1, return_sign=True)
    np.testing.assert_array_equal(res, [-np.inf] * 3)
    np.testing.assert_array_equal(sgn, [0.0] * 3)
    res = fastlse.logsumexp(np.zeros((0, 4)), b=np.ones((0, 4)), axis=1)
    assert res.shape == (0,)
    res = fastlse.logsumexp(np.zeros((3, 0)), axis=1, where=np.ones((3, 0), bool))
    np.testing.assert_array_equal(res, [-np.inf] * 3)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 31, 32, 33, 1000, 4096, 4097])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_small_vectors_match_scipy(rng, dtype, n, axis):
    """1-d vectors (the no-planning path up to 4096 elements, the general one
    above), specials included, against scipy."""
    a = (rng.standard_normal(n) * 10).astype(dtype)
    res = fastlse.logsumexp(a, axis=axis)
    ref = sp.logsumexp(a, axis=axis)
    assert type(res) is type(ref) and res.dtype == ref.dtype
    np.testing.assert_allclose(res, ref, rtol=4 * np.finfo(dtype).eps)
    for special in ([-np.inf], [np.inf], [np.nan], [np.inf, -np.inf], [1000.0, 1000.0]):
        b = np.array(special + [0.0] * (n - len(special)) if n >= len(special) else special)
        b = b.astype(dtype)
        with np.errstate(all="ignore"):
            ref = sp.logsumexp(b, axis=axis)
        np.testing.assert_allclose(
            fastlse.logsumexp(b, axis=axis), ref, rtol=4 * np.finfo(dtype).eps
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((32, 10), -1),
        ((32, 10), 1),
        ((3, 4, 5), 2),
        ((3, 4, 5), None),
        ((128, 100), -1),
        ((8, 1000), -1),
        ((1, 7), -1),
        ((7, 1), -1),
        ((2, 3, 33), -1),
        ((600, 100), -1),  # over PARALLEL_MIN_WORK: the threads, still unplanned
        ((2, 40000), -1),
        ((3, 70000), -1),  # few long rows: pieces (planned)
        ((64, 64, 8), 1),  # one axis, not the last: column kernels, unplanned
        ((300, 2), 0),
        ((6, 40, 3), -2),
        ((4, 50, 40), 1),
    ],
)
@pytest.mark.parametrize("keepdims", [False, True])
def test_small_rows_match_scipy(rng, dtype, shape, axis, keepdims):
    """C-contiguous arrays along the last axis (or all of it), or along one
    other axis, skip the planning: value, type, dtype and shape as scipy's,
    specials included."""
    a = (rng.standard_normal(shape) * 10).astype(dtype)
    if a.shape[-1] >= 3:
        a[0, ..., 0] = np.inf
        a[-1, ..., :] = -np.inf
        a.reshape(-1, a.shape[-1])[a.size // a.shape[-1] // 2, 1] = np.nan
    with np.errstate(all="ignore"):
        ref = sp.logsumexp(a, axis=axis, keepdims=keepdims)
        res = fastlse.logsumexp(a, axis=axis, keepdims=keepdims)
    assert type(res) is type(ref) and res.dtype == ref.dtype
    assert np.shape(res) == np.shape(ref)
    np.testing.assert_allclose(res, ref, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("op", ["logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize(
    "make",
    [
        lambda x: x[::2],  # rows strided, each contiguous
        lambda x: x[:, ::3],  # nothing contiguous
        lambda x: (x * 8).astype(np.int32),  # converted to float64
    ],
    ids=["rows_strided", "cols_strided", "int32"],
)
def test_large_copied_inputs_by_blocks(rng, op, make):
    """An input that must be copied (strided, or of another dtype) and spans
    more than two copy blocks is copied a block of rows at a time through
    one buffer (no copy of its whole size): special rows at the blocks'
    edges, against scipy."""
    from fastlse._layout import COPY_BLOCK_BYTES, Layout

    a = make((rng.standard_normal((6200, 1200)) * 4).astype(np.float32))
    cdt = np.dtype(np.float64 if a.dtype.kind == "i" else np.float32)
    plan = Layout(a, (1,), dtype=cdt)
    assert plan.deferred and a.size * cdt.itemsize > 2 * COPY_BLOCK_BYTES
    m, n = a.shape
    rb = COPY_BLOCK_BYTES // (n * cdt.itemsize)  # rows per block
    if a.dtype.kind == "f":
        a[0] = -np.inf
        a[1, 5] = np.inf
        a[2, 7] = np.nan
        for r in (rb - 1, rb, 2 * rb - 1, 2 * rb, m - 1):
            a[r] = -np.inf
            a[r, r % n] = 1.0
    f, g = getattr(fastlse, op), getattr(sp, op)
    with np.errstate(all="ignore"):
        ref = g(a.astype(np.float64), axis=1)
    res = f(a, axis=1)
    assert res.dtype == cdt
    np.testing.assert_array_equal(np.isnan(res), np.isnan(ref))
    eps = np.finfo(cdt).eps
    np.testing.assert_allclose(res, ref, rtol=8 * eps, atol=8 * eps * 20)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_every_length_and_place(rng, dtype):
    """The rows' max sweep (``kernels.rows.row_max``: sixteen lanes, the
    last group masked, for a contiguous row; one loop for a strided one) is
    numpy's nanmax for every range length up to 200, at every offset into
    the array, with the max at every place (beside a nan); and -inf for an
    empty or all-nan range."""
    from numba import njit

    from fastlse.kernels.rows import row_max as rmax

    row_max = njit(lambda a, lo, hi: rmax(a, lo, hi))
    strided = njit(lambda a, lo, hi: rmax(a[::2], lo, hi))

    x = rng.standard_normal(400).astype(dtype)
    for lo in (0, 1, 5):
        for n in range(0, 200):
            hi = lo + n
            for at in range(lo, hi):
                y = x.copy()
                y[lo + (at - lo + 3) % n] = np.nan
                y[at] = 7.0
                assert row_max(y, lo, hi) == 7.0, (lo, n, at)
            if n:
                assert row_max(x, lo, hi) == np.nanmax(x[lo:hi])
    assert row_max(x, 3, 3) == -np.inf
    assert row_max(np.full(50, np.nan, dtype), 0, 50) == -np.inf
    for n in (0, 1, 17, 100):
        assert strided(x, 1, 1 + n) == np.nanmax(x[::2][1 : 1 + n], initial=-np.inf)
