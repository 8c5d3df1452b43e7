"""Shared fixtures: the smoke book, built once per test session for the notebook and browser tests."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_book() -> Path:
    """Execute every notebook with the smoke profile and build the HTML (``kdnb book --profile smoke``);
    runs already in build/store-smoke are reused. Returns the repository root."""
    from kdnb.report.book import build_book

    os.environ.setdefault("KDNB_DATA", str(ROOT.parent / "shared" / "data"))
    rc = build_book("smoke")
    assert rc == 0, "kdnb book --profile smoke failed; its output above names the notebook and the error"
    return ROOT
