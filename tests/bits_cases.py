"""The cases of the bits test: every op on shapes that force each of its routes.

``python tests/bits_cases.py --record`` computes the SHA-256 of every case's
output (bytes, dtype and shape of every array returned) and writes them to
``tests/bits/<cpu key>.json``; ``test_bits.py`` recomputes and compares.  The
hashes pin results bit for bit, so they hold for one CPU target only (the
vector width and FMA change the last bits): the file is keyed by numba's
target CPU name and features, and the test skips on a CPU that has no file.

Record them at a commit whose results are right, before a change that must
not alter any result (a refactoring); a change that alters results on purpose
records them again and says so in its commit message.  To record for the
baseline targets too, run the script with ``NUMBA_CPU_NAME=haswell`` and
``NUMBA_CPU_NAME=generic`` and ``NUMBA_CPU_FEATURES=""``.  A newer CPU can
record for an older one of its family: on an AMD Zen 5 host,
``NUMBA_CPU_NAME=znver4 python tests/bits_cases.py --record-as
znver4-31f64895ed`` gave the Zen 4 host's record bit for bit (the file name
keeps the Zen 4 host's features; the cases pin no BLAS result).

The hashes are computed in a fresh process whose kernels are all compiled
there (a numba cache directory of its own, empty): numba's kernels loaded
from its disk cache can differ in the last bit from the same kernels
compiled in the process (the float64 gradient of cross-entropy with
probability targets: 1 ulp; docs/threads.md), so a process that compiles
some kernels and loads others gives a mix.
"""

import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BITS_DIR = os.path.join(HERE, "bits")


def cpu_key():
    """numba's target CPU and its feature set, as a file name."""
    import llvmlite.binding as ll
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    name = config.CPU_NAME or ll.get_host_cpu_name()
    feats = get_host_cpu_features() if config.CPU_FEATURES is None else config.CPU_FEATURES
    return f"{name}-{hashlib.sha256(feats.encode()).hexdigest()[:10]}"


def digest(res):
    """SHA-256 of a result: arrays and scalars (tuples of them) with dtype and shape."""
    h = hashlib.sha256()
    for r in res if isinstance(res, tuple) else (res,):
        a = np.asarray(r)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:24]


