"""The admin console's files as the app serves them (shared/triggers/console.py): strict CSP, only
its own two assets without a key, no inline script, no HTML built from values."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import azure.functions as func
import pytest

from shared.triggers import console
from tests.app_functions import registered_functions


async def get(name: str, route_params: dict[str, str] | None = None) -> func.HttpResponse:
    handler = registered_functions()[name].get_user_function()
    request = func.HttpRequest("GET", "http://localhost/api/console", headers={}, body=b"", route_params=route_params or {})
    return await handler(request)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


async def test_the_page_is_served_with_a_strict_content_security_policy() -> None:
    page = await get("get_console")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert page.headers["Referrer-Policy"] == "no-referrer", "the page URL may hold the function key"
    parser = Tags()
    parser.feed(page.get_body().decode())
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"src": "console/app.js", "defer": None}], "one script, from the app, none inline"
    assert not [attrs for _, attrs in parser.tags if any(name.startswith("on") or name == "style" for name in attrs)]
    assert not re.search(r"(src|href)=\"(https?:)?//", page.get_body().decode()), "nothing third-party"


@pytest.mark.parametrize(("name", "mimetype"), [("app.js", "text/javascript"), ("app.css", "text/css")])
async def test_the_assets_are_served_with_their_type(name: str, mimetype: str) -> None:
    asset = await get("get_console_asset", {"name": name})
    assert (asset.status_code, asset.mimetype) == (200, mimetype)
    assert asset.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", ["index.html", "..%2Fconsole.py", "../console.py", "app.js.map", ""])
async def test_nothing_else_is_served_without_a_key(name: str) -> None:
    assert (await get("get_console_asset", {"name": name})).status_code == 404


def test_the_script_never_builds_html_from_values() -> None:
    script = (console.STATIC / "app.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", script.split("\n", 2)[2])
