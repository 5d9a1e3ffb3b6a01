"""Serial kernels: one row (or one block of columns) in, a pair or values out.

The algebra (see STYLE.md): a row's sum of exponentials is carried as a pair
``(m, t)`` with ``sum_i exp(x_i) = exp(m) * (1 + t)``: ``m`` the max and ``t``
the sum of ``exp(x_i - m)`` over every element except one that attains the
max.  ``lse = m + log1p(t)`` is the accurate finish.  ``merge`` combines two
pairs; it is used between blocks, threads, chunks, accumulators and dask.

Special values: a pair with ``m == -inf`` is the empty sum (``t == 0``); a
pair with ``m == +inf`` has ``t == 0``; nan anywhere gives ``m = t = nan``.

These functions know nothing about axes, threads or Python objects.
"""

import numpy as np
from numba import types
from numba.core.registry import CPUDispatcher as Dispatcher
from numba.extending import overload

from .compile import jit, jit_alloc, jit_fast, jit_inl
from .exp import (
    LINE,
    SPLAT,
    SUMSCALE32,
    SUMSCALE64,
    div_by,
    expneg32,
    expneg64,
    expterm32,
    expterm64,
    log1p64,
    maxnum,
    minnum,
    prefetch,
    store_splat,
    tanh32,
    tanh64,
)
from .lanes import (
    LANES,
    PAIR_ROWS,
    SHORT_GROUPS,
    c_matrices,
    contiguous_row,
    lanes_exp_sum,
    lanes_exp_sum_exp,
    lanes_exp_sum_shift,
    lanes_max,
    lanes_max_min,
    lanes_min_pos,
    lanes_pairs,
    lanes_pairs_shift,
    lanes_softmax_rows,
    lanes_softmax_short,
    lanes_sum,
    lanes_sum64,
    lanes_sum64_chains,
    lanes_sum_chains,
)

_NINF = -np.inf
_INF = np.inf
_NAN = np.nan
#: elements summed in the array's own dtype before adding into float64
CHUNK = 2048
#: float32 rows up to this many elements run the lanes exp-sum sweep in
#: their caller (their one chunk); longer rows call ``_sum_excl_lanes``.  The
#: call passes two array structs and loads the exp's vector constants again
#: each time: on rows of 100 about 40% of the sweep.  Inlined in a loop of
#: rows, the constants are loaded once before it, but held in registers
#: across the whole loop: a loop that also takes long rows is written twice
#: under ``n <= INLINE_SWEEP`` (``drivers._lse_block``), so that the long
#: rows' copy holds nothing for the short ones (docs/performance-notes.md)
INLINE_SWEEP = 128
#: the unit of the row sweeps: a row's first n - n % VW elements run in the
#: vectorized loop (LLVM's own vector remainder loop takes what its unrolled
#: body leaves), the last partial unit as one full, masked, overlapping unit.
#: 4 rather than 32 (8 float32 lanes x 4 accumulators): a masked unit of 32
#: exps is mostly wasted work on short rows whose length is not a multiple
#: of 32 (docs/performance-notes.md)
VW = 4


def _by_dtype(name, f32, f64, doc, inline="never"):
    """A function of one float or float array ``a`` that compiled code resolves
    by a's dtype to ``f32(a)`` or ``f64(a)`` (other types: no overload);
    ``inline`` is numba's overload option."""

    def stub(a):  # pragma: no cover - replaced by the overload in compiled code
        raise NotImplementedError(f"{name} runs in compiled code only")

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc

    # a jitted function is called; a plain Python function is the overload's
    # implementation itself (compiled where it is used)
    impl32 = (lambda a: f32(a)) if isinstance(f32, Dispatcher) else f32
    impl64 = (lambda a: f64(a)) if isinstance(f64, Dispatcher) else f64

    @overload(stub, inline=inline)
    def _ol(a):
        dt = a.dtype if isinstance(a, types.Array) else a
        if dt == types.float32:
            return impl32
        if dt == types.float64:
            return impl64
        return None

    return stub


expn = _by_dtype("expn", expneg32, expneg64, "exp of a non-positive argument (x - max, -log1p(t)).")
expt = _by_dtype(
    "expt",
    expterm32,
    expterm64,
    "A term of a sum of exp(x - max): exp(x) * 2**K; the sum is multiplied by"
    " ``sumscale_of`` once.",
)
#: softmax's numerators: ``expt`` in float32, whose scaled terms stay normal
#: where exp(x - max) is not (see narrow_softmax); ``expn`` in float64, whose
#: terms are subnormal only where the quotients are too
exps = _by_dtype(
    "exps",
    expterm32,
    expneg64,
    "A numerator of softmax: exp(x - max), times 2**K in float32.",
)
sumscale_of = _by_dtype(
    "sumscale_of",
    lambda a: np.float64(SUMSCALE32),
    lambda a: SUMSCALE64,
    "2**-K (as float64) for a sum of ``expt`` terms of a's dtype.",
)
zero_of = _by_dtype("zero_of", lambda a: np.float32(0.0), lambda a: 0.0, "0 in a's dtype.")
one_of = _by_dtype("one_of", lambda a: np.float32(1.0), lambda a: 1.0, "1 in a's dtype.")


#: tanh for float32 / float64 (``tanh32`` / ``tanh64``), inlined by numba
tanhx = _by_dtype(
    "tanhx", tanh32, tanh64, "tanh for float32 / float64, inlined by numba.", inline="always"
)


def cast_to(a, v):  # pragma: no cover - replaced by the overload in compiled code
    return a.dtype.type(v)


@overload(cast_to)
def _cast_to_ol(a, v):
    if a.dtype == types.float32:
        return lambda a, v: np.float32(v)
    return lambda a, v: np.float64(v)


# ----------------------------------------------------------------------------
# pairs
# ----------------------------------------------------------------------------
@jit
def merge(m1, t1, m2, t2):
    """Merge two ``(m, t)`` pairs (float64) into one."""
    if m1 != m1 or m2 != m2 or t1 != t1 or t2 != t2:
        return _NAN, _NAN
    if m1 < m2:
        m1, t1, m2, t2 = m2, t2, m1, t1
    if m2 == _NINF:
        return m1, t1
    if m1 == _INF:
        return m1, 0.0
    return m1, t1 + (1.0 + t2) * expneg64(m2 - m1)


@jit
def finish(m, t):
    """``m + log1p(t)`` (float64), with the special pairs handled."""
    if m == _NINF or m == _INF:
        return m
    return m + log1p64(t)


@jit
def log_softmax_consts(m, t):
    """(c1, c2) with log_softmax = (x - c1) - c2, scipy's specials encoded."""
    return log_softmax_consts_lg(m, log1p64(t))


@jit
def log_softmax_consts_lg(m, lg):
    """``log_softmax_consts`` given lg = log1p(t) (nan for a nan t), with
    selects only, so a loop over rows stays vectorized: nan, or -inf (only
    -inf or nan elements), gives (nan, 0); +inf gives (inf, 0)."""
    bad = m != m or lg != lg or m == _NINF
    return (_NAN if bad else m), (0.0 if (bad or m == _INF) else lg)


@jit_fast
def has_nan(x, lo, hi):
    xs = x[lo:hi]
    for j in range(xs.shape[0]):
        if xs[j] != xs[j]:
            return True
    return False


def row_max(x, lo, hi):  # pragma: no cover - replaced by the overload in compiled code
    """max of x[lo:hi] ignoring nan (-inf for an empty or all-nan range)."""
    raise NotImplementedError("row_max runs in compiled code only")


