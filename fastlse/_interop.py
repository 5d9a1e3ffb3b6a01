"""torch tensors, jax arrays and bfloat16 arrays at the public functions' edge.

A public function asks ``foreign(...)`` of its array arguments once its numpy
fast paths have not applied (they take only ndarrays, so plain numpy calls
never get here).  Where one is a torch tensor, a jax array or a bfloat16
ndarray (ml_dtypes), ``call`` runs the numpy function on numpy views of them
and hands back results of the first such argument's kind:

* torch CPU tensors are viewed without a copy (``Tensor.numpy``) and results
  come back by ``torch.from_numpy`` (no copy); an ``out=`` tensor is written
  in place.  A tensor that requires grad, with grad mode on, goes to the
  autograd functions of ``fastlse.torch`` where the call has one, and raises
  otherwise: a result cut off from the graph would be a silent surprise.
* jax CPU arrays are read through ``np.asarray`` (no copy on the CPU) and
  results built by ``jax.numpy.asarray``.
* bfloat16 (a torch tensor or an ml_dtypes array) is computed in float32 and
  the float32 results are returned in bfloat16, as float16 is handled.

Data on a GPU raises a ValueError: fastlse computes on the CPU.  Nothing here
imports torch or jax: a tensor's own module is in ``sys.modules`` already.
"""

import sys

import numpy as np

__all__ = ["call", "foreign", "numpy_of"]

_TORCH, _JAX, _BF16 = "torch", "jax", "bfloat16"


def _kind(x):
    """ "torch", "jax", "bfloat16" (an ndarray) or None, importing nothing."""
    if isinstance(x, np.ndarray):
        return _BF16 if x.dtype.name == "bfloat16" else None
    mod = type(x).__module__
    if mod.startswith("torch") and isinstance(x, sys.modules["torch"].Tensor):
        return _TORCH
    if mod.startswith(("jax", "jaxlib")) and "jax" in sys.modules:
        if isinstance(x, sys.modules["jax"].Array):
            return _JAX
    return None


def foreign(*arrays):
    """True if an argument is a torch tensor, a jax array or bfloat16."""
    return any(x is not None and _kind(x) is not None for x in arrays)


def call(fn, name, arrays, **kw):
    """``fn(**arrays, **kw)`` on numpy views; results of the arrays' kind.

    ``arrays`` maps argument names to values in the order that decides the
    result's kind (the data first); ``name`` is the public function's.
    """
    kind = next(k for k in map(_kind, arrays.values()) if k is not None)
    if kind == _TORCH and _needs_graph(arrays):
        from . import torch as fastlse_torch

        return fastlse_torch.from_public(name, arrays, kw)
    bf16 = any(_is_bf16(x) for x in arrays.values() if x is not None)
    views, outs = {}, {}
    for arg, x in arrays.items():
        views[arg] = None if x is None else numpy_of(x, arg, name)
        if arg == "out" and x is not None:
            views[arg] = _out_view(x, views[arg], name, outs)
    res = fn(**views, **kw)
    back = _Back(kind, bf16, outs)
    return tuple(map(back, res)) if isinstance(res, tuple) else back(res)


def _needs_graph(arrays):
    torch = sys.modules["torch"]
    if not torch.is_grad_enabled():
        return False
    return any(isinstance(x, torch.Tensor) and x.requires_grad for x in arrays.values())


def _is_bf16(x):
    """bfloat16 data: torch's dtype prints "torch.bfloat16", ml_dtypes' "bfloat16"."""
    return str(getattr(x, "dtype", "")).endswith("bfloat16")


def numpy_of(x, arg, name):
    """A numpy view of x (float32 for bfloat16); plain values pass through."""
    kind = _kind(x)
    if kind == _TORCH:
        if x.device.type != "cpu":
            raise ValueError(
                f"{name}: {arg} is a torch tensor on {x.device}; fastlse computes on "
                f"the CPU: pass {arg}.cpu()"
            )
        if x.requires_grad:
            x = x.detach()
        if x.is_conj() or x.is_neg():  # lazy conjugate / negative views
            x = x.resolve_conj().resolve_neg()
        return x.float().numpy() if _is_bf16(x) else x.numpy()
    if kind == _JAX:
        platforms = {d.platform for d in x.devices()}
        if platforms != {"cpu"}:
            raise ValueError(
                f"{name}: {arg} is a jax array on {', '.join(sorted(platforms))}; fastlse "
                f"computes on the CPU: pass jax.device_put({arg}, jax.devices('cpu')[0])"
            )
        x = np.asarray(x)
    return x.astype(np.float32) if _kind(x) == _BF16 else x


def _out_view(out, view, name, outs):
    """The array the numpy function writes into for ``out``, registered in
    ``outs`` so that ``_Back`` returns the caller's own object for it."""
    if _kind(out) == _JAX:
        raise TypeError(f"{name}: out cannot be a jax array (jax arrays are immutable)")
    if view is out:
        return out
    copy = _is_bf16(out)
    if copy:  # written in float32, then rounded into out
        view = np.empty(out.shape, dtype=np.float32)
    outs[id(view)] = (view, out, copy)
    return view


class _Back:
    """Results of the numpy function -> the kind of the arrays passed in."""

    def __init__(self, kind, bf16, outs):
        self.kind, self.bf16, self.outs = kind, bf16, outs

    def __call__(self, res):
        if id(res) in self.outs:
            return self._into_out(*self.outs[id(res)])
        if not isinstance(res, (np.ndarray, np.generic)):
            return res
        res = np.asarray(res)
        if self.kind == _TORCH:
            return self._torch(res)
        if self.bf16 and res.dtype == np.float32:
            res = res.astype(_ml_bfloat16())
        if self.kind == _JAX:
            return self._jax(res)
        return res

    def _torch(self, res):
        torch = sys.modules["torch"]
        t = torch.from_numpy(res if res.flags.writeable else res.copy())
        return t.to(torch.bfloat16) if self.bf16 and res.dtype == np.float32 else t

    def _jax(self, res):
        # float64 results of int input become float32 where jax runs without
        # x64, as jax's own functions would give: no truncation warning
        jax = sys.modules["jax"]
        return jax.numpy.asarray(res, dtype=jax.dtypes.canonicalize_dtype(res.dtype))

    def _into_out(self, view, out, copy):
        if not copy:  # view is out's own memory
            return out
        if _kind(out) == _TORCH:
            out.copy_(sys.modules["torch"].from_numpy(view))
        else:
            out[...] = view
        return out


def _ml_bfloat16():
    import ml_dtypes

    return ml_dtypes.bfloat16
