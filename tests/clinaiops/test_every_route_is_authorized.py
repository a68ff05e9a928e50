"""Every route and every websocket consumer reaches data only through the authorization
controller (issue 12, ``core.authz``).

The URL patterns are walked from the root resolver (``/api/v1/``, ``/fhir/``, ``/portal/``,
``/admin/`` …) and the consumers from the websocket routing; each is asked, with sample path
parameters, by every role: anonymous, the patient, another patient, a clinician of the care
team, a clinician of another team, an admin and an auditor — over the API with a bearer token
and over the portal with a session whose second factor is verified, whatever the role (as if a
patient "somehow" had a portal session). The controller's ledger records the decisions taken
while each request runs. Then:

- an answer (2xx, or a portal redirect that is not to a sign-in page) to a route outside
  ``PUBLIC`` means the controller was consulted for the caller — a person's decision, not the
  system's own;
- a 2xx ``GET`` of such a route was authorized as a read (``authorize_read``, which journals
  it), unless ``NO_PATIENT_DATA`` says why the route shows no patient's record;
- a websocket that a role may open ("ready") was allowed by the controller.

A route added without going through the controller fails here; so does a new route that is
neither sampled (``sample_values``) nor listed.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from audit.export_jobs import request_export
from audit.exports import ExportFilters
from audit.models import AuditEvent
from clinaiops.fhir.registry import HANDLERS
from clinaiops.websocket import websocket_urlpatterns
from clinicians import decisions
from clinicians.loop import goals, messages, visits
from clinicians.models import Alert, Tier
from clinicians.services import propose_safety_bounds
from core import authz
from models_ml.models import DatasetSnapshot, ModelAlert, ModelVersion
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD
from tests.factories import (
    CareTeamFactory,
    ClinicianFactory,
    LabResultFactory,
    PatientFactory,
    ReadingFactory,
    UserFactory,
)
from tests.oauth_clients import smart_app
from tests.tokens import access_token_for

# Routes anyone may ask, and why: they show no patient's or staff member's data.
PUBLIC = {
    "healthz": "the load balancer's probe",
    "readyz": "the load balancer's probe",
    "api/v1/auth/token/": "sign-in",
    "api/v1/auth/token/refresh/": "sign-in",
    "api/v1/auth/activate/": "phone activation: the single-use code is the credential",
    "portal/welcome/<str:token>/": "a staff member's one-time link: the token is the credential",
    "care/welcome/<str:token>/": "a caregiver's one-time link: the token is the credential",
    "care/login/": "sign-in (caregivers)",
    "care/login/verify/": "sign-in (a caregiver's second factor)",
    "care/logout/": "sign-out",
    ".well-known/smart-configuration": "SMART discovery (public metadata)",
    ".well-known/openid-configuration": "OpenID Connect discovery (public metadata)",
    "fhir/.well-known/smart-configuration": "SMART discovery (public metadata)",
    "oauth/login/": "sign-in (the authorization server's)",
    "oauth/signed-in/": "a static page after sign-in",
    "oauth/^\\.well-known/openid-configuration/?$": "OpenID Connect discovery (public metadata)",
    "oauth/.well-known/jwks.json": "the public key that signs ID tokens",
    "oauth/authorize/": "OAuth: a signed-in user consents; refusals are OAuth errors",
    "oauth/token/": "OAuth: client authentication and grants (django-oauth-toolkit)",
    "oauth/revoke_token/": "OAuth: RFC 7009, client-authenticated",
    "oauth/userinfo/": "OIDC: the bearer's own claims only",
    "oauth/launch/": "an EHR launch: a signed-in clinician, for one of their own patients",
    "api/schema/": "the OpenAPI document",
    "api/docs/": "the OpenAPI document, rendered",
    "api/redoc/": "the OpenAPI document, rendered (Redoc)",
    "fhir/^metadata/?$": "the CapabilityStatement (public, as FHIR servers publish it)",
    "portal/login/": "sign-in",
    "portal/login/verify/": "sign-in (second factor)",
    "portal/logout/": "sign-out",
    "admin/login/": "sign-in",
    "admin/logout/": "sign-out",
    "cds-services": "CDS Hooks discovery (public metadata: the services, never a patient)",
    "smart/launch": "SMART EHR launch: sends the browser to a registered EHR's authorization "
    "server (no patient data; tests/cds_hooks/test_smart_launch.py)",
    "smart/callback": "SMART EHR launch: the EHR's code and this browser's state are the "
    "credential; it only redirects to smart/review, which needs the portal sign-in",
}
# Routes that answer without showing a patient's record, and why (their GET is not a read).
NO_PATIENT_DATA = {
    "api/v1/oauth-clients/": "registered OAuth clients (names, scopes, redirect URIs)",
    "api/v1/oauth-clients/<str:client_id>/": "one registered OAuth client",
    "api/v1/audit/exports/": "the export jobs (filters, status, file names)",
    "api/v1/audit/exports/<uuid:pk>/": "one export job",
    "api/v1/audit/exports/<uuid:pk>/download/": "the archive: journalled as export_download",
    "portal/audit/exports/<uuid:pk>/download/": "the archive: journalled as export_download",
    "api/v1/audit/exports/<uuid:pk>/files/<str:name>/": "a file: journalled as export_download",
    "api/v1/me/record-exports/": "the caller's own copy requests: status and times, no record",
    "api/v1/me/record-exports/<uuid:export_id>/": "the patient's own copy's status (no record)",
    "api/v1/models/": "model versions",
    "api/v1/models/<str:version>/card/": "a model card (aggregates, no patient)",
    "api/v1/models/alerts/": "model monitoring alerts (statistics)",
    "api/v1/models/<str:version>/drift-reports/": "model monitoring reports (statistics)",
    "portal/models/<str:version>/": "a model card (aggregates, no patient)",
    "portal/worklist/counts/": "the worklist's section counts (numbers, no patient named)",
    "portal/admin/teams/<int:team_id>/": "a care team and its members (staff, no patient)",
    "portal/admin/staff/invite/": "an empty invitation form",
    "portal/admin/staff/<int:user_id>/": "a staff account",
    "portal/admin/patients/enrol/": "an empty enrolment form",
    "portal/admin/patients/import/": "an upload form (its report is a write's answer)",
    "portal/model-owner/": "model versions and their monitoring (aggregates, no patient)",
    "portal/model-owner/<str:version>/": "one model version's evidence (aggregates)",
    "admin/*": "the operators' console (journal, accounts); its pages ask the controller",
}
# Routes the walk does not see answered with the samples here, and where they are.
NOT_ANSWERED_HERE = {
    "api/v1/me/record-exports/<uuid:export_id>/download/": "needs a ready copy and its signed "
    "link (tests/record_export/test_record_export.py downloads one)",
    "api/v1/^recommendations/(?P<pk>[^/.]+)/acknowledge/$": "409 here: the sample proposal "
    "fails the course rules now (tests/clinicians/test_oversight_api.py acknowledges one)",
    "api/v1/^visits/(?P<pk>[^/.]+)/complete/$": "409 here: the sample visit is ahead",
    "api/v1/^visits/(?P<pk>[^/.]+)/confirm/$": "409 here: the sample visit is confirmed",
    "api/v1/^appointments/(?P<pk>[^/.]+)/complete/$": "409 here: the sample visit is ahead",
    "api/v1/^appointments/(?P<pk>[^/.]+)/confirm/$": "409 here: the sample visit is confirmed",
    "fhir": "a transaction Bundle (tests/fhir/test_bundles.py)",
    "portal/model-owner/<str:version>/promote/": "a signed stage change: needs the password and "
    "an evaluated candidate (tests/clinicians/test_model_owner_workspace.py)",
    "portal/model-owner/<str:version>/shadow/": "a signed stage change "
    "(tests/clinicians/test_model_owner_workspace.py)",
    "portal/model-owner/<str:version>/rollback/": "a signed stage change "
    "(tests/clinicians/test_model_owner_workspace.py)",
    "fhir/^$": "a transaction Bundle (tests/fhir/test_bundles.py)",
    "api/v1/caregiver-grants/<int:pk>/revoke/": "409 here: the walk revoked the grant on its "
    "/api/v1/me/caregivers/ path first (tests/caregivers/test_grants.py revokes one)",
    "api/v1/^alerts/(?P<pk>[^/.]+)/snooze/$": "400 here: the sample alert is hypotension, which "
    "is never snoozed (tests/clinicians/test_alert_handling.py snoozes high pressure)",
    "cds-services/<str:service_id>": "401 here: an EHR's signed JWT is the only credential "
    "(tests/cds_hooks/ call it as a registered EHR)",
    "cds-services/<str:service_id>/feedback": "401 here: an EHR's signed JWT is the only "
    "credential (tests/cds_hooks/test_feedback.py)",
    "smart/review/<int:launch_id>": "404 here: a launch belongs to the browser session that "
    "started it (tests/cds_hooks/test_smart_launch.py)",
}
# Inputs that reach a route's success path (an empty body mostly stops at validation, which
# is no test of what lies behind it). ``{patient_id}`` is the care team's patient.
QUERIES = {"api/v1/^labs/$": "?patient={patient_id}"}
BODIES = {
    "api/v1/readings/": {
        "readings": [
            {
                "client_id": "route-test-1",
                "type": "heart_rate",
                "value": 70,
                "unit": "/min",
                "measured_at": "{now}",
                "device_id": "route-test-watch",
            }
        ]
    },
    "api/v1/^recommendations/(?P<pk>[^/.]+)/decision/$": {
        "action": "reject",
        "reason": "route test",
        "password": PASSWORD,
    },
    "portal/recommendations/<int:recommendation_id>/decision/": {
        "action": "reject",
        "reason": "route test",
        "password": PASSWORD,
    },
    "api/v1/^goals/(?P<pk>[^/.]+)/status/$": {"status": "abandoned"},
    "api/v1/^visits/plan/$": {"patient": "{patient_id}"},
    "api/v1/^visits/(?P<pk>[^/.]+)/cancel/$": {"reason": "route test"},
    "api/v1/^appointments/plan/$": {"patient": "{patient_id}"},
    "api/v1/^appointments/(?P<pk>[^/.]+)/cancel/$": {"reason": "route test"},
    "api/v1/models/alerts/<int:alert_id>/close/": {"reason": "route test"},
    "portal/patients/<int:patient_id>/alert-thresholds/": {
        "crisis_systolic_mmhg": "180",
        "crisis_diastolic_mmhg": "120",
        "hypotension_systolic_mmhg": "90",
        "stale_after_hours": "48",
        "preview": "1",
    },
    "api/v1/^alerts/(?P<pk>[^/.]+)/resolve/$": {"note": "route test"},
    "portal/emergency-access/": {
        "emergency-mrn": "ROUTE-OTHER",
        "emergency-reason": "route walk: covering the crisis line",
        "emergency-minutes": "60",
    },
    # The API's walk marks the reading; the portal's is then answered with "already marked".
    "api/v1/patients/<int:patient_id>/readings/<int:reading_id>/entered-in-error/": {
        "reason": "route test"
    },
    "portal/patients/<int:patient_id>/readings/<int:reading_id>/entered-in-error/": {
        "reason": "route test"
    },
}
ROLES = (
    "anonymous",
    "patient",
    "other_patient",
    "clinician",
    "other_clinician",
    "admin",
    "auditor",
    "model_owner",
    "caregiver",
)
SIGN_IN_PAGES = ("/portal/login/", "/admin/login/", "/care/login/")


def routes(patterns=None, prefix: str = ""):
    """``(route, pattern)`` for every URL pattern, with its full route text."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            yield prefix + str(pattern.pattern), pattern


