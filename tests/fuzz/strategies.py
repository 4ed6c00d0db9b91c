"""Hypothesis settings and input strategies shared by the fuzz tests.

Every property runs derandomized (the same examples on every run and machine, no example
database), without deadlines (CI machines are shared), and with a bounded number of examples so
that the whole of tests/fuzz stays well under a minute on two cores.
"""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --- user identifiers ---------------------------------------------------------------------------
UPN_LOCAL_CHARS = string.ascii_letters + string.digits + "'._!#^~+-"
# What an attacker would put in a Graph path, a query or a header, plus whitespace and non-ASCII.
HOSTILE_CHARS = "/\\?#%&=:;,()[]{}<>|*$@\"'` \t\r\n\x00\x0b\x7f.~+éİ\u2028\ufeff"
HOSTILE_FRAGMENTS = [
    "../",
    "..",
    "%2F",
    "%2f",
    "%252F",
    "%00",
    "?$select=passwordProfile",
    "$filter=",
    "' or 1 eq 1",
    "')",
    "users('x')",
    "/revokeSignInSessions",
    "#/",
    "\r\nHost: evil",
    "\\",
    "/me",
    "@",
    "#EXT#",
    "%40",
]

label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=2, max_size=4).map(".".join)
valid_upn = st.builds(
    lambda local, dom: f"{local}@{dom}",
    st.from_regex(r"[A-Za-z0-9'_!#^~+\-]{1,12}(\.[A-Za-z0-9'_!#^~+\-]{1,12}){0,2}", fullmatch=True),
    domain,
)
guest_upn = st.builds(lambda name, home, dom: f"{name}_{home}#EXT#@{dom}", label, domain, domain)
guid = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A valid identifier with hostile characters or fragments spliced in somewhere."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(HOSTILE_FRAGMENTS) | st.sampled_from(list(HOSTILE_CHARS)))
        text = text[:at] + piece + text[at:]
    return text


near_upn = st.builds(
    lambda local, dom: f"{local}@{dom}",
    st.text(alphabet=UPN_LOCAL_CHARS + HOSTILE_CHARS, min_size=1, max_size=30),
    st.text(alphabet=string.ascii_letters + string.digits + ".-" + HOSTILE_CHARS, min_size=1, max_size=30),
)
identifier_text = st.one_of(
    st.text(max_size=300),
    valid_upn,
    guest_upn,
    guid,
    near_upn,
    mutated(valid_upn | guest_upn | guid),
    valid_upn.map(lambda upn: f"  {upn}\t"),
    st.builds(lambda local, dom: f"{local}@{dom}", st.text(alphabet=UPN_LOCAL_CHARS, min_size=100, max_size=130), domain),
)

# --- JSON values --------------------------------------------------------------------------------
# Scalars stay cheap to draw (recursive strategies multiply their cost); identifiers come from a
# fixed sample here, and from identifier_text wherever a field is meant to hold one.
SAMPLE_STRINGS = [
    "adele.vance@contoso.com",
    "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com",
    "6F3E2B1A-0C4D-4E5F-8A9B-1C2D3E4F5A6B",
    "breakglass@contoso.com",
    "../me",
    "a@contoso.com?$select=x",
    "' or 1 eq 1",
    "a@b.com\r\nX: y",
    "",
    " ",
    "x" * 1025,
    "x" * 129,
    "https://prod-01.westus.logic.azure.com/workflows/x",
    "http://169.254.169.254/",
    "\ud800",
    "\x00",
]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(SAMPLE_STRINGS)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def nested(depth: int, leaf: str = "0") -> str:
    """`depth` levels of arrays and objects, alternating: valid JSON a recursive parser chokes on."""
    opening = "".join('{"a":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return opening + leaf + closing


def encoded(value: Any) -> bytes:
    """JSON text the way a client would send it (lone surrogates escaped, never raw)."""
    return json.dumps(value).encode()
