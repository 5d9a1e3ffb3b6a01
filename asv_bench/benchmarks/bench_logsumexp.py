"""fastlse.logsumexp against scipy, max-shifted numpy, torch and jax (CPU)."""

from .common import PeerBenchmark


class LogSumExp(PeerBenchmark):
    """``logsumexp(x, axis)`` on every dataset by every peer: one table, ratios from one run.

    The peer is a parameter, so each asv process prepares (and compiles) only the
    peer it times; a peer that is not installed is skipped.  Select peers with
    asv's parameter regex, e.g. ``--bench "LogSumExp\\.time.*'fastlse'"``.
    """

    op = "logsumexp"

    def time_logsumexp(self, shape, dtype, peer):
        self.run()
