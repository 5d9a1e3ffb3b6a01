"""Differential tests against scipy.special: is fastlse a drop-in?

``fastlse.logsumexp`` / ``softmax`` / ``log_softmax`` and scipy's are called
with the same arguments on inputs drawn by hypothesis: every dtype (float16,
float32, float64, signed and unsigned ints, bool), magnitudes 1e-3 .. 1e3 with
offsets of +-500 (exp over- and underflows in every dtype), inf / -inf / nan
at random positions, weights ``b`` with zeros, negative values and shapes that
broadcast against ``a`` (both ways), ``return_sign`` and ``keepdims`` both
ways, axis None / int / negative / tuple, C / F / strided / reversed layouts
and 0-size dimensions.

Three oracles, each for what it is good at:

* scipy defines the contract: exceptions, result type (numpy scalar or
  ndarray), shape and dtype must be identical, and so must the pattern of
  nan / +inf / -inf and the sign, except for the deviations listed below.
* A reference computed here, in long double from the exact input values,
  defines the values: fastlse must be within a bound scaled to the
  conditioning of each slice (``_lse_tolerance``, ``_softmax_tolerance``).
  scipy is held to the same reference (loosely: a check of the reference)
  where it computes in the result's precision; where scipy is the inaccurate
  one (float16, which scipy computes in float16; ``log_softmax([0, -40])``,
  exactly 0 in scipy, -4.2e-18 in truth) fastlse is held to the reference,
  not to scipy.
* The deviations from scipy, each accepted only in the slices where its
  predicate (``_rule_*``) holds and only in the form described there:

  a. the sign of an empty sum (every element -inf, a 0-size reduction, all
     weights zero) is 0; scipy's is -1 for 0-size reductions;
  b. softmax / log_softmax of bool input: scipy raises TypeError, fastlse
     computes in float64 (and must equal scipy on ``x.astype(float64)``);

  scipy's logsumexp falls back to the direct ``log(sum(b * exp(a)))`` in the
  result dtype wherever its shifted result is not finite; that direct sum is
  wrong in four ways, where fastlse must give the true value:

  c. a zero weight hides an inf / nan (scipy's documented rule), but the
     direct sum computes 0 * inf = nan (all weights zero: scipy nan, fastlse
     -inf with sign 0);
  d. it underflows (the sum, or every term, below the dtype's normal range):
     scipy -inf where the true value is finite (nan for a negative sum
     without ``return_sign``), e.g. ``logsumexp([0, 0, -800], b=[1, -1, 1])``
     is -800;
  e. it overflows, e.g. ``logsumexp([1000, 1000], b=[1, -1])``: scipy nan,
     fastlse -inf with sign 0 (the sum is exactly 0);
  f. weights that cancel exactly at the max: it rounds the other terms at
     the max's scale (``logsumexp([1, 1, 1], b=[3, -1, -2])``: scipy
     -34.66, fastlse -inf, sign 0);

  and two more:

  g. softmax / log_softmax of integer input: scipy computes ``x - max(x)`` in
     the integer dtype, which wraps around for unsigned ints (any element
     below the max) and for signed ints whose range exceeds the dtype's;
     scipy's results are garbage there (``softmax(np.uint8([1, 2]))`` is
     [nan, 0]); fastlse computes in floating point;
  h. logsumexp of a 0-size input over a tuple of axes other than one axis
     (None is all axes): scipy raises IndexError (two axes or more) or
     returns the wrong shape (``axis=()``); fastlse gives numpy's reduction
     shape, all -inf.

A 0-d input with ``axis=0`` / ``axis=-1`` is accepted by scipy's softmax and
log_softmax (numpy's reductions allow it) and must be by fastlse's.

Cases: 6 hypothesis tests (logsumexp without weights 800 examples, with
weights 1000, softmax 500, log_softmax 500, 0-d inputs 60, long rows of up to
5000 elements 80: 2940 examples) and 34 fixed cases for the rules; about 25 s
on 2 cores (``-n 0``) once numba has compiled its kernels (the first run
compiles them: a minute or so).
"""

import math

import numpy as np
import pytest
from conftest import make_layout
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastlse

sp = pytest.importorskip("scipy.special")

LD = np.longdouble
#: the factor over eps in every value bound.  Each bound is the first-order
#: rounding error that the input allows (``_lse_tolerance``,
#: ``_softmax_tolerance``): eps times the slice's condition.  An accurate
#: implementation adds a few roundings per term (shift, exp, sum, log1p, the
#: final rounding) and sums up to a few thousand terms, whose errors grow
#: like log2(n) in pairwise or lane-wise sums: 16 leaves room for that
#: (fastlse's errors stay within a tenth of the bounds, subnormal results
#: aside, where two subnormal ulps are allowed).  A real bug is caught all
#: the same: a wrong sign or a swapped axis is off by O(1), a missing or extra
#: term by about its softmax weight, a wrong max overflows.
K = 16
#: the long double reference's own error: 8 * eps(long double) * condition is
#: added to each bound (long double is float64 on some platforms: the
#: reference is then only as good as float64, and this keeps it honest)
EPS_REF = float(np.finfo(LD).eps)

