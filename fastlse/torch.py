"""fastlse for PyTorch: autograd functions and a loss module on CPU tensors.

``cross_entropy`` / ``CrossEntropyLoss`` take torch's arguments (classes on
dim 1) and run fastlse's fused kernel: the forward pass writes the loss and
the gradient in one read of the logits, and the backward pass only scales
the saved gradient by the incoming one.  ``softmax``, ``log_softmax`` and
``logsumexp`` run fastlse's kernels forward and torch's elementwise ops
backward, from the saved output where the math allows (softmax, log_softmax;
logsumexp's gradient ``exp(x - lse)`` needs the input again).

float16 and bfloat16 are computed in float32 and returned in their dtype.
Tensors must be on the CPU.  Importing this module imports torch; ``import
fastlse`` does not.

Examples
--------
>>> import torch
>>> import fastlse.torch as ft
>>> logits = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], requires_grad=True)
>>> loss = ft.cross_entropy(logits, torch.tensor([0, 2]))
>>> loss.backward()
>>> torch.allclose(logits.grad, torch.func.grad(torch.nn.functional.cross_entropy)(
...     logits.detach(), torch.tensor([0, 2])))
True
>>> ft.CrossEntropyLoss(label_smoothing=0.1)(logits, torch.tensor([0, 2]))
tensor(1.4269, grad_fn=<_CrossEntropyBackward>)
"""

from typing import Any

import numpy as np
import torch

from . import _args, _interop, losses, special

__all__ = ["CrossEntropyLoss", "cross_entropy", "log_softmax", "logsumexp", "softmax"]

_LOW = (torch.float16, torch.bfloat16)


def _tensor(a, dtype):
    """A numpy result -> a tensor of ``dtype`` (no copy where it matches)."""
    t = torch.from_numpy(np.asarray(a) if np.ndim(a) else np.array(a))
    return t if t.dtype == dtype else t.to(dtype)


def _compute(dtype):
    return torch.float32 if dtype in _LOW else dtype