@overload(row_max, inline="always")
def _row_max_ol(x, lo, hi):
    """A contiguous row's max in sixteen lanes (``lanes_max``): LLVM's own
    vectorized max loop leaves what follows its last whole body (four
    vectors) to a scalar chain of maxnum, each waiting for the one before,
    which on short rows took longer than the rest (docs/performance-notes.md);
    the lanes' masked last group has no such tail.  max is exact: the same
    result in any order.  A strided row: one loop."""
    if contiguous_row(x):
        return lambda x, lo, hi: lanes_max(x, lo, hi - lo)
    return lambda x, lo, hi: _max_run(x, lo, hi)


@jit_fast
def _max_run(x, lo, hi):
    """max of x[lo:hi] ignoring nan, one vectorized loop."""
    m = cast_to(x, _NINF)
    xs = x[lo:hi]
    for j in range(xs.shape[0]):
        m = maxnum(m, xs[j])
    return m


def _sum_excl_lanes(name, sweep):
    """The exp-sum sweep of a contiguous row, one of ``lanes_exp_sum``'s
    three kinds (``sweep``) a CHUNK at a time: the chunk's sum in the
    array's dtype, the chunks' sums in float64 (float32 rows of millions
    keep their accuracy).  The order is the IR's: the same sums on every
    target."""

    def f(x, out, m):
        total = 0.0
        cnt = 0.0
        n = x.shape[0]
        for c in range(0, n, CHUNK):
            s, k = sweep(x, out, c, min(CHUNK, n - c), m)
            total += s
            cnt += k
        return total * sumscale_of(x), cnt

    f.__name__ = f.__qualname__ = name
    return jit(f)


