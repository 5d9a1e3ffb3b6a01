"""Fused linear cross-entropy: ``cross_entropy(hidden @ weight.T + bias, target)``
and its gradients, without ever holding the (N, V) logits.

The rows of ``hidden`` are taken in blocks of ``block_rows``; each block's
logits are formed by numpy's BLAS matmul, one vocabulary block of
``block_vocab`` columns at a time, into one reused buffer.  A numba kernel
turns each block into per-row ``(m, t)`` pairs (see ``kernels.rows``) merged into
the row's running pair, and gathers what the loss needs besides the lse: the
target's logit and, for label smoothing, the sum of the logits.

The gradient of the loss with respect to the (capped) logits is
``grad = scale * ((1 + 2 z lse) p - (1 - eps) onehot(y) - eps / V)`` per row
(``p`` the softmax, ``z`` the z-loss weight, ``eps`` the label smoothing,
``scale`` 0 for ignored rows, ``1 / count`` for the mean), times
``1 - (s / c)**2`` under a softcap ``c``.  A kernel writes it in place of the
logits block, and BLAS accumulates ``grad_hidden += g @ W_blk``,
``grad_weight[blk] += g.T @ h_blk``.

Two schedules, one set of kernels:

* one vocabulary block (``block_vocab >= V``; the default whenever
  ``MIN_KEEP_ROWS`` rows of all V logits fit in ``BUDGET``): the block of rows
  holds all its logits, so one fused kernel computes the pair, the loss and
  the gradient of each row while it sits in cache (one exp per element), and
  every logit comes from one matmul -- three matmuls in all, as unfused;
* several vocabulary blocks (huge V, or asked for): a forward sweep over the
  blocks merges the pairs; the backward sweep goes over them in reverse,
  reusing the last block still in the buffer and recomputing the others
  (a fourth matmul, over all but one block).

The matmuls dominate, so one vocabulary block (no fourth matmul) is kept
whenever it holds enough rows: fewer rows than ~256 make ``g @ W_blk`` (a
K = V reduction with a small M x N) slow in OpenBLAS (figures in
docs/performance-notes.md).

The extra memory is the buffer (``block_rows * block_vocab`` elements), a few
float64 per row, and a scratch of ``ACC_BYTES`` for the accumulations into
``grad_weight`` and ``grad_hidden`` (numpy's matmul cannot add into its
output).  The kernels over a whole block run on numba's threads; the small
adds between BLAS calls run serially (a parallel region squeezed between BLAS
calls fights OpenBLAS's spinning threads).
"""

from typing import Any, NamedTuple

import numpy as np
from numba import prange

from ._args import (
    check_ignore_index,
    check_reduction,
    check_smoothing,
    check_softcap,
    check_z_loss,
    float_input,
)
from ._layout import compute_dtype
from ._typing import ArrayLike, Reduction
from .kernels.compile import jit, jit_fast
from .kernels.drivers import kernel
from .kernels.exp import expneg64, log1p64
from .kernels.rows import (
    CHUNK,
    cast_to,
    expn,
    finish,
    merge,
    range_pair,
    row_max,
    sum_excl_exp,
    tanhx,
    zero_of,
)

__all__ = ["linear_cross_entropy"]

#: bytes of the logits buffer the default block sizes aim at (with the
#: outputs, the benchmark's call stays under 150 MB)
BUDGET = 64 << 20
#: fewest rows per block for which one vocabulary block is kept: below ~256
#: rows the K = V product ``g @ W`` is slow in OpenBLAS (see above)
MIN_KEEP_ROWS = 256
#: vocabulary block when the whole vocabulary does not fit
DEFAULT_BLOCK_VOCAB = 8192
#: most rows per block
MAX_BLOCK_ROWS = 4096
#: bytes of the scratch into which slices of ``g.T @ h`` (and ``g @ W_blk``)
#: are computed before they are added to grad_weight (grad_hidden): 4096 rows
#: of D = 256 float32; 1024-row slices were slower (more, smaller BLAS calls)
ACC_BYTES = 4 << 20

