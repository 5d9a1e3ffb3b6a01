"""``python -m fastlse``: the self-check passes, catches a wrong implementation, and the
table is printed.  Timings are printed, never asserted."""

import io
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import slow

import fastlse
import fastlse.bench.cli as cli


@slow
def test_main_quick_runs_and_passes():
    cmd = [sys.executable, "-m", "fastlse", "--quick", "--shapes", "wide,mid"]
    cmd += ["--ops", "logsumexp,softmax"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "self-check: all PASS" in out
    assert "FAIL" not in out
    assert out.count("  PASS  ") >= 20
    assert "PASS  logsumexp([0, -40]) == 4.248354255291589e-18" in out
    assert "softmax([1000, 1001, 1002])" in out
    # the table: a header naming the machine and threads, then one row per op x shape x dtype
    assert "logical CPUs" in out and "threads" in out
    assert "vector ISA: " in out and "peers on the CPU: " in out
    assert "scipy/fastlse" in out
    assert "fastlse/limit" in out
    assert "best peer / fastlse over 8 rows: geometric mean" in out
    assert "logsumexp          float32 " in out and "x the read" in out
    assert "softmax            float64 " in out and "x the copy" in out
    lines = out.splitlines()
    rows = [ln for ln in lines if ln.startswith(("logsumexp ", "softmax ")) and " ax" in ln]
    assert len(rows) == 2 * 2 * 2, out
    assert all(r.endswith(("x read", "x copy")) for r in rows), rows
    assert any("1024x1000 ax-1" in r and "float32" in r for r in rows)
    assert any("16x1000x64 ax1" in r and "float64" in r for r in rows)
    assert "import fastlse" in out and "first logsumexp" in out
    # small inputs: microseconds per call, one row per op and small shape
    assert "small inputs, float32: microseconds per call" in out
    small = [
        ln.split() for ln in lines if ln.startswith(("logsumexp ", "softmax ")) and " ax" not in ln
    ]
    assert [r[:2] for r in small] == [
        [op, s] for op in ("logsumexp", "softmax") for s in ("10", "32x10", "128x100")
    ]
    assert all(float(r[2]) > 0 for r in small)


def _naive_logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    a = np.asarray(a, dtype=float)
    return np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims))


def _naive_softmax(x, axis=None):
    e = np.exp(np.asarray(x))
    return e / np.sum(e, axis=axis, keepdims=True)


def _crashing(x, axis=None, **kw):
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        ({"logsumexp": _naive_logsumexp}, "FAIL  logsumexp([0, -40])"),
        ({"softmax": _naive_softmax}, "FAIL  softmax([1000, 1001, 1002])"),
        ({"log_softmax": _crashing}, "raised RuntimeError: boom"),
    ],
)
def test_self_check_detects_a_wrong_implementation(wrong, expected):
    impl = SimpleNamespace(
        logsumexp=fastlse.logsumexp, softmax=fastlse.softmax, log_softmax=fastlse.log_softmax
    )
    for name, fn in wrong.items():
        setattr(impl, name, fn)
    buf = io.StringIO()
    with np.errstate(all="ignore"):
        assert cli.run_checks(impl, file=buf) is False
    assert expected in buf.getvalue()


def test_self_check_passes_for_fastlse():
    buf = io.StringIO()
    assert cli.run_checks(fastlse, file=buf) is True
    assert "FAIL" not in buf.getvalue()


def test_self_check_without_scipy_uses_numpy_reference():
    buf = io.StringIO()
    assert cli.run_checks(fastlse, ref=cli._numpy_reference(), file=buf) is True


def test_main_rejects_unknown_names():
    with pytest.raises(SystemExit, match="unknown op"):
        cli.main(["--ops", "nope"])
    with pytest.raises(SystemExit, match="unknown shape"):
        cli.main(["--shapes", "huge"])


@pytest.mark.parametrize(
    ("name", "features", "want"),
    [("haswell", "+avx2,+fma,+sse2", "avx2 (target haswell)"),
     ("skylake-avx512", "+avx512f,+avx2", "avx512f (target skylake-avx512)"),
     ("generic", "", "the baseline of target generic")],
)  # fmt: skip
def test_header_names_the_vector_isa(monkeypatch, name, features, want):
    """The table's header says which vector extension the kernels were compiled
    for: the ratios of an AVX2 and an AVX-512 machine differ."""
    monkeypatch.setenv("NUMBA_CPU_NAME", name)
    monkeypatch.setenv("NUMBA_CPU_FEATURES", features)
    assert cli._vector_isa() == want


def test_peers_run_on_the_cpu():
    """torch's tensors (and jax's arrays, where installed) are on the CPU."""
    devices = cli._peer_devices()
    if cli._have("torch"):
        assert "torch cpu" in devices
    if cli._have("jax"):
        assert "cpu" in devices.split("jax ", 1)[1].lower()


def test_thread_sweep(capsys):
    """``--threads``: a row per op x shape x dtype and the small call, a time
    per count, the speed-up, torch on the last count; numba's count is
    restored after it."""
    import numba

    counts = [1, numba.config.NUMBA_NUM_THREADS]
    before = numba.get_num_threads()
    args = ["--no-check", "--quick", "--ops", "logsumexp", "--shapes", "wide"]
    assert cli.main([*args, "--threads", ",".join(map(str, counts))]) == 0
    assert numba.get_num_threads() == before
    out = capsys.readouterr().out
    assert "thread sweep: fastlse ms on" in out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("logsumexp ")]
    assert [r[1:4] for r in rows] == [
        ["1024x1000", "ax-1", "float32"],
        ["1024x1000", "ax-1", "float64"],
        ["128x100", "ax-1", "float32"],
    ]
    ncol = len(set(counts))
    for r in rows:
        times = [float(v) for v in r[4 : 4 + ncol]]
        assert all(t > 0 for t in times)
        speedup = float(r[4 + ncol].rstrip("x"))  # of the unrounded times
        assert speedup == pytest.approx(times[0] / times[-1], rel=0.01, abs=0.01)
        if cli._have("torch"):
            assert float(r[5 + ncol]) > 0 and r[6 + ncol].endswith("x")


@pytest.mark.parametrize("counts", ["0,1", "1,x", "", "1,100000"])
def test_thread_sweep_rejects_bad_counts(counts):
    with pytest.raises(SystemExit, match="--threads: comma-separated counts from 1"):
        cli.main(["--no-check", "--threads", counts])
