"""Search: parameters (token, reference, date with prefixes, string), the result parameters
(``_count``, ``_sort``, ``_summary``, ``_elements``, ``_include``, ``_revinclude``) and the
paging cursor (FHIR R4 search.html). ``paging`` runs the search and builds the Bundle.

Unknown parameters, modifiers, ``_sort`` keys and includes are ignored by default and left
out of the ``self`` link, which lists exactly what was applied (search.html#errors: lenient);
with ``Prefer: handling=strict`` they are refused with 400 naming the parameter. A bad value
of a known parameter is 400 either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from django.conf import settings
from django.core import signing
from django.db.models import Q
from django.utils import timezone

from clinaiops.fhir.http import FhirError, Issue
from core.ids import parse_id
from core.moments import OUT_OF_RANGE_MESSAGE, in_utc
from core.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters

DEFAULT_COUNT = 50
MAX_COUNT = 500
# Deepest ``_offset`` served: an offset is counted by reading every row before it. The ``next``
# links never carry one (they carry a ``_cursor``); ``_offset`` stays for clients that
# computed it before the links did.
MAX_OFFSET = 10_000
# Result parameters accepted by every search and without effect here (search.html#Summary):
# _format is handled by content negotiation, _pretty and _total do not change the result.
_IGNORED = {"_format", "_pretty", "_total"}
SUMMARY_VALUES = ("true", "text", "data", "count", "false")


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # FHIR search parameter type: token, reference, date, string
    documentation: str


LAST_UPDATED = SearchParam(
    "_lastUpdated",
    "date",
    "meta.lastUpdated: when this server last changed the resource (received it, or marked it), "
    "with prefixes eq, ne, gt, lt, ge, le. Poll with _lastUpdated=gt<the previous answer's "
    "Bundle.meta.lastUpdated>.",
)


@dataclass(frozen=True)
class SearchSpec:
    """What one resource type's search accepts besides its parameters."""

    resource_type: str
    params: tuple[SearchParam, ...]
    sorts: tuple[str, ...] = ()  # _sort keys, each also accepted as -key (descending)
    default_sort: str = ""
    includes: tuple[str, ...] = ()  # _include values (MedicationRequest:medication)
    revincludes: tuple[str, ...] = ()  # _revinclude values (Provenance:target)

    @property
    def by_name(self) -> dict[str, SearchParam]:
        return {param.name: param for param in self.params}


@dataclass
class SearchRequest:
    """The parameters a search applies: ``values[name]`` is one list per occurrence of the
    parameter (AND), each a list of comma-separated alternatives (OR). ``as_of`` is the moment
    the search is a snapshot of: nothing changed after it is on any of its pages."""

    values: dict[str, list[list[str]]] = field(default_factory=dict)
    applied: list[tuple[str, str]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    summary: str | None = None
    elements: tuple[str, ...] | None = None
    sort: str = ""
    includes: tuple[str, ...] = ()
    revincludes: tuple[str, ...] = ()
    after: tuple[Any, int, int] | None = None  # the cursor's position (sort value, rank, pk)
    cursor: str | None = None
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))

    def all(self, name: str) -> list[list[str]]:
        return self.values.get(name, [])

    @property
    def summary_count(self) -> bool:
        return self.summary == "count"

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def sort_key(self) -> str:
        return self.sort.removeprefix("-")


def _bad(name: str, message: str, code: str = "invalid") -> FhirError:
    return FhirError(400, [Issue(message, code, f"http.{name}")])


def _non_negative(name: str, raw: str, maximum: int | None = None) -> int:
    # ASCII digits only ("²".isdigit() is true, int() refuses it), and no int() of thousands of
    # digits (Python refuses those too): any number that long is simply "very large".
    if not (raw.isascii() and raw.isdigit()):
        raise _bad(name, f"{name} must be a non-negative integer, not {raw[:20]!r}")
    value = int(raw) if len(raw) <= 18 else 10**18
    return min(value, maximum) if maximum is not None else value


def is_strict(prefer: str) -> bool:
    """``Prefer: handling=strict`` (search.html#errors); lenient is the default."""
    return "handling=strict" in prefer.replace(" ", "").lower()


def parse_search(request, spec: SearchSpec) -> SearchRequest:
    pairs = [(key, request.query_params.getlist(key)) for key in request.query_params]
    return parse_query(pairs, spec, strict=is_strict(request.headers.get("Prefer", "")))


def _unsupported(key: str, what: str, choices) -> FhirError:
    return _bad(
        key,
        f"The {what} is not supported here; supported: {', '.join(sorted(choices))} "
        "(without Prefer: handling=strict, unknown parameters are ignored and left out of the "
        "self link)",
        "not-supported",
    )


