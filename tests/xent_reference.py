"""The torch reference of cross_entropy with its language-model options, shared
by ``test_cross_entropy_lm`` and ``test_xent_long_rows``."""

import numpy as np


def torch_ref(x, target, axis=-1, weight=None, reduction="mean", label_smoothing=0.0,
              ignore_index=-100, z_loss=0.0, softcap=None, dtype=None):  # fmt: skip
    """(loss, grad, lse) of ``F.cross_entropy(c) + z_loss * R(keep * lse(c)**2)``
    with ``c`` the (soft-capped) logits, by autograd; ``R`` the reduction
    ("mean": divided by the number of kept rows).

    Computed in ``dtype`` (default: x's; float64 for sums over 1e5 classes,
    where torch's float32 is off by ~1e-5), returned in x's dtype.
    """
    import torch

    F = torch.nn.functional
    dt = x.dtype if dtype is None else np.dtype(dtype)
    xt = torch.tensor(np.array(x, dtype=dt, order="C"), requires_grad=True)
    one = x.ndim == 1
    xm = xt if one else torch.movedim(xt, axis, 1)
    c = xm if softcap is None else softcap * torch.tanh(xm / softcap)
    target = np.asarray(target)
    soft = target.dtype.kind == "f"
    t = torch.tensor(np.array(target, dtype=dt if soft else None, order="C"))
    if soft:
        t = t if one else torch.movedim(t, axis, 1)
    else:
        t = t.long()
    w = None if weight is None else torch.tensor(weight, dtype=xt.dtype)
    loss = F.cross_entropy(
        c, t, weight=w, reduction=reduction, label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )  # fmt: skip
    lse = torch.logsumexp(c, dim=0 if one else 1)
    keep = torch.ones_like(lse) if soft else (t != ignore_index).to(lse.dtype)
    # (no z-loss term at all without a z-loss: 0 * lse**2 is nan for a row of nan)
    zz = z_loss * keep * lse**2 if z_loss else torch.zeros_like(lse)
    if reduction == "none":
        total = loss + zz
    elif reduction == "sum":
        total = loss + zz.sum()
    else:
        total = loss + zz.sum() / keep.sum().clamp(min=1)  # (no kept row: loss is nan)
    total.sum().backward()
    return tuple(a.numpy().astype(x.dtype) for a in (total.detach(), xt.grad, lse.detach()))