_NAN = np.nan


# ----------------------------------------------------------------------------
# row helpers (x is one row of a logits block, float32 or float64)
# ----------------------------------------------------------------------------
@jit
def _transform(x, bias, v0, has_bias, cap):
    """In place: x += bias[v0:v0 + n]; then x = cap * tanh(x / cap) if cap > 0.

    ``x * (1 / cap)`` may differ from ``x / cap`` by an ulp of the argument,
    which moves the capped logit by at most about an ulp.
    """
    n = x.shape[0]
    if has_bias:
        for j in range(n):
            x[j] = x[j] + bias[v0 + j]
    if cap > 0.0:
        c = cast_to(x, cap)
        ic = cast_to(x, 1.0 / cap)  # a multiply: a second division per element costs
        for j in range(n):
            x[j] = c * tanhx(x[j] * ic)


@jit_fast
def _row_sum(x):
    """sum(x) in float64 (CHUNK elements at a time in x's dtype)."""
    n = x.shape[0]
    total = 0.0
    for c in range(0, n, CHUNK):
        acc = zero_of(x)
        for j in range(c, min(c + CHUNK, n)):
            acc += x[j]
        total += acc
    return total


@jit
def _grad_store(x, m, lg, a, c, cap):
    """In place: x = (a * exp((x - m) - lg) - c) * (1 - (x / cap)**2 if cap > 0).

    ``(x - m) - lg`` (not ``x - (m + lg)``): m is a logit, so the shift is
    exact and only the small ``lg = log1p(t)`` rounds.
    """
    n = x.shape[0]
    mm = cast_to(x, m)
    ll = cast_to(x, lg)
    aa = cast_to(x, a)
    cc = cast_to(x, c)
    if cap > 0.0:
        ic = cast_to(x, 1.0 / cap)
        one = cast_to(x, 1.0)
        for j in range(n):
            s = x[j]
            r = s * ic
            x[j] = (aa * expn(s - mm - ll) - cc) * (one - r * r)
    else:
        for j in range(n):
            x[j] = aa * expn(x[j] - mm - ll) - cc


@jit
def _scale_sub(x, a, c):
    """x = a * x - c in place (a, c float64, applied in x's dtype)."""
    aa = cast_to(x, a)
    cc = cast_to(x, c)
    for j in range(x.shape[0]):
        x[j] = aa * x[j] - cc


@jit
def _grad_at(s, m, lg, a, c, b1, cap):
    """The gradient at the target (``s`` its capped logit), in float64."""
    g = a * expneg64((s - m) - lg) - c - b1
    if cap > 0.0:
        r = s / cap
        g *= 1.0 - r * r
    return g


@jit
def _zero(x):
    for j in range(x.shape[0]):
        x[j] = 0.0


@jit
def _row_consts(m, t, keep, base, eps, nv, z):
    """lse, log1p(t) and the gradient's coefficients (a, c, b1) of one row."""
    lse = finish(m, t)
    lg = log1p64(t) if (m != -np.inf and m != np.inf) else 0.0
    sc = base if keep else 0.0
    a = sc * (1.0 + 2.0 * z * lse)
    c = sc * eps / nv
    b1 = sc * (1.0 - eps)
    return lse, lg, a, c, b1


@jit
def _row_loss(lse, sy, sx, eps, nv, z, want_sum):
    loss = lse - (1.0 - eps) * sy + z * lse * lse
    if want_sum:
        loss -= eps / nv * sx
    return loss


