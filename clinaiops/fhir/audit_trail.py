"""``AuditEvent``, read from the one journal (``audit``), and the journal write of every FHIR
interaction; ``Provenance`` (``provenance``) is derived from the same journal and shares the
helpers here.

**Journalling.** Every interaction the facade answers — read, vread, search, history, a
patient's own and an empty one included — is one ``read`` event, decided and written by the
controller (``core.authz.authorize_read`` with ``record_interaction``), in the request's
transaction: IHE BALP audits each RESTful interaction. ``interaction_detail`` says what was
asked: the channel, the restful-interaction code, the resource type, the id (and version) read
or the query as sent and as applied, the number of matches, the OAuth client and the base URL.
Creates are journalled by the domain (a batch or order event); refusals by the exception
handler (``http``).

**AuditEvent** renders journal entries with ``audit.fhir.to_fhir`` (the rendering of exports,
BALP-shaped), for auditors only — the rule ``audit.view_trail`` that guards the audit API;
everyone else gets 403. Results come in journal order (sequence ascending), so paging is stable
while new events are appended (an auditor's own searches are journalled, too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from django.db.models import F, Q

from audit.fhir import BALP_PROFILES, CRUD_ACTIONS, INTERACTION_LETTERS
from audit.fhir import to_fhir as audit_event_to_fhir
from audit.models import Action, AuditEvent
from audit.selectors import events_concerning
from audit.services import record_event
from clinaiops.fhir import paging
from clinaiops.fhir.http import FhirError, Issue, bounded_query, not_found
from clinaiops.fhir.resources import (
    ResourceHandler,
    SearchResult,
    with_meta,
)
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    base_url,
    date_q,
    reference_id,
    token,
)
from core import authz
from core.ids import parse_id

ACTION_SYSTEM = "urn:clinaiops:audit-action"  # as in audit/fhir.py
RESTFUL_SYSTEM = "http://hl7.org/fhir/restful-interaction"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ACTIVITY_SYSTEM = "urn:clinaiops:recommendation-activity"


# --- journalling every interaction -----------------------------------------------------------


def interaction_detail(
    request,
    resource_type: str,
    interaction: str,
    *,
    search: SearchRequest | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """What a FHIR interaction asked, for its journal event (BALP's entities): the id and
    version read (from the route), the query as sent — every interaction that has one, a
    search's above all — and, for a search, as applied (the ``self`` link's parameters) and
    the number of matches; the OAuth client of a SMART or back-end token; the base URL."""
    detail: dict[str, Any] = {
        "channel": "fhir",
        "interaction": interaction,
        "resource": resource_type,
        "base": base_url(request),
    }
    route = (getattr(request, "parser_context", None) or {}).get("kwargs") or {}
    if route.get("resource_id"):
        detail["id"] = str(route["resource_id"])
    if route.get("version_id"):
        detail["version"] = str(route["version_id"])
    raw_query = request.META.get("QUERY_STRING", "")
    if raw_query or search is not None:
        detail["query"], truncated = bounded_query(raw_query)
        if truncated:
            detail["query_truncated"] = True
    if search is not None:
        detail["applied"] = bounded_query(urlencode(search.applied, safe="/|:,"))[0]
    if total is not None:
        detail["total"] = total
    application = getattr(getattr(request, "auth", None), "application", None)
    client_id = getattr(application, "client_id", None)
    if client_id:
        detail["client"] = str(client_id)
    return detail


def record_interaction(
    *, actor, object_type: str, patient_ids: Iterable[int], detail: dict[str, Any] | None
) -> AuditEvent:
    """The journal write ``core.authz.authorize_read`` calls for a FHIR answer: one ``read``
    event, whoever reads (a patient's own reads too) and whatever was shown (an empty search
    too), in the caller's transaction."""
    return record_event(
        action=Action.READ,
        actor=actor,
        object_type=object_type,
        patient_ids=patient_ids,
        detail=detail,
    )


# --- shared with Provenance ------------------------------------------------------------------


def _require_auditor(user) -> None:
    """The ``audit.view_trail`` rule (auditors; never a superuser as such: the people who run
    the system do not audit it)."""
    authz.authorize(user, "audit.view_trail")


def _mentions(raw: str) -> Q:
    patient_id = parse_id(reference_id("patient", raw, "Patient"))
    if patient_id is None:
        return Q(pk__in=[])
    return Q(sequence__in=events_concerning(patient_id=patient_id).values("sequence"))


def sequence_of(resource_id: str, prefix: str) -> int | None:
    number_text = resource_id.removeprefix(prefix)
    return int(number_text) if resource_id.startswith(prefix) and number_text.isdigit() else None


def journal_order(events):
    """Journal entries in journal order (their sequence), updated when recorded."""
    return events.annotate(fhir_last_updated=F("occurred_at"), fhir_sort=F("sequence"))


# --- AuditEvent -------------------------------------------------------------------------------


