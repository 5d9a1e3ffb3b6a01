"""Shared fixtures: a seeded rng, dtypes, axis forms and memory layouts."""

import os

import numpy as np
import pytest

try:
    from hypothesis import settings
except ImportError:  # the property tests skip without it
    settings = None

if settings is not None:
    # The same examples on every run (CI and the README's test command): a red
    # run then means a change of the code, not a new draw. For hunting, draw
    # new examples with FASTLSE_HYPOTHESIS=explore.
    settings.register_profile("fastlse", derandomize=True)
    settings.register_profile("explore", derandomize=False)
    settings.load_profile(
        "explore" if os.environ.get("FASTLSE_HYPOTHESIS") == "explore" else "fastlse"
    )


#: the slow tests (the asv suite run once, ``python -m fastlse --quick``,
#: processes started at once, the dask example and its local cluster of
#: worker processes) run with FASTLSE_TEST_SLOW=1; CI's 15 minutes on 2
#: cores leave them out (docs/development.md)
SLOW = os.environ.get("FASTLSE_TEST_SLOW") == "1"
slow = pytest.mark.skipif(not SLOW, reason="FASTLSE_TEST_SLOW=1 runs it (CI's time)")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


FLOAT_DTYPES = [np.float32, np.float64]

# (shape, axis) combinations covering None, ints, negatives, tuples, middle axes
AXIS_CASES = [
    ((7,), None),
    ((7,), 0),
    ((5, 9), None),
    ((5, 9), 0),
    ((5, 9), 1),
    ((5, 9), -1),
    ((5, 9), (0, 1)),
    ((4, 6, 5), 1),
    ((4, 6, 5), -2),
    ((4, 6, 5), (0, 2)),
    ((4, 6, 5), (1, 2)),
    ((4, 6, 5), (0, 1)),
    ((3, 4, 5, 2), (1, 2)),
    ((3, 4, 5, 2), (0, 3)),
    ((3, 4, 5, 2), ()),
]


def make_layout(x, layout):
    """The same values as x, laid out C-contiguous, F-contiguous or strided."""
    if layout == "C":
        return np.ascontiguousarray(x)
    if layout == "F":
        return np.asfortranarray(x)
    big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
    view = big[tuple(slice(None, None, 2) for _ in x.shape)]
    view[...] = x
    return view


LAYOUTS = ["C", "F", "strided"]
