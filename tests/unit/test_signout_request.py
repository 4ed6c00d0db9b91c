"""Parsing POST /api/signouts bodies: every bad input is a clear problem, never a crash."""

import json

import pytest

from shared.domain.problems import ProblemError
from shared.domain.requests import MAX_BODY_BYTES, load_json_object, parse_signout_request, require_json


def problem_of(body: dict) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        parse_signout_request(body)
    return caught.value


def test_users_list_with_description_and_correlation() -> None:
    request = parse_signout_request(
        {
            "users": ["adele.vance@contoso.com", "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b"],
            "description": "INC-42",
            "correlationId": "c-1",
        }
    )
    assert [user.value for user in request.users] == ["adele.vance@contoso.com", "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b"]
    assert (request.description, request.correlation_id) == ("INC-42", "c-1")


def test_single_user_form() -> None:
    assert [user.value for user in parse_signout_request({"user": "adele@contoso.com"}).users] == ["adele@contoso.com"]


def test_duplicate_users_become_one_task() -> None:
    request = parse_signout_request({"users": ["adele@contoso.com", "ADELE@contoso.com"]})
    assert len(request.users) == 1


def test_each_bad_entry_is_named_by_pointer() -> None:
    problem = problem_of({"users": ["good@contoso.com", "bad", 7, "x/y@contoso.com"]})
    assert problem.status == 400
    assert [error["pointer"] for error in problem.errors] == ["/users/1", "/users/2", "/users/3"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/users"),
        ({"users": []}, "/users"),
        ({"users": "adele@contoso.com"}, "/users"),
        ({"user": "a@contoso.com", "users": ["b@contoso.com"]}, "/user"),
        ({"users": ["a@contoso.com"], "description": "x" * 1025}, "/description"),
        ({"users": ["a@contoso.com"], "description": 5}, "/description"),
        ({"users": ["a@contoso.com"], "correlationId": "a\x00b"}, "/correlationId"),
        ({"users": ["a@contoso.com"], "usres": []}, "/usres"),
    ],
)
def test_field_errors(body: dict, pointer: str) -> None:
    problem = problem_of(body)
    assert problem.status == 400
    assert pointer in [error["pointer"] for error in problem.errors]


def test_more_than_1000_users_is_413() -> None:
    problem = problem_of({"users": [f"u{i}@contoso.com" for i in range(1001)]})
    assert problem.status == 413


def test_1000_users_is_fine() -> None:
    assert len(parse_signout_request({"users": [f"u{i}@contoso.com" for i in range(1000)]}).users) == 1000


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml", "multipart/form-data"])
def test_wrong_content_type_is_415(content_type: str | None) -> None:
    with pytest.raises(ProblemError) as caught:
        require_json(content_type)
    assert caught.value.status == 415


def test_json_with_charset_is_fine() -> None:
    require_json("application/json; charset=utf-8")


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe", b"[1,2]", b'"users"', b"[" * 100000])
def test_malformed_or_non_object_json_is_400(body: bytes) -> None:
    with pytest.raises(ProblemError) as caught:
        load_json_object(body)
    assert caught.value.status == 400


def test_oversized_body_is_413_before_parsing() -> None:
    with pytest.raises(ProblemError) as caught:
        load_json_object(b" " * (MAX_BODY_BYTES + 1))
    assert caught.value.status == 413


def test_fingerprint_binds_idempotency_key_to_the_body() -> None:
    one = parse_signout_request({"users": ["a@contoso.com"], "description": "x"})
    same = parse_signout_request(json.loads('{"description": "x", "users": ["A@contoso.com"]}'))
    other = parse_signout_request({"users": ["a@contoso.com"], "description": "y"})
    assert one.fingerprint() == same.fingerprint() != other.fingerprint()
