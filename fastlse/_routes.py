"""The one chooser: which route (family of kernels) serves a view.

A route is chosen from the kernels' view alone (its shape, dtype) and the
thread count, never from how the call was made: a small call of a common
shape and a general call of the same view take the same route, so they give
the same bits.  The routes of the reductions (``choose``):

* ``empty``: nothing to reduce (N == 0);
* ``vector``: one short row, serially: logsumexp of a 1-d vector; softmax
  and log_softmax of any view of one row (a 1-d vector, ``(1, N)``, all of
  a small array), with the bits of that row's ``narrow`` / ``rows`` route;
* ``narrow`` / ``narrow_t``: rows of fewer than ``NARROW_BYTES`` (64
  float32, 32 float64; logsumexp's and log_softmax's: also fewer than
  ``ROWS_MIN``, 32: a table's ``rows_min``),
  by blocks of rows (``_t``: transposed in the block, so the vector lanes
  run across rows);
* ``pieces``: few long rows, split into pieces that the threads share and
  whose pairs merge;
* ``rows``: whole rows, one thread a row at a time;
* ``columns`` / ``folded``: a middle axis ``(P, N, Q)`` read in memory order,
  folded when a row of Q columns is narrower than a vector.

Cross-entropy's routes (``choose_xent``) are the same families, with its own
kernels.  Every threshold lives here.
"""

import numba

from ._config import PARALLEL_MIN_WORK
from .kernels import columns as C
from .kernels.rows import NARROW_BYTES, NB
from .kernels.xent import SMALL_C

__all__ = [
    "NARROW_BYTES",
    "PIECE",
    "ROWS_MIN",
    "SMALL_VECTOR",
    "Routes",
    "choose",
    "choose_xent",
    "few_long_rows",
    "fold_plan",
    "index_rows_route",
    "keep",
    "narrow_block_rows",
    "narrow_rows",
    "pieces_of",
    "rows_work",
    "short_vector",
    "threads",
]

#: a row at least twice this long, in a batch of fewer rows than twice the
#: threads, is split into pieces of about this size (L2-sized, so the max and
#: exp-sum sweeps read memory once) that threads share, merged as pairs
PIECE = 1 << 15
#: logsumexp, softmax or log_softmax of a 1-d float32 / float64 vector up to
#: this length is one serial row (no thread would have enough work)
SMALL_VECTOR = 4096
#: narrow float64 rows up to this many elements take the transposed kernel
#: (float32: all narrow rows); wider ones gain nothing from the transposition
T64_MAX = 12
#: the rows of logsumexp and log_softmax of this many elements or more take
#: the row kernel even where they are narrow by ``NARROW_BYTES`` (float32
#: rows of 32-63): their exp-sum sweep in lanes beats the blocks there
#: (logsumexp 1.08-1.8x from 128 to 100000 rows; log_softmax 0.9-1.3x on up
#: to 4096 rows, 1.4-1.7x on 100000); softmax keeps the blocks up to
#: ``NARROW_BYTES`` (0.5-0.96x on whole rows)
ROWS_MIN = 32


class Routes(dict):
    """An op's table of routes for ``choose``: route name -> runner, and
    ``rows_min``: ``ROWS_MIN`` where its narrow rows of that many elements
    take whole rows, None where they keep the blocks."""

    def __init__(self, runners, rows_min=None):
        super().__init__(runners)
        self.rows_min = rows_min


def keep(plans, key, plan, size):
    """Remember a small call's plan under key in plans, a dict of at most
    size entries (cleared when full); returns plan.  A plan holds what the
    chooser and the runners decide for a layout or shape, made once so a
    repeated call skips them; None is a plan too (that key's calls take the
    general path)."""
    if len(plans) >= size:
        plans.clear()
    plans[key] = plan
    return plan


