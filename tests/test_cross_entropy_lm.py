"""cross_entropy's language-model options (z_loss, softcap, return_lse) against torch autograd.

The reference writes the formulas out in torch: ``c = softcap * tanh(x / softcap)``,
``F.cross_entropy(c, ...) + z_loss * R(keep * logsumexp(c)**2)`` with ``R`` the
reduction ("mean": divided by the number of kept rows), differentiated by autograd.
"""

import numpy as np
import pytest
from xent_reference import torch_ref

import fastlse
from fastlse.kernels import xent as K

torch = pytest.importorskip("torch")

TOL = {np.float32: 3e-5, np.float64: 1e-11}


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    """The references are tiny: torch's thread pool only adds latency (milliseconds
    per call on a busy machine), so this module runs torch on one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def check(res, ref, dtype):
    tol = TOL[np.dtype(dtype).type]
    assert np.asarray(res).dtype == dtype
    assert np.shape(res) == np.shape(ref)
    np.testing.assert_allclose(res, ref, rtol=tol, atol=tol)


LAYOUTS = {
    "few_classes": ((9, 5), -1),  # index_rows_small (C <= 32)
    "many_classes": ((6, 40), -1),  # index_rows
    "ncd": ((3, 5, 4), 1),  # class axis 1 of 3-D, 4 positions: moved last (rows)
    "ncd_wide": ((3, 5, 16), 1),  # 16 positions: column blocks
    "axis0": ((6, 4), 0),
    "one_row": ((7,), 0),
}


def drop(shape, axis):
    return tuple(s for i, s in enumerate(shape) if i != axis % len(shape))


def make_case(rng, shape, axis, dtype, kind, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    n = shape[axis]
    tshape = drop(shape, axis)
    if kind == "soft":
        p = rng.dirichlet(np.ones(n), size=tshape)  # classes last
        return x, np.moveaxis(p, -1, axis).astype(dtype)
    t = rng.integers(0, n, size=tshape)
    if kind == "ignore" and t.size:
        t.flat[::3] = -100
    return x, t


LM = {"z": dict(z_loss=0.05), "cap": dict(softcap=2.5), "z_cap": dict(z_loss=0.3, softcap=4.0)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kind", ["index", "ignore", "soft"])
@pytest.mark.parametrize("lm", list(LM))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_matches_torch(rng, dtype, layout, kind, lm, weighted, smoothing):
    """Every option combination, each reduction: loss, gradient and lse."""
    shape, axis = LAYOUTS[layout]
    x, t = make_case(rng, shape, axis, dtype, kind)
    n = shape[axis]
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    for reduction in ["mean", "sum", "none"]:
        kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing, **LM[lm])
        ref, ref_grad, ref_lse = torch_ref(x, t, axis, **kw)
        loss = fastlse.cross_entropy(x, t, axis=axis, **kw)
        check(loss, ref, dtype)
        loss2, grad, lse = fastlse.cross_entropy(
            x, t, axis=axis, return_grad=True, return_lse=True, **kw
        )
        check(loss2, ref, dtype)
        check(grad, ref_grad, dtype)
        check(lse, ref_lse, dtype)
        assert np.array_equal(loss, loss2, equal_nan=True)
        loss3, lse3 = fastlse.cross_entropy(x, t, axis=axis, return_lse=True, **kw)
        assert np.array_equal(loss3, loss, equal_nan=True) and np.array_equal(lse3, lse)


@pytest.mark.parametrize(
    ("shape", "axis", "order", "kind", "dtype"),
    [  # threaded kernels and several blocks; parallel compiles are slow: one case each
        ((3000, 12), -1, "C", "ignore", np.float32),  # few classes
        ((400, 100), -1, "C", "ignore", np.float64),  # rows, capped
        ((8, 12, 400), 1, "C", "ignore", np.float32),  # column blocks, capped
        ((400, 100), -1, "C", "soft", np.float32),
        ((8, 12, 400), 1, "C", "soft", np.float64),
        ((3000, 40), -1, "F", "index", np.float32),  # F order: column blocks of the transpose
    ],
)
def test_parallel_sizes_match_torch(rng, shape, axis, order, kind, dtype):
    x, t = make_case(rng, shape, axis, dtype, kind, scale=6.0)
    x = np.asarray(x, order=order)
    n = shape[axis]
    kw = dict(z_loss=1e-2, softcap=5.0, label_smoothing=0.05)
    if kind != "soft":
        kw["weight"] = rng.uniform(0.5, 1.5, n)
    ref, ref_grad, ref_lse = torch_ref(x, t, axis, **kw)
    loss, grad, lse = fastlse.cross_entropy(
        x, t, axis=axis, return_grad=True, return_lse=True, **kw
    )
    check(loss, ref, dtype)
    check(grad, ref_grad, dtype)
    check(lse, ref_lse, dtype)


def test_large_z_and_tight_cap(rng):
    """The z-loss dominating, and a cap that saturates most logits."""
    x, t = make_case(rng, (50, 37), -1, np.float64, "ignore", scale=20.0)
    for kw in [dict(z_loss=10.0), dict(softcap=0.5), dict(z_loss=3.0, softcap=0.1)]:
        ref, ref_grad, ref_lse = torch_ref(x, t, **kw)
        loss, grad, lse = fastlse.cross_entropy(x, t, return_grad=True, return_lse=True, **kw)
        np.testing.assert_allclose(loss, ref, rtol=1e-11)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(lse, ref_lse, rtol=1e-12)


def test_fast_path_unchanged(rng):
    """z_loss=0, softcap=None, return_lse: the plain results, bit for bit."""
    cases = [((40, 7), -1), ((30, 50), -1), ((4, 6, 9), 1)]
    for shape, axis in cases:
        for kind in ["ignore", "soft"]:
            x, t = make_case(rng, shape, axis, np.float32, kind)
            for red in ["mean", "sum", "none"]:
                kw = dict(axis=axis, reduction=red, label_smoothing=0.1)
                a, ga = fastlse.cross_entropy(x, t, return_grad=True, **kw)
                b, gb = fastlse.cross_entropy(
                    x, t, return_grad=True, z_loss=0.0, softcap=None, **kw
                )
                c, gc, lse = fastlse.cross_entropy(x, t, return_grad=True, return_lse=True, **kw)
                for u in (b, c):
                    assert np.array_equal(u, a)
                for g in (gb, gc):
                    assert np.array_equal(g, ga)
                # the lse is the logits' own
                ref = fastlse.logsumexp(x, axis=axis)
                np.testing.assert_allclose(lse, ref, rtol=1e-6)


def test_return_lse_outputs(rng):
    """Output order and shapes; ignored rows get their lse; float16 stays float16."""
    x, t = make_case(rng, (5, 3, 6), 1, np.float64, "index")
    t[0, 0] = t[2, 5] = -100
    out = fastlse.cross_entropy(x, t, axis=1, return_lse=True, reduction="none")
    assert isinstance(out, tuple) and len(out) == 2
    loss, lse = out
    assert loss.shape == lse.shape == (5, 6)
    assert loss[0, 0] == 0 and loss[2, 5] == 0
    np.testing.assert_allclose(lse, fastlse.logsumexp(x, axis=1), rtol=1e-14)
    out = fastlse.cross_entropy(x, t, axis=1, return_grad=True, return_lse=True)
    assert len(out) == 3 and out[1].shape == x.shape and out[2].shape == (5, 6)
    x1 = np.float64([1.0, 2.0, 3.0])
    loss, lse = fastlse.cross_entropy(x1, 2, return_lse=True, softcap=1.0)
    assert np.ndim(lse) == 0
    np.testing.assert_allclose(lse, np.log(np.exp(np.tanh(x1)).sum()), rtol=1e-14)
    xh = x.astype(np.float16)
    loss, lse = fastlse.cross_entropy(xh, t, axis=1, return_lse=True, z_loss=0.1, softcap=3)
    assert loss.dtype == lse.dtype == np.float16


def test_out_aliases_logits(rng):
    """out=logits with a cap: every logit is read before its gradient is written."""
    for shape, axis in [((20, 40), -1), ((20, 6), -1), ((3, 40, 5), 1)]:
        x, t = make_case(rng, shape, axis, np.float64, "ignore")
        kw = dict(axis=axis, z_loss=0.1, softcap=2.0, label_smoothing=0.1)
        loss, grad = fastlse.cross_entropy(x, t, return_grad=True, **kw)
        y = x.copy()
        loss2, g2 = fastlse.cross_entropy(y, t, return_grad=True, out=y, **kw)
        assert g2 is y and loss2 == loss
        np.testing.assert_array_equal(y, grad)


def test_special_values(rng):
    """-inf / inf logits: the cap makes them finite; without it lse follows torch's logsumexp."""
    x = rng.standard_normal((4, 40))
    x[0, 5] = -np.inf
    x[1, :] = -np.inf
    x[2, 3] = np.inf
    x[3, 7] = np.nan
    t = np.array([0, 1, 3, 0])
    for kw in [dict(softcap=3.0, z_loss=0.1), dict(softcap=3.0)]:
        ref, ref_grad, ref_lse = torch_ref(x, t, reduction="none", **kw)
        loss, grad, lse = fastlse.cross_entropy(
            x, t, reduction="none", return_grad=True, return_lse=True, **kw
        )
        np.testing.assert_allclose(loss, ref, rtol=1e-12)
        np.testing.assert_allclose(lse, ref_lse, rtol=1e-12)
        np.testing.assert_allclose(grad[:3], ref_grad[:3], rtol=1e-12, atol=1e-15)
        assert np.isnan(loss[3]) and np.isnan(lse[3])
    # no cap: lse of the rows as torch.logsumexp (-inf, inf, nan), loss as torch
    for cols in (False, True):
        xx = np.ascontiguousarray(x.T) if cols else x
        ax = 0 if cols else -1
        ref, _, ref_lse = torch_ref(xx, t, axis=ax, reduction="none", z_loss=0.1)
        loss, lse = fastlse.cross_entropy(xx, t, axis=ax, reduction="none", return_lse=True)
        np.testing.assert_array_equal(lse[1:], ref_lse[1:])
        np.testing.assert_allclose(lse[0], ref_lse[0], rtol=1e-14)
        lz = fastlse.cross_entropy(xx, t, axis=ax, reduction="none", z_loss=0.1)
        np.testing.assert_allclose(lz, ref, rtol=1e-12)
    xs = x[:, :6].copy()  # few classes
    _, ref_lse = torch_ref(xs, t, reduction="none")[::2]
    np.testing.assert_array_equal(fastlse.cross_entropy(xs, t, return_lse=True)[1], ref_lse)


