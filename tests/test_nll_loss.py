"""nll_loss against torch.nn.functional.nll_loss, edge cases and bad input."""

import numpy as np
import pytest

import fastlse

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float32: 2e-6, np.float64: 1e-13}


def torch_nll(lp, target, axis=-1, weight=None, **kw):
    x = torch.tensor(np.array(lp, order="C"))
    x = torch.movedim(x, axis, 1) if lp.ndim > 1 else x
    w = None if weight is None else torch.tensor(weight, dtype=x.dtype)
    return F.nll_loss(x, torch.tensor(np.array(target, order="C")).long(), weight=w, **kw).numpy()


def drop(shape, axis):
    return tuple(s for i, s in enumerate(shape) if i != axis % len(shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), [((7, 5), -1), ((3, 5, 4), 1), ((6,), 0), ((5, 4), 0)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_matches_torch(rng, dtype, shape, axis, reduction, weighted, ignore_index):
    n = shape[axis]
    lp = fastlse.log_softmax(rng.standard_normal(shape) * 2, axis=axis).astype(dtype)
    t = np.asarray(rng.integers(0, n, size=drop(shape, axis)))
    if t.ndim:
        t.flat[::3] = ignore_index
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    kw = dict(weight=w, reduction=reduction, ignore_index=ignore_index)
    ref = torch_nll(lp, t, axis, **kw)
    res = fastlse.nll_loss(lp, t, axis=axis, **kw)
    assert np.asarray(res).dtype == dtype and np.shape(res) == np.shape(ref)
    tol = TOL[dtype]
    np.testing.assert_allclose(res, ref, rtol=tol, atol=tol)


def test_seed_mixture_in_log_space(rng):
    """The forum thread: weight two softmax groups by s, 1 - s in log space."""
    logits = rng.standard_normal((2, 7))
    s = 1 / 3
    lp = np.concatenate(
        [
            np.log(s) + fastlse.log_softmax(logits[:, :4], axis=1),
            np.log(1 - s) + fastlse.log_softmax(logits[:, 4:], axis=1),
        ],
        axis=1,
    )
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-14)
    t = np.array([1, 5])
    ref = torch_nll(lp, t)
    np.testing.assert_allclose(fastlse.nll_loss(lp, t), ref, rtol=1e-14)
    # the log-probabilities are valid logits: cross_entropy gives the same
    np.testing.assert_allclose(fastlse.cross_entropy(lp, t), ref, rtol=1e-13)


def test_all_ignored_and_empty():
    lp = np.log(np.full((3, 4), 0.25))
    t = np.full(3, -100)
    assert np.isnan(fastlse.nll_loss(lp, t))
    assert fastlse.nll_loss(lp, t, reduction="sum") == 0.0
    assert np.isnan(torch_nll(lp, t))
    e = np.zeros((0, 4), np.float32)
    res = fastlse.nll_loss(e, np.zeros(0, np.int64))
    assert np.isnan(res) and res.dtype == np.float32
    assert fastlse.nll_loss(e, np.zeros(0, np.int64), reduction="none").shape == (0,)


def test_neg_inf_log_probs():
    lp = np.array([[0.0, -np.inf], [-np.inf, 0.0]])
    np.testing.assert_array_equal(fastlse.nll_loss(lp, [0, 1], reduction="none"), [0.0, 0.0])
    assert fastlse.nll_loss(lp, [1, 1], reduction="sum") == np.inf
    assert torch_nll(lp, np.array([1, 1]), reduction="sum") == np.inf


def test_read_only_inputs(rng):
    lp = fastlse.log_softmax(rng.standard_normal((5, 3)), axis=1)
    t = rng.integers(0, 3, 5)
    for a in (lp, t):
        a.setflags(write=False)
    lp0 = lp.copy()
    np.testing.assert_allclose(fastlse.nll_loss(lp, t), torch_nll(lp, t), rtol=1e-14)
    np.testing.assert_array_equal(lp, lp0)


X = np.log(np.full((3, 4), 0.25))


@pytest.mark.parametrize(
    ("args", "kw", "exc", "name"),
    [
        ((X, [0, 1, 4]), {}, IndexError, "target"),
        ((X, [0, -1, 2]), {}, IndexError, "target"),
        ((X, [0, 1]), {}, ValueError, "target"),
        ((X, np.zeros(3)), {}, TypeError, "target"),
        ((X, [0, 1, 2]), dict(weight=np.ones(5)), ValueError, "weight"),
        ((X, [0, 1, 2]), dict(reduction="mean "), ValueError, "reduction"),
        ((X.astype(np.int32), [0, 1, 2]), {}, TypeError, "log_probs"),
        ((X, [0, 1, 2]), dict(axis=3), np.exceptions.AxisError, "axis"),
        ((X, [0, 1, 2]), dict(ignore_index=1.5), TypeError, "ignore_index"),
    ],
)
def test_bad_input(args, kw, exc, name):
    with pytest.raises(exc, match=name):
        fastlse.nll_loss(*args, **kw)
