"""log_sigmoid against torch's logsigmoid, closed forms and special values."""

import math

import numpy as np
import pytest

import fastlse

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [17, 100_000])  # serial and threaded kernels
def test_matches_torch(rng, dtype, n):
    x = (rng.standard_normal(n) * 30).astype(dtype)
    res = fastlse.log_sigmoid(x)
    ref = torch.nn.functional.logsigmoid(torch.from_numpy(x)).numpy()
    assert res.dtype == dtype and res.shape == x.shape
    tol = 2e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(res, ref, rtol=tol, atol=3e-45)  # f32 subnormals


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_arguments_keep_relative_accuracy(dtype):
    xs = [1.0, 5.0, 20.0, 40.0, 80.0, -20.0, -80.0, -1e4]
    res = fastlse.log_sigmoid(np.array(xs, dtype=dtype))
    # closed forms in exact arithmetic: log sigmoid(x) = -log1p(exp(-x))
    ref = [-math.log1p(math.exp(-v)) if v > 0 else v - math.log1p(math.exp(v)) for v in xs]
    tol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(res, np.array(ref), rtol=tol)
    assert res[3] < 0  # -exp(-40) does not round to 0


def test_special_values():
    res = fastlse.log_sigmoid(np.array([np.inf, -np.inf, np.nan, 0.0, -0.0]))
    np.testing.assert_array_equal(res[:3], [0.0, -np.inf, np.nan])
    np.testing.assert_allclose(res[3:], -math.log(2), rtol=1e-16)
    f32 = fastlse.log_sigmoid(np.float32([100.0, -1e30]))
    assert f32.dtype == np.float32 and f32[0] < 0 and f32[1] == np.float32(-1e30)


def test_shapes_layouts_and_dtypes(rng):
    x = rng.standard_normal((4, 6, 5))
    ref = torch.nn.functional.logsigmoid(torch.from_numpy(x)).numpy()
    for view, r in [(x, ref), (x.T, ref.T), (x[:, ::2, 1:], ref[:, ::2, 1:])]:
        np.testing.assert_allclose(fastlse.log_sigmoid(view), r, rtol=1e-14)
    s = fastlse.log_sigmoid(0.0)
    assert isinstance(s, np.float64) and s == np.float64(-math.log(2))
    assert fastlse.log_sigmoid(np.arange(3)).dtype == np.float64
    assert fastlse.log_sigmoid(np.zeros(3, np.float16)).dtype == np.float16
    assert fastlse.log_sigmoid(np.zeros((0, 3))).shape == (0, 3)
    with pytest.raises(TypeError, match="x"):
        fastlse.log_sigmoid(np.zeros(2, complex))


def test_input_not_modified(rng):
    x = rng.standard_normal(50)
    x.setflags(write=False)
    x0 = x.copy()
    fastlse.log_sigmoid(x)
    np.testing.assert_array_equal(x, x0)
