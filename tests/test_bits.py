"""Results bit for bit as recorded: every op on the shapes that force its routes.

The hashes in ``tests/bits/<cpu key>.json`` were recorded by ``python
tests/bits_cases.py --record`` (see there: when to record again, and why
they are computed in a process of their own). They pin the last bit, which
depends on the CPU target, so a CPU without a file is skipped; on a CPU
with one, any change of any bit of any case fails here.
"""

import json
import os

import pytest
from bits_cases import BITS_DIR, compute_fresh, cpu_key


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
