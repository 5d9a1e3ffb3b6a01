"""fastlse.log_sigmoid against torch.nn.functional.logsigmoid, jax.nn.log_sigmoid,
scipy.special.log_expit and numpy's ``min(x, 0) - log1p(exp(-|x|))``.

Elementwise: the datasets are used whole (their axis is ignored).  Its memory
limit is ``LimitProxies.time_row_copy`` (one read, one write into a new array).
"""

from .common import PeerBenchmark


class LogSigmoid(PeerBenchmark):
    """``log_sigmoid(x)`` on every dataset by every peer."""

    op = "log_sigmoid"

    def time_log_sigmoid(self, shape, dtype, peer):
        self.run()
