"""Datasets and peers shared by every benchmark.

Datasets
    ``CASES`` names each input: shape, reduced axis, seed.  Data is built lazily on
    first use, once per process (asv runs every benchmark and parameter set in its
    own process), from a fixed seed, and handed out read-only.  **Append only**:
    never edit an existing entry (shape, axis, seed or the way values are drawn),
    add a new name instead, so results stay comparable across history.

Peers
    ``IMPLS[op][peer]`` builds a zero-argument callable computing ``op`` on one
    dataset; conversions (torch tensors, jax device arrays, ``jax.jit``) happen
    there, outside the timed call.  ``prepare`` builds it once per process and calls
    it once (compilation, thread-pool start), so no first-call cost is ever timed,
    and raises ``NotImplementedError`` (asv: skipped) for a peer that is not
    installed; torch and jax are optional.  Benchmarks take the peer as a
    parameter, so each asv process imports and warms only the peer it times.
    torch runs on numba's thread count (``equal_threads``); jax keeps XLA's pool,
    which is all cores by default.
"""

import functools
import importlib.util
import sys
import warnings
from typing import NamedTuple

import numba
import numpy as np


class Case(NamedTuple):
    shape: tuple
    axis: int
    seed: int


#: name -> dataset.  APPEND ONLY (see the module docstring).
CASES = {
    "wide_4096x1000": Case((4096, 1000), -1, 1),
    "vocab_64x50257": Case((64, 50257), -1, 2),
    "tall_1e6x10": Case((1_000_000, 10), -1, 3),
    "row_1x1e7": Case((1, 10_000_000), -1, 4),
    "mid_64x1000x64_ax1": Case((64, 1000, 64), 1, 5),
}

DTYPES = ["float32", "float64"]

#: peers that must not be required to run the suite (peer -> package)
OPTIONAL = {"torch": "torch", "jax": "jax"}

_DATA = {}
_PREPARED = {}


def clear_caches():
    """Forget every dataset and prepared callable (tests shrink ``CASES``)."""
    _DATA.clear()
    _PREPARED.clear()


def dataset(case, dtype):
    """``(x, axis)``: the named input, standard normal times 3, read-only."""
    key = ("x", case, dtype)
    if key not in _DATA:
        c = CASES[case]
        rng = np.random.default_rng(c.seed)
        x = (3.0 * rng.standard_normal(c.shape)).astype(dtype)
        x.flags.writeable = False
        _DATA[key] = x
    return _DATA[key], CASES[case].axis


def targets(case):
    """Integer class labels for ``case`` (its shape without the class axis), read-only."""
    key = ("y", case)
    if key not in _DATA:
        c = CASES[case]
        shape = list(c.shape)
        n_classes = shape.pop(c.axis)
        rng = np.random.default_rng(1000 + c.seed)
        y = rng.integers(0, n_classes, size=tuple(shape), dtype=np.int64)
        y.flags.writeable = False
        _DATA[key] = y
    return _DATA[key]


@functools.cache
def available(peer):
    """True when the peer's package can be imported (checked without importing it)."""
    name = OPTIONAL.get(peer)
    return name is None or importlib.util.find_spec(name) is not None


def equal_threads():
    """Give torch, if loaded, numba's thread count (fastlse runs on numba's); return it."""
    n = numba.get_num_threads()
    torch = sys.modules.get("torch")  # never imported here: a fastlse process stays lean
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 inputs stay float64
    return jax


def _torch_tensor(x):
    import torch

    with warnings.catch_warnings():  # datasets are read-only; the peers never write
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x)


# ----------------------------------------------------------------- peers -----
def _fastlse_function(fastlse, name):
    """``fastlse.<name>``; skipped (not failed) on a commit that predates it."""
    f = getattr(fastlse, name, None)
    if f is None:
        raise NotImplementedError(f"this fastlse has no {name}")
    return f


def _fastlse(op):
    def make(x, axis):
        import fastlse

        f = _fastlse_function(fastlse, op)
        return lambda: f(x, axis=axis)

    return make


def _scipy(op):
    def make(x, axis):
        import scipy.special

        f = getattr(scipy.special, op)
        return lambda: f(x, axis=axis)

    return make


def np_logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def np_cross_entropy(x, y, axis, grad=False):
    """Max-shifted numpy cross-entropy (mean over samples), optionally with its gradient."""
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    s = np.sum(e, axis=axis, keepdims=True)
    idx = np.expand_dims(y, axis)
    loss = np.mean(np.log(s) - np.take_along_axis(z, idx, axis=axis))
    if not grad:
        return loss
    g = e / s
    np.put_along_axis(g, idx, np.take_along_axis(g, idx, axis=axis) - 1, axis=axis)
    g /= y.size
    return loss, g


def _numpy(fn):
    def make(x, axis):
        return lambda: fn(x, axis)

    return make


