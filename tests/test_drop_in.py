"""Regression tests for the defects found by trying fastlse as a drop-in for scipy
and torch, and for every deliberate difference from them (each documented in
"Differences from scipy and torch").

Each test is named for what it guards; references come from scipy, torch,
numpy or closed forms computed here.
"""

import numpy as np
import pytest

import fastlse

sp = pytest.importorskip("scipy.special")


# ------------------------------------------------ return_sign without b --
@pytest.mark.parametrize(
    ("a", "dtype"),
    [
        ([-50.0, -51.0], np.float16),  # exp(-49.7) underflows float16
        ([-110.0, -111.0], np.float32),
        ([-800.0, -801.0], np.float64),
        ([-1e4], np.float64),
    ],
)
def test_return_sign_is_one_where_exp_of_result_underflows(a, dtype):
    x = np.array(a, dtype=dtype)
    res, sgn = fastlse.logsumexp(x, return_sign=True)
    ref, ref_sgn = sp.logsumexp(x.astype(np.float64), return_sign=True)
    assert sgn == 1.0 and ref_sgn == 1.0
    assert np.asarray(sgn).dtype == dtype
    assert np.isclose(float(res), ref, rtol=2e-3)


@pytest.mark.parametrize("where", [None, np.array([[True, True, False], [True, True, True]])])
def test_return_sign_per_slice_special_values(where):
    x = np.array([[-800.0, -801.0, np.nan], [-np.inf, -np.inf, -np.inf]])
    x = np.vstack([x, [[np.nan, 0.0, 1.0]], [[np.inf, 0.0, 1.0]]])
    w = None if where is None else np.vstack([where, [[True] * 3], [[True] * 3]])
    res, sgn = fastlse.logsumexp(x, axis=1, return_sign=True, where=w)
    first = 1.0 if where is not None else np.nan  # the nan is masked out or not
    np.testing.assert_array_equal(sgn, [first, 0.0, np.nan, 1.0])
    assert res[3] == np.inf


def test_return_sign_on_dask_and_online_paths():
    da = pytest.importorskip("dask.array")
    x = np.array([[-800.0, -801.0], [-np.inf, -np.inf]])
    _, sgn = fastlse.logsumexp(da.from_array(x, chunks=1), axis=1, return_sign=True)
    np.testing.assert_array_equal(sgn.compute(scheduler="sync"), [1.0, 0.0])
    acc = fastlse.OnlineLogSumExp(axis=1).update(x[:, :1]).update(x[:, 1:])
    np.testing.assert_array_equal(acc.result(return_sign=True)[1], [1.0, 0.0])


# ------------------------------------------------------------- complex --
def test_gh21709_small_imaginary():
    # scipy's regression test: log(e**0 + e**(2.2e-17 j)); mpmath gives the reference
    res = fastlse.logsumexp([0, 0 + 2.2204460492503132e-17j])
    assert res.real == pytest.approx(0.6931471805599453, rel=1e-15)
    assert res.imag == pytest.approx(1.1102230246251566e-17, rel=1e-15)


# -------------------------------------------------------- masked arrays --
def test_masked_array_logsumexp_leaves_masked_elements_out():
    a = np.ma.array([1.0, 2.0, np.nan], mask=[0, 0, 1])
    assert fastlse.logsumexp(a) == pytest.approx(np.log(np.e + np.e**2), rel=1e-15)
    assert fastlse.logsumexp(a) == pytest.approx(sp.logsumexp(a), rel=1e-15)
    _, sgn = fastlse.logsumexp(a, return_sign=True)
    assert sgn == 1.0