def test_all_ignored_and_zero_weights(rng):
    x, t = make_case(rng, (6, 5), -1, np.float64, "index")
    ti = np.full(6, -100)
    for kw in [dict(z_loss=0.1), dict(z_loss=0.1, weight=np.ones(5))]:
        loss, grad = fastlse.cross_entropy(x, ti, return_grad=True, **kw)
        ref, ref_grad, _ = torch_ref(x, ti, **kw)
        assert np.isnan(loss) and np.isnan(ref)  # 0 / 0, as torch's mean
        np.testing.assert_array_equal(grad, ref_grad)
        assert not grad.any()
        assert fastlse.cross_entropy(x, ti, reduction="sum", **kw) == 0.0
    kw = dict(z_loss=0.2, weight=np.zeros(5), reduction="sum")
    ref, ref_grad, _ = torch_ref(x, t, **kw)
    loss, grad = fastlse.cross_entropy(x, t, return_grad=True, **kw)
    np.testing.assert_allclose(loss, ref, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("kw", "exc", "word"),
    [
        (dict(z_loss=-0.1), ValueError, "z_loss"),
        (dict(z_loss=np.inf), ValueError, "z_loss"),
        (dict(z_loss=np.nan), ValueError, "z_loss"),
        (dict(z_loss="big"), TypeError, "z_loss"),
        (dict(softcap=0.0), ValueError, "softcap"),
        (dict(softcap=-3.0), ValueError, "softcap"),
        (dict(softcap=np.inf), ValueError, "softcap"),
        (dict(softcap=np.nan), ValueError, "softcap"),
        (dict(softcap="x"), TypeError, "softcap"),
        (dict(softcap=1e39), ValueError, "softcap"),  # inf in float32
    ],
)
def test_bad_inputs(kw, exc, word):
    x = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(exc, match=word):
        fastlse.cross_entropy(x, [0, 1, 2], **kw)


