"""``python -m fastlse``: check fastlse against scipy, then time it against its peers.

    python -m fastlse                      # self-check, timing table, cold start (1-2 min)
    python -m fastlse --quick              # smaller shapes, fewer repeats, no cold compile
    python -m fastlse --ops softmax --shapes wide,row --peers scipy,torch
    python -m fastlse --check-only         # the self-check alone
    python -m fastlse --quick --plot speed.png   # also draw the table (matplotlib)
    python -m fastlse --no-check --threads 1,2,4,8   # fastlse (and torch) per thread count
    python -m fastlse --precompile         # compile every kernel into numba's cache

The self-check compares fastlse with ``scipy.special`` (or, without scipy, with a
max-shifted NumPy reference) on special values and random float32 / float64 arrays
along several axes and layouts, prints one PASS/FAIL line per check and exits with
status 1 on a failure.  The table times fastlse, scipy, max-shifted NumPy and, when
importable, torch (same thread count as numba) and jax (``jax.jit`` on CPU): the
first call of each is untimed (compilation), then the best of several calls,
peers interleaved round-robin so a noisy machine hits them alike.  Ratios are
peer time / fastlse time, so 12.3x means fastlse is 12.3 times faster.  The
``limit`` column times the op's memory-limit proxy in the same round-robin (a
parallel one-read sum for logsumexp and cross_entropy, a copy for the ops that
write an array, into an array allocated and touched before the timing, so no
page faults of fresh memory are timed); ``fastlse/limit`` is how far fastlse
is from it.  A
summary closes the table: the geometric mean of best peer / fastlse, and the
range of fastlse / limit per op and dtype.
"""

import argparse
import contextlib
import glob
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from types import SimpleNamespace

import numba
import numpy as np

import fastlse
from fastlse._precompile import OPS as _PRECOMPILE_OPS

from . import peers as _peers
from . import plot as _plot

OPS = ("logsumexp", "softmax", "log_softmax")
#: what ``--precompile --ops`` chooses from (``fastlse.precompile``'s ops)
PRECOMPILE_OPS = tuple(_PRECOMPILE_OPS)
XENT_OPS = ("cross_entropy", "cross_entropy+grad")

#: name -> (full shape, quick shape, axis); the asv suite times the full shapes
SHAPES = {
    "wide": ((4096, 1000), (1024, 1000), -1),
    "vocab": ((64, 50257), (16, 50257), -1),
    "tall": ((1_000_000, 10), (100_000, 10), -1),
    "row": ((1, 10_000_000), (1, 1_000_000), -1),
    "mid": ((64, 1000, 64), (16, 1000, 64), 1),
}

#: columns of the table; ``limit`` is not a peer but the op's memory-limit proxy
#: (a parallel one-read sum for the reductions, a copy for the ops that write an
#: array of x's size: ``fastlse/bench/peers.py``, the asv suite's ``bench_proxies``)
PEERS = ("fastlse", "scipy", "numpy", "torch", "jax", "limit")
#: peers whose first call depends on the input (compilation per shape, thread pools):
#: that call is made on the real input and not timed
WARM_ON_INPUT = _peers.WARM_ON_INPUT | {"limit"}


# =============================================================================
# self-check
# =============================================================================
def _numpy_reference():
    """Max-shifted NumPy versions of scipy's three functions (used without scipy)."""

    def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
        a = np.asarray(a, dtype=np.result_type(np.asarray(a).dtype, np.float16))
        m = np.max(a, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        e = np.exp(a - m) if b is None else np.asarray(b) * np.exp(a - m)
        s = np.sum(e, axis=axis, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = np.log(np.abs(s) if return_sign else s) + m
        if not keepdims:
            res = np.squeeze(res, axis=axis)
            s = np.squeeze(s, axis=axis)
        res = res[()] if res.ndim == 0 else res
        return (res, np.sign(s)[()]) if return_sign else res

    def softmax(x, axis=None):
        x = np.asarray(x)
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    def log_softmax(x, axis=None):
        x = np.asarray(x)
        m = np.max(x, axis=axis, keepdims=True)
        z = x - np.where(np.isfinite(m), m, 0)  # scipy's shift: infinite maxima shift by 0
        return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))

    return SimpleNamespace(logsumexp=logsumexp, softmax=softmax, log_softmax=log_softmax)


