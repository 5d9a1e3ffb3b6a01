"""The sixteen-lane reductions (kernels/lanes.py) against numpy, in their order."""

import numpy as np
import pytest
from numba import njit

from fastlse.kernels import rows
from fastlse.kernels.compile import EXACT, FASTMATH
from fastlse.kernels.exp import SUMSCALE32, SUMSCALE64
from fastlse.kernels.lanes import (
    LANES,
    PAIR_ROWS,
    SHORT_GROUPS,
    SUM_CHAINS,
    lanes_exp_sum,
    lanes_exp_sum_exp,
    lanes_exp_sum_shift,
    lanes_max,
    lanes_max_min,
    lanes_min_pos,
    lanes_softmax_short,
    lanes_sum,
    lanes_sum64,
    lanes_sum64_chains,
    lanes_sum_chains,
)


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


@njit(fastmath=FASTMATH)
def _max_min(a, lo, n):
    return lanes_max_min(a, lo, n), lanes_max(a, lo, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 16, 17, 40, 100, 1000])
def test_lanes_max_min(dtype, n):
    """One sweep gives the max (nan ignored) and the smallest element above
    -inf (nan and -inf ignored); the max is ``lanes_max``'s to the bit,
    signed zeros included."""
    rng = np.random.default_rng(n)
    a = (rng.standard_normal(n + 2) * 100).astype(dtype)
    a[1::7] = np.nan
    a[2::5] = -np.inf
    a[3::11] = 0.0
    a[4::13] = -0.0
    v = a[1 : 1 + n]
    (m, mn), m1 = _max_min(a, 1, n)
    assert np.signbit(m) == np.signbit(m1) and (m == m1 or (np.isnan(m) and np.isnan(m1)))
    kept = v[~np.isnan(v)]
    assert m == (kept.max() if kept.size else -np.inf)
    finite = kept[kept > -np.inf]
    assert mn == (finite.min() if finite.size else np.inf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lanes_max_min_special_rows(dtype):
    inf, nan = np.inf, np.nan
    for row, want in [
        ([-inf, -inf], (-inf, inf)),
        ([nan, nan, nan], (-inf, inf)),
        ([inf, 1.0, -inf], (inf, 1.0)),
        ([-inf] * 20 + [-3.0], (-3.0, -3.0)),
        ([2.0] * 33, (2.0, 2.0)),
    ]:
        got, _ = _max_min(np.array(row, dtype=dtype), 0, len(row))
        assert got == want, (row, got)


@njit(fastmath=EXACT)
def _chains(a, lo, n):
    return lanes_sum_chains(a, lo, n), lanes_sum64_chains(a, lo, n), lanes_sum64(a, lo, n)


def _in_chain_order(v, acc_dtype):
    """The chains' documented order with numpy's IEEE adds: groups of LANES
    elements, each whole run of SUM_CHAINS groups one group to each chain,
    the groups left over and the partial last one to chain 0; the chains
    added pairwise ((0 + 1) + (2 + 3)), then the lanes as ``_in_lane_order``."""
    chains = np.zeros((SUM_CHAINS, LANES), dtype=acc_dtype)
    w = v.astype(acc_dtype)
    groups = len(w) // LANES
    runs = groups // SUM_CHAINS
    for g in range(groups):
        c = g % SUM_CHAINS if g < runs * SUM_CHAINS else 0
        chains[c] = chains[c] + w[g * LANES : (g + 1) * LANES]
    tail = np.zeros(LANES, dtype=acc_dtype)
    tail[: len(w) - groups * LANES] = w[groups * LANES :]
    chains[0] = chains[0] + tail
    while len(chains) > 1:
        chains = chains[0::2] + chains[1::2]
    return _in_lane_order(chains[0], acc_dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 17, 63, 64, 65, 127, 128, 200, 255, 256, 1000, 2048])
def test_lane_chains_match_numpy_in_their_order(dtype, n):
    """The chained sums (softmax's float32 numerators) in their order, so the
    same bits on every target; under SUM_CHAINS * LANES elements the other
    chains add zeros: ``lanes_sum64``'s sum exactly."""
    rng = np.random.default_rng(n)
    lo = 5
    a = (rng.standard_normal(lo + n + 20) * 10.0 ** rng.integers(-3, 4, lo + n + 20)).astype(dtype)
    v = a[lo : lo + n]
    s, s64, one = _chains(a, lo, n)
    assert s == _in_chain_order(v, dtype)
    assert s64 == _in_chain_order(v, np.float64)
    if n < SUM_CHAINS * LANES:
        assert s64 == one
    if n:
        np.testing.assert_allclose(s64, v.astype(np.float64).sum(), rtol=1e-12, atol=1e-12)


