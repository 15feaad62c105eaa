"""Relative links in README.md and docs/*.md point to files that exist and, for a Markdown
file, to a heading it has (anchors as GitHub computes them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autobuild.api.reference import anchor

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).*?\1")


def headings(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {anchor(h.strip()) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        heading_checked = file.exists() and file.suffix == ".md" and bool(fragment)
        if not file.exists() or (heading_checked and fragment not in headings(file)):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_the_new_pages_are_linked_from_the_readme() -> None:
    readme = set(links(ROOT / "README.md"))
    for page in ("docs/api.md", "docs/migrating.md", "docs/troubleshooting.md", "docs/install.md"):
        assert page in readme, page