def reference():
    """``(namespace, description)`` of the reference implementation."""
    try:
        import scipy
        import scipy.special
    except ImportError:
        return _numpy_reference(), "max-shifted numpy (scipy is not installed)"
    return scipy.special, f"scipy.special {scipy.__version__}"


def _agree(got, want, scale=1.0):
    """'' when got matches want (shape, dtype, specials, values), else why not."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != {want.dtype}"
    tol = 1e-5 if got.dtype == np.float32 else 1e-12
    g, w = got.astype(np.float64), want.astype(np.float64)
    special = ~np.isfinite(w)
    if not np.array_equal(g[special], w[special], equal_nan=True):
        return f"specials differ: {g[special][:4]} vs {w[special][:4]}"
    if not np.all(np.isfinite(g[~special])):
        return "non-finite where the reference is finite"
    err = np.abs(g[~special] - w[~special])
    bad = err > tol * (np.abs(w[~special]) + scale)
    if np.any(bad):
        return f"max abs error {err.max():.3g} (tolerance {tol:g} relative)"
    return ""


def _random_cases():
    """(label, array, axis) for float32 / float64 over axes, layouts and kernel paths."""
    rng = np.random.default_rng(20240601)
    cases = []
    for dt in (np.float32, np.float64):
        n = dt.__name__

        def r(*shape, dt=dt):
            return (5.0 * rng.standard_normal(shape)).astype(dt)

        cases += [
            (f"{n} (7, 300) axis=-1", r(7, 300), -1),
            (f"{n} (7, 300) axis=0", r(7, 300), 0),
            (f"{n} (5, 40, 6) axis=1", r(5, 40, 6), 1),
            (f"{n} (5, 40, 6) axis=(0, 2)", r(5, 40, 6), (0, 2)),
            (f"{n} (5, 40, 6) axis=None", r(5, 40, 6), None),
            (f"{n} (300, 7) F-order axis=-1", np.asfortranarray(r(300, 7)), -1),
            (f"{n} (40, 900)[:, ::3] strided axis=-1", r(40, 900)[:, ::3], -1),
            (f"{n} (64, 2000) axis=-1 (threads over rows)", r(64, 2000), -1),
            (f"{n} (1, 300000) axis=-1 (one split row)", r(1, 300_000), -1),
            (f"{n} (16, 700, 32) axis=1 (column blocks)", r(16, 700, 32), 1),
        ]
    return cases


def _special_checks(impl, ref):
    """(label, thunk returning '' or a reason) for the special values and classics."""
    big = np.array([1000.0, 1001.0, 1002.0])
    checks = []

    def same(fn_name, x, **kw):
        def run():
            got = getattr(impl, fn_name)(np.array(x), **kw)
            want = getattr(ref, fn_name)(np.array(x), **kw)
            if isinstance(want, tuple):
                return _agree(got[0], want[0]) or _agree(got[1], want[1])
            finite = np.abs(np.asarray(x, dtype=float))
            finite = finite[np.isfinite(finite)]
            return _agree(got, want, scale=float(finite.max(initial=1.0)))

        return run

    def naive_is_nan():
        with np.errstate(over="ignore", invalid="ignore"):
            naive = np.exp(big) / np.exp(big).sum()
        return "" if np.all(np.isnan(naive)) else "expected naive softmax to overflow"

    def exact_tiny():
        got = impl.logsumexp([0.0, -40.0])
        return "" if got == 4.248354255291589e-18 else f"got {float(got)!r}"

    def closed_form():
        got = float(impl.logsumexp(big))
        want = 1002.0 + math.log1p(math.exp(-1.0) + math.exp(-2.0))
        return "" if abs(got - want) <= 4e-13 else f"got {got!r}, want {want!r}"

    checks += [
        ("softmax([1000, 1001, 1002]) (naive exp(x)/sum is nan)", same("softmax", big)),
        ("naive numpy softmax([1000, 1001, 1002]) is nan (the classic overflow)", naive_is_nan),
        ("log_softmax([1000, 1001, 1002])", same("log_softmax", big)),
        ("logsumexp([1000, 1001, 1002]) == 1002 + log1p(e^-1 + e^-2)", closed_form),
        ("logsumexp([0, -40]) == 4.248354255291589e-18 (not 0.0)", exact_tiny),
    ]
    inf, nan = np.inf, np.nan
    specials = {
        "all -inf row": [[-inf, -inf, -inf], [0.0, 1.0, 2.0]],
        "+inf present": [[inf, 1.0, 2.0], [inf, inf, 0.0]],
        "nan present": [[nan, 1.0, 2.0], [-inf, nan, inf]],
        "mixed -inf": [[-inf, 0.0, -40.0], [-inf, -inf, 3.0]],
    }
    for what, x in specials.items():
        for fn in OPS:
            checks.append((f"{fn}: {what}, axis=-1", same(fn, x, axis=-1)))
    checks.append(
        (
            "logsumexp(b=[1, -2, 1], return_sign=True)",
            same("logsumexp", [1.0, 2.0, 3.0], b=[1.0, -2.0, 1.0], return_sign=True),
        )
    )
    checks.append(
        (
            "logsumexp([inf, inf], b=[1, -1]) is nan",
            same("logsumexp", [inf, inf], b=[1.0, -1.0]),
        )
    )
    return checks


def run_checks(impl=fastlse, ref=None, file=None):
    """Compare ``impl`` (fastlse by default) with ``ref`` (scipy.special); True if all pass.

    Prints one ``PASS``/``FAIL`` line per check to ``file`` (stdout by default).
    ``impl`` is any object with ``logsumexp``, ``softmax`` and ``log_softmax``.
    """
    file = sys.stdout if file is None else file
    if ref is None:
        ref, _ = reference()
    results = []

    def report(label, reason):
        results.append(not reason)
        status = "PASS" if not reason else "FAIL"
        print(f"  {status}  {label}" + (f": {reason}" if reason else ""), file=file)

    def attempt(thunk):
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                return thunk()
        except Exception as e:  # a crash is a failure, reported, not raised
            return f"raised {type(e).__name__}: {e}"

    for label, thunk in _special_checks(impl, ref):
        report(label, attempt(thunk))

    cases = _random_cases()
    for fn in OPS:
        for dt in ("float32", "float64"):
            mine = [c for c in cases if c[0].startswith(dt)]
            reasons = []
            for label, x, axis in mine:
                variants = [{}, {"keepdims": True}] if fn == "logsumexp" else [{}]
                for kw in variants:

                    def thunk(fn=fn, x=x, axis=axis, kw=kw):
                        got = getattr(impl, fn)(x, axis=axis, **kw)
                        want = getattr(ref, fn)(x, axis=axis, **kw)
                        return _agree(got, want, scale=float(np.max(np.abs(x))))

                    reason = attempt(thunk)
                    if reason:
                        reasons.append(f"{label[len(dt) + 1 :]} {kw or ''}: {reason}")
            more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
            report(
                f"{fn} {dt}: {len(mine)} random arrays (axes, layouts, kernel paths)",
                "; ".join(reasons[:3]) + more,
            )
    return all(results)


# =============================================================================
# peers (fastlse/bench/peers.py, shared with the asv suite)
# =============================================================================
def _have(name):
    return _peers.available(name)


#: this table's names -> the peer table's (asv parameter values)
_PEER_NAMES = {"numpy": "numpy_naive"}
_OP_NAMES = {"cross_entropy+grad": "cross_entropy_grad"}


def make_peer(peer, op, x, axis, y=None):
    """A zero-argument callable computing ``op`` with ``peer``, or None if it has none."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}")
    op = _OP_NAMES.get(op, op)
    if peer == "limit":
        try:
            return _peers.make_limit(op, x, axis)
        except NotImplementedError:
            return None
    args = (x, axis, y) if op in _peers.TARGET_OPS else (x, axis)
    try:
        return _peers.make(op, _PEER_NAMES.get(peer, peer), *args)
    except NotImplementedError:
        return None