def test_lanes_refused_in_reassoc_code():
    @njit(fastmath=FASTMATH)
    def reassoc(a):
        return lanes_sum(a, 0, a.shape[0])

    with pytest.raises(TypeError, match="reassoc"):
        reassoc(np.ones(4))


@njit(fastmath=EXACT)
def _exp_sums(x, lo, n, m, shifted, exps, inplace):
    """The three kinds of the exp-sum sweep over x[lo : lo + n]; the last
    one in place, on ``inplace`` (a copy of x)."""
    a = lanes_exp_sum(x, x, lo, n, m)
    b = lanes_exp_sum_shift(x, shifted, lo, n, m)
    c = lanes_exp_sum_exp(x, exps, lo, n, m)
    d = lanes_exp_sum_exp(inplace, inplace, lo, n, m)
    return a, b, c, d


def _sweep(x, lo, n, m):
    """_exp_sums with outputs of sentinels: (the four results, shifted,
    exps, the in-place copy)."""
    shifted = np.full_like(x, 7.0)
    exps = np.full_like(x, 7.0)
    inplace = x.copy()
    return _exp_sums(x, lo, n, m, shifted, exps, inplace), shifted, exps, inplace


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 5, 15, 16, 17, 31, 33, 100, 255, 1000])
def test_lanes_exp_sum_matches_numpy_in_its_order(dtype, n):
    """The exp-sum sweep: its stored exp(x - m) within 2 ulp of numpy's
    exp, its sum the documented lane order of those terms (scaled by 2**K:
    exact), the elements at m counted, nothing stored outside the range,
    the three kinds (and the in-place one) of one sum."""
    rng = np.random.default_rng(n)
    lo = 3
    x = (rng.standard_normal(lo + n + 20) * 4).astype(dtype)
    v = x[lo : lo + n]
    m = v.max() if n else dtype(0.0)
    if n > 2:
        v[1] = m  # a second element at the max: counted, not summed
    ((a, b, c, d), shifted, exps, inplace) = _sweep(x, lo, n, m)
    assert a == b == c == d
    outside = np.r_[0:lo, lo + n : x.size]
    assert np.all(shifted[outside] == 7.0) and np.all(exps[outside] == 7.0)
    np.testing.assert_array_equal(inplace[outside], x[outside])
    np.testing.assert_array_equal(shifted[lo : lo + n], v - m)
    e = exps[lo : lo + n]
    np.testing.assert_array_equal(inplace[lo : lo + n], e)
    ref = np.exp((v - m).astype(np.longdouble))
    assert np.all(np.abs(e - ref) <= 2 * np.spacing(ref.astype(dtype)))
    below = v < m
    scale = SUMSCALE32 if dtype == np.float32 else SUMSCALE64
    terms = np.where(below, e, 0).astype(dtype) / dtype(scale)  # exact: a power of two
    assert a[0] == _in_lane_order(terms, dtype)
    assert a[1] == n - below.sum()
    if n:
        np.testing.assert_allclose(
            a[0] * np.float64(scale), np.exp(v[below].astype(np.float64) - m).sum(), rtol=1e-5
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lanes_exp_sum_special_values(dtype):
    """-inf elements add 0 (at the clamp: not even a scaled subnormal), a
    nan makes the sum nan, elements far below the max underflow to 0."""
    x = np.array([0.0, -np.inf, -1.0, -1e4] + [-np.inf] * 20, dtype=dtype)
    ((a, _, _, _), _, exps, _) = _sweep(x, 0, x.size, dtype(0.0))
    scale = np.float64(SUMSCALE32 if dtype == np.float32 else SUMSCALE64)
    assert a[1] == 1.0
    assert a[0] * scale == pytest.approx(np.exp(-1.0), rel=1e-6)
    assert exps[1] == 0.0 and exps[3] == 0.0
    x[17] = np.nan
    ((a, _, _, _), _, exps, _) = _sweep(x, 0, x.size, dtype(0.0))
    assert np.isnan(a[0]) and np.isnan(exps[17])


def test_lanes_exp_sum_refused_in_reassoc_code():
    @njit(fastmath=FASTMATH)
    def reassoc(a):
        return lanes_exp_sum(a, a, 0, a.shape[0], 0.0)

    with pytest.raises(TypeError, match="reassoc"):
        reassoc(np.ones(4))


_SWEEPS = {"sum": rows.sum_excl, "shift": rows.sum_excl_shift, "exp": rows.sum_excl_exp}
_CHUNKED = {k: f.chunked for k, f in _SWEEPS.items()}
_sum_inline = _SWEEPS["sum"]
_shift_inline = _SWEEPS["shift"]
_exp_inline = _SWEEPS["exp"]
_sum_called = _CHUNKED["sum"]
_shift_called = _CHUNKED["shift"]
_exp_called = _CHUNKED["exp"]


@njit(fastmath=EXACT)
def _both_sweeps(x, o1, o2, m, kind):
    """The rows' exp-sum sweep of kind over x, inlined (short rows) and called."""
    if kind == 0:
        return _sum_inline(x, o1, m), _sum_called(x, o2, m)
    if kind == 1:
        return _shift_inline(x, o1, m), _shift_called(x, o2, m)
    return _exp_inline(x, o1, m), _exp_called(x, o2, m)


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 100, 127, rows.INLINE_SWEEP])
def test_inlined_sweep_is_the_called_one(kind, n):
    """A float32 row of up to ``INLINE_SWEEP`` runs the exp-sum sweep inlined
    in its caller; longer rows call it: the same sum, count and stores."""
    rng = np.random.default_rng(n + 7 * kind)
    x = (rng.standard_normal(n) * 30).astype(np.float32)
    x[rng.random(n) < 0.2] = -np.inf
    x[0] = 3.0
    m = np.float32(x.max())
    o1, o2 = np.full(n, 9.0, np.float32), np.full(n, 9.0, np.float32)
    (s1, k1), (s2, k2) = _both_sweeps(x, o1, o2, m, kind)
    assert (s1, k1) == (s2, k2) and k1 >= 1 and (s1 > 0 or n == 1)
    np.testing.assert_array_equal(o1, o2)
    if kind == 0:
        assert (o1 == 9.0).all()  # the plain sum stores nothing