def _torch(name):
    def make(x, axis):
        import torch

        f = getattr(torch, name)
        t = _torch_tensor(x)
        return lambda: f(t, axis)

    return make


def _jax_op(name):
    def make(x, axis):
        jax = _jax()
        mod = jax.scipy.special if name == "logsumexp" else jax.nn
        f = jax.jit(functools.partial(getattr(mod, name), axis=axis))
        xa = jax.device_put(x)
        return lambda: f(xa).block_until_ready()

    return make


# cross-entropy: factories take (x, axis, y); mean reduction everywhere
def _fastlse_xent(grad):
    def make(x, axis, y):
        import fastlse

        f = _fastlse_function(fastlse, "cross_entropy")
        return lambda: f(x, y, axis=axis, return_grad=grad)

    return make


def _numpy_xent(grad):
    def make(x, axis, y):
        return lambda: np_cross_entropy(x, y, axis, grad)

    return make


def _torch_xent(grad):
    def make(x, axis, y):
        import torch
        import torch.nn.functional as F

        t = _torch_tensor(x)
        if axis % x.ndim != 1:
            t = torch.movedim(t, axis, 1)  # torch wants classes on dim 1
        yt = torch.from_numpy(np.array(y))
        if not grad:
            return lambda: F.cross_entropy(t, yt)
        t = t.detach().requires_grad_()

        def run():
            t.grad = None
            F.cross_entropy(t, yt).backward()

        return run

    return make


def _jax_xent(grad):
    def make(x, axis, y):
        jax = _jax()
        jnp = jax.numpy

        def loss(a, lab):
            logp = jax.nn.log_softmax(a, axis=axis)
            picked = jnp.take_along_axis(logp, jnp.expand_dims(lab, axis), axis=axis)
            return -jnp.mean(picked)

        f = jax.jit(jax.value_and_grad(loss) if grad else loss)
        xa, ya = jax.device_put(x), jax.device_put(y)
        return lambda: jax.block_until_ready(f(xa, ya))

    return make


#: op -> peer -> factory; an op gains a peer (or a new op appears) in one place
IMPLS = {
    "logsumexp": {
        "fastlse": _fastlse("logsumexp"),
        "scipy": _scipy("logsumexp"),
        "numpy_naive": _numpy(np_logsumexp),
        "torch": _torch("logsumexp"),
        "jax": _jax_op("logsumexp"),
    },
    "softmax": {
        "fastlse": _fastlse("softmax"),
        "scipy": _scipy("softmax"),
        "numpy_naive": _numpy(np_softmax),
        "torch": _torch("softmax"),
        "jax": _jax_op("softmax"),
    },
    "log_softmax": {
        "fastlse": _fastlse("log_softmax"),
        "scipy": _scipy("log_softmax"),
        "numpy_naive": _numpy(np_log_softmax),
        "torch": _torch("log_softmax"),
        "jax": _jax_op("log_softmax"),
    },
    "cross_entropy": {
        "fastlse": _fastlse_xent(False),
        "numpy_naive": _numpy_xent(False),
        "torch": _torch_xent(False),
        "jax": _jax_xent(False),
    },
    "cross_entropy_grad": {
        "fastlse": _fastlse_xent(True),
        "numpy_naive": _numpy_xent(True),
        "torch": _torch_xent(True),
        "jax": _jax_xent(True),
    },
}

#: peers with a first-call cost tied to the input (compilation per shape, thread
#: pools): warmed on the real input.  The others warm on a tiny input of the
#: same dtype and ndim, which covers their lazy imports at no cost.
WARM_ON_INPUT = {"fastlse", "torch", "jax"}


def _args(op, case, dtype):
    x, axis = dataset(case, dtype)
    return (x, axis, targets(case)) if op.startswith("cross_entropy") else (x, axis)


def _tiny_args(op, case, dtype):
    c = CASES[case]
    x = np.zeros((2,) * len(c.shape), dtype=dtype)
    if op.startswith("cross_entropy"):
        return x, c.axis, np.zeros((2,) * (len(c.shape) - 1), dtype=np.int64)
    return x, c.axis


def prepare(op, peer, case, dtype):
    """The callable timing ``op`` by ``peer`` on ``(case, dtype)``, built and warmed once."""
    key = (op, peer, case, dtype)
    if key not in _PREPARED:
        if not available(peer):
            raise NotImplementedError(f"{peer} is not installed")
        make = IMPLS[op][peer]
        run = make(*_args(op, case, dtype))
        equal_threads()
        if peer in WARM_ON_INPUT:
            run()
        else:
            make(*_tiny_args(op, case, dtype))()
        _PREPARED[key] = run
    return _PREPARED[key]


def peers(op):
    """Every peer of ``op``, installed or not (asv lists the missing ones as skipped)."""
    return list(IMPLS[op])