# =============================================================================
# timing
# =============================================================================
def time_row(fns, min_calls, max_calls, budget):
    """Best time per callable, peers interleaved round-robin.

    Each callable gets at least ``min_calls`` timed calls and at most
    ``max_calls``, and stops once it has spent ``budget`` seconds; a slow one
    (over ``2 * budget`` a call) stops after two calls.  First calls are the
    caller's business (see ``run_table``).
    """
    best = dict.fromkeys(fns, math.inf)
    calls = dict.fromkeys(fns, 0)
    spent = dict.fromkeys(fns, 0.0)
    active = list(fns)
    while active:
        for name in active:
            t0 = time.perf_counter()
            fns[name]()
            t = time.perf_counter() - t0
            best[name] = min(best[name], t)
            calls[name] += 1
            spent[name] += t
        active = [
            n
            for n in active
            if calls[n] < max_calls
            and (calls[n] < min_calls or spent[n] < budget)
            and not (calls[n] >= 2 and spent[n] >= 4 * budget)
        ]
    return best


def _ms(t):
    if t is None:
        return "-"
    ms = t * 1e3
    digits = 3 if ms < 1 else 2 if ms < 10 else 1 if ms < 100 else 0
    return f"{ms:.{digits}f}"


def _versions():
    out = [f"numpy {np.__version__}"]
    for name in ("scipy", "torch", "jax"):
        if _have(name):
            mod = __import__(name)
            out.append(f"{name} {mod.__version__}")
        else:
            out.append(f"{name} not installed")
    return ", ".join(out)


