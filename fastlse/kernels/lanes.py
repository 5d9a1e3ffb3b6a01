"""A short row's max, min and sum in sixteen lanes, in one order on every target.

A row's max or sum written as a loop reduces in the loop's order: a chain of
dependent compares or adds (or four chains, written out), which LLVM keeps
scalar unless ``reassoc`` lets it pick an order of its own, and then the
order, so the last bits, follow the target's vector width.  These intrinsics
write the reduction as LLVM vector code of one width, ``LANES``: lane k takes
elements k, k + 16, k + 32, ... in turn (the last, partial group by a masked
load, which reads nothing past the row; the lanes it leaves take the
operation's identity), then the lanes are combined as a fixed tree: k with
k + 8, then k + 4, k + 2, k + 1.  LLVM splits the sixteen lanes into the
target's registers (one 512-bit vector of float32, two 256-bit, four 128-bit)
but each lane's operations and the tree are the IR's, so the result is the
same bit for bit on every target, and the work is a few vector operations
instead of a chain per element.

The sums only in ``EXACT`` code: ``reassoc`` (``jit_fast``) would let LLVM
reorder them, so such a caller is refused at compile time.  The max and min
are exact in any order (selects, which ``reassoc`` does not touch).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .exp import SUMSCALE32, SUMSCALE64, expterm_vector

__all__ = [
    "LANES",
    "PAIR_ROWS",
    "SHORT_GROUPS",
    "SUM_CHAINS",
    "c_matrices",
    "contiguous_row",
    "lanes_exp_sum",
    "lanes_exp_sum_exp",
    "lanes_exp_sum_shift",
    "lanes_max",
    "lanes_max_min",
    "lanes_min_pos",
    "lanes_pairs",
    "lanes_pairs_shift",
    "lanes_softmax_rows",
    "lanes_softmax_short",
    "lanes_sum",
    "lanes_sum64",
    "lanes_sum64_chains",
    "lanes_sum_chains",
]

#: lanes of the reductions: a 512-bit vector of float32
LANES = 16
_I32 = ir.IntType(32)


def _splat(builder, value, vty):
    """A vector of vty with value in every lane."""
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _lane_mask(builder, count):
    """The i1 vector of lanes below count."""
    ity = count.type
    lane = ir.Constant(ir.VectorType(ity, LANES), list(range(LANES)))
    return builder.icmp_signed("<", lane, _splat(builder, count, ir.VectorType(ity, LANES)))


#: the lane mask's type
_MASK = ir.VectorType(ir.IntType(1), LANES)


def _vector_intrinsic(builder, op, vty, fnty, pointer=True):
    """The LLVM intrinsic ``op`` (``llvm.masked.load``, ...) of vty vectors
    (and a pointer to them), declared once in the builder's module."""
    suffix = ("f32" if vty.element == ir.FloatType() else "f64") + (".p0" if pointer else "")
    name = f"{op}.v{LANES}{suffix}"
    return builder.module.globals.get(name) or ir.Function(builder.module, fnty, name)


def _masked_load(builder, ptr, vty, align, count, identity):
    """The first ``count`` (< LANES) elements at ptr, ``identity`` in the
    other lanes; nothing past them is read (``llvm.masked.load``)."""
    fnty = ir.FunctionType(vty, [vty.as_pointer(), _I32, _MASK, vty])
    fn = _vector_intrinsic(builder, "llvm.masked.load", vty, fnty)
    mask = _lane_mask(builder, count)
    return builder.call(fn, [ptr, ir.Constant(_I32, align), mask, identity])


def _masked_store(builder, value, ptr, align, count):
    """Store the first ``count`` (< LANES) lanes of value at ptr; nothing
    past them is written (``llvm.masked.store``)."""
    vty = value.type
    fnty = ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), _I32, _MASK])
    fn = _vector_intrinsic(builder, "llvm.masked.store", vty, fnty)
    builder.call(fn, [value, ptr, ir.Constant(_I32, align), _lane_mask(builder, count)])


