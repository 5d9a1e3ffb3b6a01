"""mpmath references and conditioning bounds shared by the accuracy tests.

Every reference is computed here from the inputs' exact float values at
``DPS`` digits (``mp.workdps``: the global precision is left alone).  A bound
is the error any algorithm working in precision ``eps`` can be charged with:
the condition number of the function times ``eps`` (inputs perturbed by
``eps`` relatively, ``sum_k |x_k df/dx_k|``), plus one rounding of the result.
Errors are reported as multiples of it ("units").
"""

import mpmath as mp
import numpy as np

DPS = 40


def mpf(v):
    """The exact value of a float (of any dtype), or an mpf as it is."""
    return v if isinstance(v, mp.mpf) else mp.mpf(float(v))


def eps_of(dtype):
    """The dtype's eps as a Python float (float16 / float32 scalars would
    round the bounds, even to 0)."""
    return float(np.finfo(dtype).eps)


def units(ours, exact, bound):
    """|ours - exact| / bound, the difference taken at DPS digits.  A float32
    or float64 result below the normal range may come out subnormal or 0
    (exp and products flushing there): its bound gets tiny more."""
    dt = np.asarray(ours).dtype
    floor = float(np.finfo(dt).tiny) if dt in (np.float32, np.float64) else 0.0
    with mp.workdps(DPS):
        return float(abs(mpf(ours) - exact)) / max(float(bound) + floor, 1e-300)


