"""cross_entropy (loss and gradient) against torch CPU, finite differences, edge cases."""

import numpy as np
import pytest

import fastlse
from fastlse.kernels.xent import SMALL_C


def small_c(n, dtype):
    """Rows of n classes of dtype take the small-C (transposed) kernels with
    the gradient (a float32 loss alone: whole rows from ROWS_MIN classes)."""
    return n < SMALL_C


torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float32: 3e-5, np.float64: 1e-11}


# ----------------------------------------------------------------------------
# reference: torch with the class axis moved to torch's dim 1, autograd grad
# ----------------------------------------------------------------------------
def torch_ce(x, target, axis=-1, weight=None, reduction="mean", **kw):
    xt = torch.tensor(np.array(x, order="C"), requires_grad=True)
    xm = torch.movedim(xt, axis, 1) if x.ndim > 1 else xt
    t = torch.tensor(np.array(target, order="C"))
    if t.is_floating_point():
        t = torch.movedim(t, axis, 1) if x.ndim > 1 else t
    else:
        t = t.long()
    w = None if weight is None else torch.tensor(weight, dtype=xt.dtype)
    loss = F.cross_entropy(xm, t, weight=w, reduction=reduction, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def check(res, ref, dtype, grad=None, ref_grad=None):
    tol = TOL[np.dtype(dtype).type]
    assert np.asarray(res).dtype == dtype
    assert np.shape(res) == np.shape(ref)
    np.testing.assert_allclose(res, ref, rtol=tol, atol=tol)
    if grad is not None:
        assert grad.dtype == dtype and grad.shape == ref_grad.shape
        np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol)


def check_kept(loss, ref, dtype):
    """loss against torch's where that is not nan, and nan where it is."""
    assert np.asarray(loss).dtype == dtype and np.shape(loss) == np.shape(ref)
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref))
    ok = ~np.isnan(ref)
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(loss)[ok], np.asarray(ref)[ok], rtol=tol, atol=tol)


# (logits shape, class axis): C small (block kernel), C wide (row kernel),
# torch's (N, C, d) layout, class axis first, 1-D, and 4-D; few positions
# behind the class axis (d <= 32 bytes) are moved last (rows), more take the
# column kernels ("ncd_wide")
LAYOUTS = {
    "rows_small": ((9, 5), -1),
    "rows_wide": ((6, 40), -1),
    "ncd": ((3, 5, 4), 1),
    "ncd_wide": ((3, 5, 16), 1),
    "axis0": ((6, 4), 0),
    "one_row": ((7,), 0),
    "nchw": ((2, 4, 3, 2), 1),
}


def drop(shape, axis):
    """The targets' shape: the logits' shape without the class axis."""
    return tuple(s for i, s in enumerate(shape) if i != axis % len(shape))


def make_case(rng, layout, dtype, kind, ignore_index=-100):
    shape, axis = LAYOUTS[layout]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    n = shape[axis]
    tshape = drop(shape, axis)
    if kind == "soft":
        p = rng.dirichlet(np.ones(n), size=tshape)  # classes last
        return x, np.moveaxis(p, -1, axis).astype(dtype), axis
    t = rng.integers(0, n, size=tshape)
    if kind == "ignore" and t.size:
        t.flat[::3] = ignore_index
    return x, t, axis


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kind", ["index", "ignore", "soft"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_matches_torch(rng, dtype, layout, kind, weighted, smoothing):
    """Every option combination; each reduction, loss alone and with its gradient."""
    x, t, axis = make_case(rng, layout, dtype, kind)
    n = x.shape[axis]
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    for reduction in ["mean", "sum", "none"]:
        kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
        ref, ref_grad = torch_ce(x, t, axis, **kw)
        loss = fastlse.cross_entropy(x, t, axis=axis, **kw)
        check(loss, ref, dtype)
        loss2, grad = fastlse.cross_entropy(x, t, axis=axis, return_grad=True, **kw)
        check(loss2, ref, dtype, grad, ref_grad)
        assert grad.flags.c_contiguous  # (moved back if the classes were moved last)
        if small_c(n, dtype) and kind != "soft":
            # few classes (as rows: few positions behind the class axis are
            # moved last): without the gradient the sums take another order
            eps = np.finfo(dtype).eps
            np.testing.assert_allclose(loss, loss2, rtol=4 * eps, atol=4 * eps)
        else:
            assert np.array_equal(loss, loss2, equal_nan=True)


