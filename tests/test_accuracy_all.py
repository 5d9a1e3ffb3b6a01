"""Accuracy of every function against mpmath, in units of a conditioning bound.

``test_accuracy`` does logsumexp, log_softmax and softmax rows; this file
does cross_entropy (loss and gradient, every option), logcumsumexp, weighted
logsumexp, linear_cross_entropy, log_sigmoid, float16 input, and the routes
that split a reduction (pieces, folded pieces, dask chunks, OnlineLogSumExp).
The references and the bounds are in ``accuracy_ref`` (the condition number
times eps plus one rounding of the result, each stated where it is built);
every test asserts the worst error is at most ``GOAL`` units.
"""

import mpmath as mp
import numpy as np
import pytest
from accuracy_ref import (
    DPS,
    cumulative_ref,
    eps_of,
    log_softmax_bound,
    lse_bound,
    make_rows,
    mpf,
    row_ref,
    softmax_bound,
    units,
    xent_row_ref,
)

import fastlse

GOAL = 4.0
FLOATS = [np.float32, np.float64]
FUNCS = (fastlse.logsumexp, fastlse.log_softmax, fastlse.softmax)


# ----------------------------------------------------------------------------
# cross_entropy
# ----------------------------------------------------------------------------
def coefs(n, y=None, q=None, w=None, smooth=0.0):
    """The per-class coefficients B_j of one row (``xent_row_ref``), exact."""
    with mp.workdps(DPS):
        wm = [mp.mpf(1)] * n if w is None else [mpf(v) for v in w]
        e = mpf(smooth)
        if q is None:
            return [(1 - e) * wm[y] * (j == y) + e / n * wm[j] for j in range(n)]
        return [wm[j] * ((1 - e) * mpf(q[j]) + e / n) for j in range(n)]


#: (label_smoothing, weighted, z_loss, softcap)
XENT_OPTIONS = {
    "plain": (0.0, False, 0.0, None),
    "smooth-weight": (0.1, True, 0.0, None),
    "z_loss": (0.0, False, 1e-3, None),
    "softcap": (0.0, False, 0.0, 30.0),
    "all": (0.2, True, 1e-2, 50.0),
}


def xent_case(rng, dtype, n, soft, option):
    """Logits (make_rows), targets (class indices, some at the row's max, or
    probabilities), keywords and the rows' coefficients."""
    smooth, weighted, z, cap = XENT_OPTIONS[option]
    x = make_rows(rng, dtype, n)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    if soft:
        q = rng.dirichlet(np.full(n, 0.3), size=len(x)).astype(dtype)
        target, B = q, [coefs(n, q=qi, w=w, smooth=smooth) for qi in q]
    else:
        target = rng.integers(0, n, len(x))
        target[::3] = np.argmax(x[::3], axis=1)  # the confident rows: loss near 0
        B = [coefs(n, y=yi, w=w, smooth=smooth) for yi in target]
    kw = dict(weight=w, label_smoothing=smooth, z_loss=z, softcap=cap)
    return x, target, kw, B


def xent_worst(x, loss, grad, B, z, cap, eps):
    """Worst units of per-row losses and gradient rows."""
    wl = wg = 0.0
    for i, row in enumerate(x):
        L, bl, g, bg, _ = xent_row_ref(row, B[i], z, cap)
        wl = max(wl, units(loss[i], L, eps * bl))
        for k in range(len(row)):
            wg = max(wg, units(grad[i, k], g[k], eps * bg[k]))
    return wl, wg