#: class-index cross-entropy along a middle axis (no gradient, no smoothing)
#: takes logsumexp's column sweeps from this many classes on; with fewer, a
#: slab is one block of rows and the general column kernel serves as well
PAIRS_COLS_MIN_C = 64
#: a class axis with fewer bytes than this behind it (float32: up to 8
#: positions, float64: 4) is moved last: the column kernels, vectorized
#: across those few positions, would run scalar
MOVE_CLASSES_MAX_BYTES = 32
#: bytes of one column block of cross-entropy's (P, C, Q) kernels: whole rows
#: of the slab where they fit, so the reads stay contiguous
XENT_COL_BLOCK_BYTES = 1 << 20


def threads():
    """The size of numba's thread pool (``NUMBA_NUM_THREADS``), not the count
    of this call: ``fastlse.num_threads`` leaves the routes as they are, so a
    call on 1 thread and on all of them takes the same route (the same bits)."""
    return numba.config.NUMBA_NUM_THREADS


#: the serial time of a row beyond its elements, in elements: a whole row
#: (``rows``; cross-entropy's ``index_rows`` / ``soft_rows``) pays the setup
#: and the tails of its sweeps, a row of a ``narrow`` block a share of its
#: block's (docs/performance-notes.md)
ROW_COST = {"rows": 32, "narrow": 8}
#: rows per block of the narrow kernels on the threads, at least (each block
#: allocates its scratch)
NARROW_BLOCK_MIN = 8


def rows_work(m, n, kind="rows"):
    """The serial work of m rows of n elements, in elements, as ``Kernel``
    compares it with ``PARALLEL_MIN_WORK``: short rows cost more than their
    elements, so that (128, 100) runs on the threads and (128, 64) does not.
    One row never starts threads (no other thread would have work)."""
    return m * (n + ROW_COST[kind]) if m > 1 else 0