# ----------------------------------------------------------------------------
# kernels over a block of rows (x: the (R, Vb) logits block, C-contiguous)
# ----------------------------------------------------------------------------
@kernel(alloc=True)
def fused_block(x, bias, has_bias, cap, tgt, ignore, base, eps, z, want_sum, want_grad, lse, loss):
    """One vocabulary block holding all V logits: loss (and gradient in place).

    Writes lse and loss (float64, ignored rows 0) of each row; returns the sum
    of the losses.
    """
    r_, nv = x.shape
    total = 0.0
    for i in prange(r_):
        xi = x[i]
        _transform(xi, bias, 0, has_bias, cap)
        y = tgt[i]
        keep = y != ignore
        sy = np.float64(xi[y]) if keep else 0.0
        sx = _row_sum(xi) if (want_sum and keep) else 0.0
        # one exp per element: store exp(x - max) while summing, then scale it
        # (the softcap's derivative needs the logits, so it takes two)
        one_exp = want_grad and keep and cap == 0.0
        mx = row_max(xi, 0, nv) if one_exp else cast_to(xi, 0.0)
        one_exp = one_exp and abs(mx) < np.inf
        if one_exp:
            se, cnt = sum_excl_exp(xi, xi, mx)
            m, t = np.float64(mx), se + (cnt - 1.0)
        else:
            m, t = range_pair(xi, 0, nv)
        li, lg, a, c, b1 = _row_consts(m, t, keep, base, eps, nv, z)
        lse[i] = li
        li = _row_loss(li, sy, sx, eps, nv, z, want_sum) if keep else 0.0
        loss[i] = li
        total += li
        if want_grad:
            if a == 0.0 and c == 0.0 and b1 == 0.0:
                _zero(xi)
            elif one_exp:
                _scale_sub(xi, a / (1.0 + t), c)
                xi[y] = _grad_at(sy, m, lg, a, c, b1, cap)
            else:
                _grad_store(xi, m, lg, a, c, cap)
                if keep:
                    xi[y] = _grad_at(sy, m, lg, a, c, b1, cap)
    return total


@kernel(alloc=True)
def forward_block(x, v0, bias, has_bias, cap, tgt, want_sum, mo, to, sy, sx):
    """Vocabulary block [v0, v0 + Vb): transform in place, merge the block's
    pairs into (mo, to), take the target logit into sy, add the sum into sx."""
    r_, nb = x.shape
    for i in prange(r_):
        xi = x[i]
        _transform(xi, bias, v0, has_bias, cap)
        m, t = range_pair(xi, 0, nb)
        mo[i], to[i] = merge(mo[i], to[i], m, t)
        y = tgt[i] - v0
        if 0 <= y < nb:
            sy[i] = xi[y]
        if want_sum:
            sx[i] += _row_sum(xi)


@jit
def finish_rows(mo, to, sy, sx, tgt, ignore, base, eps, nv, z, want_sum, lse, loss, cf):
    """Per row: lse, loss (0 if ignored) and the gradient's constants
    cf[:, 0:5] = (m, log1p(t), a, c, b1); returns the sum of the losses."""
    total = 0.0
    for i in range(mo.shape[0]):
        keep = tgt[i] != ignore
        li, lg, a, c, b1 = _row_consts(mo[i], to[i], keep, base, eps, nv, z)
        lse[i] = li
        li = _row_loss(li, sy[i], sx[i], eps, nv, z, want_sum) if keep else 0.0
        loss[i] = li
        total += li
        cf[i, 0] = mo[i]
        cf[i, 1] = lg
        cf[i, 2] = a
        cf[i, 3] = c
        cf[i, 4] = b1
    return total


@kernel(alloc=True)
def backward_block(x, v0, bias, has_bias, cap, transform, tgt, sy, cf):
    """Vocabulary block [v0, v0 + Vb): the gradient in place of the logits
    (raw logits of a recomputed block are transformed first)."""
    r_, nb = x.shape
    for i in prange(r_):
        xi = x[i]
        m, lg, a, c, b1 = cf[i, 0], cf[i, 1], cf[i, 2], cf[i, 3], cf[i, 4]
        if a == 0.0 and c == 0.0 and b1 == 0.0:
            _zero(xi)
            continue
        if transform:
            _transform(xi, bias, v0, has_bias, cap)
        _grad_store(xi, m, lg, a, c, cap)
        y = tgt[i] - v0
        if 0 <= y < nb:
            xi[y] = _grad_at(sy[i], m, lg, a, c, b1, cap)


