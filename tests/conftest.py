"""Shared fixtures: the smoke book, built once per test session for the notebook and browser tests."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE_HTML = ROOT / "build" / "smoke-book" / "_build" / "html"  # apart from _build/html, the book a reader built


@pytest.fixture(scope="session")
def smoke_book() -> Path:
    """Execute every notebook with the smoke profile and build the HTML (``kdnb book --profile smoke``) into
    ``SMOKE_HTML``; runs already in build/store-smoke are reused. Returns the repository root."""
    from kdnb.report.book import build_book

    os.environ.setdefault("KDNB_DATA", str(ROOT.parent / "shared" / "data"))
    rc = build_book("smoke", out=SMOKE_HTML.parents[1])
    assert rc == 0, "kdnb book --profile smoke failed; its output above names the notebook and the error"
    return ROOT


@pytest.fixture(scope="session")
def smoke_html(smoke_book: Path) -> Path:
    """The HTML of the smoke book (``smoke_book``): its ``_build/html`` folder."""
    return SMOKE_HTML
