"""``python -m fastlse --plot FILE``: the timing table as a picture.

One panel per op; per shape and dtype, one bar per peer giving its time over
fastlse's on a log axis (right of 1: fastlse is faster), and one for the
op's memory-limit proxy (left of 1: fastlse is slower than a single pass
over memory).  Needs matplotlib (``pip install "fastlse[plot]"``).
"""

import math

__all__ = ["EXTRA", "available", "plot"]

#: how to get matplotlib, named in the error without it
EXTRA = 'pip install "fastlse[plot]"'
#: bar colours by column of the table (fixed, so pictures compare)
COLORS = {
    "scipy": "#4c72b0",
    "numpy": "#8c8c8c",
    "torch": "#dd8452",
    "jax": "#55a868",
    "limit": "#c44e52",
}


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _series(rows):
    """The columns with a bar (every peer and the limit, in table order)."""
    seen = []
    for _, _, _, best in rows:
        seen += [p for p in best if p != "fastlse" and p not in seen]
    return seen


def _panel(ax, op, rows, series, labels):
    """Horizontal bars of column time / fastlse time, one group per row."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    h = 0.8 / len(series)
    for i, best in enumerate(r[3] for r in rows):
        for j, s in enumerate(series):
            if s in best:
                r = best[s] / best["fastlse"]  # bars from 1 to r: right, fastlse faster
                ax.barh(i - 0.4 + (j + 0.5) * h, r - 1.0, h, left=1.0, color=COLORS.get(s))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{labels.get(name, name)} {dt}" for _, name, dt, _ in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_title(op, loc="left", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", which="major", alpha=0.3)


def plot(rows, path, title, labels=None, dpi=80):
    """Draw ``rows`` of ``run_table`` ((op, shape, dtype, {column: s})) into
    ``path`` (its suffix picks the format); ``labels``: shape name -> label."""
    from matplotlib.figure import Figure

    ops = list(dict.fromkeys(r[0] for r in rows))
    series = _series(rows)
    ncols = 2 if len(ops) > 2 else 1
    nrows = math.ceil((len(ops) + 1) / ncols)  # one more cell: the legend
    per = max(len([r for r in rows if r[0] == op]) for op in ops)
    height = 0.9 + nrows * (0.8 + 0.28 * per * max(1, len(series) / 3))
    fig = Figure(figsize=(6 * ncols, height), layout="constrained")  # (room for the title)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True).ravel()  # one scale
    for ax, op in zip(axes, ops):
        _panel(ax, op, [r for r in rows if r[0] == op], series, labels or {})
        ax.set_xlabel("time / fastlse time (> 1x: fastlse is faster)", fontsize=8)
        ax.xaxis.set_tick_params(labelbottom=True)
    leg = axes[len(ops)]
    for s in series:
        name = "memory-limit proxy" if s == "limit" else s
        leg.barh(0, 0, color=COLORS.get(s), label=name)
    leg.legend(loc="center", frameon=False, title="column / fastlse")
    for ax in axes[len(ops) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=dpi)