def _cpu_name():
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:
        return "not started yet"


def machine():
    """The CPU, its logical CPUs, and numba's threads and layer (one line)."""
    return (
        f"{_cpu_name()}, {os.cpu_count()} logical CPUs; numba {numba.get_num_threads()} "
        f"threads, layer {_threading_layer()}"
    )


def header(file):
    fastlse.logsumexp(np.zeros((64, 4096)), axis=-1)  # start numba's threads: name the layer
    print(
        f"machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}; python {platform.python_version()}",
        file=file,
    )
    print(
        f"fastlse {fastlse.__version__}, numba {numba.__version__}: "
        f"{numba.get_num_threads()} threads, layer {_threading_layer()}; {_versions()}",
        file=file,
    )
    print(f"vector ISA: {_vector_isa()}; peers on the CPU: {_peer_devices()}", file=file)
    print(
        f"torch runs on {numba.get_num_threads()} threads (numba's count); jax on XLA's "
        "own pool (all cores); numpy = max-shifted naive numpy",
        file=file,
    )


def _vector_isa():
    """The widest x86 vector extension numba compiles for (NUMBA_CPU_NAME /
    NUMBA_CPU_FEATURES when set, else the host), and the target's name."""
    from llvmlite import binding as ll

    name = os.environ.get("NUMBA_CPU_NAME") or ll.get_host_cpu_name()
    feats = os.environ.get("NUMBA_CPU_FEATURES")
    if feats is None and not os.environ.get("NUMBA_CPU_NAME"):
        feats = ll.get_host_cpu_features().flatten()
    have = {f[1:] for f in (feats or "").split(",") if f.startswith("+")}
    for isa in ("avx512f", "avx2", "avx", "sse4.2", "sse2", "neon"):
        if isa in have:
            return f"{isa} (target {name})"
    return f"the baseline of target {name}"


def _peer_devices():
    """Where the torch and jax peers run: this table is CPU against CPU."""
    out = []
    if _have("torch"):
        out.append(f"torch {_peers.torch_tensor(np.zeros(1)).device}")
    if _have("jax"):
        jax = _peers._jax()
        out.append(f"jax {_peers.jax_cpu(jax)}")
    return ", ".join(out) or "none installed"


def table_calls(quick):
    """(min_calls, max_calls, budget) of ``time_row`` for the table's rows."""
    return (3, 5, 0.05) if quick else (3, 7, 0.15)


def table_inputs(rng, shape, axis, dtype):
    """A row's logits (3 x standard normal, in dtype) and class-index targets
    along ``axis``, drawn from rng."""
    x = (3.0 * rng.standard_normal(shape)).astype(dtype)
    y_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    return x, rng.integers(0, shape[axis], size=y_shape)


