"""Multinomial logistic regression on scikit-learn's bundled digits, NumPy + fastlse only.

The model is ``logits = X @ W + b``; fastlse's ``cross_entropy(..., return_grad=True)``
gives the mean loss and d loss / d logits in one fused pass, and the chain rule
to ``W`` and ``b`` is two NumPy lines. Optimized with Adam (written out below).

    python examples/softmax_regression.py             # about 2 s, ~97% test accuracy
    python examples/softmax_regression.py --epochs 50 --label-smoothing 0.1

The digits dataset ships inside scikit-learn (no download); install it with
``pip install scikit-learn`` (the ``examples`` extra).
"""

import argparse
import time

import numpy as np

from fastlse import cross_entropy


def load(seed, dtype):
    """Standardized train / test split of the 8x8 digits (1797 images, 10 classes)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(y))
    x, y = x[idx], y[idx]
    n_test = len(y) // 5
    xtr, ytr, xte, yte = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    return ((xtr - mu) / sd).astype(dtype), ytr, ((xte - mu) / sd).astype(dtype), yte


def train(x, y, n_classes, *, epochs, lr, l2, label_smoothing, batch, seed):
    """Adam on mini-batches; returns (W, b, final training loss)."""
    rng = np.random.default_rng(seed)
    dt = x.dtype
    w = (rng.standard_normal((x.shape[1], n_classes)) * 0.01).astype(dt)
    b = np.zeros(n_classes, dtype=dt)
    params = [w, b]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    grad_buf = np.empty((batch, n_classes), dtype=dt)
    step = 0
    loss = np.nan
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for lo in range(0, len(y), batch):
            sel = order[lo : lo + batch]
            xb = x[sel]
            logits = xb @ w + b
            loss, g = cross_entropy(
                logits, y[sel], label_smoothing=label_smoothing, return_grad=True,
                out=grad_buf[: len(sel)],
            )  # fmt: skip
            grads = [xb.T @ g + l2 * w, g.sum(axis=0)]
            step += 1
            for p, gr, mi, vi in zip(params, grads, m, v):
                mi *= beta1
                mi += (1 - beta1) * gr
                vi *= beta2
                vi += (1 - beta2) * gr * gr
                mhat = mi / (1 - beta1**step)
                vhat = vi / (1 - beta2**step)
                p -= (lr * mhat / (np.sqrt(vhat) + eps)).astype(dt)
    return w, b, float(loss)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    xtr, ytr, xte, yte = load(args.seed, np.dtype(args.dtype))
    t0 = time.perf_counter()
    w, b, loss = train(
        xtr, ytr, 10, epochs=args.epochs, lr=args.lr, l2=args.l2,
        label_smoothing=args.label_smoothing, batch=args.batch, seed=args.seed,
    )  # fmt: skip
    secs = time.perf_counter() - t0
    test_loss = float(cross_entropy(xte @ w + b, yte))
    acc = float(np.mean(np.argmax(xte @ w + b, axis=1) == yte))
    print(
        f"digits: {len(ytr)} train / {len(yte)} test, {args.epochs} epochs in {secs:.2f} s; "
        f"train loss {loss:.4f}, test loss {test_loss:.4f}, test accuracy {acc:.4f}"
    )
    return acc


if __name__ == "__main__":
    main()
