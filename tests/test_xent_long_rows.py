"""cross_entropy on few, very long rows: the pieces path, against torch autograd.

Fewer rows than twice the threads, each at least ``2 * PIECE`` long, are split
into pieces that the threads share (``_xent_ops._run_pieces``).  Every option is
checked there against torch's ``F.cross_entropy`` (plus the z-loss written out,
as in ``test_cross_entropy_lm``), computed here; the ``pieces`` fixture forces
that path (two threads, the threads' count seen by the dispatch) and checks
that the pieces kernels really ran.
"""

import functools

import numpy as np
import pytest
from xent_reference import torch_ref

import fastlse
from fastlse import _routes
from fastlse.kernels import rows as KK
from fastlse.kernels import xent as K

torch = pytest.importorskip("torch")

TOL = {np.float32: 3e-5, np.float64: 1e-11}
SHAPES = [(1, 300_000), (2, 200_001), (3, 100_000)]
DTYPES = [np.float32, np.float64]
#: torch's float32 sums over 1e5 classes are off by ~1e-5 (fastlse's by ~1e-7)
torch_ref = functools.partial(torch_ref, dtype=np.float64)
PIECE_KERNELS = ("pieces_sums", "pieces_grad")


@pytest.fixture
def pieces(monkeypatch):
    """Force the pieces path; yields the calls of its kernels by kind of target
    and name ("index_pieces_sums", "soft_pieces_grad", ...)."""
    calls = {}
    for name in PIECE_KERNELS:
        kern = getattr(K, name)

        def counted(work, x, targs, *args, _kern=kern, _name=name):
            key = ("soft_" if targs[0].dtype.kind == "f" else "index_") + _name
            calls[key] = calls.get(key, 0) + 1
            return _kern(work, x, targs, *args)

        monkeypatch.setattr(K, name, counted)
    monkeypatch.setattr(_routes, "threads", lambda: 2)  # rows < 2 * threads, always
    assert all(s[1] * s[0] >= fastlse._config.PARALLEL_MIN_WORK for s in SHAPES)
    with fastlse.num_threads(2):
        yield calls


def check(res, ref, dtype, rel_to_max=False):
    tol = TOL[np.dtype(dtype).type]
    res = np.asarray(res)
    assert res.dtype == dtype
    assert res.shape == np.shape(ref)
    atol = tol * max(1.0, float(np.nanmax(np.abs(ref)))) if rel_to_max else tol
    np.testing.assert_allclose(res, ref, rtol=tol, atol=atol)


def run_all(x, t, dtype, pieces, **kw):
    """Every reduction, loss alone and with grad and lse, against torch."""
    for reduction in ["mean", "sum", "none"]:
        ref, ref_grad, ref_lse = torch_ref(x, t, reduction=reduction, **kw)
        loss = fastlse.cross_entropy(x, t, reduction=reduction, **kw)
        check(loss, ref, dtype)
        loss2, grad, lse = fastlse.cross_entropy(
            x, t, reduction=reduction, return_grad=True, return_lse=True, **kw
        )
        assert np.array_equal(loss, loss2, equal_nan=True)
        check(grad, ref_grad, dtype, rel_to_max=True)
        check(lse, ref_lse, dtype)
    soft = np.asarray(t).dtype.kind == "f"
    assert pieces[("soft" if soft else "index") + "_pieces_sums"] == 6
    assert pieces[("soft" if soft else "index") + "_pieces_grad"] == 3


