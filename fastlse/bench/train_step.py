"""One training step of a linear head, fastlse.torch's loss against torch's.

The step the torch issue asks for: ``logits = head(h)`` for a batch of hidden
states, the cross-entropy loss, and ``backward()`` through the loss and the
head (batch 512, 32768 classes by default).  The two losses run in the same
step on the same tensors and threads (torch at numba's thread count); the
loss's own share is timed too (forward + backward on given logits), since
the head's matmuls, identical for both, dominate the step.  Shared by
``python -m fastlse`` and the asv suite (``bench_torch.py``).
"""

import time

import torch
import torch.nn.functional as F

import fastlse.torch as ft

from .peers import equal_threads

__all__ = ["LOSSES", "make_step", "time_steps"]

#: name -> loss function with torch's signature
LOSSES = {"fastlse": ft.cross_entropy, "torch": F.cross_entropy}


def make_step(loss, part="step", batch=512, classes=32768, hidden=256, dtype=torch.float32):
    """A zero-argument callable running one step with ``LOSSES[loss]``.

    ``part="step"``: head forward, loss, backward into the head's weights;
    ``part="loss"``: the loss's forward and backward on fixed logits.
    """
    equal_threads()
    g = torch.Generator().manual_seed(0)
    h = torch.randn(batch, hidden, generator=g, dtype=dtype)
    target = torch.randint(0, classes, (batch,), generator=g)
    fn = LOSSES[loss]
    if part == "loss":
        logits = torch.randn(batch, classes, generator=g, dtype=dtype).requires_grad_()

        def loss_step():
            logits.grad = None
            fn(logits, target).backward()

        return loss_step
    head = torch.nn.Linear(hidden, classes, dtype=dtype)

    def step():
        head.zero_grad(set_to_none=True)
        fn(head(h), target).backward()

    return step


def time_steps(part="step", repeat=7, **shape):
    """Best time in seconds of each loss's step, the losses interleaved."""
    steps = {name: make_step(name, part, **shape) for name in LOSSES}
    for step in steps.values():
        step()  # compilation, thread pools
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeat):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best
