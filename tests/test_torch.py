"""fastlse with torch tensors: tensors out for tensors in, autograd, bfloat16.

References are torch's own functions on the same tensors (float64, so that
their rounding is far below the tolerances), and torch.autograd.gradcheck.
"""

import subprocess
import sys

import numpy as np
import pytest

import fastlse

torch = pytest.importorskip("torch")
F = torch.nn.functional
ft = pytest.importorskip("fastlse.torch")

BF16_RTOL = 2.0**-8  # one bfloat16 rounding of the result (2**-9), and some slack


@pytest.fixture
def x64():
    g = torch.Generator().manual_seed(7)
    return torch.randn(6, 9, generator=g, dtype=torch.float64) * 3


def _close(got, want, rtol=1e-12, atol=1e-13):
    assert isinstance(got, torch.Tensor), type(got)
    assert got.dtype == want.dtype and got.shape == want.shape, (got, want)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True)


# -- the numpy-style functions: a tensor in, a tensor out --------------------

PUBLIC = [
    ("logsumexp", lambda x: fastlse.logsumexp(x, axis=1), lambda x: torch.logsumexp(x, 1)),
    ("softmax", lambda x: fastlse.softmax(x, axis=1), lambda x: torch.softmax(x, 1)),
    ("log_softmax", lambda x: fastlse.log_softmax(x, axis=0), lambda x: torch.log_softmax(x, 0)),
    ("logcumsumexp", lambda x: fastlse.logcumsumexp(x), lambda x: torch.logcumsumexp(x, -1)),
    ("log_sigmoid", fastlse.log_sigmoid, F.logsigmoid),
    ("lse_all", fastlse.logsumexp, lambda x: torch.logsumexp(x.reshape(-1), 0)),
]


@pytest.mark.parametrize("name, ours, theirs", PUBLIC, ids=[p[0] for p in PUBLIC])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_public_functions_return_tensors(x64, name, ours, theirs, dtype, layout):
    x = x64.to(dtype)
    x = {"contiguous": x, "transposed": x.T.contiguous().T, "strided": x[:, ::2]}[layout]
    want = theirs(x.double()).to(dtype)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == torch.float32 else {}
    _close(ours(x), want, **tol)


def test_losses_return_tensors(x64):
    t = torch.tensor([0, 3, 8, 1, -100, 2])
    _close(fastlse.cross_entropy(x64, t), F.cross_entropy(x64, t))
    lp = torch.log_softmax(x64, 1)
    _close(fastlse.nll_loss(lp, t, reduction="none"), F.nll_loss(lp, t, reduction="none"))
    loss, grad = fastlse.cross_entropy(x64, t, return_grad=True)
    xr = x64.clone().requires_grad_()
    F.cross_entropy(xr, t).backward()
    _close(loss, F.cross_entropy(x64, t))
    _close(grad, xr.grad)


def test_return_sign_gives_tensors():
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    res, sgn = fastlse.logsumexp(a, b=torch.tensor([1.0, -1.0], dtype=torch.float64),
                                 return_sign=True)  # fmt: skip
    _close(res, torch.log(torch.exp(a[1]) - torch.exp(a[0])))
    _close(sgn, torch.tensor(-1.0, dtype=torch.float64))


def test_out_tensor_is_written_in_place(x64):
    out = torch.empty_like(x64)
    assert fastlse.softmax(x64, axis=1, out=out) is out
    _close(out, torch.softmax(x64, 1))
    out16 = torch.empty_like(x64, dtype=torch.bfloat16)
    assert fastlse.log_softmax(x64.bfloat16(), axis=1, out=out16) is out16
    _close(out16, torch.log_softmax(x64.bfloat16().float(), 1).bfloat16(), rtol=BF16_RTOL, atol=0)


def test_results_share_memory_with_numpy_results(x64):
    # from_numpy: the result tensor is numpy's buffer, not a copy of it
    y = fastlse.softmax(x64, axis=1)
    y.numpy()[0, 0] = 5.0
    assert y[0, 0].item() == 5.0


def test_input_is_not_modified(x64):
    before = x64.clone()
    fastlse.softmax(x64, axis=1)
    ft.cross_entropy(x64.requires_grad_(), torch.zeros(6, dtype=torch.int64)).backward()
    assert torch.equal(x64.detach(), before)


def test_tensor_on_another_device_is_refused():
    x = torch.empty(3, 4, device="meta")
    for call in (lambda: fastlse.logsumexp(x, axis=1), lambda: ft.softmax(x, dim=1)):
        with pytest.raises(ValueError, match=r"(logsumexp|softmax): input|a is a torch tensor on"):
            call()
    with pytest.raises(ValueError, match="fastlse computes on the CPU"):
        fastlse.cross_entropy(x, torch.zeros(3, dtype=torch.int64))


