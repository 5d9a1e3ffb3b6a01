"""Kernel pairs (serial / parallel), thread control and the dispatch between them.

Every kernel body is written once with ``prange`` and compiled twice, lazily,
on first use: once serial, once parallel. ``Kernel.__call__`` picks one:

* tiny inputs (``work`` below ``PARALLEL_MIN_WORK`` elements) never start threads;
* ``numba.set_num_threads(1)`` (or ``fastlse.num_threads(1)``) means serial;
* in a child created by ``fork`` after the parent started a thread pool whose
  layer is not fork-safe (GNU OpenMP hangs, see numba's docs), serial kernels
  run instead of hanging;
* with numba's ``workqueue`` layer, which aborts when two Python threads enter
  a parallel region at once, parallel calls are serialized by a lock.

The threading layer itself is numba's choice (``NUMBA_THREADING_LAYER``, default
order tbb > omp > workqueue); fastlse never overrides a user's configuration.
"""

import contextlib
import os
import threading
import types
from collections.abc import Iterator

import numba
from numba import njit
from numba.np.ufunc import parallel as _pool  # numba's thread pool (private names)

from .._config import CACHE, PARALLEL_MIN_WORK
from .exp import EXACT

__all__ = ["KERNELS", "PARALLEL_MIN_WORK", "Kernel", "kernel", "num_threads"]


def _numba_cache_dir(module_dir):
    """The directory numba caches the kernels of module_dir's modules in: its
    first locator that takes them (``NUMBA_CACHE_DIR``, the ``__pycache__``
    beside them, the user-wide cache: numba's ``CacheImpl`` order), or the
    ``__pycache__`` where numba's names for them are unknown."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    probe = os.path.join(module_dir, "__init__.py")
    for cls in getattr(impl, "_locator_classes", ()):
        locator = cls.from_function(_numba_cache_dir, probe)
        if locator is not None:
            return locator.get_cache_path()
    return os.path.join(module_dir, "__pycache__")


def _drop_stale_cache():
    """Numba keys a cached kernel on its own file only: a kernel in one module
    that inlined a helper from another goes stale when that helper changes
    (fastlse/*.py's scans and losses inline kernels/*.py's helpers too).
    Keep one stamp of every module of the package (both directories) in
    each directory numba caches them in (``_numba_cache_dir``: also under
    ``NUMBA_CACHE_DIR`` or the user-wide cache); when it changes, drop that
    directory's cache files (a few stat calls at import; nothing is
    compiled).
    """
    kernels = os.path.dirname(os.path.abspath(__file__))
    dirs = (os.path.dirname(kernels), kernels)
    try:
        files = sorted(os.path.join(d, f) for d in dirs for f in os.listdir(d) if f.endswith(".py"))
        stats = [os.stat(f) for f in files]
    except OSError:
        return
    stamp = ";".join(f"{f}:{st.st_mtime_ns}:{st.st_size}" for f, st in zip(files, stats))
    for d in dirs:
        # nowhere writable: numba finds no cache directory for d either
        with contextlib.suppress(OSError):
            _renew(_numba_cache_dir(d), stamp)


def _renew(cache, stamp):
    """Drop cache's numba files unless its stamp file holds ``stamp``; write it."""
    path = os.path.join(cache, "fastlse-cache-stamp.txt")
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == stamp:
                return
    if os.path.isdir(cache):
        for f in os.listdir(cache):
            if f.endswith((".nbi", ".nbc")):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(cache, f))
    os.makedirs(cache, exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(stamp)
    os.replace(tmp, path)


if CACHE:
    _drop_stale_cache()

_lock = threading.Lock()
#: every Kernel made, so ``fastlse.precompile`` can compile each one's serial
#: and parallel twins alike (a call runs only one of them)
KERNELS = []
#: ``count``: numba's C getter of the calling thread's count, kept once the
#: pool is launched (asking ``numba.get_num_threads`` takes a lock and a few
#: attribute lookups, a visible share of a small call)
_state = {"forked_unsafe": False, "layer": None, "count": None}


def _after_fork_in_child():
    if getattr(_pool, "_is_initialized", False) and _state["layer"] != "tbb":
        _state["forked_unsafe"] = True
        _state["count"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _threads_usable():
    count = _state["count"]
    if count is not None:
        return count() > 1
    if _state["forked_unsafe"]:
        return False
    # numba.get_num_threads() first makes sure the pool is launched; once it
    # is, its C getter answers alone
    usable = numba.get_num_threads() > 1
    if getattr(_pool, "_is_initialized", False) and hasattr(_pool, "_get_num_threads"):
        _state["count"] = _pool._get_num_threads
    return usable


def _renamed(fn, suffix):
    """A copy of ``fn`` with another qualified name.

    numba's disk cache names its files after the function's qualified name and
    line, not the ``parallel`` flag: without a distinct name the serial and
    parallel compilations of one body would load each other from the cache.
    """
    g = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__
    )
    g.__qualname__ = fn.__qualname__ + suffix
    g.__module__ = fn.__module__
    g.__doc__ = fn.__doc__
    return g


class Kernel:
    """A kernel body compiled serial and parallel, dispatched by work size.

    Like ``compile.jit``, a kernel is compiled without reference counting
    (the row views of its loop would otherwise count atomically on every
    row, from every thread, on one cache line), unless it allocates
    (``alloc=True``): then its per-row work goes through a ``jit`` helper
    given the whole array and the row's index.
    """

    def __init__(self, fn, alloc=False, **options):
        opts = {"fastmath": EXACT, "error_model": "numpy", "cache": CACHE, "nogil": True}
        opts["_nrt"] = bool(alloc)
        opts.update(options)
        self.py_func = fn
        self.serial = njit(**opts)(fn)
        self.parallel = njit(parallel=True, **opts)(_renamed(fn, "_parallel"))
        KERNELS.append(self)

    def __call__(self, work, *args):
        return self.bound(work)(*args)

    def bound(self, work):
        """The twin ``self(work, ...)`` runs: the serial one below
        ``PARALLEL_MIN_WORK``, else ``on_threads`` (the threads are still
        asked on every call).  The memoized small calls keep it."""
        return self.serial if work < PARALLEL_MIN_WORK else self.on_threads

    def on_threads(self, *args):
        """The parallel twin where threads are usable, else the serial one."""
        if not _threads_usable():
            return self.serial(*args)
        layer = _state["layer"]
        if layer is None or layer == "workqueue":
            with _lock:
                res = self.parallel(*args)
                _state["layer"] = numba.threading_layer()
            return res
        return self.parallel(*args)


def kernel(fn=None, **options):
    """Decorator: ``@kernel`` turns a ``prange`` body into a :class:`Kernel`."""
    if fn is None:
        return lambda f: Kernel(f, **options)
    return Kernel(fn, **options)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager: run fastlse kernels of this Python thread on ``n`` threads.

    A thin wrapper over ``numba.set_num_threads`` (which is per Python thread);
    ``n == 1`` selects the serial kernels, so no thread pool is touched.

    Examples
    --------
    >>> import numpy as np, fastlse
    >>> with fastlse.num_threads(1):
    ...     float(fastlse.logsumexp(np.zeros(4)))
    1.3862943611198906
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"num_threads: n must be >= 1, got {n}")
    old = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old)
