"""Sphinx configuration of fastlse's documentation.

Build: ``pip install -e ".[docs]"`` then
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Importing fastlse compiles nothing, so autodoc costs no numba compilation.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import fastlse

project = "fastlse"
author = "The fastlse developers"
copyright = "The fastlse developers"
version = release = fastlse.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "dollarmath"]

try:  # fastlse.torch's reference (torch.md) imports torch; a docs-only install mocks it
    import torch  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["torch"]
myst_heading_anchors = 3

autosummary_generate = False
autodoc_typehints = "none"  # the numpydoc sections say it; signatures stay short
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "furo"
html_title = f"fastlse {release}"
html_static_path: list[str] = []
