"""fastlse.log_softmax against scipy, max-shifted numpy, torch and jax (CPU)."""

from .common import PeerBenchmark


class LogSoftmax(PeerBenchmark):
    """``log_softmax(x, axis)`` on every dataset by every peer: one table, ratios from one run.

    The peer is a parameter, so each asv process prepares (and compiles) only the
    peer it times; a peer that is not installed is skipped.  Select peers with
    asv's parameter regex, e.g. ``--bench "LogSoftmax\\.time.*'fastlse'"``.
    """

    op = "log_softmax"

    def time_log_softmax(self, shape, dtype, peer):
        self.run()
