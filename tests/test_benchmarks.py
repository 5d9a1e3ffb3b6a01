"""The asv suite never rots: every benchmark module imports, asv discovers it, and
every class's setup and benchmark methods run once on tiny stand-in datasets.

Datasets from ``common.CASES`` are swapped for tiny ones with the same names;
classes that build their own data from a shape parameter get the shape shrunk.
Speed is not asserted here; ``asv run`` measures it.
"""

import importlib
import inspect
import itertools
import pkgutil
import sys
from pathlib import Path

import pytest
from conftest import slow

ASV_DIR = Path(__file__).resolve().parents[1] / "asv_bench"

sys.path.insert(0, str(ASV_DIR))
try:
    benchmarks = importlib.import_module("benchmarks")
    common = importlib.import_module("benchmarks.common")
    MODULES = [
        importlib.import_module(f"benchmarks.{m.name}")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    ]
finally:
    sys.path.remove(str(ASV_DIR))

#: the same names, axes and seeds as ``common.CASES``, at a size that runs in ms;
#: "row" keeps enough elements for fastlse to split the row across threads
TINY = {
    "wide_4096x1000": (8, 100),
    "vocab_64x50257": (2, 5003),
    "tall_1e6x10": (500, 10),
    "row_1x1e7": (1, 140_000),
    "mid_64x1000x64_ax1": (4, 50, 8),
}

pytestmark = slow  # the asv suite once: minutes of CI's 15 (FASTLSE_TEST_SLOW=1)


#: asv's benchmark kinds; ``timeraw_`` returns code for asv to run, so it is only called
KINDS = ("time_", "peakmem_", "mem_", "track_", "timeraw_")


def _tiny(value):
    """A shape parameter (tuple of ints) capped at 64 per axis; anything else unchanged."""
    if isinstance(value, tuple) and value and all(isinstance(d, int) for d in value):
        return tuple(min(d, 64) for d in value)
    return value


def _classes():
    for mod in MODULES:
        for name, cls in vars(mod).items():
            if inspect.isclass(cls) and not name.startswith("_") and cls.__module__ == mod.__name__:
                if any(m.startswith(KINDS) for m in dir(cls)):
                    yield pytest.param(cls, id=f"{mod.__name__.split('.')[-1]}.{name}")


def _grid(cls):
    """Parameter combinations, read the way asv reads ``params``.  A "shape" parameter
    is cut to its first and last value (the last axis and the middle axis): every
    code path of the benchmark code, every peer and dtype, at a fraction of the cost."""
    raw = list(getattr(cls, "params", []))
    if raw and not isinstance(raw[0], (tuple, list)):
        raw = [raw]  # one parameter
    params = [list(v) for v in raw]
    names = list(getattr(cls, "param_names", []))
    for i, name in enumerate(names[: len(params)]):
        if name == "shape" and len(params[i]) > 2:
            params[i] = [params[i][0], params[i][-1]]
    return itertools.product(*params)


@pytest.fixture
def tiny_cases(monkeypatch):
    assert set(TINY) == set(common.CASES), "give every dataset a tiny stand-in"
    for name, case in list(common.CASES.items()):
        monkeypatch.setitem(common.CASES, name, case._replace(shape=TINY[name]))
    common.clear_caches()
    yield
    common.clear_caches()


def test_every_module_found():
    names = {m.__name__.split(".")[-1] for m in MODULES}
    assert {"bench_logsumexp", "bench_softmax", "bench_log_softmax", "bench_proxies"} <= names
    assert {"bench_where", "bench_nll_loss", "bench_log_sigmoid", "bench_logcumsumexp"} <= names


def test_cases_are_the_documented_shapes():
    shapes = {c.shape: c.axis for c in common.CASES.values()}
    assert shapes[(4096, 1000)] == -1
    assert shapes[(64, 50257)] == -1
    assert shapes[(1_000_000, 10)] == -1
    assert shapes[(1, 10_000_000)] == -1
    assert shapes[(64, 1000, 64)] == 1


