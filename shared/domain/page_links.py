"""Which Graph links a bulk job may follow: exactly its own collection (pure rules, no I/O)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from shared.domain.directory import PAGE_FIELDS


def is_own_page_link(link: str, base_url: str, group_id: str | None, page_size: int) -> bool:
    """Whether `link` reads the next page of exactly the collection a job enumerates: the group's
    transitive user members (or every user), with at most the query options this module sets
    ($select, $top, unchanged) plus Graph's $skiptoken. Anything else ($filter, $search, another
    path or host) could widen a job beyond its target, so it is never followed."""
    base, parts = urlsplit(base_url), urlsplit(link)
    if (parts.scheme, parts.netloc.lower()) != (base.scheme, base.netloc.lower()) or parts.fragment:
        return False
    collections = (
        [f"{base.path}/users"]
        if group_id is None
        else [f"{base.path}/groups/{group_id}/transitiveMembers/{cast}" for cast in ("microsoft.graph.user", "graph.user")]
    )
    if parts.path.lower() not in [path.lower() for path in collections]:
        return False
    try:
        options = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return False
    names = [name.lower() for name, _ in options]
    if len(names) != len(set(names)) or "$skiptoken" not in names or not set(names) <= {"$select", "$top", "$skiptoken"}:
        return False
    values = {name.lower(): value for name, value in options}
    select_ok = "$select" not in values or {f.lower() for f in values["$select"].split(",")} == {f.lower() for f in PAGE_FIELDS}
    top_ok = "$top" not in values or values["$top"] == str(page_size)
    return select_ok and top_ok and bool(values["$skiptoken"])
