"""Settings read once from the environment (documented in docs/threads.md)."""

import os

#: numba's on-disk cache for compiled kernels; ``FASTLSE_CACHE=0`` turns it off.
CACHE = os.environ.get("FASTLSE_CACHE", "1").lower() not in ("0", "false", "no", "off")

#: inputs with less work than this run serially (waking the threads costs
#: more than the work; see docs/performance-notes.md).  Work is counted in
#: elements, a row of a row kernel as a few more (``_routes.rows_work``).
PARALLEL_MIN_WORK = int(os.environ.get("FASTLSE_PARALLEL_MIN_WORK", 16384))
