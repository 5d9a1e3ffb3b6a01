"""Properties with hypothesis: invariances and identities of the lse family."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastlse

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
rows = hnp.arrays(np.float64, st.integers(1, 60), elements=finite)
settings.register_profile("fastlse", max_examples=60, deadline=None)
settings.load_profile("fastlse")


@given(rows, st.floats(-500, 500))
def test_translation_invariance(x, c):
    tol = 1e-13 * (1 + abs(c) + np.abs(x).max())
    assert abs(fastlse.logsumexp(x + c) - (fastlse.logsumexp(x) + c)) <= tol * 4


@given(rows, st.randoms())
def test_permutation_invariance(x, r):
    y = x.copy()
    r.shuffle(y)
    tol = 1e-13 * (1 + np.abs(x).max())
    assert abs(fastlse.logsumexp(y) - fastlse.logsumexp(x)) <= tol


@given(rows)
def test_softmax_sums_to_one_and_log_softmax_identity(x):
    s = fastlse.softmax(x)
    assert abs(s.sum() - 1) <= 1e-13 * len(x)
    assert np.all(s >= 0)
    ls = fastlse.log_softmax(x)
    np.testing.assert_allclose(ls, x - fastlse.logsumexp(x), atol=1e-12 * (1 + np.abs(x).max()))


@given(rows, st.integers(0, 60), st.integers(0, 60))
def test_merge_associativity(x, i, j):
    # lse of the whole == lse of the lse of pieces, however it is split
    i, j = sorted((min(i, len(x)), min(j, len(x))))
    parts = [x[:i], x[i:j], x[j:]]
    partial = np.array([fastlse.logsumexp(p) for p in parts])
    tol = 1e-13 * (1 + np.abs(x).max())
    assert abs(fastlse.logsumexp(partial) - fastlse.logsumexp(x)) <= tol * 4


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6), elements=finite)
)
def test_axis_tuples_equal_sequential(x):
    # reducing axes together equals reducing them one after the other
    if x.ndim < 2:
        return
    both = fastlse.logsumexp(x, axis=(0, x.ndim - 1))
    seq = fastlse.logsumexp(fastlse.logsumexp(x, axis=x.ndim - 1), axis=0)
    np.testing.assert_allclose(both, seq, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_matches_scipy_random(dtype, data):
    sp = pytest.importorskip("scipy.special")
    x = data.draw(hnp.arrays(dtype, st.integers(1, 40), elements=st.floats(-80, 80, width=32)))
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(fastlse.logsumexp(x), sp.logsumexp(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(fastlse.softmax(x), sp.softmax(x), rtol=tol * 10, atol=tol)