def run_table(ops, shapes, peers, quick, file):
    """Print the timing table; returns the list of (op, shape, dtype, {peer: s})."""
    min_calls, max_calls, budget = table_calls(quick)
    rng = np.random.default_rng(0)
    cols = [p for p in peers if p in ("fastlse", "numpy", "limit") or _have(p)]
    w = 9
    title = (
        f"{'op':<19}{'shape':<20}{'dtype':<8}"
        + "".join(f"{p:>{w}}" for p in cols)
        + f"{'scipy/fastlse':>15}  {'best peer/fastlse':<19}"
        + ("fastlse/limit" if "limit" in cols else "")
    )
    print(
        f"\ntimes in ms: best of {min_calls}-{max_calls} calls (2 for a slow peer), after an "
        "untimed first call (scipy and numpy: on a tiny input, they compile nothing)",
        file=file,
    )
    print(title, file=file)
    print("-" * len(title), file=file)
    rows = []
    data = {}
    warmed = set()
    for op in ops:
        print("", file=file)
        for name in shapes:
            full, small, axis = SHAPES[name]
            shape = small if quick else full
            label = f"{'x'.join(map(str, shape))} ax{axis}"
            for dt in ("float32", "float64"):
                if (name, dt) not in data:
                    data[name, dt] = table_inputs(rng, shape, axis, dt)
                x, y = data[name, dt]
                if (op, dt, len(shape)) not in warmed:  # lazy imports, dispatch caches
                    warmed.add((op, dt, len(shape)))
                    tiny = np.zeros((2,) * len(shape), dtype=dt)
                    tiny_y = np.zeros((2,) * (len(shape) - 1), dtype=np.int64)
                    for p in cols:
                        f = None if p in WARM_ON_INPUT else make_peer(p, op, tiny, axis, tiny_y)
                        if f is not None:
                            f()
                fns = {}
                for p in cols:
                    f = make_peer(p, op, x, axis, y)
                    if f is not None:
                        fns[p] = f
                for p, f in fns.items():
                    if p in WARM_ON_INPUT:
                        f()  # the first call (compilation, thread pools) is never timed
                best = time_row(fns, min_calls, max_calls, budget)
                del fns
                rows.append((op, name, dt, best))
                fl = best["fastlse"]
                cells = "".join(f"{_ms(best.get(p)):>{w}}" for p in cols)
                sp, bst = _ratio_cells(best)
                lim = ""
                if "limit" in best:
                    kind = _peers.LIMITS[_OP_NAMES.get(op, op)]
                    lim = f"{fl / best['limit']:.2f}x {kind}"
                print(
                    f"{op:<19}{label:<20}{dt:<8}{cells}{sp:>15}  {bst:<19}{lim}".rstrip(),
                    file=file,
                    flush=True,
                )
    summary(rows, file)
    return rows


def _ratio_cells(best):
    """The row's "scipy/fastlse" and "best peer/fastlse" cells from its best
    times by column (the limit proxy is not a peer)."""
    fl = best["fastlse"]
    sp = f"{best['scipy'] / fl:.1f}x" if "scipy" in best else "-"
    peers = {p: t for p, t in best.items() if p not in ("fastlse", "limit")}
    if not peers:
        return sp, "-"
    bp = min(peers, key=peers.get)
    return sp, f"{peers[bp] / fl:.2f}x {bp}"


def summary(rows, file):
    """Geometric mean and count of best peer / fastlse over the rows; fastlse / limit ranges."""
    ratios = []
    limits = {}
    for op, _, dt, best in rows:
        peer_times = [t for p, t in best.items() if p not in ("fastlse", "limit")]
        if peer_times:
            ratios.append(min(peer_times) / best["fastlse"])
        if "limit" in best:
            key = (_peers.LIMITS[_OP_NAMES.get(op, op)], op, dt)
            limits.setdefault(key, []).append(best["fastlse"] / best["limit"])
    if ratios:
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        print(
            f"\nbest peer / fastlse over {len(ratios)} rows: geometric mean {geo:.2f}x, "
            f"{sum(r >= 2 for r in ratios)} rows at 2x or more, "
            f"{sum(r < 1 for r in ratios)} below 1x "
            f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)",
            file=file,
        )
    if limits:
        print(
            "fastlse / limit proxy (1x = as fast as memory allows; min - max over the shapes):",
            file=file,
        )
        for (kind, op, dt), v in limits.items():
            print(f"  {op:<19}{dt:<8} {min(v):.2f}x - {max(v):.2f}x the {kind}", file=file)


#: small inputs timed per call (shape, axis): see ``small_table``
SMALL_SHAPES = (((10,), -1), ((32, 10), -1), ((128, 100), -1))


