"""HTTP triggers served by the devhost: routing, params, methods, errors and function keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from .conftest import FAST_QUEUES, Sample

KEY = "test-key"
pytestmark = pytest.mark.xdist_group("devhost-http")  # one shared devhost under --dist loadgroup


@pytest.fixture(scope="module")
def host(azurite, tmp_path_factory) -> Iterator[Sample]:
    """One devhost for the module: HTTP tests don't share state through it."""
    s = Sample(azurite, tmp_path_factory.mktemp("http"), FAST_QUEUES, {"DEVHOST_FUNCTION_KEY": KEY})
    s.host.start()
    yield s
    assert s.host.stop() == 0  # graceful SIGTERM shutdown


def get(host: Sample, path: str, **kwargs) -> httpx.Response:
    return httpx.get(host.host.url + path, **kwargs)


def test_route_params_constraints_and_query(host: Sample) -> None:
    r = get(host, "/api/items/5/widget?a=1&a=2&b=x", headers={"X-Sample": "h"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["function"] == "get_item" and body["method"] == "GET"
    assert body["route"] == {"id": "5", "name": "widget"}
    assert body["params"] == {"a": "1,2", "b": "x"}  # repeated keys comma-joined, as in Azure
    assert body["header"] == "h"
    assert body["url"] == f"{host.host.url}/api/items/5/widget?a=1&a=2&b=x"
    assert get(host, "/api/items/5").json()["route"] == {"id": "5"}  # optional segment
    assert get(host, "/api/ITEMS/-7/").json()["route"] == {"id": "-7"}  # literals ignore case
    assert get(host, "/api/items/abc").status_code == 404  # {id:int}


def test_precedence_guid_alpha_and_catch_all(host: Sample) -> None:
    guid = str(uuid.uuid4())
    assert get(host, "/api/users/me").json()["function"] == "user_me"  # literal beats parameters
    assert get(host, "/api/users/bob").json()["route"] == {"name": "bob"}
    assert get(host, f"/api/users/{guid}").json()["route"] == {"uid": guid}
    assert get(host, "/api/users/42").status_code == 404  # neither alpha nor guid
    assert get(host, "/api/files/a/b%20c.txt").json()["route"] == {"path": "a/b c.txt"}
    assert get(host, "/api/files").json()["route"] == {}


def test_default_route_is_function_name_and_str_return(host: Sample) -> None:
    r = get(host, "/api/health")
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "ok", "text/plain; charset=utf-8")
    assert get(host, "/api/health_check").status_code == 404


def test_blueprint_function_gets_context(host: Sample) -> None:
    body = get(host, "/api/bp/hello").json()
    assert body["function"] == "bp_hello" and uuid.UUID(body["invocation_id"])


def test_http_response_status_headers_and_mimetype(host: Sample) -> None:
    r = httpx.post(host.host.url + "/api/created")
    assert (r.status_code, r.text) == (201, "made")
    assert r.headers["x-sample"] == "yes" and r.headers["set-cookie"] == "a=1"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


def test_unknown_route_and_method_are_404(host: Sample) -> None:
    assert get(host, "/api/nope").status_code == 404
    assert get(host, "/items/5").status_code == 404  # routePrefix is required
    # Azure answers 404 (not 405) for a known route with a method it doesn't list.
    assert httpx.delete(host.host.url + "/api/items/5").status_code == 404
    assert httpx.post(host.host.url + "/api/health_check").status_code == 404


def test_unhandled_exception_is_a_bare_500_and_logged(host: Sample) -> None:
    r = get(host, "/api/boom")
    assert r.status_code == 500 and "secret" not in r.text
    assert get(host, "/api/nothing").status_code == 500  # None can't be encoded as a response
    log = host.host.log
    assert "RuntimeError: secret detail" in log and "Executed 'Functions.boom' (Failed" in log


def test_function_keys(host: Sample) -> None:
    url = host.host.url + "/api/items/5"
    assert httpx.post(url, content=b"x").status_code == 401
    assert httpx.post(url, params={"code": "wrong"}).status_code == 401
    r = httpx.post(url, params={"code": KEY}, content=b"payload")
    assert r.status_code == 200 and r.json()["body"] == "payload"
    assert r.json()["params"] == {"code": KEY}  # Azure passes the key on, too
    assert httpx.put(url, headers={"x-functions-key": KEY}).json()["function"] == "put_item"
    assert get(host, "/api/items/5").status_code == 200  # anonymous needs no key


def test_without_a_configured_key_function_routes_are_open(sample) -> None:
    host = sample()
    assert httpx.post(host.host.url + "/api/items/5").status_code == 200


def test_body_limit(host: Sample) -> None:
    big = httpx.post(host.host.url + "/api/created", content=b"x" * (100 * 1024 * 1024 + 1), timeout=300)
    assert big.status_code == 413
