"""fastlse.torch in a training step: a linear head with a 32k-class output.

``TrainStep``: the head's forward, the cross-entropy loss and ``backward()``
(batch 512, 256 hidden, 32768 classes, float32), with ``fastlse.torch``'s
loss or torch's own, at numba's thread count (``fastlse.bench.train_step``).
``part="loss"`` times the loss's forward and backward alone on fixed logits.
"""

try:
    from fastlse.bench.train_step import make_step
except ImportError:  # torch is optional
    make_step = None


class TrainStep:
    #: shape is (batch, hidden, classes)
    params = ([(512, 256, 32768)], ["fastlse", "torch"], ["step", "loss"])
    param_names = ("shape", "loss", "part")
    timeout = 300

    def setup(self, shape, loss, part):
        if make_step is None:
            raise NotImplementedError("torch is not installed")
        batch, hidden, classes = shape
        self.step = make_step(loss, part, batch=batch, classes=classes, hidden=hidden)
        self.step()  # compilation and thread pools are not timed

    def time_step(self, shape, loss, part):
        self.step()