@pytest.mark.parametrize(
    ("shape", "axis", "order", "kind", "dtype"),
    [  # one case per kernel: parallel compiles are slow, the code is the serial one's
        ((3000, 12), -1, "C", "ignore", np.float32),  # few classes
        ((400, 100), -1, "C", "ignore", np.float64),  # rows
        ((8, 12, 400), 1, "C", "ignore", np.float32),  # (N, C, d): column blocks
        ((4000, 30), -1, "F", "ignore", np.float64),  # F order: one column block row
        ((400, 100), -1, "C", "soft", np.float32),
        ((8, 12, 400), 1, "C", "soft", np.float64),
    ],
)
def test_parallel_sizes_match_torch(rng, shape, axis, order, kind, dtype):
    """Large enough for the threaded kernels (and several column blocks)."""
    x = np.asarray((rng.standard_normal(shape) * 4).astype(dtype), order=order)
    n = shape[axis]
    tshape = drop(shape, axis)
    if kind == "soft":
        t = np.moveaxis(rng.dirichlet(np.ones(n), size=tshape), -1, axis).astype(dtype)
        kw = dict(label_smoothing=0.1)
    else:
        t = rng.integers(0, n, size=tshape)
        t[..., ::7] = -100
        kw = dict(weight=rng.uniform(0.5, 1.5, n), label_smoothing=0.05)
    ref, ref_grad = torch_ce(x, t, axis, **kw)
    loss, grad = fastlse.cross_entropy(x, t, axis=axis, return_grad=True, **kw)
    check(loss, ref, dtype, grad, ref_grad)


def test_seed_example():
    x = np.float32([[2, 1, 0.1], [0.5, 2.5, 0.3]])
    loss = fastlse.cross_entropy(x, [0, 2])
    assert loss.dtype == np.float32
    assert float(loss) == 1.4185397624969482


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_custom_ignore_index_in_range(rng, dtype):
    x = rng.standard_normal((10, 4)).astype(dtype)
    t = rng.integers(0, 4, 10)
    for red in ["mean", "sum", "none"]:
        ref, rg = torch_ce(x, t, ignore_index=2, reduction=red, label_smoothing=0.1)
        loss, g = fastlse.cross_entropy(
            x, t, ignore_index=2, reduction=red, label_smoothing=0.1, return_grad=True
        )
        check(loss, ref, dtype, g, rg)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("n", [3, 50])
def test_all_rows_ignored(n, smoothing):
    x = np.random.default_rng(1).standard_normal((4, n))
    t = np.full(4, -100)
    kw = dict(label_smoothing=smoothing, return_grad=True)
    loss, g = fastlse.cross_entropy(x, t, **kw)
    assert np.isnan(loss) and not np.any(g)
    loss, g = fastlse.cross_entropy(x, t, reduction="sum", **kw)
    assert loss == 0.0 and not np.any(g)
    loss, g = fastlse.cross_entropy(x, t, reduction="none", **kw)
    assert loss.shape == (4,) and not np.any(loss) and not np.any(g)
    ref, _ = torch_ce(x, t, label_smoothing=smoothing)
    assert np.isnan(ref)


@pytest.mark.parametrize("n", [3, 50])
@pytest.mark.parametrize("axis", [-1, 0])
def test_neg_inf_non_target_logits_give_finite_loss(n, axis):
    x = np.random.default_rng(2).standard_normal((5, n))
    x[:, 1] = -np.inf
    t = np.array([0, 2, 0, 2, 2])
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    for red in ["mean", "none"]:
        ref, ref_grad = torch_ce(x, t, axis, reduction=red)
        loss, g = fastlse.cross_entropy(x, t, axis=axis, reduction=red, return_grad=True)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(g))
        check(loss, ref, np.float64, g, ref_grad)