def test_masked_array_rows_and_weights():
    x = np.ma.array([[1.0, 2.0, np.inf], [np.nan, 0.0, 3.0]], mask=[[0, 0, 1], [1, 0, 0]])
    ref = [sp.logsumexp([1.0, 2.0]), sp.logsumexp([0.0, 3.0])]
    np.testing.assert_allclose(fastlse.logsumexp(x, axis=1), ref, rtol=1e-15)
    np.testing.assert_allclose(fastlse.logsumexp(x, axis=1), sp.logsumexp(x, axis=1), rtol=1e-15)
    b = np.ma.array([2.0, -1.0, 5.0], mask=[0, 0, 1])  # a masked weight is absent too
    r0 = sp.logsumexp([1.0, 2.0], b=[2, -1], return_sign=True)  # 2e - e**2 < 0
    r1 = sp.logsumexp([0.0], b=[-1], return_sign=True)
    res, sgn = fastlse.logsumexp(x, axis=1, b=b, return_sign=True)
    np.testing.assert_allclose(res, [r0[0], r1[0]], rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(sgn, [r0[1], r1[1]])


def test_masked_array_fully_masked_slice_is_empty_sum():
    # log of an empty sum: -inf (scipy 1.17 gives 0.0 here, an artifact)
    y = np.ma.array([[1.0, 2.0], [3.0, 4.0]], mask=[[1, 1], [0, 0]])
    res = fastlse.logsumexp(y, axis=1)
    assert res[0] == -np.inf
    assert res[1] == pytest.approx(sp.logsumexp([3.0, 4.0]), rel=1e-15)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_masked_array_softmax_family(fn):
    x = np.ma.array(
        [[1.0, 2.0, np.nan, 0.5], [np.inf, 0.0, 0.0, 1.0]], mask=[[0, 0, 1, 0], [1, 0, 0, 0]]
    )
    res = getattr(fastlse, fn)(x, axis=1)
    assert isinstance(res, np.ma.MaskedArray)
    np.testing.assert_array_equal(res.mask, x.mask)
    ref = getattr(sp, fn)
    np.testing.assert_allclose(res[0].compressed(), ref([1.0, 2.0, 0.5]), rtol=1e-14)
    np.testing.assert_allclose(res[1].compressed(), ref([0.0, 0.0, 1.0]), rtol=1e-14)
    # where= narrows the mask further; out= gets the values and the mask
    out = np.ma.zeros(x.shape)
    where = np.array([[True, True, True, False], [True, True, True, True]])
    got = getattr(fastlse, fn)(x, axis=1, where=where, out=out)
    assert got is out
    np.testing.assert_array_equal(out.mask, x.mask)
    np.testing.assert_allclose(out[0, :2], ref([1.0, 2.0]), rtol=1e-14)


def test_masked_array_input_is_not_modified():
    x = np.ma.array([1.0, np.nan, 3.0], mask=[0, 1, 0])
    data, mask = x.data.copy(), x.mask.copy()
    fastlse.softmax(x)
    fastlse.logsumexp(x)
    np.testing.assert_array_equal(x.data, data)
    np.testing.assert_array_equal(x.mask, mask)


# ----------------------------------------- deliberate differences: scipy --
def test_empty_sum_sign_is_zero():
    # scipy returns sign -1 for a 0-size reduction (sign(-inf)); the sum is 0
    assert fastlse.logsumexp([], return_sign=True) == (-np.inf, 0.0)
    _, sgn = fastlse.logsumexp(np.full((2, 3), -np.inf), axis=1, return_sign=True)
    np.testing.assert_array_equal(sgn, [0.0, 0.0])


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_bool_input_computes_in_float64(fn):
    # scipy raises TypeError (numpy's boolean subtract); fastlse follows logsumexp's rule
    x = np.array([True, False, True])
    with pytest.raises(TypeError):
        getattr(sp, fn)(x)
    res = getattr(fastlse, fn)(x)
    assert res.dtype == np.float64
    np.testing.assert_allclose(res, getattr(sp, fn)(x.astype(np.float64)), rtol=1e-15)


@pytest.mark.parametrize("a", [[np.inf, 1.0], [np.nan, 1.0], [np.inf, -np.inf]])
def test_all_zero_weights_hide_inf_and_nan(a):
    # scipy's own rule (zero weights hide elements) gives an empty sum; scipy
    # itself returns nan there, from its direct fallback 0 * inf
    res, sgn = fastlse.logsumexp(a, b=[0, 0], return_sign=True)
    assert (res, sgn) == (-np.inf, 0.0)
    assert fastlse.logsumexp(a, b=[0, 0]) == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_sum_whose_terms_underflow_is_nan(dtype):
    # log of a negative number is nan (scipy's documented rule); scipy returns
    # -inf here because its fallback exp underflows to a sum of -0.0
    a = np.array([-800.0, -801.0], dtype=dtype)
    assert np.isnan(fastlse.logsumexp(a, b=[-1, -1]))
    res, sgn = fastlse.logsumexp(a, b=[-1, -1], return_sign=True)
    ref = sp.logsumexp(a.astype(np.float64), b=[-1, -1], return_sign=True)
    assert sgn == -1.0 and ref[1] == -1.0
    assert float(res) == pytest.approx(ref[0], rel=1e-6)


def test_exact_cancellation_at_overflow_is_an_empty_sum():
    # e**1000 - e**1000 == 0 exactly: -inf with sign 0 (scipy: nan from inf - inf)
    assert fastlse.logsumexp([1000.0, 1000.0], b=[1, -1], return_sign=True) == (-np.inf, 0.0)
    assert fastlse.logsumexp([1000.0, 1000.0], b=[1, -1]) == -np.inf
    # the same cancellation without overflow, where scipy agrees
    assert sp.logsumexp([0.0, 0.0], b=[1, -1], return_sign=True) == (-np.inf, 0.0)


# ----------------------------------------- deliberate differences: torch --
torch = pytest.importorskip("torch")


def test_cross_entropy_class_axis_of_torch_layout_is_inferred():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 6))
    t = rng.integers(0, 5, (4, 6))  # torch's (N, C, d): classes on axis 1
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(t))
    assert fastlse.cross_entropy(x, t) == pytest.approx(ref.item(), rel=1e-13)
    t2 = rng.integers(0, 6, (4, 5))  # classes last
    ref2 = torch.nn.functional.cross_entropy(
        torch.from_numpy(x).permute(0, 2, 1), torch.from_numpy(t2)
    )
    assert fastlse.cross_entropy(x, t2) == pytest.approx(ref2.item(), rel=1e-13)
    assert fastlse.nll_loss(x, t) == pytest.approx(
        torch.nn.functional.nll_loss(torch.from_numpy(x), torch.from_numpy(t)).item(), rel=1e-13
    )


