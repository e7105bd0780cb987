"""The front door: the README is a page, links every docs page, and every figure it or a docs page quotes from a
run is an include block whose text is the committed results file's (longrope.docs_blocks)."""
import re

import pytest

from conftest import ROOT
from longrope.docs_blocks import BLOCK, included, render, stale

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "config" / "README.md"]
TOP_PAGES = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_include_block_holds_its_files_text(page):
    assert stale(page, ROOT) == [], "run `python -m longrope.tools.publish_run` to render them"


def test_the_readme_quotes_the_embedded_defaults_run():
    assert {"docs/embedded_default/claims.md", "docs/embedded_default/run.md", "docs/tests/run.md"} <= set(
        included(README))
    claims = (ROOT / "docs/embedded_default/claims.md").read_text()
    assert all(claim in claims for claim in ("(a)", "(b)", "(c1)", "(c2)", "(c3)", "(d)"))


def test_the_readme_is_a_page_that_links_every_docs_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for page in [*TOP_PAGES, ROOT / "config/README.md", ROOT / "docs/embedded_default/README.md"]:
        assert f"({page.relative_to(ROOT)})" in text, f"README does not link {page.relative_to(ROOT)}"


def outside_blocks(text: str) -> str:
    """The page less its include blocks, code and link targets (an arXiv id is not a figure)."""
    return re.sub(r"```.*?```|\]\([^)]*\)", "", BLOCK.sub("", text), flags=re.DOTALL)


def test_the_readme_quotes_no_measured_figure_outside_its_blocks():
    prose = outside_blocks(README.read_text())
    assert re.findall(r"\d+\.\d+|\d[\d,]* ?(?:s|min|minutes|seconds|hours)\b", prose) == []


@pytest.mark.parametrize("page", TOP_PAGES, ids=lambda p: p.name)
def test_each_docs_page_opens_with_what_it_answers(page):
    assert "What it answers:" in "\n".join(page.read_text().splitlines()[:6])


def test_a_changed_results_file_makes_its_block_stale(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/t.md").write_text("| a |\n|---|\n| 1.00 |\n")
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- include: docs/t.md -->\n<!-- end include -->\nafter\n")
    assert stale(page, tmp_path) == ["docs/t.md"]
    page.write_text(render(page, tmp_path))
    assert stale(page, tmp_path) == [] and "| 1.00 |" in page.read_text() and page.read_text().endswith("after\n")
    (tmp_path / "docs/t.md").write_text("| a |\n|---|\n| 1.01 |\n")
    assert stale(page, tmp_path) == ["docs/t.md"]
    page.write_text("<!-- include: docs/missing.md -->\n<!-- end include -->\n")
    with pytest.raises(FileNotFoundError, match="docs/missing.md"):
        stale(page, tmp_path)
