"""The docs' API reference lists every public name; no page is left out."""

import pathlib
import re

import fastlse

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def test_api_reference_lists_every_public_name():
    text = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^\.\. auto(?:function|class):: fastlse\.(\w+)", text, re.M))
    public = set(fastlse.__all__) - {"__version__"}
    assert public - documented == set(), "add these to docs/api.md"
    assert documented - public == set(), "not in fastlse.__all__"


def test_every_page_is_in_a_toctree():
    pages = {p.stem for p in DOCS.glob("*.md")}
    listed = set()
    for p in DOCS.glob("*.md"):
        for block in re.findall(r"```\{toctree\}(.*?)```", p.read_text(), re.S):
            listed |= {ln.strip() for ln in block.splitlines() if ln.strip() and ":" not in ln}
    assert pages - listed == {"index"}
