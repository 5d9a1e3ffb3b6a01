"""examples/dask_logsumexp.py runs (``--small``) and its numbers check out."""

import pathlib
import re
import subprocess
import sys

import pytest
from conftest import slow

pytest.importorskip("dask.array")
pytest.importorskip("distributed")
pytest.importorskip("psutil")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "dask_logsumexp.py"


@slow
def test_example_small():
    # --small with fewer rows: a 256 MiB array, 2 worker processes of 500 MiB each
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--small", "--rows", "8192", "--slice-rows", "2048"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLE.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "cluster rows of the slice equal the NumPy result: True" in out
    got, want = map(float, re.search(r": ([\d.]+) \(expected ~([\d.]+)\)", out).groups())
    assert abs(got - want) < 1e-3
    assert len(re.findall(r"peak \d+ MiB", out)) == 2
