"""Log-sum-exp of an array larger than a worker's memory, on a dask LocalCluster.

The array (uniform "logits" in [0, 10)) is generated chunk by chunk on the
workers with ``dask.array.random`` (nothing big ever exists in the client), and
``fastlse.logsumexp`` reduces it with one ``dask.array.reduction``: each
chunk's kernel returns its partial ``(max, sum)`` pair, pairs are merged, the
aggregate finishes with ``m + log1p(t)``.  Printed: the cluster time next to
the single-machine NumPy path on a slice that fits in memory, and the peak
memory of every worker.

    python examples/dask_logsumexp.py            # 4 GiB array, 2 workers x 1 GiB
    python examples/dask_logsumexp.py --small    # 640 MiB array, 2 workers x 500 MiB
"""

import argparse
import math
import resource
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import fastlse

#: the array holds uniform "logits" in [0, SCALE)
SCALE = 10.0


def peak_rss():
    """Peak resident memory of this process (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss():
    import psutil

    return psutil.Process().memory_info().rss


def gib(n):
    return f"{n / 2**30:.2f} GiB"


def mib(n):
    return f"{n / 2**20:.0f} MiB"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a 640 MiB array (quick run)")
    p.add_argument("--rows", type=int, help="rows of the array (default 131072, small 20480)")
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--chunk-rows", type=int, help="rows per chunk (default 2048, small 1024)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", help="per worker (default 1GiB, small 500MiB)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--slice-rows", type=int, default=4096, help="rows of the NumPy slice")
    args = p.parse_args(argv)
    rows = args.rows or (20480 if args.small else 131072)
    args.chunk_rows = args.chunk_rows or (1024 if args.small else 2048)
    limit = args.memory_limit or ("500MiB" if args.small else "1GiB")
    dt = np.dtype(args.dtype)
    shape = (rows, args.cols)
    nbytes = math.prod(shape) * dt.itemsize
    limit_bytes = dask.utils.parse_bytes(limit)

    chunk_bytes = args.chunk_rows * args.cols * dt.itemsize
    print(
        f"array {shape} {dt}: {gib(nbytes)}, chunks of {args.chunk_rows} rows ({mib(chunk_bytes)})"
    )
    print(
        f"cluster: {args.workers} worker processes x 1 thread, memory_limit {limit} each "
        f"(the array is {nbytes / limit_bytes:.1f}x one worker's budget)"
    )

    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=limit,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        rng = da.random.default_rng(2024)
        x = rng.random(shape, dtype=dt, chunks=(args.chunk_rows, args.cols)) * dt.type(SCALE)

        def lazy(x):
            return [
                fastlse.logsumexp(x),  # a scalar
                fastlse.logsumexp(x, axis=0),  # one value per column
                fastlse.logsumexp(x[: args.slice_rows], axis=1),  # checked against NumPy
            ]

        # warm up on one chunk (worker imports, numba's cache or compilation:
        # every kernel the chunks use), so the timing below is the work
        client.compute(lazy(x[: args.chunk_rows]), sync=True)
        idle = client.run(current_rss)

        t0 = time.perf_counter()
        total_v, per_col_v, head_v = client.compute(lazy(x), sync=True)
        t_cluster = time.perf_counter() - t0
        peaks = client.run(peak_rss)
        # the slice for the single-machine path, fetched block by block (a
        # compute of the slice would concatenate it in one worker first)
        nblocks = -(-args.slice_rows // args.chunk_rows)
        xs = np.concatenate(client.gather(client.compute([x.blocks[i] for i in range(nblocks)])))
        xs = xs[: args.slice_rows]

    # ------------------------------------- single machine, NumPy path ------
    def numpy_work(xs):
        return fastlse.logsumexp(xs), fastlse.logsumexp(xs, axis=0)

    numpy_work(xs[:8])  # compile / load outside the timing
    t0 = time.perf_counter()
    np.random.default_rng(1).random(xs.shape, dtype=dt) * dt.type(SCALE)
    t_gen = time.perf_counter() - t0
    t_np = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        numpy_work(xs)
        t_np = min(t_np, time.perf_counter() - t0)
    rtol = 1e-5 if dt == np.float32 else 1e-13
    ok = np.allclose(head_v, fastlse.logsumexp(xs, axis=1), rtol=rtol)

    n_all, n_slice = math.prod(shape), xs.size
    expect = math.log(n_all) + math.log(math.expm1(SCALE) / SCALE)  # E[exp(10 U)]
    t_ext = (t_gen + t_np) * n_all / n_slice
    ns = (t_gen + t_np) / n_slice * 1e9
    print()
    print(f"logsumexp of all {n_all:.3g} elements: {float(total_v):.6f} (expected ~{expect:.6f})")
    print(f"logsumexp per column: mean {per_col_v.mean():.4f}")
    print(
        f"dask cluster, whole array (generate + 2 reductions): {t_cluster:.2f} s "
        f"({t_cluster / n_all * 1e9:.2f} ns/element)"
    )
    print(
        f"NumPy path, one process, {xs.shape} slice ({mib(xs.nbytes)}): generate {t_gen:.3f} s"
        f" + 2 reductions {t_np:.3f} s ({ns:.2f} ns/element; x{n_all / n_slice:.0f}"
        f" = {t_ext:.1f} s if it all fitted in memory)"
    )
    print(f"cluster rows of the slice equal the NumPy result: {ok}")
    print("peak memory per worker (ru_maxrss):")
    for addr, peak in sorted(peaks.items()):
        print(
            f"  {addr}: peak {mib(peak)} (idle after warm-up {mib(idle[addr])}),"
            f" limit {mib(limit_bytes)}"
        )
    if not ok:
        raise SystemExit("mismatch between the cluster and the NumPy path")
    return dict(t_cluster=t_cluster, peaks=peaks, total=float(total_v))


if __name__ == "__main__":
    main()
