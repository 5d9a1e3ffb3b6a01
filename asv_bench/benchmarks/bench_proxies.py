"""Limit proxies: how fast memory alone allows an op to be on each dataset.

``time_row_sum`` reads every element once and writes one value per reduced row
(what logsumexp must at least do); ``time_row_copy`` reads every element and writes
it into a freshly allocated array (what softmax / log_softmax do, as they allocate
their result: a fresh array's first touch, page faults, included);
``time_row_copy_into`` writes into an array allocated and touched in ``setup``:
memory alone, the ``limit`` column of ``python -m fastlse``.  Both are parallel numba
kernels on numba's threads, split like fastlse's drivers: threads over rows, or
over pieces of rows when there are few rows; the middle-axis dataset is summed
along axis 1 in memory order, and narrow rows are read as one flat row (so the
proxy measures memory, not a loop per ten elements).  Their inner loops
vectorize (slices from index 0).  The kernels are ``fastlse.bench.peers``',
shared with ``python -m fastlse``'s ``limit`` column.  Compare fastlse to them
within one run.

``MaskedLimitProxies.time_row_sum_where`` is the ``where=`` ops' bound on the
masked datasets: it reads every element and its mask byte once and writes one
value per row.
"""

from . import common
from .common import CASES, DTYPES

# the kernels live in fastlse.bench.peers, where
# ``python -m fastlse`` times them too
copy_proxy = common._peers.copy_proxy
sum_proxy = common._peers.sum_proxy
sum_where_proxy = common._peers.sum_where_proxy
NARROW = common._peers.NARROW


class LimitProxies:
    """Memory-limit proxies over the same datasets as the ops."""

    params = (list(CASES), DTYPES)
    param_names = ("shape", "dtype")
    timeout = 300

    def setup(self, shape, dtype):
        self.x, self.axis = common.dataset(shape, dtype)
        sum_proxy(self.x, self.axis)  # compile (or load from cache) outside the timing
        self.out = copy_proxy(self.x)  # touched once: no page faults when timed

    def time_row_sum(self, shape, dtype):
        sum_proxy(self.x, self.axis)

    def time_row_copy(self, shape, dtype):
        copy_proxy(self.x)

    def time_row_copy_into(self, shape, dtype):
        copy_proxy(self.x, self.out)


class MaskedLimitProxies:
    """The memory-limit proxy of the ``where=`` benchmarks, on their datasets and mask."""

    params = (common.MASK_CASES, DTYPES)
    param_names = ("shape", "dtype")
    timeout = 300

    def setup(self, shape, dtype):
        self.x, _ = common.dataset(shape, dtype)
        self.m = common.mask(shape)
        sum_where_proxy(self.x, self.m)  # compile (or load from cache) outside the timing

    def time_row_sum_where(self, shape, dtype):
        sum_where_proxy(self.x, self.m)
