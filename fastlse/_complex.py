"""Complex input: scipy 1.17's algorithms in NumPy (correct, not fast).

No kernel serves complex numbers; these follow scipy step for step so the
results (phases, infinities, signs) are scipy's.
"""

import numpy as np

__all__ = ["lse_complex", "softmax_complex"]


def lse_complex(a, b, axes, keepdims, return_sign):
    """NumPy path for complex input: scipy 1.17's algorithm, step for step
    (correct, not fast): the term of the element with the largest real part
    is kept apart (``log1p`` of the rest), results that come out infinite
    are taken from the direct ``log(sum(b * exp(a)))``, phases are wrapped
    to (-pi, pi] without touching those already inside."""
    with np.errstate(all="ignore"):
        if a.size == 0:
            out = np.full(np.sum(a.real, axis=axes, keepdims=True).shape, -np.inf, a.dtype)
            sgn = np.sign(out)
        else:
            direct = np.sum(np.exp(a) if b is None else b * np.exp(a), axis=axes, keepdims=True)
            sgn_direct = np.sign(direct)
            out_direct = np.log(np.abs(direct) if return_sign else direct)
            out, sgn = _lse_complex_shifted(a, b, axes)
            if return_sign:
                out = out.real
            finite = np.isfinite(out)
            out = np.where(finite, out, out_direct)
            sgn = np.where(finite, sgn, sgn_direct)
        if return_sign:
            sgn = sgn.real + 1j * _wrap_radians(sgn.imag)
        else:
            out = out.real + 1j * _wrap_radians(out.imag)
    if not keepdims:
        out = np.squeeze(out, axis=axes)
        sgn = np.squeeze(sgn, axis=axes)
    if return_sign:
        out = out.real
    out = out[()] if out.ndim == 0 else out
    sgn = sgn[()] if sgn.ndim == 0 else sgn
    return (out, sgn) if return_sign else out


def _lse_complex_shifted(a, b, axes):
    """(log, sign) of sum b * exp(a) with one element of the largest real
    part kept apart (scipy's ``_logsumexp`` for complex a), keepdims shape."""
    if b is not None:
        a = np.where(b == 0, -np.inf, a)
    real = a.real
    at_max = real == np.max(real, axis=axes, keepdims=True)
    # one element of the largest real part per slice: the last in C order
    idx = np.where(at_max, np.arange(a.size).reshape(a.shape), -1)
    one = idx == np.max(idx, axis=axes, keepdims=True)
    a_max = np.sum(np.where(one, a, 0), axis=axes, keepdims=True, dtype=a.dtype)
    rest = np.where(one, -np.inf, a)
    w_max = one.astype(a.dtype) if b is None else b * one
    m = np.sum(w_max, axis=axes, keepdims=True, dtype=a.dtype)
    e = np.exp(rest - a_max) if b is None else b * np.exp(rest - a_max)
    s = np.sum(e, axis=axes, keepdims=True, dtype=e.dtype)
    s = np.where(s == 0, s, s / m)
    sgn = np.sign(s + 1) * np.sign(m) * np.exp(a_max.imag * 1j)
    return np.log1p(s) + np.log(m) + a_max, sgn


def _wrap_radians(x):
    """Angles to (-pi, pi]; those already inside are kept (their bits)."""
    wrapped = -((-x + np.pi) % (2 * np.pi) - np.pi)
    return np.where(np.abs(x) < np.pi, x, wrapped)


def softmax_complex(x, axes, log):
    with np.errstate(all="ignore"):
        xmax = np.max(x, axis=axes, keepdims=True)
        if log:
            xmax = np.where(np.isfinite(xmax), xmax, 0)
            tmp = x - xmax
            return tmp - np.log(np.sum(np.exp(tmp), axis=axes, keepdims=True))
        e = np.exp(x - xmax)
        return e / np.sum(e, axis=axes, keepdims=True)
