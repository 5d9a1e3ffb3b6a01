"""The dask path: lazy results equal to the NumPy path and scipy on the computed values."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import AXIS_CASES, FLOAT_DTYPES, slow

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import fastlse  # noqa: E402
from fastlse import _dask  # noqa: E402

sp = pytest.importorskip("scipy.special")

NAN, INF = np.nan, np.inf


@pytest.fixture(autouse=True)
def _sync_scheduler():
    """Single-threaded scheduler: fast and deterministic (one test uses threads)."""
    with dask.config.set(scheduler="synchronous"):
        yield


def tol(dtype):
    return {np.float16: 2e-3, np.float32: 3e-6, np.float64: 2e-14}[np.dtype(dtype).type]


def uneven(shape, pattern=(2, 1, 3)):
    """Uneven chunks for every dimension: pieces cycled from ``pattern``."""
    chunks = []
    for s in shape:
        c, k = [], 0
        while sum(c) < s:
            c.append(min(pattern[k % len(pattern)], s - sum(c)))
            k += 1
        chunks.append(tuple(c) or (0,))
    return tuple(chunks)


def with_empty(shape):
    """Uneven chunks with a zero-size block in every dimension."""
    return tuple((0, *c[:1], 0, *c[1:]) for c in uneven(shape))


def check(res, ref, dtype=None, rtol=None):
    """A computed dask result against a NumPy reference: shape, dtype, values."""
    assert isinstance(res, da.Array)
    val = res.compute()
    assert np.shape(val) == np.shape(ref)
    assert np.asarray(val).dtype == np.asarray(ref).dtype
    r = tol(dtype or np.asarray(ref).dtype) if rtol is None else rtol
    np.testing.assert_allclose(val, ref, rtol=r, atol=r)


# ------------------------------------------------------------- logsumexp --
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), AXIS_CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_matches_scipy(rng, dtype, shape, axis, keepdims):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    d = da.from_array(x, chunks=uneven(shape))
    res = fastlse.logsumexp(d, axis=axis, keepdims=keepdims)
    check(res, sp.logsumexp(x, axis=axis, keepdims=keepdims), dtype)
    check(res, fastlse.logsumexp(x, axis=axis, keepdims=keepdims), dtype)


@pytest.mark.parametrize(("shape", "axis"), [((9,), None), ((5, 9), 1), ((6, 4, 5), (0, 2))])
def test_logsumexp_empty_chunks(rng, shape, axis):
    x = rng.standard_normal(shape) * 3
    d = da.from_array(x, chunks=with_empty(shape))
    assert 0 in d.chunks[0]
    for keepdims in (False, True):
        check(
            fastlse.logsumexp(d, axis=axis, keepdims=keepdims),
            sp.logsumexp(x, axis, keepdims=keepdims),
        )


def test_logsumexp_empty_reduction():
    x = np.zeros((4, 0))
    d = da.from_array(x, chunks=((1, 3), (0,)))
    check(fastlse.logsumexp(d, axis=1), np.full(4, -INF))
    check(fastlse.logsumexp(d), np.float64(-INF))
    _, sgn = fastlse.logsumexp(d, axis=1, return_sign=True)
    np.testing.assert_array_equal(sgn.compute(), np.zeros(4))


def special_rows():
    """Rows of 12 values, chunked in 3 pieces of 4 along the last axis."""
    r = np.zeros((9, 12))
    r[0] = -INF  # all -inf
    r[1, 5] = INF  # +inf in the middle chunk
    r[2, 10] = NAN  # nan in the last chunk
    r[3, 0], r[3, 11] = INF, NAN  # +inf in one chunk, nan in another
    r[4, :8] = -INF  # two whole chunks -inf
    r[5, 4:8] = [INF, -INF, INF, 1.0]  # two +inf in one chunk
    r[6, :4] = 700.0  # huge values in one chunk only
    r[6, 4:] = -700.0
    r[7, 2], r[7, 9] = NAN, INF
    r[8] = np.linspace(-50, 50, 12)
    return r


def test_logsumexp_special_values():
    x = special_rows()
    d = da.from_array(x, chunks=(4, 4))
    with np.errstate(all="ignore"):
        ref = sp.logsumexp(x, axis=1)
    check(fastlse.logsumexp(d, axis=1), ref)
    check(fastlse.logsumexp(d, axis=1), fastlse.logsumexp(x, axis=1))
    check(fastlse.logsumexp(d.T, axis=0), ref)  # the same along a column axis
    _, sgn = fastlse.logsumexp(d, axis=1, return_sign=True)
    np.testing.assert_array_equal(sgn.compute(), fastlse.logsumexp(x, axis=1, return_sign=True)[1])


def test_logsumexp_accurate_across_chunks():
    # the log1p form survives a chunk boundary: 1 + 1e-18 is not rounded away
    d = da.from_array(np.array([0.0, -41.4465316739]), chunks=1)
    assert fastlse.logsumexp(d).compute() == fastlse.logsumexp(np.array([0.0, -41.4465316739]))
    assert fastlse.logsumexp(da.from_array(np.array([1000.0, 1000.0]), chunks=1)).compute() == (
        1000.0 + np.log(2.0)
    )


# --------------------------------------------------------------- weights --
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), AXIS_CASES[::2])
@pytest.mark.parametrize("keepdims", [False, True])
def test_weights(rng, dtype, shape, axis, keepdims):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    b = rng.uniform(-0.5, 2, shape).astype(dtype)
    b[rng.random(shape) < 0.2] = 0
    d = da.from_array(x, chunks=uneven(shape))
    db = da.from_array(b, chunks=uneven(shape, (3, 2)))  # chunks differ from a's
    res, sgn = fastlse.logsumexp(d, axis=axis, b=db, keepdims=keepdims, return_sign=True)
    ref, rsgn = sp.logsumexp(x, axis=axis, b=b, keepdims=keepdims, return_sign=True)
    check(res, ref, dtype, rtol=tol(dtype) * 100)
    check(sgn, rsgn, dtype)
    plain = fastlse.logsumexp(d, axis=axis, b=db, keepdims=keepdims)
    check(plain, fastlse.logsumexp(x, axis=axis, b=b, keepdims=keepdims), dtype, tol(dtype) * 100)


def test_weights_zeros_hide_inf_and_nan():
    x = special_rows()
    b = np.ones_like(x)
    b[np.isnan(x) | np.isinf(x)] = 0  # every special value hidden
    b[0] = 0  # an all-hidden row: empty sum
    d, db = da.from_array(x, chunks=(4, 4)), da.from_array(b, chunks=(3, 5))
    res, sgn = fastlse.logsumexp(d, axis=1, b=db, return_sign=True)
    ref, rsgn = fastlse.logsumexp(x, axis=1, b=b, return_sign=True)
    check(res, ref)
    check(sgn, rsgn)
    assert np.all(np.isfinite(ref[1:]))
    with np.errstate(all="ignore"):
        check(res[1:], sp.logsumexp(x, axis=1, b=b)[1:])


def test_weights_special_values_visible():
    x = special_rows()
    b = np.where(np.arange(12) % 2 == 0, 1.0, -0.5) * np.ones_like(x)
    d = da.from_array(x, chunks=(4, 4))
    for bb in (b, -b, np.abs(b)):
        res, sgn = fastlse.logsumexp(d, axis=1, b=da.from_array(bb, chunks=4), return_sign=True)
        ref, rsgn = fastlse.logsumexp(x, axis=1, b=bb, return_sign=True)
        check(res, ref)
        check(sgn, rsgn)


def test_weights_inf_of_both_signs_in_two_chunks():
    x = np.array([INF, 1.0, INF, 2.0])
    b = np.array([1.0, 1.0, -1.0, 1.0])
    res, sgn = fastlse.logsumexp(da.from_array(x, chunks=2), b=b, return_sign=True)
    assert np.isnan(res.compute()) and np.isnan(sgn.compute())
    assert np.isnan(fastlse.logsumexp(x, b=b))
    res, sgn = fastlse.logsumexp(da.from_array(x, chunks=2), b=np.abs(b), return_sign=True)
    assert res.compute() == INF and sgn.compute() == 1.0


def test_weights_cancel_exactly_across_chunks():
    # the weights at the max cancel exactly, what is left is exp(-40)
    x = np.array([0.0, 0.0, -40.0])
    b = np.array([1.0, -1.0, 1.0])
    ref = fastlse.logsumexp(x, b=b)
    assert ref == -40.0
    for chunks in (1, 2, (1, 2)):
        res = fastlse.logsumexp(da.from_array(x, chunks=chunks), b=b)
        assert res.compute() == pytest.approx(-40.0, rel=1e-15)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.ones((3, 4)), np.arange(4.0) - 1.5),  # b broadcasts along rows
        (np.arange(12.0).reshape(3, 4), 2.0),  # python scalar
        (np.arange(3.0).reshape(3, 1), np.ones((3, 4))),  # b broadcasts a up
        (np.arange(12.0).reshape(3, 4), np.ones((3, 1))),
    ],
)
def test_weights_broadcast_and_mixed_inputs(a, b):
    for axis in (None, 0, -1):
        ref = fastlse.logsumexp(a, b=b, axis=axis, return_sign=True)
        da_a = da.from_array(a, chunks=2)
        # a dask, b numpy / a numpy, b dask / both dask
        for aa, bb in [(da_a, b), (a, da.asarray(b)), (da_a, da.asarray(b))]:
            res, sgn = fastlse.logsumexp(aa, b=bb, axis=axis, return_sign=True)
            check(res, ref[0])
            check(sgn, ref[1])


def test_weights_bad_shape_and_dtype():
    d = da.ones((3, 4), chunks=2)
    with pytest.raises(ValueError, match="does not broadcast"):
        fastlse.logsumexp(d, b=np.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        fastlse.logsumexp(d, b=np.array(["a"] * 4))


# ---------------------------------------------------------------- dtypes --
@pytest.mark.parametrize(
    ("x", "b"),
    [
        (np.arange(6, dtype=np.int64), None),
        (np.arange(6, dtype=np.int8), None),
        (np.array([True, False, True]), None),
        (np.arange(6, dtype=np.float16), None),
        (np.arange(6, dtype=np.float32), None),
        (np.arange(6, dtype=np.float32), np.ones(6)),  # float64 weights promote
        (np.arange(6, dtype=np.float32), 2.0),  # a python scalar does not
        (np.arange(6, dtype=np.int32), np.ones(6, dtype=np.float32)),
    ],
)
def test_dtype_rules(x, b):
    ref = fastlse.logsumexp(x, b=b)
    res = fastlse.logsumexp(da.from_array(x, chunks=4), b=b)
    assert res.dtype == np.asarray(ref).dtype
    check(res, ref)


def test_zero_dim():
    res = fastlse.logsumexp(da.from_array(np.float64(2.0)))
    check(res, fastlse.logsumexp(np.float64(2.0)))
    res = fastlse.logsumexp(da.from_array(np.float64(2.0)), keepdims=True)
    check(res, fastlse.logsumexp(np.float64(2.0), keepdims=True))


def test_bad_axis_and_complex():
    d = da.ones((3, 4), chunks=2)
    with pytest.raises(np.exceptions.AxisError):
        fastlse.logsumexp(d, axis=2)
    with pytest.raises(NotImplementedError, match="complex"):
        fastlse.logsumexp(d.astype(np.complex128))


# ------------------------------------------------- softmax, log_softmax --
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("shape", "axis"), [c for c in AXIS_CASES if c[1] != ()])
def test_softmax_axis_split(rng, fn, dtype, shape, axis):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    d = da.from_array(x, chunks=uneven(shape))
    res = getattr(fastlse, fn)(d, axis=axis)
    check(res, getattr(sp, fn)(x, axis=axis), dtype, rtol=tol(dtype) * 10)
    check(res, getattr(fastlse, fn)(x, axis=axis), dtype, rtol=tol(dtype) * 10)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_axis_in_one_chunk_runs_the_kernel(rng, fn):
    x = rng.standard_normal((7, 9))
    d = da.from_array(x, chunks=(2, 9))
    res = getattr(fastlse, fn)(d, axis=1)
    assert not any("softmax-lse" in str(k) for k in res.dask)  # no reduction in the graph
    np.testing.assert_array_equal(res.compute(), getattr(fastlse, fn)(x, axis=1))


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("chunks", [(4, 4), (4, 5), with_empty((9, 12))])
def test_softmax_special_values(fn, chunks):
    x = special_rows()
    d = da.from_array(x, chunks=chunks)
    with np.errstate(all="ignore"):
        ref_sp = getattr(sp, fn)(x, axis=1)
    ref = getattr(fastlse, fn)(x, axis=1)
    res = getattr(fastlse, fn)(d, axis=1)
    check(res, ref, rtol=1e-13)
    finite = np.isfinite(x).all(axis=1)
    np.testing.assert_allclose(res.compute()[finite], ref_sp[finite], rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(np.isnan(res.compute()), np.isnan(ref_sp))
    # along a column axis too
    check(getattr(fastlse, fn)(d.T, axis=0), ref.T, rtol=1e-13)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.float16, np.float32])
def test_softmax_dtypes(fn, dtype):
    x = np.arange(12).reshape(3, 4).astype(dtype)
    ref = getattr(fastlse, fn)(x, axis=1)
    res = getattr(fastlse, fn)(da.from_array(x, chunks=2), axis=1)
    assert res.dtype == ref.dtype
    check(res, ref, rtol=tol(ref.dtype) * 10)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_errors(fn):
    d = da.ones((3, 4), chunks=2)
    with pytest.raises(TypeError, match="out= is not supported"):
        getattr(fastlse, fn)(d, axis=1, out=np.empty((3, 4)))
    with pytest.raises(ValueError, match="zero-size"):
        getattr(fastlse, fn)(da.ones((3, 0), chunks=2), axis=1)
    with pytest.raises(np.exceptions.AxisError):
        getattr(fastlse, fn)(d, axis=-3)


# ------------------------------------------------------------- laziness --
def _boom():
    raise AssertionError("computed eagerly")


def _never_scheduled(dsk, keys, **kwargs):
    raise AssertionError("a scheduler was invoked")


def test_nothing_is_computed_eagerly():
    from dask import delayed

    x = da.from_delayed(delayed(_boom)(), shape=(6, 8), dtype=np.float64)
    x = da.concatenate([x, x], axis=1).rechunk((3, 5))  # the axis spans chunks
    t = da.from_delayed(delayed(_boom)(), shape=(6,), dtype=np.int64)
    b = da.from_delayed(delayed(_boom)(), shape=(8 * 2,), dtype=np.float64)
    with dask.config.set(scheduler=_never_scheduled):
        lazy = [
            fastlse.logsumexp(x),
            fastlse.logsumexp(x, axis=1, keepdims=True),
            *fastlse.logsumexp(x, axis=0, return_sign=True),
            *fastlse.logsumexp(x, axis=1, b=b, return_sign=True),
            fastlse.logsumexp(x, b=np.ones(16)),
            fastlse.softmax(x, axis=1),
            fastlse.log_softmax(x, axis=(0, 1)),
            fastlse.softmax(x.rechunk((2, 16)), axis=1),
            _dask.cross_entropy(x, t),
            *_dask.cross_entropy(x, t, return_grad=True, reduction="mean"),
        ]
        assert all(isinstance(r, da.Array) for r in lazy)
    with pytest.raises(AssertionError, match="computed eagerly"):
        lazy[0].compute()


# --------------------------------------------------------------- threads --
def test_single_thread_in_tasks_by_default(monkeypatch):
    import numba

    from fastlse import _ops

    seen = []
    real = _ops.lse_pairs

    def spy(a, axes):
        seen.append(numba.get_num_threads())
        return real(a, axes)

    monkeypatch.setattr(_ops, "lse_pairs", spy)
    d = da.from_array(np.arange(20.0), chunks=5)
    fastlse.logsumexp(d).compute()
    assert seen and set(seen) == {1}
    seen.clear()
    with dask.config.set({_dask.THREADS_KEY: 2}):
        r = fastlse.logsumexp(d)  # the setting is read when the graph is built
    r.compute()
    assert set(seen) == {min(2, numba.config.NUMBA_NUM_THREADS)}
    seen.clear()
    _dask.logsumexp(d, threads_per_task=2).compute()
    assert set(seen) == {min(2, numba.config.NUMBA_NUM_THREADS)}
    with pytest.raises(ValueError, match=">= 1"):
        _dask.logsumexp(d, threads_per_task=0)


def test_threaded_scheduler(rng):
    x = rng.standard_normal((64, 300))
    d = da.from_array(x, chunks=(16, 70))
    with dask.config.set(scheduler="threads"):
        np.testing.assert_allclose(
            fastlse.logsumexp(d, axis=1).compute(), sp.logsumexp(x, axis=1), rtol=1e-14
        )
        np.testing.assert_allclose(
            fastlse.softmax(d, axis=1).compute(), sp.softmax(x, axis=1), rtol=1e-13
        )


def test_import_does_not_import_dask():
    code = (
        "import sys, numpy as np, fastlse\n"
        "fastlse.logsumexp(np.ones(3)); fastlse.softmax(np.ones(3))\n"
        "acc = fastlse.OnlineLogSumExp().update(np.ones(3))\n"
        "bad = sorted(m for m in sys.modules if m == 'dask' or m.startswith('dask.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------- distributed --
@slow  # two worker processes that compile their kernels: CI's time
def test_distributed_local_cluster_processes(rng):
    """Worker processes (not threads) compute the same numbers."""
    distributed = pytest.importorskip("distributed")
    x = rng.standard_normal((40, 300)) * 4
    x[3, 17] = INF
    x[5] = -INF
    b = rng.uniform(-0.2, 1.0, x.shape)
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        d = da.from_array(x, chunks=(15, 70))
        db = da.from_array(b, chunks=(15, 70))
        lse, ls, (lw, sw) = client.compute(
            [
                fastlse.logsumexp(d, axis=1),
                fastlse.log_softmax(d, axis=1),
                fastlse.logsumexp(d, b=db, axis=(0, 1), return_sign=True),
            ],
            sync=True,
        )
        pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(lse, sp.logsumexp(x, axis=1), rtol=1e-14)
        np.testing.assert_allclose(ls, fastlse.log_softmax(x, axis=1), rtol=1e-13)
    ref, rsgn = fastlse.logsumexp(x, b=b, return_sign=True)
    assert lw == ref and sw == rsgn  # +inf with a positive weight


# ---------------------------------------------------------- cross_entropy --
def xent_cases():
    return [
        dict(),
        dict(weight=np.linspace(0.5, 2.0, 7)),
        dict(ignore_index=3),
        dict(label_smoothing=0.1, weight=np.linspace(0.5, 2.0, 7)),
    ]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", xent_cases())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cross_entropy_index_targets(rng, reduction, kw, dtype):
    from fastlse.losses import cross_entropy as np_xent

    logits = (rng.standard_normal((23, 7)) * 3).astype(dtype)
    target = rng.integers(0, 7, 23)
    target[::5] = kw.get("ignore_index", -100)
    dl = da.from_array(logits, chunks=((5, 0, 10, 8), (3, 4)))  # class axis split: rechunked
    dt = da.from_array(target, chunks=7)
    r = 1e-5 if dtype == np.float32 else 1e-12
    loss = _dask.cross_entropy(dl, dt, reduction=reduction, **kw)
    check(loss, np_xent(logits, target, reduction=reduction, **kw), rtol=r)
    loss, grad = _dask.cross_entropy(dl, dt, reduction=reduction, return_grad=True, **kw)
    ref_loss, ref_grad = np_xent(logits, target, reduction=reduction, return_grad=True, **kw)
    loss, grad = dask.compute(loss, grad)
    np.testing.assert_allclose(loss, ref_loss, rtol=r, atol=r)
    assert grad.dtype == ref_grad.dtype and grad.shape == ref_grad.shape
    np.testing.assert_allclose(grad, ref_grad, rtol=r, atol=r * 1e-2)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_soft_targets_class_axis_1(rng, reduction):
    from fastlse.losses import cross_entropy as np_xent

    logits = rng.standard_normal((6, 5, 4))  # torch's (N, C, d) layout
    probs = fastlse.softmax(rng.standard_normal((6, 5, 4)), axis=1)
    dl = da.from_array(logits, chunks=(4, 5, 3))
    dp = da.from_array(probs, chunks=2)
    kw = dict(axis=1, reduction=reduction, label_smoothing=0.05)
    check(_dask.cross_entropy(dl, dp, **kw), np_xent(logits, probs, **kw), rtol=1e-12)
    loss, grad = _dask.cross_entropy(dl, dp, return_grad=True, **kw)
    ref_loss, ref_grad = np_xent(logits, probs, return_grad=True, **kw)
    check(loss, ref_loss, rtol=1e-12)
    check(grad, ref_grad, rtol=1e-12)


def test_cross_entropy_index_targets_3d(rng):
    from fastlse.losses import cross_entropy as np_xent

    logits = rng.standard_normal((6, 5, 4))
    target = rng.integers(0, 5, (6, 4))
    dl = da.from_array(logits, chunks=(4, 2, 3))
    for red in ("mean", "none"):
        loss, grad = _dask.cross_entropy(dl, target, axis=1, reduction=red, return_grad=True)
        ref_loss, ref_grad = np_xent(logits, target, axis=1, reduction=red, return_grad=True)
        check(loss, ref_loss, rtol=1e-12)
        check(grad, ref_grad, rtol=1e-12)


def test_cross_entropy_errors():
    dl = da.ones((4, 3), chunks=2)
    dt = da.zeros(4, dtype=np.int64, chunks=2)
    with pytest.raises(ValueError, match="target has shape"):
        _dask.cross_entropy(dl, da.zeros(5, dtype=np.int64, chunks=2))
    with pytest.raises(ValueError, match="reduction"):
        _dask.cross_entropy(dl, dt, reduction="avg")
    with pytest.raises(TypeError, match="floating"):
        _dask.cross_entropy(dl.astype(np.int64), dt)
    with pytest.raises(TypeError, match="out="):
        _dask.cross_entropy(dl, dt, return_grad=True, out=np.empty((4, 3)))
    with pytest.raises(IndexError):  # at compute time
        _dask.cross_entropy(dl, dt + 7).compute()


@pytest.mark.parametrize(
    ("kw", "ignored"),
    [(dict(), True), (dict(weight=np.zeros(4)), False), (dict(label_smoothing=0.1), True)],
)
def test_cross_entropy_mean_with_zero_denominator(rng, kw, ignored):
    from fastlse.losses import cross_entropy as np_xent

    logits = rng.standard_normal((6, 4))
    target = np.full(6, -100) if ignored else np.arange(6) % 4
    ref_loss, ref_grad = np_xent(logits, target, return_grad=True, **kw)
    lazy = _dask.cross_entropy(da.from_array(logits, chunks=2), target, return_grad=True, **kw)
    loss, grad = dask.compute(*lazy)
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)


def test_public_cross_entropy_dispatches_to_dask(rng):
    import fastlse

    x = rng.standard_normal((40, 7))
    t = rng.integers(0, 7, 40)
    dx = da.from_array(x, chunks=(13, 7))
    dt = da.from_array(t, chunks=13)
    loss, grad = fastlse.cross_entropy(dx, dt, return_grad=True)
    assert isinstance(loss, da.Array) and isinstance(grad, da.Array)
    ref_loss, ref_grad = fastlse.cross_entropy(x, t, return_grad=True)
    np.testing.assert_allclose(loss.compute(), ref_loss, rtol=1e-13)
    np.testing.assert_allclose(grad.compute(), ref_grad, rtol=1e-13, atol=1e-16)
