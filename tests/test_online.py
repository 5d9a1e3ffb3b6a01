"""OnlineLogSumExp: any chunking gives logsumexp of the concatenation."""

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlse
from fastlse import OnlineLogSumExp

sp = pytest.importorskip("scipy.special")

NAN, INF = np.nan, np.inf


def split(x, axis, bounds):
    """x cut along ``axis`` at the sorted ``bounds`` (empty pieces allowed)."""
    return np.split(x, sorted(bounds), axis=axis)


def run(pieces, axis, bs=None, **kw):
    acc = OnlineLogSumExp(axis=axis, **kw)
    for i, p in enumerate(pieces):
        acc.update(p, b=None if bs is None else bs[i])
    return acc


# ---------------------------------------------------------------- chunkings --
@settings(max_examples=40, deadline=None)
@given(
    axis=st.sampled_from([0, 1, -1]),
    bounds=st.lists(st.integers(0, 37), max_size=6),
    seed=st.integers(0, 2**16),
)
def test_any_chunking_equals_logsumexp(axis, bounds, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((37, 37)) * 10
    ref = sp.logsumexp(x, axis=axis)
    res = run(split(x, axis, bounds), axis).result()
    np.testing.assert_allclose(res, ref, rtol=1e-14)
    one = run([x], axis).result()  # a single chunk is the NumPy path exactly
    np.testing.assert_array_equal(one, fastlse.logsumexp(x, axis=axis))
    np.testing.assert_allclose(res, one, rtol=2e-15)


@pytest.mark.parametrize(
    ("shape", "axis", "cut"),
    [
        ((50,), None, 0),
        ((6, 40), None, 1),  # axis=None: pieces of any shape
        ((6, 40), (0, 1), 1),
        ((5, 30, 4), (1, 2), 1),
        ((5, 30, 4), (0, 1), 1),
        ((5, 30, 4), 1, 1),
        ((30, 3, 4), 0, 0),
    ],
)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axis_forms(rng, shape, axis, cut, keepdims, dtype):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    pieces = split(x, cut, [3, 3, 17, shape[cut] - 1])
    res = run(pieces, axis, keepdims=keepdims).result()
    ref = sp.logsumexp(x, axis=axis, keepdims=keepdims)
    assert np.shape(res) == np.shape(ref)
    assert np.asarray(res).dtype == np.asarray(ref).dtype == dtype
    r = 2e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(res, ref, rtol=r, atol=r)


def test_axis_none_mixed_shapes():
    rng = np.random.default_rng(1)
    pieces = [rng.standard_normal(5), rng.standard_normal((3, 4)), np.float64(7.0), np.ones(0)]
    ref = sp.logsumexp(np.concatenate([np.ravel(p) for p in pieces]))
    assert run(pieces, None).result() == pytest.approx(ref, rel=1e-15)


def test_memmap_read_chunk_by_chunk(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1000, 8)) * 3
    path = tmp_path / "data.f64"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=x.shape)
    acc = OnlineLogSumExp(axis=0)
    for lo in range(0, len(mm), 128):
        acc.update(mm[lo : lo + 128])
    np.testing.assert_allclose(acc.result(), sp.logsumexp(x, axis=0), rtol=1e-14)
    assert acc._state[0].shape == (1, 8)  # O(result size), whatever the length


# -------------------------------------------------------------------- merge --
def test_merge_associative_and_commutative(rng):
    xs = [rng.standard_normal((4, n)) * 20 for n in (5, 1, 9, 0, 30)]
    accs = [OnlineLogSumExp(axis=1).update(x) for x in xs]
    c = copy.deepcopy
    left = c(accs[0]).merge(accs[1]).merge(accs[2]).merge(accs[3]).merge(accs[4])
    right = c(accs[0]).merge(c(accs[1]).merge(c(accs[2]).merge(c(accs[3]).merge(accs[4]))))
    swapped = c(accs[4]).merge(accs[2]).merge(accs[0]).merge(accs[3]).merge(accs[1])
    ref = sp.logsumexp(np.concatenate(xs, axis=1), axis=1)
    for acc in (left, right, swapped):
        np.testing.assert_allclose(acc.result(), ref, rtol=1e-14)
    np.testing.assert_allclose(left.result(), right.result(), rtol=2e-16)


