"""Figures in the README and docs pages that cannot go stale: a page quotes a committed results file through an
include block, and the block's text is that file's, rendered by `longrope.tools.publish_run` and checked by
tests/test_docs.py.

    <!-- include: docs/embedded_default/claims.md -->
    ... the file's text, written here by the renderer ...
    <!-- end include -->

Paths are relative to the repository root.
"""
from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.DOTALL)


def included(page: Path) -> list[str]:
    """The files a page includes, in order."""
    return [m["path"] for m in BLOCK.finditer(page.read_text())]


def _body(root: Path, path: str) -> str:
    source = root / path
    if not source.is_file():
        raise FileNotFoundError(f"an include block names {path}, which does not exist")
    return source.read_text().strip("\n") + "\n"


def render(page: Path, root: Path, skip_missing: bool = False) -> str:
    """The page with every include block's body replaced by its file's text; `skip_missing` leaves the blocks of
    files not yet published as they are (a first publication of one run before another's)."""
    def body(m):
        if skip_missing and not (root / m["path"]).is_file():
            return m[0]
        return m[1] + _body(root, m["path"]) + m[4]
    return BLOCK.sub(body, page.read_text())


def stale(page: Path, root: Path) -> list[str]:
    """The included files whose text differs from the page's block."""
    return [m["path"] for m in BLOCK.finditer(page.read_text()) if m["body"] != _body(root, m["path"])]