@pytest.mark.parametrize("option", list(XENT_OPTIONS))
@pytest.mark.parametrize("soft", [False, True], ids=["index", "probs"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_cross_entropy_rows(rng, dtype, soft, option):
    """Per-row losses and the gradient of their sum, within their bounds;
    C = 40 (row kernels) and C = 10 (index targets: the small-C kernels)."""
    eps = eps_of(dtype)
    _, _, z, cap = XENT_OPTIONS[option]
    worst = [0.0, 0.0]
    for n in (40, 10):
        x, target, kw, B = xent_case(rng, dtype, n, soft, option)
        loss, grad = fastlse.cross_entropy(x, target, reduction="none", return_grad=True, **kw)
        wl, wg = xent_worst(x, loss, grad, B, z, cap, eps)
        worst = [max(worst[0], wl), max(worst[1], wg)]
    assert max(worst) <= GOAL, worst


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_cross_entropy_reductions(rng, dtype, reduction):
    """The reduced loss and its gradient: "mean" divides the rows'
    coefficients by the summed target weights and the z-loss by the rows
    (``losses.cross_entropy``), so each row's share is a row of
    ``xent_row_ref``; the reduction's bound is the rows' bounds plus one
    rounding of the total."""
    eps = eps_of(dtype)
    x, target, kw, B = xent_case(rng, dtype, 40, False, "all")
    z, cap = kw["z_loss"], kw["softcap"]
    with mp.workdps(DPS):
        den = mp.fsum(mpf(kw["weight"][y]) for y in target) if reduction == "mean" else 1
        B = [[b / den for b in row] for row in B]
        zs = mp.mpf(1) / len(x) if reduction == "mean" else 1
    loss, grad = fastlse.cross_entropy(x, target, reduction=reduction, return_grad=True, **kw)
    total, bound, wg = 0, 0.0, 0.0
    for i, row in enumerate(x):
        L, bl, g, bg, _ = xent_row_ref(row, B[i], z * zs, cap)
        with mp.workdps(DPS):
            total += L
        bound += eps * bl
        for k in range(len(row)):
            wg = max(wg, units(grad[i, k], g[k], eps * bg[k]))
    wl = units(loss, total, bound + eps * abs(float(total)))
    assert max(wl, wg) <= GOAL, (wl, wg)


# ----------------------------------------------------------------------------
# log_sigmoid
# ----------------------------------------------------------------------------
def log_sigmoid_ref(v):
    """(f, bound / eps): f = -log1p(exp(-x)), f' = sigmoid(-x), so the bound is
    |x| sigmoid(-x) + |f| (condition plus one rounding)."""
    with mp.workdps(DPS):
        x = mpf(v)
        f = -mp.log1p(mp.exp(-x))
        return f, float(abs(x) / (1 + mp.exp(x)) + abs(f))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_log_sigmoid(rng, dtype):
    """Across +-800 (float16: its range), near 0, and tiny x; float16 is
    computed in float32 and rounded once: half an ulp of the result more."""
    top = 60000.0 if dtype == np.float16 else 800.0
    x = np.concatenate([
        np.linspace(-top, top, 101), rng.standard_normal(50) * 5, [1e-3, -1e-3, 1e-30, 37.0]
    ]).astype(dtype)  # fmt: skip
    eps = eps_of(dtype)
    ours = fastlse.log_sigmoid(x)
    worst = 0.0
    for v, o in zip(x, ours):
        f, b = log_sigmoid_ref(v)
        half_ulp = 0.5 * float(np.spacing(abs(dtype(float(f))))) if dtype == np.float16 else 0
        worst = max(worst, units(o, f, eps * b + half_ulp))
    assert worst <= GOAL, worst


# ----------------------------------------------------------------------------
# logcumsumexp
# ----------------------------------------------------------------------------
def cumulative_worst(x, out, eps, reverse):
    worst = 0.0
    for row, res in zip(x, out):
        for o, (lse, kappa) in zip(res, cumulative_ref(row, reverse)):
            worst = max(worst, units(o, lse, lse_bound(lse, kappa, eps)))
    return worst


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", FLOATS)
def test_logcumsumexp(rng, dtype, reverse):
    """Each output within the bound of its prefix's log-sum-exp: rows, the
    same data along axis 0 (column scans), and scans cut in pieces."""
    from fastlse import _cumulative

    eps = eps_of(dtype)
    x = make_rows(rng, dtype, 60)
    worst = [cumulative_worst(x, fastlse.logcumsumexp(x, axis=1, reverse=reverse), eps, reverse)]
    cols = fastlse.logcumsumexp(np.ascontiguousarray(x.T), axis=0, reverse=reverse)
    worst.append(cumulative_worst(x, cols.T, eps, reverse))
    with pytest.MonkeyPatch.context() as mpatch:  # pieces of 16 joined by carries
        mpatch.setattr(_cumulative, "PIECE", 16)
        out = np.empty_like(x)
        _cumulative.scan(x, out, reverse, nth=4)
    worst.append(cumulative_worst(x, out, eps, reverse))
    assert max(worst) <= GOAL, worst


# ----------------------------------------------------------------------------
# weighted logsumexp
# ----------------------------------------------------------------------------
def weighted_ref(row, b):
    """(log|S|, sign S, bound / eps) of S = sum b_j exp(x_j): with
    R = sum |b_j| exp(x_j) / |S| (the cancellation), perturbing x gives
    sum |x_j| |b_j| exp(x_j) / |S| and perturbing b gives R; with the
    result's rounding, as test_accuracy's max form: max(|f|, .) + R."""
    with mp.workdps(DPS):
        xs = [mpf(v) for v in row]
        t = [mpf(bj) * mp.exp(v) for v, bj in zip(xs, b)]
        s = mp.fsum(t)
        a = abs(s)
        kx = mp.fsum(abs(v) * abs(tj) for v, tj in zip(xs, t)) / a
        r = mp.fsum(abs(tj) for tj in t) / a
        f = mp.log(a)
        return f, mp.sign(s), float(max(abs(f), kx) + r), float(r)


@pytest.mark.parametrize("signed", [False, True], ids=["positive", "mixed-sign"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_weighted_logsumexp(rng, dtype, signed):
    """b= weights in (0.1, 10) of x's dtype (mixed-sign: either sign, and the
    first row's first weight cancelling the rest to 1e-6: R ~ 1e6), the sign
    exact."""
    eps = eps_of(dtype)
    x = make_rows(rng, dtype, 30)
    b = rng.uniform(0.1, 10.0, x.shape).astype(dtype)
    if signed:
        b *= rng.choice([-1.0, 1.0], x.shape).astype(dtype)
        with mp.workdps(DPS):
            rest = mp.fsum(
                mpf(bj) * mp.exp(mpf(v) - mpf(x[0, 0])) for v, bj in zip(x[0, 1:], b[0, 1:])
            )
        b[0, 0] = -float(rest) * (1 + 1e-6)
    res, sgn = fastlse.logsumexp(x, axis=1, b=b, return_sign=True)
    worst, worst_r = 0.0, 0.0
    for i, row in enumerate(x):
        f, s, bound, r = weighted_ref(row, b[i])
        assert sgn[i] == s
        worst = max(worst, units(res[i], f, eps * bound))
        worst_r = max(worst_r, r)
    assert worst <= GOAL, (worst, worst_r)


# ----------------------------------------------------------------------------
# linear_cross_entropy
# ----------------------------------------------------------------------------
def linear_logits(hi, w, bias):
    """The exact logits of one row, [h . W_k + bias_k], and a_k = sum_d
    |h_d W_kd| + |bias_k|: perturbing h, W and the bias by eps relatively
    moves logit k by up to eps * a_k."""
    with mp.workdps(DPS):
        hm = [mpf(t) for t in hi]
        dots, a = [], []
        for wk, bk in zip(w, bias):
            prods = [s * mpf(t) for s, t in zip(hm, wk)]
            dots.append(mp.fsum(prods) + mpf(bk))
            a.append(mp.fsum(abs(t) for t in prods) + abs(mpf(bk)))
        return dots, a


@pytest.mark.parametrize("dtype", FLOATS)
def test_linear_cross_entropy(rng, dtype):
    """The loss of logits h @ W.T + bias never formed, against the loss of the
    exact logits: ``xent_row_ref``'s bound plus the logits' own perturbation,
    sum_k a_k |dL/dz_k| (``linear_logits``; dL/dz_k = g_k through the cap)."""
    eps = eps_of(dtype)
    n, d, v = 12, 8, 40
    h = rng.standard_normal((n, d)) * np.repeat([0.1, 1.0, 10.0], 4)[:, None]
    w = rng.standard_normal((v, d))
    bias = rng.standard_normal(v) * 5
    h, w, bias = h.astype(dtype), w.astype(dtype), bias.astype(dtype)
    y = rng.integers(0, v, n)
    kw = dict(bias=bias, label_smoothing=0.1, z_loss=1e-3, softcap=30.0)
    loss = fastlse.linear_cross_entropy(h, w, y, reduction="none", **kw)
    worst = 0.0
    for i in range(n):
        dots, a = linear_logits(h[i], w, bias)
        L, bl, g, _, _ = xent_row_ref(dots, coefs(v, y=y[i], smooth=0.1), 1e-3, 30.0)
        with mp.workdps(DPS):
            bound = bl + float(mp.fsum(ak * abs(gk) for ak, gk in zip(a, g)))
        worst = max(worst, units(loss[i], L, eps * bound))
    assert worst <= GOAL, worst


# ----------------------------------------------------------------------------
# float16 input: computed in float32, rounded once to float16
# ----------------------------------------------------------------------------
def half_ulp(v):
    return 0.5 * float(np.spacing(np.abs(np.float16(float(v)))))


def test_float16(rng):
    """logsumexp, log_softmax, softmax, logcumsumexp and the cross-entropy
    loss of float16 rows: float16 eps times the float16 bounds plus half an
    ulp of the float16 result (its one rounding)."""
    eps = eps_of(np.float16)
    x = make_rows(rng, np.float16, 20)
    lse, ls, sm = (f(x, axis=1) for f in FUNCS)
    cum = fastlse.logcumsumexp(x, axis=1)
    y = np.argmax(x, axis=1)
    loss = fastlse.cross_entropy(x, y, reduction="none")
    worst = 0.0
    for i, row in enumerate(x):
        ref, kappa, ps = row_ref(row)
        b = lse_bound(ref, kappa, eps)
        worst = max(worst, units(lse[i], ref, b + half_ulp(ref)))
        for j, p in enumerate(ps):
            with mp.workdps(DPS):
                exact = mpf(row[j]) - ref
            bl = log_softmax_bound(row[j], exact, b, eps)
            worst = max(worst, units(ls[i, j], exact, bl + half_ulp(exact)))
            bj = softmax_bound(row[j], p, kappa, eps)
            worst = max(worst, units(sm[i, j], p, bj + half_ulp(p)))
        for o, (c, k) in zip(cum[i], cumulative_ref(row)):
            worst = max(worst, units(o, c, lse_bound(c, k, eps) + half_ulp(c)))
        L, bl, _, _, _ = xent_row_ref(row, coefs(len(row), y=y[i]))
        worst = max(worst, units(loss[i], L, eps * bl + half_ulp(L)))
    assert worst <= GOAL, worst


# ----------------------------------------------------------------------------
# routes that split a reduction: pieces, folded pieces, dask, online
# ----------------------------------------------------------------------------
def normalize_worst(x, lse, ls, sm, eps):
    """Worst units of logsumexp (each row), log_softmax and softmax (each
    element; any of them None to skip) of rows x."""
    worst = 0.0
    for i, row in enumerate(x):
        ref, kappa, ps = row_ref(row)
        b = lse_bound(ref, kappa, eps)
        if lse is not None:
            worst = max(worst, units(lse[i], ref, b))
        for j, v in enumerate(row):
            if sm is not None:
                worst = max(worst, units(sm[i, j], ps[j], softmax_bound(v, ps[j], kappa, eps)))
            if ls is not None:
                with mp.workdps(DPS):
                    exact = mpf(v) - ref
                worst = max(worst, units(ls[i, j], exact, log_softmax_bound(v, exact, b, eps)))
    return worst


@pytest.fixture
def small_pieces(monkeypatch):
    """Rows of 32 or more split into pieces of about 16 (``_routes``): 8
    threads for the chooser, no minimum of work."""
    from fastlse import _routes

    monkeypatch.setattr(_routes, "PIECE", 16)
    monkeypatch.setattr(_routes, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(_routes, "threads", lambda: 8)
    return _routes


@pytest.mark.parametrize("dtype", FLOATS)
def test_route_pieces(rng, dtype, small_pieces):
    """logsumexp, log_softmax, softmax and cross_entropy of 15 rows of 80
    taken as few long rows: 5 pieces of 16 whose pairs merge."""
    from fastlse import _ops

    eps = eps_of(dtype)
    x = make_rows(rng, dtype, 80)
    assert small_pieces.choose(_ops.SOFTMAX, x.shape, x.dtype, writes=True) == "pieces"
    worst = normalize_worst(x, *(f(x, axis=1) for f in FUNCS), eps)
    w, y = rng.uniform(0.5, 2.0, 80), np.argmax(x, axis=1)
    kw = dict(weight=w, label_smoothing=0.2, z_loss=1e-2, softcap=50.0)
    B = [coefs(80, y=yi, w=w, smooth=0.2) for yi in y]
    loss, grad = fastlse.cross_entropy(x, y, reduction="none", return_grad=True, **kw)
    wx = xent_worst(x, loss, grad, B, kw["z_loss"], kw["softcap"], eps)
    assert max(worst, *wx) <= GOAL, (worst, wx)


@pytest.mark.parametrize("dtype", FLOATS)
def test_route_folded_pieces(rng, dtype, monkeypatch):
    """A middle axis of 3 columns read folded, its slabs cut into pieces of
    256 bytes whose pairs merge (``kernels.columns``)."""
    from fastlse.kernels import columns

    monkeypatch.setattr(columns, "FOLD_PIECE_BYTES", 256)
    eps = eps_of(dtype)
    rows = make_rows(rng, dtype, 90)[:12]
    x = np.ascontiguousarray(rows.reshape(4, 3, 90).transpose(0, 2, 1))  # (4, 90, 3)
    assert columns.folded(90, 3, x.itemsize)
    lse = fastlse.logsumexp(x, axis=1).reshape(12)
    back = (np.moveaxis(f(x, axis=1), 2, 1).reshape(12, 90) for f in FUNCS[1:])  # as rows
    worst = normalize_worst(rows, lse, *back, eps)
    assert worst <= GOAL, worst


@pytest.mark.parametrize("dtype", FLOATS)
def test_route_dask(rng, dtype):
    """dask arrays with the reduced axis in chunks of 25: per-chunk pairs merged."""
    da = pytest.importorskip("dask.array")
    eps = eps_of(dtype)
    x = make_rows(rng, dtype, 100)
    dx = da.from_array(x, chunks=(5, 25))
    worst = normalize_worst(x, *(f(dx, axis=1).compute() for f in FUNCS), eps)
    y = np.argmax(x, axis=1)
    kw = dict(label_smoothing=0.1, z_loss=1e-3)
    loss, grad = fastlse.cross_entropy(dx, y, reduction="none", return_grad=True, axis=1, **kw)
    B = [coefs(100, y=yi, smooth=0.1) for yi in y]
    wx = xent_worst(x, loss.compute(), grad.compute(), B, 1e-3, None, eps)
    assert max(worst, *wx) <= GOAL, (worst, wx)


@pytest.mark.parametrize("dtype", FLOATS)
def test_route_online(rng, dtype):
    """OnlineLogSumExp: chunks of 7, 20 and the rest, two accumulators merged;
    and with positive weights."""
    eps = eps_of(dtype)
    x = make_rows(rng, dtype, 80)
    acc, other = fastlse.OnlineLogSumExp(axis=1), fastlse.OnlineLogSumExp(axis=1)
    acc.update(x[:, :7]).update(x[:, 7:27])
    other.update(x[:, 27:])
    worst = normalize_worst(x, acc.merge(other).result(), None, None, eps)
    b = rng.uniform(0.1, 10.0, x.shape)
    wacc = fastlse.OnlineLogSumExp(axis=1).update(x[:, :30], b=b[:, :30])
    res = wacc.update(x[:, 30:], b=b[:, 30:]).result()
    for i, row in enumerate(x):
        f, _, bound, _ = weighted_ref(row, b[i])
        worst = max(worst, units(res[i], f, eps * bound))
    assert worst <= GOAL, worst