def _lane_indices(first, count):
    """The shuffle mask of lanes first .. first + count - 1."""
    return ir.Constant(ir.VectorType(_I32, count), list(range(first, first + count)))


def _tree(builder, acc, op):
    """The lanes of acc combined: k with k + h for h = LANES / 2, ..., 1."""
    h = LANES // 2
    while h:
        lo = builder.shuffle_vector(acc, acc, _lane_indices(0, h))
        hi = builder.shuffle_vector(acc, acc, _lane_indices(h, h))
        acc = op(builder, lo, hi)
        h //= 2
    return builder.extract_element(acc, ir.Constant(_I32, 0))


def _add(builder, a, v):
    return builder.fadd(a, v)


def _max(builder, a, v):
    """v where v > a, else a: nan never replaces a (ignored)."""
    return builder.select(builder.fcmp_ordered(">", v, a), v, a)


def _min_above(floor):
    """The op ``v where floor < v < a, else a``: nan and v <= floor never
    replace a (they become inf first, off the chain through a: a compare and
    a select on it, as ``_max``)."""

    def op(builder, a, v):
        low = ir.Constant(v.type, [floor] * v.type.count)
        inf = ir.Constant(v.type, [float("inf")] * v.type.count)
        v = builder.select(builder.fcmp_ordered(">", v, low), v, inf)
        return builder.select(builder.fcmp_ordered("<", v, a), v, a)

    return op


_min_pos = _min_above(0.0)
_min_finite = _min_above(float("-inf"))


class _Groups:
    """A row read as groups of a vector type's lanes."""

    def __init__(self, builder, base, n, vty):
        """The n elements at the element pointer base, in groups of vty."""
        self.builder, self.vty, self.base, self.n = builder, vty, base, n
        self.width = ir.Constant(n.type, vty.count)
        self.align = 4 if vty.element == ir.FloatType() else 8
        self.count = builder.sdiv(n, self.width)  # whole groups

    @classmethod
    def of_row(cls, context, builder, sig, args):
        """The row a[lo : lo + n] of an intrinsic's first three arguments
        (a, lo, n), in groups of LANES."""
        aryty = sig.args[0]
        arr = context.make_array(aryty)(context, builder, args[0])
        vty = ir.VectorType(context.get_data_type(aryty.dtype), LANES)
        return cls(builder, builder.gep(arr.data, [args[1]]), args[2], vty)

    def load(self, index):
        """Whole group ``index``."""
        b = self.builder
        ptr = b.gep(self.base, [b.mul(index, self.width)])
        return b.load(b.bitcast(ptr, self.vty.as_pointer()), align=self.align)

    def last(self, fill, take):
        """``take(v)`` of the partial last group, if any: its elements, with
        ``fill`` in the other lanes (``_masked_load``)."""
        _last_groups([self], fill, lambda r, v: take(v))


def _last_groups(gs, fill, take):
    """``take(r, v)`` of the partial last group of each row gs[r] (rows of
    one length), if any, under one branch: its elements, with ``fill`` in
    the other lanes (``_masked_load``)."""
    g = gs[0]
    b = g.builder
    filled = b.mul(g.count, g.width)
    rest = b.sub(g.n, filled)
    with b.if_then(b.icmp_signed(">", rest, ir.Constant(g.n.type, 0))):
        for r, grp in enumerate(gs):
            ptr = b.bitcast(b.gep(grp.base, [filled]), g.vty.as_pointer())
            take(r, _masked_load(b, ptr, g.vty, g.align, rest, fill))


