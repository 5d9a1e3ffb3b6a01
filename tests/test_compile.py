"""The ways kernels are compiled (kernels/compile.py): ``stack_array``."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from fastlse.kernels.compile import jit, stack_array

_N = 24


@jit
def _prefix_sums(x, out):
    """out[k] = x[0] + ... + x[k] through a scratch array on the stack."""
    s = stack_array(_N, np.float64)
    acc = 0.0
    for k in range(x.shape[0]):
        acc += x[k]
        s[k] = acc
    for k in range(x.shape[0]):
        out[k] = s[k]
    return s.shape[0], s.itemsize


@pytest.mark.parametrize("n", [1, 7, _N])
def test_stack_array_is_scratch_of_its_size(n):
    x = np.arange(1.0, n + 1.0)
    out = np.zeros(n)
    size, itemsize = _prefix_sums(x, out)
    assert (size, itemsize) == (_N, 8)
    np.testing.assert_array_equal(out, np.cumsum(x))


def test_stack_array_types():
    @njit
    def f():
        a = stack_array(3, np.float32)
        a[:] = 1.5
        return a.sum()

    assert f() == 4.5


def test_stack_array_wants_a_constant_size():
    @njit
    def f(n):
        return stack_array(n, np.float64).shape[0]

    with pytest.raises(TypingError):
        f(5)