FLOATS = [np.float16, np.float32, np.float64]
INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
DTYPES = [np.dtype(t) for t in [*FLOATS, *INTS, np.bool_]]
LAYOUTS = ["C", "F", "strided", "reversed"]


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------
#: magnitudes 1e-3 .. 1e3 of either sign
MAGNITUDE = st.builds(lambda s, e: s * 10.0**e, st.sampled_from([-1.0, 1.0]), st.floats(-3, 3))
#: values drawn again and again (ties: several maxima, weights that cancel)
#: and the edges of exp's range: float16 overflows above 11.09, float32 above
#: 88.72, float64 above 709.78 (and exp rounds to 0 below -17.3, -104.0, -745.1)
TIES = st.sampled_from([0.0, 1.0, -1.0, -40.0, 11.5, -18.0, 89.0, -104.0, 710.0, -746.0])
VALUE = st.one_of(MAGNITUDE, MAGNITUDE, TIES)
OFFSET = st.sampled_from([0.0, 0.0, 500.0, -500.0])
SPECIAL = st.sampled_from([np.inf, -np.inf, np.nan])
#: weights: magnitudes 1e-2 .. 1e2 of either sign, and small values: zeros
#: hide elements; +-1, +-2, +-0.5 cancel exactly at ties, 0.1 + 0.2 - 0.3
#: nearly (the sign of such a sum is rounding noise)
WEIGHT = st.one_of(
    st.builds(lambda s, e: s * 10.0**e, st.sampled_from([-1.0, 1.0]), st.floats(-2, 2)),
    st.sampled_from([0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.1, 0.2, -0.3]),
)
#: weights +-1 only: with the ties of a (hypothesis fills arrays with a
#: repeated value) the weights at the max often cancel exactly, where scipy
#: falls back to its direct sum
PLUS_MINUS_ONE = st.sampled_from([1.0, -1.0])


def _cast(x, dtype):
    """float64 values x in dtype: ints rounded and clipped, bool as x > 0."""
    x = np.asarray(x)
    if dtype.kind == "b":
        return np.array(x > 0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            y = np.clip(np.round(np.nan_to_num(x)), max(info.min, -(2**53)), min(info.max, 2**53))
        return np.array(y.astype(dtype))
    return np.array(x.astype(dtype))


@st.composite
def values(draw, shape, dtype, elements=VALUE, specials=True, offset=True):
    """An array of shape and dtype: elements plus an offset, with specials
    (float dtypes) at a few random positions, or on a random mask."""
    x = np.array(draw(hnp.arrays(np.float64, shape, elements=elements)))  # 0-d: an array
    if offset:
        x = np.array(x + draw(OFFSET))
    if specials and dtype.kind == "f" and x.size:
        mode = draw(st.sampled_from(["none", "none", "few", "mask"]))
        if mode == "few":
            for _ in range(draw(st.integers(1, 3))):
                x.flat[draw(st.integers(0, x.size - 1))] = draw(SPECIAL)
        elif mode == "mask":  # whole slices of -inf (or inf / nan) arise from the fill
            mask = draw(hnp.arrays(np.bool_, shape))
            x[mask] = draw(st.sampled_from([-np.inf, -np.inf, np.inf, np.nan]))
    return _cast(x, dtype)


def _layout(x, layout):
    """x's values in a layout: C, F, strided (every other element of a
    bigger array) or reversed (negative strides along every axis)."""
    if x.ndim == 0:
        return x
    if layout == "reversed":
        flip = (slice(None, None, -1),) * x.ndim
        return np.ascontiguousarray(x[flip])[flip]
    return make_layout(x, layout)


@st.composite
def shapes(draw, min_dims=0, max_dims=4, max_side=6):
    """Shapes of up to 4 dims of up to 6; about 1 in 8 has a 0-size dim."""
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side))
    if shape and draw(st.integers(0, 7)) == 0:
        i = draw(st.integers(0, len(shape) - 1))
        shape = (*shape[:i], 0, *shape[i + 1 :])
    return shape


@st.composite
def broadcast_shapes(draw):
    """(a's shape, b's shape): either may broadcast the other up; about 1 in
    8 pairs has a 0-size dim in their broadcast shape."""
    pair = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=6))
    sa, sb = (list(s) for s in pair.input_shapes)
    nd = len(pair.result_shape)
    if nd and draw(st.integers(0, 7)) == 0:
        i = draw(st.integers(0, nd - 1))
        hit = False
        for s in (sa, sb):
            j = i - (nd - len(s))
            if j >= 0 and s[j] != 1:
                s[j], hit = 0, True
        if not hit:  # both 1 (or absent) there: make one of them 0
            s = sa if i - (nd - len(sa)) >= 0 else sb
            s[i - (nd - len(s))] = 0
    return tuple(sa), tuple(sb)


@st.composite
def axes_for(draw, ndim):
    """None, an int (either sign) or a tuple of distinct axes (either sign,
    any order, possibly empty)."""
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none" or ndim == 0:
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    ax = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(a - ndim if draw(st.booleans()) else a for a in ax)


