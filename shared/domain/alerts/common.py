"""What every payload kind shares: tolerant field access, candidates, and the bounded collector.

Alert payloads are written by other products and by alert-rule authors, so nothing in them is
trusted: every lookup tolerates a missing or mistyped value, only scalars are echoed back, and the
number of entities considered is bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shared.domain.identifiers import InvalidIdentifierError, UserRef, parse_user
from shared.domain.problems import ProblemError, field_error
from shared.domain.text import printable

MAX_ENTITIES = 1000  # candidate accounts per payload; more is a broken rule or an attack
MAX_NAME = 1024  # the name becomes the task description, which has the same limit
MAX_ID = 1024
_MAX_SHOWN = 200  # characters of an entity echoed back in `unusable`
_MAX_VALUE = 80
_MAX_INT = 10**18  # larger "ids" are junk, and str() of huge ints is refused by Python


@dataclass(frozen=True)
class Candidate:
    """One account seen in a payload: identifiers to try, most preferred first, or why there are none."""

    entity: str
    options: tuple[tuple[str, object], ...] = ()  # (source, raw identifier)
    reason: str = ""


@dataclass(frozen=True)
class Parsed:
    alert_id: str
    name: str
    resolved: bool
    found: Iterable[Candidate]
    ignored: str | None = None  # why the alert's only possible target is not one, and the fix


@dataclass(frozen=True)
class Collected:
    users: tuple[UserRef, ...]
    sources: tuple[str, ...]
    unusable: tuple[dict[str, str], ...]


def field(mapping: object, *names: str) -> object:
    """The first non-null value among `names`; keys match case-insensitively (PascalCase and camelCase payloads)."""
    if not isinstance(mapping, dict):
        return None
    for name in names:
        if mapping.get(name) is not None:
            return mapping[name]
    lowered = {key.lower(): value for key, value in mapping.items() if isinstance(key, str)}
    for name in names:
        if lowered.get(name.lower()) is not None:
            return lowered[name.lower()]
    return None


def text(value: object) -> str | None:
    """A scalar as trimmed text; None for empty strings and anything that is not a string or a sane integer."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < _MAX_INT:
        return str(value)
    return None


def items(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def describe(label: str, fields: dict[str, object]) -> str:
    """A short echo of what was seen, e.g. `Account Name='administrator' NTDomain='domain'`: scalars only, clipped."""
    shown = [f"{clip(str(key), _MAX_VALUE)}={clip(value, _MAX_VALUE)!r}" for key, raw in fields.items() if (value := text(raw))]
    return clip(" ".join([label, *shown]), _MAX_SHOWN)


def title(value: object, default: str) -> str:
    """The rule or incident name, fit to be a task description: control characters the API refuses
    there are dropped (not refused), so an alert with a stray one still signs its user out."""
    name = "".join(ch for ch in text(value) or "" if printable(ch, multiline=True)).strip()
    return clip(name or default, MAX_NAME)


def required_id(mapping: object, pointer: str, *names: str) -> str:
    """The alert's stable id: without one a redelivered alert could not be recognised, so it is required."""
    value = next((found for name in names if (found := text(field(mapping, name)))), None)
    if value is None:
        detail = f"the alert has no {' or '.join(names)}; it is needed to process a redelivered alert once"
        raise ProblemError(400, "Alert has no id", detail, [field_error(pointer, "missing")])
    if len(value) > MAX_ID:
        detail = f"the alert id is longer than {MAX_ID} characters"
        raise ProblemError(400, "Alert id too long", detail, [field_error(pointer, "too long")])
    if not printable(value):  # stored and logged as one line, like a correlation id
        detail = "the alert id must be one line of printable text: no control characters, line or paragraph separators"
        raise ProblemError(400, "Invalid alert id", detail, [field_error(pointer, "not printable")])
    return value


def collect(found: Iterable[Candidate]) -> Collected:
    """Validate candidates with parse_user; users deduplicated by key in order of first appearance."""
    users: dict[str, tuple[UserRef, str]] = {}
    unusable: dict[tuple[str, str], None] = {}  # an ordered set: the same on-prem account may recur
    for count, candidate in enumerate(found):
        if count == MAX_ENTITIES:
            unusable[("payload", f"more than {MAX_ENTITIES} accounts; only the first {MAX_ENTITIES} were considered")] = None
            break
        user, source, reason = _resolve(candidate)
        if user is None:
            unusable[(candidate.entity, clip(reason, _MAX_SHOWN))] = None
        else:
            users.setdefault(user.key, (user, source))
    return Collected(
        users=tuple(user for user, _ in users.values()),
        sources=tuple(source for _, source in users.values()),
        unusable=tuple({"entity": entity, "reason": reason} for entity, reason in unusable),
    )


def _resolve(candidate: Candidate) -> tuple[UserRef | None, str, str]:
    reason = candidate.reason
    for source, raw in candidate.options:
        try:
            return parse_user(raw), source, ""
        except InvalidIdentifierError as invalid:
            reason = reason or f"{source} {invalid}"
    return None, "", reason or "no identifier"


def or_else(found: Iterable[Candidate], why: Candidate) -> Iterator[Candidate]:
    """The candidates, or `why` there are none: an empty result must still tell the caller what to fix."""
    empty = True
    for candidate in found:
        empty = False
        yield candidate
    if empty:
        yield why
