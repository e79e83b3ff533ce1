"""The console's page: served whole from the package, under a strict policy, never parsing text as HTML."""

from __future__ import annotations

import re

from services.console.page import load_assets


def test_the_page_is_served_whole_from_the_package_under_a_strict_policy() -> None:
    assets = load_assets()
    page = assets["/"].body.decode()

    assert "/api/v1/openapi.json" in page
    # Nothing from elsewhere: every src / href is a path of the console's own (or the empty icon).
    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert urls and all(url.startswith("/") or url == "data:," for url in urls), urls
    assert "<script>" not in page and " style=" not in page, "the policy allows no inline script or style"
    policy = assets["/"].headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert assets["/static/console.js"].headers["Content-Type"].startswith("text/javascript")
    assert all(a.headers["X-Content-Type-Options"] == "nosniff" for a in assets.values())


def test_the_script_never_parses_text_as_html() -> None:
    script = load_assets()["/static/console.js"].body.decode()

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert 'setAttribute("style"' not in script
