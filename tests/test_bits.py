"""Results bit for bit as recorded: every op on the shapes that force its routes.

The hashes in ``tests/bits/<cpu key>.json`` were recorded by ``python
tests/bits_cases.py --record`` (see there: when to record again, and why
they are computed in a process of their own). They pin the last bit, which
depends on the CPU target, so a CPU without a file is skipped; on a CPU
with one, any change of any bit of any case fails here.

It runs when ``FASTLSE_TEST_BITS=1`` is set: every kernel compiles afresh in
its process, about 5 minutes on a 2-core host, which on a host with a record
(the AMD Zen 4 one) would take CI past its 15 minutes.  Run it before and
after a change that touches the kernels, for the host and, with
``NUMBA_CPU_NAME=haswell`` / ``generic`` and ``NUMBA_CPU_FEATURES=""``, for
the baseline targets.
"""

import json
import os

import pytest
from bits_cases import BITS_DIR, compute_fresh, cpu_key


@pytest.mark.skipif(
    os.environ.get("FASTLSE_TEST_BITS") != "1",
    reason="FASTLSE_TEST_BITS=1 runs it (a fresh compile of every kernel, ~5 min)",
)
def test_bits_as_recorded():
    path = os.path.join(BITS_DIR, f"{cpu_key()}.json")
    if not os.path.exists(path):
        pytest.skip(f"no bits recorded for the CPU target {cpu_key()} (see bits_cases.py)")
    with open(path) as f:
        want = json.load(f)
    got = compute_fresh()
    assert set(got) == set(want), sorted(set(got) ^ set(want))[:20]
    changed = sorted(k for k in want if got[k] != want[k])
    assert not changed, f"{len(changed)} of {len(want)} cases changed: {changed[:40]}"
