"""The ways a kernel is compiled: one flag set each, for every module.

* ``jit``: scalar logic and stores, IEEE arithmetic with FMA contraction only
  (``EXACT``).  The reassoc flag would turn ``(x - m) - lg`` into
  ``x - (m + lg)`` and ``s + (k - 1)`` into ``(s + k) - 1``, losing exactly
  the bits the log1p form keeps; the exp / log1p bit tricks and the special
  values need IEEE too.
* ``jit_inl``: ``jit`` inlined by numba into its (``jit``) callers: the
  per-row chains (row_lse -> range_pair -> row_pair), where a call per level
  passing array structs is a large part of a short row's time, and the exp /
  tanh helpers (LLVM's inliner finds them too big, and a call keeps the
  caller's loop scalar).  Inlined code takes its caller's fastmath flags:
  never inline a ``jit_fast`` function, never call these from one expecting
  ``EXACT``.
* ``jit_fast``: loops that reduce (sums, max): reassoc lets LLVM keep
  several vector accumulators (``FASTMATH``); never nnan / ninf, so inf and
  nan keep their meaning.

* ``jit_alloc``: ``jit`` for the few helpers that allocate scratch arrays.

``jit`` and ``jit_fast`` compile without numba's reference counting
(``_nrt=False``): every slice or row view ``x[i]`` otherwise increments and
decrements its parent's count with atomic instructions, several per row,
which on short rows cost more than the row's arithmetic, and on many
threads contend for the one cache line of the count.  Such a function must
neither allocate (numba refuses to compile it: use ``jit_alloc``, or a
fixed-size scratch on its stack, ``stack_array``) nor return
an array (its caller would release a reference it was never given: numba
refuses most such returns; a view returned by ``_fold_views`` crashed the
folded route's tests before it became ``jit_alloc``).  ``jit_inl`` code
takes its caller's setting.

All use numpy's error model (a float division by zero gives inf / nan
instead of a check that keeps loops scalar), release the GIL, and are cached
on disk unless ``FASTLSE_CACHE=0`` (``_config.CACHE``).  The parallel
drivers are compiled by ``threads.kernel``.
"""

from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import CACHE

__all__ = ["EXACT", "FASTMATH", "jit", "jit_alloc", "jit_fast", "jit_inl", "stack_array"]

#: fast-math flags of the reductions: never nnan / ninf
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: the flags of everything else: FMA contraction only
EXACT = {"contract"}

jit = njit(fastmath=EXACT, error_model="numpy", cache=CACHE, nogil=True, _nrt=False)
jit_inl = njit(fastmath=EXACT, error_model="numpy", cache=CACHE, nogil=True, inline="always")
jit_fast = njit(fastmath=FASTMATH, error_model="numpy", cache=CACHE, nogil=True, _nrt=False)
jit_alloc = njit(fastmath=EXACT, error_model="numpy", cache=CACHE, nogil=True)


@intrinsic
def stack_array(typingctx, n, dtype):
    """A 1-d array of n elements of dtype (a number type, ``np.float64``) on
    the stack of the function that calls it: scratch of a fixed size for
    ``jit`` code, which cannot allocate, and a kernel without numba's
    allocations and reference counts (``threads.Kernel``'s ``alloc``).  n is
    a constant (a global or a literal int); the array lives until that
    function returns (a ``jit_inl`` caller: its own caller), so it must not
    escape it.  Uninitialized."""
    if not isinstance(n, types.IntegerLiteral) or not isinstance(dtype, types.NumberClass):
        return None
    ety, count = dtype.instance_type, n.literal_value
    arrty = types.Array(ety, 1, "C")

    def codegen(context, builder, sig, args):
        lty = context.get_data_type(ety)
        size = context.get_constant(types.intp, context.get_abi_sizeof(lty))
        ary = context.make_array(arrty)(context, builder)
        context.populate_array(
            ary,
            data=cgutils.alloca_once(builder, lty, size=count),
            shape=[context.get_constant(types.intp, count)],
            strides=[size],
            itemsize=size,
            meminfo=None,
        )
        return ary._getvalue()

    return arrty(n, dtype), codegen
