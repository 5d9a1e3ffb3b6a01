"""Every bad argument gets numpy's kind of error, naming the function and
the argument (axis errors included, which numpy's helpers leave unnamed)."""

import numpy as np
import pytest

import fastlse

X = np.zeros((3, 4))
T = np.array([0, 1, 2])

CASES = [
    ("logsumexp", lambda: fastlse.logsumexp(X, axis=2), np.exceptions.AxisError, "axis 2"),
    ("logsumexp", lambda: fastlse.logsumexp(X, axis=1.5), TypeError, "axis"),
    ("softmax", lambda: fastlse.softmax(X, axis=-3), np.exceptions.AxisError, "axis -3"),
    ("softmax", lambda: fastlse.softmax(np.array(["a"])), TypeError, "dtype"),
    ("log_softmax", lambda: fastlse.log_softmax(X, axis=(0, 0)), ValueError, "repeated axis"),
    ("logcumsumexp", lambda: fastlse.logcumsumexp(X, axis=3), np.exceptions.AxisError, "axis 3"),
    ("cross_entropy", lambda: fastlse.cross_entropy(X, T, axis=5), np.exceptions.AxisError, "axis"),
    ("nll_loss", lambda: fastlse.nll_loss(X, T, axis=5), np.exceptions.AxisError, "axis"),
    ("linear_cross_entropy", lambda: fastlse.linear_cross_entropy(X, X[:, :2], T), ValueError,
     "weight"),
    ("OnlineLogSumExp", lambda: fastlse.OnlineLogSumExp(axis=7).update(X), np.exceptions.AxisError,
     "axis 7"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "call", "exc", "what"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES]
)
def test_error_names_function_and_argument(fn, call, exc, what):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(fn), msg
    assert what in msg, msg
