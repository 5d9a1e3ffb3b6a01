"""Fused cross-entropy: loss, and loss + gradient, vs torch CPU forward / forward+backward.

Two groups of classes:

* ``CrossEntropy`` / ``CrossEntropyGrad``: the suite's peer table
  (``common.IMPLS``: fastlse, max-shifted numpy, torch, jax) on every dataset of
  ``common.CASES``, like the other ``bench_*`` files.
* ``FusedCrossEntropy`` / ``TorchCrossEntropy``: self-contained (their own
  fixed-seed data, cached per process) on the shapes of the cross-entropy issue,
  wide (4096 x 1000), vocab (64 x 50257) and tall (1e6 x 10), with the
  variants the peer table does not cover (gradient into ``out=``, label
  smoothing, peak memory). torch runs at numba's thread count.
"""

import numba
import numpy as np

import fastlse

try:
    from . import common
except ImportError:  # the self-contained classes below do not need it
    common = None


# ----------------------------------------------------------------------------
# the suite's peer table
# ----------------------------------------------------------------------------
class _CrossEntropyBase:
    """The peer is a parameter: each asv process prepares only the peer it times."""

    op = None
    params = (
        list(common.CASES) if common else [],
        ["float32", "float64"],
        ["fastlse", "numpy_naive", "torch", "jax"],
    )
    param_names = ("shape", "dtype", "peer")
    timeout = 300

    def setup(self, shape, dtype, peer):
        if common is None:
            raise NotImplementedError("asv_bench/benchmarks/common.py is not importable")
        self.run = common.prepare(self.op, peer, shape, dtype)


class CrossEntropy(_CrossEntropyBase):
    """Mean loss only (torch: forward without autograd)."""

    op = "cross_entropy"

    def time_cross_entropy(self, shape, dtype, peer):
        self.run()


class CrossEntropyGrad(_CrossEntropyBase):
    """Mean loss and d loss / d logits (torch: forward + backward)."""

    op = "cross_entropy_grad"

    def time_cross_entropy_grad(self, shape, dtype, peer):
        self.run()


# ----------------------------------------------------------------------------
# self-contained: the shapes and the fused kernel's variants
# ----------------------------------------------------------------------------
SHAPES = [(4096, 1000), (64, 50257), (1_000_000, 10)]
DTYPES = ["float32", "float64"]

_CACHE = {}


def get_data(shape, dtype):
    """(logits, targets) for a shape and dtype from default_rng(0); cached, read-only."""
    key = (tuple(shape), str(dtype))
    if key not in _CACHE:
        rng = np.random.default_rng(0)
        logits = (rng.standard_normal(shape) * 2).astype(dtype)
        target = rng.integers(0, shape[-1], size=shape[0])
        logits.setflags(write=False)
        target.setflags(write=False)
        _CACHE[key] = (logits, target)
    return _CACHE[key]


class FusedCrossEntropy:
    params = (SHAPES, DTYPES)
    param_names = ("shape", "dtype")
    timeout = 300

    def setup(self, shape, dtype):
        self.x, self.t = get_data(shape, dtype)
        self.out = np.empty(self.x.shape, dtype=self.x.dtype)
        # compile (and start the thread pool) outside the timings
        fastlse.cross_entropy(self.x, self.t)
        fastlse.cross_entropy(self.x, self.t, return_grad=True, out=self.out)
        fastlse.cross_entropy(self.x, self.t, label_smoothing=0.1, return_grad=True, out=self.out)

    def time_fastlse_loss(self, shape, dtype):
        fastlse.cross_entropy(self.x, self.t)

    def time_fastlse_loss_grad(self, shape, dtype):
        fastlse.cross_entropy(self.x, self.t, return_grad=True)

    def time_fastlse_loss_grad_out(self, shape, dtype):
        """Gradient into a preallocated buffer (no page faults of a fresh array)."""
        fastlse.cross_entropy(self.x, self.t, return_grad=True, out=self.out)

    def time_fastlse_loss_grad_smoothing(self, shape, dtype):
        fastlse.cross_entropy(self.x, self.t, label_smoothing=0.1, return_grad=True, out=self.out)

    def peakmem_fastlse_loss_grad(self, shape, dtype):
        """Peak RSS: inputs + gradient + O(rows); no probabilities array."""
        fastlse.cross_entropy(self.x, self.t, return_grad=True)


class TorchCrossEntropy:
    """The peer, torch.nn.functional.cross_entropy on CPU (skipped without torch)."""

    params = (SHAPES, DTYPES)
    param_names = ("shape", "dtype")
    timeout = 300

    def setup(self, shape, dtype):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        torch.set_num_threads(numba.get_num_threads())
        self.torch = torch
        self.F = torch.nn.functional
        x, t = get_data(shape, dtype)
        self.x = torch.from_numpy(x.copy())
        self.t = torch.from_numpy(t.copy())
        self.time_torch_forward_backward(shape, dtype)

    def time_torch_forward(self, shape, dtype):
        with self.torch.no_grad():
            self.F.cross_entropy(self.x, self.t)

    def time_torch_forward_backward(self, shape, dtype):
        x = self.x.detach().requires_grad_(True)
        self.F.cross_entropy(x, self.t).backward()

    def peakmem_torch_forward_backward(self, shape, dtype):
        self.time_torch_forward_backward(shape, dtype)
