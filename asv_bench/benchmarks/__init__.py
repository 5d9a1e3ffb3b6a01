"""asv benchmarks for fastlse: every op against its peers, plus memory-limit proxies.

``common.py`` holds the datasets (fixed seeds, built lazily, cached per process),
the ``where=`` masks and the peer table (``fastlse.bench.peers``, shared with
``python -m fastlse``); ``bench_<op>.py`` holds one class per op, derived from
``common.PeerBenchmark``, with the peer as a parameter, so the ratios of one
``asv run`` are read side by side.  ``bench_proxies.py`` times the memory limits.
"""
