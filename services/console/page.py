"""The console's web page: ``/`` and its script and style, served from ``static/`` in the package.

Everything the page needs comes from the console itself (no CDN, no fonts, no
chart library), so it works on a machine without internet access and a strict
Content-Security-Policy can forbid anything else: no inline script, no other
origin, no framing. The page is public like any login page; what it shows
comes from the API, with the token the user gives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import faust
from faust.web import Request, Response, View

__all__ = ["ASSETS", "Asset", "load_assets", "register_page"]

#: URL -> (file under ``static/``, content type).
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/static/console.css": ("console.css", "text/css; charset=utf-8"),
}

#: Only the console's own files; ``connect-src 'self'`` covers the API and its event stream.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Small files: revalidate, so an upgraded console never runs with yesterday's script.
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = {**_HEADERS, "Content-Security-Policy": _CSP, "X-Frame-Options": "DENY"}


@dataclass(frozen=True)
class Asset:
    """One file of the page, read once at start."""

    body: bytes
    content_type: str

    @property
    def headers(self) -> dict[str, str]:
        """Its response headers (aiohttp refuses a charset in ``content_type=``, so it goes here)."""
        extra = _PAGE_HEADERS if self.content_type.startswith("text/html") else _HEADERS
        return {"Content-Type": self.content_type, **extra}


def load_assets() -> dict[str, Asset]:
    """URL -> :class:`Asset` of every file in :data:`ASSETS` (read from the installed package).

    Examples
    --------
    >>> assets = load_assets()
    >>> sorted(assets), b"console.js" in assets["/"].body
    (['/', '/static/console.css', '/static/console.js'], True)
    """
    static = resources.files("services.console").joinpath("static")
    return {
        url: Asset(static.joinpath(name).read_bytes(), content_type)
        for url, (name, content_type) in ASSETS.items()
    }


def _view(asset: Asset) -> type[View]:
    async def get(self: View, request: Request) -> Response:
        return self.bytes(asset.body, headers=asset.headers)

    return type("PageView", (View,), {"get": get})


def register_page(app: faust.App, assets: Mapping[str, Asset] | None = None) -> None:
    """Serve the page's files on *app*'s web server (read now, so a missing file stops the start)."""
    for url, asset in (assets if assets is not None else load_assets()).items():
        app.page(url, name=f"page:{url}")(_view(asset))
