"""asv benchmarks for fastlse: every op against its peers, plus memory-limit proxies.

``common.py`` holds the datasets (fixed seeds, built lazily, cached per process) and
the peer table; ``bench_<op>.py`` holds one class per op with one ``time_<peer>``
method per peer, so the ratios of one ``asv run`` are read side by side.
"""
