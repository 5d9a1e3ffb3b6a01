"""Types of the public signatures (for type checkers; nothing is checked at
run time beyond what the functions check themselves)."""

from typing import Any, Literal, TypeAlias

from numpy.typing import ArrayLike, NDArray

__all__ = ["ArrayLike", "Axis", "NDArray", "Reduced", "Reduction"]

#: an axis argument: one int, a tuple of ints, or None for all of them
Axis: TypeAlias = int | tuple[int, ...] | None
#: a reduction's result: an ndarray, or a numpy scalar where no axis is kept
#: (scipy's and numpy's rule), so typed as numpy types its own reductions
Reduced: TypeAlias = Any
#: the reductions of the losses
Reduction: TypeAlias = Literal["mean", "sum", "none"]
