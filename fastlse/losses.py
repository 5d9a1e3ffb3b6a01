"""cross_entropy, nll_loss, log_sigmoid: torch.nn.functional's semantics.

Each function validates everything first (``_args``: nothing is computed or
written before an error), then runs the chooser's route on the class axis in
kernel layout (``_xent_ops``, ``_layout.ClassLayout``).  C-contiguous
``(M, C)`` logits with int64 class indices and no option beyond
``ignore_index`` / ``reduction`` / ``return_grad`` skip the general checks
(``_xent_ops.run_small``: the same route and bits); a class axis with few
bytes behind it is moved last in one copy first.
"""

from typing import Any

import numpy as np

from . import _args, _interop, _xent_ops
from ._layout import ClassLayout, class_axis, compute_dtype
from ._typing import ArrayLike, NDArray, Reduced, Reduction
from .kernels import xent as XK

__all__ = ["cross_entropy", "log_sigmoid", "nll_loss"]


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    return_grad: bool = False,
    out: NDArray[Any] | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
) -> Any:
    r"""Cross-entropy loss between logits and targets, optionally with its gradient.

    The semantics and numbers of :func:`torch.nn.functional.cross_entropy`
    (class weights, ``ignore_index``, reductions, label smoothing, class
    probability targets), computed by fused parallel kernels: each row of
    logits is read once, and with ``return_grad=True`` the gradient is written
    in the same pass. No probabilities array is formed; the extra memory is
    one float64 per sample.

    Parameters
    ----------
    logits : array_like of float
        Unnormalized scores, classes along `axis`. float32 and float64 are
        computed in their own precision (float16 in float32).
    target : array_like
        Either integer class indices with the logits' shape without the class
        axis, or floating class probabilities with the logits' own shape.
    axis : int, optional
        The class axis. By default the last one for 1-D and 2-D logits (the
        same as torch's); for logits of more dimensions, the axis that the
        class-index target's shape implies: torch's ``(N, C, d1, ...)``
        layout (axis 1) or classes last (axis -1). Where both would fit, or
        the target holds probabilities, a ValueError asks for it.
    weight : array_like, optional
        Per-class weights, a 1-D array of length C.
    ignore_index : int, optional
        Class-index targets equal to it contribute nothing to the loss and the
        gradient, and are left out of the mean's denominator. Default -100.
        Not supported (must be negative) with probability targets, as in torch.
    reduction : {"mean", "sum", "none"}, optional
        "mean" divides by the summed weights of the non-ignored targets (by the
        number of samples for probability targets); "none" returns one loss
        per sample with the targets' shape.
    label_smoothing : float, optional
        In [0, 1]: the target becomes a mix of the given one and the uniform
        distribution over classes, ``(1 - eps) * target + eps / C``.
    return_grad : bool, optional
        If True, also return the gradient of the loss with respect to the
        logits (for "none": of the sum of the per-sample losses).
    out : ndarray, optional
        With ``return_grad=True``, an array of the logits' shape and dtype to
        write the gradient into (``out=logits`` overwrites the logits).
    z_loss : float, optional
        Coefficient of the z-loss (PaLM's auxiliary loss, Liger-Kernel's
        ``lse_square_scale``): ``z_loss * lse**2`` is added to the loss of
        every sample whose target is not ignored, ``lse`` the log-sum-exp of
        its (softcapped) logits. It is not multiplied by class weights or
        label smoothing; "sum" adds it up and "mean" divides its sum by the
        number of non-ignored samples (the number of samples for probability
        targets), not by the summed class weights -- Liger-Kernel's
        definition. Default 0 (none).
    softcap : float, optional
        If given (> 0), the logits are replaced by
        ``softcap * tanh(logits / softcap)`` (Gemma 2's logit soft-capping)
        before everything else, and the gradient flows through the cap.
    return_lse : bool, optional
        If True, also return each sample's log-sum-exp of the (softcapped)
        logits, ignored samples included.

    Returns
    -------
    loss : scalar or ndarray
        In the logits' dtype; an array of the targets' shape for "none".
    grad : ndarray
        Only if `return_grad` is True: same shape and dtype as `logits`.
    lse : scalar or ndarray
        Only if `return_lse` is True: the logits' shape without the class
        axis, in the logits' dtype.

    With more than one output they come as a tuple ``(loss, grad, lse)``
    (leaving out those not asked for).

    Raises
    ------
    TypeError
        Non-floating `logits`, a non-integer class-index `target`, a
        non-numeric `z_loss` or `softcap`.
    ValueError
        A `target`, `weight` or `out` of the wrong shape, an unknown
        `reduction`, `label_smoothing` outside [0, 1], a negative or
        non-finite `z_loss`, a `softcap` that is not finite and > 0.
    IndexError
        A class-index `target` outside ``[0, C)`` other than `ignore_index`.

    See Also
    --------
    nll_loss, fastlse.log_softmax

    Notes
    -----
    With ``m`` the row max and ``t`` the sum of the other ``exp(x - m)``, the
    log-normalizer is ``m + log1p(t)``, so confident predictions keep tiny
    losses accurate. The reductions are summed in float64. Special values
    follow torch: ``-inf`` logits of non-target classes give a finite loss
    (and zero gradient there); with label smoothing or probability targets
    they give ``inf`` or nan, because torch multiplies them in.

    In torch terms, with ``c = softcap * tanh(x / softcap)`` (``c = x``
    without a cap), ``lse = logsumexp(c, dim=1)`` and ``keep`` the mask of
    non-ignored targets, the loss is
    ``F.cross_entropy(c, ...) + z_loss * R(keep * lse**2)`` where ``R`` is
    the identity for "none", the sum for "sum" and
    ``sum(.) / sum(keep)`` for "mean"; its gradient is that of this formula.
    A softcap costs one more sweep over each row while it is in cache (its
    ``tanh`` into a row-sized scratch per thread, then the derivative
    ``1 - (c / softcap)**2``); the z-loss and the lse come from the same
    pass at no extra cost.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import cross_entropy
    >>> logits = np.array([[2, 1, 0.1], [0.5, 2.5, 0.3]])
    >>> cross_entropy(logits, [0, 2])
    np.float64(1.41853977)
    >>> loss, grad = cross_entropy(logits, [0, 2], return_grad=True)
    >>> grad
    array([[-0.17049943,  0.12121649,  0.04928295],
           [ 0.05430187,  0.40123953, -0.45554139]])
    >>> cross_entropy(logits, [0, -100], reduction="none")  # second row ignored
    array([0.41703002, 0.        ])
    >>> probs = np.array([[0.9, 0.1, 0.0], [0.0, 0.5, 0.5]])
    >>> cross_entropy(logits, probs, label_smoothing=0.1)
    np.float64(0.976873103)

    float32 logits give float32 results (printed here with fewer digits: the
    last bits of float32 depend on the CPU's vector width):

    >>> cross_entropy(logits.astype(np.float32), [0, 2])
    np.float32(1.41854)

    Language-model options: a z-loss, soft-capped logits, and the per-row
    log-sum-exp for reuse:

    >>> loss, grad, lse = cross_entropy(
    ...     logits, [0, 2], z_loss=1e-4, softcap=2.0, return_grad=True, return_lse=True)
    >>> loss
    np.float64(1.20889953)
    >>> lse
    array([2.10557739, 2.13228205])
    """
    if _xent_ops.plain(weight, out, return_lse, softcap, z_loss, label_smoothing, ignore_index,
                       reduction, return_grad):  # fmt: skip
        # small calls of the common kind: no keyword dict, no general checks
        res = _xent_ops.run_small(
            logits, target, -1 if axis is None else axis, ignore_index, reduction, return_grad
        )
        if res is not None:
            return res
    fn = "cross_entropy"
    kw = dict(weight=weight, ignore_index=ignore_index, reduction=reduction,
              label_smoothing=label_smoothing, return_grad=return_grad, out=out, z_loss=z_loss,
              softcap=softcap, return_lse=return_lse)  # fmt: skip
    if _interop.foreign(logits, target, weight, out):
        arrays = dict(logits=logits, target=target, weight=weight, out=out)
        kw = {k: v for k, v in kw.items() if k not in arrays}
        return _interop.call(cross_entropy, fn, arrays, axis=axis, **kw)
    if _args.is_dask(logits) or _args.is_dask(target):
        from . import _dask

        return _dask.cross_entropy(logits, target, axis=axis, **kw)
    if axis is None and type(logits) is np.ndarray and logits.ndim <= 2:
        axis = -1  # default_class_axis of 1-d / 2-d logits, without its shapes
    elif axis is None:
        tdt = target.dtype if isinstance(target, np.ndarray) else np.asarray(target).dtype
        axis = _args.default_class_axis(np.shape(logits), np.shape(target), tdt.kind == "f", fn)
    return _xent_ops.compute_general(logits, target, axis, **kw)


