"""Settings read once from the environment (documented in docs/threads.md)."""

import os

#: numba's on-disk cache for compiled kernels; ``FASTLSE_CACHE=0`` turns it off.
CACHE = os.environ.get("FASTLSE_CACHE", "1").lower() not in ("0", "false", "no", "off")

#: inputs with fewer elements than this run serially (waking the threads
#: costs more than the work; see docs/performance-notes.md).
PARALLEL_MIN_WORK = int(os.environ.get("FASTLSE_PARALLEL_MIN_WORK", 32768))
