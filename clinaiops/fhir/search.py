"""Search: parameters (token, reference, date with prefixes, string), paging and the
``searchset`` Bundle (FHIR R4 search.html).

Unknown parameters and modifiers are refused with 400 unless the client sends
``Prefer: handling=lenient``, in which case they are ignored and left out of the ``self`` link
(search.html#errors lets the server choose; a misspelt filter silently ignored would return
more than the client asked for). Paging is by ``_count`` and ``_offset``; the links carry both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q

from clinaiops.fhir.http import FhirError, Issue
from core.ids import parse_id
from core.moments import OUT_OF_RANGE_MESSAGE, in_utc
from core.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters

DEFAULT_COUNT = 50
MAX_COUNT = 500
# Deepest page served: offset paging reads (and, for MedicationRequest, merges) every row
# before the page, so an unbounded _offset is an unbounded query. Beyond it: 400; narrow the
# search (date, patient, …) instead.
MAX_OFFSET = 10_000
# Result parameters accepted by every search (search.html#Summary): _format is handled by
# content negotiation, _pretty and _total do not change the result here.
_IGNORED = {"_format", "_pretty", "_total"}


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # FHIR search parameter type: token, reference, date, string
    documentation: str


@dataclass
class SearchRequest:
    """The parameters a search applies: ``values[name]`` is one list per occurrence of the
    parameter (AND), each a list of comma-separated alternatives (OR)."""

    values: dict[str, list[list[str]]] = field(default_factory=dict)
    applied: list[tuple[str, str]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    summary_count: bool = False

    def all(self, name: str) -> list[list[str]]:
        return self.values.get(name, [])


def _bad(name: str, message: str, code: str = "invalid") -> FhirError:
    return FhirError(400, [Issue(message, code, f"http.{name}")])


def _non_negative(name: str, raw: str, maximum: int | None = None) -> int:
    # ASCII digits only ("²".isdigit() is true, int() refuses it), and no int() of thousands of
    # digits (Python refuses those too): any number that long is simply "very large".
    if not (raw.isascii() and raw.isdigit()):
        raise _bad(name, f"{name} must be a non-negative integer, not {raw[:20]!r}")
    value = int(raw) if len(raw) <= 18 else 10**18
    return min(value, maximum) if maximum is not None else value


def parse_search(request, supported: dict[str, SearchParam]) -> SearchRequest:
    lenient = "handling=lenient" in request.headers.get("Prefer", "").replace(" ", "").lower()
    search = SearchRequest()
    for key in request.query_params:
        raws = request.query_params.getlist(key)
        if key in _IGNORED:
            continue
        if key == "_count":
            search.count = _non_negative(key, raws[-1], MAX_COUNT)
            continue
        if key == "_offset":
            search.offset = _non_negative(key, raws[-1])
            if search.offset > MAX_OFFSET:
                raise _bad(
                    key,
                    f"_offset is at most {MAX_OFFSET}, not {search.offset}; narrow the search "
                    "(e.g. by date) to reach later results",
                    "too-costly",
                )
            continue
        if key == "_summary":
            if raws[-1] == "count":
                search.summary_count = True
                search.applied.append((key, "count"))
            elif raws[-1] != "false" and not lenient:
                raise _bad(key, "_summary supports only count and false", "not-supported")
            continue
        name, _, modifier = key.partition(":")
        if name not in supported or modifier:
            if lenient:
                continue
            what = f"modifier :{modifier} of {name}" if name in supported else f"parameter {key}"
            raise _bad(
                key,
                f"The {what} is not supported here; supported: {', '.join(sorted(supported))} "
                "(send Prefer: handling=lenient to have unknown parameters ignored)",
                "not-supported",
            )
        for raw in raws:
            if raw == "":  # an empty parameter is ignored (search.html#errors)
                continue
            if has_control_characters(raw):  # core.text: never sent on to a query
                raise _bad(key, f"{key} {CONTROL_CHARACTERS_MESSAGE}")
            search.values.setdefault(name, []).append(raw.split(","))
            search.applied.append((key, raw))
    return search


# --- parameter types ----------------------------------------------------------------------------


def token(raw: str) -> tuple[str | None, str | None]:
    """``system|code`` → (system, code); ``|code`` → ("", code) (no system); ``code`` →
    (None, code) (any system); ``system|`` → (system, None)."""
    if "|" not in raw:
        return None, raw
    system, _, code = raw.partition("|")
    return system, code or None


def reference_id(name: str, raw: str, resource_type: str) -> str:
    """The logical id in ``Patient/123``, ``123`` or ``https://host/fhir/Patient/123``."""
    value = raw.strip().rstrip("/")
    if "/" in value:
        parts = value.split("/")
        if len(parts) < 2 or parts[-2] != resource_type:
            raise _bad(name, f"{name} must reference a {resource_type}, not {raw!r}")
        value = parts[-1]
    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
        raise _bad(name, f"{raw!r} is not a {resource_type} reference")
    return value


def id_q(field: str, raw: str) -> Q:
    """``field = <id>`` for an id sent as text; text that spells no id the database holds
    (``core.ids``: "²", a 20-digit number) matches nothing — never a query the database refuses."""
    number = parse_id(raw)
    return Q(**{field: number}) if number is not None else Q(pk__in=[])