def test_asv_discovers_the_suite():
    discovery = pytest.importorskip("asv_runner.discovery")
    sys.path.insert(0, str(ASV_DIR))
    try:
        found = {b.name: b for b in discovery.disc_benchmarks(str(ASV_DIR / "benchmarks"))}
    finally:
        sys.path.remove(str(ASV_DIR))
    for name in (
        "bench_logsumexp.LogSumExp.time_logsumexp",
        "bench_softmax.Softmax.time_softmax",
        "bench_log_softmax.LogSoftmax.time_log_softmax",
        "bench_proxies.LimitProxies.time_row_sum",
        "bench_proxies.LimitProxies.time_row_copy",
        "bench_proxies.MaskedLimitProxies.time_row_sum_where",
        "bench_where.LogSumExpWhere.time_logsumexp_where",
        "bench_where.SoftmaxWhere.time_softmax_where",
        "bench_where.LogSoftmaxWhere.time_log_softmax_where",
        "bench_nll_loss.NllLoss.time_nll_loss",
        "bench_log_sigmoid.LogSigmoid.time_log_sigmoid",
        "bench_logcumsumexp.LogCumSumExpPeers.time_logcumsumexp",
    ):
        assert name in found
    assert not any(".common." in n for n in found)
    lse = found["bench_logsumexp.LogSumExp.time_logsumexp"]
    assert lse.param_names == ["shape", "dtype", "peer"]
    assert {"'fastlse'", "'scipy'", "'numpy_naive'", "'torch'", "'jax'"} <= set(lse.params[2])
    where = found["bench_where.SoftmaxWhere.time_softmax_where"]
    assert where.param_names == ["shape", "dtype", "peer"]
    assert set(where.params[0]) == {"'wide_4096x1000'", "'vocab_64x50257'"}
    assert {"'fastlse'", "'numpy_naive'", "'torch'", "'jax'"} == set(where.params[2])
    sig = found["bench_log_sigmoid.LogSigmoid.time_log_sigmoid"]
    assert {"'fastlse'", "'scipy'", "'numpy_naive'", "'torch'", "'jax'"} == set(sig.params[2])


def test_missing_peer_is_skipped(monkeypatch, tiny_cases):
    """asv skips a parameter set whose setup raises NotImplementedError."""
    monkeypatch.setattr(common, "available", lambda peer: peer != "torch")
    with pytest.raises(NotImplementedError):
        common.prepare("softmax", "torch", "wide_4096x1000", "float32")
    common.prepare("softmax", "fastlse", "wide_4096x1000", "float32")


@pytest.mark.parametrize("cls", list(_classes()))
def test_benchmark_runs_once(cls, tiny_cases):
    methods = [m for m in dir(cls) if m.startswith(KINDS)]
    ran = 0
    for params in _grid(cls):
        params = tuple(_tiny(p) for p in params)
        bench = cls()
        try:
            bench.setup(*params)
        except NotImplementedError:
            continue  # asv skips these parameters too
        for m in methods:
            fn = getattr(bench, m)
            if getattr(fn, "skip_benchmark", False):
                continue  # a peer that is not installed
            fn(*params)
            ran += 1
        if hasattr(bench, "teardown"):
            bench.teardown(*params)
    if ran == 0:
        pytest.skip(f"{cls.__name__}: every parameter set skipped")


def test_peers_agree_on_tiny_data(tiny_cases):
    """The peers compute the same thing, so their times are comparable."""
    np = pytest.importorskip("numpy")
    for op in common.IMPLS:
        masked = op.endswith("_where")
        for case in ["wide_4096x1000"] + ([] if masked else ["mid_64x1000x64_ax1"]):
            ref = None
            for peer in common.peers(op):
                try:
                    run = common.prepare(op, peer, case, "float64")
                except NotImplementedError:
                    continue
                got = run()
                if op == "cross_entropy_grad" and peer == "torch":
                    continue  # torch leaves the gradient in the tensor, returns nothing
                got = [np.asarray(g) for g in got] if isinstance(got, tuple) else [np.asarray(got)]
                if ref is None:
                    ref = got
                for g, r in zip(got, ref, strict=True):
                    np.testing.assert_allclose(g, r, rtol=1e-9, err_msg=f"{op} {peer} {case}")