def _dims(dim, ndim):
    """dim (None, int or tuple) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(d % ndim if ndim else 0 for d in dims))


def _unsqueeze(g, dims):
    for d in dims:
        g = g.unsqueeze(d)
    return g


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim):
        dims = _dims(dim, x.ndim)
        xn = _interop.numpy_of(x, "input", "logsumexp")
        lse = _tensor(special.logsumexp(xn, axis=dims, keepdims=True), _compute(x.dtype))
        ctx.save_for_backward(x, lse)
        ctx.dims, ctx.keepdim = dims, keepdim
        out = lse.to(x.dtype)
        return out if keepdim else out.squeeze(dims) if dims else out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, lse = ctx.saved_tensors
        g = g if ctx.keepdim else _unsqueeze(g, ctx.dims)
        # d lse / d x_j = exp(x_j - lse): the softmax over the reduced dims
        p = torch.exp(x.to(lse.dtype) - lse)
        return p.mul_(g.to(lse.dtype)).to(x.dtype), None, None


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, log):
        name = "log_softmax" if log else "softmax"
        fn = special.log_softmax if log else special.softmax
        y = _tensor(fn(_interop.numpy_of(x, "input", name), axis=dim), x.dtype)
        ctx.save_for_backward(y)
        ctx.dim, ctx.log, ctx.dtype = dim, log, x.dtype
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        dt = _compute(y.dtype)
        y, g = y.to(dt), g.to(dt)
        dim = ctx.dim if ctx.dim is not None else tuple(range(y.ndim))
        if ctx.log:  # d/dx of x - lse: g - softmax * sum(g)
            gx = g - torch.exp(y) * g.sum(dim, keepdim=True)
        else:  # softmax's Jacobian: y * (g - sum(g * y))
            gx = y * (g - (g * y).sum(dim, keepdim=True))
        return gx.to(ctx.dtype), None, None


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target, axis, kw):
        xn = _interop.numpy_of(x, "input", "cross_entropy")
        loss, grad = losses.cross_entropy(xn, target, axis=axis, return_grad=True, **kw)
        ctx.save_for_backward(_tensor(grad, _compute(x.dtype)))
        ctx.axis, ctx.none, ctx.dtype = axis, kw["reduction"] == "none", x.dtype
        return _tensor(loss, x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        if ctx.none:  # one loss per sample: its row of the gradient scales by g_i
            grad = grad * g.to(grad.dtype).unsqueeze(ctx.axis % grad.ndim)
        elif g.item() != 1.0:  # a scalar loss: 1 when it is the one backward() starts from
            grad = grad * g.to(grad.dtype)
        return grad.to(ctx.dtype), None, None, None


def logsumexp(input: torch.Tensor, dim: Any = None, keepdim: bool = False) -> torch.Tensor:
    """:func:`torch.logsumexp` on fastlse's kernels, with its backward.

    Parameters
    ----------
    input : Tensor
        A floating CPU tensor.
    dim : int or tuple of ints, optional
        The dims to reduce; all of them by default (torch requires one).
    keepdim : bool, optional
        Keep the reduced dims with size one.

    Returns
    -------
    Tensor
        ``log(sum(exp(input)))`` over `dim`, in `input`'s dtype.

    Examples
    --------
    >>> import torch
    >>> import fastlse.torch as ft
    >>> x = torch.tensor([[1000.0, 1000.0], [0.0, -40.0]], dtype=torch.float64)
    >>> ft.logsumexp(x, dim=1)
    tensor([1.0007e+03, 4.2484e-18], dtype=torch.float64)
    """
    _check(input, "logsumexp")
    if _graph(input):
        return _LogSumExp.apply(input, dim, keepdim)
    xn = _interop.numpy_of(input, "input", "logsumexp")
    return _tensor(special.logsumexp(xn, axis=dim, keepdims=keepdim), input.dtype)


def softmax(input: torch.Tensor, dim: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """:func:`torch.nn.functional.softmax` on fastlse's kernels, with its backward.

    Parameters
    ----------
    input : Tensor
        A floating CPU tensor.
    dim : int or tuple of ints or None
        The dim(s) normalized over (None: all of them, as in scipy).
    dtype : torch.dtype, optional
        Cast `input` to this dtype first, as torch does.

    Returns
    -------
    Tensor
        ``exp(input - logsumexp(input, dim))``, `input`'s shape and dtype.

    Examples
    --------
    >>> import torch
    >>> import fastlse.torch as ft
    >>> ft.softmax(torch.tensor([1000.0, 1000.0, -1000.0]), dim=0)
    tensor([0.5000, 0.5000, 0.0000])
    """
    return _normalize(input, dim, dtype, False)


def log_softmax(input: torch.Tensor, dim: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """:func:`torch.nn.functional.log_softmax` on fastlse's kernels, with its backward.

    Parameters
    ----------
    input : Tensor
        A floating CPU tensor.
    dim : int or tuple of ints or None
        The dim(s) normalized over (None: all of them, as in scipy).
    dtype : torch.dtype, optional
        Cast `input` to this dtype first, as torch does.

    Returns
    -------
    Tensor
        ``input - logsumexp(input, dim)``, `input`'s shape and dtype.

    Examples
    --------
    >>> import torch
    >>> import fastlse.torch as ft
    >>> ft.log_softmax(torch.tensor([1000.0, 1.0]), dim=0)
    tensor([   0., -999.])
    """
    return _normalize(input, dim, dtype, True)


def _normalize(input, dim, dtype, log):
    name = "log_softmax" if log else "softmax"
    _check(input, name)
    if dtype is not None:
        input = input.to(dtype)
    if _graph(input):
        return _Softmax.apply(input, dim, log)
    fn = special.log_softmax if log else special.softmax
    return _tensor(fn(_interop.numpy_of(input, "input", name), axis=dim), input.dtype)


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> torch.Tensor:
    """:func:`torch.nn.functional.cross_entropy` by fastlse's fused kernel.

    The forward pass computes the loss and, when `input` requires grad, its
    gradient in the same read of the logits; the backward pass scales that
    saved gradient by the incoming one (any reduction).  The saved gradient
    takes the memory torch's saved softmax would.

    Parameters
    ----------
    input : Tensor
        Logits on the CPU: ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``,
        classes on dim 1 (dim 0 for 1-D input), as in torch.
    target : Tensor
        Class indices (int, the input's shape without dim 1) or class
        probabilities (float, the input's shape; not differentiable here).
    weight, ignore_index, reduction, label_smoothing
        As in torch.
    z_loss : float, optional
        Adds ``z_loss * lse**2`` per sample (``fastlse.cross_entropy``).
    softcap : float, optional
        Caps the logits at ``softcap * tanh(x / softcap)`` first.

    Returns
    -------
    Tensor
        The loss: a 0-d tensor, or one per sample for ``reduction="none"``.

    Examples
    --------
    >>> import torch
    >>> import fastlse.torch as ft
    >>> x = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], requires_grad=True)
    >>> loss = ft.cross_entropy(x, torch.tensor([0, 2]), reduction="none")
    >>> loss.sum().backward()
    >>> x.grad
    tensor([[-0.3410,  0.2424,  0.0986],
            [ 0.1086,  0.8025, -0.9111]])
    """
    name = "cross_entropy"
    _check(input, name)
    tn, wn = _targets(name, target, weight)
    axis = 1 if input.ndim >= 2 else 0
    kw = dict(
        weight=wn,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
    )
    if _graph(input):
        return _CrossEntropy.apply(input, tn, axis, kw)
    xn = _interop.numpy_of(input, "input", name)
    return _tensor(losses.cross_entropy(xn, tn, axis=axis, **kw), input.dtype)


class CrossEntropyLoss(torch.nn.Module):
    """:class:`torch.nn.CrossEntropyLoss` by fastlse's fused kernel.

    Parameters
    ----------
    weight : Tensor, optional
        Per-class weights (a buffer of the module, like torch's).
    ignore_index, reduction, label_smoothing
        As in torch.
    z_loss, softcap
        As in :func:`cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> import fastlse.torch as ft
    >>> loss_fn = ft.CrossEntropyLoss()
    >>> x = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], requires_grad=True)
    >>> loss = loss_fn(x, torch.tensor([0, 2]))
    >>> loss
    tensor(1.4185, grad_fn=<_CrossEntropyBackward>)
    >>> torch.isclose(loss, torch.nn.CrossEntropyLoss()(x, torch.tensor([0, 2])))
    tensor(True)
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction = ignore_index, reduction
        self.label_smoothing, self.z_loss, self.softcap = label_smoothing, z_loss, softcap

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


def _check(input, name):
    """A tensor (its device is checked where it is read: ``numpy_of``)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name}: input must be a torch.Tensor, got {type(input).__name__}")


def _targets(name, target, weight):
    """Cross-entropy's target and class weights as numpy: neither is
    differentiated, so one that requires grad is refused."""
    for arg, t in (("target", target), ("weight", weight)):
        if isinstance(t, torch.Tensor) and t.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"{name}: {arg} requires grad; fastlse differentiates the logits only")
    wn = None if weight is None else _interop.numpy_of(weight, "weight", name)
    return _interop.numpy_of(target, "target", name), wn


def _graph(input):
    """True when autograd records this call."""
    return input.requires_grad and torch.is_grad_enabled()


def from_public(name, arrays, kw):
    """A public (numpy-style) fastlse call on a tensor that requires grad:
    the autograd function above where the call has one, else a ValueError."""
    x = next(iter(arrays.values()))
    extra = {k for k, v in arrays.items() if v is not None} - {"a", "x", "logits", "target"}
    if name == "logsumexp" and not extra and not kw["return_sign"]:
        return _LogSumExp.apply(x, kw["axis"], kw["keepdims"])
    if name in ("softmax", "log_softmax") and not extra:
        return _Softmax.apply(x, kw["axis"], name == "log_softmax")
    if name == "cross_entropy" and not extra - {"weight"}:
        if not (kw["return_grad"] or kw["return_lse"]):
            return _cross_entropy_public(x, arrays, kw)
    grad_args = [k for k, v in arrays.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    raise ValueError(
        f"{name}: {grad_args[0]} requires grad, and fastlse has no backward for {name} "
        f"with these arguments: use fastlse.torch, or pass {grad_args[0]}.detach()"
    )


def _cross_entropy_public(x, arrays, kw):
    """fastlse.cross_entropy(logits, target, axis=..., ...) with autograd."""
    name = "cross_entropy"
    tn, wn = _targets(name, arrays["target"], arrays.get("weight"))
    axis = kw["axis"]
    if axis is None:
        probs = np.asarray(tn).dtype.kind == "f"
        axis = -1 if x.ndim <= 2 else _args.default_class_axis(x.shape, np.shape(tn), probs, name)
    kw = {k: v for k, v in kw.items() if k not in ("axis", "return_grad", "return_lse")}
    return _CrossEntropy.apply(x, tn, axis, {**kw, "weight": wn})