def _per_call(f, target=2e-3):
    """Best mean time of one call over 5 rounds of about ``target`` seconds."""
    t0 = time.perf_counter()
    f()
    first = max(time.perf_counter() - t0, 1e-7)
    n = max(1, min(2000, int(target / first)))
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def small_table(ops, peers, file):
    """Per-call microseconds on small inputs (float32): where planning and
    dispatch cost more than the arithmetic; no threads start for any of them."""
    cols = [p for p in peers if p in ("fastlse", "numpy") or (p != "limit" and _have(p))]
    w = 9
    print(
        "\nsmall inputs, float32: microseconds per call (best of 5 rounds of repeated calls)",
        file=file,
    )
    title = (
        f"{'op':<19}{'shape':<12}"
        + "".join(f"{p:>{w}}" for p in cols)
        + f"{'scipy/fastlse':>15}  best peer/fastlse"
    )
    print(title, file=file)
    print("-" * len(title), file=file)
    rng = np.random.default_rng(1)
    for op in ops:
        for shape, axis in SMALL_SHAPES:
            if op in XENT_OPS and len(shape) < 2:
                continue
            x, y = table_inputs(rng, shape, axis, np.float32)
            best = {}
            for p in cols:
                f = make_peer(p, op, x, axis, y)
                if f is not None:
                    f()  # compilation, lazy imports, thread pools: never timed
                    best[p] = _per_call(f)
            cells = "".join(
                f"{best[p] * 1e6:>{w}.1f}" if p in best else f"{'-':>{w}}" for p in cols
            )
            sp, bst = _ratio_cells(best)
            label = "x".join(map(str, shape))
            print(f"{op:<19}{label:<12}{cells}{sp:>15}  {bst}", file=file, flush=True)


# =============================================================================
# cold start
# =============================================================================
_COLD = """
import time
t0 = time.perf_counter()
import fastlse
t1 = time.perf_counter()
import numpy as np
x = np.random.default_rng(0).standard_normal((1000, 1000))
t2 = time.perf_counter()
fastlse.logsumexp(x, axis=-1)
t3 = time.perf_counter()
fastlse.logsumexp(x[0, :10])
t4 = time.perf_counter()
print(t1 - t0, t3 - t2, t4 - t3)
"""


def _cache_files():
    """Cached fastlse kernels on disk: (count, where)."""
    d = os.environ.get("NUMBA_CACHE_DIR")
    if d:
        files = glob.glob(os.path.join(d, "**", "*.nbi"), recursive=True)
        return sum("fastlse" in f for f in files), d
    d = os.path.join(os.path.dirname(fastlse.__file__), "__pycache__")
    return len(glob.glob(os.path.join(d, "*.nbi"))), d


def _fresh_process(env=None, code=_COLD):
    """The numbers ``code`` prints, run in a new interpreter (None if it fails)."""
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if res.returncode != 0:
        return None
    return [float(v) for v in res.stdout.split()]


def cold_start(with_cold_cache, file):
    print("\ncold start, each in a fresh process (interpreter start not included):", file=file)
    cache_on = os.environ.get("FASTLSE_CACHE", "1").lower() not in ("0", "false", "no", "off")
    n, where = _cache_files()
    runs = []
    if not cache_on:
        runs.append(("numba cache off (FASTLSE_CACHE=0)", None))
    else:
        runs.append((f"cache as found ({n} index files in {where})", None))
        runs.append(("warm cache (second run)", None))
    if with_cold_cache:
        runs.append(("cold: empty NUMBA_CACHE_DIR, everything compiles", "cold"))
    for label, kind in runs:
        if kind == "cold":
            with tempfile.TemporaryDirectory() as d:
                t = _fresh_process({"NUMBA_CACHE_DIR": d})
        else:
            t = _fresh_process()
        if t is None:
            print(f"  {label}: the subprocess failed", file=file)
            continue
        print(
            f"  {label}: import fastlse {t[0]:.2f} s, first logsumexp (1000x1000 float64,"
            f" threads) {t[1]:.2f} s, then a 10-element call {t[2] * 1e3:.1f} ms",
            file=file,
        )


