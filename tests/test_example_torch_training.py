"""The torch training example reaches the same accuracy with fastlse's loss as with torch's."""

import pytest
from example_loader import load_example

pytest.importorskip("sklearn")
pytest.importorskip("torch")


def test_example_trains_like_torch(capsys):
    acc = load_example("torch_training").main(["--epochs", "4", "--label-smoothing", "0.1"])
    assert "test accuracy" in capsys.readouterr().out
    assert acc["torch"] > 0.9  # chance is 0.1
    # the same initial weights and batches; gradients equal to float32 rounding
    assert abs(acc["fastlse"] - acc["torch"]) <= 0.01, acc