def make_rows(rng, dtype, n):
    """Rows of n values: scales 0.1 .. 100 at offsets 0 and +-500, one dominant
    element (far above the rest, at +500), a two-way tie above the rest, and
    all equal."""
    rows = []
    for scale in [0.1, 1.0, 10.0, 100.0]:
        for shift in [0.0, 500.0, -500.0]:
            rows.append(rng.standard_normal(n) * scale + shift)
    dom = np.full(n, 460.0)
    dom[n // 3] = 500.0
    tie = rng.standard_normal(n) - 30.0
    tie[[1, n - 2]] = 2.5
    rows += [dom, tie, np.full(n, 3.0)]
    return np.array(rows).astype(dtype)


def lse_ref(row):
    """(log sum exp(x), kappa = sum_j |x_j| softmax_j), at DPS digits."""
    return row_ref(row)[:2]


def row_ref(row):
    """(lse, kappa, softmax) of a row at DPS digits (exponents from the max)."""
    with mp.workdps(DPS):
        xs = [mpf(v) for v in row]
        m = max(xs)
        e = [mp.exp(v - m) for v in xs]
        s = mp.fsum(e)
        p = [ej / s for ej in e]
        return m + mp.log(s), mp.fsum(abs(v) * pj for v, pj in zip(xs, p)), p


def lse_bound(lse, kappa, eps):
    """test_accuracy's bound of a log-sum-exp: eps * max(|lse|, kappa)."""
    return eps * max(abs(float(lse)), float(kappa), np.finfo(float).tiny)


def log_softmax_bound(v, exact, b, eps):
    """test_accuracy's bound of x_j - lse: the lse's bound b, and x_j - lse
    rounded once more."""
    return b + eps * abs(float(exact)) + eps * abs(float(v))


def softmax_bound(v, p, kappa, eps):
    """The bound of p = softmax_j = exp(x_j - lse) (``row_ref``'s p and kappa):
    its condition sum_l |x_l dp/dx_l| = p (|x_j| (1 - p) + sum_{l != j} |x_l| p_l)
    = p (|x_j| (1 - 2 p) + kappa), times eps, plus one rounding of p."""
    with mp.workdps(DPS):
        x = abs(mpf(v))
        return eps * float(p * (x * (1 - 2 * p) + kappa) + p)


def cumulative_ref(row, reverse=False):
    """[(lse of the prefix (suffix with reverse) ending at j, its kappa)]."""
    with mp.workdps(DPS):
        order = range(len(row) - 1, -1, -1) if reverse else range(len(row))
        s = sx = mp.mpf(0)
        out = [None] * len(row)
        for j in order:
            x = mpf(row[j])
            e = mp.exp(x)
            s += e
            sx += abs(x) * e
            out[j] = (mp.log(s), sx / s)
        return out


def xent_row_ref(x, B, z=0.0, cap=None):
    """Loss, gradient and bounds of one cross-entropy row, at DPS digits.

    With c = cap * tanh(x / cap) (c = x without a cap), lse = log sum exp(c),
    p = softmax(c), per-class coefficients B (fastlse.kernels.xent's form:
    index targets B_j = (1 - e) w_y [j == y] + e / C w_j, probabilities
    B_j = w_j ((1 - e) q_j + e / C)), A = sum B and a z-loss z::

        L   = sum_j B_j (lse - c_j) + z lse**2
        G_k = dL/dc_k = (A + 2 z lse) p_k - B_k,     g_k = G_k d_k,
        d_k = 1 - (c_k / cap)**2  (1 without a cap).

    The bounds perturb every input by eps relatively: the capped logits c_k
    (this covers x_k's own perturbation, which moves c_k by |x_k| d_k <= |c_k|,
    and the rounding of c_k, which any algorithm forming it makes), the
    coefficients B_j (weights, target probabilities, smoothing: the one-hot
    target included, which charges p_t - 1 with eps * (p_t + 1), the
    cancellation every algorithm forming p_t first pays) and z; then add one
    rounding of the result::

        bound(L)   = eps (sum_k |c_k G_k| + sum_j B_j (lse - c_j) + z lse**2 + |L|)
        bound(g_k) = eps (d_k sum_l |c_l H_kl| + 2 |G_k| c_k**2 / cap**2
                          + d_k (A p_k + B_k + 2 z |lse| p_k) + |g_k|)

    with H_kl = d G_k / d c_l = (A + 2 z lse)(p_k [k == l] - p_k p_l) + 2 z p_k p_l
    (the second term of bound(g_k): d_k's error from c_k's).  Returns
    (L, bound(L) / eps, [g_k], [bound(g_k) / eps], lse).

    A confident row's loss and p_t - 1 are about exp(-span) (span: the
    logits' range): they are formed without cancellation, from the max m,
    t = sum_{j != argmax} exp(c_j - m) and lse - c_j = (m - c_j) + log1p(t).
    """
    with mp.workdps(DPS):
        xs = [mpf(v) for v in x]
        capm = None if cap is None else mpf(cap)
        c = xs if capm is None else [capm * mp.tanh(v / capm) for v in xs]
        d = [mp.mpf(1)] * len(c) if capm is None else [1 - (ck / capm) ** 2 for ck in c]
        Bm = [mpf(b) for b in B]
        zm = mpf(z)
        top = max(range(len(c)), key=lambda k: c[k])
        m = c[top]
        e = [mp.exp(ck - m) for ck in c]
        t = mp.fsum(ej for j, ej in enumerate(e) if j != top)
        lg = mp.log1p(t)
        lse = m + lg
        p = [ej / (1 + t) for ej in e]
        q = [1 - pk for pk in p]  # 1 - p_k, and at the max (1 + t - 1) / (1 + t):
        q[top] = t / (1 + t)
        A = mp.fsum(Bm)
        alpha = A + 2 * zm * lse
        G = [alpha * pk - bk for pk, bk in zip(p, Bm)]
        # at the max: (A - B_top + 2 z lse - B_top t) / (1 + t), no cancellation
        rest = mp.fsum(bj for j, bj in enumerate(Bm) if j != top)
        G[top] = (rest + 2 * zm * lse - Bm[top] * t) / (1 + t)
        g = [gk * dk for gk, dk in zip(G, d)]
        terms = mp.fsum(bj * ((m - cj) + lg) for bj, cj in zip(Bm, c)) + zm * lse**2
        L = terms
        bl = mp.fsum(abs(ck * gk) for ck, gk in zip(c, G)) + terms + abs(L)
        S = mp.fsum(abs(cl) * pl for cl, pl in zip(c, p))
        s_top = mp.fsum(abs(cl) * pl for j, (cl, pl) in enumerate(zip(c, p)) if j != top)
        bg = []
        for k in range(len(c)):
            ck, pk = abs(c[k]), p[k]
            diag = abs(alpha * pk * q[k] + 2 * zm * pk * pk) * ck
            off = pk * abs(2 * zm - alpha) * (s_top if k == top else S - ck * pk)
            dcap = 0 if capm is None else 2 * abs(G[k]) * ck**2 / capm**2
            par = d[k] * (A * pk + Bm[k] + 2 * zm * abs(lse) * pk)
            bg.append(float(d[k] * (diag + off) + dcap + par + abs(g[k])))
        return L, float(bl), g, bg, lse
