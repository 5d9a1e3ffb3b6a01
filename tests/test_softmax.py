"""softmax and log_softmax against scipy.special, closed forms and edge cases."""

import numpy as np
import pytest
from conftest import AXIS_CASES, FLOAT_DTYPES, LAYOUTS, make_layout

import fastlse

sp = pytest.importorskip("scipy.special")

FUNCS = [
    ("softmax", fastlse.softmax, sp.softmax),
    ("log_softmax", fastlse.log_softmax, sp.log_softmax),
]
IDS = [f[0] for f in FUNCS]
FLOATS = (np.float32, np.float64)


def tol(dtype):
    return {np.float16: 3e-3, np.float32: 3e-6, np.float64: 2e-14}[np.dtype(dtype).type]


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), AXIS_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_scipy(rng, name, f, ref_f, dtype, shape, axis, layout):
    x = make_layout((rng.standard_normal(shape) * 5).astype(dtype), layout)
    ref = ref_f(x, axis=axis)
    res = f(x, axis=axis)
    assert res.shape == ref.shape and res.dtype == ref.dtype
    np.testing.assert_allclose(res, ref, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize(
    "x", [3.0, np.float32(2), [1, 2, 3], np.int8([1, 2]), np.int16([1, 2]), np.float16([1, 2, 3])]
)
def test_dtype_and_return_type(name, f, ref_f, x):
    ref = ref_f(x)
    res = f(x)
    assert type(res) is type(ref)
    assert np.asarray(res).dtype == np.asarray(ref).dtype
    np.testing.assert_allclose(res, ref, rtol=2e-3)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_bool_input_gives_float64(name, f, ref_f):
    # scipy raises (numpy refuses bool subtraction); the float answer is clear
    res = f(np.array([True, False]))
    np.testing.assert_allclose(res, ref_f(np.array([1.0, 0.0])))


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_complex_like_scipy(name, f, ref_f):
    x = np.array([[1 + 1j, 2, -3j], [0.5, 1j, 2 - 1j]])
    for axis in (None, 0, 1):
        np.testing.assert_allclose(f(x, axis=axis), ref_f(x, axis=axis), rtol=1e-13)


# ------------------------------------------------------- closed forms ------
def test_classic_overflow_row():
    x = np.array([1000.0, 1001.0, 1002.0])
    e = np.exp([-2.0, -1.0, 0.0])
    np.testing.assert_allclose(fastlse.softmax(x), e / e.sum(), rtol=1e-15)
    np.testing.assert_allclose(fastlse.log_softmax(x), np.log(e / e.sum()), rtol=1e-15)


def test_log_softmax_log1p_accuracy():
    # scipy returns exactly 0.0 for the first element; the answer is -log1p(e^-40)
    res = fastlse.log_softmax(np.array([0.0, -40.0]))
    assert res[0] == -4.248354255291589e-18
    assert res[1] == -40.0 - 4.248354255291589e-18


def test_softmax_sums_to_one(rng):
    x = rng.standard_normal((50, 300)) * 30
    np.testing.assert_allclose(fastlse.softmax(x, axis=1).sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(fastlse.softmax(x, axis=0).sum(axis=0), 1.0, rtol=1e-14)


# ------------------------------------------------------ special values -----
SPECIAL_ROWS = np.array(
    [
        [-np.inf, -np.inf, -np.inf, -np.inf],
        [np.inf, 1, 2, -np.inf],
        [np.inf, np.inf, 0, 0],
        [np.nan, 1, 2, 3],
        [np.inf, np.nan, 0, 0],
        [-np.inf, np.nan, -np.inf, -np.inf],
        [-np.inf, 0, -np.inf, 1],
        [1e30, 1e30, -1e30, 0],
        [5, 5, 5, 5],
    ]
)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("axis", [0, 1])
def test_special_rows_match_scipy(name, f, ref_f, dtype, axis):
    x = SPECIAL_ROWS.astype(dtype)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    with np.errstate(all="ignore"):
        ref = ref_f(x, axis=axis)
    np.testing.assert_allclose(f(x, axis=axis), ref, rtol=tol(dtype))


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [4, 10, 31])
def test_special_rows_among_many_narrow_rows(rng, name, f, ref_f, dtype, n):
    # narrow rows run in blocks of rows (several blocks, on threads): special
    # rows at a block's start, middle and end keep scipy's answers
    m = 3000
    x = (rng.standard_normal((m, n)) * 5).astype(dtype)
    specials = np.full((SPECIAL_ROWS.shape[0], n), -np.inf)
    specials[:, :4] = SPECIAL_ROWS
    specials[7:, 4:] = -3.0  # rows with a finite max: finite filler
    for k, r in enumerate((0, 511, 512, 1000, 1023, 1500, 2047, 2048, 2999, 1)):
        x[r] = specials[k % specials.shape[0]]
    with np.errstate(all="ignore"):
        ref = ref_f(x.astype(np.float64), axis=1)
    res = f(x, axis=1)
    assert res.dtype == dtype
    # log_softmax near 0 is known to eps * |x| (absolute), not relatively
    eps = np.finfo(dtype).eps
    atol = 8 * eps * 20 if name == "log_softmax" else 1e-30
    np.testing.assert_allclose(res, ref, rtol=tol(dtype) * 4, atol=atol)
    assert np.array_equal(np.isnan(res), np.isnan(ref))


@pytest.mark.parametrize("shape", [(600, 48), (3000, 10), (40, 20), (128, 100), (4, 5000)])
def test_float32_subnormal_outputs_within_an_ulp(rng, shape):
    # logits spread far apart give outputs below float32's smallest normal;
    # in every row route, with special rows among them, each is within its
    # conditioning of the float64 answer: a few eps * (|x - max| + 1)
    # relative (x - max is rounded in float32), a few subnormals absolute
    # (such quotients take the float64 division: see rows.narrow_softmax)
    x = (rng.standard_normal(shape) * 30).astype(np.float32)
    x[1, : min(3, shape[1])] = [-np.inf, np.inf, 0.0][: shape[1]]
    x[2, 0] = np.nan
    x[3] = -np.inf
    res = fastlse.softmax(x, axis=1)
    with np.errstate(all="ignore"):
        ref = sp.softmax(x.astype(np.float64), axis=1)
    fi = np.finfo(np.float32)
    assert (ref[np.isfinite(ref)] < fi.tiny).mean() > 0.01  # the case is exercised
    with np.errstate(all="ignore"):
        d = np.abs(x - np.nanmax(x, axis=1, keepdims=True)).astype(np.float64)
    bound = 4 * fi.eps * (d + 1) * ref + 2 * fi.smallest_subnormal
    ok = np.abs(res.astype(np.float64) - ref) <= np.where(np.isfinite(bound), bound, 0)
    assert np.array_equal(np.isnan(res), np.isnan(ref))
    assert ok[~np.isnan(ref)].all()


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_subnormal_outputs_of_long_rows(rng, threads):
    # two rows of 70001 run in pieces of 23334 (``pieces_of``) against each
    # piece's max: a piece ~60 below the row's max (its float32 divisor,
    # scaled as its numerators, overflows: it divides in float64), one 3000
    # below (its divisor is inf in float64: zeros, as exp(-3000) rounds),
    # and the same rows among enough rows for the whole-row kernels
    x = (rng.standard_normal((2, 70001)) * 30).astype(np.float32)
    x[0, :23334] -= 60
    x[1, 23334:46668] -= 3000
    with np.errstate(all="ignore"):
        ref = sp.softmax(x.astype(np.float64), axis=1)
    fi = np.finfo(np.float32)
    assert (ref < fi.tiny).mean() > 0.1  # the case is exercised
    d = np.abs(x - x.max(axis=1, keepdims=True)).astype(np.float64)
    bound = 4 * fi.eps * (d + 1) * ref + 2 * fi.smallest_subnormal
    stacked = np.repeat(x, 8, axis=0)
    with fastlse.num_threads(threads):
        res = fastlse.softmax(x, axis=1)
        whole = fastlse.softmax(stacked, axis=1)[::8]
    for r in (res, whole):
        assert (np.abs(r.astype(np.float64) - ref) <= bound).all()
    assert (res[1, 23334:46668] == 0).all()


def test_float32_subnormal_outputs_masked(rng):
    # where=: the masked rows' kernel divides like the others (float64 where
    # a quotient may be subnormal); masked elements are absent (0), a nan
    # among the selected makes the row nan but for its masked elements
    x = (rng.standard_normal((64, 300)) * 30).astype(np.float32)
    w = rng.random(x.shape) < 0.8
    x[1, 5], w[1, 5] = np.nan, True
    x[2, 6], w[2, 6] = np.nan, False
    with np.errstate(all="ignore"):
        ref = sp.softmax(np.where(w, x, -np.inf).astype(np.float64), axis=1)
    ref[1] = np.where(w[1], np.nan, 0.0)
    res = fastlse.softmax(x, axis=1, where=w)
    fi = np.finfo(np.float32)
    assert (ref[w] < fi.tiny).mean() > 0.05  # the case is exercised
    mx = np.nanmax(np.where(w, x, -np.inf), axis=1, keepdims=True)
    d = np.abs(np.where(w, x, mx) - mx)
    bound = 4 * fi.eps * (d.astype(np.float64) + 1) * ref + 2 * fi.smallest_subnormal
    assert np.array_equal(np.isnan(res), np.isnan(ref))
    ok = np.abs(res.astype(np.float64) - ref) <= bound
    assert ok[~np.isnan(ref)].all()


@pytest.mark.parametrize(
    ("shape", "axis", "piece_bytes"),
    [
        ((3000, 40), 0, None),  # columns of a 2-D array
        ((3, 2000, 40), 1, None),  # a middle axis, slabs of columns
        ((3, 2000, 4), 1, None),  # folded
        ((2, 3000, 5), 1, 2048),  # folded, by pieces (exps recomputed)
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_float32_subnormal_along_columns(monkeypatch, rng, shape, axis, piece_bytes, threads):
    # the column kernels keep their terms scaled and divide a block (folded:
    # a piece, or a row) with a subnormal quotient in float64; the first
    # rows lie 60 below the rest (their blocks' divisors, scaled by the
    # running max, overflow: recomputed), -inf runs give exact zeros, and
    # logsumexp / log_softmax sum the same scaled terms
    from fastlse.kernels import columns as _columns

    if piece_bytes is not None:
        monkeypatch.setattr(_columns, "FOLD_PIECE_BYTES", piece_bytes)
    x = rng.standard_normal(shape) * 30
    xm = np.moveaxis(x, axis, -1)  # a view: the rows of the reduced axis
    xm[..., :300] -= 60
    xm[..., 0, 500:520] = -np.inf
    xm[..., 1, 7] = np.nan
    x = x.astype(np.float32)
    with np.errstate(all="ignore"):
        ref = sp.softmax(x.astype(np.float64), axis=axis)
        ref_lse = sp.logsumexp(x.astype(np.float64), axis=axis)
        ref_lsm = sp.log_softmax(x.astype(np.float64), axis=axis)
        d = np.abs(x - np.nanmax(x, axis=axis, keepdims=True)).astype(np.float64)
    fi = np.finfo(np.float32)
    assert (ref[np.isfinite(ref)] < fi.tiny).mean() > 0.05  # the case is exercised
    with fastlse.num_threads(threads):
        res = fastlse.softmax(x, axis=axis)
        lse = fastlse.logsumexp(x, axis=axis)
        lsm = fastlse.log_softmax(x, axis=axis)
    with np.errstate(all="ignore"):  # inf * 0 where x is -inf: no bound needed
        bound = 4 * fi.eps * (d + 1) * ref + 2 * fi.smallest_subnormal
        err = np.abs(lsm.astype(np.float64) - ref_lsm)
    assert np.array_equal(np.isnan(res), np.isnan(ref))
    ok = np.abs(res.astype(np.float64) - ref) <= np.where(np.isfinite(bound), bound, 0)
    assert ok[~np.isnan(ref)].all()
    assert (res[np.isinf(x)] == 0).all()
    np.testing.assert_allclose(lse, ref_lse, rtol=4 * fi.eps)
    scale_lsm = np.where(np.isfinite(d), d, 0) + 1
    assert np.array_equal(np.isnan(lsm), np.isnan(ref_lsm))
    fin = np.isfinite(ref_lsm)
    assert (err[fin] <= 4 * fi.eps * scale_lsm[fin]).all()


def test_float32_subnormal_outputs_one_row_as_in_a_block(rng):
    # a short 1-d row (one-row route) has the bits of the same row in a block
    x = (rng.standard_normal((64, 24)) * 40).astype(np.float32)
    block = fastlse.softmax(x, axis=1)
    for i in range(x.shape[0]):
        assert np.array_equal(fastlse.softmax(x[i]), block[i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1100, 40), (1100, 100), (300, 256), (70, 128)])
def test_log_softmax_special_rows_in_row_blocks(rng, dtype, shape):
    """log_softmax rows of up to 1 KiB run by blocks of rows (one vectorized
    log1p per block): special rows at the start, middle and end of blocks
    (all -inf, +inf, nan, -inf with nan, one finite, huge) among ordinary
    ones, against scipy, on the threads and serial."""
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    m = shape[0]
    for i in (0, 1, 2, 63, 64, 65, m // 2, m - 2, m - 1):
        x[i] = -np.inf
    x[1, 7] = np.inf
    x[63, 3] = np.nan
    x[64, :5] = np.nan
    x[65, 9] = 1e30
    x[m // 2, 0] = 0.0  # one finite element: exactly 0 there
    x[m - 1, :] = 2.0  # equal elements: -log(n)
    with np.errstate(all="ignore"):
        ref = sp.log_softmax(x.astype(np.float64), axis=1)
    eps = np.finfo(dtype).eps
    for threads in (None, 1):
        if threads is None:
            res = fastlse.log_softmax(x, axis=1)
        else:
            with fastlse.num_threads(threads):
                res = fastlse.log_softmax(x, axis=1)
        assert res.dtype == dtype
        np.testing.assert_array_equal(np.isnan(res), np.isnan(ref))
        np.testing.assert_allclose(res, ref, rtol=4 * eps, atol=8 * eps * 20)
        assert res[m // 2, 0] == 0.0
        assert np.all(res[m // 2, 1:] == -np.inf)
        np.testing.assert_allclose(res[m - 1], -np.log(shape[1]), rtol=2 * eps)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_special_values_long_rows(name, f, ref_f):
    # long rows are split across threads: specials must survive the merge
    n = 300_000
    rows = np.zeros((3, n))
    rows[0, -1] = np.inf
    rows[1, 10] = np.nan
    rows[2, :] = -np.inf
    rows[2, 250_000] = 1.0
    for r in rows:
        with np.errstate(all="ignore"):
            ref = ref_f(r)
        np.testing.assert_allclose(f(r), ref, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(("name", "f", "ref_f"), [*FUNCS, ("lse", fastlse.logsumexp, sp.logsumexp)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_middle_axis_across_blocks(name, f, ref_f, dtype):
    # (P, N, Q) reduced over N, N spanning many row blocks: specials and max
    # changes in early / late blocks, a running max of -inf, columns far below
    # their max in early blocks (softmax rescales or recomputes those blocks)
    rng = np.random.default_rng(7)
    n = 2000
    x = rng.standard_normal((3, n, 40)) * 4
    x[0, :, 0] = -np.inf
    x[0, 1500, 0] = 2.0  # -inf for many blocks, then finite
    x[0, :1200, 1] = -np.inf
    x[0, 5, 2] = np.nan
    x[0, 1900, 3] = np.nan
    x[0, 10, 4] = np.inf
    x[0, 1999, 5] = np.inf
    x[0, 700, 6] = np.inf
    x[0, 3, 6] = np.nan
    x[0, :, 7] = -np.inf
    x[0, 1, 7] = np.nan
    x[0, :, 8] = np.linspace(-500.0, 0.0, n)  # max last: early blocks far below
    x[0, :, 9] = np.linspace(-80.0, 0.0, n)
    x[0, :, 10] = 3.0  # ties everywhere
    x[1, :, 11] = np.linspace(0.0, 1e4, n)  # huge spread: exp underflows
    # -inf for many blocks, then values whose exp underflows float32: the
    # early blocks' divisor exp(max - 0) must not round to 0 (0 / 0 was nan)
    x[0, :, 12] = -np.inf
    x[0, 1999, 12] = -508.0
    x[1, :1000, 13] = -np.inf
    x[1, 1000:, 13] -= 300.0
    x = x.astype(dtype)
    with np.errstate(all="ignore"):
        ref = ref_f(x.astype(np.float64), axis=1)
    res = f(x, axis=1)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(res, ref, rtol=rtol, atol=1e-300 if name == "lse" else 1e-30)


@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("shape", [(64, 100), (16, 3000), (3, 100_000)])
def test_float32_mask_of_large_negatives_as_minus_inf(rng, shape, scale):
    """A mask written as -1e9 (exp underflows to a zero term) gives the bits of
    a mask of -inf, subnormal quotients (scale 30) included: the rows' check
    for subnormal quotients looks past the bound its smallest logit gives."""
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    masked = np.zeros(shape, dtype=bool)
    masked[:, ::7] = True
    a = np.where(masked, np.float32(-1e9), x)
    b = np.where(masked, np.float32(-np.inf), x)
    sa, sb = fastlse.softmax(a, axis=-1), fastlse.softmax(b, axis=-1)
    np.testing.assert_array_equal(sa, sb)
    assert not sa[masked].any()
    ref = sp.softmax(b.astype(np.float64), axis=-1)
    # exp's conditioning: eps * |x - max| relative, a subnormal spacing absolute
    eps = float(np.finfo(np.float32).eps)
    shift = np.abs(b.astype(np.float64) - b.max(axis=-1, keepdims=True))
    bound = ref * (eps * (4 + np.where(masked, 0.0, shift))) + 2.0**-149
    assert np.all(np.abs(sa - ref) <= bound)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    "shape",
    [
        (3, 600, 2100),  # slabs of whole rows: chunks of rows over 8 KiB (float32)
        (2, 700, 300),  # whole rows, several row blocks
        (1, 700, 300),  # fewer slabs than threads: rows split into L2 slabs
        (1, 300, 2048),  # fewer slabs than threads: rows in two chunks of 4 KiB
    ],
)
def test_middle_axis_slabs_match_scipy(rng, name, f, ref_f, dtype, shape):
    """Each slab rule of a middle axis (``columns.softmax_slabs``: whole rows,
    chunks, 4 KiB shares, L2 slabs), large magnitudes included, against
    scipy, with the same bits on 1 and 2 threads."""
    x = (rng.standard_normal(shape) * 100).astype(dtype)
    x[0, :, 5] += 400.0
    x[0, :, 6] = np.linspace(-500.0, 500.0, shape[1])
    ref = ref_f(x.astype(np.float64), axis=1)
    with fastlse.num_threads(1):
        one = f(x, axis=1)
    with fastlse.num_threads(2):
        two = f(x, axis=1)
    np.testing.assert_array_equal(one, two)
    # the conditioning of exp(x - m): eps * |x - m| relative (eps times the
    # factor first: ref * eps underflows for a subnormal ref), and up to a
    # subnormal's spacing absolute
    eps = np.finfo(dtype).eps
    shift = np.abs(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    if name == "softmax":
        bound = ref * (eps * (8 + 2 * shift)) + np.finfo(dtype).smallest_subnormal
    else:
        bound = eps * (8 + 2 * np.abs(ref) + shift)
    assert np.all(np.abs(two.astype(np.float64) - ref) <= bound)


@pytest.mark.parametrize(("name", "f", "ref_f"), [*FUNCS, ("lse", fastlse.logsumexp, sp.logsumexp)])
@pytest.mark.parametrize(
    ("n", "q", "dtype"),
    [
        *((n, q, dt) for n, q in [(40, 2), (33, 3), (70, 5), (37, 8), (300, 12)] for dt in FLOATS),
        (64, 31, np.float32),  # the widest folded float32 columns
        (5000, 3, np.float32),  # over PARALLEL_MIN_WORK: threads, pieces of few slabs
        (600, 8, np.float64),  # threads, a slab a task
    ],
)
@pytest.mark.parametrize("piece_bytes", [None, 256])
def test_special_values_few_columns_folded(monkeypatch, name, f, ref_f, dtype, n, q, piece_bytes):
    """A middle axis of few columns (float32 < 32, float64 < 16) is read as
    folded rows of k * q elements plus a rest of n % k rows (``kernels.columns``),
    by slabs or by pieces of a slab (small pieces forced: their pairs merged,
    then each piece's output): specials in the folded rows and in the rest,
    one kind per slab, against scipy."""
    from fastlse.kernels import columns as _columns

    if piece_bytes is not None:
        monkeypatch.setattr(_columns, "FOLD_PIECE_BYTES", piece_bytes)
    rng = np.random.default_rng(n * q)
    x = rng.standard_normal((8, n, q)) * 4
    c = (q - 1) // 2
    x[0, :, c] = -np.inf  # only -inf
    x[1, 2, c] = np.nan  # nan in the folded rows
    x[2, n - 1, c] = np.nan  # nan in the rest (or the last fold)
    x[3, 1, c] = np.inf
    x[4, n - 1, c] = np.inf
    x[5, :, c] = np.linspace(-500.0, 0.0, n)  # far below the max early on
    x[6, :, c] = 3.0  # ties
    x[7, : n // 2, :] = -np.inf  # -inf for half the rows of every column
    x = x.astype(dtype)
    assert _columns.folded(n, q, x.itemsize)
    with np.errstate(all="ignore"):
        ref = ref_f(x.astype(np.float64), axis=1)
    res = f(x, axis=1)
    assert res.dtype == dtype and res.shape == ref.shape
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    # log_softmax near 0 (-log1p(2.7e-6) at a column's max): scipy's log of the
    # rounded sum is off by ~eps there, fastlse's log1p is not
    atol = {"lse": 1e-300, "softmax": 1e-30, "log_softmax": 4 * np.finfo(dtype).eps}[name]
    np.testing.assert_allclose(res, ref, rtol=rtol, atol=atol)


# ------------------------------------------------------- parallel paths ----
@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((2, 300_000), 1),
        ((300_000,), None),
        ((3, 50_000, 3), 1),
        ((60_000, 30), 0),
        ((20_000, 30), 1),
    ],
)
def test_parallel_paths_match_scipy(rng, name, f, ref_f, dtype, shape, axis):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    ref = ref_f(x.astype(np.float64), axis=axis)
    np.testing.assert_allclose(f(x, axis=axis), ref, rtol=tol(dtype) * 4, atol=tol(dtype))


# -------------------------------------------------------------- out= -------
@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2)])
def test_out_buffer(rng, name, f, ref_f, layout, axis):
    x = rng.standard_normal((4, 5, 6))
    out = make_layout(np.zeros_like(x), layout)
    res = f(x, axis=axis, out=out)
    assert res is out
    np.testing.assert_allclose(out, ref_f(x, axis=axis), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_out_float32_from_float64_and_in_place(rng, name, f, ref_f):
    x = rng.standard_normal((8, 9))
    out = np.empty(x.shape, np.float32)
    f(x, axis=1, out=out)
    np.testing.assert_allclose(out, ref_f(x, axis=1), rtol=1e-6)
    y = x.copy()
    f(y, axis=1, out=y)  # in place is allowed when asked for
    np.testing.assert_allclose(y, ref_f(x, axis=1), rtol=1e-14)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", [40, 1000, 5003])
def test_in_place_rows_same_bits(rng, name, f, ref_f, dtype, n):
    """Rows written in place give the bits of a separate output (the fused
    log_softmax sweep stores while it sums; in place it must not sum in
    another order), and scipy's values."""
    x = (rng.standard_normal((16, n)) * 5).astype(dtype)
    x[3, 7] = -np.inf
    y = x.copy()
    f(y, axis=1, out=y)
    np.testing.assert_array_equal(y, f(x, axis=1))
    ref = ref_f(x.astype(np.float64), axis=1)
    np.testing.assert_allclose(y, ref, rtol=tol(dtype), atol=tol(dtype))
    a = np.concatenate([x, x[:, :1]], axis=1)  # out overlaps x shifted by one element
    f(a[:, :-1], axis=1, out=a[:, 1:])
    np.testing.assert_array_equal(a[:, 1:], f(x, axis=1))


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_out_bad(name, f, ref_f):
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="out"):
        f(x, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match="out"):
        f(x, out=np.empty((3, 4), dtype=np.int64))
    with pytest.raises(TypeError, match="out"):
        f(x, out=[[0.0] * 4] * 3)
    ro = np.empty((3, 4))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="out"):
        f(x, out=ro)


# -------------------------------------------------------------- bad input --
@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_bad_axis(name, f, ref_f):
    with pytest.raises(np.exceptions.AxisError):
        f([1.0, 2.0], axis=1)
    with pytest.raises(ValueError, match="axis"):
        f(np.ones((2, 2)), axis=(1, 1))
    with pytest.raises(TypeError, match="axis"):
        f(np.ones((2, 2)), axis=0.5)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_empty(name, f, ref_f):
    # numpy's max has no identity: scipy raises for an empty reduction
    with pytest.raises(ValueError):
        f([])
    with pytest.raises(ValueError):
        f(np.zeros((3, 0)), axis=1)
    res = f(np.zeros((0, 3)), axis=1)
    assert res.shape == (0, 3)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
def test_input_not_modified_read_only(rng, name, f, ref_f):
    x = rng.standard_normal((30, 40))
    x.setflags(write=False)
    x0 = x.copy()
    for axis in (None, 0, 1):
        f(x, axis=axis)
    np.testing.assert_array_equal(x, x0)


# ----------------------------------------------------- small inputs --------
@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((10,), None),
        ((10,), 0),
        ((10,), -1),
        ((32, 10), -1),
        ((32, 10), 1),
        ((3, 4, 5), 2),
        ((128, 100), -1),
        ((8, 1000), -1),
        ((2, 3, 33), None),
        ((1,), -1),
        ((5, 1), -1),
        ((600, 100), -1),  # over PARALLEL_MIN_WORK: the threads, still unplanned
        ((2, 40000), -1),
        ((2, 40000), None),  # one long row: pieces (planned)
        ((64, 64, 8), 1),  # one axis, not the last: column kernels, unplanned
        ((300, 2), 0),
        ((6, 40, 3), -2),
        ((4, 50, 40), 1),
    ],
)
def test_small_inputs_match_scipy(rng, name, f, ref_f, dtype, shape, axis):
    """C-contiguous float32 / float64 input along the last axis (or all of
    it), or along one other axis, skips the planning: values, dtype, shape and
    special rows as scipy's, ``out=`` written and returned, x untouched."""
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    if x.ndim >= 2 and x.shape[-1] >= 3:
        x[0, ..., 1] = -np.inf  # a -inf element, all -inf rows, a nan element
        x[-1, ..., :] = -np.inf
        if x.shape[0] > 2:
            x[1, ..., 2] = np.nan
    x0 = x.copy()
    with np.errstate(all="ignore"):
        ref = ref_f(x.astype(np.float64), axis=axis)
        res = f(x, axis=axis)
    assert type(res) is np.ndarray and res.shape == x.shape and res.dtype == dtype
    np.testing.assert_allclose(res, ref, rtol=tol(dtype) * 4, atol=tol(dtype))
    np.testing.assert_array_equal(np.isnan(res), np.isnan(ref))
    out = np.full_like(x, 7.0)
    with np.errstate(all="ignore"):
        assert f(x, axis=axis, out=out) is out
    np.testing.assert_array_equal(out, res)
    np.testing.assert_array_equal(x, x0)
    y = x.copy()  # in place (out shares x's memory) takes the general path
    with np.errstate(all="ignore"):
        f(y, axis=axis, out=y)
    np.testing.assert_allclose(y, ref, rtol=tol(dtype) * 4, atol=tol(dtype))


@pytest.mark.parametrize(
    ("f", "ref_f"),
    [
        (fastlse.softmax, sp.softmax),
        (fastlse.log_softmax, sp.log_softmax),
        (fastlse.logsumexp, sp.logsumexp),
    ],
    ids=["softmax", "log_softmax", "logsumexp"],
)
@pytest.mark.parametrize(("dtype", "n"), [(np.float32, 48), (np.float32, 10), (np.float64, 20)])
def test_narrow_rows_in_any_block(rng, f, ref_f, dtype, n):
    """Narrow rows (the block kernels) give the same bits in a call of 1200
    rows (on the threads: blocks of 300 rows on 2) as in a few rows of
    their own (one serial block) and alone: a row's sweeps never depend on
    its block.  +-500 offsets, the special values, and scipy's values."""
    x = rng.standard_normal((1200, n)) * 30 + rng.choice([-500.0, 500.0], (1200, 1))
    x = x.astype(dtype)
    x[295, 2], x[296, 3], x[297, 1] = np.nan, np.inf, -np.inf
    x[298] = -np.inf
    with np.errstate(invalid="ignore"):
        res = f(x, axis=1)
        for r0, r1 in [(290, 310), (0, 3), (1197, 1200)]:
            np.testing.assert_array_equal(f(x[r0:r1], axis=1), res[r0:r1])
        for r in (0, 299, 300, 1199):
            np.testing.assert_array_equal(f(x[r : r + 1], axis=1), res[r : r + 1])
        ref = ref_f(x.astype(np.float64), axis=1)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    ok = np.isfinite(ref)
    np.testing.assert_array_equal(res[~ok], ref[~ok].astype(dtype))  # nan, +-inf
    np.testing.assert_allclose(res[ok], ref[ok], rtol=tol, atol=tol)


@pytest.mark.parametrize(("name", "f", "ref_f"), FUNCS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# narrow widths (one-row narrow sweeps), rows, the vector route's last / past it, pieces
@pytest.mark.parametrize("n", [1, 7, 31, 32, 48, 63, 100, 4096, 4097, 70000])
def test_vector_as_its_one_row(rng, name, f, ref_f, dtype, n):
    """A 1-d vector (the "vector" route of a contiguous float32 / float64 one
    up to 4096 elements) gives its one row's result as a (1, n) array would,
    and as a row among others (as in a dask chunk), bit for bit, in its own
    dtype, with scipy's values: +-500 offsets and the special values."""
    x = (rng.standard_normal(n) * 30 + rng.choice([-500.0, 500.0])).astype(dtype)
    if n >= 7:
        x[3], x[5] = -np.inf, 1e4 if dtype == np.float64 else 80.0
    for axis in (None, 0, -1):
        res = f(x, axis=axis)
        assert res.dtype == dtype and res.shape == (n,)
        np.testing.assert_array_equal(res, f(x[None], axis=1)[0])
    if n <= 4096:  # (more rows than threads: not pieces)
        np.testing.assert_array_equal(res, f(np.tile(x, (5, 1)), axis=1)[3])
    with np.errstate(over="ignore"):  # scipy's log_softmax: exp(1e4 - max) of its own
        ref = ref_f(x.astype(np.float64))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(res, ref, rtol=tol, atol=tol if name == "softmax" else 0)
    for special in (np.nan, np.inf):
        y = x.copy()
        y[-1] = special
        with np.errstate(invalid="ignore", over="ignore"):
            np.testing.assert_array_equal(f(y), ref_f(y.astype(np.float64)).astype(dtype))


def test_fast_plan_memo_never_mixes_layouts(rng):
    """softmax / log_softmax remember the fast path's plan (route, kernel and
    view shape) by shape, strides, dtype and axis (``special._FAST_PLANS``):
    a repeated call gives the same bits, with or without ``out=``; an array
    of the same shape but other strides or dtype, or another axis, is its
    own entry and matches scipy, and the memo stays bounded."""
    from fastlse import special

    special._FAST_PLANS.clear()
    base = rng.standard_normal((6, 40)) * 30
    cases = [
        (base.astype(np.float32), 1),
        (base.astype(np.float32), 0),
        (base, 1),
        (np.asfortranarray(base), 1),  # other strides: the general path
        (base[:, ::2].copy(), 1),
        (base[:, ::2], 1),  # same shape as the one before, strided
        (base.astype(np.float32), None),
        (base[2], 0),  # a vector: the row kernel on it
        (base[2], None),
        (base[2:3], -1),  # (1, N): the same
        (base.reshape(2, 3, 40), 1),  # columns
        (base.reshape(2, 3, 40).astype(np.float32), -1),
    ]
    for x, axis in cases:
        for _, f, ref in FUNCS:
            first = f(x, axis=axis)
            again = f(x, axis=axis)
            out = np.full_like(x, np.nan, order="C")
            assert f(x, axis=axis, out=out) is out
            for res in (again, out):
                np.testing.assert_array_equal(first, res)
            assert first.dtype == x.dtype and first.shape == x.shape
            want = ref(x.astype(np.float64), axis=axis)
            e8 = 8 * np.finfo(x.dtype).eps  # log_softmax: values up to ~200
            atol = e8 * (1 if f is fastlse.softmax else 200)
            np.testing.assert_allclose(first, want, rtol=e8, atol=atol)
    assert 0 < len(special._FAST_PLANS) <= 2 * len(cases)
    for n in range(1, special._FAST_PLANS_MAX + 20):
        fastlse.softmax(np.zeros(n), axis=0)
        fastlse.softmax(np.zeros((2, n)), axis=1)
    assert len(special._FAST_PLANS) <= special._FAST_PLANS_MAX