def reference_q(name: str, raw: str, resource_type: str, field: str) -> Q:
    """``field`` equal to the id of the ``resource_type`` that ``raw`` references."""
    return id_q(field, reference_id(name, raw, resource_type))


_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")
_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(name: str, raw: str) -> tuple[str, datetime, datetime]:
    """``(prefix, start, end)``: the value as the half-open range of instants its precision
    covers (``2026-03`` is all of March). Without a zone, UTC (the server's zone)."""
    value = raw.strip()
    prefix = "eq"
    if value[:2].isalpha():
        prefix, value = value[:2], value[2:]
        if prefix not in _PREFIXES:
            raise _bad(name, f"Date prefix {prefix!r} is not supported; use one of {_PREFIXES}")
    # An unencoded "+" in a query string arrives as a space.
    value = re.sub(r" (\d{2}:\d{2})$", r"+\1", value)
    match = _DATE.match(value)
    if not match:
        raise _bad(name, f"{raw!r} is not a FHIR date or dateTime (e.g. ge2026-03-01)")
    parts = match.groupdict()
    try:
        if parts["tz"] in (None, "Z"):  # no zone: UTC, the server's zone
            zone: tzinfo | None = UTC
        else:  # +99:00 is refused here
            zone = datetime.fromisoformat(f"2000-01-01T00:00:00{parts['tz']}").tzinfo
        year = int(parts["year"])
        if parts["month"] is None:
            start = datetime(year, 1, 1, tzinfo=zone)
            end = datetime(year + 1, 1, 1, tzinfo=zone)
        elif parts["day"] is None:
            month = int(parts["month"])
            start = datetime(year, month, 1, tzinfo=zone)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
        else:
            day = date(year, int(parts["month"]), int(parts["day"]))
            if parts["hour"] is None:
                start = datetime(day.year, day.month, day.day, tzinfo=zone)
                end = start + timedelta(days=1)
            else:
                start = datetime(
                    day.year,
                    day.month,
                    day.day,
                    int(parts["hour"]),
                    int(parts["minute"]),
                    int(parts["second"] or 0),
                    int(float(parts["fraction"] or 0) * 1_000_000),
                    tzinfo=zone,
                )
                if parts["fraction"]:
                    width = timedelta(microseconds=1)
                elif parts["second"] is not None:
                    width = timedelta(seconds=1)
                else:
                    width = timedelta(minutes=1)
                end = start + width
    except (ValueError, OverflowError) as error:  # 2026-02-30; the day after 9999-12-31
        raise _bad(name, f"{raw!r} is not a valid date: {error}") from None
    if in_utc(start) is None or in_utc(end) is None:  # compared in UTC (core.moments)
        raise _bad(name, f"{raw!r} {OUT_OF_RANGE_MESSAGE}")
    return prefix, start, end


def date_q(name: str, raw: str, field_name: str) -> Q:
    """The filter for an instant-valued field (search.html#prefix, for a point target)."""
    prefix, start, end = date_range(name, raw)
    inside = Q(**{f"{field_name}__gte": start, f"{field_name}__lt": end})
    return {
        "eq": inside,
        "ne": ~inside,
        "gt": Q(**{f"{field_name}__gte": end}),
        "ge": Q(**{f"{field_name}__gte": start}),
        "lt": Q(**{f"{field_name}__lt": start}),
        "le": Q(**{f"{field_name}__lt": end}),
    }[prefix]


def all_of(search: SearchRequest, name: str, one: Callable[[str], Q], queryset) -> Any:  # QuerySet
    """Apply every occurrence of ``name`` (AND), each the OR of its alternatives."""
    for alternatives in search.all(name):
        condition = Q(pk__in=[])
        for raw in alternatives:
            condition |= one(raw)
        queryset = queryset.filter(condition)
    return queryset


# --- the searchset Bundle -----------------------------------------------------------------------


def base_url(request) -> str:
    return request.build_absolute_uri("/fhir").rstrip("/")


def searchset(
    request,
    resource_type: str,
    search: SearchRequest,
    total: int,
    resources: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    base = base_url(request)

    def link(relation: str, offset: int) -> dict[str, str]:
        query = [*search.applied, ("_count", str(search.count)), ("_offset", str(offset))]
        return {"relation": relation, "url": f"{base}/{resource_type}?{urlencode(query)}"}

    links = [link("self", search.offset)]
    if not search.summary_count and search.count:
        # No link to a page beyond MAX_OFFSET: the server would refuse it.
        last_offset = max(0, (total - 1) // search.count * search.count)
        next_offset = search.offset + search.count
        links.append(link("first", 0))
        if search.offset > 0:
            links.append(link("previous", max(0, search.offset - search.count)))
        if next_offset < total and next_offset <= MAX_OFFSET:
            links.append(link("next", next_offset))
        if last_offset <= MAX_OFFSET:
            links.append(link("last", last_offset))
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def page(search: SearchRequest) -> slice | None:
    """The slice of the ordered results to render, or None when only the total is wanted."""
    if search.summary_count or search.count == 0:
        return None
    return slice(search.offset, search.offset + search.count)