@njit(fastmath=EXACT)
def _softmax_by_sweeps(x, out):
    """``row_softmax``'s sweeps for a row of any length: the max and min, the
    numerators stored and summed, the division (in float64 where a quotient
    may be subnormal)."""
    n = x.shape[0]
    m, xmin = rows.row_max_min(x, 0, n)
    if m == np.inf or m == -np.inf:  # scipy's all-nan row
        out[:] = np.nan
        return
    sx = rows.cast_to(out, rows.row_numer_store(x, out, 0, n, m))
    normal = rows._quotients_normal(out, rows.smallest_numer(xmin, m), sx)
    if not normal:
        normal = rows._quotients_normal(out, rows._smallest_term(out, n), sx)
    rows._divide_row(out, sx, np.float32(1.0) / sx, normal)


@njit(fastmath=EXACT)
def _softmax_row(x, out):
    rows.row_softmax_any(x, out, 0, x.shape[0])


def _short_rows(n, rng):
    """Rows of n float32: plain, spread (quotients near the subnormal range),
    masked by -1e9 (subnormal quotients: the float64 division), with -inf,
    with a nan, all equal."""
    plain = rng.standard_normal(n) * 3
    spread = rng.uniform(-95.0, 0.0, n)
    masked = np.where(rng.random(n) < 0.3, -1e9, plain)
    ninf = np.where(rng.random(n) < 0.3, -np.inf, plain)
    nan = plain.copy()
    nan[n // 2] = np.nan
    for r in (masked, ninf):
        r[0] = 1.0
    return [r.astype(np.float32) for r in (plain, spread, masked, ninf, nan, np.full(n, 2.5))]


@pytest.mark.parametrize("n", [1, 5, 15, 16, 17, 63, 64, 65, 100, 127, LANES * SHORT_GROUPS])
def test_short_softmax_is_the_sweeps(n):
    """A contiguous float32 row of up to ``SHORT_GROUPS * LANES`` runs softmax
    in ``lanes_softmax_short`` (the numerators held between one sweep of
    loads and one of stores): the bits of the sweeps it replaces, in place
    too; and softmax's values (scipy's closed form, in float64)."""
    for k, x in enumerate(_short_rows(n, np.random.default_rng(n))):
        got, want = np.full(n, 9.0, np.float32), np.full(n, 9.0, np.float32)
        _softmax_row(x, got)
        _softmax_by_sweeps(x, want)
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32), err_msg=f"row {k}")
        inplace = x.copy()
        _softmax_row(inplace, inplace)
        np.testing.assert_array_equal(inplace.view(np.int32), want.view(np.int32))
        # within the rounding of x - max (eps * |x - max|) and a few ulps
        d = x.astype(np.float64) - np.fmax.reduce(x)  # the max, nan ignored
        ref = np.exp(d) / np.exp(d).sum()
        with np.errstate(invalid="ignore"):
            bound = ref * 2.0**-23 * (np.abs(d) + 4) + 1e-44
            ok = (np.abs(got - ref) <= bound) | (np.isnan(ref) & np.isnan(got)) | (got == ref)
        assert ok.all(), (k, got[~ok], ref[~ok])


