"""pytest collects the ``>>>`` examples of the pages here (``*.md``), not the
Sphinx configuration or the built site."""

collect_ignore = ["conf.py", "_build"]
