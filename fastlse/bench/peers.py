"""The peers fastlse is timed against: one table for ``python -m fastlse`` and the asv suite.

``IMPLS[op][peer]`` is a factory: called with one input, it does the conversions
(torch tensors, jax device arrays, ``jax.jit``) and returns a zero-argument
callable computing ``op`` by ``peer`` on that input, so that only the computation
is timed.  A factory raises ``NotImplementedError`` when its peer's package is
not installed or (for fastlse) the function does not exist in this version.

Arguments by op:

* ``logsumexp``, ``softmax``, ``log_softmax``, ``logcumsumexp``, ``log_sigmoid``:
  ``(x, axis)`` (``log_sigmoid`` is elementwise and ignores ``axis``);
* ``cross_entropy``, ``cross_entropy_grad``, ``nll_loss``: ``(x, axis, y)``, ``y``
  the integer class of each sample (``nll_loss`` takes ``x`` as log-probabilities);
* ``logsumexp_where``, ``softmax_where``, ``log_softmax_where``: ``(x, axis, mask)``,
  a boolean ``mask`` of x's shape, True for the elements included.

``LIMITS`` / ``make_limit``: each op's memory-limit proxy (``sum_proxy``: one
parallel read; ``copy_proxy``: one read and one write into a new array), timed
by the asv suite's ``bench_proxies`` and ``python -m fastlse``'s ``limit`` column.

Losses are mean-reduced everywhere.  torch runs on numba's thread count
(``equal_threads``); jax keeps XLA's pool (all cores by default), float64 enabled.

Private and loaded lazily: ``import fastlse`` never imports it, and it imports
torch, jax and scipy only inside the factories.  It never imports fastlse at
module level either: the asv suite loads this file by path, so its peers stay
those of the suite whatever fastlse commit is installed.
"""

import functools
import importlib.util
import sys
import warnings

import numba
import numpy as np

#: peers that are optional (peer -> package); numpy is always there
OPTIONAL = {"scipy": "scipy", "torch": "torch", "jax": "jax"}


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


def _need(peer):
    if not available(peer):
        raise NotImplementedError(f"{peer} is not installed")


def _jax():
    _need("jax")
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 inputs stay float64
    # fastlse is a CPU library: jax runs on its CPU device even where it sees
    # a GPU (inputs are put there, and jit follows its committed inputs)
    jax.config.update("jax_default_device", jax_cpu(jax))
    return jax


def jax_cpu(jax):
    """jax's first CPU device."""
    return jax.devices("cpu")[0]


def _torch():
    _need("torch")
    import torch

    equal_threads()
    return torch


def torch_tensor(x):
    """A torch tensor sharing ``x``'s memory (read-only inputs are never written)."""
    torch = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(x))


def _classes_on_dim1(t, axis):
    """torch's losses want the classes on dim 1."""
    return t if axis % t.ndim == 1 else t.movedim(axis, 1)


def _fastlse_function(name):
    """``fastlse.<name>``; NotImplementedError on a version that predates it."""
    import fastlse

    f = getattr(fastlse, name, None)
    if f is None:
        raise NotImplementedError(f"this fastlse has no {name}")
    return f


# ------------------------------------------------------- numpy references -----
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


def np_nll_loss(x, y, axis):
    return -np.mean(np.take_along_axis(x, np.expand_dims(y, axis), axis=axis))


def np_log_sigmoid(x):
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def np_logcumsumexp(x, axis):
    return np.logaddexp.accumulate(x, axis=axis)


def masked(x, mask):
    """``x`` with the excluded elements set to -inf (what a mask-less API is given)."""
    return np.where(mask, x, -np.inf).astype(x.dtype, copy=False)


# ------------------------------------------------------------ factories -----
def _fastlse(op):
    def make(x, axis):
        f = _fastlse_function(op)
        return lambda: f(x, axis=axis)

    return make


def _scipy(name):
    def make(x, axis):
        _need("scipy")
        import scipy.special

        f = getattr(scipy.special, name)
        return lambda: f(x, axis=axis)

    return make


def _numpy(fn):
    def make(x, axis):
        return lambda: fn(x, axis)

    return make


def _torch_op(name):
    def make(x, axis):
        torch = _torch()
        f = getattr(torch, name)
        t = torch_tensor(x)
        dim = axis % x.ndim
        return lambda: f(t, dim)

    return make


def _jax_jit(fn, *arrays):
    """``fn`` jitted, on the arrays put on the device once: a blocking zero-arg callable."""
    jax = _jax()
    f = jax.jit(fn)
    args = [jax.device_put(a, jax_cpu(jax)) for a in arrays]
    return lambda: jax.block_until_ready(f(*args))