def _sum_excl_loop(name, store):
    """The exp-sum sweep of a float64 or strided row (a loop LLVM
    vectorizes in its own order; ``_sum_excl_kernel``'s ``store``).  The
    last partial unit of VW runs as one full, masked, overlapping unit (no
    scalar exp tail) whose stores are masked, so out may be x.

    Every loop here (and in the other row kernels) runs over a slice from
    index 0: with ``x[j]`` for j from a variable ``lo`` LLVM cannot prove the
    index non-negative (numba wraps negative indices) and keeps the bounds
    handling in the loop (the blocked and piecewise paths hit that)."""
    shift = store == "shift"
    exp = store in ("exp", "exp in place")
    in_place = store == "exp in place"  # out is x: one pointer, so LLVM vectorizes

    def f(x, out, m):
        z = zero_of(x)
        o = one_of(x)
        sc = cast_to(x, sumscale_of(x))
        total = 0.0
        cnt = 0.0
        n = x.shape[0]
        main = n if n < VW else (n // VW) * VW
        for c in range(0, main, CHUNK):
            c1 = min(c + CHUNK, main)
            xc = x[c:c1]
            oc = xc if in_place else out[c:c1]
            acc = z
            k = z
            for j in range(xc.shape[0]):
                d = xc[j] - m
                e = expt(d)
                if shift:
                    oc[j] = d
                if exp:
                    oc[j] = e * sc
                acc += z if d >= z else e
                k += o if d >= z else z
            total += acc
            cnt += k
        if main < n:
            xt = x[n - VW : n]
            ot = xt if in_place else out[n - VW : n]
            first = VW - (n - main)  # xt[first:] are the elements not yet summed
            acc = z
            k = z
            for i in range(VW):
                keep = i >= first
                d = xt[i] - m
                e = expt(d)
                if shift:
                    ot[i] = d if keep else ot[i]
                if exp:
                    ot[i] = e * sc if keep else ot[i]
                acc += (z if d >= z else e) if keep else z
                k += (o if d >= z else z) if keep else z
            total += acc
            cnt += k
        return total * sumscale_of(x), cnt

    f.__name__ = f.__qualname__ = name
    return jit_fast(f)


def _sum_excl_kernel(name, store, sweep):
    """The exp-sum sweep of a row, compiled once per kind of store.

    ``f(x, out, m)`` returns the sum of exp(x - m) over x < m (float64) and
    the count of elements >= m; nan elements make the sum nan.  While it
    sweeps, it stores into ``out`` (``store``): nothing, the shifted
    ``x - m`` (log_softmax: the output is written while the exp keeps the
    core busy, and a short sweep in cache subtracts the log), or
    ``exp(x - m)`` (softmax and the cross-entropy gradient; out may be x).
    One definition for the three, so a loss computed with its gradient has
    the bits of the loss alone, and a log_softmax the sum of logsumexp.

    A contiguous float32 row (every row the drivers pass) is swept in
    sixteen lanes (``_sum_excl_lanes``): no scalar or vector remainder
    loop, so a short row costs its groups of sixteen (rows of 100: 7), and
    its sum has the same bits on every target.  float64 rows and strided
    rows run ``_sum_excl_loop``: sixteen float64 lanes measured faster
    alone but 10-15% slower than LLVM's loop after the max sweep, in the
    kernels (docs/performance-notes.md).
    """
    lanes = _sum_excl_lanes("_" + name + "_lanes", sweep)
    loop = _sum_excl_loop("_" + name + "_loop", store)
    if store == "exp":
        loop_in_place = _sum_excl_loop("_" + name + "_loop_in_place", "exp in place")

    def stub(x, out, m):  # pragma: no cover - replaced by the overload in compiled code
        raise NotImplementedError(f"{name} runs in compiled code only")

    stub.__name__ = stub.__qualname__ = name

    @overload(stub, inline="always")
    def _ol(x, out, m):
        if contiguous_row(x) and contiguous_row(out) and out.dtype == x.dtype == m == types.float32:

            def lanes_impl(x, out, m):
                n = x.shape[0]
                if n <= INLINE_SWEEP:  # one chunk: lanes' sums, here
                    s, k = sweep(x, out, 0, n, m)
                    return np.float64(s) * sumscale_of(x), np.float64(k)
                return lanes(x, out, m)

            return lanes_impl
        if store == "exp" and x.mutable:
            # out may be x: with two names for one row, LLVM's overlap check
            # would run the scalar loop (a sum in another order); the in-place
            # loop reads and writes through x's own slices, with the same bits
            def impl(x, out, m):
                if out.ctypes.data == x.ctypes.data and out.strides[0] == x.strides[0]:
                    return loop_in_place(x, x, m)
                return loop(x, out, m)

            return impl
        return lambda x, out, m: loop(x, out, m)

    stub.chunked = lanes  # the called sweep of any length (tests compare the two)
    return stub


#: the sweep that only sums; ``sum_excl_shift`` also stores x - m into out,
#: ``sum_excl_exp`` exp(x - m) (out may be x)
sum_excl = _sum_excl_kernel("sum_excl", None, lanes_exp_sum)
sum_excl_shift = _sum_excl_kernel("sum_excl_shift", "shift", lanes_exp_sum_shift)
sum_excl_exp = _sum_excl_kernel("sum_excl_exp", "exp", lanes_exp_sum_exp)


@jit_inl
def row_sum_excl(x, lo, hi, m):
    """``sum_excl`` of x[lo:hi]: (sum of exp(x - m) over x < m, count of the rest)."""
    xs = x[lo:hi]
    return sum_excl(xs, xs, m)


@jit_inl
def inf_pair(x, lo, hi, m):
    """The pair of x[lo:hi] whose max (nan ignored) m is +-inf: (m, 0), or
    (nan, nan) when the range holds a nan."""
    if has_nan(x, lo, hi):
        return _NAN, _NAN
    return np.float64(m), 0.0


@jit_inl
def row_pair(x, lo, hi):
    """The ``(m, t)`` pair of x[lo:hi] (m, t as float64)."""
    m = row_max(x, lo, hi)
    if m == _NINF or m == _INF:
        return inf_pair(x, lo, hi, m)
    s, cnt = row_sum_excl(x, lo, hi, m)
    return np.float64(m), s + (cnt - 1.0)


def block_pairs(x, r0, r1, mo, to):  # pragma: no cover - an overload in compiled code
    """mo[k], to[k] = ``row_pair`` of row r0 + k of x, for the rows r0..r1
    (rows of up to ``INLINE_SWEEP``: the callers' short-row loops)."""
    raise NotImplementedError("block_pairs runs in compiled code only")


def block_shift_pairs(x, out, r0, r1, mo, to):  # pragma: no cover - an overload
    """mo[k], to[k] = ``row_shift_pair`` of row r0 + k of x into out's row,
    for the rows r0..r1 (rows of up to ``INLINE_SWEEP``)."""
    raise NotImplementedError("block_shift_pairs runs in compiled code only")


def _interleaved(x, out):
    """Whether rows of x (and out) take the interleaved intrinsics
    (``lanes_pairs``, ``lanes_softmax_rows``): 2-d C-contiguous float32."""
    return c_matrices(x, out) and x.dtype == out.dtype == types.float32


@overload(block_pairs, inline="always")
def _block_pairs_ol(x, r0, r1, mo, to):
    """``PAIR_ROWS`` rows at a time by ``lanes_pairs`` (the sweeps of
    ``row_pair``, interleaved: the same pairs), the rows left one by one."""
    if not _interleaved(x, x):
        return lambda x, r0, r1, mo, to: _pairs_one_by_one(x, r0, r1, mo, to)

    def impl(x, r0, r1, mo, to):
        i = r0
        while i + PAIR_ROWS <= r1:
            p = lanes_pairs(x, x, i)
            for r in range(PAIR_ROWS):
                s, cnt = p[PAIR_ROWS + r], p[2 * PAIR_ROWS + r]
                mo[i - r0 + r], to[i - r0 + r] = _interleaved_pair(x, i + r, p[r], s, cnt)
            i += PAIR_ROWS
        _pairs_one_by_one(x, i, r1, mo[i - r0 :], to[i - r0 :])

    return impl


@overload(block_shift_pairs, inline="always")
def _block_shift_pairs_ol(x, out, r0, r1, mo, to):
    """``block_pairs`` with ``lanes_pairs_shift`` (``row_shift_pair``'s)."""
    if not _interleaved(x, out):
        return lambda x, out, r0, r1, mo, to: _shift_pairs_one_by_one(x, out, r0, r1, mo, to)

    def impl(x, out, r0, r1, mo, to):
        i = r0
        while i + PAIR_ROWS <= r1:
            p = lanes_pairs_shift(x, out, i)
            for r in range(PAIR_ROWS):
                k = i - r0 + r
                m = p[r]
                if m == _INF or m == _NINF:
                    mo[k], to[k] = _shift_inf_pair(x[i + r], m)
                else:
                    mo[k], to[k] = _pair_of_sums(x, m, p[PAIR_ROWS + r], p[2 * PAIR_ROWS + r])
            i += PAIR_ROWS
        _shift_pairs_one_by_one(x, out, i, r1, mo[i - r0 :], to[i - r0 :])

    return impl


@jit_inl
def _pairs_one_by_one(x, r0, r1, mo, to):
    n = x.shape[1]
    for i in range(r0, r1):
        mo[i - r0], to[i - r0] = row_pair(x[i], 0, n)


@jit_inl
def _shift_pairs_one_by_one(x, out, r0, r1, mo, to):
    for i in range(r0, r1):
        mo[i - r0], to[i - r0] = row_shift_pair(x[i], out[i])


@jit_inl
def _interleaved_pair(x, i, m, s, cnt):
    """``row_pair`` of row i of x from its max m and ``lanes_exp_sum``'s sum
    and count (of no meaning where m is infinite)."""
    if m == _NINF or m == _INF:
        return inf_pair(x[i], 0, x.shape[1], m)
    return _pair_of_sums(x, m, s, cnt)


@jit_inl
def _pair_of_sums(x, m, s, cnt):
    """(m, t) of a row from its finite max and exp-sum sweep: ``row_pair``'s."""
    return np.float64(m), np.float64(s) * sumscale_of(x) + (np.float64(cnt) - 1.0)


#: a range longer than this is reduced block by block (each block in cache for
#: its two sweeps), the blocks' pairs merged: one read of memory
BLOCK = 16384


@jit_inl
def range_pair(x, lo, hi):
    """row_pair of a range of any length, by cache-sized blocks."""
    if hi - lo <= BLOCK:
        return row_pair(x, lo, hi)
    m, t = _NINF, 0.0
    for b in range(lo, hi, BLOCK):
        mb, tb = row_pair(x, b, min(b + BLOCK, hi))
        m, t = merge(m, t, mb, tb)
    return m, t


@jit_inl
def row_lse(x, lo, hi):
    m, t = range_pair(x, lo, hi)
    return finish(m, t)


@jit_inl
def row_numer_store(x, out, lo, hi, m):
    """out = softmax's numerators ``exps(x - m)`` over [lo, hi) (float32:
    scaled by 2**K); returns their sum (float64, scaled alike).

    A chunk of the row at a time, its terms stored (``_row_terms_all``, the
    narrow kernels' terms), then summed from L1 in four chains of sixteen
    lanes (``lanes_sum_chains``), the chunks' sums added in float64 in
    order.  The order is the IR's: the same sum on every target and in
    every compiled copy of this function.  A sum left to ``reassoc`` takes
    the order LLVM chooses in each copy, and a kernel loaded from the disk
    cache binds its own copy where one just compiled binds the helper's:
    the two differed in the last bit (docs/threads.md)."""
    total = 0.0
    for c in range(lo, hi, CHUNK):
        c1 = min(c + CHUNK, hi)
        _row_terms_all(x[c:c1], out[c:c1], m)
        total += lanes_sum_chains(out, c, c1 - c)
    return total


@jit_inl
def divide_piece(out, lo, hi, d, tmin):
    """out[lo:hi] /= d, a piece's divisor (float64, scaled as the piece's
    numerators, the smallest of which is tmin): as ``_divide_row`` by d in
    out's dtype, in float64 where a quotient may be subnormal or d overflows
    that dtype (a float32 piece more than ~44 below its row's max: its
    quotients may still be normal)."""
    orow = out[lo:hi]
    if d == _INF:  # a piece far below its row's max: 0 / inf (div_by: nan)
        for j in range(orow.shape[0]):
            orow[j] = orow[j] / d
        return
    sx = cast_to(out, d)
    if sx == _INF:
        _divide_wide(orow, d)
    else:
        _divide_row(orow, sx, one_of(out) / sx, _quotients_normal(orow, tmin, sx))


@jit_inl
def row_max_min(x, lo, hi):
    """The max of x[lo:hi] (``row_max``'s) and, where a softmax divides in
    float64 below a floor (float32, ``_wide_below``), its min above -inf
    (else the max), nan ignored: one sweep for both.  (-inf has a zero
    numerator, whose quotient is exact and takes no assist.)  The min
    bounds the smallest numerator (``smallest_numer``) without a sweep of
    the numerators themselves."""
    if _wide_below(x) == 0.0:
        m = row_max(x, lo, hi)
        return m, m
    return _max_min(x, lo, hi)


def _max_min(x, lo, hi):  # pragma: no cover - replaced by the overload in compiled code
    """max and min above -inf of x[lo:hi] ignoring nan."""
    raise NotImplementedError("_max_min runs in compiled code only")


@overload(_max_min, inline="always")
def _max_min_ol(x, lo, hi):
    """A contiguous row in sixteen lanes (``lanes_max_min``: the max is
    ``row_max``'s, and no scalar tail); a strided row: one loop."""
    if contiguous_row(x):
        return lambda x, lo, hi: lanes_max_min(x, lo, hi - lo)
    return lambda x, lo, hi: _max_min_run(x, lo, hi)


@jit_fast
def _max_min_run(x, lo, hi):
    """max and min above -inf of x[lo:hi] ignoring nan, one vectorized loop."""
    ninf = cast_to(x, _NINF)
    inf = cast_to(x, _INF)
    m = ninf
    mn = inf
    xs = x[lo:hi]
    for j in range(xs.shape[0]):
        m = maxnum(m, xs[j])
        mn = minnum(mn, xs[j] if xs[j] > ninf else inf)
    return m, mn


@jit_inl
def smallest_numer(xmin, m):
    """A lower bound of the smallest numerator ``exps(x - m)`` of a range
    whose smallest x is xmin: the exp rounds the same way at every x, so it
    is non-decreasing within an ulp (the 0.1 % margin covers that)."""
    return np.float64(exps(xmin - m)) * 0.999


@jit_inl
def row_softmax(x, out, lo, hi):
    m, xmin = row_max_min(x, lo, hi)
    if m == _NINF or m == _INF:
        # scipy: x - max is nan for every element (or exp(nan)) -> all nan
        for j in range(lo, hi):
            out[j] = _NAN
        return
    s = row_numer_store(x, out, lo, hi, m)
    sx = cast_to(out, s)
    orow = out[lo:hi]
    normal = _quotients_normal(orow, smallest_numer(xmin, m), sx)
    if not normal:  # a logit far below the max (a mask of -1e9): zero terms
        normal = _quotients_normal(orow, _smallest_term(orow, hi - lo), sx)
    _divide_row(orow, sx, one_of(out) / sx, normal)


@jit_inl
def row_softmax_any(x, out, lo, hi):
    """``row_softmax``, short rows by ``short_softmax`` (a loop of long rows
    calls ``row_softmax`` itself, without the short rows' code and the
    constants LLVM would hold for it across the loop)."""
    if not short_softmax(x, out, lo, hi):
        row_softmax(x, out, lo, hi)


def block_softmax(x, out, r0, r1):  # pragma: no cover - an overload in compiled code
    """``row_softmax_any`` of rows r0..r1 of x into out (rows of up to
    ``INLINE_SWEEP``: ``softmax_rows``' short-row loop)."""
    raise NotImplementedError("block_softmax runs in compiled code only")


@overload(block_softmax, inline="always")
def _block_softmax_ol(x, out, r0, r1):
    """C-contiguous float32 rows ``PAIR_ROWS`` at a time by
    ``lanes_softmax_rows`` (``short_softmax``'s operations a row, the rows
    interleaved: the same bits); a row whose max is infinite gets nan, as
    in ``row_softmax`` (out may be x: its row is not read again), one whose
    quotients may be subnormal is divided in float64 as there; the rows
    left, and other arrays, one by one."""

    def one_by_one(x, out, r0, r1):
        for i in range(r0, r1):
            row_softmax_any(x[i], out[i], 0, x.shape[1])

    if not _interleaved(x, out):
        return one_by_one

    def impl(x, out, r0, r1):
        n = x.shape[1]
        i = r0
        while i + PAIR_ROWS <= r1 and n <= SHORT_GROUPS * LANES:
            p = lanes_softmax_rows(x, out, i)
            for r in range(PAIR_ROWS):
                m = p[r]
                if m == _NINF or m == _INF:
                    for j in range(n):
                        out[i + r, j] = _NAN
                elif p[2 * PAIR_ROWS + r] == 0.0:
                    _divide_wide(out[i + r], np.float64(p[PAIR_ROWS + r]))
            i += PAIR_ROWS
        for k in range(i, r1):
            row_softmax_any(x[k], out[k], 0, n)

    return impl


def short_softmax(x, out, lo, hi):  # pragma: no cover - an overload in compiled code
    """``row_softmax`` of x[lo:hi] into out where it is a short contiguous
    float32 row with a finite max: whether it ran."""
    raise NotImplementedError("short_softmax runs in compiled code only")


@overload(short_softmax, inline="always")
def _short_softmax_ol(x, out, lo, hi):
    """Rows of at most ``SHORT_GROUPS * LANES`` by ``lanes_softmax_short``:
    one sweep of loads after the max, one of stores, the numerators held
    between them (``row_softmax``'s numerators, sum and quotients: its
    bits); where a quotient may be subnormal or the sum is nan, the division
    in float64 as there.  Any other row: False."""
    if not (contiguous_row(x) and contiguous_row(out) and x.dtype == out.dtype == types.float32):
        return lambda x, out, lo, hi: False

    def impl(x, out, lo, hi):
        n = hi - lo
        if n > SHORT_GROUPS * LANES:
            return False
        m = row_max(x, lo, hi)
        if m == _NINF or m == _INF:
            return False
        sx, normal = lanes_softmax_short(x, out, lo, n, m)
        if not normal:
            _divide_wide(out[lo:hi], np.float64(sx))
        return True

    return impl


@jit
def row_shift_store(x, out, lo, hi, c):
    """out = (x - m) - c, with c = m + log1p(t) split as (m, l)."""
    for j in range(lo, hi):
        out[j] = x[j] - c


#: log_softmax of a row up to this many bytes runs ``row_log_softmax`` (its
#: output row is written during the exp sweep and swept again in cache);
#: longer rows take pairs by blocks and one store sweep (one read less)
FUSED_BYTES = 1 << 20


@jit_inl
def row_log_softmax(x, out):
    """log_softmax of one whole row: a max sweep; an exp-sum sweep that also
    stores x - m into out; ``out -= log1p(t)`` in cache.  The same two
    roundings as ``log_softmax_store``, so the same bits (the stores overlap
    the exp instead of a sweep of their own)."""
    m, t = row_shift_pair(x, out)
    row_sub(x, out, m, log1p64(t))


@jit_inl
def row_shift_pair(x, out):
    """row_log_softmax's first two sweeps: its (m, t), and out = x - m for a
    finite m.  An infinite m comes back as the constant row_sub subtracts
    from x (nan: only -inf, or nan elements; +inf: x - inf), with t = 0."""
    n = x.shape[0]
    m = row_max(x, 0, n)
    if m == _INF or m == _NINF:
        return _shift_inf_pair(x, m)
    s, cnt = sum_excl_shift(x, out, m)
    return np.float64(m), s + (cnt - 1.0)


@jit_inl
def _shift_inf_pair(x, m):
    """``row_shift_pair`` of a row x whose max m is infinite: nan where it is
    -inf or x holds a nan, else inf (the constant ``row_sub`` subtracts)."""
    v = _NAN if (m == _NINF or has_nan(x, 0, x.shape[0])) else _INF
    return v, 0.0


@jit_inl
def row_sub(x, out, m, lg):
    """row_log_softmax's last sweep: out -= lg (lg = log1p(t)) where out holds
    x - m, or out = x - m for row_shift_pair's nan / +inf."""
    n = x.shape[0]
    if m == _INF or m != m:
        for j in range(n):
            out[j] = x[j] - m
        return
    lx = cast_to(out, lg)
    for j in range(n):
        out[j] = out[j] - lx


@jit_inl
def log_softmax_store(x, out, lo, hi, m, lg):
    """out = (x - m) - lg in out's dtype (m is x's max, or a special value;
    lg = log1p(t) >= 0): two roundings, within an ulp of the result."""
    xs = x[lo:hi]
    os = out[lo:hi]
    mx = cast_to(out, m)
    lx = cast_to(out, lg)
    for j in range(xs.shape[0]):
        os[j] = (xs[j] - mx) - lx


# ----------------------------------------------------------------------------
# weighted log-sum-exp (scipy's b=): triples (m, w, s), value and sign
# ----------------------------------------------------------------------------
# A weighted partial sum is a triple ``(m, w, s)`` with
# ``sum b * exp(a) == exp(m) * (w + s)``: ``m`` the max of ``a`` where
# ``b != 0``, ``w`` the summed weight at the max (exact, so weights that cancel
# at the max cancel exactly), ``s`` the weighted sum of ``exp(a - m)`` over the
# rest.  ``(-inf, 0, 0)`` is the empty sum, ``(+inf, +-1, 0)`` an infinite sum
# of that sign; nan (also +inf terms of both signs) propagates.
@jit
def merge_triple(m1, w1, s1, m2, w2, s2):
    """Merge two weighted triples ``(m, w, s)`` (float64) into one."""
    if m1 != m1 or m2 != m2 or w1 != w1 or w2 != w2 or s1 != s1 or s2 != s2:
        return _NAN, _NAN, _NAN
    if m1 < m2:
        m1, w1, s1, m2, w2, s2 = m2, w2, s2, m1, w1, s1
    if m2 == _NINF:
        return m1, w1, s1
    if m1 == _INF:
        if m2 == _INF and w1 != w2:  # +inf terms of both signs: inf - inf
            return _NAN, _NAN, _NAN
        return m1, w1, 0.0
    if m1 == m2:
        return m1, w1 + w2, s1 + s2
    return m1, w1, s1 + (w2 + s2) * expneg64(m2 - m1)


@jit
def finish_triple(m, w, s):
    """``(log|w + s| + m, sign)``, computed as ``m + log|w| + log1p(s / w)``."""
    if m != m:
        return _NAN, _NAN
    if m == _NINF:
        return _NINF, 0.0
    if m == _INF:
        return _INF, (1.0 if w > 0 else -1.0)
    if w == 0.0:
        if s == 0.0:
            return _NINF, 0.0
        return m + np.log(abs(s)), (1.0 if s > 0 else -1.0)
    r = s / w
    sgn = (1.0 if w > 0 else -1.0) * (1.0 if r > -1.0 else (-1.0 if r < -1.0 else 0.0))
    if r == -1.0:
        return _NINF, 0.0
    if r < -1.0:
        r = -r - 2.0  # log1p(r) == log|1 + r_old|
    return m + np.log(abs(w)) + np.log1p(r), sgn


@jit
def row_triple(a, b, lo, hi):
    """The triple ``(m, w, s)`` of ``sum b[j] * exp(a[j])`` over [lo, hi).

    Elements with ``b == 0`` are ignored (even inf or nan ones), as in scipy.
    """
    m = _NINF
    anynan = False
    for j in range(lo, hi):
        bj = b[j]
        if bj != 0.0:
            aj = a[j]
            if aj != aj or bj != bj:
                anynan = True
            elif aj > m:
                m = aj
    if anynan:
        return _NAN, _NAN, _NAN
    if m == _NINF:
        return _NINF, 0.0, 0.0
    if m == _INF:
        pos = False
        neg = False
        for j in range(lo, hi):
            if a[j] == _INF:
                if b[j] > 0:
                    pos = True
                elif b[j] < 0:
                    neg = True
        if pos and neg:
            return _NAN, _NAN, _NAN
        return _INF, (1.0 if pos else -1.0), 0.0
    mf = np.float64(m)
    w, s = _weighted_sums(a, b, lo, hi, mf, _INF)
    while w == 0.0:
        # the weights at the max cancel exactly: the sum is the one of the
        # elements below it, whose terms scaled to this max may have
        # underflowed ([0, 0, -800] with b = [1, -1, 1] is -800): the same
        # triple again below this max
        top = mf
        mf = _NINF
        for j in range(lo, hi):
            aj = np.float64(a[j])
            if b[j] != 0.0 and mf < aj < top:
                mf = aj
        if mf == _NINF:
            return _NINF, 0.0, 0.0
        w, s = _weighted_sums(a, b, lo, hi, mf, top)
    return mf, w, s


@jit
def _weighted_sums(a, b, lo, hi, m, top):
    """(w, s) of the elements of a[lo:hi] below ``top``: w the summed weight
    of those at (or above) m, s the weighted sum of exp(a - m) of the rest."""
    w = 0.0
    s = 0.0
    for j in range(lo, hi):
        aj = np.float64(a[j])
        if aj < top:
            bj = np.float64(b[j])
            d = aj - m
            if d >= 0.0:
                w += bj
            elif bj != 0.0:
                s += bj * expneg64(d)
    return w, s


@jit
def row_lse_weighted(a, b, lo, hi):
    """log|sum b exp(a)| and its sign over [lo, hi); b == 0 hides a.

    Follows scipy, and gives the mathematically right answer where scipy's
    direct fallback overflows to nan (an exact cancellation is -inf, sign 0).
    """
    m, w, s = row_triple(a, b, lo, hi)
    return finish_triple(m, w, s)


# ----------------------------------------------------------------------------
# narrow rows (N * itemsize < NARROW_BYTES): a block of rows as one flat,
# vectorized exp loop
# ----------------------------------------------------------------------------
#: rows of fewer bytes than this (64 float32, 32 float64: one body of four
#: 512-bit vectors) go through the block kernels below: a row loop that short
#: runs the tails and reductions of every vectorized loop for few elements
#: (float32 rows of 48-63: 1.2-2x the block kernels' time; docs/performance-notes.md)
NARROW_BYTES = 256
#: rows per block in the narrow kernels (scratch is NB * N elements)
NB = 512
#: narrow rows of at least this many bytes ask for the next block's rows
#: while they take their maxima (``_block_maxima``, ``transpose_rows``), in
#: arrays of at least PREFETCH_MIN bytes: shorter rows share lines, so a
#: row's requests would repeat its neighbours'; smaller arrays, mostly in
#: cache already, measured slower with them (docs/performance-notes.md)
PREFETCH_BYTES = 128
PREFETCH_MIN = 1 << 22


@jit_inl
def spread(rep, lo, n, v):
    """rep[lo : lo + n] = v in whole vectors (``store_splat``): up to
    ``SPLAT - 1`` elements past lo + n are written too, so a block's rows are
    spread in order and its scratch has ``SPLAT`` elements more than its
    rows fill (``narrow_scratch_len``)."""
    for j in range(0, n, SPLAT):
        store_splat(rep, lo + j, v)


@jit_inl
def narrow_scratch_len(rows, n):
    """Elements of a narrow block's spread scratch for rows of n elements."""
    return rows * n + SPLAT


@jit
def narrow_block(x, r0, r1, mb, rep, e, f, excl, dout=None):
    """Row maxima (mb) and the terms e = ``expt(x - max)`` (exp(x - max)
    scaled by 2**K; without excl softmax's ``exps``) of rows r0..r1 as one
    flat block.

    The exp runs over the block's R * N elements in one flat loop, so it is
    vectorized however short the rows are.  With ``excl``, elements at (or
    above) the max give e = 0 and a flag f = 1 instead (the pair's t excludes
    one max and counts the others; the caller multiplies the sum of e by
    ``sumscale_of``); nan is ignored by the max and propagates through e.
    With ``dout`` (a flat block of ``(r1 - r0) * n`` elements, not x's
    memory) the sweep also stores x - max there (log_softmax's first half).
    """
    n = x.shape[1]
    _block_maxima(x, r0, r1, mb, rep)
    xf = x[r0:r1].reshape((r1 - r0) * n)
    _flat_exp(xf, rep, e, f, (r1 - r0) * n, excl, dout)


@jit
def _block_maxima(x, r0, r1, mb, rep):
    """Maxima of rows r0..r1 into mb and spread over their elements in rep.

    This is the block's one sweep over x in memory; the sweeps that follow
    run in cache and read no memory, so without help the next block's rows
    would only be asked for when its own max sweep waits for them.  Where
    ``prefetch_ahead`` says so, each row asks for the next block's row at
    its index, which then arrives while this block's sweeps run."""
    n = x.shape[1]
    ahead = prefetch_ahead(x)
    for i in range(r1 - r0):
        m = lanes_max(x[r0 + i], 0, n)
        mb[i] = m
        spread(rep, i * n, n, m)
        if ahead and r1 + i < x.shape[0]:
            prefetch_row(x[r1 + i])


@jit_inl
def prefetch_ahead(x):
    """Whether a narrow kernel asks for its next block's rows while it takes
    this block's: rows of ``PREFETCH_BYTES`` or more in an array of
    ``PREFETCH_MIN`` bytes or more."""
    row_bytes = x.shape[1] * x.itemsize
    return row_bytes >= PREFETCH_BYTES and x.shape[0] * row_bytes >= PREFETCH_MIN


@jit_inl
def prefetch_row(row):
    """Ask for the lines of a row (its last element's too: a row that starts
    mid-line ends in one line more)."""
    for j in range(0, row.shape[0], LINE // row.itemsize):
        prefetch(row, j)
    prefetch(row, row.shape[0] - 1)


@jit_fast
def _flat_exp(xf, rep, e, f, size, excl, dout):
    z = zero_of(xf)
    o = one_of(xf)
    if excl:
        for k in range(size):  # terms of sums only: scaled (see expt)
            d = xf[k] - rep[k]
            if dout is not None:  # pruned at compile time when there is none
                dout[k] = d
            v = expt(d)
            e[k] = z if d >= z else v
            f[k] = o if d >= z else z
    else:  # every term (softmax's numerators: see exps)
        for k in range(size):
            e[k] = exps(xf[k] - rep[k])


@jit_fast
def _row_terms_all(x, out, m):
    """out = ``exps(x - m)`` over a row: ``_flat_exp``'s terms without excl
    (with m itself for the spread max that holds it)."""
    for k in range(x.shape[0]):
        out[k] = exps(x[k] - m)


@jit_fast
def _row_terms(x, out, m):
    """out = ``_flat_exp``'s terms e of a row (excl: 0 at or above m), by its
    flags and expressions."""
    z = zero_of(x)
    for k in range(x.shape[0]):
        d = x[k] - m
        v = expt(d)
        out[k] = z if d >= z else v


@jit_fast
def _row_shift(x, out, m):
    """out = x - m over a row, as ``_flat_exp`` stores it (dout)."""
    for k in range(x.shape[0]):
        out[k] = x[k] - m


@jit
def narrow_log_softmax_row(x, out):
    """``narrow_pairs`` and the finish of ``log_softmax_narrow`` on one 1-d
    row x into out without block scratch: the same max, terms, sums in x's
    dtype, log1p and subtraction, so their bits.  out holds the terms for
    their sum, then x - m; the count of elements at the max is exact in
    any order."""
    n = x.shape[0]
    m = lanes_max(x, 0, n)
    _row_terms(x, out, m)
    s = lanes_sum(out, 0, n)
    c = zero_of(x)
    for k in range(n):
        c += one_of(x) if x[k] - m >= zero_of(x) else zero_of(x)
    _row_shift(x, out, m)
    mf = np.float64(m)
    t = np.float64(s) * sumscale_of(x) + (np.float64(c) - 1.0)
    if mf == _NINF or mf == _INF:
        mf, t = inf_pair(x, 0, n, mf)
    c1, c2 = log_softmax_consts_lg(mf, log1p64(t))
    b = cast_to(out, _NAN if c1 != c1 else c2)
    for k in range(n):
        out[k] = out[k] - b


@jit
def narrow_pairs(x, r0, r1, mo, to, off, mb, rep, e, f, dout=None):
    """(m, t) of rows r0..r1 of x into mo, to (float64) at off, off + 1, ...

    t sums e over the elements below the max (nan propagates) plus the count
    of the other maxima: the pair keeps t apart from the max's 1 so that
    log1p(t) keeps tiny terms.  ``dout``: see ``narrow_block``.
    """
    narrow_block(x, r0, r1, mb, rep, e, f, True, dout)
    _pairs_of_sums(x, r0, r1, mo, to, off, mb, e, f)


@jit
def _pairs_of_sums(x, r0, r1, mo, to, off, mb, e, f):
    """``narrow_pairs``' pairs from the block's maxima, terms e and flags f,
    each row's sums in x's dtype (under 64 terms; float32 as the wide rows'
    per-CHUNK sums; float64 adds of float32 terms cost a conversion each;
    the count of flags is exact in any order)."""
    n = x.shape[1]
    for i in range(r1 - r0):
        s = lanes_sum(e, i * n, n)
        c = lanes_sum(f, i * n, n)
        mf = np.float64(mb[i])
        mo[off + i] = mf
        to[off + i] = np.float64(s) * sumscale_of(x) + (np.float64(c) - 1.0)
        if mf == _NINF or mf == _INF:
            mo[off + i], to[off + i] = inf_pair(x[r0 + i], 0, n, mf)


#: rows per block of the row kernels that finish a block of rows at once (its
#: log1p as one vectorized loop): logsumexp, log_softmax, cross-entropy
ROW_BLOCK = 64


@jit_inl
def row_block(nr):
    """Rows per block for nr rows: ROW_BLOCK, fewer under 16 * ROW_BLOCK rows
    (blocks of nr // 16 rows keep every thread busy on few rows)."""
    return min(ROW_BLOCK, max(1, nr // 16))


# ---------------------------------------- narrow rows, transposed blocks -----
#: rows per transposed block, at most (the scratch is (N, rows))
TB = 256
#: bytes of a transposed block's scratch, at most: an L1 of 32 KiB holds it
#: (float32 rows of 32-47 in blocks of 256 rows ran 1.5x slower per row
#: where the block outgrew a 48 KiB L1)
T_BLOCK_BYTES = 1 << 15


@jit
def t_rows(x):
    """Rows per transposed block of x: ``TB``, halved while the (N, rows)
    scratch is over ``T_BLOCK_BYTES`` (64 at least)."""
    tb = TB
    while tb > 64 and x.shape[1] * tb * x.itemsize > T_BLOCK_BYTES:
        tb //= 2
    return tb


#: tasks of the transposed kernels (each allocates its scratch once; a numba
#: kernel that calls get_num_threads() cannot be cached)
MAXTASKS = 256


@jit
def tasks_of(nall):
    """(tasks, items per task) for nall items: at most ``MAXTASKS`` tasks and
    none empty, so that prange's even split of the tasks between the threads
    is an even split of the items (``min(nall, MAXTASKS)`` tasks of
    ``ceil(nall / tasks)`` items leave the last tasks empty: 300 rows in 256
    tasks of 2 gave one of two threads 256 rows, the other 44)."""
    per = max(1, (nall + MAXTASKS - 1) // MAXTASKS)
    return (nall + per - 1) // per, per


@jit_alloc
def scratch_t(x, rows):
    """A transposed kernel's scratch for blocks of ``rows`` rows: the (N,
    rows) block, and the rows' maxima, sums and counts in x's dtype."""
    n = x.shape[1]
    return (
        np.empty((n, rows), dtype=x.dtype),
        np.empty(rows, dtype=x.dtype),
        np.empty(rows, dtype=x.dtype),
        np.empty(rows, dtype=x.dtype),
    )


@jit
def transpose_rows(x, r0, nb, xt):
    """xt[j, r] = x[r0 + r, j] for r < nb (contiguous reads, strided writes);
    the next block's rows are asked for as ``_block_maxima`` does."""
    n = x.shape[1]
    ahead = prefetch_ahead(x)
    for r in range(nb):
        xr = x[r0 + r]
        for j in range(n):
            xt[j, r] = xr[j]
        if ahead and r0 + nb + r < x.shape[0]:
            prefetch_row(x[r0 + nb + r])


@jit_fast
def block_max_t(xt, nb, mv):
    """mv[r] = max_j xt[j, r] (nan ignored), vectorized over r < nb."""
    for r in range(nb):
        mv[r] = cast_to(xt, _NINF)
    for j in range(xt.shape[0]):
        xj = xt[j]
        for r in range(nb):
            mv[r] = maxnum(mv[r], xj[r])


@jit_fast
def block_sum_t(xt, nb, mv, acc, cnt):
    """acc[r]: sum of the scaled terms ``expt(x - m)`` of row r below its max
    m = mv[r], cnt[r]: count of the rest (x's dtype), vectorized over r < nb,
    four of a row's elements a pass (fewer loads and stores of acc, cnt).

    Nothing is stored: stores to four rows of xt a pass kept LLVM from
    vectorizing the loop (too many runtime alias checks).
    """
    z = zero_of(xt)
    o = one_of(xt)
    n = xt.shape[0]
    for r in range(nb):
        acc[r] = z
        cnt[r] = z
    n4 = n // 4 * 4
    for j in range(0, n4, 4):
        xa = xt[j]
        xb = xt[j + 1]
        xc = xt[j + 2]
        xd = xt[j + 3]
        for r in range(nb):
            m = mv[r]
            da = xa[r] - m
            db = xb[r] - m
            dc = xc[r] - m
            dd = xd[r] - m
            ea = expt(da)  # (an exp inside the conditional expression stays scalar)
            eb = expt(db)
            ec = expt(dc)
            ed = expt(dd)
            ta = (z if da >= z else ea) + (z if db >= z else eb)
            tc = (z if dc >= z else ec) + (z if dd >= z else ed)
            acc[r] += ta + tc
            ca = (o if da >= z else z) + (o if db >= z else z)
            cc = (o if dc >= z else z) + (o if dd >= z else z)
            cnt[r] += ca + cc
    for j in range(n4, n):
        xj = xt[j]
        for r in range(nb):
            d = xj[r] - mv[r]
            e = expt(d)
            acc[r] += z if d >= z else e
            cnt[r] += o if d >= z else z


@jit
def pairs_t(x, r0, nb, mv, acc, cnt, mo, to):
    """(m, t) of rows r0..r0 + nb into mo, to (float64) from the transposed
    sweeps; a row with an infinite max gets t = 0, or (nan, nan) when it has
    a nan element (the max ignores nan; rare, so a scalar rescan)."""
    n = x.shape[1]
    for r in range(nb):
        mo[r] = np.float64(mv[r])
        to[r] = np.float64(acc[r]) * sumscale_of(x) + (np.float64(cnt[r]) - 1.0)
    for r in range(nb):
        m = mo[r]
        if m == _INF or m == _NINF:
            mo[r], to[r] = inf_pair(x[r0 + r], 0, n, m)


@jit
def finish_block(mo, to, out, r0, r1):
    """out[r0 + i] = ``finish(m_i, t_i)``: one vectorized loop, an infinite
    max taken as it is (a select: its t is not used; nan needs nothing)."""
    for i in range(r1 - r0):
        m = mo[i]
        v = m + log1p64(to[i])
        out[r0 + i] = m if (m == _INF or m == _NINF) else v


# softmax of narrow rows divides each row's terms (``expt``: exp(x - m) * 2**K,
# normal down to exp(x - m) ~ 2**-K times the smallest normal) by their sum,
# so 2**K cancels and the quotient is rounded once.  A float32 quotient
# below the smallest normal is rounded in float64 and converted (exactly
# the float32 division's rounding: 53 >= 2 * 24 + 2 bits): a multiply or
# FMA with a subnormal result or operand takes a microcode assist on Intel
# cores (~150 cycles; 10x the whole row's cost where an eighth of the
# outputs were subnormal), a conversion does not.
@jit
def narrow_softmax(x, out, r0, r1, mb, rep, rrep):
    """softmax of rows r0..r1: the terms flat into out, then divided by
    their rows' sums in place: as one flat loop over the block with each
    row's divisor and its reciprocal spread over its elements (rep, rrep,
    of ``narrow_scratch_len``); from the first row whose quotients may be
    subnormal (or whose divisor is nan) on, row by row (``_divide_rows``)."""
    n = x.shape[1]
    nr = r1 - r0
    of = out[r0:r1].reshape(nr * n)
    narrow_block(x, r0, r1, mb, rep, of, of, False)
    tmin = _smallest_term(of, nr * n)
    k = _row_divisors(of, n, mb, nr, tmin, rep, rrep)
    _flat_divide(of, rep, rrep, k * n)
    if k < nr:
        _divide_rows(of[k * n :], n, mb[k:], nr - k, tmin)


@jit
def _smallest_term(v, size):
    """The smallest term of v[:size] where ``_quotients_normal`` needs it
    (float32; nan ignored), else inf without a pass (float64)."""
    if _wide_below(v) == 0.0:
        return cast_to(v, _INF)
    return _min_term(v, size)


@jit
def _min_term(v, size):
    """The smallest nonzero v[k], k < size, nan ignored (inf if none): a zero
    term (exp(-inf)) has a zero quotient, exactly and without an assist.
    (Terms are never negative.)"""
    return lanes_min_pos(v, 0, size)


@jit
def _row_divisors(of, n, mb, nr, tmin, rep, rrep):
    """The divisors of the nr rows of n terms in of (their sums in float64)
    and their reciprocals spread into rep, rrep, up to the first row whose
    quotients may be subnormal or whose divisor is nan (an infinite max
    mb[i], a nan term; tmin: the smallest term): the count of rows spread
    (nr: all of them)."""
    for i in range(nr):
        sx, rs = _row_divisor(of, mb[i], lanes_sum64(of, i * n, n))
        if not _quotients_normal(of, tmin, sx):
            return i
        spread(rep, i * n, n, sx)
        spread(rrep, i * n, n, rs)
    return nr


@jit
def _divide_rows(of, n, mb, nr, tmin):
    """The nr rows of n terms in of divided by their sums (float64; nan where
    the row's max mb[i] is infinite), row by row (``_divide_row``); tmin:
    the smallest term."""
    for i in range(nr):
        orow = of[i * n : (i + 1) * n]
        sx, rs = _row_divisor(orow, mb[i], lanes_sum64(of, i * n, n))
        _divide_row(orow, sx, rs, _quotients_normal(orow, tmin, sx))


@jit
def _flat_divide(of, rep, rrep, size):
    """of[k] = ``div_by(of[k], rep[k], rrep[k])`` for k < size (IEEE: the
    FMAs are its exactness)."""
    for k in range(size):
        of[k] = div_by(of[k], rep[k], rrep[k])


@jit_inl
def _row_divisor(orow, m, s):
    """A row's sum s (float64) in the row's dtype, nan where the row's max m
    is infinite, and its reciprocal."""
    s = _NAN if (m == _NINF or m == _INF) else s
    sx = cast_to(orow, s)
    return sx, one_of(orow) / sx


@jit_inl
def _divide_row(orow, sx, rs, normal):
    """orow /= sx correctly rounded (rs = 1 / sx): by ``div_by`` where every
    quotient is ``normal`` (``_quotients_normal``), else by ``div_by`` in
    float64, rounded once more to float32 (no assist; the same rounding).
    Written with FMAs: LLVM shrinks ``float32(float64(a) / float64(b))``
    back to a float32 division, whose subnormal result takes the assist."""
    if normal:
        for j in range(orow.shape[0]):
            orow[j] = div_by(orow[j], sx, rs)
    else:
        _divide_wide(orow, np.float64(sx))


@jit_inl
def _divide_wide(orow, b):
    """orow /= b (float64) by ``div_by`` in float64, rounded to orow's dtype."""
    rb = 1.0 / b
    for j in range(orow.shape[0]):
        orow[j] = cast_to(orow, div_by(np.float64(orow[j]), b, rb))


#: the smallest normal quotient (float64) below which a float32 softmax
#: divides in float64; 0 for float64 (no wider type: it divides by ``div_by``)
_wide_below = _by_dtype(
    "wide_below",
    lambda a: 2.0**-126,
    lambda a: 0.0,
    "Quotients below this are rounded in float64 (float32 only).",
    inline="always",
)


@jit_inl
def _quotients_normal(of, tmin, bmax):
    """Whether every quotient of a term (the smallest: tmin; 0: no) by a
    divisor bmax is normal (a nan bmax: no)."""
    floor = _wide_below(of)
    if floor == 0.0:
        return True
    return np.float64(tmin) >= np.float64(bmax) * floor


@jit
def narrow_softmax_row(x, out):
    """``narrow_softmax`` of one 1-d row x into out without block scratch:
    the same max, terms (``_row_terms_all``), sum and quotients, so its bits."""
    n = x.shape[0]
    m = lanes_max(x, 0, n)
    _row_terms_all(x, out, m)
    s = lanes_sum64(out, 0, n)
    sx, rs = _row_divisor(out, m, s)
    _divide_row(out, sx, rs, _quotients_normal(out, _smallest_term(out, n), sx))


# ----------------------------------------------------------------------------
# masked rows (where=): masked-out elements are absent, inf / nan included
# ----------------------------------------------------------------------------
@jit_fast
def row_max_masked(x, w, lo, hi):
    """max over the elements with w != 0, ignoring nan; and their count."""
    ninf = cast_to(x, _NINF)
    m = ninf
    xs = x[lo:hi]
    ws = w[lo:hi]
    for j in range(xs.shape[0]):
        m = maxnum(m, xs[j] if ws[j] else ninf)
    cnt = 0
    for j in range(ws.shape[0]):
        cnt += ws[j] != 0
    return m, cnt


@jit_fast
def row_sum_excl_masked(x, w, lo, hi, m):
    """row_sum_excl over the elements with w != 0."""
    z = zero_of(x)
    o = one_of(x)
    total = 0.0
    cnt = 0.0
    n = hi - lo
    for c in range(0, n, CHUNK):
        c1 = lo + min(c + CHUNK, n)
        xc = x[lo + c : c1]
        wc = w[lo + c : c1]
        acc = z
        k = z
        for j in range(xc.shape[0]):
            d = xc[j] - m
            e = expt(d)
            keep = wc[j] != 0
            acc += (z if d >= z else e) if keep else z  # a selected nan stays
            k += (o if d >= z else z) if keep else z
        total += acc
        cnt += k
    return total * sumscale_of(x), cnt


@jit
def row_pair_masked(x, w, lo, hi):
    """(m, t) of the elements of x[lo:hi] with w != 0; (-inf, 0) if none."""
    m, _ = row_max_masked(x, w, lo, hi)
    if m == _NINF or m == _INF:
        for j in range(lo, hi):
            if w[j] and x[j] != x[j]:
                return _NAN, _NAN
        return np.float64(m), 0.0
    s, cnt = row_sum_excl_masked(x, w, lo, hi, m)
    return np.float64(m), s + (cnt - 1.0)


@jit
def row_softmax_masked(x, w, out, lo, hi, log):
    """(log_)softmax over the elements with w != 0; 0 (-inf for log) elsewhere.

    A fully masked row gives zeros (-inf for log), jax's convention; otherwise
    the unmasked elements follow the unmasked semantics (scipy's specials).
    """
    m, t = row_pair_masked(x, w, lo, hi)
    any_in = False
    for j in range(lo, hi):
        if w[j]:
            any_in = True
            break
    if log:
        c1 = m
        c2 = 0.0
        if m != m or t != t or (m == _NINF and any_in):
            c1 = _NAN
        elif m != _INF and m != _NINF:
            c2 = log1p64(t)
        for j in range(lo, hi):
            out[j] = (x[j] - c1) - c2 if w[j] else _NINF
        return
    bad = m != m or t != t or m == _INF or m == _NINF
    s = cast_to(x, _NAN if bad else 1.0 + t)
    rs = one_of(x) / s
    for j in range(lo, hi):
        out[j] = div_by(expn(x[j] - cast_to(x, m)), s, rs) if w[j] else 0.0


@jit
def row_softmax_masked_fast(x, w, out, lo, hi):
    """softmax over the elements with w != 0 (row_softmax_masked's results):
    the numerators computed once, stored, then divided in place (three
    sweeps, like row_softmax, and as there in float64 where a quotient may
    be subnormal); rows with an infinite max take row_softmax_masked."""
    if _wide_below(x) == 0.0:
        m, cnt = row_max_masked(x, w, lo, hi)
        xmin = m
    else:
        m, xmin, cnt = _max_min_masked(x, w, lo, hi)
    if cnt == 0 or m == _INF or m == _NINF:
        row_softmax_masked(x, w, out, lo, hi, False)
        return
    os = out[lo:hi]
    ws = w[lo:hi]
    s = cast_to(out, _exp_store_masked(x[lo:hi], ws, os, m))
    # a masked element's numerator is 0, and 0 / s is 0 but for s nan
    _divide_row(os, s, one_of(out) / s, _quotients_normal(os, smallest_numer(xmin, m), s))
    if s != s:
        z = zero_of(out)
        for j in range(os.shape[0]):
            os[j] = os[j] if ws[j] else z


@jit_fast
def _max_min_masked(x, w, lo, hi):
    """``row_max_masked`` (max, count) with the min above -inf of the same
    elements (``row_max_min``), in one sweep: (max, min, count)."""
    ninf = cast_to(x, _NINF)
    inf = cast_to(x, _INF)
    m = ninf
    mn = inf
    xs = x[lo:hi]
    ws = w[lo:hi]
    for j in range(xs.shape[0]):
        m = maxnum(m, xs[j] if ws[j] else ninf)
        mn = minnum(mn, xs[j] if (ws[j] != 0) & (xs[j] > ninf) else inf)
    cnt = 0
    for j in range(ws.shape[0]):
        cnt += ws[j] != 0
    return m, mn, cnt


@jit_fast
def _terms_masked(x, w, out, m):
    """out = softmax's numerators ``exps(x - m)`` where w, else 0."""
    z = zero_of(x)
    for j in range(x.shape[0]):
        e = exps(x[j] - m)
        out[j] = e if w[j] else z


@jit_inl
def _exp_store_masked(x, w, out, m):
    """out = softmax's numerators ``exps(x - m)`` where w, else 0; returns
    their sum (float64), a chunk at a time in sixteen lanes as
    ``row_numer_store`` (the same sum in every compiled copy); a nan among
    the selected elements makes it nan."""
    total = 0.0
    n = x.shape[0]
    for c in range(0, n, CHUNK):
        c1 = min(c + CHUNK, n)
        _terms_masked(x[c:c1], w[c:c1], out[c:c1], m)
        total += lanes_sum64_chains(out, c, c1 - c)
    return total