@settings(max_examples=30, deadline=None)
@given(
    vals=st.lists(
        st.one_of(st.floats(-50, 50), st.sampled_from([-INF, INF, NAN])), min_size=3, max_size=12
    ),
    cuts=st.lists(st.integers(0, 12), min_size=2, max_size=2),
)
def test_merge_associative_with_special_values(vals, cuts):
    x = np.array(vals)
    i, j = sorted(min(c, len(x)) for c in cuts)
    a, b, c = (OnlineLogSumExp().update(p) for p in (x[:i], x[i:j], x[j:]))
    ab_c = copy.deepcopy(a).merge(b).merge(c).result()
    a_bc = copy.deepcopy(a).merge(copy.deepcopy(b).merge(c)).result()
    ref = fastlse.logsumexp(x)
    with np.errstate(all="ignore"):
        ref_sp = sp.logsumexp(x)
    for res in (ab_c, a_bc):
        np.testing.assert_allclose(res, ref, rtol=1e-14)
        np.testing.assert_allclose(res, ref_sp, rtol=1e-14)


def test_merge_empty_and_mismatch():
    a = OnlineLogSumExp(axis=1).update(np.zeros((3, 4)))
    assert a.merge(OnlineLogSumExp(axis=1)) is a
    empty = OnlineLogSumExp(axis=1).merge(a)
    np.testing.assert_array_equal(empty.result(), a.result())
    with pytest.raises(ValueError, match="kept dimensions"):
        a.merge(OnlineLogSumExp(axis=1).update(np.zeros((2, 4))))
    with pytest.raises(ValueError, match="axis"):
        a.merge(OnlineLogSumExp(axis=0).update(np.zeros((3, 4))))
    with pytest.raises(TypeError):
        a.merge(np.zeros(3))


# ------------------------------------------------------------------- pickle --
def test_pickle_round_trip(rng):
    x = rng.standard_normal((3, 40))
    acc = OnlineLogSumExp(axis=-1, keepdims=True).update(x[:, :10])
    clone = pickle.loads(pickle.dumps(acc))
    assert repr(clone) == repr(acc)
    for a in (acc, clone):
        a.update(x[:, 10:])
    np.testing.assert_array_equal(clone.result(), acc.result())
    w = OnlineLogSumExp().update(x, b=-np.ones_like(x))
    back = pickle.loads(pickle.dumps(w))
    assert back.weighted
    assert back.result(return_sign=True) == w.result(return_sign=True)


# ------------------------------------------------------------------ weights --
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_weights_any_chunking(rng, axis):
    x = rng.standard_normal((12, 30)) * 4
    b = rng.uniform(-0.5, 2.0, x.shape)
    b[rng.random(x.shape) < 0.2] = 0
    ref, rsgn = sp.logsumexp(x, axis=axis, b=b, return_sign=True)
    cut = 1 if axis is None else axis
    for bounds in ([], [1, 5], [0, 0, 7, 11]):
        acc = run(split(x, cut, bounds), axis, split(b, cut, bounds))
        res, sgn = acc.result(return_sign=True)
        np.testing.assert_allclose(res, ref, rtol=1e-13)
        np.testing.assert_array_equal(sgn, rsgn)
        plain = acc.result()
        np.testing.assert_allclose(plain, fastlse.logsumexp(x, axis=axis, b=b), rtol=1e-13)


def test_weights_mixed_with_unweighted_chunks(rng):
    x = rng.standard_normal((4, 30))
    b = rng.uniform(-1.0, 1.0, (4, 10))
    acc = OnlineLogSumExp(axis=1).update(x[:, :10]).update(x[:, 10:20], b=b)
    acc.update(x[:, 20:], b=0.5)  # scalar weights broadcast
    assert acc.weighted
    full_b = np.concatenate([np.ones((4, 10)), b, np.full((4, 10), 0.5)], axis=1)
    ref, rsgn = fastlse.logsumexp(x, axis=1, b=full_b, return_sign=True)
    res, sgn = acc.result(return_sign=True)
    np.testing.assert_allclose(res, ref, rtol=1e-14)
    np.testing.assert_array_equal(sgn, rsgn)
    # and merged from the other side
    other = OnlineLogSumExp(axis=1).update(x[:, 10:20], b=b)
    mixed = OnlineLogSumExp(axis=1).update(x[:, :10]).merge(other)
    ref2 = fastlse.logsumexp(x[:, :20], axis=1, b=full_b[:, :20], return_sign=True)
    np.testing.assert_allclose(mixed.result(return_sign=True), ref2, rtol=1e-14)


