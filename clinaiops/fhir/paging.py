"""Keyset paging and the ``searchset`` Bundle.

A page is the rows *after* a position in a total order — (sort value, source, id) — not the
rows after a number of others, so rows that arrive while a client pages cannot move a row from
one page onto the next (an offset would repeat or skip it). The position travels in the
``next`` link as a signed, opaque ``_cursor`` (``search.encode_cursor``) with the moment the
search is a snapshot of: every page shows what had changed up to that moment and nothing
later, and the Bundle says that moment in ``meta.lastUpdated`` — the mark an EHR polls from
next (``_lastUpdated=gt<mark>``), so that each change is seen by exactly one poll.

A resource type may be served from several tables (Observation: readings and laboratory
results; MedicationRequest: proposals and orders). Each is a ``Source`` with a rank, annotated
with its sort value and its ``lastUpdated``; at most one page (plus one row) is read from
each and merged. The id breaks ties, so SQLite and PostgreSQL order alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet

from clinaiops.fhir.resources import instant
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchRequest,
    SearchSpec,
    all_of,
    base_url,
    date_q,
    encode_cursor,
)
from clinaiops.fhir.subsetting import subset

SORT = "fhir_sort"  # the annotation each source's rows carry: the value they are sorted by
LAST_UPDATED_FIELD = "fhir_last_updated"  # and their meta.lastUpdated


@dataclass(frozen=True)
class Source:
    rank: int  # breaks ties between sources (after the sort value, before the id)
    rows: QuerySet  # filtered, annotated with SORT and LAST_UPDATED_FIELD


@dataclass(frozen=True)
class Page:
    total: int
    rows: list[Any]
    next_key: tuple[Any, int, int] | None  # the position of the page's last row, if more follow


def _after(position: tuple[Any, int, int], rank: int, descending: bool) -> Q:
    """The rows of the source ranked ``rank`` that come after ``position`` in the order."""
    value, position_rank, pk = position
    beyond, beyond_or_equal, id_beyond = ("lt", "lte", "lt") if descending else ("gt", "gte", "gt")
    if (rank < position_rank) == descending and rank != position_rank:
        return Q(**{f"{SORT}__{beyond_or_equal}": value})
    if rank != position_rank:
        return Q(**{f"{SORT}__{beyond}": value})
    return Q(**{f"{SORT}__{beyond}": value}) | Q(**{SORT: value, f"pk__{id_beyond}": pk})


def run(search: SearchRequest, sources: Iterable[Source]) -> Page:
    """The page ``search`` asks for: ``_lastUpdated`` and the snapshot applied to every source,
    then the rows after the cursor (and ``_offset``), merged."""
    wanted = None if search.summary_count or search.count == 0 else search.offset + search.count
    total = 0
    candidates: list[tuple[tuple[Any, int, int], Any]] = []
    for source in sources:
        rows = source.rows.filter(**{f"{LAST_UPDATED_FIELD}__lte": search.as_of})
        rows = all_of(
            search,
            LAST_UPDATED.name,
            lambda raw: date_q(LAST_UPDATED.name, raw, LAST_UPDATED_FIELD),
            rows,
        )
        total += rows.count()
        if wanted is None:
            continue
        if search.after is not None:
            rows = rows.filter(_after(search.after, source.rank, search.descending))
        order = (f"-{SORT}", "-pk") if search.descending else (SORT, "pk")
        for row in rows.order_by(*order)[: wanted + 1]:
            candidates.append(((getattr(row, SORT), source.rank, row.pk), row))
    if wanted is None:
        return Page(total, [], None)
    candidates.sort(key=lambda candidate: candidate[0], reverse=search.descending)
    shown = candidates[search.offset : wanted]
    more = len(candidates) > wanted and bool(shown)
    return Page(total, [row for _, row in shown], shown[-1][0] if more else None)


def searchset(
    request,
    spec: SearchSpec,
    search: SearchRequest,
    total: int,
    resources: list[dict[str, Any]],
    next_key: tuple[Any, int, int] | None,
    included: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The Bundle: ``self`` lists exactly the parameters applied, ``first`` starts the search
    again, ``next`` carries the cursor. No ``previous``/``last``: a keyset pages forward.
    ``_summary=count`` (or ``_count=0``) has no ``entry`` at all (an empty array is not FHIR
    JSON), nor has an empty page."""
    base = f"{base_url(request)}/{spec.resource_type}"

    def link(relation: str, *extra: tuple[str, str]) -> dict[str, str]:
        query = [*search.applied, ("_count", str(search.count)), *extra]
        return {"relation": relation, "url": f"{base}?{urlencode(query)}"}

    here: list[tuple[str, str]] = []
    if search.cursor:
        here.append(("_cursor", search.cursor))
    if search.offset:
        here.append(("_offset", str(search.offset)))
    links = [link("self", *here), link("first")]
    if next_key is not None:
        links.append(link("next", ("_cursor", encode_cursor(search, spec, next_key))))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"lastUpdated": instant(search.as_of)},
        "type": "searchset",
        "total": total,
        "link": links,
    }
    entries = [
        {
            "fullUrl": f"{base_url(request)}/{resource['resourceType']}/{resource['id']}",
            "resource": subset(resource, search.summary, search.elements),
            "search": {"mode": mode},
        }
        for mode, batch in (("match", resources), ("include", included or []))
        for resource in batch
    ]
    if entries and not search.summary_count:
        bundle["entry"] = entries
    return bundle