def _reduction(op, identity, acc_dtype, chains=1):
    """The codegen of ``op`` over a[lo : lo + n] in LANES lanes of acc_dtype
    (None: a's dtype), starting from ``identity`` in every lane.  With
    ``chains`` accumulators, whole runs of ``chains`` groups go one group
    to each (independent chains: a long sum is not bound by the latency of
    one add); the groups left over and the masked last one go to the first;
    the accumulators are combined pairwise in a fixed tree, then the lanes.
    The order depends on n only."""

    def codegen(context, builder, sig, args):
        fm = context.fastmath
        if op is _add and fm and "reassoc" in fm.flags:
            raise TypeError("fastlse: a lanes reduction in reassoc code loses its order")
        g = _Groups.of_row(context, builder, sig, args)
        ety = g.vty.element
        aty = context.get_data_type(acc_dtype or sig.args[0].dtype)
        avty = ir.VectorType(aty, LANES)

        def widen(v):
            return builder.fpext(v, avty) if aty != ety else v

        ident = ir.Constant(avty, [identity] * LANES)
        accs = [cgutils.alloca_once_value(builder, ident) for _ in range(chains)]

        def take(acc, v):
            builder.store(op(builder, builder.load(acc), widen(v)), acc)

        itype = g.n.type
        done = ir.Constant(itype, 0)
        if chains > 1:
            k = ir.Constant(itype, chains)
            runs = builder.sdiv(g.count, k)
            with cgutils.for_range(builder, runs) as loop:
                first = builder.mul(loop.index, k)
                for c, acc in enumerate(accs):
                    take(acc, g.load(builder.add(first, ir.Constant(itype, c))))
            done = builder.mul(runs, k)
        with cgutils.for_range(builder, builder.sub(g.count, done)) as loop:
            take(accs[0], g.load(builder.add(done, loop.index)))
        g.last(ir.Constant(g.vty, [identity] * LANES), lambda v: take(accs[0], v))
        vals = [builder.load(acc) for acc in accs]
        while len(vals) > 1:
            vals = [op(builder, vals[i], vals[i + 1]) for i in range(0, len(vals), 2)]
        return _tree(builder, vals[0], op)

    return codegen


def contiguous_row(a):
    """Whether the numba type a is a 1-d C-contiguous array: a row the lanes
    intrinsics take."""
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"


def _row_args(a, lo, n):
    """Whether (a, lo, n) is a 1-d C-contiguous float array and two ints."""
    return (
        contiguous_row(a)
        and isinstance(a.dtype, types.Float)
        and isinstance(lo, types.Integer)
        and isinstance(n, types.Integer)
    )


@intrinsic
def lanes_max(typingctx, a, lo, n):
    """max of a[lo : lo + n] ignoring nan (-inf if none), in a's dtype."""
    if not _row_args(a, lo, n):
        return None
    return a.dtype(a, types.intp, types.intp), _reduction(_max, float("-inf"), None)


def _max_min_codegen(context, builder, sig, args):
    """``lanes_max_min``: one sweep, two accumulators, each in the lanes and
    tree of a one-chain ``_reduction`` (so the max is ``lanes_max``'s); the
    masked last group fills its empty lanes with nan, which neither takes."""
    g = _Groups.of_row(context, builder, sig, args)
    mx = cgutils.alloca_once_value(builder, ir.Constant(g.vty, [float("-inf")] * LANES))
    mn = cgutils.alloca_once_value(builder, ir.Constant(g.vty, [float("inf")] * LANES))

    def take(v):
        builder.store(_max(builder, builder.load(mx), v), mx)
        builder.store(_min_finite(builder, builder.load(mn), v), mn)

    with cgutils.for_range(builder, g.count) as loop:
        take(g.load(loop.index))
    g.last(ir.Constant(g.vty, [float("nan")] * LANES), take)
    pair = (_tree(builder, builder.load(mx), _max), _tree(builder, builder.load(mn), _min_finite))
    return context.make_tuple(builder, sig.return_type, pair)


@intrinsic
def lanes_max_min(typingctx, a, lo, n):
    """(max, min above -inf) of a[lo : lo + n] ignoring nan (-inf, inf if
    none), in a's dtype, in one sweep; the max is ``lanes_max``'s, bit for
    bit."""
    if not _row_args(a, lo, n):
        return None
    return types.UniTuple(a.dtype, 2)(a, types.intp, types.intp), _max_min_codegen


@intrinsic
def lanes_min_pos(typingctx, a, lo, n):
    """min of the positive a[lo : lo + n] (inf if none; nan ignored), in a's
    dtype."""
    if not _row_args(a, lo, n):
        return None
    return a.dtype(a, types.intp, types.intp), _reduction(_min_pos, float("inf"), None)