def methods_of(route: str, pattern: URLPattern) -> list[str]:
    if route.startswith("admin/"):
        return ["GET"]  # the console's forms would delete and change accounts
    callback = pattern.callback
    actions = getattr(callback, "actions", None)  # a DRF viewset's routes
    if actions:
        return sorted({method.upper() for method in actions} & {"GET", "POST", "PUT"})
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view is not None:
        return [method for method in ("GET", "POST", "PUT") if hasattr(view, method.lower())]
    return ["GET", "POST"]


def concrete(route: str, values: dict[str, str]) -> str:
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], route)  # regex routes
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], path)  # path converters
    return "/" + path.replace("^", "").replace("$", "").replace("/?", "/")


def signed_in(user) -> APIClient:
    """A bearer token for the API and a portal session with a verified second factor."""
    client = APIClient()
    device = TOTPDevice.objects.filter(
        user=user, confirmed=True
    ).first() or TOTPDevice.objects.create(user=user, name="route test", confirmed=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def world(db, django_capture_on_commit_callbacks):
    """Two care teams, their people, and one of every object a route names."""
    team_a, team_b = CareTeamFactory(name="Team A"), CareTeamFactory(name="Team B")
    clinician, other_clinician = (
        ClinicianFactory(care_team=team_a),
        ClinicianFactory(care_team=team_b),
    )
    patient, other_patient = PatientFactory(care_team=team_a), PatientFactory(care_team=team_b)
    other_patient.mrn = "ROUTE-OTHER"  # what emergency access is asked for
    other_patient.save(update_fields=["mrn"])
    admin = UserFactory(role="admin", is_staff=True, is_superuser=True)
    auditor = UserFactory(role="auditor")
    decided = make_recommendation(patient, proposed="5")
    decisions.decide_recommendation(
        recommendation=decided, actor=clinician, action="reject", reason="no", password=PASSWORD
    )
    pending = make_recommendation(patient)
    # The other team's: the API's walk decides the first team's pending one.
    pending_for_the_portal = make_recommendation(other_patient)
    delivered = make_recommendation(
        patient, tier=Tier.PATIENT, medication="lisinopril", current="10", proposed="20"
    )
    alert = Alert.objects.create(
        patient=patient, kind="hypotension", message="low", opened_at=timezone.now()
    )
    goal = goals.set_goal(
        patient=patient,
        actor=clinician,
        kind="lifestyle",
        measure="steps_per_day",
        target_value=8000,
    )
    message = messages.send_message(patient=patient, actor=patient.user, body="Dizzy this morning.")
    visit = visits.schedule_visit(
        patient=patient, actor=clinician, scheduled_at=timezone.now() + timedelta(days=3)
    )
    # The old path of visits (``/api/v1/appointments/``) is walked with a visit of its own: the
    # walk cancels the one it is given.
    visit_on_old_path = visits.schedule_visit(
        patient=patient, actor=clinician, scheduled_at=timezone.now() + timedelta(days=4)
    )
    reading = ReadingFactory(patient=patient)
    lab = LabResultFactory(patient=patient)
    pending_bounds = propose_safety_bounds(
        patient=patient,
        medication="hydrochlorothiazide",
        actor=admin,
        min_dose_mg=Decimal("12.5"),
        max_dose_mg=Decimal("25"),
        max_auto_step_mg=Decimal("0"),
        target_systolic_mmhg=130,
        target_diastolic_mmhg=80,
    )
    with django_capture_on_commit_callbacks(execute=True):
        export = request_export(actor=auditor, filters=ExportFilters(formats=("jsonl",)))
    provenance = AuditEvent.objects.filter(object_type="recommendation", action="decision").first()
    model_version = ModelVersion.objects.create(
        version="route-test-1",
        kind="sklearn_gbr",
        artifact_path="none",
        artifact_sha256="0" * 64,
        feature_set="route-test",
        feature_names=[],
        dataset=DatasetSnapshot.objects.create(
            content_hash="0" * 64,
            row_count=0,
            patient_count=0,
            feature_set="route-test",
            privacy_budget_epsilon=6.0,
            delta=1e-5,
        ),
        code_version="route-test",
    )
    model_alert = ModelAlert.objects.create(
        model_version=model_version, kind="drift", message="route test"
    )
    from clinicians.models import AlertSnooze

    snooze = AlertSnooze.objects.create(
        patient=patient,
        kind="above_target",
        starts_at=timezone.now(),
        until=timezone.now() + timedelta(days=1),
        reason="route walk",
        set_by=clinician,
    )
    from tests.caregivers.conftest import grant_to

    caregiver_grant = grant_to(
        patient,
        email="route-walk@example.org",
        scopes=("readings", "alerts", "medications", "goals", "messages"),
        live_alerts=True,
    )
    from clinicians.models import RecordExport

    record_export = RecordExport.objects.create(
        patient=patient, requested_by=patient.user, requested_at=timezone.now()
    )
    people = {
        "caregiver": caregiver_grant.caregiver,
        "patient": patient.user,
        "other_patient": other_patient.user,
        "clinician": clinician,
        "other_clinician": other_clinician,
        "admin": admin,
        "auditor": auditor,
        "model_owner": UserFactory(role="model_owner"),
    }
    return {
        "people": people,
        "clients": {"anonymous": APIClient(), **{r: signed_in(u) for r, u in people.items()}},
        "pk": {
            "patients": str(patient.pk),
            "recommendations": str(pending.pk),
            "alerts": str(alert.pk),
            "goals": str(goal.pk),
            "messages": str(message.pk),
            "visits": str(visit.pk),
            "appointments": str(visit_on_old_path.pk),
            "audit/exports": str(export.pk),
            "me/caregivers": str(caregiver_grant.pk),
            "caregiver-grants": str(caregiver_grant.pk),
        },
        "patient_id": str(patient.pk),
        "reading_id": str(reading.pk),
        "recommendation_id": str(delivered.pk),
        "portal_recommendation_id": str(pending_for_the_portal.pk),
        "alert_id": str(alert.pk),
        "snooze_id": str(snooze.pk),
        "export_id": str(record_export.pk),
        "goal_id": str(goal.pk),
        "visit_id": str(visit.pk),
        "version": model_version.version,
        "model_alert_id": str(model_alert.pk),
        "team_id": str(team_a.pk),
        "user_id": str(clinician.pk),
        "bounds_id": str(pending_bounds.pk),
        "token": "not-a-link-anyone-was-given",
        "medication": pending_bounds.medication,
        "name": "manifest.json",
        "client_id": smart_app().client_id,
        "fhir": {
            "Patient": str(patient.pk),
            "Observation": str(reading.pk),
            "MedicationRequest": f"rec-{delivered.pk}",
            # The oldest event of this world (not 1: PostgreSQL does not reuse sequences).
            "AuditEvent": f"audit-{AuditEvent.objects.order_by('sequence').first().sequence}",
            "Provenance": f"prov-{provenance.sequence}",
        },
        "lab": f"lab-{lab.pk}",
    }


def sample_values(route: str, world) -> list[dict[str, str]]:
    """The path parameters each route is asked with (several for the FHIR types)."""
    values = {
        key: world[key]
        for key in (
            "patient_id",
            "recommendation_id",
            "alert_id",
            "goal_id",
            "visit_id",
            "reading_id",
        )
    } | {
        "version": world["version"],
        "name": world["name"],
        "client_id": world["client_id"],
        "service_id": "clinaiops-patient-view",
        "launch_id": "1",
    }
    for prefix, pk in world["pk"].items():
        if route.startswith(f"api/v1/^{prefix}/") or route.startswith(f"api/v1/{prefix}/"):
            values["pk"] = pk
    if route.startswith("portal/audit/exports/"):
        values["pk"] = world["pk"]["audit/exports"]
    values |= {
        key: world[key]
        for key in (
            "team_id",
            "user_id",
            "bounds_id",
            "token",
            "medication",
            "snooze_id",
            "export_id",
        )
        if key in world
    }
    if route.startswith(("api/v1/models/alerts/", "portal/model-owner/alerts/")):
        values["alert_id"] = world["model_alert_id"]
    if route.startswith("portal/recommendations/") and "decision" in route:
        values["recommendation_id"] = world["portal_recommendation_id"]  # one waiting for review
    if route.startswith("api/v1/^recommendations/") and "acknowledge" in route:
        values["pk"] = world["recommendation_id"]  # the patient's own, delivered
    if route.startswith("fhir/"):
        ids = world["fhir"]
        instances = [*ids.items(), ("Observation", world["lab"])]
        if "version_id" in route:
            return [
                values | {"resource_type": t, "resource_id": i, "version_id": _version(world, t, i)}
                for t, i in instances
            ]
        if "resource_id" in route:
            return [values | {"resource_type": t, "resource_id": i} for t, i in instances]
        return [values | {"resource_type": t} for t in HANDLERS]
    if route.startswith("admin/"):
        return [values | _admin_values(route)]
    return [values]


def _version(world, resource_type: str, resource_id: str) -> str:
    """The resource's current ``meta.versionId``, as whoever may read it sees it."""
    for client in world["clients"].values():
        response = client.get(
            f"/fhir/{resource_type}/{resource_id}", HTTP_ACCEPT="application/fhir+json"
        )
        if response.status_code == 200:
            return response.json()["meta"]["versionId"]
    raise AssertionError(f"nobody reads {resource_type}/{resource_id}")


def _admin_values(route: str) -> dict[str, str]:
    found = re.match(r"admin/(\w+)/(\w+)/", route)
    model = None
    if found and found.group(1) in {config.label for config in apps.get_app_configs()}:
        model = apps.get_model(*found.groups())
    row = model._default_manager.order_by("pk").first() if model else None
    return {
        "object_id": str(row.pk) if row else "1",
        "pk": str(row.pk) if row else "1",
        "app_label": "audit",
        "content_type_id": "1",
        "url": "nothing-here/",
    }


def _answered(path: str, method: str, response) -> bool:
    if 200 <= response.status_code < 300:
        return True
    if 300 <= response.status_code < 400 and method == "POST" and path.startswith("/portal/"):
        # The portal answers a form with a redirect to the chart (or wherever it came from).
        return not response["Location"].startswith(SIGN_IN_PAGES)
    return False


def _filled(value, world):
    if isinstance(value, dict):
        return {key: _filled(item, world) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, world) for item in value]
    if value == "{patient_id}":
        return int(world["patient_id"])
    if value == "{now}":
        return timezone.now().isoformat()
    return value