def _actor_references(events: Iterable[AuditEvent]) -> dict[int, str]:
    """``Patient/<id>`` of the patients among the events' actors (one query per page); a
    clinician's ``Practitioner/<user id>`` needs no look-up (``audit.fhir``)."""
    from patients.models import Patient

    users = {event.actor_id for event in events if event.actor_role == "patient"}
    users.discard(None)
    if not users:
        return {}
    rows = Patient.objects.filter(user_id__in=users).values_list("user_id", "pk")
    return {user_id: f"Patient/{patient_id}" for user_id, patient_id in rows}


def audit_event(event: AuditEvent, references: dict[int, str] | None = None) -> dict[str, Any]:
    rendered = audit_event_to_fhir(event.payload, event.hash, references)
    profiles = tuple((rendered.pop("meta", None) or {}).get("profile", ()))
    return with_meta(rendered, event.occurred_at, profiles)


def read_audit_event(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    _require_auditor(user)
    sequence = sequence_of(resource_id, "audit-")
    event = AuditEvent.objects.filter(sequence=sequence).first() if sequence else None
    if event is None:
        raise not_found("AuditEvent", resource_id)
    return audit_event(event, _actor_references([event])), list(event.patient_ids)


# The canonical entry text has sorted keys and no whitespace, and a quote inside a string value
# is escaped: ``"channel":"fhir"`` occurs in an entry exactly when its detail says so.
_FHIR = Q(entry__contains='"channel":"fhir"')


def _interaction_q(code: str) -> Q:
    """Entries whose restful-interaction code (``audit.fhir.rest_interaction``) is ``code``."""
    found = _FHIR & Q(entry__contains=f'"interaction":"{code}"') & ~Q(action=Action.REFUSED)
    found |= Q(action=Action.REFUSED) & (
        Q(entry__contains=f'"attempted":"fhir {code} ')
        | Q(entry__contains=f'"attempted":"fhir {code}"')
    )
    if code in CRUD_ACTIONS:
        found |= Q(action=code) & ~_FHIR
    return found


def _action_q(raw: str) -> Q:
    """The action letter as ``audit.fhir.action_letter`` renders it."""
    _, letter = token(raw)
    letter = (letter or "").upper()
    found = Q(pk__in=[])
    for code, code_letter in INTERACTION_LETTERS.items():
        if code_letter == letter:
            found |= _FHIR & _interaction_q(code)
    crud = [action for action, action_letter in CRUD_ACTIONS.items() if action_letter == letter]
    found |= Q(action__in=crud) & ~_FHIR
    if letter == "E":  # everything that is neither a CRUD verb nor a FHIR interaction
        fhir_interaction = Q(pk__in=[])
        for code in INTERACTION_LETTERS:
            fhir_interaction |= _FHIR & _interaction_q(code)
        found |= ~Q(action__in=list(CRUD_ACTIONS)) & ~fhir_interaction
    return found


def _subtype_q(raw: str) -> Q:
    """The journal's action (``urn:clinaiops:audit-action|decision``) or the
    restful-interaction code (``http://hl7.org/fhir/restful-interaction|search-type``); a code
    without a system matches either."""
    system, code = token(raw)
    if not code:
        return Q(pk__in=[])
    found = Q(pk__in=[])
    if system in (None, ACTION_SYSTEM):
        found |= Q(action=code)
    if system in (None, RESTFUL_SYSTEM) and code in INTERACTION_LETTERS:
        found |= _interaction_q(code)
    return found


_OUTCOMES = {"0": ["success"], "4": ["partial", "failure", "denied"]}


def _outcome_q(raw: str) -> Q:
    """0 success; 4 refused, partly accepted or failed (what the journal holds); 8 and 12
    (server faults) are never journalled as such and match nothing."""
    _, code = token(raw)
    return Q(outcome__in=_OUTCOMES.get(code or "", []))


def _agent_q(raw: str) -> Q:
    """``Practitioner/<user id>``, ``Patient/<id>`` (that patient's account) or a user id as
    the journal's agents identify them (``urn:clinaiops:user|<id>`` via ``agent``)."""
    value = raw.strip().rstrip("/")
    kind, _, ident = value.rpartition("/")
    kind = kind.rpartition("/")[2]
    if kind == "Patient":
        from patients.models import Patient

        patient_id = parse_id(ident)
        if patient_id is None:
            return Q(pk__in=[])
        return Q(actor_id__in=Patient.objects.filter(pk=patient_id).values("user_id"))
    if kind in ("Practitioner", ""):
        user_id = parse_id(ident.partition("|")[2] if "|" in ident else ident)
        return Q(actor_id=user_id) if user_id is not None else Q(pk__in=[])
    raise FhirError(
        400,
        [
            Issue(
                f"agent must reference a Practitioner or a Patient, not {raw[:80]!r}",
                "invalid",
                "http.agent",
            )
        ],
    )


def _entity_q(raw: str) -> Q:
    """``Patient/<id>`` (as ``patient``) or ``<Type>/<id>`` of a resource read through the
    facade (its journal detail names it)."""
    value = raw.strip().rstrip("/")
    parts = value.split("/")
    if len(parts) < 2 or not parts[-1]:
        raise FhirError(
            400, [Issue(f"entity is <Type>/<id>, not {raw[:80]!r}", "invalid", "http.entity")]
        )
    kind, ident = parts[-2], parts[-1]
    if kind == "Patient":
        return _mentions(f"Patient/{ident}")
    if not (kind.isalpha() and ident.replace("-", "").replace(".", "").isalnum()):
        return Q(pk__in=[])
    return _FHIR & Q(entry__contains=f'"resource":"{kind}"') & Q(entry__contains=f'"id":"{ident}"')


_TYPE_CODES = ("rest", "110100", "110106", "110107", "110110", "110113", "110114")


def _type_q(raw: str) -> Q:
    """The event type as ``audit.fhir.event_type_code`` renders it (``rest`` or a DICOM
    code)."""
    _, code = token(raw)
    if code not in _TYPE_CODES:
        return Q(pk__in=[])
    no_patient = Q(patient_ids=[])
    rest = Q(pk__in=[])
    for interaction in INTERACTION_LETTERS:
        rest |= _FHIR & _interaction_q(interaction)
    rest |= Q(action__in=list(CRUD_ACTIONS)) & ~_FHIR & no_patient
    if code == "rest":
        return rest
    by_action = {
        "110114": Q(action__in=["login", "logout", "login_failed"]),
        "110106": Q(action__startswith="export"),
        "110107": Q(action="import"),
        "110113": Q(
            action__in=[
                "refused",
                "emergency_access",
                "invite",
                "activation_issued",
                "phone_activated",
                "phone_revoked",
                "link_redeemed",
                "second_factor_reset",
                "deactivate",
            ]
        ),
    }
    if code in by_action:
        return by_action[code] & ~rest
    named = Q(pk__in=[])
    for condition in by_action.values():
        named |= condition
    others = ~rest & ~named
    return others & ~no_patient if code == "110110" else others & no_patient


AUDIT_EVENT_PARAMS = (
    SearchParam("_id", "token", "audit-<sequence>."),
    LAST_UPDATED,
    SearchParam("patient", "reference", "Events concerning the patient (Patient/<id> or <id>)."),
    SearchParam("date", "date", "recorded, with prefixes eq, ne, gt, lt, ge, le."),
    SearchParam(
        "subtype",
        "token",
        f"The restful interaction ({RESTFUL_SYSTEM}|search-type, read, vread, create, …) or "
        f"the journal action ({ACTION_SYSTEM}|decision, login, …); a bare code matches either.",
    ),
    SearchParam("action", "token", "C, R, U, D or E (a search is E), as rendered."),
    SearchParam("type", "token", "rest, or the DICOM event type (110110, 110114, …)."),
    SearchParam("outcome", "token", "0 (success) or 4 (refused, partly accepted, failed)."),
    SearchParam(
        "agent", "reference", "Who acted: Practitioner/<user id>, Patient/<id>, or a user id."
    ),
    SearchParam(
        "entity",
        "reference",
        "What was touched: Patient/<id>, or <Type>/<id> read through this facade.",
    ),
)


def search_audit_events(user, request: SearchRequest) -> SearchResult:
    _require_auditor(user)
    events = AuditEvent.objects.all()
    events = all_of(
        request,
        "_id",
        lambda v: Q(sequence=s) if (s := sequence_of(v, "audit-")) else Q(pk__in=[]),
        events,
    )
    events = all_of(request, "patient", _mentions, events)
    events = all_of(request, "date", lambda v: date_q("date", v, "occurred_at"), events)
    events = all_of(request, "subtype", _subtype_q, events)
    events = all_of(request, "action", _action_q, events)
    events = all_of(request, "type", _type_q, events)
    events = all_of(request, "outcome", _outcome_q, events)
    events = all_of(request, "agent", _agent_q, events)
    events = all_of(request, "entity", _entity_q, events)
    found = paging.run(request, [paging.Source(0, journal_order(events))])
    references = _actor_references(found.rows)
    return SearchResult(
        total=found.total,
        resources=[audit_event(event, references) for event in found.rows],
        patient_ids=sorted({pid for event in found.rows for pid in event.patient_ids}),
        next_key=found.next_key,
    )


AUDIT_EVENT = ResourceHandler(
    type="AuditEvent",
    documentation="The audit journal (auditors only; 403 for every other role), in journal "
    "order, rendered after the IHE Basic Audit Log Patterns (restful-interaction and DICOM "
    "codes, typed agents, the query of a search, the chain position and hashes as details).",
    read_action="audit.view_trail",
    search_params=AUDIT_EVENT_PARAMS,
    read=read_audit_event,
    search=search_audit_events,
    access_action="audit.view_trail",
    profiles=BALP_PROFILES,
)
