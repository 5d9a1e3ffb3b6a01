"""The torch training example reaches the same accuracy with fastlse's loss as with torch's."""

import importlib.util
import pathlib

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "torch_training.py"


def load_example():
    spec = importlib.util.spec_from_file_location("torch_training_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_trains_like_torch(capsys):
    acc = load_example().main(["--epochs", "4", "--label-smoothing", "0.1"])
    assert "test accuracy" in capsys.readouterr().out
    assert acc["torch"] > 0.9  # chance is 0.1
    # the same initial weights and batches; gradients equal to float32 rounding
    assert abs(acc["fastlse"] - acc["torch"]) <= 0.01, acc