def test_import_fastlse_imports_neither_torch_nor_jax():
    code = "import sys, fastlse; print(sorted({'torch', 'jax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plain_numpy_results_stay_numpy(x64):
    x = x64.numpy()
    assert type(fastlse.softmax(x, axis=1)) is np.ndarray
    assert type(fastlse.logsumexp(x.tolist(), axis=1)) is np.ndarray


# -- autograd -----------------------------------------------------------------


def _req(x):
    return x.detach().clone().requires_grad_()


def _grads(fn, x):
    xr = _req(x)
    out = fn(xr)
    g = torch.linspace(0.5, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * g).sum().backward()
    return out.detach(), xr.grad


XENT_OPTIONS = [
    {},
    {"weight": "w"},
    {"ignore_index": 3},
    {"label_smoothing": 0.2},
    {"weight": "w", "label_smoothing": 0.1, "ignore_index": 0},
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", XENT_OPTIONS, ids=str)
@pytest.mark.parametrize("shape", [(6, 9), (9,), (4, 9, 3)], ids=str)
def test_cross_entropy_matches_torch(reduction, opts, shape):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 4
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = torch.randint(0, 9, tshape, generator=g)
    kw = {k: (torch.rand(9, generator=g, dtype=torch.float64) if v == "w" else v)
          for k, v in opts.items()}  # fmt: skip
    mine = _grads(lambda z: ft.cross_entropy(z, t, reduction=reduction, **kw), x)
    ref = _grads(lambda z: F.cross_entropy(z, t, reduction=reduction, **kw), x)
    for a, b in zip(mine, ref):
        _close(a, b)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_probability_targets(x64, reduction):
    p = torch.softmax(torch.randn(6, 9, dtype=torch.float64), 1)
    mine = _grads(lambda z: ft.cross_entropy(z, p, reduction=reduction, label_smoothing=0.1), x64)
    ref = _grads(lambda z: F.cross_entropy(z, p, reduction=reduction, label_smoothing=0.1), x64)
    for a, b in zip(mine, ref):
        _close(a, b)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_lm_options_match_torch_formula(x64, reduction):
    t = torch.tensor([0, 3, 8, 1, -100, 2])
    z, cap = 1e-3, 5.0

    def reference(x):  # the formula of fastlse.cross_entropy's docstring, in torch
        c = cap * torch.tanh(x / cap)
        keep = (t != -100).to(x.dtype)
        zl = z * keep * torch.logsumexp(c, 1) ** 2
        ce = F.cross_entropy(c, t, reduction=reduction)
        return ce + {"none": zl, "sum": zl.sum(), "mean": zl.sum() / keep.sum()}[reduction]

    mine = _grads(lambda x: ft.cross_entropy(x, t, reduction=reduction, z_loss=z, softcap=cap), x64)
    for a, b in zip(mine, _grads(reference, x64)):
        _close(a, b)


def test_cross_entropy_loss_module(x64):
    w = torch.rand(9, dtype=torch.float64)
    t = torch.tensor([0, 3, 8, 1, -100, 2])
    ours = ft.CrossEntropyLoss(weight=w, label_smoothing=0.05)
    theirs = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.05)
    for a, b in zip(_grads(lambda z: ours(z, t), x64), _grads(lambda z: theirs(z, t), x64)):
        _close(a, b)
    assert "weight" in dict(ours.named_buffers())


@pytest.mark.parametrize(
    "fn",
    [
        lambda z: ft.cross_entropy(z, torch.tensor([1, 0, 2, 2]), reduction="none"),
        lambda z: ft.cross_entropy(
            z, torch.tensor([1, 0, 2, 2]), label_smoothing=0.3, z_loss=0.01, softcap=3.0
        ),
        lambda z: ft.softmax(z, dim=1),
        lambda z: ft.softmax(z, dim=None),
        lambda z: ft.log_softmax(z, dim=0),
        lambda z: ft.logsumexp(z, dim=1),
        lambda z: ft.logsumexp(z, dim=(0, 1), keepdim=True),
        lambda z: fastlse.logsumexp(z, axis=0),
        lambda z: fastlse.cross_entropy(z, torch.tensor([1, 0, 2, 2]), reduction="sum"),
    ],
    ids=[
        "xent_none",
        "xent_lm",
        "softmax",
        "softmax_all",
        "log_softmax",
        "lse",
        "lse_all",
        "public_lse",
        "public_xent",
    ],
)
def test_gradcheck(fn):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_autograd_functions_match_torch(x64, name):
    ours = {"logsumexp": lambda z: ft.logsumexp(z, dim=-1, keepdim=True),
            "softmax": lambda z: ft.softmax(z, dim=1),
            "log_softmax": lambda z: ft.log_softmax(z[:, ::2], dim=0)}[name]  # fmt: skip
    theirs = {"logsumexp": lambda z: torch.logsumexp(z, -1, keepdim=True),
              "softmax": lambda z: torch.softmax(z, 1),
              "log_softmax": lambda z: torch.log_softmax(z[:, ::2], 0)}[name]  # fmt: skip
    for a, b in zip(_grads(ours, x64), _grads(theirs, x64)):
        _close(a, b)