@intrinsic
def lanes_sum(typingctx, a, lo, n):
    """sum of a[lo : lo + n] in a's dtype."""
    if not _row_args(a, lo, n):
        return None
    return a.dtype(a, types.intp, types.intp), _reduction(_add, 0.0, None)


@intrinsic
def lanes_sum64(typingctx, a, lo, n):
    """sum of a[lo : lo + n] in float64."""
    if not _row_args(a, lo, n):
        return None
    return types.float64(a, types.intp, types.intp), _reduction(_add, 0.0, types.float64)


#: chains of ``lanes_sum64_chains``
SUM_CHAINS = 4


@intrinsic
def lanes_sum64_chains(typingctx, a, lo, n):
    """sum of a[lo : lo + n] in float64, in ``SUM_CHAINS`` chains of LANES
    lanes: for long sums, whose one chain waits on each add in turn.  Under
    ``SUM_CHAINS * LANES`` elements, ``lanes_sum64``'s sum exactly (the other
    chains add zeros)."""
    if not _row_args(a, lo, n):
        return None
    sig = types.float64(a, types.intp, types.intp)
    return sig, _reduction(_add, 0.0, types.float64, SUM_CHAINS)


@intrinsic
def lanes_sum_chains(typingctx, a, lo, n):
    """sum of a[lo : lo + n] in a's dtype, in ``SUM_CHAINS`` chains of LANES
    lanes (``lanes_sum64_chains`` without the widening)."""
    if not _row_args(a, lo, n):
        return None
    return a.dtype(a, types.intp, types.intp), _reduction(_add, 0.0, None, SUM_CHAINS)


# ----------------------------------------------------------------------------
# the exp-sum sweep of a row: sum of exp(x - m) over x < m, in sixteen lanes
# ----------------------------------------------------------------------------
def _refuse_reassoc(context, what):
    """A lanes sum compiled with ``reassoc`` would lose its order: refused."""
    fm = context.fastmath
    if fm and "reassoc" in fm.flags:
        raise TypeError(f"fastlse: a lanes {what} in reassoc code loses its order")


def _exp_sum_step(builder, v, mv, acc, cnt):
    """One group v of an exp-sum sweep with max mv: acc += the terms
    ``expterm_vector(v - mv)`` below the max, cnt += 1 for the others.
    Returns (v - mv, the terms)."""
    zero = ir.Constant(v.type, [0.0] * LANES)
    one = ir.Constant(v.type, [1.0] * LANES)
    d = builder.fsub(v, mv)
    e = expterm_vector(builder, d)
    top = builder.fcmp_ordered(">=", d, zero)
    builder.store(builder.fadd(builder.load(acc), builder.select(top, zero, e)), acc)
    builder.store(builder.fadd(builder.load(cnt), builder.select(top, one, zero)), cnt)
    return d, e


def _store_group(builder, value, ptr, align, count=None):
    """Store a group at the element pointer ptr: whole, or its first count
    lanes (``_masked_store``)."""
    ptr = builder.bitcast(ptr, value.type.as_pointer())
    if count is None:
        builder.store(value, ptr, align=align)
    else:
        _masked_store(builder, value, ptr, align, count)