def test_neg_inf_with_smoothing_or_soft_targets_follows_torch():
    x = np.array([[0.0, -np.inf, 1.0], [1.0, 2.0, 3.0]])
    for kw in [dict(target=np.array([2, 0]), label_smoothing=0.1),
               dict(target=np.array([[0.0, 0.0, 1.0], [0.5, 0.25, 0.25]]))]:  # fmt: skip
        ref, ref_grad = torch_ce(x, **kw)
        loss, g = fastlse.cross_entropy(x, return_grad=True, **kw)
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref))
        np.testing.assert_array_equal(loss == np.inf, ref == np.inf)
        np.testing.assert_allclose(g, ref_grad, rtol=1e-12, atol=1e-14)


def test_confident_rows_keep_tiny_losses_accurate():
    x = np.float32([[30.0, 0.0, 0.0], [0.0, 50.0, -5.0]])
    loss = fastlse.cross_entropy(x, [0, 1], reduction="none")
    ref = np.log1p(np.array([2 * np.exp(-30.0), np.exp(-50.0) + np.exp(-55.0)]))
    np.testing.assert_allclose(loss, ref, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("shape", [(0, 5), (0, 3, 4)])
def test_empty_batch(dtype, soft, shape):
    x = np.zeros(shape, dtype=dtype)
    t = np.zeros(shape, dtype=dtype) if soft else np.zeros((0, *shape[2:]), dtype=np.int64)
    axis = 1
    loss, g = fastlse.cross_entropy(x, t, axis=axis, return_grad=True)
    assert np.isnan(loss) and loss.dtype == dtype and g.shape == shape and g.dtype == dtype
    assert fastlse.cross_entropy(x, t, axis=axis, reduction="sum") == 0.0
    none = fastlse.cross_entropy(x, t, axis=axis, reduction="none")
    assert none.shape == (0, *shape[2:]) and none.dtype == dtype
    ref, _ = torch_ce(x, t, axis)
    assert np.isnan(ref)


def test_zero_weight_mean_is_nan_like_torch():
    x = np.random.default_rng(3).standard_normal((2, 3))
    kw = dict(weight=np.array([0.0, 1.0, 1.0]))
    ref, ref_grad = torch_ce(x, np.array([0, 0]), **kw)
    loss, g = fastlse.cross_entropy(x, [0, 0], return_grad=True, **kw)
    assert np.isnan(loss) and np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(ref_grad))


@pytest.mark.parametrize("smoothing", [0.0, 1.0])
def test_scalar_target_and_smoothing_bounds(smoothing):
    x = np.array([1.0, 2.0, 3.0])
    ref, ref_grad = torch_ce(x, np.array(1), axis=0, label_smoothing=smoothing)
    loss, g = fastlse.cross_entropy(x, 1, label_smoothing=smoothing, return_grad=True)
    assert isinstance(loss, np.float64)
    check(loss, ref, np.float64, g, ref_grad)


def test_float16_logits_keep_their_dtype():
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float16)
    t = np.arange(5)
    loss, g = fastlse.cross_entropy(x, t, return_grad=True)
    assert loss.dtype == np.float16 and g.dtype == np.float16
    ref, ref_grad = torch_ce(x.astype(np.float32), t)
    np.testing.assert_allclose(np.float32(loss), ref, rtol=2e-3)
    np.testing.assert_allclose(g.astype(np.float32), ref_grad, atol=2e-3)


