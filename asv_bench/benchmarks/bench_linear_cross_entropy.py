"""Fused linear cross-entropy (a language-model head), forward + backward.

``fastlse.linear_cross_entropy(hidden, weight, target, return_grad=True)``
against the two ways of doing the same work that hold the (N, V) logits:

* ``unfused_numpy_fastlse``: ``hidden @ weight.T`` (numpy BLAS), then
  ``fastlse.cross_entropy(..., return_grad=True)`` with the gradient written
  over the logits, then the two backward matmuls;
* ``torch``: ``F.linear`` + ``F.cross_entropy``, forward and backward, at
  numba's thread count.

At the issue's size (N=4096, D=256, V=64000, float32) the logits are 1 GB.
``track_peak_extra_mb_*`` measure, in a fresh subprocess, how far the call
raises the process's peak resident memory above what it held before (inputs
built, kernels compiled), outputs included. Self-contained: fixed-seed data
from ``np.random.default_rng(0)``, cached per process.
"""

import json
import subprocess
import sys

import numba
import numpy as np

import fastlse

SHAPES = [(4096, 256, 64_000)]
DTYPES = ["float32"]
_DATA = {}


def get_data(shape, dtype):
    """(hidden, weight, target) from default_rng(0); cached, read-only."""
    key = (tuple(shape), str(dtype))
    if key not in _DATA:
        n, d, v = shape
        rng = np.random.default_rng(0)
        h = rng.standard_normal((n, d), dtype=np.float64).astype(dtype)
        w = rng.standard_normal((v, d), dtype=np.float64).astype(dtype)
        w *= w.dtype.type(1.0 / np.sqrt(d))  # logits of unit scale
        t = rng.integers(0, v, size=n)
        for a in (h, w, t):
            a.flags.writeable = False
        _DATA[key] = (h, w, t)
    return _DATA[key]


def run_fastlse(h, w, t):
    return fastlse.linear_cross_entropy(h, w, t, return_grad=True)


def run_unfused(h, w, t):
    x = h @ w.T
    loss, g = fastlse.cross_entropy(x, t, return_grad=True, out=x)
    return loss, g @ w, g.T @ h


def torch_runner(h, w, t):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(numba.get_num_threads())
    th = torch.from_numpy(h.copy()).requires_grad_()
    tw = torch.from_numpy(w.copy()).requires_grad_()
    tt = torch.from_numpy(t.copy())  # torch warns about read-only arrays

    def run():
        th.grad = None
        tw.grad = None
        loss = F.cross_entropy(F.linear(th, tw), tt)
        loss.backward()
        return loss.detach(), th.grad, tw.grad

    return run


# the child process of the memory benchmarks: build, warm up, reset the peak,
# run once, report the peak's rise (MB)
_CHILD = r"""
import json, sys
sys.path.insert(0, {path!r})
import numpy as np
from bench_linear_cross_entropy import get_data, run_fastlse, run_unfused, torch_runner

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return None

shape, dtype, peer = tuple({shape!r}), {dtype!r}, {peer!r}
h, w, t = get_data(shape, dtype)
n, d, v = shape
small = (h[: max(1, n // 16)], w, t[: max(1, n // 16)])
if peer == "torch":
    run = torch_runner(h, w, t)
    torch_runner(*small)()
else:
    fn = run_fastlse if peer == "fastlse" else run_unfused
    run = lambda: fn(h, w, t)
    fn(*small)  # compiles the kernels, starts the BLAS and numba thread pools
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident size to the current one
    before = status("VmRSS:")
    out = run()
    peak = status("VmHWM:")
except OSError:  # no /proc: the peak since start (an upper bound of the rise)
    import resource
    import psutil
    before = psutil.Process().memory_info().rss
    out = run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024
outputs = sum(np.asarray(o).nbytes for o in out[1:])
print(json.dumps({{"extra": (peak - before) / 1e6, "outputs": outputs / 1e6}}))
"""


def peak_extra_mb(shape, dtype, peer):
    """Peak resident memory added by one call of ``peer`` (MB, outputs included)."""
    import os

    code = _CHILD.format(path=os.path.dirname(os.path.abspath(__file__)), shape=shape,
                         dtype=dtype, peer=peer)  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900
    )
    return json.loads(res.stdout.strip().splitlines()[-1])["extra"]


class LinearCrossEntropy:
    """Loss and the gradients w.r.t. hidden and weight (mean reduction)."""

    params = (SHAPES, DTYPES)
    param_names = ("shape", "dtype")
    timeout = 900
    number = 1
    repeat = (3, 5, 300.0)

    def setup(self, shape, dtype):
        self.h, self.w, self.t = get_data(shape, dtype)
        try:
            self.torch = torch_runner(self.h, self.w, self.t)
        except ImportError:  # a declared bench dependency; asv skips without it
            raise NotImplementedError("torch is not installed") from None
        self.torch()
        run_fastlse(self.h, self.w, self.t)
        run_unfused(self.h, self.w, self.t)

    def time_fastlse(self, shape, dtype):
        run_fastlse(self.h, self.w, self.t)

    def time_unfused_numpy_fastlse(self, shape, dtype):
        run_unfused(self.h, self.w, self.t)

    def time_torch(self, shape, dtype):
        self.torch()


class LinearCrossEntropyMemory:
    """Peak memory added by one forward + backward, measured in a subprocess."""

    params = (SHAPES, DTYPES)
    param_names = ("shape", "dtype")
    timeout = 900
    number = 1
    repeat = 1

    def setup(self, shape, dtype):
        pass  # each measurement builds its data in its own subprocess

    def track_peak_extra_mb_fastlse(self, shape, dtype):
        return peak_extra_mb(shape, dtype, "fastlse")

    track_peak_extra_mb_fastlse.unit = "MB"

    def track_peak_extra_mb_unfused(self, shape, dtype):
        return peak_extra_mb(shape, dtype, "unfused")

    track_peak_extra_mb_unfused.unit = "MB"

    def track_peak_extra_mb_torch(self, shape, dtype):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        return peak_extra_mb(shape, dtype, "torch")

    track_peak_extra_mb_torch.unit = "MB"
