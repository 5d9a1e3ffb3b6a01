"""Concurrency: Python threads calling at once, fork after use, thread control."""

import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest
from conftest import slow

import fastlse

sp = pytest.importorskip("scipy.special")


def test_eight_python_threads_at_once(rng):
    # big enough for the parallel kernels: each call enters a parallel region
    xs = [rng.standard_normal((256, 400)) * (k + 1) for k in range(8)]
    refs = [sp.logsumexp(x, axis=1) for x in xs]
    srefs = [sp.softmax(x, axis=0) for x in xs]
    fastlse.logsumexp(xs[0], axis=1)  # compile outside the race
    fastlse.softmax(xs[0], axis=0)
    errors = []
    barrier = threading.Barrier(8)

    def work(k):
        try:
            barrier.wait()
            for _ in range(20):
                np.testing.assert_allclose(fastlse.logsumexp(xs[k], axis=1), refs[k], rtol=1e-13)
                np.testing.assert_allclose(fastlse.softmax(xs[k], axis=0), srefs[k], rtol=1e-13)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import numpy as np
    import fastlse
    from scipy.special import logsumexp

    def job(seed):
        x = np.random.default_rng(seed).standard_normal((300, 500))
        return float(np.max(np.abs(fastlse.logsumexp(x, axis=1) - logsumexp(x, axis=1))))

    if __name__ == "__main__":
        x = np.random.default_rng(0).standard_normal((300, 500))
        fastlse.logsumexp(x, axis=1)          # the parent starts its thread pool
        fastlse.softmax(x, axis=0)
        with mp.get_context("fork").Pool(2) as pool:
            errs = pool.map_async(job, range(6)).get(timeout=120)
        assert max(errs) < 1e-12, errs
        print("FORK-OK")
    """
)


def test_fork_pool_after_parent_used_kernels(tmp_path):
    script = tmp_path / "fork_check.py"
    script.write_text(FORK_SCRIPT)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "FORK-OK" in res.stdout


def test_num_threads_context(rng):
    import numba

    x = rng.standard_normal((300, 400))
    before = numba.get_num_threads()
    with fastlse.num_threads(1):
        assert numba.get_num_threads() == 1
        np.testing.assert_allclose(
            fastlse.logsumexp(x, axis=1), sp.logsumexp(x, axis=1), rtol=1e-13
        )
    assert numba.get_num_threads() == before
    with pytest.raises(ValueError, match="n"):
        with fastlse.num_threads(0):
            pass


def test_respects_numba_set_num_threads(rng):
    import numba

    x = rng.standard_normal((300, 400))
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        np.testing.assert_allclose(fastlse.softmax(x, axis=1), sp.softmax(x, axis=1), rtol=1e-13)
    finally:
        numba.set_num_threads(before)


def _recorder(ran, f, key):
    def record(*args):
        ran.append(key)
        return f(*args)

    return record


@pytest.fixture
def twins_run(monkeypatch):
    """The (kernel name, "serial" / "parallel") of every Kernel call made."""
    from fastlse.kernels.threads import KERNELS

    ran = []
    for k in KERNELS:
        for twin in ("serial", "parallel"):
            rec = _recorder(ran, getattr(k, twin), (k.py_func.__name__, twin))
            monkeypatch.setattr(k, twin, rec)
    return ran


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one thread")
@pytest.mark.parametrize(
    ("shape", "twin"),
    [
        ((128, 100), "parallel"),  # 128 * (100 + 32) = 16896 >= 16384 (also small-C rows)
        ((128, 64), "serial"),  # 128 * 96 = 12288: the threads would cost more
        ((1000, 10), "parallel"),  # narrow rows: 1000 * (10 + 8)
        ((1, 20000), "serial"),  # one row: no other thread would have work
    ],
)
def test_threads_start_by_work_of_rows(rng, twins_run, shape, twin):
    """Small calls go on the threads from ``PARALLEL_MIN_WORK`` elements, a
    row counting some more (``_routes.rows_work``), whatever the op; each
    result as scipy's / torch's."""
    from fastlse import _config

    if _config.PARALLEL_MIN_WORK != 16384:
        pytest.skip("FASTLSE_PARALLEL_MIN_WORK is set")
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, shape[1], shape[0])
    with fastlse.num_threads(2):
        res = [
            fastlse.logsumexp(x, axis=1),
            fastlse.softmax(x, axis=1),
            fastlse.log_softmax(x, axis=1),
            fastlse.cross_entropy(x, y, reduction="none"),
        ]
    ref_lse = sp.logsumexp(x.astype(np.float64), axis=1)
    refs = [ref_lse, sp.softmax(x.astype(np.float64), axis=1)]
    refs += [sp.log_softmax(x.astype(np.float64), axis=1)]
    refs += [ref_lse - x[np.arange(shape[0]), y]]
    for r, ref in zip(res, refs):
        np.testing.assert_allclose(r, ref, rtol=2e-6, atol=2e-6)
    # (cross-entropy's target check counts targets, not elements: serial)
    ran = [t for name, t in twins_run if name != "check_targets"]
    assert len(ran) == 4 and set(ran) == {twin}, twins_run


def test_import_compiles_nothing():
    code = (
        "import fastlse, fastlse.kernels.drivers as P\n"
        "ks = [v for v in vars(P).values() if isinstance(v, P.Kernel)]\n"
        "assert ks and all(not k.serial.signatures and not k.parallel.signatures for k in ks)\n"
        "print('LAZY-OK')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "LAZY-OK" in res.stdout


@slow
def test_many_processes_start_at_once(tmp_path):
    # cold cache in a private dir: every process compiles and writes at once
    code = (
        "import numpy as np, fastlse\n"
        "x = np.arange(200_000.0).reshape(400, 500) / 1e5\n"
        "r = fastlse.logsumexp(x, axis=1)\n"
        "m = x.max(axis=1)\n"
        "ref = m + np.log(np.exp(x - m[:, None]).sum(axis=1))\n"
        "assert np.allclose(r, ref, rtol=1e-13), 'wrong'\n"
        "print('PROC-OK')\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
        assert b"PROC-OK" in out