def make(rng, shape, dtype, kind):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if kind == "soft":
        return x, rng.dirichlet(np.ones(shape[1]), size=shape[0]).astype(dtype)
    t = rng.integers(0, shape[1], size=shape[0])
    if kind == "ignore":
        t[shape[0] // 2] = -100  # (one row of one: all ignored)
    return x, t


OPTIONS = {
    "plain": ("index", {}),
    "weight": ("index", dict(weight=True)),
    "ignore": ("ignore", dict(weight=True)),
    "smooth": ("index", dict(label_smoothing=0.1)),
    "smooth_weight": ("ignore", dict(label_smoothing=0.3, weight=True)),
    "z": ("index", dict(z_loss=0.01)),
    "cap": ("index", dict(softcap=2.5)),
    "all": ("ignore", dict(z_loss=0.05, softcap=4.0, label_smoothing=0.2, weight=True)),
    "soft": ("soft", {}),
    "soft_all": ("soft", dict(weight=True, label_smoothing=0.1, z_loss=0.1, softcap=3.0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("option", list(OPTIONS))
def test_options_match_torch(rng, pieces, shape, dtype, option):
    kind, kw = OPTIONS[option]
    x, t = make(rng, shape, dtype, kind)
    if kw.get("weight"):
        kw = dict(kw, weight=rng.uniform(0.2, 2.0, shape[1]))
    x0 = x.copy()
    run_all(x, t, dtype, pieces, **kw)
    assert np.array_equal(x, x0)  # inputs untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_target_at_piece_boundaries(rng, pieces, dtype):
    n = 200_001
    npc, piece = _routes.pieces_of(n)
    assert npc > 2
    targets = [0, piece - 1, piece, 2 * piece - 1, n - 1]
    x = (rng.standard_normal((len(targets) // 2, n)) * 3).astype(dtype)
    for pair in (targets[:2], targets[2:4], targets[3:]):
        t = np.array(pair)
        xb = x[: len(t)].copy()
        xb[np.arange(len(t)), t] += 4.0  # targets near the max: every term counts
        run_all(xb, t, dtype, pieces, label_smoothing=0.1, z_loss=0.01)
        pieces.clear()


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_pieces_across_tasks(rng, pieces, monkeypatch, dtype):
    """Small pieces: more pieces than the kernels' tasks (several per task)."""
    monkeypatch.setattr(_routes, "PIECE", 1000)
    shape = (3, 100_000)
    assert shape[0] * _routes.pieces_of(shape[1])[0] > KK.MAXTASKS
    x, t = make(rng, shape, dtype, "ignore")
    run_all(x, t, dtype, pieces, weight=rng.uniform(0.2, 2.0, shape[1]), label_smoothing=0.2)
    pieces.clear()
    x, q = make(rng, shape, dtype, "soft")
    run_all(x, q, dtype, pieces, z_loss=0.1, softcap=5.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [{}, dict(z_loss=0.01, softcap=3.0)])
def test_neg_inf_except_target(pieces, dtype, kw):
    """-inf logits (whole pieces of them) but the target's and a few others:
    a finite loss and zero gradient there, as torch."""
    n = 300_000
    x = np.full((2, n), -np.inf, dtype=dtype)
    t = np.array([123_456, n - 1])
    x[0, [5, 123_456, 250_000]] = [1.0, 2.0, 0.5]
    x[1, [n - 1, 70_000]] = [-3.0, -1.0]
    run_all(x, t, dtype, pieces, **kw)
    loss, grad = fastlse.cross_entropy(x, t, return_grad=True, **kw)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("soft", [False, True])
def test_neg_inf_with_smoothing_or_soft_targets_follows_torch(rng, pieces, dtype, soft):
    """torch multiplies the -inf logits in: inf or nan, and so do we."""
    n = 200_001
    x = (rng.standard_normal((2, n)) * 3).astype(dtype)
    x[0, 1000:50_000] = -np.inf  # a whole piece and more
    x[1, 7] = -np.inf
    if soft:
        q = rng.dirichlet(np.ones(n), size=2).astype(dtype)
        q[1, 7] = 0.0  # 0 * -inf: nan, as torch
        t, kw = q, {}
    else:
        t, kw = np.array([3, 4]), dict(label_smoothing=0.1)
    for reduction in ["none", "sum"]:
        ref, ref_grad, _ = torch_ref(x, t, reduction=reduction, **kw)
        loss, grad = fastlse.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(loss), np.isinf(ref))
        fin = np.isfinite(ref_grad)
        np.testing.assert_array_equal(np.isfinite(grad), fin)
        check(grad[fin], ref_grad[fin], dtype, rel_to_max=True)
    assert pieces["soft_pieces_sums" if soft else "index_pieces_sums"] == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [np.inf, np.nan, "nan_inf"])
@pytest.mark.parametrize("kw", [{}, dict(label_smoothing=0.1, z_loss=0.01), dict(softcap=3.0)])
def test_inf_and_nan_logits_give_nan_like_torch(rng, pieces, dtype, special, kw):
    n = 300_000
    x = (rng.standard_normal((3, n)) * 3).astype(dtype)
    if special == "nan_inf":
        x[1, [10, 200_000]] = [np.nan, np.inf]
    else:
        x[1, 150_000] = special
    t = np.array([1, 2, 3])
    ref, ref_grad, ref_lse = torch_ref(x, t, reduction="none", **kw)
    loss, grad, lse = fastlse.cross_entropy(
        x, t, reduction="none", return_grad=True, return_lse=True, **kw
    )
    capped_inf = "softcap" in kw and special == np.inf  # capped: an ordinary row
    if capped_inf:
        assert np.all(np.isfinite(loss))
    else:
        assert np.isnan(loss[1]) and np.isnan(ref[1])
        assert np.all(np.isnan(grad[1])) and np.all(np.isnan(ref_grad[1]))
    np.testing.assert_array_equal(np.isnan(lse), np.isnan(ref_lse))
    keep = [0, 1, 2] if capped_inf else [0, 2]
    check(loss[keep], ref[keep], dtype)
    check(grad[keep], ref_grad[keep], dtype, rel_to_max=True)
    np.testing.assert_array_equal(lse, ref_lse)  # +inf for the inf row
    assert np.isnan(fastlse.cross_entropy(x, t, **kw)) != capped_inf
    assert pieces["index_pieces_sums"] == 2


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_all_rows_ignored(pieces, smoothing):
    x = np.random.default_rng(3).standard_normal((2, 100_000))
    t = np.array([-100, -100])
    ref, _, ref_lse = torch_ref(x, t, label_smoothing=smoothing)
    loss, grad, lse = fastlse.cross_entropy(
        x, t, label_smoothing=smoothing, return_grad=True, return_lse=True
    )
    assert np.isnan(loss) and np.isnan(ref)  # 0 / 0, as torch
    assert not np.any(grad)
    check(lse, ref_lse, np.float64)
    assert pieces["index_pieces_grad"] == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_buffer_and_in_place(rng, pieces, dtype):
    x, t = make(rng, (2, 200_001), dtype, "index")
    kw = dict(label_smoothing=0.1, z_loss=0.01, softcap=6.0)
    ref, ref_grad, _ = torch_ref(x, t, **kw)
    out = np.empty_like(x)
    loss, grad = fastlse.cross_entropy(x, t, return_grad=True, out=out, **kw)
    assert grad is out
    check(loss, ref, dtype)
    check(grad, ref_grad, dtype, rel_to_max=True)
    xx = x.copy()
    loss, grad = fastlse.cross_entropy(xx, t, return_grad=True, out=xx, **kw)
    assert grad is xx
    check(loss, ref, dtype)
    check(xx, ref_grad, dtype, rel_to_max=True)
    assert pieces["index_pieces_grad"] == 2


def test_matches_the_row_kernels(rng, pieces, monkeypatch):
    """The pieces path and the row kernels agree to rounding."""
    x, t = make(rng, (2, 200_001), np.float64, "ignore")
    w = rng.uniform(0.2, 2.0, x.shape[1])
    kw = dict(weight=w, label_smoothing=0.2, z_loss=0.01, reduction="none", return_grad=True)
    new = fastlse.cross_entropy(x, t, **kw)
    assert pieces["index_pieces_sums"] == 1
    monkeypatch.setattr(_routes, "few_long_rows", lambda m, n, writes=False: False)
    old = fastlse.cross_entropy(x, t, **kw)
    assert pieces["index_pieces_sums"] == 1
    np.testing.assert_allclose(new[0], old[0], rtol=1e-14)
    np.testing.assert_allclose(new[1], old[1], rtol=1e-13, atol=1e-18)


def test_dispatch_condition(monkeypatch):
    """Few long rows only: as logsumexp's pieces (``_routes``)."""
    monkeypatch.setattr(_routes, "threads", lambda: 2)
    p = _routes.PIECE
    assert _routes.few_long_rows(3, 2 * p, writes=True)
    assert not _routes.few_long_rows(4, 2 * p, writes=True)  # enough rows for the threads
    assert not _routes.few_long_rows(1, 2 * p - 1, writes=True)  # short rows
    npc, piece = _routes.pieces_of(10_000_001)
    assert (npc - 1) * piece < 10_000_001 <= npc * piece and piece <= p