def narrow_block_rows(m, work):
    """Rows per block of the narrow block kernels for m rows of ``work``
    (``rows_work``): ``NB`` serially; on the threads, blocks of at most NB
    rows in a multiple of the thread count, of one size (prange gives each
    thread as many; with blocks of NB, 128 rows were one block on one
    thread and 600 rows 512 on one thread, 88 on the other).  Every block
    size gives the same bits: a row's sweeps do not depend on its block."""
    if work < PARALLEL_MIN_WORK:
        return NB
    t = threads()
    of_nb = -(-m // NB)  # blocks of NB rows, rounded up to a multiple of t:
    blocks = -(-of_nb // t) * t
    return max(NARROW_BLOCK_MIN, -(-m // blocks))


def narrow_rows(n, itemsize, rows_min=None):
    """Rows of n elements of itemsize bytes are narrow (block kernels): under
    ``NARROW_BYTES``, and under ``rows_min`` elements where the op has one
    (``Routes.rows_min``)."""
    return n * itemsize < NARROW_BYTES and (rows_min is None or n < rows_min)


def few_long_rows(m, n, writes=False):
    """True when m rows of n elements are split into pieces across the
    threads: fewer rows than two a thread, each at least ``2 * PIECE`` long.
    An op that writes an array (softmax, log_softmax, cross_entropy) also
    wants ``PARALLEL_MIN_WORK`` elements in all."""
    if writes and m * n < PARALLEL_MIN_WORK:
        return False
    return n >= 2 * PIECE and m < 2 * threads()


def pieces_of(n):
    """(number of pieces, piece length) of a row of n elements: pieces of at
    most about ``PIECE``, all of one length but the last (none empty)."""
    piece = -(-n // -(-n // PIECE))
    return -(-n // piece), piece


def short_vector(n):
    """A 1-d vector of n elements runs serially in one call (``vector``)."""
    return 0 < n <= SMALL_VECTOR


def choose(routes, shape, dtype, *, writes=False, vector=False):
    """The route of a view of ``shape`` ((M, N) rows or (P, N, Q) columns)
    among an op's ``routes`` (the names its table declares; a ``Routes``
    also its ``rows_min``); ``writes``: the op writes an array (pieces only
    with ``PARALLEL_MIN_WORK`` elements)."""
    n = shape[1]
    if n == 0:
        return "empty"
    if len(shape) == 3:
        return "folded" if C.folded(n, shape[2], dtype.itemsize) else "columns"
    if vector and shape[0] == 1 and short_vector(n) and "vector" in routes:
        return "vector"
    if narrow_rows(n, dtype.itemsize, getattr(routes, "rows_min", None)):
        t = "narrow_t" in routes and (dtype.itemsize == 4 or n <= T64_MAX)
        return "narrow_t" if t else "narrow"
    if few_long_rows(shape[0], n, writes):
        return "pieces"
    return "rows"


def fold_plan(v):
    """(k, piece, pieces, block rows, tasks) of a middle axis read folded."""
    p_, n_, q_ = v.shape
    k = C.fold_rows(q_, v.itemsize)
    piece, npc = C.fold_pieces(p_, n_, q_, k, v.itemsize, threads())
    nt = C.fold_tasks(p_ * npc, min(piece, n_) * q_)
    return k, piece, npc, C.block_rows(k * q_, v.itemsize), nt


# ----------------------------------------------------------------------------
# cross-entropy
# ----------------------------------------------------------------------------
def classes_moved(shape, axis, itemsize):
    """True when the class axis ``axis`` (not the last) of C-contiguous logits
    is moved last in one copy: few bytes of positions behind it."""
    q = 1
    for s in shape[axis + 1 :]:
        q *= s
    return axis != len(shape) - 1 and q * itemsize <= MOVE_CLASSES_MAX_BYTES


def choose_xent(lay, *, soft, lm, grad, smoothing):
    """The route of cross-entropy logits in ``lay`` (a ``ClassLayout``):

    ``pieces`` (few long rows), ``columns_loss`` (a middle axis, the loss
    alone: logsumexp's column sweeps), ``columns``, ``index_small`` (class
    indices, few classes: blocks of rows), ``index_rows``, ``soft_rows``;
    ``empty`` with no rows.  ``lm``: the language-model options (z-loss,
    softcap, per-row lse) are asked for.
    """
    nrows = lay.p * lay.q
    if nrows == 0:
        return "empty"
    if not lay.rows:
        plain = not (lm or soft or grad or smoothing)
        return "columns_loss" if plain and xent_cols_width(lay) else "columns"
    if soft and not few_long_rows(nrows, lay.n, writes=True):
        return "soft_rows"
    loss32 = not (lm or grad or smoothing) and lay.x.dtype.itemsize == 4
    return index_rows_route(nrows, lay.n, loss32)


def index_rows_route(m, n, loss32=False):
    """The route of m rows of n logits, class indices:
    ``pieces``, ``index_small`` or ``index_rows`` (``choose_xent``'s, and
    the small calls' of ``_xent_ops.run_small``).  The small-C kernels take
    rows of fewer than ``SMALL_C`` classes; a float32 loss alone
    (``loss32``: no gradient, smoothing or LM options) only those of fewer
    than ``ROWS_MIN``, its whole rows' lanes sweep being faster from there
    (1.1-2x on 128 to 100000 rows of 32-60)."""
    if few_long_rows(m, n, writes=True):
        return "pieces"
    return "index_small" if n < (ROWS_MIN if loss32 else SMALL_C) else "index_rows"


def xent_cols_width(lay):
    """The slab width of the ``columns_loss`` route for these logits, or None
    where it does not suit them: too few classes, or too few slabs for the
    threads (its slabs are no narrower than ``col_width``, where the general
    column kernel goes down to 8)."""
    if lay.n < PAIRS_COLS_MIN_C:
        return None
    w = C.col_width(lay.q)
    if threads() == 1 or lay.p * -(-lay.q // w) >= 4 * threads():
        return w
    return None


def xent_col_block(lay):
    """Columns per block of the ``columns`` route: ``XENT_COL_BLOCK_BYTES`` of
    logits (8 to 1024 columns), fewer where that would leave under four
    blocks per thread."""
    isz = lay.x.dtype.itemsize
    qc = int(min(max(XENT_COL_BLOCK_BYTES // max(1, lay.n * isz), 8), 1024))
    need = 4 * threads()
    if lay.p * -(-lay.q // qc) < need:
        qc = max(8, -(-lay.q // -(-need // lay.p)))
    return qc