def _ask(client, method: str, path: str, route: str, world):
    if method == "GET" and route in QUERIES:
        path += QUERIES[route].format(patient_id=world["patient_id"])
    if path.startswith("/fhir"):
        headers = {"HTTP_ACCEPT": "application/fhir+json"}
        if method == "GET":
            return client.get(path, **headers)
        return client.generic(method, path, "{}", "application/fhir+json", **headers)
    if method == "GET":
        return client.get(path)
    if path.startswith("/portal/"):
        return client.post(path, _filled(BODIES.get(route, {}), world))
    body = json.dumps(_filled(BODIES.get(route, {}), world)) if method != "GET" else ""
    return client.generic(method, path, body or "{}", "application/json")


@pytest.mark.slow
@pytest.mark.django_db
def test_every_route_answers_only_through_the_controller(world):
    listed = [(route, pattern) for route, pattern in routes() if route not in PUBLIC]
    unsampled, unauthorized, unjournalled, asked = [], [], [], 0
    answered: set[str] = set()
    for route, pattern in listed:
        try:
            variants = sample_values(route, world)
            paths = [concrete(route, values) for values in variants]
        except KeyError as missing:
            unsampled.append(f"{route}: no sample for {missing}")
            continue
        for path in paths:
            for method in methods_of(route, pattern):
                for role in ROLES:
                    with authz.ledger() as ledger:
                        response = _ask(world["clients"][role], method, path, route, world)
                    asked += 1
                    if not _answered(path, method, response):
                        continue
                    answered.add(route)
                    if not ledger.consulted_for_a_person:
                        unauthorized.append(f"{method} {path} as {role}: {response.status_code}")
                    elif (
                        method == "GET"
                        and route not in NO_PATIENT_DATA
                        and not route.startswith("admin/")
                        and not any(kind == "read" for kind, _, _ in ledger.decisions)
                    ):
                        unjournalled.append(f"GET {path} as {role}")
    assert not unsampled, unsampled
    unexercised = {
        route for route, _ in listed if route not in answered and not route.startswith("admin/")
    } - set(NOT_ANSWERED_HERE)
    assert not unexercised, "no role was answered (add a sample): " + ", ".join(unexercised)
    assert not unauthorized, "answered without the controller:\n" + "\n".join(unauthorized)
    assert not unjournalled, "read without authorize_read:\n" + "\n".join(unjournalled)
    print("ROUTESTATS", len(listed), asked)
    assert len(listed) >= 100 and asked > 1000  # the walk reached every part of the URL space


