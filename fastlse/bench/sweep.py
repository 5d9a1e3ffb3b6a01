"""``python -m fastlse --threads 1,2,4,8,16``: how fastlse scales with threads.

For each op x shape x dtype of the table (its quick shapes with ``--quick``)
and a small float32 call of (128, 100), fastlse's time on each thread count,
its speed-up from the first count to the last, and torch's time on the last
count where torch is installed (``peers.equal_threads`` gives torch numba's
count).  The count is numba's ``set_num_threads``: the routes stay those of
the pool (``NUMBA_NUM_THREADS``), so every count computes the same values.
"""

import numba
import numpy as np

from .cli import SHAPES, _have, _per_call, make_peer, table_calls, table_inputs, time_row

#: the small call of the sweep: where starting the threads costs the most
SMALL = ((128, 100), -1)


def parse_counts(text):
    """The thread counts of ``--threads`` ("1,2,4"), ascending, each within
    numba's pool; SystemExit naming the option otherwise."""
    top = numba.config.NUMBA_NUM_THREADS
    try:
        counts = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1 or counts[-1] > top:
        raise SystemExit(
            f"--threads: comma-separated counts from 1 to numba's pool of {top} "
            f"(NUMBA_NUM_THREADS), got {text!r}"
        )
    return counts


def _row_times(op, x, axis, y, counts, torch, timing):
    """fastlse's best time on each count, torch's on the last (or None)."""
    times, torch_time = {}, None
    for n in counts:
        numba.set_num_threads(n)
        fns = {"fastlse": make_peer("fastlse", op, x, axis, y)}
        if torch and n == counts[-1]:
            fns["torch"] = make_peer("torch", op, x, axis, y)
        fns = {p: f for p, f in fns.items() if f is not None}
        for f in fns.values():
            f()  # compilation, thread pools: never timed
        best = timing(fns)
        times[n] = best["fastlse"]
        torch_time = best.get("torch", torch_time)
    return times, torch_time


def _cases(ops, shapes, quick):
    """(op, label, dtype, x, axis, y, timing) of the sweep: the table's rows,
    then the small call, each with the way it is timed."""
    rng = np.random.default_rng(0)
    big = table_calls(quick)
    cases = []
    for op in ops:
        for name in shapes:
            full, small, axis = SHAPES[name]
            shape = small if quick else full
            for dt in ("float32", "float64"):
                cases.append((op, shape, axis, dt, lambda fns: time_row(fns, *big)))
        shape, axis = SMALL
        cases.append((op, shape, axis, "float32", _per_call_all))
    for op, shape, axis, dt, timing in cases:
        x, y = table_inputs(rng, shape, axis, dt)
        yield op, f"{'x'.join(map(str, shape))} ax{axis}", dt, x, axis, y, timing


def _per_call_all(fns):
    """The small call's timing: each callable's best mean of repeated calls."""
    return {p: _per_call(f) for p, f in fns.items()}


def run_sweep(ops, shapes, counts, quick, file):
    """Print the thread sweep; numba's thread count is restored after it."""
    torch = _have("torch")
    before = numba.get_num_threads()
    w = 10
    print(
        f"\nthread sweep: fastlse ms on {', '.join(map(str, counts))} threads (best of "
        f"several calls; the small call: best mean of repeated calls), speed-up from "
        f"{counts[0]} to {counts[-1]}" + (f"; torch on {counts[-1]}" if torch else ""),
        file=file,
    )
    title = (
        f"{'op':<19}{'shape':<20}{'dtype':<8}"
        + "".join(f"{n:>{w}}" for n in counts)
        + f"{'speed-up':>{w}}"
        + (f"{'torch':>{w}}  torch/fastlse" if torch else "")
    )
    print(title, file=file)
    print("-" * len(title), file=file)
    try:
        for op, label, dt, x, axis, y, timing in _cases(ops, shapes, quick):
            times, tt = _row_times(op, x, axis, y, counts, torch, timing)
            first, last = times[counts[0]], times[counts[-1]]
            cells = "".join(f"{times[n] * 1e3:>{w}.4g}" for n in counts)
            line = f"{op:<19}{label:<20}{dt:<8}{cells}{first / last:>{w - 1}.2f}x"
            if tt is not None:
                line += f"{tt * 1e3:>{w}.4g}  {tt / last:.2f}x"
            print(line, file=file, flush=True)
    finally:
        numba.set_num_threads(before)
