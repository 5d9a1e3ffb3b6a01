"""linear_cross_entropy against the unfused computation written in torch autograd.

The reference is ``F.linear`` + the softcap formula + ``F.cross_entropy`` +
the z-loss term, in float64, with the gradients from ``backward()``.  Every
option is swept with block sizes that do not divide N or V, so both schedules
(one vocabulary block per row block; several, recomputed in the backward
pass) and the partial last blocks are exercised.
"""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from fastlse import linear_cross_entropy  # noqa: E402
from fastlse._linear_xent import block_sizes  # noqa: E402
from fastlse.kernels.rows import tanhx  # noqa: E402

N, D, V = 23, 6, 41
#: (block_rows, block_vocab): several vocabulary blocks (7 rows, 13
#: classes: neither divides); one vocab block with a partial last row block
BLOCKS = [(7, 13), (5, None)]
#: label_smoothing, z_loss, softcap
OPTIONS = [
    (0.0, 0.0, None),
    (0.1, 0.0, None),
    (0.0, 1e-2, None),
    (0.0, 0.0, 2.5),
    (0.2, 3e-2, 1.5),
]
TOL = {np.float32: (2e-5, 2e-5), np.float64: (1e-12, 1e-12)}


def reference(h, w, t, bias=None, reduction="mean", ls=0.0, z=0.0, cap=None, ii=-100):
    """(loss, [grad_hidden, grad_weight(, grad_bias)], lse) by torch autograd, float64."""
    H = torch.tensor(np.asarray(h, dtype=np.float64), requires_grad=True)
    W = torch.tensor(np.asarray(w, dtype=np.float64), requires_grad=True)
    B = None if bias is None else torch.tensor(np.float64(bias), requires_grad=True)
    x = F.linear(H, W, B)
    if cap is not None:
        x = cap * torch.tanh(x / cap)
    T = torch.as_tensor(np.asarray(t, dtype=np.int64))
    loss = F.cross_entropy(x, T, ignore_index=ii, reduction=reduction, label_smoothing=ls)
    lse = torch.logsumexp(x, dim=-1)
    keep = (T != ii).double()
    zrow = z * lse**2 * keep
    if reduction == "mean":  # all ignored: cross_entropy's nan, and zero gradients
        loss = loss + zrow.sum() / keep.sum().clamp(min=1)
    elif reduction == "sum":
        loss = loss + zrow.sum()
    else:
        loss = loss + zrow
    loss.sum().backward()
    grads = [H.grad.numpy(), W.grad.numpy()] + ([] if B is None else [B.grad.numpy()])
    return loss.detach().numpy(), grads, lse.detach().numpy()


def data(dtype, seed=0, n=N, d=D, v=V, scale=1.0):
    rng = np.random.default_rng(seed)
    h = (rng.standard_normal((n, d)) * scale).astype(dtype)
    w = rng.standard_normal((v, d)).astype(dtype)
    b = rng.standard_normal(v).astype(dtype)
    t = rng.integers(0, v, n)
    return h, w, b, t


def check(got, ref, dtype):
    rtol, atol = TOL[dtype]
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref)
    scale = np.nanmax(np.abs(ref)) if ref.size and np.isfinite(ref).any() else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * max(scale, 1.0))


def run_and_compare(h, w, t, b, dtype, reduction, ls, z, cap, ii=-100, blocks=(None, None)):
    out = linear_cross_entropy(
        h, w, t, bias=b, ignore_index=ii, reduction=reduction, label_smoothing=ls,
        z_loss=z, softcap=cap, return_grad=True, return_lse=True,
        block_rows=blocks[0], block_vocab=blocks[1],
    )  # fmt: skip
    ref_loss, ref_grads, ref_lse = reference(h, w, t, b, reduction, ls, z, cap, ii)
    assert len(out) == 4 + (b is not None)
    loss, grads, lse = out[0], out[1:-1], out[-1]
    assert np.asarray(loss).dtype == dtype
    assert np.shape(loss) == ((len(t),) if reduction == "none" else ())
    check(loss, ref_loss, dtype)
    for g, r, a in zip(grads, ref_grads, [h, w, b]):
        assert g.dtype == dtype and g.shape == a.shape
        check(g, r, dtype)
    assert lse.dtype == dtype and lse.shape == (len(t),)
    check(lse, ref_lse, dtype)