def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    axis: int | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Reduced:
    r"""Negative log-likelihood loss for log-probabilities and class indices.

    The semantics of :func:`torch.nn.functional.nll_loss`: the per-sample loss
    is ``-weight[y] * log_probs[..., y, ...]`` (``y`` the target class along
    `axis`), ``0`` where ``y == ignore_index``.

    Parameters
    ----------
    log_probs : array_like of float
        Log-probabilities (e.g. from :func:`fastlse.log_softmax`), classes
        along `axis`.
    target : array_like of int
        Class indices with the shape of `log_probs` without the class axis.
    axis : int, optional
        The class axis; by default chosen as in :func:`cross_entropy`: the
        last one for 1-D and 2-D input, else the one the target's shape
        implies (torch's axis 1, or -1), a ValueError where both fit.
    weight : array_like, optional
        Per-class weights, a 1-D array of length C.
    ignore_index : int, optional
        Targets equal to it contribute 0 and are left out of the mean's
        denominator. Default -100.
    reduction : {"mean", "sum", "none"}, optional
        "mean" divides by the summed weights of the non-ignored targets.

    Returns
    -------
    loss : scalar or ndarray
        In the dtype of `log_probs`; an array of the targets' shape for "none".

    See Also
    --------
    cross_entropy

    Examples
    --------
    Mix two groups of classes in log space (``log(s) + log_softmax``) rather
    than multiplying probabilities, then take the NLL:

    >>> import numpy as np
    >>> from fastlse import log_softmax, nll_loss
    >>> logits = np.array([[0.5, -1.0, 2.0, 0.0, 1.0], [1.5, 0.2, -0.3, 2.2, 0.1]])
    >>> s = 1 / 3
    >>> lp = np.concatenate(
    ...     [np.log(s) + log_softmax(logits[:, :3], axis=1),
    ...      np.log(1 - s) + log_softmax(logits[:, 3:], axis=1)], axis=1)
    >>> nll_loss(lp, [2, 3])
    np.float64(0.9304541083)
    >>> nll_loss(lp, [2, 3], reduction="none", weight=[1, 1, 1, 2, 2])
    array([1.33992359, 1.04196926])
    """
    fn = "nll_loss"
    if _interop.foreign(log_probs, target, weight):
        arrays = dict(log_probs=log_probs, target=target, weight=weight)
        kw = dict(axis=axis, ignore_index=ignore_index, reduction=reduction)
        return _interop.call(nll_loss, fn, arrays, **kw)
    lp = _args.float_input(log_probs, "log_probs", fn)
    if axis is None:
        axis = _args.default_class_axis(lp.shape, np.shape(target), False, fn)
    ax = class_axis(axis, lp.ndim, fn)
    _args.check_reduction(reduction, fn)
    ii = _args.check_ignore_index(ignore_index, fn)
    n = lp.shape[ax]
    w, _ = _args.check_weight(weight, n, fn)
    t = _args.index_target(target, lp.shape, ax, fn)
    den = _args.targets_den(t, n, ii, w, fn)
    if n and lp.dtype in (np.float32, np.float64):
        per = _nll_gather(lp, ax, t, w, ii)
    else:
        per = _nll_numpy(lp, ax, t, w, ii, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            return _xent_ops.as_result(per, lp.dtype)
        total = per.sum()
        return _xent_ops.as_result(
            total if reduction == "sum" else total / np.float64(den), lp.dtype
        )


def _nll_gather(lp, ax, t, w, ii):
    """Per-sample losses by one gather kernel over the (P, C, Q) view: no
    index arrays; in the targets' shape."""
    lay = ClassLayout(lp, ax, lp.dtype)
    tk = lay.like_target(t)
    v3 = lay.view if not lay.rows else lay.view.reshape(lay.p, lay.n, 1)
    per = np.empty((lay.p, lay.q))
    # threads pay off from a few thousand rows: each gather is a cache miss
    XK.nll_gather(per.size * 64, v3, tk.reshape(lay.p, lay.q), w, ii, per)
    return lay.loss_shape(per)


def _nll_numpy(lp, ax, t, w, ii, n):
    """Per-sample losses in NumPy (no classes, or another float dtype)."""
    keep = t != ii
    if n == 0:
        picked = np.zeros(t.shape)
    else:
        safe = np.where(keep, t, 0)
        picked = np.take_along_axis(lp, np.expand_dims(safe, ax), axis=ax)
        picked = np.squeeze(picked, axis=ax).astype(np.float64)
    with np.errstate(invalid="ignore"):
        wy = w[np.where(keep, t, 0)] if n else np.zeros(t.shape)
        return np.where(keep, -(wy * picked), 0.0)


def log_sigmoid(x: ArrayLike) -> Reduced:
    r"""Elementwise ``log(1 / (1 + exp(-x)))``, computed stably.

    Evaluated as ``min(x, 0) - log1p(exp(-|x|))``: no overflow for large
    ``|x|``, and full relative accuracy for large positive ``x`` (where the
    result is about ``-exp(-x)``) as well as for large negative ``x`` (about
    ``x``). The same as :func:`torch.nn.functional.logsigmoid`.

    Parameters
    ----------
    x : array_like
        Real input. float32 stays float32 (float16 is computed in float32);
        integers and booleans are computed in float64.

    Returns
    -------
    out : ndarray or scalar
        ``log(sigmoid(x))``, same shape as `x`; a numpy scalar for 0-d input.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlse import log_sigmoid
    >>> log_sigmoid(np.array([-1000.0, 0.0, 40.0]))  # naive formula: -inf, ..., 0
    array([-1.00000000e+03, -6.93147181e-01, -4.24835426e-18])
    >>> log_sigmoid(np.float32(30.0))  # -exp(-30), float32 stays float32
    np.float32(-9.35762e-14)
    """
    if _interop.foreign(x):
        return _interop.call(log_sigmoid, "log_sigmoid", dict(x=x))
    a = np.asarray(x)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    if a.dtype.kind != "f":
        raise TypeError(f"log_sigmoid: x must be real, got dtype {a.dtype}")
    rdt = a.dtype
    cdt = compute_dtype(rdt)
    src = np.ascontiguousarray(a, dtype=cdt).reshape(a.shape)
    res = np.empty(src.shape, dtype=cdt)
    if src.size:
        XK.log_sigmoid_flat(src.size, src.reshape(-1), res.reshape(-1))
    return _xent_ops.as_result(res, rdt)