def test_short_softmax_refused_in_reassoc_code():
    @njit(fastmath=FASTMATH)
    def reassoc(a):
        return lanes_softmax_short(a, a, 0, a.shape[0], np.float32(0.0))

    with pytest.raises(TypeError, match="reassoc"):
        reassoc(np.ones(4, np.float32))


@njit(fastmath=EXACT)
def _pairs_both_ways(x, out1, out2, shift):
    """The pairs of x's rows by ``block_pairs`` / ``block_shift_pairs`` (rows
    of ``PAIR_ROWS`` interleaved) and row by row (``row_pair`` /
    ``row_shift_pair``)."""
    m = x.shape[0]
    mo1, to1, mo2, to2 = np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    if shift:
        rows.block_shift_pairs(x, out1, 0, m, mo1, to1)
        for i in range(m):
            mo2[i], to2[i] = rows.row_shift_pair(x[i], out2[i])
    else:
        rows.block_pairs(x, 0, m, mo1, to1)
        for i in range(m):
            mo2[i], to2[i] = rows.row_pair(x[i], 0, x.shape[1])
    return mo1, to1, mo2, to2


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("n", [1, 5, 16, 17, 48, 100, rows.INLINE_SWEEP])
def test_interleaved_pairs_are_the_rows(n, shift):
    """Short float32 rows take their (m, t) pairs ``PAIR_ROWS`` at a time by
    ``lanes_pairs`` (log_softmax: ``lanes_pairs_shift``, storing x - m):
    the pairs and stores of the sweeps row by row, bit for bit, for every
    count of rows left over and rows of special values; and the pairs are
    the max and ``sum(exp(x - m)) - 1`` (numpy, float64)."""
    rng = np.random.default_rng(n)
    for m in range(1, 2 * PAIR_ROWS + 2):
        x = (rng.standard_normal((m, n)) * 30).astype(np.float32)
        specials = [-np.inf, np.inf, np.nan, 5.0]
        for i in range(1, m, 2):  # every other row: a special value somewhere
            x[i, rng.integers(n)] = specials[i // 2 % 4]
        if m > 4:
            x[4] = -np.inf
        out1, out2 = np.full_like(x, 9.0), np.full_like(x, 9.0)
        mo1, to1, mo2, to2 = _pairs_both_ways(x, out1, out2, shift)
        for a, b in ((mo1, mo2), (to1, to2)):
            np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
        finite = np.isfinite(mo2)
        np.testing.assert_array_equal(out1[finite].view(np.int32), out2[finite].view(np.int32))
        plain = finite & ~np.isnan(x).any(axis=1)
        x64 = x[plain].astype(np.float64)
        mx = x64.max(axis=1)
        np.testing.assert_array_equal(mo1[plain], mx)
        t = np.exp(x64 - mx[:, None]).sum(axis=1) - 1.0
        np.testing.assert_allclose(to1[plain], t, rtol=1e-5, atol=1e-6)
        if shift:
            np.testing.assert_array_equal(out1[plain], x[plain] - mx[:, None].astype(np.float32))


@njit(fastmath=EXACT)
def _block_softmax(x, out):
    rows.block_softmax(x, out, 0, x.shape[0])


@pytest.mark.parametrize("n", [1, 17, 48, 100, LANES * SHORT_GROUPS])
def test_interleaved_softmax_is_the_sweeps(n):
    """``softmax_rows``' short rows run ``PAIR_ROWS`` at a time
    (``lanes_softmax_rows``): each row has the bits of the sweeps
    (``_softmax_by_sweeps``), whatever rows share its block (plain, spread,
    masked by -1e9, -inf, nan, constant; only -inf, +inf) and however many
    rows are left over; in place too."""
    rng = np.random.default_rng(n + 1)
    special = [
        *_short_rows(n, rng),
        np.full(n, -np.inf, np.float32),
        np.full(n, np.inf, np.float32),
    ]
    for m in range(1, 2 * PAIR_ROWS + 2):
        x = np.stack([special[k] for k in rng.integers(0, len(special), m)])
        want = np.full_like(x, 9.0)
        for i in range(m):
            _softmax_by_sweeps(x[i], want[i])
        got = np.full_like(x, 9.0)
        _block_softmax(x, got)
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32), err_msg=f"{m} rows")
        _block_softmax(x, x)
        np.testing.assert_array_equal(x.view(np.int32), want.view(np.int32), err_msg="in place")