def _jax_op(path):
    """``path`` names a jax function taking ``axis=``, e.g. ``"scipy.special.logsumexp"``."""

    def make(x, axis):
        f = functools.reduce(getattr, path.split("."), _jax())
        return _jax_jit(functools.partial(f, axis=axis), x)

    return make


# cross-entropy and nll: factories take (x, axis, y)
def _fastlse_xent(grad):
    def make(x, axis, y):
        f = _fastlse_function("cross_entropy")
        return lambda: f(x, y, axis=axis, return_grad=grad)

    return make


def _numpy_xent(grad):
    def make(x, axis, y):
        return lambda: np_cross_entropy(x, y, axis, grad)

    return make


def _torch_xent(grad):
    def make(x, axis, y):
        torch = _torch()
        F = torch.nn.functional
        t = _classes_on_dim1(torch_tensor(x), axis)
        yt = torch_tensor(y)
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

        return _jax_jit(jax.value_and_grad(loss) if grad else loss, x, y)

    return make


def _fastlse_nll(x, axis, y):
    f = _fastlse_function("nll_loss")
    return lambda: f(x, y, axis=axis)


def _numpy_nll(x, axis, y):
    return lambda: np_nll_loss(x, y, axis)


def _torch_nll(x, axis, y):
    F = _torch().nn.functional
    t = _classes_on_dim1(torch_tensor(x), axis)
    yt = torch_tensor(y)
    return lambda: F.nll_loss(t, yt)


def _jax_nll(x, axis, y):
    jnp = _jax().numpy

    def loss(a, lab):
        return -jnp.mean(jnp.take_along_axis(a, jnp.expand_dims(lab, axis), axis=axis))

    return _jax_jit(loss, x, y)


# log_sigmoid: elementwise, (x, axis) with axis ignored
def _fastlse_log_sigmoid(x, axis):
    f = _fastlse_function("log_sigmoid")
    return lambda: f(x)


def _scipy_log_sigmoid(x, axis):
    _need("scipy")
    import scipy.special

    return lambda: scipy.special.log_expit(x)


def _torch_log_sigmoid(x, axis):
    F = _torch().nn.functional
    t = torch_tensor(x)
    return lambda: F.logsigmoid(t)


def _jax_log_sigmoid(x, axis):
    return _jax_jit(_jax().nn.log_sigmoid, x)


# logcumsumexp
def _jax_logcumsumexp(x, axis):
    jax = _jax()
    return _jax_jit(functools.partial(jax.lax.cumlogsumexp, axis=axis % x.ndim), x)


# where= masks: factories take (x, axis, mask)
def _fastlse_where(op):
    def make(x, axis, mask):
        f = _fastlse_function(op)
        return lambda: f(x, axis=axis, where=mask)

    return make


def _numpy_where(fn):
    def make(x, axis, mask):
        return lambda: fn(masked(x, mask), axis)

    return make


def _torch_where(name):
    """masked_fill with -inf, then the op: the fill is part of the torch user's cost."""

    def make(x, axis, mask):
        torch = _torch()
        f = getattr(torch, name)
        t, excluded = torch_tensor(x), torch_tensor(~np.asarray(mask))
        dim = axis % x.ndim
        return lambda: f(t.masked_fill(excluded, -torch.inf), dim)

    return make


def _jax_where(name):
    def make(x, axis, mask):
        f = getattr(_jax().nn, name)
        return _jax_jit(lambda a, m: f(a, axis=axis, where=m), x, mask)

    return make


# --------------------------------------------------------- limit proxies -----
# How fast memory alone allows an op to be: ``sum_proxy`` reads every element
# once and writes one value per reduced row (what logsumexp must at least do);
# ``copy_proxy`` reads every element and writes it into an array (what softmax
# / log_softmax must at least do).  The ``limit`` column copies into an array
# allocated and written once before the timing (``make_limit``): a fresh
# array's first touch is page faults, which on many cores cost more than the
# copy itself and would hide how far an op is from memory.  fastlse's ops, like
# scipy's and torch's, allocate their result per call (pass ``out=`` to reuse
# one), so that cost is theirs; ``copy_proxy(x)`` without ``out`` times it.
# Parallel numba kernels on numba's threads, split like fastlse's drivers:
# threads over rows, or over pieces of rows when there are few rows; the
# middle-axis case is summed along axis 1 in memory order, and narrow rows are
# read as one flat row (so the proxy measures memory, not a loop per ten
# elements).  Their loops run over slices from index 0 and vectorize.
#: reassociation lets the sums vectorize; no nnan / ninf (not needed).  Not
#: cached on disk: they compile in the benchmarks' untimed first call.
_PROXY_MATH = {"reassoc", "nsz", "arcp", "contract"}