def test_public_functions_keep_the_graph(x64):
    for ours, theirs in [
        (lambda z: fastlse.softmax(z, axis=1), lambda z: torch.softmax(z, 1)),
        (lambda z: fastlse.log_softmax(z, axis=0), lambda z: torch.log_softmax(z, 0)),
        (
            lambda z: fastlse.logsumexp(z, axis=1, keepdims=True),
            lambda z: torch.logsumexp(z, 1, keepdim=True),
        ),
    ]:
        for a, b in zip(_grads(ours, x64), _grads(theirs, x64)):
            _close(a, b)


def test_no_backward_is_a_clear_error(x64):
    xr = _req(x64)
    with pytest.raises(ValueError, match="logcumsumexp: a requires grad"):
        fastlse.logcumsumexp(xr)
    with pytest.raises(ValueError, match="logsumexp: a requires grad"):
        fastlse.logsumexp(xr, b=x64)
    with pytest.raises(ValueError, match="cross_entropy: target requires grad"):
        ft.cross_entropy(xr, torch.softmax(_req(x64), 1))
    with torch.no_grad():  # no graph to keep: a plain result
        assert fastlse.logcumsumexp(xr).grad_fn is None


def test_no_grad_mode_builds_no_graph(x64):
    xr = _req(x64)
    with torch.no_grad():
        loss = ft.cross_entropy(xr, torch.zeros(6, dtype=torch.int64))
    assert loss.grad_fn is None and not loss.requires_grad


# -- bfloat16 and float16 -----------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_within_one_rounding_of_float32(x64, dtype):
    x = x64.to(dtype)
    x32 = x.float()  # the same values, exactly
    rtol = BF16_RTOL if dtype == torch.bfloat16 else 2.0**-10
    cases = [
        (fastlse.softmax(x, axis=1), torch.softmax(x32, 1)),
        (fastlse.logsumexp(x, axis=1), torch.logsumexp(x32, 1)),
        (ft.log_softmax(x, dim=1), torch.log_softmax(x32, 1)),
    ]
    for got, want in cases:
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want, rtol=rtol, atol=1e-6)


def test_bfloat16_gradient(x64):
    t = torch.tensor([0, 3, 8, 1, 4, 2])
    loss, grad = _grads(lambda z: ft.cross_entropy(z, t), x64.bfloat16())
    ref_loss, ref_grad = _grads(lambda z: F.cross_entropy(z, t), x64.bfloat16().float())
    assert loss.dtype == grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.float(), ref_loss, rtol=BF16_RTOL, atol=0)
    torch.testing.assert_close(grad.float(), ref_grad, rtol=BF16_RTOL, atol=1e-6)


def test_ml_dtypes_bfloat16_arrays():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.linspace(-40, 40, 24).reshape(4, 6).astype(ml_dtypes.bfloat16)
    x32 = torch.from_numpy(x.astype(np.float32))
    got = fastlse.log_softmax(x, axis=1)
    assert got.dtype == x.dtype
    want = torch.log_softmax(x32, 1).numpy()
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=BF16_RTOL, atol=1e-6)


# -- jax ----------------------------------------------------------------------


def test_jax_arrays_in_jax_arrays_out(x64):
    jax = pytest.importorskip("jax")
    x = jax.numpy.asarray(x64.float().numpy())
    got = fastlse.softmax(x, axis=1)
    assert isinstance(got, jax.Array)
    want = jax.nn.softmax(x, axis=1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-6, atol=1e-7)
    lse = fastlse.logsumexp(x.astype(jax.numpy.bfloat16), axis=1)
    assert isinstance(lse, jax.Array) and lse.dtype == jax.numpy.bfloat16
    with pytest.raises(TypeError, match="softmax: out cannot be a jax array"):
        fastlse.softmax(x, axis=1, out=x)


def test_train_step_benchmark_runs():
    from fastlse.bench import train_step

    for part in ("loss", "step"):
        best = train_step.time_steps(part, repeat=1, batch=8, classes=16, hidden=4)
        assert set(best) == {"fastlse", "torch"}
        assert all(0 < t < 10 for t in best.values()), best
