"""scipy's own test file for logsumexp / softmax / log_softmax, run on fastlse.

The installed ``scipy/special/tests/test_logsumexp.py`` runs in a pytest of
its own (its conftest brings the ``xp`` fixtures) with the plugin
``scipy_suite_plugin`` binding fastlse's functions over the module's names.
Every test must pass; a scipy upgrade that adds tests runs them too.
"""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("scipy.special")

HERE = os.path.dirname(os.path.abspath(__file__))


def test_scipy_logsumexp_suite_passes_on_fastlse(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's options
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH")]))
    cmd = [
        sys.executable, "-m", "pytest", "--pyargs", "scipy.special.tests.test_logsumexp",
        "-q", "-s", "-p", "no:cacheprovider", "-p", "scipy_suite_plugin", "-p", "no:xdist",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    # the plugin really replaced scipy's functions (3 names in one module)
    assert "fastlse-swapped-names: 3" in out, out[-3000:]
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= 407, out[-3000:]
    assert " failed" not in out and " error" not in out, out[-3000:]
