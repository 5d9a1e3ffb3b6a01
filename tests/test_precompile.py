"""``fastlse.precompile``: a process started after it compiles nothing.

One small op (log_sigmoid, one kernel) in a temporary ``NUMBA_CACHE_DIR``:
process A precompiles it on one thread (so its calls run the serial kernel
alone, and the parallel twin is compiled from the serial one's signature);
process B, on two threads, calls it on a small and a large input and counts
numba's cache hits and misses over fastlse's dispatchers.  And a process
that loads float32 softmax from the cache gets the compiling one's bits.
"""

import json
import os
import subprocess
import sys

import pytest

import fastlse
from fastlse.bench import cli

#: cache hits and misses of fastlse's dispatchers in this process, as JSON
COUNT = """
import gc, json
from numba.core.dispatcher import Dispatcher
ds = [d for d in gc.get_objects() if isinstance(d, Dispatcher)
      and d.py_func.__module__.startswith("fastlse.")]
print(json.dumps([sum(sum(d.stats.cache_hits.values()) for d in ds),
                  sum(sum(d.stats.cache_misses.values()) for d in ds)]))
"""
PRECOMPILE = "import fastlse; fastlse.precompile(dtypes=['float32'], ops=['log_sigmoid'])"
CALLS = """
import numpy as np, fastlse
fastlse.log_sigmoid(np.zeros(10, np.float32))
fastlse.log_sigmoid(np.zeros(1 << 16, np.float32))  # parallel on two threads
"""


def _run(code, cache, threads):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_NUM_THREADS": str(threads)}
    env.pop("FASTLSE_CACHE", None)
    res = subprocess.run(
        [sys.executable, "-c", code + COUNT], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def test_precompiled_kernels_load_from_the_cache(tmp_path):
    hits, misses = _run(PRECOMPILE, tmp_path, threads=1)
    assert misses >= 2  # the serial kernel and its parallel twin compiled
    hits, misses = _run(CALLS, tmp_path, threads=2)
    assert misses == 0 and hits >= 2


def test_changed_package_drops_cached_kernels(tmp_path):
    # numba keys a cached kernel on its own file, so a kernel that inlined a
    # changed helper of another module would load stale: fastlse stamps every
    # module in each of its cache directories (here under NUMBA_CACHE_DIR,
    # one for fastlse/ and one for fastlse/kernels/) and drops their kernels
    # when the stamp no longer matches
    _run(CALLS, tmp_path, threads=1)
    stamps = sorted(tmp_path.glob("*/fastlse-cache-stamp.txt"))
    assert [p.parent.name.split("_")[0] for p in stamps] == ["fastlse", "kernels"]
    assert list(stamps[1].parent.glob("*.nbi"))  # kernels cached beside their stamp
    for p in stamps:
        (p.parent / "stale.nbi").write_text("")
    hits, misses = _run(CALLS, tmp_path, threads=1)
    assert misses == 0 and hits >= 1  # an unchanged package keeps its cache
    assert all((p.parent / "stale.nbi").exists() for p in stamps)
    for p in stamps:
        p.write_text("another version of the package")
    hits, misses = _run(CALLS, tmp_path, threads=1)
    assert hits == 0 and misses >= 1  # compiled again
    assert not any((p.parent / "stale.nbi").exists() for p in stamps)


def test_precompile_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown op"):
        fastlse.precompile(ops=["logsumexpp"])
    with pytest.raises(ValueError, match="unknown dtype"):
        fastlse.precompile(dtypes=["float16"])


def test_cli_precompile_flags(monkeypatch, capsys):
    seen = {}

    def fake(dtypes, ops, verbose):
        seen.update(dtypes=dtypes, ops=ops, verbose=verbose)
        return {"log_sigmoid float32": 0.5}

    monkeypatch.setattr(fastlse, "precompile", fake)
    assert cli.main(["--precompile", "--dtypes", "float32", "--ops", "log_sigmoid"]) == 0
    assert seen == {"dtypes": ["float32"], "ops": ["log_sigmoid"], "verbose": True}
    assert "precompile: 0 s in all" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown dtype"):
        cli.main(["--precompile", "--dtypes", "float16"])
    with pytest.raises(SystemExit):
        cli.main(["--dtypes", "float32"])  # --dtypes without --precompile


#: softmax of each route whose numerators it sums (rows, the vector, pieces,
#: where=), and the ops of the rows' exp-sum sweep (log_softmax, logsumexp,
#: cross-entropy's loss and gradient), float32 and float64, as hex digests of
#: the results
SOFTMAX_BITS = """
import hashlib, numpy as np, fastlse
rng = np.random.default_rng(0)
res = []
for dt in (np.float32, np.float64):
    x = (rng.standard_normal((64, 300)) * 3).astype(dt)
    long = (rng.standard_normal((2, 40000)) * 3).astype(dt)
    w = rng.random(x.shape) > 0.2
    res += [fastlse.softmax(x, axis=-1), fastlse.softmax(x[5]), fastlse.softmax(long, axis=-1),
            fastlse.softmax(x, axis=-1, where=w)]
    y = rng.integers(0, x.shape[1], x.shape[0])
    res += [fastlse.log_softmax(x, axis=-1), fastlse.logsumexp(x, axis=-1)]
    res += list(fastlse.cross_entropy(x, y, return_grad=True))
print(" ".join(hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in res))
"""


def test_cached_kernels_have_the_compiled_bits(tmp_path):
    """A process that loads softmax, log_softmax, logsumexp or cross-entropy
    (float32, float64) from the disk cache gets the bits of the process that
    compiled them: their sums of exponentials are in lanes, in the IR's
    order (a ``reassoc`` sum took each compiled copy's order: a cached
    kernel binds its own copy of the helper, a compiling process the
    helper's, and the two differed in the last bit)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("FASTLSE_CACHE", None)
    runs = []
    for _ in range(2):  # compiles, then loads
        res = subprocess.run(
            [sys.executable, "-c", SOFTMAX_BITS + COUNT],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        digests, counts = res.stdout.splitlines()[-2:]
        runs.append((digests, json.loads(counts)))
    (first, (_, compiled)), (second, (loaded, recompiled)) = runs
    assert compiled > 0 and recompiled == 0 and loaded > 0
    assert second == first