def _exp_sum_codegen(store):
    """The codegen of ``lanes_exp_sum`` (store None) and its storing twins
    (``"shift"``: out = x - m; ``"exp"``: out = exp(x - m)).  Each group's
    terms come from ``expterm_vector``; lane k adds the terms of elements k,
    k + 16, ... that are below m, and counts the others; the lanes are then
    combined in ``_tree``'s order.  The last, partial group is a masked load
    whose empty lanes hold -inf (a zero term, not counted) and a masked
    store: nothing past the range is read or written, so out may be x."""

    def codegen(context, builder, sig, args):
        _refuse_reassoc(context, "exp-sum")
        x, out, lo, n, m = args
        g = _Groups.of_row(context, builder, sig, [x, lo, n])
        vty = g.vty
        obase = builder.gep(context.make_array(sig.args[1])(context, builder, out).data, [lo])
        zero = ir.Constant(vty, [0.0] * LANES)
        scale = ir.Constant(vty, [float(_SUMSCALE[vty.element])] * LANES)
        mv = _splat(builder, m, vty)
        acc = cgutils.alloca_once_value(builder, zero)
        cnt = cgutils.alloca_once_value(builder, zero)

        def take(v, first, count=None):
            d, e = _exp_sum_step(builder, v, mv, acc, cnt)
            if store is not None:
                value = d if store == "shift" else builder.fmul(e, scale)
                _store_group(builder, value, builder.gep(obase, [first]), g.align, count)

        with cgutils.for_range(builder, g.count) as loop:
            take(g.load(loop.index), builder.mul(loop.index, g.width))
        filled = builder.mul(g.count, g.width)
        rest = builder.sub(g.n, filled)
        ninf = ir.Constant(vty, [float("-inf")] * LANES)
        g.last(ninf, lambda v: take(v, filled, rest))
        pair = (_tree(builder, builder.load(acc), _add), _tree(builder, builder.load(cnt), _add))
        return context.make_tuple(builder, sig.return_type, pair)

    return codegen


#: 2**-K of expterm32 / expterm64: a stored numerator is its term times this
_SUMSCALE = {ir.FloatType(): SUMSCALE32, ir.DoubleType(): SUMSCALE64}


def _exp_sum_intrinsic(store, doc):
    def typer(typingctx, x, out, lo, n, m):
        if not (_row_args(x, lo, n) and isinstance(m, types.Float)):
            return None
        if not contiguous_row(out):
            return None
        if out.dtype != x.dtype or (store is not None and not out.mutable):
            return None
        sig = types.UniTuple(x.dtype, 2)(x, out, types.intp, types.intp, x.dtype)
        return sig, _exp_sum_codegen(store)

    typer.__doc__ = doc
    return intrinsic(typer)


lanes_exp_sum = _exp_sum_intrinsic(
    None,
    """(sum of ``expterm(x - m)`` over x < m, count of x >= m) over
    x[lo : lo + n], both in x's dtype (m is cast to it); out is not touched.
    A nan element makes the sum nan.""",
)
lanes_exp_sum_shift = _exp_sum_intrinsic(
    "shift", "``lanes_exp_sum`` that also stores x - m into out[lo : lo + n]."
)
lanes_exp_sum_exp = _exp_sum_intrinsic(
    "exp", "``lanes_exp_sum`` that also stores exp(x - m) into out[lo : lo + n] (out may be x)."
)


# ----------------------------------------------------------------------------
# softmax of a short float32 row: numerators held on the stack, then divided
# ----------------------------------------------------------------------------
#: groups of LANES of the longest row ``lanes_softmax_short`` takes
SHORT_GROUPS = 8
#: float32 quotients below this (float64) are not normal (``rows._wide_below``)
_NORMAL32 = 2.0**-126


def _softmax_short_codegen(context, builder, sig, args):
    """``lanes_softmax_short``: the numerators into stack slots
    (``_numerators_to_slots``), then divided into out (``_divide_slots``).
    A slot is loaded as it was stored, a whole vector: the load takes the
    store's value from the store buffer, which a masked store to out
    followed by loads of other widths (LLVM's division loop) cannot."""
    _refuse_reassoc(context, "softmax")
    x, out, lo, n, m = args
    g = _Groups.of_row(context, builder, sig, [x, lo, n])
    obase = builder.gep(context.make_array(sig.args[1])(context, builder, out).data, [lo])
    ((s, normal),) = _softmax_in_slots(builder, [g], [m], [obase])
    return context.make_tuple(builder, sig.return_type, (s, normal))