@jit
def add_into(dst, src):
    """dst += src (2-D, same shape).  Serial on purpose: it runs between BLAS
    calls, and a parallel region there fights OpenBLAS's spinning threads
    (measured: 250 parallel adds of 256 x 256 took 4.8 s, serial ones 0.3 s)."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] += src[i, j]


# ----------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------
_FN = "linear_cross_entropy"


def _number(v, name):
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{_FN}: {name} must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{_FN}: {name} must be a number, got {v!r}") from None


def _block(v, name):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{_FN}: {name} must be a positive integer or None, got {v!r}")
    if v < 1:
        raise ValueError(f"{_FN}: {name} must be >= 1, got {v}")
    return int(v)


def block_sizes(n, v, itemsize, block_rows=None, block_vocab=None):
    """The (block_rows, block_vocab) used for n rows, v classes (see the module doc)."""
    if block_vocab is None:
        keep = MIN_KEEP_ROWS * v * itemsize <= BUDGET
        block_vocab = v if keep else DEFAULT_BLOCK_VOCAB
    block_vocab = max(1, min(block_vocab, v))
    if block_rows is None:
        block_rows = min(MAX_BLOCK_ROWS, max(1, BUDGET // (block_vocab * itemsize)))
    return max(1, min(block_rows, n)), block_vocab


# ----------------------------------------------------------------------------
# public function
# ----------------------------------------------------------------------------
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_grad: bool = False,
    return_lse: bool = False,
    block_rows: int | None = None,
    block_vocab: int | None = None,
) -> Any:
    r"""Cross-entropy of a linear layer's logits, without forming the logits.

    Computes ``cross_entropy(hidden @ weight.T + bias, target)`` with the
    semantics of :func:`torch.nn.functional.cross_entropy` (``ignore_index``,
    reductions, label smoothing) plus a z-loss and a softcap, and optionally
    the gradients with respect to `hidden`, `weight` and `bias`. The (N, V)
    logits are never held: rows and classes are taken in blocks, each block
    of logits formed by a BLAS matmul, reduced with the ``(max, sum)`` pair
    merge, and (for the gradients) turned into its gradient in place and
    multiplied back. The extra memory is one logits block (64 MiB by
    default) and O(N) floats, instead of the 2 N V elements of logits and
    their gradient.

    Parameters
    ----------
    hidden : array_like of float, shape (N, D)
        Inputs of the output layer (e.g. a language model's last hidden
        states).
    weight : array_like of float, shape (V, D)
        The layer's weight, one row per class: ``logits = hidden @ weight.T``.
    target : array_like of int, shape (N,)
        Class indices in ``[0, V)``, or `ignore_index`.
    bias : array_like of float, shape (V,), optional
        Added to the logits.
    ignore_index : int, optional
        Rows whose target equals it contribute nothing to the loss or the
        gradients, and are left out of the mean. Default -100.
    reduction : {"mean", "sum", "none"}, optional
        "mean" averages over the non-ignored rows (nan if there are none, as
        torch), "sum" adds them, "none" returns one loss per row (0 for the
        ignored ones).
    label_smoothing : float, optional
        In [0, 1]: the target is ``(1 - eps) * onehot + eps / V``.
    z_loss : float, optional
        Weight (>= 0) of the auxiliary loss ``lse**2`` added to each
        non-ignored row's loss (PaLM) and reduced with it. Default 0.
    softcap : float, optional
        If given (> 0), the logits become ``softcap * tanh(logits / softcap)``
        before the loss (Gemma 2).
    return_grad : bool, optional
        If True, also return the gradients of the (reduced) loss with respect
        to `hidden`, `weight` and, when given, `bias` (for "none": of the sum
        of the per-row losses).
    return_lse : bool, optional
        If True, also return the per-row log-sum-exp of the (capped) logits.
    block_rows, block_vocab : int, optional
        Block sizes. By default all V classes of ``BUDGET // (V * itemsize)``
        rows form one block (64 MiB) when that is at least 128 rows; beyond
        that, blocks of 8192 classes (recomputed in the backward pass).

    Returns
    -------
    loss : scalar or ndarray
        In the inputs' float dtype; shape (N,) for "none".
    grad_hidden, grad_weight : ndarray
        Only if `return_grad`: shaped and typed like `hidden` and `weight`.
    grad_bias : ndarray
        Only if `return_grad` and a `bias` is given.
    lse : ndarray, shape (N,)
        Only if `return_lse`.

    Raises
    ------
    TypeError
        Non-floating `hidden`, `weight` or `bias`, a non-integer `target`.
    ValueError
        Mismatched shapes, an unknown `reduction`, `label_smoothing` outside
        [0, 1], a negative `z_loss`, a `softcap` that is not > 0, block sizes
        below 1.
    IndexError
        A `target` outside ``[0, V)`` other than `ignore_index`.

    See Also
    --------
    cross_entropy

    Notes
    -----
    Per non-ignored row, with ``s`` the (capped) logits, ``y`` the target and
    ``lse = log(sum(exp(s)))``::

        loss = lse - (1 - eps) s[y] - eps / V sum(s) + z_loss lse**2

    The reductions are summed in float64. The matmuls dominate the time, so
    with the default blocks each logit is computed once (three matmuls in
    all, as for the unfused computation).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import linear_cross_entropy
    >>> h = np.array([[1.0, 0.5], [-0.5, 2.0], [0.2, 0.1]])
    >>> w = np.array([[0.3, -0.2], [1.0, 0.4], [-0.7, 0.9], [0.0, 0.1]])
    >>> y = np.array([1, 2, -100])
    >>> linear_cross_entropy(h, w, y)  # mean over the two non-ignored rows
    np.float64(0.482130311)
    >>> loss, gh, gw = linear_cross_entropy(h, w, y, return_grad=True)
    >>> gh  # the ignored row gets no gradient
    array([[-0.25348567, -0.0517    ],
           [ 0.15881145, -0.09744664],
           [ 0.        ,  0.        ]])
    >>> gw.shape
    (4, 2)
    >>> linear_cross_entropy(h, w, y, reduction="none", z_loss=1e-4, softcap=30.0)
    array([0.6524986 , 0.31400488, 0.        ])

    float32 stays float32 (printed here with fewer digits: the last bits of a
    float32 result depend on the CPU's vector width and the BLAS):

    >>> linear_cross_entropy(h.astype(np.float32), w.astype(np.float32), y)
    np.float32(0.48213)
    """
    c = _checked(
        hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss, softcap
    )
    br, bv = _block(block_rows, "block_rows"), _block(block_vocab, "block_vocab")
    n, d = c.h.shape
    nv = c.w.shape[0]
    lse, loss = np.empty(n), np.empty(n)
    grads = None
    if return_grad:
        gw = np.zeros((nv, d), c.cdt) if n == 0 else np.empty((nv, d), c.cdt)
        grads = (np.empty((n, d), c.cdt), gw, np.zeros(nv))
    keep = c.t != c.ii
    count = int(np.count_nonzero(keep))
    total = _run(
        c, br, bv, 1.0 / count if (reduction == "mean" and count > 0) else 1.0, lse, loss, grads
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            res = loss.astype(c.rdt)
        elif reduction == "sum":
            res = c.rdt.type(total)
        else:
            res = c.rdt.type(np.float64(total) / np.float64(count) if count else _NAN)
    out = [res]
    if return_grad:
        given = (c.h, c.w, c.b)
        out += [g.astype(a.dtype, copy=False) for g, a in zip(grads, given) if a is not None]
    if return_lse:
        out.append(lse.astype(c.rdt))
    return out[0] if len(out) == 1 else tuple(out)


class _Call(NamedTuple):
    """A checked call: the float arrays as given (``b`` None without a bias),
    the int64 targets, the scalar options, the result and compute dtypes."""

    h: np.ndarray
    w: np.ndarray
    b: object
    t: np.ndarray
    ii: int
    eps: float
    z: float
    cap: float
    rdt: np.dtype
    cdt: np.dtype


def _checked(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss, cap):
    h = float_input(hidden, "hidden", _FN, 2)
    w = float_input(weight, "weight", _FN, 2)
    n, nv = h.shape[0], w.shape[0]
    if w.shape[1] != h.shape[1]:
        raise ValueError(
            f"{_FN}: weight must have shape (V, D) with D = hidden.shape[1] = {h.shape[1]}, "
            f"got {w.shape}"
        )
    b = None if bias is None else float_input(bias, "bias", _FN, 1)
    if b is not None and b.shape[0] != nv:
        raise ValueError(f"{_FN}: bias must have shape (V,) = ({nv},), got {b.shape}")
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{_FN}: target must have an integer dtype, got {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"{_FN}: target must have shape (N,) = ({n},), got {t.shape}")
    check_reduction(reduction, _FN)
    ii = check_ignore_index(ignore_index, _FN)
    rdt = np.result_type(*(a.dtype for a in (h, w, b) if a is not None))
    cdt = compute_dtype(rdt)
    eps = check_smoothing(_number(label_smoothing, "label_smoothing"), _FN)
    z = check_z_loss(_number(z_loss, "z_loss"), _FN)
    cap = check_softcap(None if cap is None else _number(cap, "softcap"), cdt, _FN)
    if nv == 0 and n > 0:
        raise ValueError(f"{_FN}: weight has no rows (V = 0 classes)")
    return _Call(h, w, b, _class_targets(t, ii, nv), ii, eps, z, cap, rdt, cdt)


def _class_targets(t, ii, nv):
    """The targets as int64; IndexError for one outside [0, nv) but ignore_index."""
    if t.dtype == np.uint64:
        t = np.minimum(t, np.iinfo(np.int64).max)
    t = np.ascontiguousarray(t, dtype=np.int64)
    bad = (t != ii) & ((t < 0) | (t >= nv))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise IndexError(
            f"{_FN}: target {int(t[k])} is out of bounds for {nv} classes "
            f"(at position {k}; ignore_index is {ii})"
        )
    return t


def _run(c, br, bv, base, lse, loss, grads):
    """Losses and lse into ``loss``, ``lse``, gradients into ``grads``; the sum."""
    n, nv = c.h.shape[0], c.w.shape[0]
    if n == 0:
        return 0.0
    hc = c.h.astype(c.cdt, copy=False)
    wc = c.w.astype(c.cdt, copy=False)
    has_bias = c.b is not None
    # never read without a bias
    bc = np.ascontiguousarray(c.b, dtype=c.cdt) if has_bias else np.zeros(1, c.cdt)
    want_sum = c.eps > 0.0
    br, bv = block_sizes(n, nv, c.cdt.itemsize, br, bv)
    args = (hc, wc, bc, has_bias, c.cap, c.t, c.ii, base, c.eps, c.z, want_sum, grads is not None,
            lse, loss)  # fmt: skip
    if bv >= nv:
        return _run_one_block(br, args, grads)
    return _run_vocab_blocks(br, bv, args, grads)


def _scratch(d, rows, dtype):
    """The accumulation scratch: ACC_BYTES, and at least one row / column."""
    return np.empty(max(ACC_BYTES // dtype.itemsize, d, rows), dtype=dtype)


def _add_gt_h(gw_blk, g, hb, first, acc):
    """gw_blk (+)= g.T @ hb; accumulated in slices of rows that fit in acc."""
    if first:
        np.matmul(g.T, hb, out=gw_blk)
        return
    nr, d = gw_blk.shape
    step = max(1, acc.size // d)
    for c0 in range(0, nr, step):
        c1 = min(c0 + step, nr)
        tmp = acc[: (c1 - c0) * d].reshape(c1 - c0, d)
        np.matmul(g[:, c0:c1].T, hb, out=tmp)
        add_into(gw_blk[c0:c1], tmp)


def _add_g_w(gh_blk, g, wb, first, acc):
    """gh_blk (+)= g @ wb; accumulated in slices of columns that fit in acc."""
    if first:
        np.matmul(g, wb, out=gh_blk)
        return
    r, d = gh_blk.shape
    step = max(1, acc.size // r)
    for c0 in range(0, d, step):
        c1 = min(c0 + step, d)
        tmp = acc[: r * (c1 - c0)].reshape(r, c1 - c0)
        np.matmul(g, wb[:, c0:c1], out=tmp)
        add_into(gh_blk[:, c0:c1], tmp)


def _run_one_block(br, args, grads):
    hc, wc, bc, has_bias, cap, t, ii, base, eps, z, want_sum, want_grad, lse, loss = args
    n, d = hc.shape
    nv = wc.shape[0]
    buf = np.empty(br * nv, dtype=hc.dtype)
    if want_grad:
        gh, gw, gb = grads
        acc = _scratch(d, br, hc.dtype)
    total = 0.0
    for r0 in range(0, n, br):
        r1 = min(n, r0 + br)
        hb = hc[r0:r1]
        x = buf[: (r1 - r0) * nv].reshape(r1 - r0, nv)
        np.matmul(hb, wc.T, out=x)
        total += fused_block(
            x.size, x, bc, has_bias, cap, t[r0:r1], ii, base, eps, z, want_sum, want_grad,
            lse[r0:r1], loss[r0:r1],
        )  # fmt: skip
        if want_grad:
            np.matmul(x, wc, out=gh[r0:r1])
            _add_gt_h(gw, x, hb, r0 == 0, acc)
            if has_bias:
                gb += x.sum(axis=0)
    return total


def _run_vocab_blocks(br, bv, args, grads):
    hc, wc, bc, has_bias, cap, t, ii, base, eps, z, want_sum, want_grad, lse, loss = args
    n, d = hc.shape
    nv = wc.shape[0]
    cdt = hc.dtype
    buf = np.empty(br * bv, dtype=cdt)
    mo = np.empty(br)
    to = np.empty(br)
    sy = np.empty(br)
    sx = np.empty(br)
    cf = np.empty((br, 5))
    starts = list(range(0, nv, bv))
    if want_grad:
        gh, gw, gb = grads
        acc = _scratch(d, br, cdt)
    total = 0.0
    for r0 in range(0, n, br):
        r1 = min(n, r0 + br)
        rr = r1 - r0
        hb = hc[r0:r1]
        tb = t[r0:r1]
        mo[:rr] = -np.inf
        to[:rr] = 0.0
        sy[:rr] = 0.0
        sx[:rr] = 0.0
        for v0 in starts:
            nb = min(bv, nv - v0)
            x = buf[: rr * nb].reshape(rr, nb)
            np.matmul(hb, wc[v0 : v0 + nb].T, out=x)
            forward_block(
                x.size, x, v0, bc, has_bias, cap, tb, want_sum, mo[:rr], to[:rr], sy[:rr], sx[:rr]
            )
        total += finish_rows(
            mo[:rr], to[:rr], sy[:rr], sx[:rr], tb, ii, base, eps, nv, z, want_sum,
            lse[r0:r1], loss[r0:r1], cf[:rr],
        )  # fmt: skip
        if not want_grad:
            continue
        for k, v0 in enumerate(reversed(starts)):
            nb = min(bv, nv - v0)
            x = buf[: rr * nb].reshape(rr, nb)
            wb = wc[v0 : v0 + nb]
            if k > 0:  # the last forward block is still in the buffer
                np.matmul(hb, wb.T, out=x)
            backward_block(x.size, x, v0, bc, has_bias, cap, k > 0, tb, sy[:rr], cf[:rr])
            _add_g_w(gh[r0:r1], x, wb, k == 0, acc)
            _add_gt_h(gw[v0 : v0 + nb], x, hb, r0 == 0, acc)
            if has_bias:
                gb[v0 : v0 + nb] += x.sum(axis=0)
    return total
