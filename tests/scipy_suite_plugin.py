"""pytest plugin: run scipy's own logsumexp tests against fastlse's functions.

scipy's test module imports ``logsumexp``, ``softmax`` and ``log_softmax``
from ``scipy.special`` at import, and its decorators look them up then; the
tests call the module's globals when they run.  So after collection (the
module is imported, its decorators have run) the module's three names are
bound to fastlse's functions, before any test runs.  Used by
``test_scipy_suite.py`` in a pytest of its own.
"""

import fastlse

NAMES = ("logsumexp", "softmax", "log_softmax")


def pytest_collection_modifyitems(session, config, items):
    modules = {item.module for item in items if getattr(item, "module", None) is not None}
    swapped = 0
    for mod in modules:
        for name in NAMES:
            if hasattr(mod, name):
                setattr(mod, name, getattr(fastlse, name))
                swapped += 1
    print(f"\nfastlse-swapped-names: {swapped}")