def _softmax_in_slots(builder, gs, ms, obases):
    """softmax's numerators, sums and quotients of the rows gs (groups of one
    length) with maxima ms into the rows at obases, the rows' operations
    interleaved: [(sum, normal)] a row, normal where every quotient is
    normal: smallest >= sum * 2**-126 in float64 (``rows._quotients_normal``;
    False for a nan sum; a zero numerator's quotient is exact)."""
    slots = [cgutils.alloca_once(builder, ir.ArrayType(gs[0].vty, SHORT_GROUPS)) for _ in gs]
    mvs = [_splat(builder, m, gs[0].vty) for m in ms]
    sums = _numerators_to_slots(builder, gs, mvs, slots)
    f64 = ir.DoubleType()
    res = []
    for s, smallest in sums:
        floor = builder.fmul(builder.fpext(s, f64), ir.Constant(f64, _NORMAL32))
        res.append((s, builder.fcmp_ordered(">=", builder.fpext(smallest, f64), floor)))
    _divide_slots(builder, gs, slots, obases, res)
    return res


def _slot(builder, slots, index):
    return builder.gep(slots, [ir.Constant(index.type, 0), index])


def _numerators_to_slots(builder, gs, mvs, slots):
    """Each row's groups' numerators ``expterm_vector(x - m)`` (the masked
    last group's empty lanes 0) into its slots, their sum in
    ``lanes_sum_chains``' order (four chains; the groups left over and the
    last one to the first) and their smallest positive one (``lanes_min_pos``'
    op), the rows interleaved group by group: [(sum, smallest)] a row."""
    g = gs[0]
    itype = g.n.type
    zero = ir.Constant(g.vty, [0.0] * LANES)
    accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(SUM_CHAINS)] for _ in gs]
    inf = ir.Constant(g.vty, [float("inf")] * LANES)
    lows = [cgutils.alloca_once_value(builder, inf) for _ in gs]

    def take(r, c, v, index, mask=None):
        e = expterm_vector(builder, builder.fsub(v, mvs[r]))
        if mask is not None:
            e = builder.select(mask, e, zero)
        builder.store(e, _slot(builder, slots[r], index))
        builder.store(builder.fadd(builder.load(accs[r][c]), e), accs[r][c])
        builder.store(_min_pos(builder, builder.load(lows[r]), e), lows[r])

    k = ir.Constant(itype, SUM_CHAINS)
    runs = builder.sdiv(g.count, k)
    with cgutils.for_range(builder, runs) as loop:
        first = builder.mul(loop.index, k)
        for c in range(SUM_CHAINS):
            index = builder.add(first, ir.Constant(itype, c))
            for r, grp in enumerate(gs):
                take(r, c, grp.load(index), index)
    done = builder.mul(runs, k)
    with cgutils.for_range(builder, builder.sub(g.count, done)) as loop:
        index = builder.add(done, loop.index)
        for r, grp in enumerate(gs):
            take(r, 0, grp.load(index), index)
    mask = _lane_mask(builder, builder.sub(g.n, builder.mul(g.count, g.width)))
    _last_groups(gs, zero, lambda r, v: take(r, 0, v, g.count, mask))
    res = []
    for r in range(len(gs)):
        vals = [builder.load(acc) for acc in accs[r]]
        while len(vals) > 1:
            vals = [builder.fadd(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)]
        res.append((_tree(builder, vals[0], _add), _tree(builder, builder.load(lows[r]), _min_pos)))
    return res


def _divide_slots(builder, gs, slots, obases, sums):
    """Each row's out (the element pointer obases[r]) = its slots divided by
    its sum s (``div_by``: ``rs = 1 / s``, ``q = e * rs``, ``q + fma(-q, s,
    e) * rs``) where normal, else the slots themselves ((s, normal) in
    sums); the last group by a masked store; the rows interleaved."""
    g = gs[0]
    vty = g.vty
    fma = _vector_intrinsic(builder, "llvm.fma", vty, ir.FunctionType(vty, [vty] * 3), False)
    one = ir.Constant(sums[0][0].type, 1.0)
    svs = [
        (_splat(builder, s, vty), _splat(builder, builder.fdiv(one, s), vty), normal)
        for s, normal in sums
    ]

    def put(r, index, count=None):
        sv, rsv, normal = svs[r]
        e = builder.load(_slot(builder, slots[r], index))
        q = builder.fmul(e, rsv)
        res = builder.call(fma, [builder.fneg(q), sv, e])
        value = builder.select(normal, builder.call(fma, [res, rsv, q]), e)
        ptr = builder.gep(obases[r], [builder.mul(index, g.width)])
        _store_group(builder, value, ptr, g.align, count)

    with cgutils.for_range(builder, g.count) as loop:
        for r in range(len(gs)):
            put(r, loop.index)
    rest = builder.sub(g.n, builder.mul(g.count, g.width))
    with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(rest.type, 0))):
        for r in range(len(gs)):
            put(r, g.count, rest)