@numba.njit(parallel=True, fastmath=_PROXY_MATH)
def row_sum(x, piece, partial):
    """partial[i, k] = sum of x[i, k*piece : (k+1)*piece]."""
    n = x.shape[1]
    npc = partial.shape[1]
    for k in numba.prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        xs = x[i, lo : min(n, lo + piece)]  # a slice from 0: see row_copy
        s = x.dtype.type(0)
        for j in range(xs.shape[0]):
            s += xs[j]
        partial[i, k % npc] = s


@numba.njit(parallel=True, fastmath=_PROXY_MATH)
def row_sum_where(x, m, piece, partial):
    """partial[i, k] = sum of x[i, j] over j in piece k where m[i, j]."""
    npc = partial.shape[1]
    for k in numba.prange(x.shape[0] * npc):
        i, lo = k // npc, (k % npc) * piece
        hi = min(x.shape[1], lo + piece)
        xs, ms = x[i, lo:hi], m[i, lo:hi]
        s = x.dtype.type(0)
        for j in range(xs.shape[0]):
            s += xs[j] if ms[j] else 0
        partial[i, k % npc] = s


@numba.njit(parallel=True, fastmath=_PROXY_MATH)
def mid_sum(x, out):
    """out[p, q] = sum over j of x[p, j, q], reading x in memory order."""
    for p in numba.prange(x.shape[0]):
        for q in range(x.shape[2]):
            out[p, q] = 0
        for j in range(x.shape[1]):
            for q in range(x.shape[2]):
                out[p, q] += x[p, j, q]


@numba.njit(parallel=True)
def row_copy(x, piece, out):
    n = x.shape[1]
    npc = (n + piece - 1) // piece
    for k in numba.prange(x.shape[0] * npc):
        i = k // npc
        lo = (k % npc) * piece
        hi = min(n, lo + piece)
        # loops over slices from index 0: with x[i, j] for j from a variable
        # lo, LLVM cannot prove j >= 0 (numba wraps negative indices) and the
        # loop stays scalar, which made these proxies 2-4x slower than memory
        xs, os = x[i, lo:hi], out[i, lo:hi]
        for j in range(xs.shape[0]):
            os[j] = xs[j]