def _normalize(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _rows(x, axes):
    """x with the axes moved last, as (M, N): row i is output slice i in C
    order of the kept axes (the order of a result raveled, keepdims or not)."""
    kept = [i for i in range(x.ndim) if i not in axes]
    m = math.prod(x.shape[i] for i in kept)
    n = math.prod(x.shape[i] for i in axes)
    return np.transpose(x, kept + list(axes)).reshape(m, n)


def _src(x):
    """x as source text that rebuilds it exactly (for note())."""
    body = np.array2string(
        np.asarray(x), separator=", ", threshold=10**6, floatmode="unique", max_line_width=10**6
    )
    return f"np.array({body}, dtype=np.{np.asarray(x).dtype})"


def _call(f, *args, **kwargs):
    """(result, None) or (None, the exception); floating warnings off (scipy
    warns about the overflows of its direct fallback)."""
    with np.errstate(all="ignore"):
        try:
            return f(*args, **kwargs), None
        except Exception as e:  # compared by type below
            return None, e


def _assert_same_kind_of_result(res, ref):
    """Type (numpy scalar or ndarray), shape and dtype identical."""
    assert type(res) is type(ref), (type(res), type(ref))
    assert np.shape(res) == np.shape(ref), (np.shape(res), np.shape(ref))
    assert np.asarray(res).dtype == np.asarray(ref).dtype, (res.dtype, ref.dtype)


def _classes(v):
    """0 finite, 1 nan, 2 +inf, 3 -inf (elementwise)."""
    v = np.asarray(v, dtype=np.float64)
    return np.select([np.isnan(v), v == np.inf, v == -np.inf], [1, 2, 3], 0)


def _compute_eps(rdt):
    """eps of the precision the result may be computed in: float16 results
    are computed in float32 (fastlse) and rounded once, so their bound is one
    float16 ulp (``_f16_rounding``) plus float32 rounding errors."""
    return float(np.finfo(np.float32 if rdt == np.float16 else rdt).eps)


def _f16_rounding(rdt, ref):
    """One float16 ulp of |ref| for float16 results (round to nearest of a
    value computed in float32: half an ulp, plus the float32 error when the
    value is near a halfway point), else 0."""
    if rdt != np.float16:
        return 0.0
    with np.errstate(all="ignore"):
        return np.spacing(np.abs(np.asarray(ref, dtype=np.float64)).astype(np.float16)).astype(
            np.float64
        )


# ----------------------------------------------------------------------------
# logsumexp: reference and checks
# ----------------------------------------------------------------------------
EMPTY, FINITE, NAN, INF = "empty", "finite", "nan", "inf"


def _lse_reference(a, b, axes, rdt):
    """The mathematically right logsumexp of every output slice.

    a and b are broadcast, cast to the result dtype (scipy's promotion; exact
    for the values drawn here), then to long double.  Per row: zero weights
    hide their elements (inf and nan too); a visible nan (or +inf terms of
    both signs) gives nan; a visible +inf gives +inf with its weight's sign;
    -inf elements add nothing; no term left is the empty sum (-inf, sign 0);
    else ``m + log|S|``, ``S = sum b exp(a - m)`` over the finite terms.
    """
    a = a.astype(rdt)
    bb = np.ones_like(a) if b is None else np.broadcast_to(b, a.shape).astype(rdt)
    A = _rows(a, axes).astype(LD)
    B = _rows(bb, axes).astype(LD)
    with np.errstate(all="ignore"):
        vis = B != 0
        has_nan = np.any(vis & np.isnan(A), axis=1)
        pinf = vis & (A == np.inf)
        pos = np.any(pinf & (B > 0), axis=1)
        neg = np.any(pinf & (B < 0), axis=1)
        fin = vis & np.isfinite(A)
        has_fin = np.any(fin, axis=1)
        m = np.max(np.where(fin, A, -np.inf), axis=1, initial=-np.inf)
        m0 = np.where(has_fin, m, 0)
        E = np.where(fin, np.exp(np.where(fin, A, 0) - m0[:, None]), 0)
        # S = W + R: W the weights at the max, R the rest; where |R| < |W| / 2,
        # log|S| = log|W| + log1p(R / W) keeps R's digits (R << W)
        at_max = fin & (A == m0[:, None])
        W = np.sum(np.where(at_max, B, 0), axis=1)
        R = np.sum(np.where(at_max, 0, B * E), axis=1)
        S = W + R
        T = np.sum(np.abs(B) * E, axis=1)
        X = np.sum(np.abs(np.where(fin, A, 0) * B) * E, axis=1)
        W0 = np.where(W == 0, 1, W)
        near = np.abs(R) < np.abs(W) / 2
        val = m0 + np.where(near, np.log(np.abs(W0)) + np.log1p(R / W0), np.log(np.abs(S)))
    kind = np.where(
        has_nan | (pos & neg), NAN, np.where(pos | neg, INF, np.where(has_fin, FINITE, EMPTY))
    )
    sign = np.where(kind == INF, np.where(pos, 1.0, -1.0), np.sign(S).astype(np.float64))
    sign = np.where(kind == EMPTY, 0.0, np.where(kind == NAN, np.nan, sign))
    # Weights at the max that cancel exactly, and that any float64 summation
    # adds exactly (small multiples of 2**-30): an implementation that keeps
    # the max's weights apart (fastlse does, and so does scipy) gets exactly
    # 0 for them, so the sum is that of the other terms, conditioned as they
    # are (T and X without the max's terms), and an exact 0 when there are
    # none: -inf with sign 0 is demanded (rule e's logsumexp([1000, 1000],
    # b=[1, -1])).
    max_cancels = np.zeros(len(kind), dtype=bool)
    for i in np.flatnonzero(kind == FINITE):
        w = B[i][at_max[i]].astype(np.float64)
        summable = np.all(w * 2.0**30 == np.round(w * 2.0**30)) and np.sum(np.abs(w)) < 2.0**22
        max_cancels[i] = summable and math.fsum(w) == 0.0
    exact_zero = max_cancels & ~np.any(fin & ~at_max, axis=1)
    with np.errstate(all="ignore"):  # (summed apart: T - T_max would lose them)
        T_rest = np.sum(np.where(at_max, 0, np.abs(B) * E), axis=1)
        X_rest = np.sum(np.where(at_max, 0, np.abs(np.where(fin, A, 0) * B) * E), axis=1)
    T_eff = np.where(max_cancels, T_rest, T)
    X_eff = np.where(max_cancels, X_rest, X)
    eps = _compute_eps(rdt)
    # the sum's own rounding error is eps * T: where |S| is within it the sign
    # of the computed sum is rounding noise (cancellation)
    uncertain = (kind == FINITE) & ~exact_zero & (np.abs(S) <= K * eps * T_eff)
    return {
        "kind": kind,
        "val": val,
        "sign": sign,
        "m": m0,
        "S": S,
        "T": T,  # sum |b| e^(a - m)
        "T_eff": T_eff,  # the same without the max's terms where they cancel
        "X_eff": X_eff,  # sum |a b| e^(a - m), the same way
        "exact_zero": exact_zero,
        "max_cancels": max_cancels,
        "uncertain": uncertain,
        "weighted": b is not None,
        "A": A,
        "B": B,
        "fin": fin,
        "vis": vis,
    }


def _lse_tolerance(ref, rdt):
    """Bound on |computed - true| for each finite row.

    The error the input allows, to first order in eps (of the computing
    precision), times K:

    * the result's own rounding: eps * |lse|;
    * each a_j perturbed by eps * |a_j| moves the result by
      eps * |a_j b_j e^a_j| / |S|; without weights that is
      eps * sum_j |a_j| softmax_j (``X_eff / |S|``);
    * with weights, rounding the terms (or b perturbed by eps * |b|) moves
      S by eps * sum |b| e^a = eps * T: eps * T / |S| in the log domain, the
      cancellation's condition number (1 without cancellation).

    Terms at the max whose weights cancel exactly are left out of both
    (``_lse_reference``).  Plus one float16 ulp for float16 results, the
    reference's own error and two subnormal ulps (a result in the subnormal
    range is rounded twice there, e.g. by the exp and by the scaling).
    """
    eps = _compute_eps(rdt)
    absS = np.abs(ref["S"]).astype(np.float64)
    with np.errstate(all="ignore"):
        cond = np.abs(ref["val"]) + ref["X_eff"] / np.abs(ref["S"])
        if ref["weighted"]:
            cond = cond + ref["T_eff"] / np.abs(ref["S"])
        cond = cond.astype(np.float64)
    tol = (K * eps + 8 * EPS_REF) * cond
    tol = tol + _f16_rounding(rdt, ref["val"]) + 2 * float(np.finfo(rdt).smallest_subnormal)
    return np.where(absS > 0, tol, np.inf)


# -- deviation rules: each returns the rows where it applies -------------------
# scipy computes ``a_max + log(m) + log1p(s)`` (m the weights at the max, s
# the rest over m) and, where that is not finite, falls back to the direct
# ``log(sum(b * exp(a)))`` in the result dtype.  That direct sum is the source
# of rules c, d, e and f: it is right for +inf and nan slices, wrong where it
# multiplies 0 * inf, underflows, overflows or rounds an exact 0.
def _rule_empty_sum_sign(ref):
    """a. nothing to sum (all -inf, 0-size, all weights zero): sign 0 in
    fastlse; scipy's sign may be -1 (xp.sign of the -inf it fills 0-size
    reductions with)."""
    return ref["kind"] == EMPTY


def _rule_zero_weight_hides_special(ref, rdt):
    """c. a zero weight on an inf or nan (or a value whose exp overflows in
    the dtype): the element is hidden (scipy's documented rule), but scipy's
    direct fallback computes 0 * inf = nan.  scipy: nan."""
    with np.errstate(all="ignore"):
        e = np.exp(ref["A"].astype(rdt))
    return np.any(~ref["vis"] & (np.isnan(e) | np.isinf(e)), axis=1)


def _rule_fallback_underflow(ref, rdt):
    """d. the true sum, or every visible term, is below the dtype's normal
    range: scipy's direct fallback sums zeros (or subnormals with a few
    digits).  scipy: -inf (sign 0), or a finite value in the underflow range
    of either sign."""
    with np.errstate(all="ignore"):
        e = np.exp(ref["A"].astype(rdt)).astype(np.float64)
    tiny = np.finfo(rdt).smallest_normal
    terms = np.all(~ref["fin"] | (e < tiny), axis=1)
    return (ref["kind"] == FINITE) & (terms | (ref["val"] < np.log(tiny)))


def _rule_fallback_overflow(ref, rdt):
    """e. the sum of |terms| exceeds the dtype's largest value (one term's
    exp overflows, or partial sums may): scipy's direct fallback holds inf,
    inf - inf = nan with weights of both signs.  scipy: nan or +inf."""
    with np.errstate(all="ignore"):
        top = (ref["m"] + np.log(ref["T"])).astype(np.float64)
    return (ref["kind"] != NAN) & (top > np.log(np.finfo(rdt).max) - 1e-3)


def _rule_fallback_rounding(ref):
    """f. weights that cancel exactly at the max (``max_cancels``): scipy's
    shifted result is log(0) and its direct fallback adds the other terms to
    the large cancelling ones, rounding at their scale: an exact 0 can come
    out as rounding noise, and small terms are lost in part or whole.  scipy:
    -inf, nan, or a finite value of either sign no larger than the true |sum|
    plus the direct sum's rounding error (``m + log(|S| + K eps T)``)."""
    return ref["max_cancels"]


def _expect_fastlse_lse(val, sgn, ref, tol, return_sign):
    """fastlse's rows against the reference: specials and signs exactly,
    values within tol; rows whose sign is rounding noise only bounded."""
    kind, rs = ref["kind"], ref["sign"]
    vc = _classes(val)
    for i in range(len(kind)):
        v, s = float(val[i]), None if sgn is None else float(sgn[i])
        where = f"row {i}: fastlse {v!r} sign {s!r}; reference {float(ref['val'][i])!r} "
        where += f"sign {rs[i]!r} ({kind[i]}"
        where += ", uncertain sign)" if ref["uncertain"][i] else ")"
        if kind[i] == NAN:
            assert np.isnan(v), where
            assert s is None or np.isnan(s), where
        elif kind[i] == INF:
            assert v == np.inf if (return_sign or rs[i] > 0) else np.isnan(v), where
            assert s is None or s == rs[i], where
        elif kind[i] == EMPTY or ref["exact_zero"][i]:
            assert v == -np.inf, where
            assert s is None or s == 0.0, where
        elif ref["uncertain"][i]:
            # the sum is within its own rounding error of 0: any sign (nan
            # for a negative one without return_sign), -inf for an exact 0,
            # but never above what |S| plus that rounding error (terms and
            # b rounded: eps * T, a perturbed: eps * X) gives
            rdt = np.asarray(val).dtype
            eps = _compute_eps(rdt)
            slack = K * eps * (ref["T_eff"][i] + ref["X_eff"][i])
            with np.errstate(divide="ignore"):
                bound = float(ref["m"][i] + np.log(np.abs(ref["S"][i]) + slack))
            bound += K * eps * abs(bound) + float(_f16_rounding(rdt, bound)) + 1e-300
            if np.isnan(v):
                assert not return_sign, where
            else:
                assert v <= bound, where + f" above {bound!r}"
                assert s is None or s in (-1.0, 0.0, 1.0), where
                assert s is None or (s == 0.0) == (v == -np.inf), where
        else:
            assert s is None or s == rs[i], where
            if not return_sign and rs[i] < 0:
                assert np.isnan(v), where  # log of a negative sum
                continue
            assert vc[i] == 0, where
            err = abs(LD(v) - ref["val"][i])
            assert err <= tol[i], where + f" error {float(err)!r} > {float(tol[i])!r}"


def _compare_lse_with_scipy(val, sgn, sval, ssgn, ref, tol, rdt, return_sign):
    """fastlse's nan / +inf / -inf pattern and sign equal scipy's, except in
    the rows of the deviation rules, where scipy's output must have the form
    that rule describes (fastlse is held to the reference there as
    everywhere); finite scipy values are held to the reference (a check of
    the reference) where scipy computes in the result's precision."""
    empty = _rule_empty_sum_sign(ref)
    hides = _rule_zero_weight_hides_special(ref, rdt)
    under = _rule_fallback_underflow(ref, rdt)
    over = _rule_fallback_overflow(ref, rdt)
    zero = _rule_fallback_rounding(ref)
    eps = float(np.finfo(rdt).eps)
    with np.errstate(all="ignore"):
        noise = (ref["m"] + np.log(np.abs(ref["S"]) + K * eps * ref["T"])).astype(np.float64)
    log_tiny = np.log(np.finfo(rdt).smallest_normal)
    fc, sc = _classes(val), _classes(sval)
    for i in range(len(fc)):
        where = f"row {i}: fastlse {float(val[i])!r} sign "
        where += f"{None if sgn is None else float(sgn[i])!r}; scipy {float(sval[i])!r} sign "
        where += f"{None if ssgn is None else float(ssgn[i])!r}; reference "
        where += f"{float(ref['val'][i])!r} ({ref['kind'][i]})"
        if ref["uncertain"][i]:
            continue  # both signs are rounding noise
        s_sign = None if ssgn is None else float(ssgn[i])
        if fc[i] == sc[i] and (sgn is None or np.array_equal(sgn[i], ssgn[i], equal_nan=True)):
            if fc[i] == 0 and rdt != np.float16 and not (under[i] or zero[i]):
                # scipy in the same precision: within a loose multiple of the
                # bound (scipy's log(sum) has an absolute eps floor), so the
                # reference agrees with scipy where scipy is accurate
                err = abs(LD(float(sval[i])) - ref["val"][i])
                assert err <= 8 * tol[i] + 8 * eps, where + " (scipy off the reference)"
            continue
        if empty[i] and fc[i] == sc[i] == 3 and s_sign == -1:
            continue  # rule a: the sign of an empty sum
        if hides[i] and sc[i] == 1:
            continue  # rule c: 0 * inf in scipy's direct fallback
        if under[i] and (
            (sc[i] == 3 and s_sign in (None, 0.0)) or (sc[i] == 0 and sval[i] < log_tiny)
        ):
            continue  # rule d: scipy's direct fallback underflows
        if over[i] and sc[i] in (1, 2):
            continue  # rule e: scipy's direct fallback overflows
        if zero[i] and (sc[i] in (1, 3) or (sc[i] == 0 and sval[i] <= noise[i])):
            continue  # rule f: scipy's direct sum rounds at the cancelled max's scale
        raise AssertionError(where + ": fastlse and scipy differ outside the deviation rules")


def _rule_scipy_empty_shape(shape, axis):
    """h. a 0-size input reduced over a tuple of axes other than one axis
    (None is the tuple of all axes): scipy builds its result's shape with
    ``np.asarray(a.shape)[axis] = 1``, which raises IndexError for two axes
    or more and sets every dimension to 1 for ``axis=()``.  fastlse follows
    numpy's reductions (the shape of ``np.sum(a, axis, keepdims=keepdims)``),
    all -inf with sign 0 (rule a)."""
    n = len(shape) if axis is None else 1 if isinstance(axis, int) else len(axis)
    return math.prod(shape) == 0 and n != 1


def check_logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """Everything about one logsumexp call (see the module docstring)."""
    kw = {"axis": axis, "b": b, "keepdims": keepdims, "return_sign": return_sign}
    res, err = _call(fastlse.logsumexp, a, **kw)
    sres, serr = _call(sp.logsumexp, a, **kw)
    aa = np.asarray(a)
    if b is not None:
        aa = np.broadcast_to(aa, np.broadcast_shapes(aa.shape, np.shape(b)))
    aa = aa.reshape(1) if aa.ndim == 0 else aa
    if _rule_scipy_empty_shape(aa.shape, axis) and err is None:
        # rule h: scipy's result (or error) is not compared; its dtype is
        # that of a one-element call with the same dtypes
        one = np.ones(1, aa.dtype), None if b is None else np.ones(1, np.asarray(b).dtype)
        rdt = np.asarray(sp.logsumexp(one[0], b=one[1])).dtype
        shape = np.sum(np.empty(aa.shape), axis=axis, keepdims=keepdims).shape
        sval, ssgn = np.full(shape, -np.inf, rdt), np.zeros(shape, rdt)
        if sval.ndim == 0:
            sval, ssgn = sval[()], ssgn[()]
        sres = (sval, ssgn) if return_sign else sval
        serr = None
    if serr is not None or err is not None:
        assert type(err) is type(serr), (err, serr)
        return
    if return_sign:
        (val, sgn), (sval, ssgn) = res, sres
        _assert_same_kind_of_result(sgn, ssgn)
    else:
        val, sgn, sval, ssgn = res, None, sres, None
    _assert_same_kind_of_result(val, sval)
    rdt = np.asarray(sval).dtype
    ref = _lse_reference(aa, b, _normalize(axis, aa.ndim), rdt)
    tol = _lse_tolerance(ref, rdt)
    flat = [None if v is None else np.ravel(v) for v in (val, sgn, sval, ssgn)]
    _expect_fastlse_lse(flat[0], flat[1], ref, tol, return_sign)
    _compare_lse_with_scipy(*flat, ref, tol, rdt, return_sign)


# ----------------------------------------------------------------------------
# softmax / log_softmax: reference and checks
# ----------------------------------------------------------------------------
def _softmax_reference(x, axes, log):
    """The right softmax (log_softmax) of rows, scipy's specials: a row with
    nan, or only -inf, is nan; a row with +inf is nan (softmax), or -inf with
    nan at the infs (log_softmax); -inf elements are 0 (-inf).  Also y (the
    log_softmax), the rows' ``sum_i |x_i - m| softmax_i`` and the elements'
    ``|x - m|``, for the bounds."""
    X = _rows(x, axes).astype(LD)
    with np.errstate(all="ignore"):
        fin = np.isfinite(X)
        has_nan = np.any(np.isnan(X), axis=1)
        has_pinf = np.any(X == np.inf, axis=1)
        has_fin = np.any(fin, axis=1)
        m = np.max(np.where(fin, X, -np.inf), axis=1, initial=-np.inf)
        m0 = np.where(has_fin, m, 0)[:, None]
        d = np.where(fin, X, -np.inf) - m0  # x - m (-inf for -inf)
        # log(sum e^d) = log(count at the max) + log1p(the rest / count)
        W = np.sum(d == 0, axis=1)[:, None]
        R = np.sum(np.where(d == 0, 0, np.exp(d)), axis=1)[:, None]
        W0 = np.where(W == 0, 1, W)
        y = d - (np.log(W0.astype(LD)) + np.log1p(R / W0))  # log_softmax
        s = np.exp(y)
        ad = np.where(fin, np.abs(d), 0)  # |x - m|
        cd = np.sum(ad * np.where(fin, s, 0), axis=1)[:, None]  # sum_i |x_i - m| softmax_i
    out = y if log else s
    bad = (has_nan | ~has_fin | (~log & has_pinf))[:, None]
    out = np.where(bad, np.nan, out)
    if log:
        pinf_row = (has_pinf & ~has_nan)[:, None]
        out = np.where(pinf_row, np.where(X == np.inf, np.nan, -np.inf), out)
    return out, y, cd, ad


def _softmax_tolerance(y, cd, ad, rdt, log):
    """Bound for each finite element: the rounding errors of the shifted
    computation ``y_j = (x_j - m) - log(sum_i e^(x_i - m))`` (m the max, exact),
    to first order in eps, times K.  Rounding x_i - m costs eps * |x_i - m|
    (exact near the max): eps * |x_j - m| in y_j directly, and
    eps * sum_i |x_i - m| softmax_i through the sum; the sum's own rounding
    and the log add eps * |log(sum)| <= eps * |y_j|, and so does the result's
    rounding.  That is absolute for log_softmax and relative for softmax (a
    relative error of s_j is an absolute error of log s_j, the exp's own
    rounding is the 1).  This is scipy's own algorithm's error, and tighter
    than the input's conditioning (eps * (|x_j| + sum_i |x_i| softmax_i)),
    which would let an implementation shift by a rounded lse (an error of
    eps * |lse|: 1000 eps for inputs near 1000) pass.  Plus one float16 ulp
    for float16 results, the reference's error and two subnormal ulps."""
    eps = _compute_eps(rdt)
    with np.errstate(all="ignore"):
        cond = np.abs(y) + ad + cd
        ref = np.exp(y)
        if log:
            tol = (K * eps + 8 * EPS_REF) * cond
            ref = y
        else:
            tol = (K * eps + 8 * EPS_REF) * (1 + cond) * ref
    tol = tol.astype(np.float64) + _f16_rounding(rdt, ref)
    return tol + 2 * float(np.finfo(rdt).smallest_subnormal)


def _rule_int_wraparound(x, axes):
    """g. integer input: scipy's x - max(x) is computed in the integer dtype
    and wraps around (unsigned: any element below the max; signed: a range
    wider than the dtype's) -- scipy's rows are garbage there."""
    if x.dtype.kind not in "iu":
        return np.zeros(math.prod(x.shape[i] for i in range(x.ndim) if i not in axes), bool)
    X = _rows(x, axes).astype(object)  # exact Python ints
    if X.shape[1] == 0:
        return np.zeros(X.shape[0], bool)
    lo, hi = X.min(axis=1), X.max(axis=1)
    return np.array([(a - c) < np.iinfo(x.dtype).min for a, c in zip(lo, hi)], dtype=bool)


def check_softmax(name, x, axis=None):
    """Everything about one softmax / log_softmax call."""
    log = name == "log_softmax"
    res, err = _call(getattr(fastlse, name), x, axis=axis)
    xa = np.asarray(x)
    if xa.dtype.kind == "b":
        # rule b: scipy raises for bool; fastlse computes in float64
        _, berr = _call(getattr(sp, name), x, axis=axis)
        sres, serr = _call(getattr(sp, name), xa.astype(np.float64), axis=axis)
        assert berr is not None  # scipy never takes bool
        assert serr is not None or isinstance(berr, TypeError), berr
        if serr is None and err is None:
            assert res.dtype == np.float64
            eps = float(np.finfo(np.float64).eps)
            np.testing.assert_allclose(res, sres, rtol=K * eps, atol=K * eps)
    else:
        sres, serr = _call(getattr(sp, name), x, axis=axis)
    if serr is not None or err is not None:
        assert type(err) is type(serr), (err, serr)
        return
    _assert_same_kind_of_result(res, sres)
    rdt = np.asarray(sres).dtype
    x1 = xa.reshape(1) if xa.ndim == 0 else xa
    axes = _normalize(axis, x1.ndim)
    r1 = np.asarray(res).reshape(x1.shape)
    s1 = np.asarray(sres).reshape(x1.shape)
    ref, y, cd, ad = _softmax_reference(x1, axes, log)
    tol = _softmax_tolerance(y, cd, ad, rdt, log)
    R, Sc = _rows(r1, axes), _rows(s1, axes)
    rc, sc, refc = _classes(R), _classes(Sc), _classes(ref)
    wrap = _rule_int_wraparound(x1, axes)
    for i in range(R.shape[0]):
        where = f"row {i}: fastlse {R[i].tolist()}; scipy {Sc[i].tolist()}; "
        where += f"reference {ref[i].astype(np.float64).tolist()}"
        # fastlse against the reference: specials exact, values within tol
        np.testing.assert_array_equal(rc[i], refc[i], err_msg=where)
        ok = refc[i] == 0
        err_i = np.abs(R[i][ok].astype(LD) - ref[i][ok])
        bad = err_i > tol[i][ok]
        assert not np.any(bad), where + f": errors {err_i[bad]} > bounds {tol[i][ok][bad]}"
        # fastlse against scipy: the same specials, except rule g's rows
        if not wrap[i]:
            np.testing.assert_array_equal(rc[i], sc[i], err_msg=where + " (vs scipy)")


# ----------------------------------------------------------------------------
# the hypothesis tests
# ----------------------------------------------------------------------------
def _note_call(name, arrays, **kw):
    """The call, as source to reproduce it (the layout is not rebuilt)."""
    for key, (arr, layout) in arrays.items():
        note(f"{key} = {_src(arr)}  # layout {layout}, strides {np.asarray(arr).strides}")
    args = ", ".join(k if k in ("a", "x") else f"{k}={k}" for k in arrays)
    note(f"fastlse.{name}({args}, **{kw!r})")


@settings(max_examples=800, deadline=None, database=None)
@given(data=st.data())
def test_logsumexp_unweighted(data):
    """logsumexp without weights: every dtype, shape, axis form and layout,
    keepdims and return_sign both ways."""
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    a = data.draw(values(data.draw(shapes()), dtype))
    layout = data.draw(st.sampled_from(LAYOUTS))
    a = _layout(a, layout)
    x1 = a.reshape(1) if a.ndim == 0 else a
    axis = data.draw(axes_for(x1.ndim))
    kw = {
        "axis": axis,
        "keepdims": data.draw(st.booleans()),
        "return_sign": data.draw(st.booleans()),
    }
    _note_call("logsumexp", {"a": (a, layout)}, **kw)
    check_logsumexp(a, **kw)


@settings(max_examples=1000, deadline=None, database=None)
@given(data=st.data())
def test_logsumexp_weighted(data):
    """logsumexp with weights that broadcast against a (either way), of a's
    dtype or another (the result's dtype is then numpy's promotion, ints and
    bools as float64), with zeros, negative values and exact cancellations."""
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    sa, sb = data.draw(broadcast_shapes())
    a = data.draw(values(sa, dtype))
    bkind = data.draw(st.sampled_from(["same", "float64", "float32", "float16", "int64", "bool"]))
    bdt = np.dtype(dtype if bkind == "same" and dtype.kind == "f" else np.float64)
    bdt = bdt if bkind == "same" else np.dtype(bkind)
    weights = data.draw(st.sampled_from([WEIGHT, WEIGHT, PLUS_MINUS_ONE]))
    b = data.draw(values(sb, bdt, elements=weights, specials=False, offset=False))
    la, lb = data.draw(st.sampled_from(LAYOUTS)), data.draw(st.sampled_from(LAYOUTS))
    a, b = _layout(a, la), _layout(b, lb)
    nd = max(len(np.broadcast_shapes(sa, sb)), 1)
    kw = {
        "axis": data.draw(axes_for(nd)),
        "keepdims": data.draw(st.booleans()),
        "return_sign": data.draw(st.booleans()),
    }
    _note_call("logsumexp", {"a": (a, la), "b": (b, lb)}, **kw)
    check_logsumexp(a, b=b, **kw)


@settings(max_examples=500, deadline=None, database=None)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_family(name, data):
    """softmax and log_softmax: every dtype, shape, axis form and layout."""
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    x = data.draw(values(data.draw(shapes(min_dims=1)), dtype))
    layout = data.draw(st.sampled_from(LAYOUTS))
    x = _layout(x, layout)
    axis = data.draw(axes_for(x.ndim))
    _note_call(name, {"x": (x, layout)}, axis=axis)
    check_softmax(name, x, axis)


@settings(max_examples=60, deadline=None, database=None)
@given(
    dtype=st.sampled_from(DTYPES),
    v=st.one_of(VALUE, SPECIAL),
    axis=st.sampled_from([None, (), 0, -1, (0,), (-1,)]),
    name=st.sampled_from(["logsumexp", "softmax", "log_softmax"]),
)
def test_zero_dim_inputs(dtype, v, axis, name):
    """0-d arrays: logsumexp takes them as 1-d (any axis of a 1-d array);
    softmax / log_softmax follow numpy's reductions (an int axis 0 / -1 is
    accepted, a tuple is not)."""
    x = _cast(np.array(v), dtype)
    note(f"fastlse.{name}({_src(x)}, axis={axis!r})")
    if name == "logsumexp":
        check_logsumexp(x, axis=axis)
    else:
        check_softmax(name, x, axis)


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    # drawing 5000 elements is slow for hypothesis's taste on a slow machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_long_rows(data):
    """A few rows of up to 5000 elements: the kernels' vectorized loops,
    tails and (for the float dtypes) lane-wise sums, all three functions."""
    dtype = data.draw(st.sampled_from([np.dtype(t) for t in FLOATS]), label="dtype")
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(30, 5000)))
    x = _layout(data.draw(values(shape, dtype)), data.draw(st.sampled_from(LAYOUTS)))
    axis = data.draw(st.sampled_from([-1, 1, None, (0, 1)]))
    note(f"x = {_src(x)}; axis = {axis!r}")
    check_logsumexp(x, axis=axis, return_sign=True)
    check_softmax("softmax", x, axis)
    check_softmax("log_softmax", x, axis)