@intrinsic
def lanes_softmax_short(typingctx, x, out, lo, n, m):
    """softmax's numerators of the float32 row x[lo : lo + n] (n at most
    ``SHORT_GROUPS * LANES``; m its max), ``expterm(x - m)``, and their sum
    s, in ``lanes_sum_chains``' order; out[lo : lo + n] = the numerators
    divided by s (``div_by``) when every quotient is normal (the smallest
    positive numerator >= s * 2**-126), else the numerators themselves.
    Returns (s, normal).  out may be x."""
    if not (_row_args(x, lo, n) and contiguous_row(out) and x.dtype == types.float32):
        return None
    if out.dtype != x.dtype or not out.mutable:
        return None
    sig = types.Tuple((x.dtype, types.boolean))(x, out, types.intp, types.intp, x.dtype)
    return sig, _softmax_short_codegen


# ----------------------------------------------------------------------------
# the max and exp-sum sweeps of PAIR_ROWS short rows, interleaved
# ----------------------------------------------------------------------------
#: rows of one ``lanes_pairs``: each row's waits (the tree of its max before
#: its exps, the trees of its sums) overlap the other rows' work
PAIR_ROWS = 4


def c_matrices(*arrays):
    """Whether every numba type is a 2-d C-contiguous array: blocks of rows
    the interleaved intrinsics (``lanes_pairs``, ``lanes_softmax_rows``)
    take."""
    return all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" for a in arrays)


def _block_groups(context, builder, sig, args):
    """The rows i .. i + PAIR_ROWS - 1 of an interleaved intrinsic's (x, out,
    i): x's as ``_Groups``, out's as element pointers to their starts."""
    x, out, i = args
    zero = ir.Constant(i.type, 0)
    rows = [builder.add(i, ir.Constant(i.type, r)) for r in range(PAIR_ROWS)]

    def starts(aryty, ary):
        arr = context.make_array(aryty)(context, builder, ary)
        ptrs = [cgutils.get_item_pointer(context, builder, aryty, arr, [r, zero]) for r in rows]
        return ptrs, arr

    xs, xa = starts(sig.args[0], x)
    n = cgutils.unpack_tuple(builder, xa.shape, 2)[1]
    vty = ir.VectorType(context.get_data_type(sig.args[0].dtype), LANES)
    return [_Groups(builder, base, n, vty) for base in xs], starts(sig.args[1], out)[0]


def _interleaved_maxima(builder, gs):
    """The maxima of the rows gs (groups of one length), each by
    ``lanes_max``'s operations in their order, the rows interleaved."""
    g = gs[0]
    ninf = ir.Constant(g.vty, [float("-inf")] * LANES)
    mx = [cgutils.alloca_once_value(builder, ninf) for _ in gs]
    with cgutils.for_range(builder, g.count) as loop:
        for r, acc in enumerate(mx):
            builder.store(_max(builder, builder.load(acc), gs[r].load(loop.index)), acc)
    _last_groups(gs, ninf, lambda r, v: builder.store(_max(builder, builder.load(mx[r]), v), mx[r]))
    return [_tree(builder, builder.load(acc), _max) for acc in mx]


