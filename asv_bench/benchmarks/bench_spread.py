"""fastlse on logits of a wide spread, against the same shapes at unit spread.

Logits of standard deviation 30 put some softmax outputs (and a plain
``exp(x - max)``) below float32's smallest normal, where a multiply with a
subnormal result takes a microcode assist on Intel cores (~150 cycles):
kernels that keep their terms scaled (``expt``) and divide such rows or
blocks in float64 run at about the unit-spread time, others 5-10x slower
(docs/performance.md).  The ratio of the two ``scale`` values, from one
run, is what to read.
"""

import numpy as np

import fastlse

#: (shape, axis): whole rows, narrow rows, columns, a middle axis, a folded one
LAYOUTS = [
    ((4096, 1000), -1),
    ((100_000, 48), -1),
    ((1000, 1000), 0),
    ((64, 1000, 64), 1),
    ((64, 1000, 8), 1),
]


class WideSpread:
    """``op(x, axis, out=)`` on float32 logits of standard deviation ``scale``."""

    params = (["softmax", "log_softmax", "logsumexp"], [s for s, _ in LAYOUTS], [1.0, 30.0])
    param_names = ("op", "shape", "scale")
    timeout = 300

    def setup(self, op, shape, scale):
        axis = dict(LAYOUTS).get(shape, -1)
        rng = np.random.default_rng(len(shape))
        self.x = (scale * rng.standard_normal(shape)).astype(np.float32)
        fn = getattr(fastlse, op)
        if op == "logsumexp":
            self.call = lambda: fn(self.x, axis=axis)
        else:
            out = np.empty_like(self.x)
            self.call = lambda: fn(self.x, axis=axis, out=out)
        self.call()  # compile outside the timing

    def time_wide_spread(self, op, shape, scale):
        self.call()
