"""callbackUrl is validated by the parser that sends it (httpx): whatever is accepted can be sent,
and hosts httpx would refuse at delivery time are refused when the request arrives."""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.domain.callback_urls import InvalidCallbackError, check_callback_url
from shared.domain.problems import ProblemError
from shared.domain.requests import parse_signout_request

HOSTS = ("*.logic.azure.com", "127.0.0.1:8443")
ANY_HOST = ("*", "*:8443")  # the widest allow-list: only the URL rules decide
ASCII_NAME = "host must be an ASCII name (letters, digits, hyphens and dots)"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://xn--zz.logic.azure.com/workflows/1?sig=x", "host must not be an internationalised (xn--) name"),
        ("https://a\u0300.logic.azure.com/", ASCII_NAME),  # a + combining grave accent
        ("https://a\u05d0.logic.azure.com/", ASCII_NAME),  # a + Hebrew alef
        ("https://\u0661a.logic.azure.com/", ASCII_NAME),  # Arabic-Indic digit one + a
    ],
    ids=["xn-- label", "combining mark", "mixed script", "Arabic-Indic digit"],
)
def test_hosts_httpx_cannot_send_to_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises((httpx.InvalidURL, UnicodeError)):  # the premise: the sender refuses them
        httpx.Request("POST", url)
    with pytest.raises(InvalidCallbackError) as refused:
        check_callback_url(url, HOSTS)
    assert str(refused.value) == reason


def test_the_api_answers_such_a_host_with_a_400_pointing_at_callback_url() -> None:
    with pytest.raises(ProblemError) as caught:
        parse_signout_request({"user": "adele.vance@contoso.com", "callbackUrl": "https://xn--zz.logic.azure.com/x"}, HOSTS)
    assert caught.value.status == 400
    assert [error["pointer"] for error in caught.value.errors] == ["/callbackUrl"]


def test_internationalised_names_are_refused_in_either_spelling() -> None:
    for url in ("https://b\u00fccher.logic.azure.com/x", "https://xn--bcher-kva.logic.azure.com/x"):
        with pytest.raises(InvalidCallbackError, match="xn--"):
            check_callback_url(url, ANY_HOST)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://prod-01.westus.logic.azure.com/x", "must be an https URL"),
        ("https:///x", "must be an https URL"),
        ("https://user:pw@prod-01.westus.logic.azure.com/x", "must not carry credentials"),
        ("https://evil.com\\@prod-01.westus.logic.azure.com/", "must not carry credentials"),
        ("https://prod-01.westus.logic.azure.com:8443/x", "is not allowed"),
        ("https://127.0.0.1:99999/x", "is not a URL"),
        ("https://prod-01.westus.logic.azure.com.evil.com/x", "is not allowed"),
        ("https://%61.logic.azure.com/", ASCII_NAME),
        ("https://a_b.logic.azure.com/", ASCII_NAME),
        ("https://prod-01.westus.logic.azure.com/\x01", "is not a URL"),
        ("https://prod-01.westus.logic.azure.com/" + "x" * 2048, "at most 2048 characters"),
    ],
)
def test_the_existing_rules_still_hold(url: str, reason: str) -> None:
    with pytest.raises(InvalidCallbackError, match=re.escape(reason)):
        check_callback_url(url, HOSTS)


@pytest.mark.parametrize(
    "url",
    [
        "https://prod-01.westus.logic.azure.com/workflows/1/triggers/manual/paths/invoke?api-version=2016-10-01&sig=x",
        "https://PROD-01.WestUS.Logic.Azure.com:443/workflows/1",
        "https://127.0.0.1:8443/cb",
    ],
)
def test_logic_apps_urls_are_accepted_unchanged(url: str) -> None:
    assert check_callback_url(url, HOSTS) == url


label_chars = st.sampled_from("abcxyz0189-.AZ_%@:[]/\u00e0\u0300\u05d0\u0661\u00fc\u0131\u200d\uff21")
labels = st.text(label_chars, min_size=1, max_size=12) | st.sampled_from(["xn--zz", "xn--bcher-kva", "prod-01", "127.0.0.1", ""])
hosts = st.lists(labels, min_size=1, max_size=4).map(".".join)
ports = st.sampled_from(["", ":443", ":8443", ":0", ":99999", ":", ":44a"])
tails = st.text(max_size=30) | st.sampled_from(["/x?sig=abc", "/x y", "/%zz", "/\ud800", "#frag", "?a=\u00e9"])
urls = st.builds(
    lambda scheme, host, port, tail: f"{scheme}{host}{port}{tail}",
    st.sampled_from(["https://", "http://", "https:", ""]),
    hosts,
    ports,
    tails,
) | st.text(max_size=60)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=urls)
@example(url="https://xn--zz.logic.azure.com/")
@example(url="https://a\u0300.logic.azure.com/")
@example(url="https://a\u05d0.logic.azure.com/")
@example(url="https://\u0661a.logic.azure.com/")
def test_every_accepted_url_can_be_sent(url: str) -> None:
    """Whatever check_callback_url accepts, httpx can build the request for (it may still fail to
    connect, which is the callback's recorded outcome); anything else is an InvalidCallbackError."""
    try:
        accepted = check_callback_url(url, ANY_HOST)
    except InvalidCallbackError:
        return
    assert accepted == url
    request = httpx.Request("POST", accepted)
    assert request.url.scheme == "https" and request.url.host.isascii()
