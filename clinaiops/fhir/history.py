"""``_history`` (instance and type) and ``vread`` of past versions, for the resources that
change: ``Patient`` and ``MedicationRequest``.

Versions are **derived**, not copied into a table of snapshots, from what the records and the
journal already hold — so no write path (a queryset ``.update()`` included) can change a
resource without its history following, and the ingestion/evaluation hot path pays nothing:

- a proposal (``rec-<id>``) has at most two contents: as created (the tier's initial status,
  ``clinicians.evaluation.TIER_STATUS``, nothing decided; ``created_at``) and as decided or
  superseded (the row as it is; ``decided_at``). The decision fields are written once, under the
  row lock, and never again (``clinicians.decisions``, ``evaluation.supersede``);
- an order (``rx-<id>``) has at most two: active (``started_at``) and stopped (``ended_at``);
- a Patient's versions are the record as it is, then as it was before each journalled change of
  it, newest first: every change of the record is journalled with its old values
  (``audit.services.record_event``, object ``patient``), so undoing them one by one gives each
  earlier content. The identifiers entered at enrolment are part of the first version.

Each version is rendered by the same function as a read (``medications``, ``patients``), so its
``meta.versionId`` — a digest of the content (``resources.version_of``) — is the ETag a read of
it gave when it was current. Two consecutive states with the same content are one version (the
later ``lastUpdated`` is kept, as a read shows it). A content that comes back (an identifier
removed and set again) has the same versionId as before: version ids here name contents.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import F, Field, Value
from django.utils import timezone

from audit.models import Action, AuditEvent
from clinaiops.fhir import medications, paging
from clinaiops.fhir import patients as fhir_patients
from clinaiops.fhir.http import FhirError, Issue, not_found
from clinaiops.fhir.resources import instant
from clinaiops.fhir.search import (
    SearchParam,
    SearchRequest,
    SearchSpec,
    base_url,
    date_range,
    encode_cursor,
    is_strict,
    parse_query,
)
from clinaiops.fhir.subsetting import subset
from clinicians.evaluation import TIER_STATUS
from clinicians.models import Recommendation
from clinicians.selectors import recommendations_visible_to
from core.ids import parse_id
from patients.identifiers import AT_ENROLMENT, Identifier
from patients.models import Patient, Prescription
from patients.selectors import patients_visible_to, prescriptions_visible_to

TYPES = ("Patient", "MedicationRequest")
SINCE = SearchParam(
    "_since",
    "date",
    "Only versions created at or after this instant (e.g. 2026-12-01T08:00:00Z). Poll with "
    "_since=<the previous answer's Bundle.meta.lastUpdated>.",
)
# Journal actions that never change a patient's record (reads and refusals are the bulk).
_NOT_CHANGES = (Action.CREATE, Action.READ, Action.REFUSED)
_PATIENT_CHUNK = 200


@dataclass(frozen=True)
class Version:
    """One version of one resource: its content (with ``meta``), when it became current,
    whether it was the creation, and its place in the history order."""

    resource: dict[str, Any]
    last_updated: datetime
    created: bool  # the first version (POST), else an update (PUT)
    rank: int  # ties at one instant: the order between versions
    row_id: int  # the record's id (ties between resources)
    patient_id: int

    @property
    def version_id(self) -> str:
        return str(self.resource["meta"]["versionId"])

    @property
    def key(self) -> tuple[datetime, int, int]:
        return (self.last_updated, self.rank, self.row_id)


# --- MedicationRequest -------------------------------------------------------------------------


def _proposal_as_created(rec: Recommendation) -> Recommendation:
    before = copy.copy(rec)
    before.status = TIER_STATUS.get(rec.tier, rec.status)
    before.decided_at = None
    before.decided_by = None
    before.decided_by_id = None
    before.decision_reason = ""
    before.patient_note = ""
    before.overrode_block = False
    before.final_dose_mg = None
    return before


def _order_as_started(prescription: Prescription) -> Prescription:
    before = copy.copy(prescription)
    before.ended_at = None
    return before


# Ranks of the version sources in the type history (ties at one instant).
_REC_DECIDED, _REC_CREATED, _RX_ENDED, _RX_STARTED = 3, 2, 1, 0


def proposal_versions(rec: Recommendation) -> list[Version]:
    current = Version(
        medications.proposal_to_fhir(rec),
        rec.decided_at or rec.created_at,
        rec.decided_at is None,
        _REC_DECIDED if rec.decided_at else _REC_CREATED,
        rec.pk,
        rec.patient_id,
    )
    if rec.decided_at is None:
        return [current]
    first = Version(
        medications.proposal_to_fhir(_proposal_as_created(rec)),
        rec.created_at,
        True,
        _REC_CREATED,
        rec.pk,
        rec.patient_id,
    )
    return _distinct([current, first])


def order_versions(prescription: Prescription) -> list[Version]:
    current = Version(
        medications.order_to_fhir(prescription),
        prescription.ended_at or prescription.started_at,
        prescription.ended_at is None,
        _RX_ENDED if prescription.ended_at else _RX_STARTED,
        prescription.pk,
        prescription.patient_id,
    )
    if prescription.ended_at is None:
        return [current]
    first = Version(
        medications.order_to_fhir(_order_as_started(prescription)),
        prescription.started_at,
        True,
        _RX_STARTED,
        prescription.pk,
        prescription.patient_id,
    )
    return _distinct([current, first])


def _medication_row(user, resource_id: str) -> Recommendation | Prescription | None:
    kind, _, number_text = resource_id.partition("-")
    number = parse_id(number_text)
    if number is None:
        return None
    if kind == "rec":
        return recommendations_visible_to(user).filter(pk=number).first()
    if kind == "rx":
        return prescriptions_visible_to(user).filter(pk=number).first()
    return None


# --- Patient -----------------------------------------------------------------------------------


def _patient_changes(events: Iterable[AuditEvent]) -> dict[int, list[AuditEvent]]:
    """The journalled changes of each patient's record, newest first (not those made at
    enrolment: they are part of the record as created)."""
    by_patient: dict[int, list[AuditEvent]] = {}
    for event in events:
        if not event.changes or event.detail.get("at") == AT_ENROLMENT:
            continue
        by_patient.setdefault(int(event.object_id), []).append(event)
    return by_patient


def _change_events(patient_ids: list[int]):
    return (
        AuditEvent.objects.filter(
            patient_id__in=patient_ids,
            object_type="patient",
            object_id__in=[str(pk) for pk in patient_ids],
        )
        .exclude(action__in=_NOT_CHANGES)
        .order_by("-sequence")
    )


_PATIENT_FIELDS: dict[str, Field] = {
    field.name: field
    for field in Patient._meta.get_fields()
    if isinstance(field, Field) and field.concrete and not field.is_relation
}


def patient_versions(patient: Patient, changes: list[AuditEvent] | None = None) -> list[Version]:
    """The patient's versions, newest first: the record as it is, then as it was before each
    journalled change (``changes``: newest first), each rendered as a read renders it."""
    if changes is None:
        changes = _patient_changes(_change_events([patient.pk])).get(patient.pk, [])
    state = copy.copy(patient)
    identifiers = [Identifier(row.system, row.value) for row in patient.identifiers.all()]
    versions: list[Version] = []
    for index in range(len(changes) + 1):
        if index == 0:
            when = patient.updated_at
        else:  # undo the change that made the newer state; this one began with the one before
            undone = changes[index - 1].changes
            for name, change in undone.items():
                if name == "identifiers":
                    identifiers = [
                        Identifier(item["system"], item["value"]) for item in change["old"] or []
                    ]
                elif name in _PATIENT_FIELDS:
                    setattr(state, name, _PATIENT_FIELDS[name].to_python(change["old"]))
            if "updated_at" in undone and state.updated_at is not None:
                when = state.updated_at  # the record's own time, as a read of it showed
            elif index < len(changes):
                when = changes[index].occurred_at
            else:
                when = patient.created_at
        state.updated_at = when
        versions.append(
            Version(
                fhir_patients.to_fhir(state, identifiers),
                when,
                index == len(changes),
                len(changes) - index,
                patient.pk,
                patient.pk,
            )
        )
    return _distinct(versions)


def _distinct(newest_first: list[Version]) -> list[Version]:
    """Consecutive versions with the same content are one: the newer is kept (as a read of it
    shows it); the oldest of a run keeps ``created`` if it had it."""
    kept: list[Version] = []
    for version in newest_first:
        if kept and kept[-1].version_id == version.version_id:
            if version.created:
                kept[-1] = Version(
                    kept[-1].resource,
                    kept[-1].last_updated,
                    True,
                    kept[-1].rank,
                    kept[-1].row_id,
                    kept[-1].patient_id,
                )
            continue
        kept.append(version)
    return kept


# --- reading versions --------------------------------------------------------------------------


def instance_versions(user, resource_type: str, resource_id: str) -> list[Version]:
    """Every version of one resource the caller may read (404 as a read answers), newest
    first."""
    if resource_type == "Patient":
        number = parse_id(resource_id)
        patient = (
            patients_visible_to(user).prefetch_related("identifiers").filter(pk=number).first()
            if number is not None
            else None
        )
        if patient is None:
            raise not_found(resource_type, resource_id)
        return patient_versions(patient)
    row = _medication_row(user, resource_id)
    if row is None:
        raise not_found(resource_type, resource_id)
    if isinstance(row, Recommendation):
        return proposal_versions(row)
    return order_versions(row)


def version(user, resource_type: str, resource_id: str, version_id: str) -> Version:
    """``vread``: the version of that id (the newest, if a content came back)."""
    for candidate in instance_versions(user, resource_type, resource_id):
        if candidate.version_id == version_id:
            return candidate
    raise FhirError.one(
        404,
        f"{resource_type}/{resource_id} has no version {version_id} "
        f"(its versions: {resource_type}/{resource_id}/_history)",
        code="not-found",
    )


# --- the history interactions ------------------------------------------------------------------


def history_spec(resource_type: str) -> SearchSpec:
    """The parameters of a history (``_since``, ``_count``; the cursor of its ``next``
    link); the cursor names the history, so it is refused by a search and vice versa."""
    return SearchSpec(f"{resource_type}/_history", (SINCE,), (), "-_lastUpdated")


def parse_history(request, resource_type: str) -> tuple[SearchRequest, datetime | None]:
    pairs = [(key, request.query_params.getlist(key)) for key in request.query_params]
    search = parse_query(
        pairs,
        history_spec(resource_type),
        strict=is_strict(request.headers.get("Prefer", "")),
    )
    since = None
    occurrences = search.all(SINCE.name)
    if occurrences:
        raw = occurrences[-1][0]
        prefix, since, _ = date_range(SINCE.name, raw)
        if prefix != "eq" or len(occurrences[-1]) > 1:
            raise FhirError(
                400, [Issue("_since is one instant, without a prefix", "invalid", "http._since")]
            )
        if search.cursor is None:  # a poll: as of the settling time ago (search._start)
            search.as_of = timezone.now() - timedelta(seconds=settings.FHIR_SYNC_SETTLE_SECONDS)
    return search, since


def _in_window(version: Version, search: SearchRequest, since: datetime | None) -> bool:
    return (
        version.last_updated <= search.as_of
        and (since is None or version.last_updated >= since)
        and (search.after is None or version.key < search.after)
    )


@dataclass(frozen=True)
class HistoryPage:
    versions: list[Version]
    next_key: tuple[datetime, int, int] | None
    total: int | None  # instance history only (a type's would read every version)


def _page_of(candidates: list[Version], search: SearchRequest) -> HistoryPage:
    ordered = sorted(candidates, key=lambda v: v.key, reverse=True)
    if search.count == 0 or search.summary_count:
        return HistoryPage([], None, None)
    shown = ordered[: search.count]
    more = len(ordered) > search.count
    return HistoryPage(shown, shown[-1].key if more and shown else None, None)


def instance_history(
    user, resource_type: str, resource_id: str, search: SearchRequest, since: datetime | None
) -> HistoryPage:
    versions = [
        v
        for v in instance_versions(user, resource_type, resource_id)
        if v.last_updated <= search.as_of and (since is None or v.last_updated >= since)
    ]
    page = _page_of([v for v in versions if _in_window(v, search, since)], search)
    return HistoryPage(page.versions, page.next_key, len(versions))


def _patient_type_history(user, search: SearchRequest, since: datetime | None) -> HistoryPage:
    """Patients in order of their last change, newest first: a patient's versions are never
    newer than its ``updated_at``, so reading stops once no remaining patient can hold a
    version for this page."""
    wanted = search.count + 1
    patients = patients_visible_to(user).prefetch_related("identifiers")
    if since is not None:
        patients = patients.filter(updated_at__gte=since)
    patients = patients.order_by("-updated_at", "-pk")
    found: list[Version] = []
    offset = 0
    while True:
        chunk = list(patients[offset : offset + _PATIENT_CHUNK])
        if not chunk:
            break
        offset += len(chunk)
        changes = _patient_changes(_change_events([p.pk for p in chunk]))
        for patient in chunk:
            if len(found) >= wanted:
                found.sort(key=lambda v: v.key, reverse=True)
                del found[wanted:]
                if patient.updated_at < found[-1].last_updated:
                    return _page_of(found, search)
            found.extend(
                v
                for v in patient_versions(patient, changes.get(patient.pk, []))
                if _in_window(v, search, since)
            )
        if len(chunk) < _PATIENT_CHUNK:
            break
    return _page_of(found, search)


def _medication_type_history(user, search: SearchRequest, since: datetime | None) -> HistoryPage:
    """Four sources of versions — proposals as created and as decided, orders as started and
    as stopped — paged together by the keyset pager (``paging.run``)."""
    recs = recommendations_visible_to(user)
    orders = prescriptions_visible_to(user)
    sources = [
        (recs, "created_at", _REC_CREATED, {}),
        (recs, "decided_at", _REC_DECIDED, {"decided_at__isnull": False}),
        (orders, "started_at", _RX_STARTED, {}),
        (orders, "ended_at", _RX_ENDED, {"ended_at__isnull": False}),
    ]
    annotated = []
    for rows, moment, rank, condition in sources:
        rows = rows.filter(**condition).annotate(
            fhir_last_updated=F(moment), fhir_sort=F(moment), fhir_version_rank=Value(rank)
        )
        if since is not None:
            rows = rows.filter(fhir_last_updated__gte=since)
        annotated.append(paging.Source(rank, rows))
    found = paging.run(search, annotated)
    versions: list[Version] = []
    for row in found.rows:
        if isinstance(row, Recommendation):
            candidates = proposal_versions(row)
        else:
            candidates = order_versions(row)
        versions.extend(v for v in candidates if v.rank == row.fhir_version_rank)
    return HistoryPage(versions, found.next_key, None)


def type_history(
    user, resource_type: str, search: SearchRequest, since: datetime | None
) -> HistoryPage:
    if resource_type == "Patient":
        return _patient_type_history(user, search, since)
    return _medication_type_history(user, search, since)


def history_bundle(
    request,
    resource_type: str,
    resource_id: str | None,
    search: SearchRequest,
    page: HistoryPage,
) -> dict[str, Any]:
    """A ``history`` Bundle: newest first, each entry with ``request`` (POST for the creation,
    PUT for a change) and ``response`` (status, ETag, lastModified); ``self``/``first``/``next``
    links as a search's (the cursor in ``next``); ``meta.lastUpdated`` the moment it is a
    snapshot of (the next poll's ``_since``)."""
    base = base_url(request)
    path = f"{base}/{resource_type}" + (f"/{resource_id}" if resource_id else "") + "/_history"

    def link(relation: str, *extra: tuple[str, str]) -> dict[str, str]:
        query = [*search.applied, ("_count", str(search.count)), *extra]
        return {"relation": relation, "url": f"{path}?{urlencode(query)}"}

    links = [link("self", *([("_cursor", search.cursor)] if search.cursor else [])), link("first")]
    if page.next_key is not None:
        spec = history_spec(resource_type)
        links.append(link("next", ("_cursor", encode_cursor(search, spec, page.next_key))))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"lastUpdated": instant(search.as_of)},
        "type": "history",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    entries = []
    for item in page.versions:
        resource = item.resource
        entries.append(
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": subset(resource, search.summary, search.elements),
                "request": {
                    "method": "POST" if item.created else "PUT",
                    "url": resource["resourceType"]
                    if item.created
                    else f"{resource['resourceType']}/{resource['id']}",
                },
                "response": {
                    "status": "201 Created" if item.created else "200 OK",
                    "etag": f'W/"{item.version_id}"',
                    "lastModified": resource["meta"]["lastUpdated"],
                },
            }
        )
    if entries:
        bundle["entry"] = entries
    return bundle