# =============================================================================
# main
# =============================================================================
def _pick(text, allowed, what):
    if text is None:
        return list(allowed)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    bad = [c for c in chosen if c not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return chosen


def _parser(all_ops):
    p = argparse.ArgumentParser(prog="python -m fastlse", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    p.add_argument("--ops", help=f"comma-separated subset of {','.join(all_ops)}")
    p.add_argument("--shapes", help=f"comma-separated subset of {','.join(SHAPES)}")
    p.add_argument("--peers", help=f"comma-separated subset of {','.join(PEERS[1:])}")
    p.add_argument("--check-only", action="store_true", help="run the self-check only")
    p.add_argument("--no-check", action="store_true", help="skip the self-check")
    p.add_argument("--no-cold", action="store_true", help="skip the fresh-process timings")
    p.add_argument("--plot", metavar="FILE", help="draw the timings into FILE (matplotlib)")
    p.add_argument(
        "--threads",
        metavar="COUNTS",
        help="instead of the table, time fastlse on each of these comma-separated thread "
        "counts (and torch on the last): fastlse/bench/sweep.py",
    )
    p.add_argument(
        "--precompile",
        action="store_true",
        help="compile every kernel into numba's on-disk cache and exit (--ops: a subset "
        f"of {','.join(PRECOMPILE_OPS)})",
    )
    p.add_argument("--dtypes", help="with --precompile: comma-separated float32,float64")
    return p


def _precompile(args):
    ops = _pick(args.ops, PRECOMPILE_OPS, "op")
    dtypes = _pick(args.dtypes, ("float32", "float64"), "dtype")
    print(f"fastlse {fastlse.__version__}: precompiling {', '.join(dtypes)} kernels", flush=True)
    times = fastlse.precompile(dtypes=dtypes, ops=ops, verbose=True)
    pkg = os.path.dirname(fastlse.__file__)
    where = os.environ.get("NUMBA_CACHE_DIR") or f"the __pycache__ folders under {pkg}"
    print(f"precompile: {sum(times.values()):.0f} s in all; numba's cache: {where}")
    return 0


def main(argv=None):
    has_xent = hasattr(fastlse, "cross_entropy")
    all_ops = OPS + (XENT_OPS if has_xent else ())
    p = _parser(all_ops)
    args = p.parse_args(argv)
    if args.plot and not _plot.available():
        p.error(f"--plot needs matplotlib: {_plot.EXTRA}")
    if args.dtypes and not args.precompile:
        p.error("--dtypes goes with --precompile")
    if args.precompile:
        return _precompile(args)
    ops = _pick(args.ops, all_ops, "op")
    shapes = _pick(args.shapes, SHAPES, "shape")
    peers = ["fastlse", *_pick(args.peers, PEERS[1:], "peer")]
    out = sys.stdout
    if args.threads is not None:
        from . import sweep

        counts = sweep.parse_counts(args.threads)

    print(f"fastlse {fastlse.__version__} self-check and benchmark", file=out)
    if not args.no_check:
        ref, desc = reference()
        print(f"\nself-check against {desc}:", file=out)
        ok = run_checks(fastlse, ref, out)
        print(f"self-check: {'all PASS' if ok else 'FAILED'}", file=out, flush=True)
        if not ok:
            return 1
    if args.check_only:
        return 0

    print("", file=out)
    header(out)
    t0 = time.perf_counter()
    if args.threads is not None:
        sweep.run_sweep(ops, shapes, counts, args.quick, out)
        print(f"\n(timings took {time.perf_counter() - t0:.0f} s)", file=out)
        return 0
    rows = run_table(ops, shapes, peers, args.quick, out)
    if args.plot:
        _draw(rows, args.plot, args.quick, out)
    small_table(ops, peers, out)
    if "torch" in peers and "cross_entropy+grad" in ops and _have("torch"):
        train_step_table(args.quick, out)
    if not args.no_cold:
        cold_start(not args.quick, out)
    print(f"\n(timings took {time.perf_counter() - t0:.0f} s)", file=out)
    return 0


def train_step_table(quick, file):
    """One training step of a linear head with fastlse.torch's loss and torch's."""
    from . import train_step

    shape = dict(batch=512, classes=8192 if quick else 32768, hidden=256)
    print(f"\none training step, torch, float32, linear head {shape}:", file=file)
    for part, what in (("loss", "loss forward + backward"), ("step", "head + loss + backward")):
        best = train_step.time_steps(part, repeat=3 if quick else 7, **shape)
        ratio = best["torch"] / best["fastlse"]
        print(f"  {what:24s} fastlse.torch {_ms(best['fastlse']):>7s} ms  torch "
              f"{_ms(best['torch']):>7s} ms  {ratio:5.2f}x", file=file)  # fmt: skip


def _draw(rows, path, quick, file):
    labels = {n: f"{n} {'x'.join(map(str, s[1 if quick else 0]))}" for n, s in SHAPES.items()}
    title = f"fastlse {fastlse.__version__} against its peers on {machine()}"
    _plot.plot(rows, path, title, labels)
    print(f"\nplot of the table: {path}", file=file)


if __name__ == "__main__":
    sys.exit(main())