def test_cross_entropy_ambiguous_class_axis_raises():
    # (4, 5, 5) logits with (4, 5) targets fit both layouts: never a silent guess
    x = np.zeros((4, 5, 5))
    t = np.zeros((4, 5), dtype=np.int64)
    with pytest.raises(ValueError, match=r"cross_entropy: the class axis .* ambiguous"):
        fastlse.cross_entropy(x, t)
    with pytest.raises(ValueError, match=r"nll_loss: the class axis .* ambiguous"):
        fastlse.nll_loss(x, t)
    with pytest.raises(ValueError, match=r"probabilities .* ambiguous"):
        fastlse.cross_entropy(x, np.full(x.shape, 0.2))
    # an explicit axis settles it, and 2-D logits need none
    assert np.isfinite(fastlse.cross_entropy(x, t, axis=1))
    assert np.isfinite(fastlse.cross_entropy(x[0], t[0]))


def test_cross_entropy_target_fitting_no_layout_names_both():
    with pytest.raises(ValueError, match=r"axis=1.*axis=-1"):
        fastlse.cross_entropy(np.zeros((4, 5, 6)), np.zeros((3, 3), dtype=np.int64))


def test_cross_entropy_ignored_row_with_nan_logits_has_zero_gradient():
    # torch's gradient of such a row is nan (0 * nan); the row is ignored
    x = np.array([[np.nan, 1.0, 2.0], [0.5, 1.0, 1.5]])
    t = np.array([-100, 2])
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(xt, torch.tensor(t)).backward()
    assert np.isnan(xt.grad.numpy()[0]).all()
    loss, grad = fastlse.cross_entropy(x, t, return_grad=True)
    np.testing.assert_array_equal(grad[0], 0.0)
    np.testing.assert_allclose(grad[1], xt.grad.numpy()[1], rtol=1e-13)
    ref = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t))
    assert loss == pytest.approx(ref.item(), rel=1e-13)