def _softmax_rows_codegen(context, builder, sig, args):
    """``lanes_softmax_rows``: the rows' maxima (``_interleaved_maxima``),
    then ``_softmax_in_slots``, the rows interleaved."""
    _refuse_reassoc(context, "softmax")
    gs, obases = _block_groups(context, builder, sig, args)
    ms = _interleaved_maxima(builder, gs)
    res = _softmax_in_slots(builder, gs, ms, obases)
    flags = [builder.uitofp(ok, gs[0].vty.element) for _, ok in res]
    return context.make_tuple(builder, sig.return_type, ms + [s for s, _ in res] + flags)


@intrinsic
def lanes_softmax_rows(typingctx, x, out, i):
    """softmax of rows i .. i + PAIR_ROWS - 1 of the C-contiguous float32 x
    (rows of at most ``SHORT_GROUPS * LANES``) into out's rows: each row by
    ``lanes_max`` and ``lanes_softmax_short``'s operations, the rows
    interleaved.  Returns (maxima, sums, normal as 1.0 / 0.0), a row each;
    a row whose max is infinite gets out of no meaning; a row not normal
    gets its numerators."""
    if not c_matrices(x, out):
        return None
    if not (x.dtype == out.dtype == types.float32 and out.mutable and isinstance(i, types.Integer)):
        return None
    sig = types.UniTuple(x.dtype, 3 * PAIR_ROWS)(x, out, types.intp)
    return sig, _softmax_rows_codegen


def _pairs_codegen(store):
    """``lanes_pairs`` (store None) and ``lanes_pairs_shift`` (out = x - m):
    rows i .. i + PAIR_ROWS - 1 of x, each by ``lanes_max``'s and
    ``lanes_exp_sum``'s operations in their order (one chain; the masked
    last group), the rows' operations interleaved group by group."""

    def codegen(context, builder, sig, args):
        _refuse_reassoc(context, "exp-sum")
        gs, obases = _block_groups(context, builder, sig, args)
        g = gs[0]
        filled = builder.mul(g.count, g.width)
        rest = builder.sub(g.n, filled)
        ninf = ir.Constant(g.vty, [float("-inf")] * LANES)
        zero = ir.Constant(g.vty, [0.0] * LANES)
        ms = _interleaved_maxima(builder, gs)
        mvs = [_splat(builder, m, g.vty) for m in ms]
        sums = [cgutils.alloca_once_value(builder, zero) for _ in gs]
        cnts = [cgutils.alloca_once_value(builder, zero) for _ in gs]

        def take(r, v, first, count=None):
            d = _exp_sum_step(builder, v, mvs[r], sums[r], cnts[r])[0]
            if store is not None:
                _store_group(builder, d, builder.gep(obases[r], [first]), g.align, count)

        with cgutils.for_range(builder, g.count) as loop:
            for r, grp in enumerate(gs):
                take(r, grp.load(loop.index), builder.mul(loop.index, g.width))
        _last_groups(gs, ninf, lambda r, v: take(r, v, filled, rest))
        values = ms + [_tree(builder, builder.load(a), _add) for a in sums + cnts]
        return context.make_tuple(builder, sig.return_type, values)

    return codegen


def _pairs_intrinsic(store, doc):
    def typer(typingctx, x, out, i):
        if not c_matrices(x, out):
            return None
        if not (x.dtype == out.dtype and isinstance(x.dtype, types.Float)):
            return None
        if not isinstance(i, types.Integer) or (store is not None and not out.mutable):
            return None
        sig = types.UniTuple(x.dtype, 3 * PAIR_ROWS)(x, out, types.intp)
        return sig, _pairs_codegen(store)

    typer.__doc__ = doc
    return intrinsic(typer)


lanes_pairs = _pairs_intrinsic(
    None,
    """For rows i .. i + PAIR_ROWS - 1 of the C-contiguous x (a row each): the
    maxima (``lanes_max``), then ``lanes_exp_sum``'s sums and counts given
    those maxima, as one tuple (maxima, sums, counts), in x's dtype; out is
    not touched.  A row whose max is infinite gets a sum of no meaning.""",
)
lanes_pairs_shift = _pairs_intrinsic(
    "shift", "``lanes_pairs`` that also stores x - m into out's rows i .. i + PAIR_ROWS - 1."
)