# ----------------------------------------------------------------------------
# finite differences (float64)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(reduction="sum", label_smoothing=0.25),
        dict(reduction="none", weight=np.array([0.5, 2.0, 1.0, 1.5])),
        dict(weight=np.array([0.5, 2.0, 1.0, 1.5]), label_smoothing=0.1),
        dict(soft=True, label_smoothing=0.2),
        dict(soft=True, weight=np.array([0.5, 2.0, 1.0, 1.5]), reduction="sum"),
    ],
    ids=["mean", "sum_smooth", "none_weight", "weight_smooth", "soft_smooth", "soft_weight"],
)
@pytest.mark.parametrize("axis", [-1, 1])
def test_gradient_finite_differences(kw, axis):
    rng = np.random.default_rng(5)
    kw = dict(kw)
    soft = kw.pop("soft", False)
    shape = (3, 4) if axis == -1 else (2, 4, 3)
    x = rng.standard_normal(shape) * 2
    tshape = shape[:-1] if axis == -1 else (2, 3)
    if soft:
        t = np.moveaxis(rng.dirichlet(np.ones(4), size=tshape), -1, axis)
    else:
        t = rng.integers(0, 4, size=tshape)
        t.flat[0] = -100

    def f(z):
        return np.sum(fastlse.cross_entropy(z, t, axis=axis, **kw))

    _, g = fastlse.cross_entropy(x, t, axis=axis, return_grad=True, **kw)
    h = 1e-6
    fd = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (f(xp) - f(xm)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------
# out=, layouts and read-only inputs
# ----------------------------------------------------------------------------
def readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), [((6, 5), -1), ((6, 50), -1), ((3, 5, 4), 1)])
def test_out_buffer_and_in_place(rng, dtype, shape, axis):
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.integers(0, shape[axis], size=drop(shape, axis))
    ref, ref_grad = torch_ce(x, t, axis, label_smoothing=0.1)
    out = np.empty_like(x)
    loss, g = fastlse.cross_entropy(x, t, axis=axis, label_smoothing=0.1, return_grad=True, out=out)
    assert g is out
    check(loss, ref, dtype, g, ref_grad)
    strided = np.empty((2, *shape), dtype=dtype)[1]  # a view, offset into a bigger buffer
    big = np.zeros((*shape[:-1], 2 * shape[-1]), dtype=dtype)[..., ::2]  # not contiguous
    for buf in (strided, big, np.asfortranarray(np.empty_like(x))):
        _, g = fastlse.cross_entropy(
            x, t, axis=axis, label_smoothing=0.1, return_grad=True, out=buf
        )
        assert g is buf
        check(loss, ref, dtype, g, ref_grad)
    y = x.copy()  # out=logits: the gradient overwrites the logits
    loss, g = fastlse.cross_entropy(y, t, axis=axis, label_smoothing=0.1, return_grad=True, out=y)
    assert g is y
    check(loss, ref, dtype, g, ref_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_in_place_gradient_has_the_bits_of_a_separate_out(rng, dtype, smoothing):
    """out=logits runs the same vectorized sweep as a separate out (an alias
    seen by LLVM would run its scalar loop, summing in another order)."""
    x = (rng.standard_normal((64, 1003)) * 4).astype(dtype)
    t = rng.integers(0, 1003, 64)
    loss, g = fastlse.cross_entropy(x, t, label_smoothing=smoothing, return_grad=True)
    ref, ref_grad = torch_ce(x.astype(np.float64), t, label_smoothing=smoothing)
    check(loss, ref, dtype, g, ref_grad)
    y = x.copy()
    loss2, g2 = fastlse.cross_entropy(y, t, label_smoothing=smoothing, return_grad=True, out=y)
    assert g2 is y and loss2 == loss
    np.testing.assert_array_equal(g2, g)


def test_soft_target_in_place_and_overlapping_out(rng):
    x = rng.standard_normal((4, 6))
    q = rng.dirichlet(np.ones(6), size=4)
    ref, ref_grad = torch_ce(x, q)
    y, qq = x.copy(), q.copy()
    loss, g = fastlse.cross_entropy(y, qq, return_grad=True, out=qq)  # out aliases target
    check(loss, ref, np.float64, g, ref_grad)
    loss, g = fastlse.cross_entropy(y, q, return_grad=True, out=y)
    check(loss, ref, np.float64, g, ref_grad)


@pytest.mark.parametrize("kind", ["C", "F", "strided"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_memory_layouts(rng, kind, axis):
    base = rng.standard_normal((5, 6, 7))
    if kind == "F":
        x = np.asfortranarray(base)
    elif kind == "strided":
        x = np.zeros((10, 6, 14))[::2, :, ::2]
        x[...] = base
    else:
        x = base
    tshape = drop(x.shape, axis)
    t = rng.integers(0, x.shape[axis], size=tshape)
    t = np.asfortranarray(t) if kind == "F" else t
    ref, ref_grad = torch_ce(x, t, axis, label_smoothing=0.1, reduction="none")
    loss, g = fastlse.cross_entropy(
        x, t, axis=axis, label_smoothing=0.1, reduction="none", return_grad=True
    )
    check(loss, ref, np.float64, g, ref_grad)


def test_read_only_inputs_not_modified(rng):
    x = readonly(rng.standard_normal((8, 5)).astype(np.float32))
    t = readonly(rng.integers(0, 5, 8))
    w = readonly(rng.uniform(0.5, 1.5, 5))
    x0 = x.copy()
    ref, ref_grad = torch_ce(x, t, weight=w, label_smoothing=0.2)
    loss, g = fastlse.cross_entropy(x, t, weight=w, label_smoothing=0.2, return_grad=True)
    check(loss, ref, np.float32, g, ref_grad)
    q = readonly(rng.dirichlet(np.ones(5), size=8).astype(np.float32))
    fastlse.cross_entropy(x, q, return_grad=True)
    xc = readonly(rng.standard_normal((2, 5, 3)))
    fastlse.cross_entropy(xc, readonly(np.zeros((2, 3), np.int64)), axis=1, return_grad=True)
    np.testing.assert_array_equal(x, x0)


# ----------------------------------------------------------------------------
# bad input: raised before any work, naming the argument
# ----------------------------------------------------------------------------
X = np.zeros((3, 4))
T = np.array([0, 1, 3])


@pytest.mark.parametrize(
    ("args", "kw", "exc", "name"),
    [
        ((X, [0, 1, 4]), {}, IndexError, "target"),
        ((X, [0, -1, 2]), {}, IndexError, "target"),
        ((X, [0, 4, 5]), dict(ignore_index=4), IndexError, "target"),
        ((X, [0, 1]), {}, ValueError, "target"),
        ((X, np.zeros((3, 1), np.int64)), {}, ValueError, "target"),
        ((X, np.zeros((3, 5))), {}, ValueError, "target"),
        ((X, np.zeros(3)), {}, ValueError, "target"),
        ((X, np.zeros(3, bool)), {}, TypeError, "target"),
        ((X, T), dict(weight=np.ones(3)), ValueError, "weight"),
        ((X, T), dict(weight=np.ones((1, 4))), ValueError, "weight"),
        ((X, T), dict(reduction="avg"), ValueError, "reduction"),
        ((X, T), dict(reduction=None), ValueError, "reduction"),
        ((X, T), dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        ((X, T), dict(label_smoothing=1.5), ValueError, "label_smoothing"),
        ((X, T), dict(label_smoothing=float("nan")), ValueError, "label_smoothing"),
        ((X.astype(np.int64), T), {}, TypeError, "logits"),
        ((X.astype(bool), T), {}, TypeError, "logits"),
        ((X.astype(complex), T), {}, TypeError, "logits"),
        ((np.float64(1.0), 0), {}, ValueError, "logits"),
        ((X, T), dict(axis=2), np.exceptions.AxisError, "axis"),
        ((X, T), dict(axis=(0, 1)), TypeError, "axis"),
        ((X, np.zeros((3, 4))), dict(ignore_index=1), ValueError, "ignore_index"),
        ((X, T), dict(out=np.zeros((3, 4))), ValueError, "return_grad"),
        ((X, T), dict(return_grad=True, out=np.zeros((4, 3))), ValueError, "out"),
        ((X, T), dict(return_grad=True, out=np.zeros((3, 4), np.float32)), ValueError, "out"),
        ((X, T), dict(return_grad=True, out=readonly(X)), ValueError, "out"),
        ((X, T), dict(return_grad=True, out=[[0.0] * 4] * 3), TypeError, "out"),
        ((np.zeros((3, 0)), np.full(3, -100)), {}, ValueError, "logits"),
    ],
)
def test_bad_input(args, kw, exc, name):
    logits = args[0].copy() if isinstance(args[0], np.ndarray) else args[0]
    out = kw.get("out")
    out0 = out.copy() if isinstance(out, np.ndarray) else None
    with pytest.raises(exc, match=name):
        fastlse.cross_entropy(logits, args[1], **kw)
    if isinstance(logits, np.ndarray):
        np.testing.assert_array_equal(logits, args[0])
    if out0 is not None:
        np.testing.assert_array_equal(out, out0)


def test_bad_target_leaves_out_untouched():
    out = np.full((3, 4), 7.0)
    with pytest.raises(IndexError, match="target"):
        fastlse.cross_entropy(X, [0, 1, 9], return_grad=True, out=out)
    assert np.all(out == 7.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_bytes", [1 << 12, 1 << 19])
@pytest.mark.parametrize("shape", [(2, 300, 70), (1, 40, 1000)])
def test_middle_axis_column_blocks(rng, monkeypatch, dtype, block_bytes, shape):
    """Column blocks of the middle-axis kernels, a partial last one included
    (8 columns of 70; few slabs split for the threads), against torch."""
    from fastlse import _routes

    monkeypatch.setattr(_routes, "XENT_COL_BLOCK_BYTES", block_bytes)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.integers(0, shape[1], (shape[0], shape[2]))
    t[0, 3] = -100
    for kw in ({}, {"label_smoothing": 0.1}):
        ref, ref_grad = torch_ce(x.astype(np.float64), t, axis=1, **kw)
        loss, g = fastlse.cross_entropy(x, t, axis=1, return_grad=True, **kw)
        check(loss, ref, dtype, g, ref_grad)
        assert fastlse.cross_entropy(x, t, axis=1, **kw) == loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape",
    [(9, 40), (400, 100), (400, 200), (5, 3000), (1100, 50), (600, 10), (1100, 8), (9, 9)],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_rows_forward_without_gradient(rng, dtype, shape, reduction):
    """Rows without gradient or smoothing (rows of SMALL_C classes or more: the
    plain kernel, small calls included, losses finished by blocks of rows;
    shorter: transposed blocks of 64-256 rows, four classes a pass)
    against torch, with weights, ignored rows and rows with a +inf, a nan,
    all -inf, and -inf non-target logits, also at block edges.  The same bits
    as the loss that comes with the gradient (for few classes: within 4 eps,
    the sums run in another order)."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.integers(0, shape[1], shape[0])
    x[0] = -np.inf  # all -inf: nan
    x[1, 5] = np.inf  # +inf: nan
    x[2, 7] = np.nan
    x[3] = -np.inf  # only the target finite: 0
    x[3, t[3]] = 2.0
    t[4] = -100
    if shape[0] > 200:  # blocks of 64 rows (25 for 400), or of 256
        x[63] = -np.inf
        x[63, t[63]] = 0.5
        t[[24, 25, 64, 256, -1]] = -100
        x[65, :7] = -np.inf
        x[255] = 40.0  # equal logits: log(C)
        x[257] = -np.inf
        x[257, t[257]] = -3.0
    w = rng.uniform(0.5, 2.0, shape[1])
    # (the nan rows make the sum and mean nan: also without them)
    for xs, ts in ((x, t), (x[3:], t[3:])):
        for kw in ({"reduction": reduction}, {"reduction": reduction, "weight": w}):
            ref, _ = torch_ce(xs.astype(np.float64), ts, **kw)
            loss = fastlse.cross_entropy(xs, ts, **kw)
            check_kept(loss, ref, dtype)
            with_grad, _ = fastlse.cross_entropy(xs, ts, return_grad=True, **kw)
            if not small_c(shape[1], dtype):
                np.testing.assert_array_equal(loss, with_grad)
            else:
                eps = np.finfo(dtype).eps
                np.testing.assert_allclose(loss, with_grad, rtol=4 * eps, atol=4 * eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(12, 300, 70), (6, 64, 600), (16, 1000, 8)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_middle_axis_forward_from_column_pairs(rng, dtype, shape, reduction):
    """The middle axis without gradient or smoothing (logsumexp's column
    sweeps, then each column's target logit) against torch: weights, an
    ignored column, and columns with a +inf, a nan, all -inf, and -inf
    non-target logits; the loss agrees with the one that comes with the
    gradient to rounding."""
    from fastlse import _layout, _routes

    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.integers(0, shape[1], (shape[0], shape[2]))
    x[0, :, 0] = -np.inf  # all -inf: nan
    x[0, 5, 1] = np.inf  # +inf: nan
    x[1, 7, 2] = np.nan
    x[1, :, 3] = -np.inf  # only the target finite: 0
    x[1, t[1, 3], 3] = 2.0
    t[2, 4] = -100
    w = rng.uniform(0.5, 2.0, shape[1])
    # (the nan columns make the sum and mean nan: also without them)
    for xs, ts in ((x, t), (x[2:], t[2:])):
        lay = _layout.ClassLayout(xs, 1, np.dtype(dtype))
        assert _routes.choose_xent(lay, soft=False, lm=False, grad=False, smoothing=False) == (
            "columns_loss"
        )
        for kw in ({"reduction": reduction}, {"reduction": reduction, "weight": w}):
            ref, _ = torch_ce(xs.astype(np.float64), ts, axis=1, **kw)
            loss = fastlse.cross_entropy(xs, ts, axis=1, **kw)
            check_kept(loss, ref, dtype)
            with_grad, _ = fastlse.cross_entropy(xs, ts, axis=1, return_grad=True, **kw)
            eps = np.finfo(dtype).eps
            np.testing.assert_allclose(loss, with_grad, rtol=4 * eps, atol=4 * eps)


# ----------------------------------------------------------------------------
# small (M, C) calls: the path without planning
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (1, 3), (128, 100), (8, 1000), (5, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("return_grad", [False, True])
def test_small_index_rows_match_torch(rng, dtype, shape, reduction, return_grad):
    """Small C-contiguous logits with int64 class indices (an ignored row and
    a row with -inf / +inf logits among them) against torch, loss and
    gradient, dtypes and shapes; the logits and targets are not modified."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    if shape[0] > 2 and shape[1] > 2:
        y[1] = -100
        x[2, 0] = -np.inf
    x0, y0 = x.copy(), y.copy()
    res = fastlse.cross_entropy(x, y, reduction=reduction, return_grad=return_grad)
    ref, ref_grad = torch_ce(x, y, reduction=reduction)
    if return_grad:
        loss, grad = res
        check(loss, ref, dtype, grad, ref_grad)
    else:
        check(res, ref, dtype)
    assert type(res if not return_grad else res[0]) is (
        np.ndarray if reduction == "none" else np.dtype(dtype).type
    )
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 100, 5000])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_one_sample_vector_matches_torch(rng, dtype, n, reduction):
    """torch's (C,) logits with a () target take the path without planning:
    loss (a scalar of the logits' dtype, "none" too, as torch's 0-d tensor)
    and gradient (shape (C,)) against torch, for int64 and Python int targets;
    an ignored target; an out-of-range one raises as in the general path."""
    x = (rng.standard_normal(n) * 3).astype(dtype)
    y = int(rng.integers(0, n))
    ref, ref_grad = torch_ce(x, np.array(y), axis=0, reduction=reduction)
    for target in (np.int64(y), y, np.array(y)):
        loss, grad = fastlse.cross_entropy(x, target, reduction=reduction, return_grad=True)
        assert type(loss) is np.dtype(dtype).type and grad.shape == (n,)
        check(loss, ref, dtype, grad, ref_grad)
        check(fastlse.cross_entropy(x, target, reduction=reduction), ref, dtype)
    ref, ref_grad = torch_ce(x, np.array(-100), axis=0, reduction=reduction)
    loss, grad = fastlse.cross_entropy(x, -100, reduction=reduction, return_grad=True)
    check(loss, ref, dtype, grad, ref_grad)
    with pytest.raises(IndexError, match=f"target {n} is out of bounds"):
        fastlse.cross_entropy(x, n)


@pytest.mark.parametrize(("shape", "dtype"), [((700, 100), np.float32), ((3000, 12), np.float64)])
@pytest.mark.parametrize("return_grad", [False, True])
def test_unplanned_rows_on_the_threads_match_torch(rng, shape, dtype, return_grad):
    """(M, C) logits over PARALLEL_MIN_WORK elements with int64 targets skip the
    planning too and run the threaded kernels: against torch, every reduction."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    y[::5] = -100
    x[3, 1] = -np.inf
    for reduction in ("mean", "sum", "none"):
        ref, ref_grad = torch_ce(x, y, reduction=reduction)
        res = fastlse.cross_entropy(x, y, reduction=reduction, return_grad=return_grad)
        if return_grad:
            check(res[0], ref, dtype, res[1], ref_grad)
        else:
            check(res, ref, dtype)


def test_small_index_rows_edge_cases():
    """Every row ignored (mean: nan, as torch), an out-of-range target
    (IndexError naming it), int32 targets (the general path, same result)."""
    x = np.float32([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    y = np.array([-100, -100])
    ref, ref_grad = torch_ce(x, y)
    loss, grad = fastlse.cross_entropy(x, y, return_grad=True)
    assert np.isnan(loss) and np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad))
    assert fastlse.cross_entropy(x, y, reduction="sum") == 0.0
    with pytest.raises(IndexError, match="target 3 is out of bounds"):
        fastlse.cross_entropy(x, np.array([0, 3]))
    np.testing.assert_array_equal(
        fastlse.cross_entropy(x, np.array([0, 2], dtype=np.int32), reduction="none"),
        fastlse.cross_entropy(x, np.array([0, 2]), reduction="none"),
    )
    ref, _ = torch_ce(x, np.array([0, 2]), ignore_index=2)
    check(fastlse.cross_entropy(x, np.array([0, 2]), ignore_index=2), ref, np.float32)
    # options of the wrong kind get the general path's errors, not numpy's
    with pytest.raises(TypeError, match="z_loss must be a number"):
        fastlse.cross_entropy(x, np.array([0, 2]), z_loss=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        fastlse.cross_entropy(x, np.array([0, 2]), reduction=np.array(["mean", "sum"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kw",
    [{}, {"return_grad": True}, {"label_smoothing": 0.1, "return_grad": True}, {"soft": True}],
    ids=["plain", "grad", "smooth", "soft"],
)
def test_rows_loss_same_bits_on_any_thread_count(rng, dtype, kw):
    """Whole rows (class indices and soft targets): the rows' losses are
    summed in row order after the threads, so the mean and the sum have the
    same bits on one thread and on two (a per-thread partial sum would not),
    and are torch's."""
    x = (rng.standard_normal((300, 100)) * 4).astype(dtype)
    kw = dict(kw)
    if kw.pop("soft", False):
        t = rng.dirichlet(np.ones(100), size=300).astype(dtype)
        kw["return_grad"] = True
    else:
        t = rng.integers(0, 100, 300)
        t[::9] = -100
    for reduction in ("mean", "sum"):
        runs = []
        for n in (1, 2):
            with fastlse.num_threads(n):
                runs.append(fastlse.cross_entropy(x, t, reduction=reduction, **kw))
        one, two = (r if isinstance(r, tuple) else (r,) for r in runs)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)
        smoothing = kw.get("label_smoothing", 0.0)
        ref, ref_grad = torch_ce(x, t, reduction=reduction, label_smoothing=smoothing)
        check(one[0], ref, dtype, *((one[1], ref_grad) if len(one) > 1 else ()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_calls_give_the_general_paths_bits(rng, dtype):
    """The small calls' remembered plans (``_xent_ops.run_small``: route,
    target check and kernel twins decided once per shape) give the bits of
    the general path, on the first call and from the plan; few long rows
    (pieces, where the pool has two threads or more) have no plan and take
    the general path."""
    from fastlse import _xent_ops
    from fastlse._routes import PIECE, index_rows_route

    full = dict(weight=None, ignore_index=-100, label_smoothing=0.0, out=None, z_loss=0.0,
                softcap=None, return_lse=False)  # fmt: skip
    pieces = (2, 2 * PIECE)
    for shape in [(32, 10), (128, 100), (300, 1000), pieces]:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        t = rng.integers(0, shape[1], shape[0])
        t[1] = -100
        for reduction in ("mean", "none"):
            for grad in (False, True):
                kw = dict(reduction=reduction, return_grad=grad)
                want = _xent_ops.compute_general(x, t, -1, **full, **kw)
                for _ in range(2):
                    got = fastlse.cross_entropy(x, t, **kw)
                    for g, w in zip(got if grad else (got,), want if grad else (want,)):
                        np.testing.assert_array_equal(g, w)
    route = index_rows_route(*pieces)  # (one thread: not pieces)
    assert (_xent_ops._small_plan(*pieces, np.dtype(dtype), False) is None) == (route == "pieces")