def parse_query(
    pairs: Iterable[tuple[str, list[str]]], spec: SearchSpec, *, strict: bool
) -> SearchRequest:
    """The search ``pairs`` ask for. An unknown parameter, modifier, ``_sort`` key or
    ``_include`` is refused with 400 under ``handling=strict`` and dropped otherwise (it is then
    not in the ``self`` link, which lists exactly what was applied); a bad *value* of a known
    parameter is 400 either way."""
    supported = spec.by_name
    search = SearchRequest(sort=spec.default_sort)
    cursor_text: str | None = None
    for key, raws in pairs:
        if key in _IGNORED or not raws:
            continue
        last = raws[-1]
        if key == "_count":
            search.count = _non_negative(key, last, MAX_COUNT)
        elif key == "_offset":
            search.offset = _non_negative(key, last)
            if search.offset > MAX_OFFSET:
                raise _bad(
                    key,
                    f"_offset is at most {MAX_OFFSET}, not {search.offset}; follow the next "
                    "links (a cursor) or narrow the search (e.g. by date) instead",
                    "too-costly",
                )
        elif key == "_cursor":
            cursor_text = last
        elif key == "_summary":
            if last not in SUMMARY_VALUES:
                raise _bad(key, f"_summary is one of {', '.join(SUMMARY_VALUES)}, not {last!r}")
            search.summary = None if last == "false" else last
            search.applied.append((key, last))
        elif key == "_elements":
            names = tuple(name.strip() for name in last.split(",") if name.strip())
            if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,63}", name) for name in names):
                raise _bad(key, "_elements is a comma-separated list of element names")
            search.elements = names or None
            if names:
                search.applied.append((key, ",".join(names)))
        elif key == "_sort":
            allowed = {s for key_name in spec.sorts for s in (key_name, f"-{key_name}")}
            chosen = [value.strip() for value in last.split(",") if value.strip()]
            if len(chosen) > 1 or (chosen and chosen[0] not in allowed):
                if strict:
                    raise _unsupported(key, f"_sort {last!r}", allowed)
                continue
            if chosen:
                search.sort = chosen[0]
                search.applied.append((key, chosen[0]))
        elif key in ("_include", "_revinclude"):
            offered = spec.includes if key == "_include" else spec.revincludes
            kept = []
            for value in raws:
                if value in offered:
                    kept.append(value)
                    search.applied.append((key, value))
                elif strict:
                    raise _unsupported(key, f"{key} {value!r}", offered or ["(none)"])
            if key == "_include":
                search.includes = tuple(dict.fromkeys(kept))
            else:
                search.revincludes = tuple(dict.fromkeys(kept))
        else:
            name, _, modifier = key.partition(":")
            if name not in supported or modifier:
                if not strict:
                    continue
                what = (
                    f"modifier :{modifier} of {name}" if name in supported else f"parameter {key}"
                )
                raise _unsupported(key, what, supported)
            for raw in raws:
                if raw == "":  # an empty parameter is ignored (search.html#errors)
                    continue
                if has_control_characters(raw):  # core.text: never sent on to a query
                    raise _bad(key, f"{key} {CONTROL_CHARACTERS_MESSAGE}")
                search.values.setdefault(name, []).append(raw.split(","))
                search.applied.append((key, raw))
    for alternatives in search.all(LAST_UPDATED.name):  # refused now, not on a later page
        for raw in alternatives:
            date_range(LAST_UPDATED.name, raw)
    _start(search, spec, cursor_text)
    return search


# --- the snapshot and the cursor ----------------------------------------------------------------

_CURSOR_SALT = "clinaiops.fhir.search-cursor"


def _start(search: SearchRequest, spec: SearchSpec, cursor_text: str | None) -> None:
    """Where the page starts and what it is a snapshot of. The first page of a search is as of
    now; a poll by ``_lastUpdated`` is as of ``FHIR_SYNC_SETTLE_SECONDS`` ago, so that a write
    still committing when it runs (its time already taken) is not behind the mark the next poll
    starts from. Later pages come with a cursor carrying both."""
    if cursor_text is None:
        settle = settings.FHIR_SYNC_SETTLE_SECONDS if search.all(LAST_UPDATED.name) else 0
        search.as_of = timezone.now() - timedelta(seconds=settle)
        return
    try:
        payload = signing.loads(cursor_text, salt=_CURSOR_SALT)
        if payload["t"] != spec.resource_type or payload["s"] != search.sort:
            raise ValueError("the cursor belongs to another search")
        kind, raw_value = payload["k"]
        value: Any = datetime.fromisoformat(raw_value) if kind == "d" else int(raw_value)
        search.after = (value, int(payload["r"]), int(payload["i"]))
        search.as_of = datetime.fromisoformat(payload["a"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise _bad(
            "_cursor",
            "_cursor is not one this server issued for this search (and _sort); follow the "
            "next link as given, or start again without it",
        ) from None
    search.cursor = cursor_text


def encode_cursor(search: SearchRequest, spec: SearchSpec, key: tuple[Any, int, int]) -> str:
    """The opaque position after ``key`` (sort value, source rank, id), signed so that it
    cannot be forged into a query the server did not plan, with the snapshot moment."""
    value, rank, pk = key
    encoded: list[Any] = (
        ["d", value.isoformat()] if isinstance(value, datetime) else ["n", int(value)]
    )
    payload = {
        "t": spec.resource_type,
        "s": search.sort,
        "k": encoded,
        "r": rank,
        "i": pk,
        "a": search.as_of.isoformat(),
    }
    return signing.dumps(payload, salt=_CURSOR_SALT, compress=True)


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


def base_url(request) -> str:
    return request.build_absolute_uri("/fhir").rstrip("/")
