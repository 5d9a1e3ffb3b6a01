"""Route equivalence: the same values through every dispatch route agree.

fastlse runs each call through one of many internal routes, chosen from the
shape, memory layout, dtype and thread count of the input.  This file pushes
the same values through each route and checks that

* every route agrees with a reference computed here (``scipy.special`` in
  extended precision for logsumexp / softmax / log_softmax, torch's float64
  autograd for cross_entropy), and
* all routes of the same data agree with each other,

to a few eps of the result dtype, scaled by the conditioning (``bounds``,
``xent_bounds``); nan / inf patterns, signs, dtypes and shapes exactly.

Each case runs one route (its id names the route, e.g.
``long-float64-rows[pieces]-2thread``) against the reference and against the
routes of the same values run before it (``Spread``: the elementwise min and
max so far); the case ``<family>-<dtype>-all-routes-agree`` that follows a
family's routes completes the comparison of every pair (it reruns the routes
that ran elsewhere, e.g. in another xdist worker).

Only the public API is used: each route is forced by the shape, layout,
dtype, keywords and ``fastlse.num_threads`` of a call, so this file stays valid
when the dispatcher is rewritten.  The thresholds and the shapes that cross
them are in the tables ``FAMILIES`` / ``LAYOUTS`` and ``XENT_FAMILIES`` /
``XENT_LAYOUTS``; ``route_label`` names the route each case forces (the test
ids), from the thresholds in ``THRESHOLDS``.  Keep them honest when the
dispatcher changes.

Routes covered
--------------
logsumexp, softmax, log_softmax (data: ``(M, N)`` rows reduced along the last axis)

* whole rows (float32 N >= 64, float64 N >= 32); narrow rows (float64
  13 <= N < 32); transposed narrow rows (float32 N < 64, float64 N <= 12;
  logsumexp: softmax and log_softmax have one narrow kernel); serial (less work than 16384
  elements, a row counting 32 more);
* the small-vector path (1-D, up to 4096 elements);
* pieces of few long rows (N >= 65536, fewer rows than twice numba's threads),
  against the same rows stacked to enough rows for whole rows;
* columns: axis 0 of the C-contiguous transpose, a middle axis ``(P, N, Q)``
  with ``Q * itemsize >= 128`` bytes; folded columns (``Q * itemsize < 128``
  and N at least the fold's rows), folded columns in pieces (few long columns);
* F-contiguous input (the columns of its transpose), the F-contiguous transpose
  of C data (rows, no copy);
* strided views copied whole (up to 8 MiB) or block by block through a 4 MiB
  buffer (deferred copies, over 8 MiB), also with a conversion (float16 ->
  float32, int32 -> float64);
* ``where=`` (all True, and masking elements, against the data without them),
  ``b=`` (ones, and zeros against the data without those elements),
  ``keepdims``, ``return_sign``, ``out=`` (softmax / log_softmax);
* dask arrays, the reduced axis split across chunks and in one chunk;
* ``OnlineLogSumExp`` (update, merge, result) along rows and along columns.

cross_entropy (data: ``(M, C)`` logits, int64 class indices or probabilities)

* rows: the unplanned call (no options) and the general row kernels; small C
  (C <= 32, blocks of rows transposed) and wide rows; one sample (1-D);
* pieces of few long rows, against the same rows stacked (whole rows);
* columns ``(P, C, d)`` along axis 1 with many positions d: ``cols``,
  ``cols_lm`` (z-loss / softcap) and ``cols_index_loss`` (forward only, C >= 64,
  enough slabs); classes moved last (``d * itemsize <= 32`` bytes);
* F-contiguous (columns of the transpose), strided (copied), float16 (copied
  to float32), dask (row chunks, and a class axis split across chunks);

each with reductions none / sum / mean, with and without the gradient, with
class weights, ignore_index, label smoothing, z-loss and softcap.

Threads: every route runs on 1 and 2 threads (dask: ``threads-per-task``),
but on 1 alone where each kernel call has less work than threads need (a
vector, a dask block or an online chunk under 16384 elements: ``threads_of``).

Inputs: writeable arrays, checked unchanged after each route
(``assert_unchanged``); read-only inputs compile kernels of their own, run
by ``test_read_only_inputs`` on a few routes and by each function's file.
"""

import functools
import itertools
import math
import weakref
from dataclasses import dataclass

import numba
import numpy as np
import pytest

import fastlse

sp = pytest.importorskip("scipy.special")

try:
    import dask
    import dask.array as da
except ImportError:  # pragma: no cover - dask is a test dependency
    dask = da = None  # (the dask layouts are left out)

# ----------------------------------------------------------------------------
# the dispatcher's thresholds (as documented; only used to name and shape cases)
# ----------------------------------------------------------------------------
THRESHOLDS = dict(
    NARROW_BYTES=256,  # rows of fewer bytes take the block ("narrow") kernels
    ROWS_MIN=32,  # logsumexp, log_softmax: rows of this many elements take whole rows
    T64_MAX=12,  # float64 narrow rows up to this take the transposed kernels
    SMALL=4096,  # 1-D float32 / float64 vectors up to this: the small-vector path
    PIECE=1 << 15,  # rows of >= 2 * PIECE in fewer rows than 2 * threads: pieces
    PARALLEL_MIN_WORK=16384,  # less work: serial kernels (elements; rows: see _work)
    ROW_COST=32,  # a whole row's work beyond its elements (rows of a narrow block: 8)
    FOLD_BYTES=128,  # a middle axis with Q * itemsize below this is read folded
    FOLD_PIECE_BYTES=1 << 18,  # folded slabs of more are cut in pieces (smaller on > 1 thread)
    COPY_BYTES=2 * (1 << 22),  # copies over this go block by block (deferred)
    SMALL_C=64,  # cross_entropy rows of fewer classes: small-C kernels
    MOVE_BYTES=32,  # cross_entropy: d * itemsize up to this behind the class axis: moved
    PAIRS_COLS_MIN_C=64,  # cross_entropy cols_index_loss from this many classes
)


