"""Twilio's paging rules for every 2010-04-01 list, written once.

``PageSize`` is 1 to 1000 (over 1000: 20007), ``Page`` is only the client's label and needs a
``PageToken`` past page 0 (20001 "PageToken is required for paging."), and a token is ``PA``
or ``PB`` and the SID the page follows or precedes (else 21481). Every list answers the same
envelope, with its filters echoed in the page URIs (twilio-more.md §9, emulators-infra.md §3.4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

from .errors import ApiError
from .model import whole_number
from .resource import generic

T = TypeVar("T")
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class Paging:
    """A checked page request: the page after ``after`` or before ``before`` (SIDs)."""

    size: int
    page: int
    token: str | None = None
    after: str | None = None
    before: str | None = None


def parse_paging(query: Mapping[str, str]) -> Paging:
    """``PageSize``, ``Page`` and ``PageToken``, with Twilio's codes for each mistake."""
    size = DEFAULT_PAGE_SIZE
    raw_size = query.get("PageSize")
    if raw_size is not None:
        parsed = whole_number(raw_size)
        if parsed is None or parsed < 1:
            raise generic("PageSize", raw_size, f"a whole number from 1 to {MAX_PAGE_SIZE}")
        if parsed > MAX_PAGE_SIZE:
            raise ApiError(
                20007, f"Page size too large: the maximum page size is {MAX_PAGE_SIZE}", 400
            )
        size = parsed
    page = 0
    raw_page = query.get("Page")
    if raw_page is not None:
        parsed = whole_number(raw_page)
        if parsed is None:
            raise generic("Page", raw_page, "a whole number")
        page = parsed
    token = query.get("PageToken")
    if token is None:
        if page > 0:
            raise ApiError(20001, "PageToken is required for paging.", 400)
        return Paging(size, page)
    if len(token) != 36 or token[:2] not in {"PA", "PB"}:
        raise ApiError(21481, "Invalid PageToken", 400)
    if token.startswith("PA"):
        return Paging(size, page, token, after=token[2:])
    return Paging(size, page, token, before=token[2:])


def window(items: Sequence[T], sid: Callable[[T], str], paging: Paging) -> tuple[list[T], bool]:
    """One page of ``items`` (already in list order), and whether more follow that way."""
    anchor = paging.after or paging.before
    if anchor is None:
        return list(items[: paging.size]), len(items) > paging.size
    index = next((i for i, item in enumerate(items) if sid(item) == anchor), None)
    if index is None:
        raise ApiError(21481, "Invalid PageToken", 400)
    if paging.after is not None:
        start = index + 1
        return list(items[start : start + paging.size]), len(items) > start + paging.size
    start = max(index - paging.size, 0)
    return list(items[start:index]), start > 0


def envelope(
    key: str,
    records: list[dict[str, Any]],
    paging: Paging,
    *,
    base: str,
    echo: Sequence[tuple[str, str]],
    more: bool,
) -> dict[str, Any]:
    """The 2010 list body: ``records`` under ``key`` and the page URIs (each record a ``sid``)."""
    size, page = paging.size, paging.page
    uri, next_uri, previous_uri = _uris(records, paging, base, echo, more)
    return {
        "end": page * size + max(len(records) - 1, 0),
        "first_page_uri": _uris([], Paging(size, 0), base, echo, False)[0],
        key: records,
        "next_page_uri": next_uri,
        "page": page,
        "page_size": size,
        "previous_page_uri": previous_uri,
        "start": page * size,
        "uri": uri,
    }


def meta_envelope(
    key: str,
    records: list[dict[str, Any]],
    paging: Paging,
    *,
    url: str,
    more: bool,
    echo: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The v1 list body (Messaging, Content, Events): ``meta`` with absolute page URLs."""
    this, next_url, previous_url = _uris(records, paging, url, echo, more)
    meta = {
        "first_page_url": _uris([], Paging(paging.size, 0), url, echo, False)[0],
        "key": key,
        "next_page_url": next_url,
        "page": paging.page,
        "page_size": paging.size,
        "previous_page_url": previous_url,
        "url": this,
    }
    return {key: records, "meta": meta}


def _uris(
    records: list[dict[str, Any]],
    paging: Paging,
    base: str,
    echo: Sequence[tuple[str, str]],
    more: bool,
) -> tuple[str, str | None, str | None]:
    """This page's URI, and the next and previous pages' (None where there is none)."""

    def uri(number: int, token: str | None = None) -> str:
        params = [*echo, ("PageSize", str(paging.size)), ("Page", str(number))]
        if token:
            params.append(("PageToken", token))
        return f"{base}?{urlencode(params)}"

    has_next = bool(records) and (more or paging.before is not None)
    has_previous = paging.page > 0 and bool(records)
    return (
        uri(paging.page, paging.token),
        uri(paging.page + 1, f"PA{records[-1]['sid']}") if has_next else None,
        uri(paging.page - 1, f"PB{records[0]['sid']}") if has_previous else None,
    )