def test_weights_zeros_hide_and_cancel():
    acc = OnlineLogSumExp()
    acc.update([INF, 1.0, NAN], b=[0.0, 1.0, 0.0])
    acc.update([-INF, -45.0], b=[1.0, 0.0])
    acc.update([1.0, -40.0], b=[-1.0, 1.0])  # cancels the first chunk's e**1 exactly
    res, sgn = acc.result(return_sign=True)
    assert res == pytest.approx(-40.0, rel=1e-15) and sgn == 1.0
    x = np.array([INF, 1.0, NAN, -INF, -45.0, 1.0, -40.0])
    b = np.array([0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 1.0])
    assert fastlse.logsumexp(x, b=b) == pytest.approx(-40.0, rel=1e-15)
    neg = OnlineLogSumExp().update([1.0, 2.0], b=[1.0, -1.0])
    assert np.isnan(neg.result())
    assert neg.result(return_sign=True)[1] == -1.0


def test_weights_infinities_of_both_signs():
    acc = OnlineLogSumExp().update([INF, 0.0], b=[1.0, 1.0]).update([INF], b=[-1.0])
    assert np.isnan(acc.result())
    acc = OnlineLogSumExp().update([INF], b=[-3.0]).update([5.0])
    assert acc.result(return_sign=True) == (INF, -1.0)


# ----------------------------------------------------------- special values --
def test_special_values_in_some_chunks():
    x = np.zeros((6, 12))
    x[0] = -INF
    x[1, 5] = INF
    x[2, 10] = NAN
    x[3, 0], x[3, 11] = INF, NAN
    x[4, :8] = -INF
    x[5, 4:8] = 700.0
    acc = run(split(x, 1, [4, 8]), 1)
    with np.errstate(all="ignore"):
        ref = sp.logsumexp(x, axis=1)
    np.testing.assert_allclose(acc.result(), ref, rtol=1e-14)
    _, sgn = acc.result(return_sign=True)
    np.testing.assert_array_equal(sgn, fastlse.logsumexp(x, axis=1, return_sign=True)[1])


def test_accurate_small_terms():
    acc = OnlineLogSumExp().update([0.0]).update([-40.0])
    assert acc.result() == fastlse.logsumexp(np.array([0.0, -40.0]))  # 4.2e-18, not 0
    assert acc.result() > 0


# --------------------------------------------------------- dtypes, errors --
@pytest.mark.parametrize(
    ("chunks", "dtype"),
    [
        ([np.float32([1, 2]), np.float32([3])], np.float32),
        ([np.int64([1, 2]), np.int8([3])], np.float64),
        ([np.float32([1, 2]), np.float64([3])], np.float64),
        ([np.float16([1, 2]), np.float16([3])], np.float16),
        ([[True, False]], np.float64),
    ],
)
def test_dtype_rules(chunks, dtype):
    res = run(chunks, None).result()
    assert res.dtype == dtype
    ref = sp.logsumexp(np.concatenate([np.asarray(c, dtype=np.float64) for c in chunks]))
    np.testing.assert_allclose(res, ref, rtol=2e-3 if dtype == np.float16 else 1e-6)


def test_errors_and_empty():
    assert OnlineLogSumExp().result() == -INF
    with pytest.raises(ValueError, match="no chunk yet"):
        OnlineLogSumExp(axis=0).result()
    acc = OnlineLogSumExp(axis=1).update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="must be"):
        acc.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dimensions"):
        acc.update(np.zeros((3, 4, 1)))
    with pytest.raises(ValueError, match="broadcast"):
        acc.update(np.zeros((3, 4)), b=np.ones(3))
    with pytest.raises(TypeError, match="complex"):
        acc.update(np.zeros((3, 4), dtype=complex))
    with pytest.raises(np.exceptions.AxisError):
        OnlineLogSumExp(axis=2).update(np.zeros((3, 4)))
    with pytest.raises(TypeError):
        OnlineLogSumExp(axis=1.5)
