"""The softmax-regression example trains to a sane accuracy in a few epochs."""

import pytest
from example_loader import load_example

pytest.importorskip("sklearn")


@pytest.mark.parametrize("extra", [[], ["--dtype", "float64", "--label-smoothing", "0.1"]])
def test_example_trains(capsys, extra):
    acc = load_example("softmax_regression").main(["--epochs", "8", *extra])
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert acc > 0.9  # chance is 0.1; converged runs reach ~0.97
