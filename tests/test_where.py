"""where= masks: masked-out elements are absent (closed forms and scipy on the
selected elements; jax's conventions for fully masked slices)."""

import numpy as np
import pytest

import fastlse

sp = pytest.importorskip("scipy.special")


def _rowwise(f, x, w):
    """Reference: the scipy function on each row's selected elements."""
    out = []
    for r, m in zip(x, w):
        out.append(f(r[m]) if m.any() else None)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ncols", [7, 100])
def test_logsumexp_where_rows(rng, dtype, ncols):
    x = (rng.standard_normal((20, ncols)) * 3).astype(dtype)
    w = rng.random((20, ncols)) < 0.6
    w[3] = False  # a fully masked row
    x[~w] = np.inf  # masked-out inf / nan have no effect
    x[5, ~w[5]] = np.nan
    res = fastlse.logsumexp(x, axis=1, where=w)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for i, ref in enumerate(_rowwise(sp.logsumexp, x, w)):
        if ref is None:
            assert res[i] == -np.inf
        else:
            np.testing.assert_allclose(res[i], ref, rtol=tol)


@pytest.mark.parametrize("axis", [None, 0, (0, 2)])
def test_logsumexp_where_axes_and_broadcast(rng, axis):
    x = rng.standard_normal((4, 5, 6))
    w = rng.random((5, 1)) < 0.7  # broadcasts against x
    w[0] = True
    wb = np.broadcast_to(w, x.shape)
    ref = sp.logsumexp(np.where(wb, x, -np.inf), axis=axis)
    np.testing.assert_allclose(fastlse.logsumexp(x, axis=axis, where=w), ref, rtol=1e-13)


def test_logsumexp_where_with_weights_and_sign():
    a = np.array([1.0, 2.0, np.nan, 3.0])
    b = np.array([1.0, -1.0, 5.0, 2.0])
    w = np.array([True, True, False, False])
    res = fastlse.logsumexp(a, b=b, where=w, return_sign=True)
    assert res == sp.logsumexp(a[:2], b=b[:2], return_sign=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_where(rng, dtype):
    x = (rng.standard_normal((12, 9)) * 2).astype(dtype)
    w = rng.random((12, 9)) < 0.5
    w[0] = False
    w[1] = True
    x[~w] = np.nan
    s = fastlse.softmax(x, axis=1, where=w)
    ls = fastlse.log_softmax(x, axis=1, where=w)
    tol = 3e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_array_equal(s[~w], 0.0)
    np.testing.assert_array_equal(ls[~w], -np.inf)
    for i in range(12):
        if w[i].any():
            np.testing.assert_allclose(s[i, w[i]], sp.softmax(x[i, w[i]]), rtol=tol)
            np.testing.assert_allclose(ls[i, w[i]], sp.log_softmax(x[i, w[i]]), rtol=tol, atol=tol)
    assert s.dtype == dtype and ls.dtype == dtype


def test_fully_masked_conventions():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.array([[False, False], [True, False]])
    np.testing.assert_array_equal(fastlse.softmax(x, axis=1, where=w), [[0, 0], [1, 0]])
    np.testing.assert_array_equal(
        fastlse.log_softmax(x, axis=1, where=w), [[-np.inf, -np.inf], [0, -np.inf]]
    )
    np.testing.assert_array_equal(fastlse.logsumexp(x, axis=1, where=w), [-np.inf, 3.0])


def test_where_axis0_and_out(rng):
    x = rng.standard_normal((6, 4))
    w = rng.random((6, 4)) < 0.7
    w[:, 0] = True
    out = np.empty_like(x)
    res = fastlse.softmax(x, axis=0, where=w, out=out)
    assert res is out
    for j in range(4):
        np.testing.assert_allclose(out[w[:, j], j], sp.softmax(x[w[:, j], j]), rtol=1e-13)
        assert np.all(out[~w[:, j], j] == 0)


def test_where_bad():
    with pytest.raises(TypeError, match="where"):
        fastlse.logsumexp([1.0, 2.0], where=[1, 0])
    with pytest.raises(ValueError, match="where"):
        fastlse.softmax(np.ones((2, 3)), where=np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="where"):
        fastlse.logsumexp(np.ones((2, 3)), where=np.ones(4, bool))