def split(rows, n):
    """Piece length: whole rows when there are enough rows to keep threads busy."""
    tasks = 4 * numba.get_num_threads()
    if rows >= tasks:
        return n
    pieces_per_row = -(-tasks // rows)
    return max(1, -(-n // pieces_per_row))


#: rows narrower than this are read as one flat row: a loop per row of ten
#: elements measures loop overhead, not memory
NARROW = 64


def _rows(x):
    """x as 2-d rows along its last axis, or as one flat row if they are narrow."""
    return x.reshape(1, -1) if x.shape[-1] < NARROW else x.reshape(-1, x.shape[-1])


def sum_proxy(x, axis):
    """One read: a sum along ``axis`` (the last, or the middle of three)."""
    if x.ndim == 3 and axis % 3 == 1:
        out = np.empty((x.shape[0], x.shape[2]), dtype=x.dtype)
        mid_sum(x, out)
        return out
    x2 = _rows(x)
    piece = split(*x2.shape)
    partial = np.empty((x2.shape[0], -(-x2.shape[1] // piece)), dtype=x.dtype)
    row_sum(x2, piece, partial)
    return partial[:, 0] if partial.shape[1] == 1 else partial.sum(axis=1)


def sum_where_proxy(x, m):
    """One read of ``x`` and of its mask: a masked sum along the last axis."""
    piece = split(*x.shape)
    partial = np.empty((x.shape[0], -(-x.shape[1] // piece)), dtype=x.dtype)
    row_sum_where(x, m, piece, partial)
    return partial.sum(axis=1)


def copy_proxy(x, out=None):
    """One read and one write: into ``out`` (x's shape and dtype, C order),
    or into a new array."""
    x2 = _rows(x)
    dest = np.empty_like(x2) if out is None else out.reshape(x2.shape)
    row_copy(x2, split(*x2.shape), dest)
    return dest.reshape(x.shape)


#: op -> its limit proxy: "read" (``sum_proxy``) for the reductions, "copy"
#: (``copy_proxy``) for the ops that write an array of x's size
LIMITS = {
    "logsumexp": "read",
    "cross_entropy": "read",
    "nll_loss": "read",
    "softmax": "copy",
    "log_softmax": "copy",
    "cross_entropy_grad": "copy",
    "log_sigmoid": "copy",
    "logcumsumexp": "copy",
}


def make_limit(op, x, axis):
    """The zero-argument callable timing ``op``'s limit proxy on ``x``."""
    kind = LIMITS.get(op)
    if kind is None:
        raise NotImplementedError(f"no limit proxy for {op}")
    if kind == "read":
        return lambda: sum_proxy(x, axis)
    out = np.zeros(x.shape, dtype=x.dtype)  # its pages touched before the timing
    return lambda: copy_proxy(x, out)


#: op -> peer -> factory; an op gains a peer (or a new op appears) in one place
IMPLS = {
    "logsumexp": {
        "fastlse": _fastlse("logsumexp"),
        "scipy": _scipy("logsumexp"),
        "numpy_naive": _numpy(np_logsumexp),
        "torch": _torch_op("logsumexp"),
        "jax": _jax_op("scipy.special.logsumexp"),
    },
    "softmax": {
        "fastlse": _fastlse("softmax"),
        "scipy": _scipy("softmax"),
        "numpy_naive": _numpy(np_softmax),
        "torch": _torch_op("softmax"),
        "jax": _jax_op("nn.softmax"),
    },
    "log_softmax": {
        "fastlse": _fastlse("log_softmax"),
        "scipy": _scipy("log_softmax"),
        "numpy_naive": _numpy(np_log_softmax),
        "torch": _torch_op("log_softmax"),
        "jax": _jax_op("nn.log_softmax"),
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
    "nll_loss": {
        "fastlse": _fastlse_nll,
        "numpy_naive": _numpy_nll,
        "torch": _torch_nll,
        "jax": _jax_nll,
    },
    "log_sigmoid": {
        "fastlse": _fastlse_log_sigmoid,
        "scipy": _scipy_log_sigmoid,
        "numpy_naive": _numpy(lambda x, axis: np_log_sigmoid(x)),
        "torch": _torch_log_sigmoid,
        "jax": _jax_log_sigmoid,
    },
    "logcumsumexp": {
        "fastlse": _fastlse("logcumsumexp"),
        "numpy_naive": _numpy(np_logcumsumexp),
        "torch": _torch_op("logcumsumexp"),
        "jax": _jax_logcumsumexp,
    },
    "logsumexp_where": {
        "fastlse": _fastlse_where("logsumexp"),
        "numpy_naive": _numpy_where(np_logsumexp),
        "torch": _torch_where("logsumexp"),
        "jax": _jax_where("logsumexp"),
    },
    "softmax_where": {
        "fastlse": _fastlse_where("softmax"),
        "numpy_naive": _numpy_where(np_softmax),
        "torch": _torch_where("softmax"),
        "jax": _jax_where("softmax"),
    },
    "log_softmax_where": {
        "fastlse": _fastlse_where("log_softmax"),
        "numpy_naive": _numpy_where(np_log_softmax),
        "torch": _torch_where("log_softmax"),
        "jax": _jax_where("log_softmax"),
    },
}

#: ops whose factories take integer targets ``y`` as the third argument
TARGET_OPS = {"cross_entropy", "cross_entropy_grad", "nll_loss"}
#: ops whose factories take a boolean ``mask`` as the third argument
MASK_OPS = {"logsumexp_where", "softmax_where", "log_softmax_where"}

#: peers with a first-call cost tied to the input (compilation per shape, thread
#: pools): warmed on the real input.  The others warm on a tiny input of the
#: same dtype and ndim, which covers their lazy imports at no cost.
WARM_ON_INPUT = {"fastlse", "torch", "jax"}


def make(op, peer, *args):
    """The zero-argument callable computing ``op`` by ``peer`` on ``args``.

    Raises ``NotImplementedError`` when ``peer`` has no ``op`` or is not installed.
    """
    factory = IMPLS[op].get(peer)
    if factory is None:
        raise NotImplementedError(f"{peer} has no {op}")
    _need(peer)
    return factory(*args)


def tiny_args(op, ndim, axis, dtype):
    """Arguments of ``op`` of shape ``(2,) * ndim``: for warming a peer's lazy imports."""
    x = np.zeros((2,) * ndim, dtype=dtype)
    if op in TARGET_OPS:
        return x, axis, np.zeros((2,) * (ndim - 1), dtype=np.int64)
    if op in MASK_OPS:
        return x, axis, np.ones(x.shape, dtype=bool)
    return x, axis
