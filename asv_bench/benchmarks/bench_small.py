"""Small inputs: the cost of one call where planning and dispatch are most of it.

A 10-element vector, a batch of 32 rows of 10 classes and one of 128 rows of 100
(``common.SMALL_CASES``), by every peer of the suite's table.  fastlse runs
such calls without threads and, for C-contiguous float32 / float64 input along
the last axis, without its planning; torch and jax have their own per-call
dispatch, scipy its input checks.  Compare within one run.
"""

from .common import SMALL_CASES, PeerBenchmark


class SmallLogSumExp(PeerBenchmark):
    op, cases = "logsumexp", list(SMALL_CASES)

    def time_logsumexp(self, shape, dtype, peer):
        self.run()


class SmallSoftmax(PeerBenchmark):
    op, cases = "softmax", list(SMALL_CASES)

    def time_softmax(self, shape, dtype, peer):
        self.run()


class SmallLogSoftmax(PeerBenchmark):
    op, cases = "log_softmax", list(SMALL_CASES)

    def time_log_softmax(self, shape, dtype, peer):
        self.run()


class SmallCrossEntropyGrad(PeerBenchmark):
    """Mean loss and its gradient (torch: forward + backward) of a batch."""

    op, cases = "cross_entropy_grad", ["batch_32x10", "batch_128x100"]

    def time_cross_entropy_grad(self, shape, dtype, peer):
        self.run()
