"""fastlse.logcumsumexp against torch.logcumsumexp, jax.lax.cumlogsumexp and
np.logaddexp.accumulate.

``LogCumSumExpPeers``: the suite's peer table on ``common.CASES`` along each
dataset's axis, the peer a parameter like the other ``bench_*`` files.
``LogCumSumExp`` / ``LogCumSumExpTorch``: self-contained, fixed-seed data built
here (``np.random.default_rng(0)``), both axes and ``reverse=True``.
torch runs on numba's thread count, so the ratios compare equal threads;
``np.logaddexp.accumulate`` is single-threaded (and less accurate).
"""

import numba
import numpy as np

import fastlse

from .common import PeerBenchmark


class LogCumSumExpPeers(PeerBenchmark):
    """``logcumsumexp(x, axis)`` on every dataset by every peer."""

    op = "logcumsumexp"

    def time_logcumsumexp(self, shape, dtype, peer):
        self.run()


SHAPES = [(4096, 1000), (1_000_000, 10)]
DTYPES = ["float32", "float64"]
AXES = [-1, 0]


def _data(shape, dtype):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


class LogCumSumExp:
    """fastlse and numpy on (4096, 1000) and (1e6, 10), both axes, f32 / f64."""

    params = (SHAPES, DTYPES, AXES)
    param_names = ("shape", "dtype", "axis")
    timeout = 300

    def setup(self, shape, dtype, axis):
        self.x = _data(shape, dtype)
        fastlse.logcumsumexp(self.x, axis=axis)  # compile outside the timing

    def time_fastlse(self, shape, dtype, axis):
        fastlse.logcumsumexp(self.x, axis=axis)

    def time_fastlse_reverse(self, shape, dtype, axis):
        fastlse.logcumsumexp(self.x, axis=axis, reverse=True)

    def time_numpy_logaddexp_accumulate(self, shape, dtype, axis):
        np.logaddexp.accumulate(self.x, axis=axis)


class LogCumSumExpTorch:
    """torch.logcumsumexp on the same data, on numba's thread count."""

    params = (SHAPES, DTYPES, AXES)
    param_names = ("shape", "dtype", "axis")
    timeout = 300

    def setup(self, shape, dtype, axis):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        torch.set_num_threads(numba.get_num_threads())
        self.torch = torch
        self.t = torch.from_numpy(_data(shape, dtype))
        self.dim = axis % len(shape)
        torch.logcumsumexp(self.t, self.dim)

    def time_torch(self, shape, dtype, axis):
        self.torch.logcumsumexp(self.t, self.dim)