def test_datasets_are_fixed_and_read_only(tiny_cases):
    np = pytest.importorskip("numpy")
    x, _ = common.dataset("wide_4096x1000", "float64")
    assert not x.flags.writeable
    common.clear_caches()
    y, _ = common.dataset("wide_4096x1000", "float64")
    assert x is not y and np.array_equal(x, y)
    assert np.array_equal(common.dataset("wide_4096x1000", "float32")[0], y.astype("float32"))


def test_mask_is_causal_style(tiny_cases):
    np = pytest.importorskip("numpy")
    for case in common.MASK_CASES:
        m = common.mask(case)
        x, _ = common.dataset(case, "float64")
        assert m.shape == x.shape and m.dtype == bool and not m.flags.writeable
        kept = m.sum(axis=1)
        assert kept[0] >= 1 and kept[-1] == x.shape[1] and np.all(np.diff(kept) >= 0)
        assert np.array_equal(m, np.cumsum(m, axis=1) == np.arange(1, x.shape[1] + 1))
    with pytest.raises(ValueError):
        common.mask("mid_64x1000x64_ax1")


def test_peer_table_is_shared():
    """The suite and ``python -m fastlse`` time the same peer code."""
    import fastlse.bench.cli as cli
    import fastlse.bench.peers

    assert cli._peers is fastlse.bench.peers
    assert common._peers is fastlse.bench.peers
    assert common.IMPLS is fastlse.bench.peers.IMPLS


@pytest.mark.parametrize("shape", [(7, 300), (3, 5003), (500, 10), (1, 140_000), (4, 50, 8)])
def test_limit_proxies_read_and_copy_everything(shape):
    """The one-read proxy sums every element once (narrow rows as one flat row),
    the copy proxy reproduces the input: neither skips work."""
    np = pytest.importorskip("numpy")
    proxies = next(m for m in MODULES if m.__name__.endswith("bench_proxies"))
    x = np.random.default_rng(1).standard_normal(shape)
    axis = 1 if len(shape) == 3 else -1
    got = np.asarray(proxies.sum_proxy(x, axis))
    np.testing.assert_allclose(got.sum(), x.sum(), rtol=1e-12, atol=1e-9)
    if len(shape) == 3:
        np.testing.assert_allclose(got, x.sum(axis=1), rtol=1e-12, atol=1e-12)
    elif shape[-1] >= proxies.NARROW:
        np.testing.assert_allclose(got, x.sum(axis=-1), rtol=1e-12, atol=1e-12)
    assert np.array_equal(proxies.copy_proxy(x), x)
    out = np.zeros_like(x)
    assert proxies.copy_proxy(x, out) is not None and np.array_equal(out, x)
    where = np.arange(shape[-1]) % 3 != 0
    if len(shape) == 2:
        m = np.broadcast_to(where, shape)
        got = proxies.sum_where_proxy(x, np.ascontiguousarray(m))
        np.testing.assert_allclose(got, np.where(m, x, 0).sum(axis=1), rtol=1e-12, atol=1e-12)


def test_every_table_op_has_its_limit_proxy():
    """``python -m fastlse``'s limit column: the reductions get the one-read sum,
    the ops that write an array of x's size get the copy, on the op's own axis."""
    np = pytest.importorskip("numpy")
    import fastlse.bench.cli as cli
    import fastlse.bench.peers as peers

    x = np.random.default_rng(2).standard_normal((4, 50, 8))
    for op in cli.OPS + cli.XENT_OPS:
        name = cli._OP_NAMES.get(op, op)
        got = np.asarray(cli.make_peer("limit", op, x, 1)())
        if name in ("logsumexp", "cross_entropy"):
            assert peers.LIMITS[name] == "read"
            np.testing.assert_allclose(got, x.sum(axis=1), rtol=1e-12, atol=1e-12)
        else:
            assert peers.LIMITS[name] == "copy"
            assert np.array_equal(got, x)
    with pytest.raises(NotImplementedError, match="no limit proxy"):
        peers.make_limit("logsumexp_where", x, 1)
