"""The softmax-regression example trains to a sane accuracy in a few epochs."""

import importlib.util
import pathlib

import pytest

pytest.importorskip("sklearn")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "softmax_regression.py"


def load_example():
    spec = importlib.util.spec_from_file_location("softmax_regression_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("extra", [[], ["--dtype", "float64", "--label-smoothing", "0.1"]])
def test_example_trains(capsys, extra):
    acc = load_example().main(["--epochs", "8", *extra])
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert acc > 0.9  # chance is 0.1; converged runs reach ~0.97
