"""fastlse: fast, accurate log-sum-exp, softmax and log-softmax on CPU.

Drop-in replacements for ``scipy.special.logsumexp``, ``softmax`` and
``log_softmax`` running on parallel Numba kernels with a vectorized exp.
Nothing is compiled at import: each kernel compiles on first use per dtype.
"""

from ._cumulative import logcumsumexp
from ._linear_xent import linear_cross_entropy
from ._online import OnlineLogSumExp
from ._precompile import precompile
from .kernels.threads import num_threads
from .losses import cross_entropy, log_sigmoid, nll_loss
from .special import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

__all__ = [
    "OnlineLogSumExp",
    "__version__",
    "cross_entropy",
    "linear_cross_entropy",
    "log_sigmoid",
    "log_softmax",
    "logcumsumexp",
    "logsumexp",
    "nll_loss",
    "num_threads",
    "precompile",
    "softmax",
]