def test_the_allow_lists_name_only_routes_that_exist():
    known = {route for route, _ in routes()}
    assert set(PUBLIC) <= known
    assert {route for route in NO_PATIENT_DATA if not route.endswith("*")} <= known
    assert set(NOT_ANSWERED_HERE) | set(BODIES) | set(QUERIES) <= known


# --- websockets --------------------------------------------------------------------------------


def consumers():
    for pattern in websocket_urlpatterns:
        yield "/" + str(pattern.pattern), pattern.callback


class _Recorded:
    """The consumer application inside a ledger: the test communicator runs an application
    in a context of its own, so the ledger is opened there."""

    def __init__(self, inner):
        self.inner, self.ledger = inner, None

    async def __call__(self, scope, receive, send):
        with authz.ledger() as ledger:
            self.ledger = ledger
            return await self.inner(scope, receive, send)


@pytest.mark.django_db(transaction=True)
def test_every_consumer_opens_only_through_the_controller():
    team = CareTeamFactory(name="Socket team")
    socket_patient = PatientFactory(care_team=team)
    from tests.caregivers.conftest import grant_to

    people = {
        "caregiver": grant_to(
            socket_patient, email="socket@example.org", scopes=["alerts"]
        ).caregiver,
        "patient": socket_patient.user,
        "clinician": ClinicianFactory(care_team=team),
        "admin": UserFactory(role="admin", is_staff=True),
        "auditor": UserFactory(role="auditor"),
    }
    opened, unauthorized = [], []

    async def open_as(application, path: str, user):
        socket = WebsocketCommunicator(application, path)
        socket.scope["user"] = user
        await socket.connect()
        first = await socket.receive_output(timeout=5)
        await socket.disconnect()
        return first

    found = list(consumers())
    for path, _ in found:
        for role, user in people.items():
            application = _Recorded(URLRouter(websocket_urlpatterns))
            first = async_to_sync(open_as)(application, path, user)
            if first.get("type") == "websocket.send" and '"ready"' in first.get("text", ""):
                opened.append((path, role))
                if not application.ledger.consulted_for_a_person:
                    unauthorized.append(f"{path} as {role}")
    assert not unauthorized, unauthorized
    assert {("/ws/alerts/", "clinician"), ("/ws/patient/", "patient")} <= set(opened)
    assert len(found) >= 2
