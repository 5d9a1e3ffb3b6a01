"""The benchmark harness, outside the library's core: ``peers`` (the peer
implementations and limit proxies shared by ``python -m fastlse`` and the asv
suite in ``asv_bench/``) and ``cli`` (the table ``python -m fastlse`` prints).
Nothing in ``fastlse`` imports it."""