def test_thresholds_are_the_packages():
    """The thresholds that name and shape the cases are the package's: a
    threshold moved without its cases would leave its boundary untested."""
    from fastlse import _layout, _routes
    from fastlse.kernels import columns, xent

    package = dict(
        NARROW_BYTES=_routes.NARROW_BYTES,
        ROWS_MIN=_routes.ROWS_MIN,
        T64_MAX=_routes.T64_MAX,
        SMALL=_routes.SMALL_VECTOR,
        PIECE=_routes.PIECE,
        PARALLEL_MIN_WORK=_routes.PARALLEL_MIN_WORK,
        ROW_COST=_routes.ROW_COST["rows"],
        FOLD_BYTES=columns.FOLD_BYTES,
        FOLD_PIECE_BYTES=columns.FOLD_PIECE_BYTES,
        COPY_BYTES=2 * _layout.COPY_BLOCK_BYTES,
        SMALL_C=xent.SMALL_C,
        MOVE_BYTES=_routes.MOVE_CLASSES_MAX_BYTES,
        PAIRS_COLS_MIN_C=_routes.PAIRS_COLS_MIN_C,
    )
    assert package == THRESHOLDS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_routes_at_their_boundaries(dtype):
    """Whole rows from ``ROWS_MIN`` elements for logsumexp and log_softmax,
    from ``NARROW_BYTES`` for softmax; cross-entropy's small-C kernels under
    ``SMALL_C`` classes, for both dtypes."""
    from fastlse import _ops, _routes

    dt = np.dtype(dtype)
    t = THRESHOLDS
    lse_min = min(t["ROWS_MIN"], t["NARROW_BYTES"] // dt.itemsize)
    sm_min = t["NARROW_BYTES"] // dt.itemsize
    for op in (_ops.LSE, _ops.LOG_SOFTMAX):
        assert _routes.choose(op, (4096, lse_min - 1), dt, writes=True).startswith("narrow")
        assert _routes.choose(op, (4096, lse_min), dt, writes=True) == "rows"
    assert _routes.choose(_ops.SOFTMAX, (4096, sm_min - 1), dt, writes=True).startswith("narrow")
    assert _routes.choose(_ops.SOFTMAX, (4096, sm_min), dt, writes=True) == "rows"
    assert _routes.index_rows_route(4096, t["SMALL_C"] - 1) == "index_small"
    assert _routes.index_rows_route(4096, t["SMALL_C"]) == "index_rows"
    # a float32 loss alone: whole rows from ROWS_MIN classes
    assert _routes.index_rows_route(4096, t["ROWS_MIN"] - 1, True) == "index_small"
    assert _routes.index_rows_route(4096, t["ROWS_MIN"], True) == "index_rows"


#: numba's thread count, which the dispatcher compares the rows with (few long
#: rows: fewer than twice this); ``fastlse.num_threads`` does not change it
NT = numba.config.NUMBA_NUM_THREADS
THREADS = [1, 2]
#: the bounds' multiple of eps (see ``bounds``)
K = 4
EXT = np.longdouble  # the references' precision (x86: 64-bit mantissa)


# ----------------------------------------------------------------------------
# logsumexp / softmax / log_softmax: the families of data and their layouts
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """Canonical data ``(M, N)`` reduced along its last axis: ``shape(dtype)``,
    the rows made special (all -inf, inf, nan, ...), the dtypes, the layouts."""

    shape: object  # (M, N) or a function of the compute itemsize
    special_rows: tuple
    dtypes: tuple
    layouts: tuple


#: every layout of small and medium data (``LAYOUTS``)
ALL = (
    "rows", "keepdims", "vector", "cols", "middle", "folded", "folded-q3", "F", "F-rows",
    "strided", "strided-T", "where", "weighted", "out", "out-F", "dask-split", "dask-one",
    "online", "online-T",
)  # fmt: skip
#: the families that move N across a threshold: the layouts whose kernels depend on N
ROWS_ALL = (
    "rows", "keepdims", "vector", "cols", "folded", "folded-q3", "F-rows", "strided", "out",
    "dask-one",
)  # fmt: skip
SERIAL = (
    "rows", "keepdims", "vector", "cols", "F", "strided", "where", "weighted", "out",
    "dask-split", "dask-one", "online",
)  # fmt: skip
LONG = (
    "rows", "stacked", "vector", "cols", "F", "F-rows", "strided", "where", "weighted",
    "dask-split", "dask-one", "online", "online-T",
)  # fmt: skip
#: rows at the edges of the kernels' blocks and tasks: row blocks of 64 (log1p
#: finish), transposed blocks of 256 rows (128 for float32 rows of 32-63),
#: narrow blocks of 512, column slabs of
#: 256 columns (the rows of the transposed layouts), deferred copy blocks of
#: 524 (float64, N = 1000) / 1048 (float32) rows, and first / last rows
EDGES = (0, 1, 63, 64, 127, 128, 255, 256, 511, 512, 523, 524, 1047, 1048, 2095, 2096)
F3 = ("float16", "float32", "float64")
F2 = ("float32", "float64")
#: float16 is computed in float32 after a copy to rows (whatever the layout):
#: a few layouts show that conversion on each route that has its own code
F16_LAYOUTS = (
    "rows", "vector", "cols", "strided", "where", "weighted", "out", "dask-split", "online",
)  # fmt: skip

FAMILIES = {
    # N = 100 >= NARROW: whole-row kernels; 38400 elements >= PARALLEL_MIN_WORK:
    # 2 threads run the parallel kernels; M = 384 = 12 * 32 = 48 * 8 = 128 * 3
    # columns: 2 column slabs of 256 in the transposed layout
    "n100": Family((384, 100), EDGES, F3, ALL),
    # N = 64: float32's shortest whole rows (65536 elements)
    "n64": Family((1024, 64), EDGES, ("float32",), ROWS_ALL),
    # N = 63: float32's longest narrow rows of softmax (in blocks of 128
    # rows); logsumexp's and log_softmax's are whole rows
    "n63": Family((1024, 63), EDGES, ("float32",), ROWS_ALL),
    # N = 32: the shortest whole rows of logsumexp and log_softmax (ROWS_MIN;
    # float16 computes in float32, so takes them too), float64's for every
    # op (40960 elements: parallel)
    "n32": Family((1280, 32), EDGES, F3, ROWS_ALL),
    # N = 31: the longest narrow rows of logsumexp and log_softmax, float64's
    # for every op; 39680 elements
    "n31": Family((1280, 31), EDGES, F2, ROWS_ALL),
    # N = 13: float64 narrow rows (its shortest), float32 transposed; 39936 elements
    "n13": Family((3072, 13), EDGES, F3, ROWS_ALL),
    # N = 12 = T64_MAX: transposed narrow rows for both dtypes (36864 elements)
    "n12": Family((3072, 12), EDGES, F2, ROWS_ALL),
    # N = 7: transposed narrow rows; folded-q3 is not folded (N < the fold's rows)
    "n7": Family((5120, 7), EDGES, F3, ALL),
    # 6 x 50 = 300 elements < PARALLEL_MIN_WORK: everything serial, whatever
    # the threads; 1-D rows of 50 take the small-vector path
    "serial": Family((6, 50), (1, 4), F3, SERIAL),
    # N = 70001 >= 2 * PIECE, M = 2 < 2 * threads: pieces (3 pieces of 23334);
    # "stacked" repeats the rows to 2 * NT rows or more: whole rows; the
    # transposed layouts are 2 columns: folded columns, in pieces (one slab)
    "long": Family((2, 70001), (), F3, LONG),
    # as "long", special values at the pieces' edges (see ``_long_special``)
    "long-special": Family((3, 70001), (), F3, LONG),
    "long-empty": Family((2, 70001), (), ("float32", "float64"), LONG),
    # over 8 MiB in the compute dtype (M * 1000 * itemsize = 9.6 MB): a strided
    # view or a conversion is copied block by block (deferred, 4 MiB blocks of
    # 524 float64 / 1048 float32 rows: special rows at their edges); the C
    # float32 / float64 data is the whole-rows anchor
    "deferred": Family(
        lambda itemsize: (9_600_000 // (1000 * itemsize), 1000),
        (0, 523, 524, 1047, 1048, 2095, 2096),
        ("float16", "float32", "float64", "int32"),
        ("rows", "strided", "strided-T"),
    ),  # (float16, int32: rows, converted block by block)
}

#: layouts: how the canonical (M, N) values are laid out for a call (all
#: reduce the same rows): ``LAYOUTS[name](op, R)`` -> (result laid out as R's
#: rows, the rows computed or None for all); see ``route_label`` for the
#: route each forces
OPS = ("logsumexp", "softmax", "log_softmax")
LSE_ONLY = ("keepdims", "weighted", "online", "online-T")
ELEM_ONLY = ("out", "out-F")


def _fn(op):
    return getattr(fastlse, op)


def _compute_dtype(dt):
    dt = np.dtype(dt)
    if dt == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64) if dt.kind in "iu" else dt


def _result_dtype(op, dt):
    """scipy's result dtype for input of dtype dt."""
    fn = sp.logsumexp if op == "logsumexp" else sp.softmax
    return fn(np.zeros(2, dtype=dt)).dtype


def _call(op, x, expect, back, **kw):
    """op(x, **kw): its shape checked against ``expect``, laid out as R's rows."""
    res = np.asarray(_fn(op)(x, **kw))
    assert res.shape == expect, (op, kw.get("axis"), res.shape, expect)
    return back(res)


def _ident(r):
    return r


def _T(r):
    return r.T


def _reduced(op, shape, axis):
    if op != "logsumexp":
        return shape
    return shape[:axis] + shape[axis + 1 :]


def lay_rows(op, R):
    return _call(op, R, _reduced(op, R.shape, 1), _ident, axis=-1), None


def lay_keepdims(op, R):
    back = functools.partial(np.reshape, shape=R.shape[:1])
    return _call(op, R, (R.shape[0], 1), back, axis=1, keepdims=True), None


def lay_stacked(op, R):
    """The rows repeated to at least 2 * NT rows: no longer "few" rows."""
    k = -(-2 * NT // R.shape[0])
    big = np.concatenate([R] * k)
    res = _call(op, big, _reduced(op, big.shape, 1), _ident, axis=1)
    return res[: R.shape[0]], None


def vector_rows(m):
    """The rows computed one by one as vectors: the special rows and a sample."""
    return np.unique(np.r_[[e for e in EDGES if e < m], np.arange(0, m, max(1, m // 24))])


def lay_vector(op, R):
    idx = vector_rows(R.shape[0])
    out = [_call(op, R[i], _reduced(op, R[i].shape, 0), _ident) for i in idx]
    return np.stack(out), idx


def lay_cols(op, R):
    """Axis 0 of the C-contiguous transpose: columns, Q = M."""
    xt = np.ascontiguousarray(R.T)
    return _call(op, xt, _reduced(op, xt.shape, 0), _ident if op == "logsumexp" else _T,
                 axis=0), None  # fmt: skip


def _lay_middle(op, R, q):
    """The middle axis of (M / q, N, q): columns of q."""
    m, n = R.shape
    x3 = np.ascontiguousarray(R.reshape(m // q, q, n).transpose(0, 2, 1))
    if op == "logsumexp":
        back = functools.partial(np.reshape, shape=(m,))
    else:

        def back(r):
            return r.transpose(0, 2, 1).reshape(m, n)

    return _call(op, x3, _reduced(op, x3.shape, 1), back, axis=1), None


def lay_F(op, R):
    """F-contiguous: the dispatcher sees the columns of its C transpose."""
    return _call(op, np.asfortranarray(R), _reduced(op, R.shape, 1), _ident, axis=1), None


def lay_F_rows(op, R):
    """R.T is F-contiguous: axis 0 of it is the rows of R, no copy."""
    return _call(op, R.T, _reduced(op, R.T.shape, 0), _ident if op == "logsumexp" else _T,
                 axis=0), None  # fmt: skip


def every_other_column(a):
    """A strided view of a's values: every other column of an array twice as wide."""
    big = np.zeros((a.shape[0], 2 * a.shape[1]), dtype=a.dtype)
    big[:, ::2] = a
    return big[:, ::2]


def lay_strided(op, R):
    x = every_other_column(R)
    return _call(op, x, _reduced(op, x.shape, 1), _ident, axis=1), None


def lay_strided_T(op, R):
    """A strided view of R.T, along axis 0: copied with its axes moved."""
    x = every_other_column(np.ascontiguousarray(R.T))
    return _call(op, x, _reduced(op, x.shape, 0), _ident if op == "logsumexp" else _T,
                 axis=0), None  # fmt: skip


def lay_where(op, R):
    w = np.ones(R.shape, dtype=bool)
    return _call(op, R, _reduced(op, R.shape, 1), _ident, axis=1, where=w), None


def lay_weighted(op, R):
    b = np.ones(R.shape, dtype=R.dtype)
    return _call(op, R, (R.shape[0],), _ident, axis=1, b=b), None


def lay_out(op, R, order="C"):
    out = np.empty(R.shape, dtype=_result_dtype(op, R.dtype), order=order)
    res = _call(op, R, R.shape, _ident, axis=1, out=out)
    assert res is out or np.shares_memory(res, out)
    return res, None


def _dask_threads(threads):
    return dask.config.set({"fastlse.threads-per-task": threads, "scheduler": "sync"})


def lay_dask(op, R, split):
    """The reduced axis in three chunks (split) or one, rows in three chunks."""
    m, n = R.shape
    chunks = (-(-m // 3), -(-n // 3) if split else n)
    lazy = _fn(op)(da.from_array(R, chunks=chunks), axis=1)
    assert isinstance(lazy, da.Array)
    res = np.asarray(lazy.compute())
    assert res.shape == _reduced(op, R.shape, 1)
    return res, None


def lay_online(op, R, transposed=False):
    """Column chunks of the rows into two accumulators, merged (transposed:
    the rows of R.T along axis 0, through the column kernels)."""
    n = R.shape[1]
    cuts = [0, n // 3, 2 * n // 3, n]
    acc, other = fastlse.OnlineLogSumExp(axis=0 if transposed else 1), None
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        chunk = np.ascontiguousarray(R[:, lo:hi].T) if transposed else R[:, lo:hi]
        if i == 2:
            other = fastlse.OnlineLogSumExp(axis=acc.axis).update(chunk)
        else:
            acc.update(chunk)
    res = np.asarray(acc.merge(other).result())
    assert res.shape == (R.shape[0],)
    return res, None


LAYOUTS = {
    # C-contiguous, last axis: the rows' kernel of the family
    "rows": lay_rows,
    # the same with keepdims=True (logsumexp)
    "keepdims": lay_keepdims,
    # few long rows repeated to >= 2 * NT rows: whole rows instead of pieces
    "stacked": lay_stacked,
    # 1-D rows one by one: the small-vector path for up to 4096
    "vector": lay_vector,
    # axis 0 of the C transpose (Q = M columns): columns; M * itemsize < 128
    # (the long families, M = 2 or 3): folded columns
    "cols": lay_cols,
    # middle axis of (M / 32, N, 32): Q * itemsize >= 128 bytes: columns
    "middle": functools.partial(_lay_middle, q=32),
    # middle axis of (M / 8, N, 8): 32 / 64 bytes < 128 and N >= the fold's
    # 4 (float32) / 2 (float64) rows: folded columns
    "folded": functools.partial(_lay_middle, q=8),
    # middle axis of (M / 3, N, 3): folded for N >= 32 (float32) / 16 (float64)
    # rows (a fold of 128 bytes), else the column sweeps of narrow slabs
    "folded-q3": functools.partial(_lay_middle, q=3),
    # F-contiguous (M, N) along axis 1: the columns of its C transpose
    "F": lay_F,
    # R.T (F-contiguous) along axis 0: the rows of R, no copy
    "F-rows": lay_F_rows,
    # every other column of a (M, 2N) array: copied whole (<= 8 MiB), else deferred
    "strided": lay_strided,
    # a strided view of R.T along axis 0: copied with its axes moved
    "strided-T": lay_strided_T,
    # where= all True: the masked kernels
    "where": lay_where,
    # b = ones: the weighted kernels (logsumexp)
    "weighted": lay_weighted,
    # out= C-contiguous: written by the kernels directly
    "out": lay_out,
    # out= F-contiguous: the general path, through a buffer
    "out-F": functools.partial(lay_out, order="F"),
    # dask: the reduced axis in 3 chunks: a pair reduction (and softmax from pairs)
    "dask-split": functools.partial(lay_dask, split=True),
    # dask: the reduced axis in one chunk: the NumPy kernels per block
    "dask-one": functools.partial(lay_dask, split=False),
    # OnlineLogSumExp(axis=1): pairs of row chunks, merged
    "online": lay_online,
    # OnlineLogSumExp(axis=0) over chunks of R.T: pairs of columns, merged
    "online-T": functools.partial(lay_online, transposed=True),
}


def _applies(layout, op, shape):
    m = shape[0]
    if (layout in LSE_ONLY and op != "logsumexp") or (layout in ELEM_ONLY and op == "logsumexp"):
        return False
    q = {"middle": 32, "folded": 8, "folded-q3": 3}.get(layout, 1)
    return m % q == 0


# ------------------------------------------------------------ route names --
def _fold_rows(q, itemsize):
    v = THRESHOLDS["FOLD_BYTES"] // itemsize
    return v // math.gcd(q, v)


def _rows_kernel(m, n, cdt, op="logsumexp"):
    t = THRESHOLDS
    if n >= 2 * t["PIECE"] and m < 2 * NT:
        return "pieces"
    if n >= _narrow(cdt):
        return "whole-rows"
    if op == "logsumexp" and (cdt == np.float32 or n <= t["T64_MAX"]):
        return "transposed-narrow"
    return "narrow"


def _cols_kernel(n, q, cdt):
    if q * cdt.itemsize < THRESHOLDS["FOLD_BYTES"] and n >= _fold_rows(q, cdt.itemsize):
        return "folded"
    return "columns"


def _narrow(cdt):
    """logsumexp's (and log_softmax's) rows shorter than this are narrow
    (block kernels)."""
    return min(THRESHOLDS["NARROW_BYTES"] // np.dtype(cdt).itemsize, THRESHOLDS["ROWS_MIN"])


def _work(m, n, cdt):
    """The work of m rows of n elements the row kernels compare with
    ``PARALLEL_MIN_WORK``: a row counts its elements and a row cost."""
    cost = THRESHOLDS["ROW_COST"] if n >= _narrow(cdt) else 8
    return m * (n + cost) if m > 1 else 0


def route_label(family, layout, dtype):
    """The route a case forces, from the thresholds (for logsumexp; softmax
    and log_softmax have one narrow kernel where logsumexp has two)."""
    dt = np.dtype(dtype)
    cdt = _compute_dtype(dt)
    shape = FAMILIES[family].shape
    m, n = shape(cdt.itemsize) if callable(shape) else shape
    serial = _work(m, n, cdt) < THRESHOLDS["PARALLEL_MIN_WORK"]
    big = m * n * cdt.itemsize > THRESHOLDS["COPY_BYTES"]
    rows = _rows_kernel(m, n, cdt)
    conv = "" if dt == cdt else f"{dt.name}->{cdt.name}-"
    copy = conv + ("deferred-copy+" if big else "copy+")
    if layout in ("rows", "keepdims"):
        label = (copy if conv else "") + rows
    elif layout == "stacked":
        label = (copy if conv else "") + _rows_kernel(max(m, 2 * NT), n, cdt)
    elif layout == "vector":
        small = n <= THRESHOLDS["SMALL"] and not conv
        label = "small-vector" if small else (copy if conv else "") + _rows_kernel(1, n, cdt)
    elif layout in ("cols", "F", "middle", "folded", "folded-q3"):
        q = {"middle": 32, "folded": 8, "folded-q3": 3}.get(layout, m)
        label = copy + rows if conv else _cols_kernel(n, q, cdt)
        if label == "folded" and n * q * cdt.itemsize > THRESHOLDS["FOLD_PIECE_BYTES"]:
            label = "folded-pieces"  # slabs of more than one piece
    elif layout == "F-rows":
        label = copy + rows if conv else rows
    elif layout in ("strided", "strided-T"):
        label = copy + rows
    elif layout in ("where", "weighted"):
        label = {"where": "masked", "weighted": "weighted"}[layout] + "-rows"
    elif layout in ("out", "out-F"):
        label = f"{layout}+" + rows
    elif layout.startswith("dask"):
        label = "dask-pairs" if layout == "dask-split" else "dask-blocks+" + rows
    else:
        label = "online-pairs-" + ("columns" if layout == "online-T" else "rows")
    return label + ("-serial" if serial else "")


# ------------------------------------------------------------------ data --
SPECIAL_KINDS = ("allneg", "inf", "nan", "one", "infnan", "inf-neginf", "neginf-far")


def _values(rng, shape):
    """Magnitudes up to ~1e3 around offsets of +-500 (exp over- / underflows
    without the max shift), a scale per row: from many terms that count to one
    that dominates; 1% -inf."""
    m = shape[0]
    scale = rng.choice([1.0, 10.0, 100.0, 1000.0], size=(m, 1))
    offset = rng.choice([-500.0, 0.0, 500.0], size=(m, 1))
    x = offset + scale * rng.uniform(-1.0, 1.0, shape)
    x[rng.random(shape) < 0.01] = -np.inf
    return x


def _make_special(row, kind, pos):
    n = row.size
    if kind == "allneg":
        row[:] = -np.inf
    elif kind == "inf":
        row[pos] = np.inf
    elif kind == "nan":
        row[pos] = np.nan
    elif kind == "one":  # all -inf but one: the result is that value
        v = row[pos] if np.isfinite(row[pos]) else 3.0
        row[:] = -np.inf
        row[pos] = v
    elif kind == "infnan":
        row[pos] = np.inf
        row[(pos + n // 2) % n] = np.nan
    elif kind == "inf-neginf":  # inf and a run of -inf
        row[: n // 2] = -np.inf
        row[pos] = np.inf
    else:  # -inf up to pos, then values whose exp underflows float32
        row[:pos] = -np.inf
        row[pos:] = -600.0 + 3.0 * (np.arange(n - pos) % 7)


def _long_special(x, name):
    """Special values at the pieces' edges (3 pieces of 23334 for 70001)."""
    piece = -(-x.shape[1] // -(-x.shape[1] // THRESHOLDS["PIECE"]))
    if name == "long-special":
        x[0, :piece] = -np.inf  # a whole piece of -inf; the max starts piece 2
        x[0, 2 * piece] = np.max(x[0]) + 5.0
        x[1, piece - 1] = np.inf  # inf at the end of piece 0
        x[2, 2 * piece - 1] = np.nan  # nan at the end of piece 1
    else:  # "long-empty": all -inf, and all -inf but one value at a piece's start
        x[0] = -np.inf
        v = x[1, piece]
        x[1] = -np.inf
        x[1, piece] = v if np.isfinite(v) else -7.5


#: a copy of each (C-contiguous) ``family_data`` / ``xent_data`` array as it
#: was made, by id; an entry goes with its array (so no id is reused)
_PRISTINE = {}


def _keep(*arrays):
    for a in arrays:
        _PRISTINE[id(a)] = a.copy()
        weakref.finalize(a, _PRISTINE.pop, id(a), None)


def assert_unchanged(*arrays):
    """The routes never write to their inputs: the arrays still hold (bit for
    bit) the values they were made with."""
    for a in arrays:
        orig = _PRISTINE[id(a)]
        assert np.array_equal(a.view(np.uint8), orig.view(np.uint8)), "a route wrote to its input"


@functools.lru_cache(maxsize=8)
def family_data(name, dtype):
    """The family's (M, N) values in dtype (seeded by the name).

    Writeable (``assert_unchanged`` checks them after each route): numba
    compiles every kernel apart for read-only inputs, which have tests of
    their own (``test_read_only_inputs``, and each function's file);
    writeable ones share the kernels of the other tests (CI's time: the
    read-only kernels were ~40 % of the suite's compiling)."""
    fam = FAMILIES[name]
    dt = np.dtype(dtype)
    shape = fam.shape(_compute_dtype(dt).itemsize) if callable(fam.shape) else fam.shape
    rng = np.random.default_rng([sum(map(ord, name)), dt.num])
    x = _values(rng, shape)
    if name.startswith("long-"):
        _long_special(x, name)
    m, n = shape
    specials = [r for r in fam.special_rows if r < m]
    for k, r in enumerate(specials):
        pos = [0, n - 1, n // 2, int(rng.integers(n))][k % 4]
        _make_special(x[r], SPECIAL_KINDS[k % len(SPECIAL_KINDS)], pos)
    if dt.kind == "i":
        x = np.rint(np.nan_to_num(x, nan=0.0, posinf=1500.0, neginf=-1500.0))
    x = x.astype(dt)
    _keep(x)
    return x


# ------------------------------------------------------------- references --
@functools.lru_cache(maxsize=4)
def reference(name, dtype):
    """scipy.special on the family's values in extended precision (rounded to
    float64) and the bounds' scales of each op (``bounds``)."""
    return _reference(family_data(name, dtype))


def _reference(R):
    x = R.astype(EXT)
    with np.errstate(all="ignore"):
        lse, sign = sp.logsumexp(x, axis=1, return_sign=True)
        sm = sp.softmax(x, axis=1)
        lsm = sp.log_softmax(x, axis=1)
        m = np.max(x, axis=1, keepdims=True)
        d = np.abs(x - m).astype(np.float64)
        absx = np.where(np.isfinite(x), np.abs(x), 0).astype(np.float64)
        ref = {
            "logsumexp": lse.astype(np.float64),
            "softmax": sm.astype(np.float64),
            "log_softmax": lsm.astype(np.float64),
        }
        scale = bounds(ref, d, absx)
    ref["sign"] = sign.astype(np.float64)
    return ref, scale


def bounds(ref, d, absx):
    """The scale of each element's bound ``K * eps * scale`` (+ K subnormals).

    * logsumexp: ``max(|lse|, max |x|)`` of the row (finite x).  The result
      ``m + log1p(t)`` errs by a few ulps of ``m`` and of ``log1p(t)``, which
      is a few ulps of the result unless they cancel (a result near 0, from
      ``m ~ -log1p(t)``); ``eps * max |x|`` is also what perturbing each x by
      a relative eps can move the result by (its conditioning).
    * softmax: ``p * (2 + |x - max|)``: p is ``exp(x - max) / (1 + t)``;
      ``x - max`` is rounded (a relative eps of it, a relative ``eps * |x - max|``
      of p), plus the exp's and the division's ulps: a few ulps of p, more for
      terms far below the max.  Subnormal p: K subnormals absolute.
    * log_softmax: ``|v| + |x - max| + 1``, v = ``(x - max) - log1p(t)``: the
      ulps of v and of ``x - max``, and an absolute eps from ``log1p(t)``
      (``t`` < n) -- a few ulps of v except near 0, where v ~ -t is tiny.

    Each also carries the rounding of ``t``, the sum of n exps, a relative
    ``sqrt(n) eps`` (the usual estimate for sequential sums; the bound adds
    ``sqrt(n) / K``): the accumulators run as many lanes as the target
    vectorizes with, two float64 lanes for baseline x86-64, where each
    accumulator sums hundreds of terms of a 1000-wide row and rows of tied
    values (integers) err ~12 eps in t.
    """
    n = d.shape[1] if d.ndim == 2 else 1
    ts = math.sqrt(n) / K
    with np.errstate(all="ignore"):
        sm = ref["softmax"]
        return {
            "logsumexp": np.maximum(np.abs(ref["logsumexp"]), absx.max(axis=1)) + ts,
            "softmax": np.where(sm > 0, sm * (2.0 + d + ts), 0.0),
            "log_softmax": np.abs(ref["log_softmax"]) + d + 1.0 + ts,
        }


def _where_bad(ok):
    bad = np.argwhere(~ok)
    return f"{len(bad)} elements, first at {tuple(bad[0])}" if len(bad) else ""


def assert_same_specials(res, ref, what):
    """The same nan positions, the same infinities (with their signs)."""
    res = np.asarray(res, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    nan_ok = np.isnan(res) == np.isnan(ref)
    assert nan_ok.all(), f"{what}: nan pattern differs at {_where_bad(nan_ok)}"
    inf_ok = (np.isinf(res) == np.isinf(ref)) & (~np.isinf(ref) | (res == ref))
    assert inf_ok.all(), f"{what}: inf pattern differs at {_where_bad(inf_ok)}"


def assert_close(res, ref, scale, dtype, what, k=K, atol=0.0):
    """res against ref: specials exactly, finite values within the bound
    ``k * eps * scale + k * smallest subnormal + atol`` of the result dtype
    (a reference beyond the dtype's range is the infinity it rounds to)."""
    dt = np.dtype(dtype)
    res = np.asarray(res)
    assert res.dtype == dt, f"{what}: dtype {res.dtype}, expected {dt}"
    assert res.shape == np.shape(ref), f"{what}: shape {res.shape} != {np.shape(ref)}"
    ref = np.asarray(ref, dtype=np.float64)
    finfo = np.finfo(dt)
    big = np.abs(ref) > float(finfo.max)
    if big.any():  # those that round to inf are inf
        with np.errstate(over="ignore"):
            rounded = ref.astype(dt).astype(np.float64)
        ref = np.where(np.isinf(rounded), rounded, ref)
    r64 = res.astype(np.float64)
    assert_same_specials(r64, ref, what)
    fin = np.isfinite(ref)
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf
        err = np.abs(r64 - ref)
    s = np.broadcast_to(scale, res.shape)
    assert not np.isnan(s[fin]).any(), f"{what}: nan in the bound (a test bug)"
    tol = k * float(finfo.eps) * s + (k * float(finfo.smallest_subnormal) + atol)
    ok = (err <= tol) | ~fin
    if not ok.all():
        with np.errstate(invalid="ignore"):
            worst = np.argmax(np.where(ok, 0.0, err / np.maximum(tol, 1e-300)))
        pos = np.unravel_index(worst, ok.shape)
        e, t = float(err[pos]), float(tol[pos])
        raise AssertionError(
            f"{what}: {np.count_nonzero(~ok)} of {ok.size} values off by more than "
            f"{k} eps * scale; worst at {tuple(int(j) for j in pos)}: {r64[pos]!r} vs "
            f"{ref[pos]!r} (error {e:.3g}, bound {t:.3g}, {e / t * k:.1f} eps * scale)"
        )


def run_route(family, dtype, layout, op, threads):
    """(result laid out as the family's rows, rows computed or None)."""
    R = family_data(family, dtype)
    with fastlse.num_threads(threads):
        if layout.startswith("dask"):
            with _dask_threads(threads):
                res, idx = LAYOUTS[layout](op, R)
        else:
            res, idx = LAYOUTS[layout](op, R)
    assert_unchanged(R)
    want = _result_dtype(op, np.dtype(dtype))
    assert res.dtype == want, f"{layout} {op}: dtype {res.dtype}, expected {want}"
    return res, idx


class Spread:
    """The results of the routes of one computation, folded in one at a time:
    the elementwise min and max so far (and the routes that gave them) and
    the specials.  A route is checked against all those before it: the same
    specials, and every finite element within ``K * eps * scale + K
    subnormals + atol`` of the min and the max so far (so of each of them);
    one that fails is not folded in (the routes after it are not blamed), nor
    is one added with ``fold=False`` (a route known to differ: see X_KNOWN)."""

    def __init__(self, shape, dtype, scale, atol=0.0):
        finfo = np.finfo(dtype)
        self.tol = K * float(finfo.eps) * scale + K * float(finfo.smallest_subnormal) + atol
        self.names = []
        self.kind = np.full(shape, -1, dtype=np.int8)  # unseen, finite, nan, +inf, -inf
        self.lo = np.full(shape, np.inf)
        self.hi = np.full(shape, -np.inf)
        self.ilo = np.zeros(shape, dtype=np.int16)
        self.ihi = np.zeros(shape, dtype=np.int16)

    def add(self, name, res, idx=None, fold=True):
        sel = Ellipsis if idx is None else idx
        res = np.asarray(res, dtype=np.float64)
        fin = np.isfinite(res)
        kind = np.zeros(res.shape, dtype=np.int8)
        if not fin.all():
            kind[np.isnan(res)] = 1
            kind[res == np.inf] = 2
            kind[res == -np.inf] = 3
        seen = self.kind[sel]
        bad = (seen >= 0) & (seen != kind)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(
                f"{name}: special values differ from the routes before it ({self.names}) at "
                f"{np.count_nonzero(bad)} elements, first at {pos}: {res[pos]!r}"
            )
        lo, hi, tol = self.lo[sel], self.hi[sel], self.tol[sel]
        with np.errstate(invalid="ignore"):
            dev = np.where(fin & (seen == 0), np.maximum(res - lo, hi - res), 0.0)
        bad = dev > tol
        if bad.any():
            pos = np.unravel_index(np.argmax(np.where(bad, dev / tol, 0)), bad.shape)
            if res[pos] - lo[pos] > hi[pos] - res[pos]:
                other, oval = self.names[self.ilo[sel][pos]], lo[pos]
            else:
                other, oval = self.names[self.ihi[sel][pos]], hi[pos]
            full = pos if idx is None else (int(idx[pos[0]]), *pos[1:])
            raise AssertionError(
                f"{name}: disagrees with the routes before it at {np.count_nonzero(bad)} "
                f"elements; worst at {tuple(int(j) for j in full)}: {res[pos]!r}, {other} gives "
                f"{oval!r} (bound {tol[pos]:.3g}, {dev[pos] / tol[pos] * K:.1f} eps * scale)"
            )
        if not fold:
            return
        i = len(self.names)
        self.names.append(name)
        lower = fin & (res < lo)
        higher = fin & (res > hi)
        if idx is None:
            self.kind[...] = kind
            np.putmask(self.ilo, lower, i)
            np.putmask(self.ihi, higher, i)
            np.putmask(self.lo, lower, res)
            np.putmask(self.hi, higher, res)
        else:
            self.kind[idx] = kind
            self.ilo[idx] = np.where(lower, i, self.ilo[idx])
            self.ihi[idx] = np.where(higher, i, self.ihi[idx])
            self.lo[idx] = np.where(lower, res, lo)
            self.hi[idx] = np.where(higher, res, hi)


#: the spreads of one family and dtype, filled by its route cases and
#: completed by its agreement case (which runs right after them; in another
#: order or process it computes the routes missing here)
_SPREADS = {"key": None, "runs": {}, "done": set()}


def spread_of(key, run, shape, dtype, scale, atol=0.0):
    """The Spread of ``run`` of the family and dtype ``key`` (new: of these)."""
    if _SPREADS["key"] != key:
        _SPREADS.update(key=key, runs={}, done=set())
    runs = _SPREADS["runs"]
    if run not in runs:
        runs[run] = Spread(shape, dtype, scale, atol)
    return runs[run]


def done_here(key):
    """What the route cases of ``key`` folded in so far (route, run)."""
    return _SPREADS["done"] if _SPREADS["key"] == key else set()


def check_route(family, dtype, layout, op, threads):
    """The route's result against scipy, then folded into the op's Spread."""
    ref, scale = reference(family, dtype)
    res, idx = run_route(family, dtype, layout, op, threads)
    sel = slice(None) if idx is None else idx
    assert_close(res, ref[op][sel], scale[op][sel], res.dtype, f"{op} via {layout}")
    spread = spread_of((family, dtype), op, ref[op].shape, res.dtype, scale[op])
    spread.add(f"{layout}-{threads}thread", res, idx)
    _SPREADS["done"].add((layout, threads, op))


def layouts_of(family, dtype):
    lays = FAMILIES[family].layouts
    if family == "deferred" and dtype in ("float16", "int32"):
        return ["rows"]  # the conversion is the route
    return [
        lay
        for lay in lays
        if (dtype != "float16" or lay in F16_LAYOUTS) and (da is not None or "dask" not in lay)
    ]


def _parallel(elements):
    return elements >= THRESHOLDS["PARALLEL_MIN_WORK"]


def threads_of(family, layout, dtype):
    """1 and 2 threads; 1 alone where each kernel call has too little work
    for threads (a vector, a dask block, an online chunk) in every family but
    the ones made for it (serial)."""
    shape = FAMILIES[family].shape
    m, n = shape(_compute_dtype(dtype).itemsize) if callable(shape) else shape
    work = {
        "vector": n,
        "dask-split": -(-m // 3) * -(-n // 3),
        "dask-one": -(-m // 3) * n,
        "online": m * (n // 3),
        "online-T": m * (n // 3),
    }.get(layout)
    return THREADS if work is None or family == "serial" or _parallel(work) else [1]


AGREE = "all-routes-agree"


def _cases():
    """Per family and dtype: each layout on each thread count, then the
    agreement of all of them."""
    for fam, f in FAMILIES.items():
        for dt in f.dtypes:
            for lay in layouts_of(fam, dt):
                for t in threads_of(fam, lay, dt):
                    tid = f"{fam}-{dt}-{lay}[{route_label(fam, lay, dt)}]-{t}thread"
                    yield pytest.param(fam, dt, lay, t, id=tid)
            yield pytest.param(fam, dt, AGREE, 0, id=f"{fam}-{dt}-{AGREE}")


# ------------------------------------------------------------------ tests --
@pytest.mark.parametrize(("family", "dtype", "layout", "threads"), list(_cases()))
def test_routes(family, dtype, layout, threads):
    """logsumexp / softmax / log_softmax through one route (its id names it):
    against scipy, and against the routes of the same values before it (see
    ``Spread``); ``all-routes-agree``: every route and thread count of the
    family's values folded in, so that each pair has been compared."""
    shape = family_data(family, dtype).shape
    if layout != AGREE:
        for op in OPS:
            if _applies(layout, op, shape):
                check_route(family, dtype, layout, op, threads)
        return
    done = done_here((family, dtype))
    for op in OPS:
        for lay in layouts_of(family, dtype):
            for t in threads_of(family, lay, dtype):
                if _applies(lay, op, shape) and (lay, t, op) not in done:
                    check_route(family, dtype, lay, op, t)
    _SPREADS.update(key=None, runs={}, done=set())


# ----------------------------------------------------------------------------
# where= / b= that hide elements, and return_sign
# ----------------------------------------------------------------------------
HIDE_FAMILIES = [("n100", F3), ("n13", F2), ("n7", F2), ("long", F2)]


@functools.lru_cache(maxsize=2)
def hidden_data(family, dtype):
    """(x with specials where hidden, the mask, the kept values (M - 1, N - k),
    their reference): row 0 all hidden, every other row k = N // 4 hidden
    elements holding inf, nan, -inf or a large value that would dominate."""
    R = family_data(family, dtype)
    m, n = R.shape
    k = max(1, n // 4)
    rng = np.random.default_rng(7)
    mask = np.ones((m, n), dtype=bool)
    cols = np.argsort(rng.random((m, n)), axis=1)[:, :k]
    mask[np.arange(m)[:, None], cols] = False
    mask[0] = False
    x = R.copy()
    fill = np.array([np.inf, np.nan, -np.inf, 3000.0])
    x[~mask] = fill[np.arange(np.count_nonzero(~mask)) % 4]
    _keep(x, mask)
    kept = R[1:][mask[1:]].reshape(m - 1, n - k)
    return x, mask, kept, _reference(kept)


def _hide_cases():
    for fam, dts in HIDE_FAMILIES:
        for dt in dts:
            for t in THREADS:
                yield pytest.param(fam, dt, t, id=f"{fam}-{dt}-{t}thread")


@pytest.mark.parametrize(("family", "dtype", "threads"), list(_hide_cases()))
@pytest.mark.parametrize("how", ["where", "where-T", "b-zeros"])
def test_hidden_elements_are_absent(family, dtype, threads, how):
    """where= (rows, and along axis 0 of the transpose) and zero weights b
    (logsumexp): the same as the values without the hidden elements (routes
    of their own: compared with whole-row routes and scipy); a fully hidden
    row gives -inf, 0 (softmax) and -inf (log_softmax)."""
    x, mask, kept, (ref, scale) = hidden_data(family, dtype)
    ops = ("logsumexp",) if how == "b-zeros" else OPS
    for op in ops:
        with fastlse.num_threads(threads):
            if how == "where":
                res = _fn(op)(x, axis=1, where=mask)
            elif how == "where-T":
                res = _fn(op)(np.ascontiguousarray(x.T), axis=0, where=mask.T)
                res = res if op == "logsumexp" else res.T
            else:
                res = _fn(op)(x, axis=1, b=mask.astype(x.dtype))
            plain = _fn(op)(kept, axis=1)  # the same values through their rows' route
        assert_unchanged(x, mask)
        res = np.asarray(res)
        assert res.dtype == _result_dtype(op, x.dtype) and res.shape == _reduced(op, x.shape, 1)
        if op == "logsumexp":
            assert res[0] == -np.inf
            got = res[1:]
        else:
            absent = 0.0 if op == "softmax" else -np.inf
            assert np.all(res[~mask] == absent), f"{op} {how}: hidden elements not {absent}"
            got = res[1:][mask[1:]].reshape(kept.shape)
        what = f"{op} {how}"
        assert_close(got, ref[op], scale[op], res.dtype, what + " vs scipy")
        assert_close(got, plain, scale[op], res.dtype, what + " vs the rows without them")


SIGN_LAYOUTS = ("rows", "vector", "cols", "folded", "where", "weighted", "online") + (
    ("dask-split",) if da is not None else ()
)
SIGN_FAMILIES = [("n100", F3), ("n13", F2), ("n7", F2), ("serial", F2), ("long-special", F2)]


def _sign_of(layout, R, threads):
    """(lse, sign) of R's rows with return_sign=True through the layout (the
    vector layout: of the rows ``vector_rows``)."""
    m, n = R.shape
    with fastlse.num_threads(threads):
        if layout == "rows":
            return fastlse.logsumexp(R, axis=1, return_sign=True)
        if layout == "vector":
            pairs = [fastlse.logsumexp(R[i], return_sign=True) for i in vector_rows(m)]
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        if layout == "cols":
            return fastlse.logsumexp(np.ascontiguousarray(R.T), axis=0, return_sign=True)
        if layout == "folded":
            x3 = np.ascontiguousarray(R.reshape(m // 8, 8, n).transpose(0, 2, 1))
            res, sgn = fastlse.logsumexp(x3, axis=1, return_sign=True)
            return res.reshape(m), sgn.reshape(m)
        if layout == "where":
            w = np.ones(R.shape, dtype=bool)
            return fastlse.logsumexp(R, axis=1, where=w, return_sign=True)
        if layout == "weighted":
            b = np.ones(R.shape, dtype=R.dtype)
            return fastlse.logsumexp(R, axis=1, b=b, return_sign=True)
        if layout == "online":
            acc = fastlse.OnlineLogSumExp(axis=1).update(R[:, : n // 2])
            return acc.update(R[:, n // 2 :]).result(return_sign=True)
        with _dask_threads(threads):
            res, sgn = fastlse.logsumexp(
                da.from_array(R, chunks=(-(-m // 2), -(-n // 3))), axis=1, return_sign=True
            )
            return dask.compute(res, sgn)


def _read_only(a):
    v = a.view()
    v.flags.writeable = False
    return v


#: (family, dtype): whole rows (also columns, ``where=``, ``b=`` and a
#: vector), narrow rows (float32 transposed, float64 blocks), pieces
READ_ONLY_FAMILIES = [
    ("n100", "float32"), ("n63", "float32"), ("n13", "float64"), ("long", "float64"),
]  # fmt: skip


@pytest.mark.parametrize(("family", "dtype"), READ_ONLY_FAMILIES)
def test_read_only_inputs(family, dtype):
    """Read-only arrays compile kernels of their own (the other cases pass
    writeable ones): each family's rows read-only against the reference, and
    for the first the other kernels' layouts (CI's time: every read-only
    kernel compiled once more is seconds)."""
    R = family_data(family, dtype)
    ref, scale = reference(family, dtype)
    ro = _read_only(R)
    every = (family, dtype) == READ_ONLY_FAMILIES[0]
    if every:
        rot = _read_only(np.ascontiguousarray(R.T))
        ones = _read_only(np.ones(R.shape, dtype=bool))
    for op in OPS:
        f = _fn(op)
        runs = {"rows": f(ro, axis=1)}
        if every:
            runs["columns"] = f(rot, axis=0)
            runs["where"] = f(ro, axis=1, where=ones)
            if op == "logsumexp":
                runs["b"] = f(ro, axis=1, b=_read_only(ones.astype(R.dtype)))
        for name, res in runs.items():
            res = np.asarray(res)
            res = res.T if name == "columns" and op != "logsumexp" else res
            assert_close(res, ref[op], scale[op], res.dtype, f"read-only {op} {name}")
        if every:
            res = f(_read_only(R[1]))
            assert_close(res, ref[op][1], scale[op][1], res.dtype, f"read-only {op} vector")
    assert_unchanged(R)


def _sign_cases():
    for fam, dts in SIGN_FAMILIES:
        m = FAMILIES[fam].shape[0]
        for dt in dts:
            for lay in SIGN_LAYOUTS:
                if (lay == "folded" and m % 8) or (dt == "float16" and lay not in F16_LAYOUTS):
                    continue
                yield pytest.param(
                    fam, dt, lay, id=f"{fam}-{dt}-{lay}[{route_label(fam, lay, dt)}]"
                )


@pytest.mark.parametrize(("family", "dtype", "layout"), list(_sign_cases()))
def test_return_sign(family, dtype, layout):
    """logsumexp(..., return_sign=True), on 1 and 2 threads: the sign exactly
    scipy's (+1 for a finite or +inf result, however far below exp's range,
    0 for -inf, nan for nan), the value within the bound."""
    R = family_data(family, dtype)
    ref, scale = reference(family, dtype)
    rows = vector_rows(R.shape[0]) if layout == "vector" else slice(None)
    lse, lscale, want_sign = ref["logsumexp"][rows], scale["logsumexp"][rows], ref["sign"][rows]
    for threads in THREADS:
        res, sgn = (np.asarray(a) for a in _sign_of(layout, R, threads))
        assert_unchanged(R)
        what = f"{layout} on {threads} thread(s)"
        assert sgn.dtype == res.dtype == _result_dtype("logsumexp", R.dtype)
        assert sgn.shape == res.shape == lse.shape
        assert_close(res, lse, lscale, res.dtype, f"lse via {what}")
        same = (sgn == want_sign) | (np.isnan(sgn) & np.isnan(want_sign))
        if not same.all():
            i = int(np.argmin(same))
            raise AssertionError(
                f"sign via {what}: {np.count_nonzero(~same)} of {same.size} differ from "
                f"scipy's; first at row {i}: sign {sgn[i]!r} for lse {res[i]!r} "
                f"(scipy: {want_sign[i]!r})"
            )


# ----------------------------------------------------------------------------
# cross_entropy
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class XFamily:
    """(M, C) logits; positions d of the columns layout and of the moved layout
    ((M / d, C, d) along axis 1; 0: none); the dtypes; the layouts; the
    options (``XENT_OPTIONS``; None: all)."""

    shape: tuple
    d_cols: int
    d_moved: int
    dtypes: tuple
    layouts: tuple
    options: tuple = None


X_ALL = ("rows", "vector", "cols", "moved", "F", "strided", "dask-rows", "dask-split")
#: C across SMALL_C: the layouts that reach the row kernels
X_ROWS = ("rows", "vector", "moved")
X_KERNEL_OPTIONS = ("plain", "smooth", "lm", "soft")
X_LONG_OPTIONS = ("plain", "smooth", "soft", "soft-all")


XENT_FAMILIES = {
    # C = 10: small-C row kernels (blocks of rows transposed); 40960
    # elements: parallel; columns (64, 10, 64): the column kernels (C < 64);
    # moved: (1024, 10, 4) float32 16 / float64 32 bytes behind the class axis
    "c10": XFamily((4096, 10), 64, 4, F3, X_ALL),
    # C just under ROWS_MIN: a float32 loss alone still takes the small-C
    # rows; from ROWS_MIN its whole rows (the other options: small-C up to 63)
    "c31": XFamily((1024, 31), 64, 4, F2, X_ROWS, ("plain",)),
    "c32": XFamily((1024, 32), 64, 4, F3, X_ROWS, ("plain",)),
    # C just under SMALL_C: the widest small-C rows (blocks of 64 rows); the
    # options with kernels of their own (plain, LM, smoothing, soft)
    "c63": XFamily((1024, 63), 64, 4, F2, X_ROWS, X_KERNEL_OPTIONS),
    # C = SMALL_C: the narrowest wide rows (one row at a time)
    "c64": XFamily((1024, 64), 64, 4, F2, X_ROWS, X_KERNEL_OPTIONS),
    # C = 100 >= 64: columns (8, 100, 64) forward only with index targets and
    # no smoothing / LM option: cols_index_loss (8 slabs of 64 positions >= 4 *
    # 2 threads); else cols / cols_lm
    "c100": XFamily((512, 100), 64, 4, F2, X_ALL),
    # C = 70001 >= 2 * PIECE in 2 rows < 2 * threads: pieces; "stacked": the
    # rows repeated to >= 2 * NT rows: whole rows; moved: (1, C, 2); F: the
    # columns of (C, 2); options: index targets, smoothing, probabilities,
    # with the LM options (every option of the pieces against torch:
    # test_xent_long_rows)
    "long": XFamily((2, 70001), 0, 2, F2, ("stacked", *X_ALL[:2], *X_ALL[3:]), X_LONG_OPTIONS),
}

#: cross_entropy layouts (``XENT_LAYOUTS[name](R, T, reduction, grad, kw)``
#: -> (loss, grad or None) laid out as R's rows, rows computed or None)
XENT_F16_LAYOUTS = ("rows", "cols", "F", "dask-rows")


def _x_rows(R, T, red, grad, kw):
    # no options and int64 targets: the unplanned call; else the general rows
    return fastlse.cross_entropy(R, T, reduction=red, return_grad=grad, **kw), None


def _x_stacked(R, T, red, grad, kw):
    """k copies of the rows (k a power of two, k * M >= 2 * NT): whole rows;
    the results scaled back exactly."""
    m = R.shape[0]
    k = 1 << max(0, math.ceil(math.log2(2 * NT / m)))
    res = fastlse.cross_entropy(
        np.concatenate([R] * k), np.concatenate([T] * k), reduction=red, return_grad=grad, **kw
    )
    loss, g = res if grad else (res, None)
    loss = loss[:m] if red == "none" else (loss / loss.dtype.type(k) if red == "sum" else loss)
    if grad:
        g = g[:m] * g.dtype.type(k) if red == "mean" else g[:m]
    return ((loss, g) if grad else loss), None


def _x_vector(R, T, red, grad, kw):
    """One sample at a time (1-D logits), per-sample losses."""
    idx = vector_rows(R.shape[0])
    out = [fastlse.cross_entropy(R[i], T[i], reduction=red, return_grad=grad, **kw) for i in idx]
    if grad:
        return (np.array([o[0] for o in out]), np.stack([o[1] for o in out])), idx
    return np.array(out), idx


def _x_middle(R, T, red, grad, kw, d):
    """(M / d, C, d) along axis 1 (torch's (N, C, d) layout)."""
    m, c = R.shape
    x3 = np.ascontiguousarray(R.reshape(m // d, d, c).transpose(0, 2, 1))
    if T.ndim == 2:  # probabilities: the logits' layout
        t3 = np.ascontiguousarray(T.reshape(m // d, d, c).transpose(0, 2, 1))
    else:
        t3 = T.reshape(m // d, d)
    res = fastlse.cross_entropy(x3, t3, axis=1, reduction=red, return_grad=grad, **kw)
    loss, g = res if grad else (res, None)
    if red == "none":
        assert loss.shape == (m // d, d)
        loss = loss.reshape(m)
    if grad:
        assert g.shape == x3.shape
        g = g.transpose(0, 2, 1).reshape(m, c)
    return ((loss, g) if grad else loss), None


def _x_F(R, T, red, grad, kw):
    return fastlse.cross_entropy(np.asfortranarray(R), T, reduction=red, return_grad=grad,
                                 **kw), None  # fmt: skip


def _x_strided(R, T, red, grad, kw):
    x = every_other_column(R)
    return fastlse.cross_entropy(x, T, reduction=red, return_grad=grad, **kw), None


def _x_dask(R, T, red, grad, kw, split):
    """Row chunks, the class axis in one chunk or split (then rechunked)."""
    m, c = R.shape
    chunks = (-(-m // 3), -(-c // 3) if split else c)
    tch = chunks if T.ndim == 2 else chunks[:1]
    res = fastlse.cross_entropy(
        da.from_array(R, chunks=chunks), da.from_array(T, chunks=tch),
        reduction=red, return_grad=grad, **kw,
    )  # fmt: skip
    if grad:
        return tuple(np.asarray(a) for a in dask.compute(*res)), None
    return np.asarray(res.compute()), None


XENT_LAYOUTS = {
    # C-contiguous (M, C), classes last: small-C or wide row kernels (the
    # unplanned call without options), pieces for the long family
    "rows": _x_rows,
    # long rows repeated to >= 2 * NT rows: whole rows
    "stacked": _x_stacked,
    # one sample (C,) at a time (reduction "none" only)
    "vector": _x_vector,
    # (M / 64, C, 64) along axis 1: 64 * itemsize > 32 bytes: column kernels
    # (d: the family's d_cols)
    "cols": _x_middle,
    # (M / d, C, d) along axis 1, d * itemsize <= 32 bytes: classes moved last
    # (rows; d: the family's d_moved)
    "moved": _x_middle,
    # F-contiguous (M, C): the columns of its C transpose (C, M)
    "F": _x_F,
    # every other column of (M, 2C): one copy, then rows
    "strided": _x_strided,
    # dask, row chunks: the NumPy kernels per block, partial sums merged
    "dask-rows": functools.partial(_x_dask, split=False),
    # dask, the class axis split: rechunked to one chunk, then as dask-rows
    "dask-split": functools.partial(_x_dask, split=True),
}

#: options: (targets, keywords); "weight" True: random class weights
XENT_OPTIONS = {
    "plain": ("index", {}),  # no options: the unplanned row call
    "weight-ignore": ("index3", dict(weight=True, ignore_index=3)),  # some targets 3
    "smooth": ("index-100", dict(weight=True, label_smoothing=0.1)),  # some targets -100
    "lm": ("index", dict(z_loss=1e-3, softcap=300.0)),  # the *_lm kernels
    "soft": ("soft", {}),
    "soft-all": ("soft", dict(weight=True, label_smoothing=0.05, z_loss=1e-4, softcap=300.0)),
}
REDUCTIONS = ("none", "sum", "mean")


def _x_layouts(family, dtype):
    lays = XENT_FAMILIES[family].layouts
    return [
        lay
        for lay in lays
        if (dtype != "float16" or lay in XENT_F16_LAYOUTS) and (da is not None or "dask" not in lay)
    ]


def xent_label(family, layout, dtype):
    """The route a cross_entropy case forces (from the thresholds)."""
    t = THRESHOLDS
    fam = XENT_FAMILIES[family]
    m, c = fam.shape
    dt = np.dtype(dtype)
    kind = "small-C" if c < t["SMALL_C"] else "wide-rows"
    if c >= 2 * t["PIECE"] and m < 2 * NT:
        kind = "pieces"
    conv = "float16->float32-copy+" if dt == np.float16 else ""
    if layout == "stacked":
        return "wide-rows"
    if layout == "moved" and not conv and fam.d_moved * dt.itemsize <= t["MOVE_BYTES"]:
        return "moved-last+" + kind
    if layout in ("cols", "moved") or (layout == "F" and not conv):
        label = conv + "columns"
        slabs = m // fam.d_cols if layout == "cols" else 1  # d <= 256: one slab a row
        if c >= t["PAIRS_COLS_MIN_C"] and (NT == 1 or slabs >= 4 * NT):
            label += "+cols_index_loss"  # forward only, index targets, no smoothing / LM
        return label
    pre = {"strided": "copy+", "dask-rows": "dask+", "dask-split": "dask-rechunk+"}
    return conv + pre.get(layout, "") + kind


def x_threads_of(family, layout):
    """1 and 2 threads; 1 alone for one sample or a dask block of a third of
    the rows where that is too little work for threads."""
    m, c = XENT_FAMILIES[family].shape
    work = {"vector": c, "dask-rows": -(-m // 3) * c, "dask-split": -(-m // 3) * c}.get(layout)
    if work is None or _parallel(work):
        return THREADS
    return [1]


#: (family, dtype, layout) cases of known defects, each fixed by the dispatcher's
#: redesign: dask's float16 block sums are rounded to float16 before they are
#: added (inf); F-contiguous long class axes take the column kernels, whose
#: sums over 70001 classes are less accurate (30-40 ulp) than the rows'
X_KNOWN = {
    ("c10", "float16", "dask-rows"): "dask sums float16 blocks in float16",
    ("c10", "float16", AGREE): "dask sums float16 blocks in float16",
    ("long", "float64", "F"): "a long class axis in columns: sums of 70001 classes",
    ("long", "float64", AGREE): "a long class axis in columns: sums of 70001 classes",
}


def _x_cases():
    for fam, f in XENT_FAMILIES.items():
        for dt in f.dtypes:
            for lay in [*_x_layouts(fam, dt), AGREE]:
                marks = ()
                if (fam, dt, lay) in X_KNOWN:
                    # not strict: under xdist a known route may run before
                    # every route it differs from, in its worker, and pass
                    marks = pytest.mark.xfail(reason=X_KNOWN[fam, dt, lay], strict=False)
                if lay == AGREE:
                    yield pytest.param(fam, dt, AGREE, 0, id=f"{fam}-{dt}-{AGREE}", marks=marks)
                    continue
                for t in x_threads_of(fam, lay):
                    tid = f"{fam}-{dt}-{lay}[{xent_label(fam, lay, dt)}]-{t}thread"
                    yield pytest.param(fam, dt, lay, t, id=tid, marks=marks)


@functools.lru_cache(maxsize=4)
def xent_data(family, dtype, special):
    """(logits (M, C), {target kind: targets}, class weights), writeable as
    ``family_data``'s.

    Special: rows at the blocks' edges with -inf logits (a third of the
    classes, not the target), +inf, nan, all -inf but the target's."""
    fam = XENT_FAMILIES[family]
    dt = np.dtype(dtype)
    m, c = fam.shape
    rng = np.random.default_rng([sum(map(ord, family)), dt.num, special])
    x = _values(rng, (m, c))
    x[np.isinf(x)] = 0.0
    t = rng.integers(0, c, m)
    q = rng.dirichlet(np.full(c, 0.5), m)
    targets = {"index": t, "soft": q.astype(dt)}
    t3 = t.copy()
    t3[rng.random(m) < 0.15] = 3
    t100 = t.copy()
    t100[rng.random(m) < 0.15] = -100
    targets.update({"index3": t3, "index-100": t100})
    if special:
        # special rows are never ignored (torch's gradient of an ignored row
        # with nan / inf logits is nan, fastlse's 0; the z-loss of
        # ``xent_reference.torch_ref`` is 0 * nan there): every target the
        # class that the probabilities favour
        rows = [r for r in EDGES if r < m] if m > 2 else [0, 1]
        for k, r in enumerate(rows):
            kind = ("neginf", "inf", "nan", "only")[k % 4]
            y = int(np.argmax(q[r]))
            y = (y + 1) % c if y == 3 else y
            t[r] = t3[r] = t100[r] = y
            v = x[r, y]
            if kind == "neginf":
                x[r, : c // 3] = -np.inf
            elif kind == "inf":
                x[r, (y + 1) % c] = np.inf
            elif kind == "nan":
                x[r, (y + c // 2) % c] = np.nan
            else:
                x[r] = -np.inf
            x[r, y] = v
    x = x.astype(dt)
    weights = rng.uniform(0.2, 2.0, c)
    _keep(x, weights, *targets.values())
    return x, targets, weights


def _x_kwargs(option, weights):
    kind, kw = XENT_OPTIONS[option]
    kw = dict(kw)
    if kw.get("weight"):
        kw["weight"] = weights
    else:
        kw.pop("weight", None)
    return kind, kw


@functools.lru_cache(maxsize=64)
def xent_reference(family, dtype, special, option, reduction):
    """torch's F.cross_entropy (+ z-loss) in float64 by autograd: (loss, grad,
    loss bound scale, grad bound scale, loss atol, grad atol) (``xent_bounds``)."""
    from xent_reference import torch_ref

    x, targets, weights = xent_data(family, dtype, special)
    kind, kw = _x_kwargs(option, weights)
    t = targets[kind]
    x64 = x.astype(np.float64)
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (not to compete with numba's threads)
    try:
        loss, grad, lse = torch_ref(x64, t, reduction=reduction, **kw)
    finally:
        torch.set_num_threads(threads)
    return (loss, grad, *xent_bounds(x64, t, kind == "soft", kw, reduction, lse, grad))


def xent_bounds(x, t, soft, kw, reduction, lse, grad_ref):
    """Bounds of loss and grad: (loss scale, grad scale, loss atol, grad
    atol) for ``K * eps * (|value| + scale) + atol``.

    With c the (soft-capped) logits, ``p = exp(c - lse)`` and per row the
    target weights ``b_i`` (index: ``(1 - e) w_y [i = y] + e w_i / C``; soft:
    ``w_i ((1 - e) q_i + e / C)``), the loss is ``a lse - sum b_i c_i`` (+ the
    z-loss ``z lse^2``) with ``a = sum b_i``, and the gradient ``a p_i - b_i``
    (+ ``2 z lse p_i``) times the reduction's scale (and the cap's derivative
    ``1 - (c / cap)^2 <= 1``, which has an absolute error of a few eps).  Each
    term has a relative error of a few eps; p's is ``eps * (1 + |c - max|)``
    (``c - max`` rounded, then exp), plus ``eps * (|c| + max |c|)`` with a cap
    (``tanh`` has a relative error: c an absolute one of ``eps * |c|``).  So
    the scales are ``a (|lse| + 1 + max cerr) + sum |b_i c_i| + 2 z lse^2`` for a
    row's loss and ``a p_i (1 + |c_i - max| + cerr_i + max cerr) + b_i`` for the
    gradient, with ``cerr = |c|`` with a cap and 0 without one
    (``a p_i - b_i`` cancels to an absolute eps).  "sum" / "mean" add the
    rows' losses in float64 in an order of the route's (threads, blocks,
    chunks): the loss's atol allows a float64 summation error of
    ``sqrt(M) eps64`` (the usual estimate for sequential sums) relative to the
    rows' bounds; "mean" divides by such a sum of M class weights, a relative
    error of ``sqrt(M) eps64`` in every gradient element too (grad's atol,
    relative to |grad|: pass the reference gradient as ``grad_ref``).
    """
    m, c = x.shape
    cap = kw.get("softcap")
    eps_s = kw.get("label_smoothing", 0.0)
    z = kw.get("z_loss", 0.0)
    w = kw.get("weight")
    w = np.ones(c) if w is None else np.asarray(w, dtype=np.float64)
    with np.errstate(all="ignore"):
        cl = x if cap is None else cap * np.tanh(x / cap)
        if soft:
            keep = np.ones(m, dtype=bool)
            bw = w * ((1 - eps_s) * t.astype(np.float64) + eps_s / c)
        else:
            keep = t != kw.get("ignore_index", -100)
            ty = np.where(keep, t, 0)
            bw = np.broadcast_to(eps_s / c * w, (m, c)).copy()
            bw[np.arange(m), ty] += (1 - eps_s) * w[ty]
            bw *= keep[:, None]
        aw = bw.sum(axis=1)
        den = float(m) if soft else float(w[ty][keep].sum())
        mean = reduction == "mean"
        s = 1.0 / den if mean else 1.0
        zc = z / max(1, np.count_nonzero(keep)) if mean else z
        a = s * aw + 2.0 * zc * np.abs(lse) * keep
        p = np.exp(cl - lse[:, None])
        cerr = np.zeros_like(cl) if cap is None else np.abs(cl)
        cmax = np.max(cerr, axis=1, keepdims=True)
        dist = np.abs(cl - np.max(cl, axis=1, keepdims=True)) + cerr + cmax
        gscale = np.where(p > 0, a[:, None] * p * (1.0 + dist), 0.0) + s * bw
        bc = np.where(bw > 0, bw * np.abs(cl), 0.0).sum(axis=1)
        lrow = s * (aw * (np.abs(lse) + 1.0 + cmax[:, 0]) + bc) + 2.0 * zc * lse**2 * keep
    if reduction == "none":
        return lrow, gscale, 0.0, 0.0
    total = float(np.sum(lrow))
    sum_err = float(np.finfo(np.float64).eps) * math.sqrt(m)
    gatol = sum_err * np.abs(grad_ref) if mean and not soft else 0.0
    return total, gscale, sum_err * total, gatol


def run_xent(family, dtype, special, layout, option, reduction, grad, threads):
    """(loss, grad or None) laid out as the family's rows, rows computed or None."""
    x, targets, weights = xent_data(family, dtype, special)
    kind, kw = _x_kwargs(option, weights)
    fam = XENT_FAMILIES[family]
    fn = XENT_LAYOUTS[layout]
    if fn is _x_middle:
        fn = functools.partial(fn, d=fam.d_cols if layout == "cols" else fam.d_moved)
    with fastlse.num_threads(threads):
        if layout.startswith("dask"):
            with _dask_threads(threads):
                res, idx = fn(x, targets[kind], reduction, grad, kw)
        else:
            res, idx = fn(x, targets[kind], reduction, grad, kw)
    assert_unchanged(x, targets[kind], weights)
    loss, g = res if grad else (res, None)
    loss = np.asarray(loss)
    assert loss.dtype == x.dtype, (layout, loss.dtype)
    if g is not None:
        assert g.dtype == x.dtype and g.shape[1:] == x.shape[1:], (layout, g.dtype, g.shape)
    return loss, g, idx


#: options with forward-only kernels (no gradient: ``*_plain``, ``cols_index_loss``)
FORWARD_ONLY = ("plain", "weight-ignore")


def _x_runs(family, layout):
    """(special data, option, reduction, grad) of a layout: on finite logits
    every option and reduction with the gradient, and without it where that
    is a kernel of its own (else for "mean"); on special logits per sample
    with the gradient; one sample at a time (vector): per sample."""
    options = XENT_FAMILIES[family].options or tuple(XENT_OPTIONS)
    for special in (False, True):
        for option in options:
            for red in ("none",) if special or layout == "vector" else REDUCTIONS:
                yield special, option, red, True
                if not special and (option in FORWARD_ONLY or red == "mean"):
                    yield special, option, red, False


def check_xent_route(family, dtype, layout, threads, runs):
    """The route against torch on each of ``runs``, its losses and gradients
    folded into the runs' Spreads."""
    dt = np.dtype(dtype)
    # torch's float64 results carry rounding errors as large as fastlse's:
    # against them float64 results get twice the bound (float16 / float32
    # ones are rounded from far more accurate values)
    k = 2 * K if dt == np.float64 else K
    name = f"{layout}-{threads}thread"
    # a route known to differ is checked, never folded in: the routes after
    # it, in whatever order the workers run them, compare with the others
    fold = (family, dtype, layout) not in X_KNOWN
    for special, option, red, grad in runs:
        ref, ref_grad, lscale, gscale, atol, gatol = xent_reference(
            family, dtype, special, option, red
        )
        loss, g, idx = run_xent(family, dtype, special, layout, option, red, grad, threads)
        sel = slice(None) if idx is None else idx
        what = f"{layout} {option} {red}{' special' if special else ''}"
        rl = ref if red != "none" else ref[sel]
        ls = lscale if red != "none" else lscale[sel]
        assert_close(loss, rl, np.abs(rl) + ls, dt, f"loss via {what}", k, atol)
        key = (family, dtype)
        run = ("loss", special, option, red)
        spread = spread_of(key, run, np.shape(ref), dt, np.abs(ref) + lscale, atol)
        spread.add(f"{name}{'-grad' if grad else ''} ({what})", loss, idx, fold)
        if grad:
            rg = ref_grad[sel]
            ga = gatol if np.ndim(gatol) == 0 else gatol[sel]
            assert_close(g, rg, np.abs(rg) + gscale[sel], dt, f"grad via {what}", k, ga)
            run = ("grad", special, option, red)
            spread = spread_of(key, run, ref_grad.shape, dt, np.abs(ref_grad) + gscale, gatol)
            spread.add(f"{name} ({what})", g, idx, fold)
        _SPREADS["done"].add((layout, threads, special, option, red, grad))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(("family", "dtype", "layout", "threads"), list(_x_cases()))
def test_xent_routes(family, dtype, layout, threads):
    """cross_entropy through one route (its id names it), every option and
    reduction, with and without the gradient: against torch (float64,
    autograd) and against the routes of the same logits before it (see
    ``Spread``); ``all-routes-agree``: every route and thread count folded
    in, so that each pair has been compared."""
    if layout != AGREE:
        check_xent_route(family, dtype, layout, threads, list(_x_runs(family, layout)))
        return
    done = done_here((family, dtype))
    for lay in _x_layouts(family, dtype):
        for t in x_threads_of(family, lay):
            missing = [r for r in _x_runs(family, lay) if (lay, t, *r) not in done]
            if missing:
                check_xent_route(family, dtype, lay, t, missing)
    _SPREADS.update(key=None, runs={}, done=set())
