"""The public functions are annotated: a user's script that calls them passes
``mypy --strict``, and a wrong argument type is caught.  fastlse's own
modules are checked as an installed package is (their internals are not
the user's errors); ``MYPYPATH`` points mypy at this source tree, which an
editable install hides behind an import hook."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[1]

USER = """
import numpy as np
import numpy.typing as npt

import fastlse


def user(x: npt.NDArray[np.float64], t: npt.NDArray[np.int64], flag: bool) -> float:
    lse = fastlse.logsumexp(x, axis=1, keepdims=True)
    val, sign = fastlse.logsumexp(x, b=x, return_sign=True)
    either = fastlse.logsumexp(x, return_sign=flag)
    p: npt.NDArray[np.float64] = fastlse.softmax(x, axis=-1)
    q = fastlse.log_softmax(x, axis=(0, 1), where=x > 0)
    loss, grad = fastlse.cross_entropy(x, t, return_grad=True, reduction="sum")
    acc = fastlse.OnlineLogSumExp(axis=0).update(x).merge(fastlse.OnlineLogSumExp(axis=0))
    with fastlse.num_threads(1):
        c = fastlse.logcumsumexp(x, axis=0, reverse=True)
    nll = fastlse.nll_loss(q, t, ignore_index=-1)
    h = fastlse.linear_cross_entropy(x, x, t, softcap=30.0)
    s = fastlse.log_sigmoid(x)
    secs: dict[str, float] = fastlse.precompile(dtypes=["float64"], ops=["log_sigmoid"])
    return float(np.sum(lse) + val * sign + p.sum() + q.sum() + loss + grad.sum() + acc.result()
                 + c.sum() + nll + h + np.sum(s) + np.sum(either) + secs["twins"])
"""

BAD = """
import numpy as np

import fastlse

fastlse.logsumexp(np.zeros(3), axis="last")
fastlse.softmax(np.zeros(3), out=[0.0, 0.0, 0.0])
fastlse.cross_entropy(np.zeros((2, 3)), np.zeros(2, dtype=int), reduction="avg")
with fastlse.num_threads("2"):
    pass
fastlse.precompile(ops=[1])
"""


def test_user_script_passes_mypy_strict_and_bad_calls_fail(tmp_path):
    (tmp_path / "user.py").write_text(textwrap.dedent(USER))
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    cfg = tmp_path / "mypy.ini"
    cfg.write_text("[mypy]\nstrict = True\n\n[mypy-fastlse.*]\nignore_errors = True\n")
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(cfg), "--cache-dir",
           str(tmp_path / "cache"), "user.py", "bad.py"]  # fmt: skip
    env = {"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    out = res.stdout + res.stderr
    errors = [ln for ln in out.splitlines() if ": error:" in ln]
    assert not [ln for ln in errors if ln.startswith("user.py")], out
    bad_lines = sorted({int(ln.split(":")[1]) for ln in errors if ln.startswith("bad.py")})
    assert bad_lines == [6, 7, 8, 9, 11], out