def test_tanh_matches_numpy(rng):
    """The kernels' vectorized tanh: within 3 ulp of np.tanh over its whole range
    (2 ulp of the correctly rounded tanh, checked with mpmath when it was written)."""
    for dt in (np.float32, np.float64):
        v = np.concatenate(
            [
                rng.uniform(-1, 1, 20000),
                rng.uniform(-25, 25, 20000),
                np.exp(rng.uniform(-40, 4, 20000)) * rng.choice([-1, 1], 20000),
                np.linspace(0.62, 0.63, 1001),
                [0.0, 1e-300, 5e-324, 9.0, 10.0, 11.0, 19.0, 21.0, 1e30],
            ]
        ).astype(dt)
        v = np.concatenate([v, -v])
        out = np.empty_like(v)
        K.tanh_flat(0, v, out)
        ref = np.tanh(v)
        ulp = np.spacing(np.abs(ref).astype(dt)).astype(np.float64)
        assert (np.abs(out.astype(np.float64) - ref) / ulp).max() <= 3.0
        sp = np.array([np.inf, -np.inf, np.nan], dtype=dt)
        K.tanh_flat(0, sp, out[:3])
        np.testing.assert_array_equal(out[:3], [1.0, -1.0, np.nan])


def test_dask_passes_softcap_and_z_loss(rng):
    da = pytest.importorskip("dask.array")
    x, t = make_case(rng, (30, 12), -1, np.float64, "ignore")
    dx = da.from_array(x, chunks=(7, 12))
    dt = da.from_array(t, chunks=7)
    for kw in [dict(softcap=2.0, z_loss=0.1), dict(softcap=2.0, weight=np.arange(1.0, 13.0))]:
        for red in ["mean", "sum", "none"]:
            ref, ref_grad = fastlse.cross_entropy(x, t, reduction=red, return_grad=True, **kw)
            loss, grad = fastlse.cross_entropy(dx, dt, reduction=red, return_grad=True, **kw)
            np.testing.assert_allclose(loss.compute(), ref, rtol=1e-12)
            np.testing.assert_allclose(grad.compute(), ref_grad, rtol=1e-12, atol=1e-16)
    with pytest.raises(NotImplementedError, match="return_lse"):
        fastlse.cross_entropy(dx, dt, return_lse=True)
    with pytest.raises(NotImplementedError, match="z_loss"):
        fastlse.cross_entropy(dx, dt, z_loss=0.1, weight=np.ones(12))
    with pytest.raises(ValueError, match="softcap"):
        fastlse.cross_entropy(dx, dt, softcap=-1.0)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("shape", [(0, 5), (2, 5, 0)])
def test_empty_batch(soft, shape):
    x = np.zeros(shape, dtype=np.float32)
    axis = 1
    t = np.zeros(shape, np.float32) if soft else np.zeros(drop(shape, axis), np.int64)
    kw = dict(axis=axis, z_loss=0.1, softcap=3.0)
    loss, g, lse = fastlse.cross_entropy(x, t, return_grad=True, return_lse=True, **kw)
    assert np.isnan(loss) and g.shape == shape and lse.shape == drop(shape, axis)
    assert fastlse.cross_entropy(x, t, reduction="sum", **kw) == 0.0
    assert fastlse.cross_entropy(x, t, reduction="none", **kw).shape == drop(shape, axis)
