"""fastlse.softmax against scipy, max-shifted numpy, torch and jax (CPU)."""

from . import common
from .common import CASES, DTYPES


class Softmax:
    """``softmax(x, axis)`` on every dataset by every peer: one table, ratios from one run.

    The peer is a parameter, so each asv process prepares (and compiles) only the
    peer it times; a peer that is not installed is skipped.  Select peers with
    asv's parameter regex, e.g. ``--bench "Softmax\\.time.*'fastlse'"``.
    """

    params = (list(CASES), DTYPES, common.peers("softmax"))
    param_names = ("shape", "dtype", "peer")
    timeout = 300

    def setup(self, shape, dtype, peer):
        self.run = common.prepare("softmax", peer, shape, dtype)

    def time_softmax(self, shape, dtype, peer):
        self.run()