# ----------------------------------------------------------------------------
# every option against torch
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: f"blocks{b[0]}x{b[1]}")
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "ls{}-z{}-cap{}".format(*o))
@pytest.mark.parametrize("ignored", ["none", "some", "all"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matches_torch(dtype, reduction, ignored, opts, with_bias, blocks):
    h, w, b, t = data(dtype)
    if ignored == "some":
        t[::4] = -100
    elif ignored == "all":
        t[:] = -100
    ls, z, cap = opts
    run_and_compare(h, w, t, b if with_bias else None, dtype, reduction, ls, z, cap, -100, blocks)


def test_all_ignored_mean_is_nan_with_zero_grads():
    h, w, b, t = data(np.float64)
    t[:] = 7
    loss, gh, gw, gb = linear_cross_entropy(
        h, w, t, bias=b, ignore_index=7, z_loss=0.1, return_grad=True
    )
    assert np.isnan(loss)
    assert not gh.any() and not gw.any() and not gb.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_ignore_index_inside_range(dtype):
    h, w, b, t = data(dtype, seed=1)
    t[::3] = 5
    run_and_compare(h, w, t, b, dtype, "mean", 0.1, 1e-2, 3.0, ii=5, blocks=(4, 9))


@pytest.mark.parametrize(
    "dtype, blocks, cap",
    [
        (np.float32, (None, None), None),  # one vocabulary block, parallel
        (np.float32, (None, None), 4.0),
        (np.float64, (100, 1000), 4.0),  # vocabulary blocks, parallel
        (np.float64, (100, 1000), None),
        (np.float64, (64, 128), None),  # blocks below the parallel threshold
    ],
)
def test_parallel_sizes(dtype, blocks, cap):
    """Blocks large enough for the parallel kernels; V not a multiple of anything.

    (One dtype per schedule: each parallel compilation takes seconds.)
    """
    h, w, b, t = data(dtype, seed=2, n=300, d=16, v=1001, scale=0.5)
    t[::7] = -100
    run_and_compare(h, w, t, b, dtype, "mean", 0.05, 1e-3, cap, blocks=blocks)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_large_logits_stay_finite(dtype):
    """Logits in the hundreds: the pair algebra keeps lse exact where exp overflows."""
    h, w, b, t = data(dtype, seed=3, scale=60.0)
    run_and_compare(h, w, t, b, dtype, "sum", 0.1, 0.0, None, blocks=(7, 13))


@pytest.mark.parametrize("blocks", [(None, None), (7, 13)])
def test_neg_inf_bias_bans_classes(blocks):
    """-inf bias (banned classes): finite loss and zero gradient there, as torch."""
    h, w, b, t = data(np.float64, seed=4)
    b[[0, 17, 40]] = -np.inf
    t[t == 0] = 1
    t[t == 17] = 1
    t[t == 40] = 1
    run_and_compare(h, w, t, b, np.float64, "mean", 0.0, 1e-2, None, blocks=blocks)
    _, _, gw, gb = linear_cross_entropy(h, w, t, bias=b, return_grad=True)
    assert not gw[[0, 17, 40]].any() and not gb[[0, 17, 40]].any()


# ----------------------------------------------------------------------------
# outputs, dtypes, layouts
# ----------------------------------------------------------------------------
def test_output_order():
    h, w, b, t = data(np.float64)
    assert np.ndim(linear_cross_entropy(h, w, t)) == 0
    loss, lse = linear_cross_entropy(h, w, t, return_lse=True)
    assert lse.shape == (N,)
    loss2, gh, gw = linear_cross_entropy(h, w, t, return_grad=True)
    assert gh.shape == (N, D) and gw.shape == (V, D)
    loss3, gh, gw, gb, lse2 = linear_cross_entropy(
        h, w, t, bias=b, return_grad=True, return_lse=True
    )
    assert gb.shape == (V,) and lse2.shape == (N,) and np.ndim(loss3) == 0
    assert loss == loss2
    np.testing.assert_array_equal(lse, linear_cross_entropy(h, w, t, return_lse=True)[1])


def test_blocks_agree():
    """Every block size gives the same numbers (up to the order of the sums)."""
    h, w, b, t = data(np.float64, seed=5)
    base = linear_cross_entropy(h, w, t, bias=b, label_smoothing=0.1, return_grad=True)
    for br, bv in itertools.product([1, 3, 23, 100], [1, 2, 40, 41, 1000]):
        other = linear_cross_entropy(
            h, w, t, bias=b, label_smoothing=0.1, return_grad=True, block_rows=br,
            block_vocab=bv,
        )  # fmt: skip
        for x, y in zip(base, other):
            np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("blocks", [(7, 13), (5, None)])
def test_accumulation_in_slices(monkeypatch, blocks):
    """A scratch of a few elements: grad_weight and grad_hidden are accumulated
    one row / one column at a time."""
    import fastlse._linear_xent as lx

    monkeypatch.setattr(lx, "ACC_BYTES", 64)
    h, w, b, t = data(np.float64, seed=9)
    t[::5] = -100
    run_and_compare(h, w, t, b, np.float64, "sum", 0.1, 1e-2, 2.0, blocks=blocks)


def test_mixed_and_half_dtypes():
    h, w, _, t = data(np.float32)
    loss, gh, gw = linear_cross_entropy(h, w.astype(np.float64), t, return_grad=True)
    assert np.asarray(loss).dtype == np.float64
    assert gh.dtype == np.float32 and gw.dtype == np.float64
    ref_loss, ref_grads, _ = reference(h, w, t)
    check(loss, ref_loss, np.float32)
    check(gh, ref_grads[0], np.float32)
    l16, g16, _ = linear_cross_entropy(h.astype(np.float16), w.astype(np.float16), t,
                                       return_grad=True)  # fmt: skip
    assert np.asarray(l16).dtype == np.float16 and g16.dtype == np.float16
    ref16, _, _ = reference(h.astype(np.float16), w.astype(np.float16), t)
    np.testing.assert_allclose(np.float64(l16), ref16, rtol=2e-3)


def test_strided_and_fortran_inputs():
    h, w, b, t = data(np.float64, seed=6)
    hs = np.repeat(h, 2, axis=0)[::2]  # a strided view
    wf = np.asfortranarray(w)
    bs = np.repeat(b, 2)[::2]
    got = linear_cross_entropy(hs, wf, t, bias=bs, return_grad=True, block_vocab=10)
    want = linear_cross_entropy(h, w, t, bias=b, return_grad=True, block_vocab=10)
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-14)


def test_inputs_not_modified():
    h, w, b, t = data(np.float32, seed=7)
    copies = [a.copy() for a in (h, w, b, t)]
    for blocks in BLOCKS:
        linear_cross_entropy(
            h, w, t, bias=b, label_smoothing=0.1, z_loss=1e-3, softcap=2.0,
            return_grad=True, return_lse=True, block_rows=blocks[0], block_vocab=blocks[1],
        )  # fmt: skip
    for a, c in zip((h, w, b, t), copies):
        np.testing.assert_array_equal(a, c)


def test_empty_batch():
    w = np.ones((5, 3))
    h = np.ones((0, 3))
    t = np.zeros(0, dtype=np.int64)
    assert np.isnan(linear_cross_entropy(h, w, t))
    assert linear_cross_entropy(h, w, t, reduction="sum") == 0.0
    assert linear_cross_entropy(h, w, t, reduction="none").shape == (0,)
    _, gh, gw = linear_cross_entropy(h, w, t, reduction="sum", return_grad=True)
    assert gh.shape == (0, 3) and gw.shape == (5, 3) and not gw.any()


def test_tanh_accuracy():
    """The vectorized tanh of the softcap, within a few ulps of numpy's."""
    from numba import njit

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = tanhx(x[i])

    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        x = np.concatenate(
            [rng.uniform(-1, 1, 2000), rng.uniform(-40, 40, 2000), [0.25, -0.25, 1e-30, 0.0]]
        ).astype(dtype)
        x = np.concatenate([x, np.array([np.inf, -np.inf, np.nan], dtype=dtype)])
        out = np.empty_like(x)
        apply(x, out)
        want = np.tanh(x.astype(np.float64))
        fin = np.isfinite(x)
        ulp = np.abs(out[fin] - want[fin]) / np.spacing(np.abs(want[fin]).astype(dtype))
        assert ulp.max() <= 6
        assert out[-3] == 1 and out[-2] == -1 and np.isnan(out[-1])


def test_default_block_sizes():
    # the benchmark's LM head: all V classes of 262 rows (64 MiB) per block
    assert block_sizes(4096, 64_000, 4) == (262, 64_000)
    # too wide to keep 128 rows: vocabulary blocks of 8192, 64 MiB in all
    assert block_sizes(4096, 256_000, 8) == (1024, 8192)
    assert block_sizes(10, 5, 8) == (10, 5)


# ----------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------
def _bad_cases():
    h, w, _, t = data(np.float32)
    ok = {"hidden": h, "weight": w, "target": t}
    return [
        ({"hidden": h[0]}, {}, ValueError, "hidden"),
        ({"weight": w[:, :3]}, {}, ValueError, "weight"),
        ({"weight": w[0]}, {}, ValueError, "weight"),
        ({"target": t[:-1]}, {}, ValueError, "target"),
        ({"target": t[:, None]}, {}, ValueError, "target"),
        ({"target": t.astype(np.float32)}, {}, TypeError, "target"),
        ({"target": np.where(t == t[0], V, t)}, {}, IndexError, "target"),
        ({"target": np.where(t == t[0], -1, t)}, {}, IndexError, "target"),
        ({"hidden": h.astype(np.int32)}, {}, TypeError, "hidden"),
        ({"weight": w.astype(np.int64)}, {}, TypeError, "weight"),
        ({}, {"bias": np.ones(V, dtype=np.int32)}, TypeError, "bias"),
        ({}, {"bias": np.ones(V + 1, dtype=np.float32)}, ValueError, "bias"),
        ({}, {"reduction": "avg"}, ValueError, "reduction"),
        ({}, {"label_smoothing": 1.5}, ValueError, "label_smoothing"),
        ({}, {"label_smoothing": -0.1}, ValueError, "label_smoothing"),
        ({}, {"z_loss": -1e-4}, ValueError, "z_loss"),
        ({}, {"z_loss": float("nan")}, ValueError, "z_loss"),
        ({}, {"softcap": 0.0}, ValueError, "softcap"),
        ({}, {"softcap": -30.0}, ValueError, "softcap"),
        ({}, {"softcap": float("inf")}, ValueError, "softcap"),
        ({}, {"ignore_index": 1.5}, TypeError, "ignore_index"),
        ({}, {"block_rows": 0}, ValueError, "block_rows"),
        ({}, {"block_vocab": 2.5}, TypeError, "block_vocab"),
    ], ok


@pytest.mark.parametrize("case", range(len(_bad_cases()[0])))
def test_bad_inputs(case):
    cases, ok = _bad_cases()
    pos, kw, exc, name = cases[case]
    args = {**ok, **pos}
    before = {k: np.array(v, copy=True) for k, v in args.items()}
    with pytest.raises(exc, match=name):
        linear_cross_entropy(args["hidden"], args["weight"], args["target"], **kw)
    for k, v in args.items():
        np.testing.assert_array_equal(v, before[k])
