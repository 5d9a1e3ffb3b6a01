"""Branch-free, vectorizable exp and log1p for float32 / float64.

Numba's ``np.exp`` / ``math.exp`` lower to scalar libm calls (SVML is not
available with PyPI's llvmlite), which keeps every loop that calls them scalar.
The functions here are straight-line code: Cody-Waite range reduction, a
near-minimax polynomial, and scaling by ``2**k`` built from the float's bits,
so LLVM inlines them and emits AVX2/AVX-512 code for the loops that call them.

Special values follow IEEE: ``exp(-inf) == 0``, ``exp(+inf) == inf``,
``exp(nan) is nan``, overflow gives ``inf`` and gradual underflow gives
subnormals (scaling is done in two steps so ``2**k`` never leaves the normal
range).

The float64 versions use integer add / shift / mask on the float's bits and no
int <-> float conversion, which AVX2 lacks for 64-bit lanes (the design of
``exp64`` / ``log1p64`` came with the cumulative-lse work).

The range reduction relies on exact rounding tricks, so these functions are
compiled *without* the ``reassoc`` fast-math flag (only ``contract``, which
allows FMA); kernels that inline them may use ``reassoc`` for their own sums.
Nothing here knows about arrays, axes or Python objects.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .compile import EXACT, FASTMATH, jit_inl
from .compile import jit as _jit

__all__ = [
    "EXACT",
    "FASTMATH",
    "LINE",
    "SPLAT",
    "SUMSCALE32",
    "SUMSCALE64",
    "div_by",
    "exp32",
    "exp64",
    "expneg32",
    "expneg64",
    "expterm32",
    "expterm64",
    "expterm_vector",
    "fma",
    "log1p32",
    "log1p64",
    "maxnum",
    "minnum",
    "prefetch",
    "store_splat",
    "tanh32",
    "tanh64",
]


# ----------------------------------------------------------------------------
# LLVM intrinsics numba does not expose
# ----------------------------------------------------------------------------
def _bitcast(src, dst, lty):
    """An intrinsic reinterpreting the bits of a ``src`` value as ``dst``."""

    @intrinsic
    def _impl(typingctx, x):
        sig = dst(src)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], lty)

        return sig, codegen

    return _impl


_f64_as_i64 = _bitcast(types.float64, types.int64, ir.IntType(64))
_i64_as_f64 = _bitcast(types.int64, types.float64, ir.DoubleType())
_f32_as_i32 = _bitcast(types.float32, types.int32, ir.IntType(32))
_i32_as_f32 = _bitcast(types.int32, types.float32, ir.FloatType())


@intrinsic
def _pow2_f32(typingctx, k):
    """2**k for an integer-valued float32 k in the normal exponent range."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        ki = builder.fptosi(args[0], i32)
        bits = builder.shl(builder.add(ki, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return sig, codegen


def _minmax_intrinsic(name):
    @intrinsic
    def _impl(typingctx, a, b):
        if not (isinstance(a, types.Float) and a == b):
            return None
        sig = a(a, b)

        def codegen(context, builder, signature, args):
            lty = args[0].type
            fnty = ir.FunctionType(lty, [lty, lty])
            fn = builder.module.declare_intrinsic(f"llvm.{name}", [lty], fnty)
            return builder.call(fn, args)

        return sig, codegen

    return _impl


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (``llvm.fma``: one instruction with FMA)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        lty = args[0].type
        fnty = ir.FunctionType(lty, [lty, lty, lty])
        fn = builder.module.declare_intrinsic("llvm.fma", [lty], fnty)
        return builder.call(fn, args)

    return sig, codegen


@_jit
def div_by(a, b, rb):
    """``a / b`` correctly rounded, given ``rb = 1 / b`` (correctly rounded).

    One multiply and two FMAs instead of a division (whose throughput is a
    fifth of a multiply's): ``q = a * rb`` is within an ulp, the residual
    ``a - q * b`` is exact with an FMA, and ``q + residual * rb`` is then the
    correctly rounded quotient (Markstein's theorem), so the result is the
    division's, bit for bit, outside the subnormal range.
    """
    q = a * rb
    return fma(fma(-q, b, a), rb, q)


#: elements of one ``store_splat``: a 512-bit vector of float32 (LLVM splits
#: it into the target's vectors: two 256-bit stores on AVX2, four on SSE2)
SPLAT = 16


@intrinsic
def store_splat(typingctx, a, i, v):
    """``a[i : i + SPLAT] = v`` as one vector store, unchecked.

    A loop that spreads a row's constant over its few elements runs scalar
    (LLVM vectorizes it for 32 or 64 elements an iteration and leaves a
    short row to the scalar remainder); whole vectors that may run past the
    row are one store each.  The caller owns ``SPLAT - 1`` elements past
    ``i + count`` (its scratch is that much longer) and writes them later.
    """
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype == v):
        return None
    sig = types.none(a, types.intp, v)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        arr = context.make_array(aryty)(context, builder, args[0])
        vty = ir.VectorType(context.get_data_type(aryty.dtype), SPLAT)
        vec = ir.Constant(vty, ir.Undefined)
        for k in range(SPLAT):
            vec = builder.insert_element(vec, args[2], ir.Constant(ir.IntType(32), k))
        ptr = builder.bitcast(builder.gep(arr.data, [args[1]]), vty.as_pointer())
        builder.store(vec, ptr, align=aryty.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return sig, codegen


#: bytes of a cache line (x86-64, ARM64 cores of today)
LINE = 64


@intrinsic
def prefetch(typingctx, a, i):
    """Ask for the cache line holding ``a[i]`` (``llvm.prefetch``: a read,
    kept in the outer caches).  A hint, unchecked: it reads nothing and never
    faults, whatever i is.  (A hint for lines about to be written measured
    slower: docs/performance-notes.md.)"""
    if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(i, types.Integer)):
        return None
    sig = types.none(a, types.intp)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        arr = context.make_array(aryty)(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        item = cgutils.get_item_pointer(context, builder, aryty, arr, [args[1]])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        read, outer, data = ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)
        builder.call(fn, [builder.bitcast(item, i8p), read, outer, data])
        return context.get_dummy_value()

    return sig, codegen


#: ``maxnum(a, b)``: IEEE maxNum (a nan operand is ignored). LLVM vectorizes
#: reductions over it, unlike a compare-and-select written in Python.
maxnum = _minmax_intrinsic("maxnum")
#: ``minnum(a, b)``: IEEE minNum.
minnum = _minmax_intrinsic("minnum")

# ----------------------------------------------------------------------------
# exp, float64: |error| < 1 ulp in the normal range
# ----------------------------------------------------------------------------
_LOG2E64 = np.float64(1.4426950408889634)
_LN2HI64 = np.float64(6.93147180369123816490e-01)  # high bits of ln 2 (exact * k)
_LN2LO64 = np.float64(1.90821492927058770002e-10)
_SHIFT64 = np.float64(6755399441055744.0)  # 1.5 * 2**52: float -> nearest int
_HI64 = np.float64(710.0)  # exp(710) overflows
_LO64 = np.float64(-1080.0)  # exp(-1080) underflows to 0
# near-minimax polynomial for exp on [-ln2/2, ln2/2] (mpmath.chebyfit, degree 11)
_P64 = (
    1.0,
    1.0,
    0.50000000000000203099,
    0.16666666666666682285,
    0.041666666666473292202,
    0.0083333333333184622646,
    0.0013888888956219214689,
    0.00019841269893049545164,
    0.000024801481344570322675,
    2.7557237736740599929e-6,
    2.7634155490989483407e-7,
    2.5111203257471138686e-8,
)
_C64 = tuple(np.float64(c) for c in _P64)
(_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _A10, _A11) = _C64


_SHIFT_BITS64 = np.int64(0x4338000000000000)  # bits of _SHIFT64: k sits in the low ones


@_jit
def exp64(x):
    """exp(x) for float64, branch-free (inlined and vectorized by LLVM).

    No int <-> float conversion (AVX2 has none for 64-bit lanes): k is read
    from the low bits of ``x * log2(e) + 1.5 * 2**52`` and ``2**k`` is built
    as ``2**k1 * 2**k2`` (both normal, so gradual underflow is right).
    """
    xc = _HI64 if x > _HI64 else x
    xc = _LO64 if xc < _LO64 else xc
    kd = xc * _LOG2E64 + _SHIFT64
    k = kd - _SHIFT64
    r = (xc - k * _LN2HI64) - k * _LN2LO64
    r2 = r * r
    r4 = r2 * r2
    # Estrin's scheme: short dependency chains keep the FMA units busy
    q0 = (_A0 + _A1 * r) + (_A2 + _A3 * r) * r2
    q1 = (_A4 + _A5 * r) + (_A6 + _A7 * r) * r2
    q2 = (_A8 + _A9 * r) + (_A10 + _A11 * r) * r2
    p = q0 + (q1 + q2 * r4) * r4
    kb = _f64_as_i64(kd) - _SHIFT_BITS64 + np.int64(2046)  # k + 2046 >= 0
    h = kb >> 1  # k1 + 1023 with k1 = floor(k / 2)
    y = p * _i64_as_f64(h << 52) * _i64_as_f64((kb - h) << 52)
    return y if x == x else x


# ----------------------------------------------------------------------------
# exp, float32: computed in float32, |error| <= 1 ulp in the normal range
# ----------------------------------------------------------------------------
_LOG2E32 = np.float32(1.4426950408889634)
_LN2HI32 = np.float32(0.693145751953125)  # 12 significant bits: k * hi is exact
_LN2LO32 = np.float32(1.428606765330187045e-06)
_SHIFT32 = np.float32(12582912.0)  # 1.5 * 2**23
_HI32 = np.float32(89.0)
_LO32 = np.float32(-104.0)
_HALF32 = np.float32(0.5)
_P32 = (
    1.0,
    1.0000000400388699736,
    0.5000000050018797119,
    0.16666405302634304496,
    0.041666340142225575983,
    0.0083759682263114252878,
    0.0013942159833661435644,
)
(_B0, _B1, _B2, _B3, _B4, _B5, _B6) = tuple(np.float32(c) for c in _P32)


@_jit
def exp32(x):
    """exp(x) for float32, computed in float32, branch-free."""
    xc = _HI32 if x > _HI32 else x
    xc = _LO32 if xc < _LO32 else xc
    k = (xc * _LOG2E32 + _SHIFT32) - _SHIFT32
    r = (xc - k * _LN2HI32) - k * _LN2LO32
    r2 = r * r
    p = (_B0 + _B1 * r) + (_B2 + _B3 * r) * r2 + ((_B4 + _B5 * r) + _B6 * r2) * (r2 * r2)
    k1 = (k * _HALF32 + _SHIFT32) - _SHIFT32
    y = p * _pow2_f32(k1) * _pow2_f32(k - k1)
    return y if x == x else x


# ----------------------------------------------------------------------------
# exp of a non-positive argument (every kernel's exp(x - max)): one scaling
# ----------------------------------------------------------------------------
# For d <= 0 the result is at most 1, so there is no overflow to guard, and
# 2**k is built in one step as 2**(k + K) * 2**-K: 2**(k + K) stays normal for
# every k down to the underflow limit, the final product rounds once, so
# gradual underflow is right (subnormal results, then 0).  k comes from the
# low bits of d * log2(e) + 1.5 * 2**p (no float -> int conversion).  A nan d
# stays nan (the clamp below keeps it); -inf gives 0.  About a third fewer
# operations than exp32 / exp64; the same accuracy on d <= 0.
_KOFF32 = 64
#: the clamp: k = -191 there, so 2**(k + 64) is built with a zero exponent
#: field, +0.0, and the term of -inf (or of d below it) is exactly 0.  (A
#: clamp at -104, where exp already rounds to 0, left the scaled term
#: exp(-104) * 2**64 in sums: logsumexp([0, -inf, ...]) was n * 6.8e-46.)
_LOW32 = np.float32(-132.5)
_SCALE32 = np.float32(2.0**-_KOFF32)


def _scale_intrinsic(bits, shift, bias):
    fty = ir.FloatType() if bits == 32 else ir.DoubleType()
    nty = types.float32 if bits == 32 else types.float64

    @intrinsic
    def _impl(typingctx, kd):
        sig = nty(nty)

        def codegen(context, builder, signature, args):
            ity = ir.IntType(bits)
            b = builder.bitcast(args[0], ity)
            b = builder.shl(builder.sub(b, ir.Constant(ity, bias)), ir.Constant(ity, shift))
            return builder.bitcast(b, fty)

        return sig, codegen

    return _impl


#: 2**(k + 64) from kd = d * log2(e) + 1.5 * 2**23 (k in kd's low bits)
_pow2_from_shifted32 = _scale_intrinsic(32, 23, 0x4B400000 - 127 - _KOFF32)


_KOFF64 = 512
#: the clamp: k = -1535, 2**(k + 512) is +0.0 (see _LOW32)
_LOW64 = np.float64(-1064.0)
_SCALE64 = np.float64(2.0**-_KOFF64)
#: 2**(k + 512) from kd = d * log2(e) + 1.5 * 2**52
_pow2_from_shifted64 = _scale_intrinsic(64, 52, 0x4338000000000000 - 1023 - _KOFF64)


# A sum of exp(x - max) does not need each term scaled back by 2**-K: the
# caller multiplies the finished sum by SUMSCALE (2**-K), one multiply per row
# instead of one per element (exact: a power of two), and terms below the
# normal range stay normal inside the sum.  expneg32 / expneg64 are the same
# terms scaled back, so a sum of their values and SUMSCALE times a sum of
# the terms agree bit for bit outside the subnormal range.  (A one-constant
# ln 2 reduction measured faster but lost up to 6 ulp on log_softmax's
# classic [0, -40, -45], where the tiny terms are the whole answer.)
SUMSCALE32 = _SCALE32
SUMSCALE64 = _SCALE64


@_jit
def expterm32(d):
    """``exp(d) * 2**64`` for float32 d <= 0 (or -inf / nan): a sum's term."""
    dc = _LOW32 if d < _LOW32 else d
    kd = dc * _LOG2E32 + _SHIFT32
    k = kd - _SHIFT32
    r = (dc - k * _LN2HI32) - k * _LN2LO32
    p = _B6 * r + _B5
    p = p * r + _B4
    p = p * r + _B3
    p = p * r + _B2
    p = p * r + _B1
    p = p * r + _B0
    return p * _pow2_from_shifted32(kd)


@_jit
def expterm64(d):
    """``exp(d) * 2**512`` for float64 d <= 0 (or -inf / nan): a sum's term.

    Horner's scheme (fewer multiplies than Estrin's; the loops calling this
    have enough independent elements in flight to hide its latency).
    """
    dc = _LOW64 if d < _LOW64 else d
    kd = dc * _LOG2E64 + _SHIFT64
    k = kd - _SHIFT64
    r = (dc - k * _LN2HI64) - k * _LN2LO64
    p = _A11 * r + _A10
    p = p * r + _A9
    p = p * r + _A8
    p = p * r + _A7
    p = p * r + _A6
    p = p * r + _A5
    p = p * r + _A4
    p = p * r + _A3
    p = p * r + _A2
    p = p * r + _A1
    p = p * r + _A0
    return p * _pow2_from_shifted64(kd)


def _vector_const(vty, v):
    return ir.Constant(vty, [float(v)] * vty.count)


#: expterm32 / expterm64's constants, by the LLVM type of their element
_TERM_CONSTS = {
    ir.FloatType(): (
        (_LOW32, _LOG2E32, _SHIFT32, _LN2HI32, _LN2LO32),
        (_B6, _B5, _B4, _B3, _B2, _B1, _B0),
        (32, 23, 0x4B400000 - 127 - _KOFF32),
    ),
    ir.DoubleType(): (
        (_LOW64, _LOG2E64, _SHIFT64, _LN2HI64, _LN2LO64),
        (_A11, _A10, _A9, _A8, _A7, _A6, _A5, _A4, _A3, _A2, _A1, _A0),
        (64, 52, 0x4338000000000000 - 1023 - _KOFF64),
    ),
}


def expterm_vector(builder, d):
    """The IR of ``expterm32`` / ``expterm64`` on each lane of the float
    vector d: the same operations in the same order, so the same bits in
    code of the same flags (``contract`` fuses the same multiply-adds).
    For intrinsics that lay out a sweep's vectors themselves
    (``lanes.lanes_exp_sum``)."""
    vty = d.type
    (low, log2e, shift, hi, lo), poly, (bits, mant, bias) = _TERM_CONSTS[vty.element]

    def c(v):
        return _vector_const(vty, v)

    dc = builder.select(builder.fcmp_ordered("<", d, c(low)), c(low), d)
    kd = builder.fadd(builder.fmul(dc, c(log2e)), c(shift))
    k = builder.fsub(kd, c(shift))
    r = builder.fsub(builder.fsub(dc, builder.fmul(k, c(hi))), builder.fmul(k, c(lo)))
    p = builder.fadd(builder.fmul(c(poly[0]), r), c(poly[1]))
    for a in poly[2:]:
        p = builder.fadd(builder.fmul(p, r), c(a))
    ity = ir.VectorType(ir.IntType(bits), vty.count)
    kbits = builder.sub(builder.bitcast(kd, ity), ir.Constant(ity, [bias] * vty.count))
    scale = builder.bitcast(builder.shl(kbits, ir.Constant(ity, [mant] * vty.count)), vty)
    return builder.fmul(p, scale)


@_jit
def expneg32(d):
    """exp(d) for float32 d <= 0 (or -inf / nan), |error| <= 2 ulp."""
    return expterm32(d) * _SCALE32


@_jit
def expneg64(d):
    """exp(d) for float64 d <= 0 (or -inf / nan), |error| <= 2 ulp."""
    return expterm64(d) * _SCALE64


# ----------------------------------------------------------------------------
# tanh, vectorizable (numba's np.tanh / math.tanh is a scalar libm call)
# ----------------------------------------------------------------------------
# |y| < 0.625: Cephes' minimax forms, y + y**3 P(y**2) / Q(y**2) (float64) and
# y + y**3 P(y**2) (float32); above: (e - 1) / (e + 1), e = exp(2|y|), which
# has no cancellation there (e > 3.4).  Both are formed as one numerator and
# one denominator and selected, so there is one division and no branch.  The
# argument of exp is clamped where tanh rounds to 1 (e +- 1 == e), so e never
# overflows to inf / inf.
_TP64 = tuple(
    np.float64(c)
    for c in (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
)
_TQ64 = tuple(
    np.float64(c)
    for c in (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)
)
(_TP0, _TP1, _TP2), (_TQ0, _TQ1, _TQ2) = _TP64, _TQ64
_TSMALL64 = np.float64(0.625)
_TCLAMP64 = np.float64(20.0)  # 1 - tanh(20) < 2**-54
_T32 = tuple(
    np.float32(c)
    for c in (
        -5.70498872745e-3,
        2.06390887954e-2,
        -5.37397155531e-2,
        1.33314422036e-1,
        -3.33332819422e-1,
    )
)
(_T0, _T1, _T2, _T3, _T4) = _T32
_TSMALL32 = np.float32(0.625)
_TCLAMP32 = np.float32(10.0)  # 1 - tanh(10) < 2**-25
_ZERO32 = np.float32(0.0)
_ONE32 = np.float32(1.0)
_TWO32 = np.float32(2.0)
#: numba-level inlining (``compile.jit_inl``): LLVM's inliner finds tanh, its
#: exp included, too big, and a call keeps the caller's loop scalar; only call
#: these from ``jit`` (exact) code
_jit_inline = jit_inl


@_jit_inline
def tanh64(y):
    """tanh(y) for float64, branch-free, within a few ulp; nan stays nan."""
    a = abs(y)
    s = a * a
    p = (_TP0 * s + _TP1) * s + _TP2
    q = ((s + _TQ0) * s + _TQ1) * s + _TQ2
    e = exp64(2.0 * (_TCLAMP64 if a > _TCLAMP64 else a))
    small = a < _TSMALL64
    num = (a * q + (a * s) * p) if small else e - 1.0
    den = q if small else e + 1.0
    r = num / den
    return -r if y < 0.0 else r


@_jit_inline
def tanh32(y):
    """tanh(y) for float32, computed in float32, branch-free; nan stays nan."""
    a = abs(y)
    s = a * a
    p = (((_T0 * s + _T1) * s + _T2) * s + _T3) * s + _T4
    e = exp32(_TWO32 * (_TCLAMP32 if a > _TCLAMP32 else a))
    small = a < _TSMALL32
    num = (a + (a * s) * p) if small else e - _ONE32
    den = _ONE32 if small else e + _ONE32
    r = num / den
    return -r if y < _ZERO32 else r


# ----------------------------------------------------------------------------
# log1p for t >= 0 (the finishing step m + log1p(t) of every lse)
# ----------------------------------------------------------------------------
_SQRTH_BITS = np.int64(0x3FE6A09E667F3BCD)  # bits of sqrt(1/2)
_OFF = np.int64(0x3FF0000000000000) - _SQRTH_BITS
_MANT = np.int64(0x000FFFFFFFFFFFFF)
_MAGIC = np.int64(0x4330000000000000)  # bits of 2**52
_EBIAS = np.float64(4503599627370496.0 + 1023.0)
_FMAX64 = np.finfo(np.float64).max
# log(f) = 2 atanh(s), s = (f-1)/(f+1), |s| <= 0.1716: series in s**2
_L = tuple(np.float64(1.0 / (2 * i + 1)) for i in range(12))
(_L0, _L1, _L2, _L3, _L4, _L5, _L6, _L7, _L8, _L9, _L10, _L11) = _L


@_jit
def log1p64(t):
    """log1p(t) for float64 t >= 0 (or inf / nan), branch-free, one division.

    u = 1 + t = 2**e f with f in [sqrt(1/2), sqrt(2)); log f = 2 atanh(s),
    s = (f - 1) / (f + 1).  For e == 0 (t < 0.414) s = t / (2 + t) exactly
    from t; otherwise the bits of t lost in u add (1 + t - u) / u.  Integer
    add / shift / mask only (no int <-> float conversion), so it vectorizes.
    """
    u = 1.0 + t
    ib = _f64_as_i64(u) + _OFF
    eb = ib >> 52  # e + 1023
    f = _i64_as_f64((ib & _MANT) + _SQRTH_BITS)
    ef = _i64_as_f64(eb | _MAGIC) - _EBIAS  # e as a float, no sitofp
    e0 = eb == np.int64(1023)
    s = (t if e0 else f - 1.0) / ((t + 2.0) if e0 else (f + 1.0))
    # (1 + t - u) / u is below eps/2 of a result >= 0.34: 1/u ~ 2**-e (3 - f)/2
    # (20% off) is plenty; u >= 2**53 loses nothing (and 2**-e would not fit)
    c = (t - (u - 1.0)) * _i64_as_f64((np.int64(2046) - eb) << 52) * (1.5 - 0.5 * f)
    c = 0.0 if (e0 or u > 1e15) else c
    z = s * s
    z2 = z * z
    z4 = z2 * z2
    q = (
        (_L0 + _L1 * z)
        + (_L2 + _L3 * z) * z2
        + ((_L4 + _L5 * z) + (_L6 + _L7 * z) * z2) * z4
        + ((_L8 + _L9 * z) + (_L10 + _L11 * z) * z2) * (z4 * z4)
    )
    y = ef * _LN2HI64 + ((2.0 * s * q + c) + ef * _LN2LO64)
    y = t if u == 1.0 else y  # t < eps/2 (subnormals too): log1p(t) == t
    y = u if u > _FMAX64 else y  # inf stays inf
    return y if t == t else t


_SQRTH32 = np.int32(0x3F3504F3)  # bits of sqrt(1/2) in float32
_OFF32 = np.int32(0x3F800000) - _SQRTH32
_MANT32 = np.int32(0x007FFFFF)
_MAGIC32 = np.int32(0x4B000000)  # bits of 2**23
_EBIAS32 = np.float32(8388608.0 + 127.0)
_FMAX32 = np.finfo(np.float32).max
(_M0, _M1, _M2, _M3, _M4) = tuple(np.float32(1.0 / (2 * i + 1)) for i in range(5))
_F0, _F1, _F2 = np.float32(0.0), np.float32(1.0), np.float32(2.0)
_FH, _F3H = np.float32(0.5), np.float32(1.5)


@_jit
def log1p32(t):
    """log1p(t) for float32 t >= 0 (or inf / nan): log1p64 in float32, 8 lanes."""
    u = _F1 + t
    ib = _f32_as_i32(u) + _OFF32
    eb = ib >> np.int32(23)
    f = _i32_as_f32((ib & _MANT32) + _SQRTH32)
    ef = _i32_as_f32(eb | _MAGIC32) - _EBIAS32
    e0 = eb == np.int32(127)
    s = (t if e0 else f - _F1) / ((t + _F2) if e0 else (f + _F1))
    c = (t - (u - _F1)) * _i32_as_f32((np.int32(254) - eb) << np.int32(23)) * (_F3H - _FH * f)
    c = _F0 if (e0 or u > np.float32(1e8)) else c
    z = s * s
    z2 = z * z
    q = (_M0 + _M1 * z) + (_M2 + _M3 * z) * z2 + _M4 * (z2 * z2)
    y = ef * _LN2HI32 + ((_F2 * s * q + c) + ef * _LN2LO32)
    y = t if u == _F1 else y
    y = u if u > _FMAX32 else y  # inf stays inf
    return y if t == t else t