def _data(shape, dtype, seed, scale=20.0, specials=True):
    """Random values with offsets of +-500 and special values at fixed places."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale + rng.choice([-500.0, 0.0, 500.0], size=shape)
    if specials and x.ndim >= 2 and x.shape[0] >= 4 and x.shape[-1] >= 3:
        x[0, ...] = -np.inf  # an all -inf slice (rows or columns: both reductions see one)
        x[1, ..., 1] = np.inf
        x[2, ..., 2] = np.nan
        x[3, ..., 0] = -np.inf
    return x.astype(dtype)


def _layout(x, layout):
    if layout == "C":
        return np.ascontiguousarray(x)
    if layout == "F":
        return np.asfortranarray(x)
    big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
    view = big[tuple(slice(None, None, 2) for _ in x.shape)]
    view[...] = x
    return view


#: (name, shape, axis) of the reductions; the comment says which route each
#: forces with numba's default 2 threads (the thresholds: rows of >= 32
#: elements are whole rows, narrower ones narrow blocks, transposed for
#: float32 and for float64 up to 12; a 1-D vector up to 4096 skips the
#: planning; rows of >= 65536 in a batch of < 2 * threads are pieces; a
#: middle axis is columns, folded when Q * itemsize < 128 bytes)
REDUCTION_SHAPES = [
    ("vector", (1000,), None),  # small vector
    ("vector-long", (5000,), 0),  # rows (one row, planned)
    ("rows", (64, 300), -1),  # whole rows
    ("rows-threads", (512, 200), 1),  # whole rows, parallel
    ("narrow-t", (600, 10), -1),  # transposed narrow (both dtypes)
    ("narrow", (600, 20), -1),  # narrow (float64), transposed (float32)
    ("narrow-1", (300, 1), -1),
    ("pieces", (2, 70_000), -1),  # few long rows split in pieces
    ("pieces-1row", (140_000,), None),
    ("cols", (40, 300), 0),  # columns (P = 1)
    ("cols-mid", (4, 50, 40), 1),  # columns of a middle axis
    ("folded", (2, 300, 3), 1),  # folded columns, one piece a slab
    ("folded-pieces", (1, 20_000, 4), 1),  # folded columns in pieces
    ("all", (30, 40), None),  # every axis
    ("tuple", (6, 7, 8), (0, 2)),  # a tuple of axes (a copy)
    ("empty", (3, 0), -1),
]
#: a strided input over 8 MiB is copied block by block (deferred copies)
DEFERRED = ("deferred", (1100, 1000), -1)


def reduction_cases():
    """(case id, function of no arguments) for logsumexp, softmax, log_softmax."""
    import fastlse

    cases = []
    for name, shape, axis in [*REDUCTION_SHAPES, DEFERRED]:
        for dt in (np.float32, np.float64):
            layouts = ("strided",) if name == "deferred" else ("C", "F", "strided")
            for lay in layouts:
                if name == "deferred" and dt == np.float32:
                    continue
                x = _layout(_data(shape, dt, seed=len(cases)), lay)
                for op in ("logsumexp", "softmax", "log_softmax"):
                    if op != "logsumexp" and (
                        0 in shape or (name == "deferred" and op == "log_softmax")
                    ):
                        continue
                    fn = getattr(fastlse, op)
                    cid = f"{op}/{name}/{np.dtype(dt).name}/{lay}"
                    cases.append((cid, lambda fn=fn, x=x, axis=axis: fn(x, axis=axis)))
                if name in ("rows", "narrow", "cols-mid", "vector"):
                    cid = f"logsumexp-sign/{name}/{np.dtype(dt).name}/{lay}"
                    cases.append(
                        (
                            cid,
                            lambda x=x, axis=axis: fastlse.logsumexp(
                                x, axis=axis, return_sign=True
                            ),
                        )
                    )
    return cases


def option_cases():
    """where=, b=, float16, ints, keepdims, out=, dask-free OnlineLogSumExp."""
    import fastlse

    x = _data((40, 50), np.float64, seed=1)
    w = np.random.default_rng(2).random(x.shape) < 0.7
    b = np.random.default_rng(3).uniform(-1, 2, x.shape)
    b[::3] = 0
    h = _data((40, 50), np.float16, seed=4, scale=2.0, specials=False) / np.float16(100)
    ints = np.random.default_rng(5).integers(-50, 50, (40, 50))
    return [
        ("lse-where", lambda: fastlse.logsumexp(x, axis=1, where=w)),
        ("softmax-where", lambda: fastlse.softmax(x, axis=1, where=w)),
        ("log_softmax-where", lambda: fastlse.log_softmax(x, axis=0, where=w)),
        ("lse-b", lambda: fastlse.logsumexp(x, axis=1, b=b, return_sign=True)),
        ("lse-b-0", lambda: fastlse.logsumexp(x, axis=0, b=b)),
        ("lse-f16", lambda: fastlse.logsumexp(h, axis=1)),
        ("softmax-f16", lambda: fastlse.softmax(h, axis=0)),
        ("lse-int", lambda: fastlse.logsumexp(ints, axis=1, keepdims=True)),
        ("softmax-int", lambda: fastlse.softmax(ints, axis=1)),
        ("online", lambda: _online(fastlse, x)),
        ("online-b", lambda: _online(fastlse, x, b)),
        ("logcumsumexp-rows", lambda: fastlse.logcumsumexp(x, axis=1)),
        ("logcumsumexp-cols", lambda: fastlse.logcumsumexp(x, axis=0, reverse=True)),
        ("logcumsumexp-long", lambda: fastlse.logcumsumexp(_data((2, 70_000), np.float32, 6))),
        ("log_sigmoid", lambda: fastlse.log_sigmoid(x)),
    ]


def _online(fastlse, x, b=None):
    acc = fastlse.OnlineLogSumExp(axis=1)
    for lo in range(0, x.shape[1], 17):
        acc.update(x[:, lo : lo + 17], b=None if b is None else b[:, lo : lo + 17])
    return acc.result(return_sign=True)


def xent_cases():
    """cross_entropy on each of its routes and options; nll_loss; linear."""
    import fastlse

    cases = []
    shapes = [
        ("rows", (64, 300), -1),
        ("small-c", (300, 10), -1),
        ("vector", (300,), -1),
        ("pieces", (2, 70_000), -1),
        ("cols", (8, 100, 64), 1),  # the column kernels
        ("cols-few", (64, 10, 2), 1),  # classes moved last
    ]
    options = {
        "plain": {},
        "grad": {"return_grad": True},
        "smooth-w": {"label_smoothing": 0.1, "weight": True, "return_grad": True},
        "lm": {"z_loss": 1e-4, "softcap": 30.0, "return_grad": True, "return_lse": True},
        "none": {"reduction": "none"},
    }
    for name, shape, axis in shapes:
        for dt in (np.float32, np.float64):
            x = _data(shape, dt, seed=len(cases), scale=3.0, specials=False)
            x = x - x.max(axis=axis, keepdims=True) / 2
            n = shape[axis]
            tshape = shape[:axis] + shape[axis + 1 :] if axis != -1 else shape[:-1]
            t = np.random.default_rng(7).integers(0, n, tshape)
            if t.ndim:
                t.flat[::7] = -100
            wts = np.random.default_rng(8).uniform(0.5, 2, n)
            for oname, opts in options.items():
                kw = dict(opts)
                if kw.pop("weight", False):
                    kw["weight"] = wts
                cid = f"cross_entropy/{name}/{np.dtype(dt).name}/{oname}"
                cases.append(
                    (
                        cid,
                        lambda x=x, t=t, axis=axis, kw=kw: fastlse.cross_entropy(
                            x, t, axis=axis, **kw
                        ),
                    )
                )
            if name in ("rows", "cols"):
                p = fastlse.softmax(_data(shape, np.float64, 9, specials=False) / 100, axis=axis)
                p = p.astype(dt)
                cid = f"cross_entropy-soft/{name}/{np.dtype(dt).name}"
                cases.append(
                    (
                        cid,
                        lambda x=x, p=p, axis=axis: fastlse.cross_entropy(
                            x, p, axis=axis, return_grad=True, label_smoothing=0.05
                        ),
                    )
                )
                lp = fastlse.log_softmax(x, axis=axis)
                cid = f"nll_loss/{name}/{np.dtype(dt).name}"
                cases.append(
                    (cid, lambda lp=lp, t=t, axis=axis: fastlse.nll_loss(lp, t, axis=axis))
                )
    # linear_cross_entropy: its matmuls are BLAS's, whose order of sums
    # depends on the BLAS build and the CPU it runs on, not on numba's
    # target; so the logits are made exact (multiples of 1/128 under 2**5:
    # any order of sums gives them) and only the loss and lse, fastlse's own
    # work, are pinned (the gradients are BLAS products)
    rng = np.random.default_rng(10)
    hid = rng.integers(-16, 17, (64, 16)) / 8.0
    wv = rng.integers(-16, 17, (500, 16)) / 16.0
    tg = rng.integers(0, 500, 64)
    for dt in (np.float32, np.float64):
        h, w = hid.astype(dt), wv.astype(dt)
        cases.append(
            (
                f"linear_cross_entropy/{np.dtype(dt).name}",
                lambda h=h, w=w: fastlse.linear_cross_entropy(
                    h, w, tg, reduction="none", z_loss=1e-4, return_lse=True, block_vocab=128
                ),
            )
        )
    return cases


def all_cases():
    return reduction_cases() + option_cases() + xent_cases()


def compute_fresh():
    """``compute`` for 1 and 2 threads in a new process whose numba cache is
    a new, empty directory (every kernel compiled there; see the docstring)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, FASTLSE_CACHE="1")
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--print"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    return json.loads(proc.stdout)


def compute(threads):
    import fastlse

    out = {}
    with fastlse.num_threads(threads):
        for cid, fn in all_cases():
            out[f"{cid}/t{threads}"] = digest(fn())
    return out


def record(key=None):
    hashes = compute_fresh()
    os.makedirs(BITS_DIR, exist_ok=True)
    path = os.path.join(BITS_DIR, f"{key or cpu_key()}.json")
    with open(path, "w") as f:
        json.dump(hashes, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{len(hashes)} hashes -> {path}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        record()
    elif sys.argv[1:2] == ["--record-as"] and len(sys.argv) == 3:
        record(sys.argv[2])
    elif sys.argv[1:] == ["--print"]:  # (compute_fresh's process)
        hashes = {}
        for threads in (1, 2):
            hashes.update(compute(threads))
        print(json.dumps(hashes))
    else:
        print(__doc__)