# ----------------------------------------------------------------------------
# fixed cases: each deviation rule, and the cases the issue names
# ----------------------------------------------------------------------------
INF_, NINF_, NAN_ = np.inf, -np.inf, np.nan
P = pytest.param


@pytest.mark.parametrize(
    ("a", "kw"),
    [
        # a: the empty sum's sign is 0
        P(np.zeros((2, 0)), {"axis": 1, "return_sign": True}, id="a-0-size"),
        P(np.array([NINF_, NINF_]), {"return_sign": True}, id="a-all-neg-inf"),
        P(np.array([1.0, 2.0]), {"b": [0.0, 0.0], "return_sign": True}, id="a-zero-weights"),
        # c: zero weights hide inf / nan, also in scipy's fallback
        P(np.array([INF_, NAN_]), {"b": [0, 0], "return_sign": True}, id="c-all-hidden"),
        P(np.array([INF_, INF_, 1.0]), {"b": [1, 0, 1]}, id="c-inf-and-hidden-inf"),
        P(np.array([INF_, 1.0, 1.0, 0.0]), {"b": [0, 1, -1, 1]}, id="c-hidden-inf-cancel"),
        P(np.int16([710]), {"b": np.array([0.0])}, id="c-hidden-overflow"),
        # d: the direct fallback underflows
        P(np.array([-800.0, -800.0, -801.0]), {"b": [1, -1, -1]}, id="d-negative"),
        P(
            np.array([-800.0, -800.0, -801.0]),
            {"b": [1, -1, -1], "return_sign": True},
            id="d-negative-sign",
        ),
        P(np.array([-800.0, -800.0, -801.0]), {"b": [1, -1, 1]}, id="d-positive"),
        # d, with the max's weights cancelling: the rest underflows relative to
        # the max in float64 (fastlse too, for now: -inf and -744.44)
        P(
            np.array([0.0, 0.0, -800.0]),
            {"b": [1, -1, 1], "return_sign": True},
            id="d-rest-below-cancelled-max",
        ),
        P(np.array([0.0, 0.0, -744.5]), {"b": [1, -1, 1]}, id="d-rest-subnormal"),
        # e: the direct fallback overflows
        P(
            np.array([1000.0, 1000.0]),
            {"b": [1, -1], "return_sign": True},
            id="e-exact-cancellation",
        ),
        P(np.array([1000.0, 1000.0, 999.0]), {"b": [1, -1, 1]}, id="e-rest-finite"),
        P(np.array([INF_, 1000.0]), {"b": [1, -1], "return_sign": True}, id="e-inf-wins"),
        P(
            np.float16([12, 12]),
            {"b": np.float16([1, -1]), "return_sign": True},
            id="e-float16",
        ),
        P(
            np.array([709.7, 709.7, 709.6, 709.6]),
            {"b": [1, -1, 1, 1], "return_sign": True},
            id="e-partial-sums",
        ),
        # f: an exact 0 at the max, scipy's direct sum rounds 3 * e; and a
        # direct sum e^127 - 1 - e^127 that loses the -1 (true: 0, sign -1)
        P(np.array([1.0, 1.0, 1.0]), {"b": [3, -1, -2], "return_sign": True}, id="f-noise"),
        P(np.float16([3, 3, 3]), {"b": np.float16([0.5, 2, -2.5])}, id="f-noise-float16"),
        P(
            np.array([127.0, 0.0, 127.0]),
            {"b": [1, -1, -1], "return_sign": True},
            id="f-absorbed",
        ),
        # h: a 0-size input reduced over several axes (scipy: IndexError) or none
        P(np.zeros((0, 1)), {}, id="h-all-axes"),
        P(
            np.zeros((2, 0, 3)),
            {"axis": (0, 2), "keepdims": True, "return_sign": True},
            id="h-two-axes",
        ),
        P(np.zeros(0), {"axis": ()}, id="h-no-axes"),
        # the sign of 0.1 + 0.2 - 0.3 (5.6e-17 in float64) is rounding noise
        P(
            np.array([1.0, 1.0, 1.0]),
            {"b": [0.1, 0.2, -0.3], "return_sign": True},
            id="uncertain-sign",
        ),
        # not deviations: exp underflows in the dtype, the result does not
        P(np.array([-800.0, -801.0]), {"return_sign": True}, id="underflow-sign"),
        P(np.float32([-200, -201]), {"return_sign": True}, id="underflow-sign-float32"),
        P(np.array([0.0, -40.0]), {}, id="log1p-digits"),
    ],
)
def test_logsumexp_fixed_cases(a, kw):
    check_logsumexp(a, **kw)


@pytest.mark.parametrize(
    ("name", "x", "axis"),
    [
        P("softmax", np.array([True, False, True]), None, id="b-bool"),
        P("log_softmax", np.array([[True], [False]]), 0, id="b-bool-log"),
        P("softmax", np.uint8([1, 2]), None, id="g-uint8-wraps"),
        P("log_softmax", np.int8([-100, 100]), None, id="g-int8-wraps"),
        P("log_softmax", np.array([0.0, -40.0]), None, id="scipy-exactly-0"),
        P("softmax", np.array(3.0), 0, id="0-d-int-axis"),
        P("log_softmax", np.float32(2.5), -1, id="0-d-int-axis-log"),
    ],
)
def test_softmax_fixed_cases(name, x, axis):
    check_softmax(name, x, axis)
