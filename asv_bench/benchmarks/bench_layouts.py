"""Inputs the kernels cannot read in place: strided views and integers.

Such an input is copied into the kernels' C-contiguous layout, by blocks of
rows through one buffer when it is large (``Plan.row_blocks``).  The shape is
the wide dataset's, (4096, 1000) float32 before slicing; ``contiguous`` is the
same data already laid out, the reference for the copy's cost, and
``peakmem_*`` shows that no temporary of the input's size is made.
"""

import numpy as np

import fastlse

LAYOUTS = ["contiguous", "rows_strided", "cols_strided", "int32"]


def _make(layout, shape):
    rng = np.random.default_rng(11)
    x = (3.0 * rng.standard_normal((shape[0], 2 * shape[1]))).astype(np.float32)
    if layout == "contiguous":
        return np.ascontiguousarray(x[:, : shape[1]])
    if layout == "rows_strided":  # each row contiguous, rows 2 * N apart
        return x[:, : shape[1]]
    if layout == "cols_strided":  # every other element
        return x[:, ::2]
    return (x[:, : shape[1]] * 10).astype(np.int32)  # converted to float64


class CopiedInputs:
    """logsumexp / softmax of a (4096, 1000) input in each layout, axis -1."""

    params = ([(4096, 1000)], LAYOUTS)
    param_names = ("shape", "layout")

    def setup(self, shape, layout):
        self.x = _make(layout, shape)
        fastlse.logsumexp(self.x, axis=-1)  # compiled outside the timings
        fastlse.softmax(self.x, axis=-1)

    def time_logsumexp(self, shape, layout):
        fastlse.logsumexp(self.x, axis=-1)

    def time_softmax(self, shape, layout):
        fastlse.softmax(self.x, axis=-1)

    def peakmem_logsumexp(self, shape, layout):
        fastlse.logsumexp(self.x, axis=-1)


FEW_COLUMNS = {  # name: (shape, axis): fewer than 128 bytes of columns behind the axis
    "1000000x4_ax0": ((1_000_000, 4), 0),
    "64x64x8_ax1": ((64, 64, 8), 1),
    "2048x256x12_ax1": ((2048, 256, 12), 1),
}


class FewColumns:
    """A non-last axis with few columns behind it, read as folded rows
    (``kernels.columns``), and the same elements laid out as rows (``rows``: the
    reference, the reduced axis last and contiguous)."""

    params = (list(FEW_COLUMNS), ["float32", "float64"], ["columns", "rows"])
    param_names = ("case", "dtype", "layout")

    def setup(self, case, dtype, layout):
        shape, axis = FEW_COLUMNS[case]
        x = (3.0 * np.random.default_rng(12).standard_normal(shape)).astype(dtype)
        if layout == "rows":
            x, axis = np.ascontiguousarray(np.moveaxis(x, axis, -1)), -1
        self.x, self.axis = x, axis
        for f in (fastlse.logsumexp, fastlse.softmax, fastlse.log_softmax):
            f(x, axis=axis)  # compiled outside the timings

    def time_logsumexp(self, case, dtype, layout):
        fastlse.logsumexp(self.x, axis=self.axis)

    def time_softmax(self, case, dtype, layout):
        fastlse.softmax(self.x, axis=self.axis)

    def time_log_softmax(self, case, dtype, layout):
        fastlse.log_softmax(self.x, axis=self.axis)
