"""fastlse.nll_loss against torch.nn.functional.nll_loss, jax and numpy (mean reduction).

The dataset stands in for the log-probabilities (nll_loss only gathers and
averages, whatever the values); targets are ``common.targets``.
"""

from .common import PeerBenchmark


class NllLoss(PeerBenchmark):
    """``nll_loss(log_probs, target, axis)`` on every dataset by every peer."""

    op = "nll_loss"

    def time_nll_loss(self, shape, dtype, peer):
        self.run()
