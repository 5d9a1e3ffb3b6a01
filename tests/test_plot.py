"""``python -m fastlse --plot``: the picture of a table, and a clear error without
matplotlib.  Synthetic rows: nothing is timed."""

import sys

import pytest

from fastlse.bench import cli
from fastlse.bench import plot as bench_plot

ROWS = [
    (op, shape, dt, {"fastlse": 1e-3, "scipy": 8e-3, "numpy": 5e-3, "torch": 2e-3, "limit": 6e-4})
    for op in ("logsumexp", "softmax", "cross_entropy+grad")
    for shape in ("wide", "mid")
    for dt in ("float32", "float64")
]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "speed.png"
    bench_plot.plot(ROWS, path, "test machine, 2 logical CPUs", {"wide": "wide 1024x1000"})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    with pytest.raises(SystemExit) as e:
        cli.main(["--quick", "--plot", str(tmp_path / "x.png")])
    assert e.value.code == 2
    assert 'pip install "fastlse[plot]"' in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
