"""``where=`` masks: fastlse.logsumexp / softmax / log_softmax with a boolean mask.

Peers: jax (``jax.nn.logsumexp`` / ``softmax`` / ``log_softmax`` with ``where=``),
torch (``masked_fill`` with -inf, then the op: the fill is part of the cost a
torch user pays) and max-shifted numpy on ``np.where(mask, x, -inf)``.  scipy has
no ``where=``.  The mask is ``common.mask``: causal-style, each row keeps from one
element to all of them, on the 2-D datasets ``common.MASK_CASES``.  Their memory
limit is ``MaskedLimitProxies`` (bench_proxies).
"""

from .common import MASK_CASES, PeerBenchmark


class LogSumExpWhere(PeerBenchmark):
    """``logsumexp(x, axis, where=mask)`` by every peer."""

    op, cases = "logsumexp_where", MASK_CASES

    def time_logsumexp_where(self, shape, dtype, peer):
        self.run()


class SoftmaxWhere(PeerBenchmark):
    """``softmax(x, axis, where=mask)`` by every peer (excluded elements give 0)."""

    op, cases = "softmax_where", MASK_CASES

    def time_softmax_where(self, shape, dtype, peer):
        self.run()


class LogSoftmaxWhere(PeerBenchmark):
    """``log_softmax(x, axis, where=mask)`` by every peer (excluded elements give -inf)."""

    op, cases = "log_softmax_where", MASK_CASES

    def time_log_softmax_where(self, shape, dtype, peer):
        self.run()
