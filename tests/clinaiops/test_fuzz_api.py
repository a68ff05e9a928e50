"""Fuzzing the whole API (issue "Alerts on time, whatever fails": zero server errors).

Schemathesis reads the app's own OpenAPI document (``/api/schema/``, served in-process through
the WSGI application: no network) and sends every operation, as each role, both inputs the
document allows and inputs it does not. Every answer must be a non-5xx, documented status code
with the documented content type and body. Where an answer is right and the document wrong, the
document is fixed (``extend_schema`` on the view, or ``clinaiops.api.schema``), not the check.

The FHIR facade describes itself (``/fhir/metadata``), not in OpenAPI: Observations are posted
with generated bodies and every resource type searched with generated parameters; no 5xx, and
every error is an ``OperationOutcome``.

A 5xx found here is fixed at its root and kept as a named test in ``test_bad_input.py``.
Examples per operation are bounded so that the file runs in about three minutes on two cores;
``FUZZ_EXAMPLES=200`` explores further, ``FUZZ_RANDOM=1`` with fresh randomness.
"""

from __future__ import annotations

import collections
import json
import os
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client

from clinaiops.fhir.registry import HANDLERS
from clinicians.models import Alert, Recommendation, Tier
from patients.models import Prescription
from tests.conftest import PASSWORD, totp_code
from tests.factories import LabResultFactory, ReadingFactory
from tests.fhir.conftest import FHIR_JSON, LOINC, UCUM, assert_valid, bp, heart_rate, steps

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES = ("anonymous", "patient", "clinician", "auditor", "admin")
HOST = {"Host": "localhost"}


def fuzz_settings(examples: int = EXAMPLES):
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture
def app():
    """The WSGI application, with the test database's connection kept open across requests
    (Django closes it when a request finishes; pytest-django's transaction needs it)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(app, clinician_a, patient_a, auditor, admin_user):
    """Something of everything, so that generated requests also reach existing objects: a
    regimen, readings, a laboratory result, a recommendation, an alert, and — through the API —
    a goal, a message, a visit and a finished audit export."""
    now = timezone.now()
    Prescription.objects.create(
        patient=patient_a,
        medication="amlodipine",
        dose_mg=Decimal(5),
        started_at=now - timedelta(days=60),
        source="import",
    )
    ReadingFactory.create_batch(3, patient=patient_a)
    LabResultFactory(patient=patient_a)
    recommendation = Recommendation.objects.create(
        patient=patient_a,
        kind="titrate",
        medication="amlodipine",
        current_dose_mg=Decimal(5),
        proposed_dose_mg=Decimal(10),
        tier=Tier.CLINICIAN,
        status="pending_review",
        reason="fuzz",
        model_version="stepwise-protocol-1",
        created_at=now,
    )
    alert = Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="high", opened_at=now
    )
    users = {
        "patient": patient_a.user,
        "clinician": clinician_a,
        "auditor": auditor,
        "admin": admin_user,
    }
    headers = {role: bearer(app, user) for role, user in users.items()}
    headers["anonymous"] = {}
    as_clinician = Client(app)
    created = {}
    for name, url, body in [
        (
            "goal",
            "/api/v1/goals/",
            {
                "patient": patient_a.pk,
                "kind": "lifestyle",
                "measure": "steps_per_day",
                "target_value": 8000,
            },
        ),
        ("message", "/api/v1/messages/", {"patient": patient_a.pk, "body": "How are you?"}),
        (
            "visit",
            "/api/v1/visits/",
            {"patient": patient_a.pk, "scheduled_at": (now + timedelta(days=7)).isoformat()},
        ),
    ]:
        response = as_clinician.post(url, json=body, headers=HOST | headers["clinician"])
        assert response.status_code == 201, response.get_data(as_text=True)
        created[name] = response.json["id"]
    export = Client(app).post("/api/v1/audit/exports/", json={}, headers=HOST | headers["auditor"])
    assert export.status_code == 202, export.get_data(as_text=True)
    ids = {
        "/api/v1/patients/{id}/": patient_a.pk,
        "/api/v1/patients/{patient_id}/": patient_a.pk,
        "/api/v1/recommendations/{id}/": recommendation.pk,
        "/api/v1/alerts/{id}/": alert.pk,
        "/api/v1/goals/{id}/": created["goal"],
        "/api/v1/messages/{id}/": created["message"],
        "/api/v1/visits/{id}/": created["visit"],
        "/api/v1/audit/exports/{id}/": export.json["id"],
    }
    return {"headers": headers, "ids": ids, "patient": patient_a.pk}


def bearer(app, user) -> dict[str, str]:
    """Signed in as the mobile app is: a token from the public endpoint."""
    credentials = {"username": user.username, "password": PASSWORD}
    if user.role in ("clinician", "admin", "auditor"):
        credentials["otp"] = totp_code(user)
    response = Client(app).post("/api/v1/auth/token/", json=credentials, headers=HOST)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.json['access']}"}


def known_id(path: str, ids: dict[str, Any]) -> tuple[str, Any] | None:
    for prefix, value in ids.items():
        name = prefix.rsplit("{", 1)[1].rstrip("}/")
        if path.startswith(prefix.rsplit("{", 1)[0]) and f"{{{name}}}" in path:
            return name, value
    return None


def aim_at_known_objects(case, world, aim: bool) -> None:
    """Half the cases name the objects that exist (in the path, the ``patient`` of the query
    or the body) and sign with the right password, so that requests get past the 404 or 403
    to the code behind it."""
    if not aim:
        return
    known = known_id(case.path, world["ids"])
    if known and case.path_parameters and known[0] in case.path_parameters:
        case.path_parameters[known[0]] = known[1]
    if isinstance(case.query, dict) and "patient" in case.query:
        case.query["patient"] = world["patient"]
    if isinstance(case.body, dict) and "patient" in case.body:
        case.body["patient"] = world["patient"]
    if isinstance(case.body, dict) and "password" in case.body:  # a signed decision
        case.body["password"] = PASSWORD


class Tally:
    """Cases sent and failures by kind, for the summary and the assertion."""

    def __init__(self) -> None:
        self.cases = 0
        self.operations: set[str] = set()
        self.failures: collections.Counter = collections.Counter()
        self.examples: dict[tuple, str] = {}
        self.statuses: collections.Counter = collections.Counter()

    def record(self, label: str, group: FailureGroup, curl: str) -> None:
        for failure in group.exceptions:
            key = (label, type(failure).__name__, failure.title)
            self.failures[key] += 1
            self.examples.setdefault(key, f"{failure.message.strip()[:400]}\n      {curl}")

    def summary(self, title: str) -> str:
        kinds = collections.Counter()
        for (_, kind, _), count in self.failures.items():
            kinds[kind] += count
        lines = [
            f"{title}: {len(self.operations)} operations, {self.cases} cases, "
            f"{sum(self.failures.values())} failures "
            f"({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items())) or 'none'})"
        ]
        lines += [
            f"  {label}: {status} × {n}"
            for (label, status), n in sorted(self.statuses.items())
            if label.endswith("(known, fix pending)")
        ]
        if os.environ.get("FUZZ_VERBOSE"):
            lines += [
                f"  {label}: {status} × {n}" for (label, status), n in sorted(self.statuses.items())
            ]
        for key, count in sorted(self.failures.items()):
            lines.append(f"  {count:4d} × {' — '.join(key)}\n      {self.examples[key]}")
        return "\n".join(lines)


# --- /api/v1: schemathesis against the OpenAPI document -----------------------------------------


def fuzz(operation, mode: GenerationMode, world, headers: dict, tally: Tally) -> None:
    @fuzz_settings()
    @given(case=operation.as_strategy(generation_mode=mode), aim=st.booleans())
    def send(case, aim):
        aim_at_known_objects(case, world, aim)
        tally.cases += 1
        cache.clear()  # throttling and lockouts are not what is fuzzed here
        try:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            tally.statuses[(operation.label, response.status_code)] += 1
        except FailureGroup as group:
            tally.record(operation.label, group, case.as_curl_command(headers=headers))

    send()


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_as_each_role_answers_as_documented_and_never_5xx(
    app, world, role, queries_refuse_nul
):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", app)
    tally = Tally()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        tally.operations.add(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, world, world["headers"][role], tally)
    report = tally.summary(f"{role} ({time.monotonic() - started:.0f} s)")
    print("\n" + report)
    assert not tally.failures, report


# --- /fhir: generated Observations and searches -------------------------------------------------

ODD = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b",
    "²",  # str.isdigit() is true, int() refuses it
    "１",
    "-1",
    "0",
    "1e3",
    "99999999999999999999",
    "Patient/²",
    "Patient/99999999999999999999",
]
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(ODD),
    st.text(alphabet=st.characters(codec="ascii"), max_size=20),
)
NUMBER_TEXT = st.one_of(
    st.integers(min_value=-1, max_value=2**70).map(str), st.sampled_from(ODD), TEXT
)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
INSTANT = st.one_of(
    st.datetimes(
        min_value=timezone.now().replace(tzinfo=None) - timedelta(days=400),
        max_value=timezone.now().replace(tzinfo=None) + timedelta(days=2),
        timezones=st.just(timezone.get_current_timezone()),
    ).map(lambda moment: moment.isoformat()),
    st.dates().map(lambda day: day.isoformat()),
    st.sampled_from(  # instants that exist with their offset but not in UTC, and the last day
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31",
            "9999-12-31T23:59:59.999999Z",
            "2026-01-01T00:00:00+99:00",
        ]
    ),
    st.integers(min_value=0, max_value=99999).map(str),
    TEXT,
)
DROP = object()
# Elements of a posted Observation to replace (or drop), one to three per example.
ELEMENTS = [
    ("identifier", 0, "value"),
    ("identifier", 0, "system"),
    ("device", "identifier", "value"),
    ("device", "reference"),
    ("subject", "reference"),
    ("effectiveDateTime",),
    ("status",),
    ("code", "coding", 0, "code"),
    ("code", "coding", 0, "system"),
    ("valueQuantity", "value"),
    ("valueQuantity", "code"),
    ("component", 0, "valueQuantity", "value"),
    ("component", 1, "code", "coding", 0, "code"),
    ("component",),
    ("note",),
    ("modifierExtension",),
]


def mutated(resource: dict[str, Any]):
    """``resource`` with a few elements replaced by generated values, or dropped."""
    value = st.one_of(TEXT, NUMBER_TEXT.map(lambda text: f"Patient/{text}"), INSTANT, JSON)
    value = st.one_of(value, st.just(DROP))

    def apply(changes):
        copy = json.loads(json.dumps(resource))
        for path, new in changes:
            node = copy
            try:
                for step in path[:-1]:
                    node = node[step]
                if new is not DROP:
                    node[path[-1]] = new
                elif isinstance(node, dict):
                    node.pop(path[-1], None)
            except (KeyError, IndexError, TypeError):
                continue
        return copy

    changes = st.lists(st.tuples(st.sampled_from(ELEMENTS), value), min_size=1, max_size=3)
    return changes.map(apply)


def observations(patient_id: int):
    """Valid observations of each kind, the same with a few elements changed, and any JSON."""

    class Subject:
        pk = patient_id

    templates = [
        bp(Subject, identifier="fuzz-bp"),
        heart_rate(Subject, identifier="fuzz-hr"),
        steps(Subject, identifier="fuzz-steps"),
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "2823-3"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": timezone.now().isoformat(),
            "valueQuantity": {"value": 4.6, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
            "identifier": [{"value": "fuzz-lab"}],
        },
    ]
    return st.one_of(
        st.sampled_from(templates), *(mutated(template) for template in templates), JSON
    )


def parameter_values(kind: str):
    """Values for a search parameter of FHIR type ``kind``: mostly of that type, some not."""
    typed = {
        "reference": st.one_of(
            NUMBER_TEXT,
            st.sampled_from(["Patient/", "MedicationRequest/rec-", "Device/"]).flatmap(
                lambda prefix: NUMBER_TEXT.map(lambda number: prefix + number)
            ),
        ),
        "token": st.one_of(
            NUMBER_TEXT,
            st.sampled_from(["rec-", "rx-", "lab-", "audit-", "prov-"]).flatmap(
                lambda prefix: NUMBER_TEXT.map(lambda number: prefix + number)
            ),
            st.sampled_from([LOINC, UCUM, "", "urn:x", "urn:clinaiops:patient"]).flatmap(
                lambda system: TEXT.map(lambda code: f"{system}|{code}")
            ),
        ),
        "date": st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "xx"]).flatmap(
            lambda prefix: INSTANT.map(lambda moment: prefix + moment)
        ),
    }.get(kind, TEXT)
    alternatives = st.lists(typed, min_size=1, max_size=2).map(",".join)
    return st.one_of(typed, alternatives, TEXT)


def searches(handler):
    """Query parameters for ``handler``'s search: mostly its own, with values of their type."""
    supported = [
        st.tuples(st.just(param.name), parameter_values(param.type))
        for param in handler.search_params
    ]
    result = st.tuples(
        st.sampled_from(["_count", "_offset", "_summary", "_format", "_sort"]),
        st.one_of(NUMBER_TEXT, st.sampled_from(["count", "false", "true", "json"])),
    )
    anything = st.tuples(TEXT, TEXT)
    return st.lists(st.one_of(*supported, result, anything), min_size=1, max_size=4)


def search_and_read(client, headers: dict, handler, tally: Tally) -> None:
    resource_type = handler.type

    @fuzz_settings(EXAMPLES * 3)
    @given(parameters=searches(handler), lenient=st.booleans())
    def search(parameters, lenient):
        cache.clear()
        label = f"GET /fhir/{resource_type}"
        tally.operations.add(label)
        prefer = {"Prefer": "handling=lenient"} if lenient else {}
        url = f"/fhir/{resource_type}?{urlencode(parameters)}"
        response = client.get(url, headers=headers | prefer)
        check_fhir_answer(response, tally, label, f"{url} {prefer}")

    @fuzz_settings(EXAMPLES)
    @given(
        resource_id=st.one_of(
            st.from_regex(r"\A[A-Za-z0-9\-.]{1,64}\Z"),
            st.sampled_from(["", "rec-", "rx-", "lab-", "audit-", "prov-"]).flatmap(
                lambda prefix: st.integers(min_value=0, max_value=2**70).map(
                    lambda number: f"{prefix}{number}"
                )
            ),
        )
    )
    def read(resource_id):
        cache.clear()
        label = f"GET /fhir/{resource_type}/{{id}}"
        tally.operations.add(label)
        url = f"/fhir/{resource_type}/{resource_id}"
        check_fhir_answer(client.get(url, headers=headers), tally, label, url)

    if handler.search is not None:
        search()
    if handler.read is not None:
        read()


def check_fhir_answer(response, tally: Tally, what: str, sent: str) -> None:
    tally.cases += 1
    status = response.status_code
    tally.statuses[(what, status)] += 1
    problem = None
    if status >= 500:
        problem = "server error"
    elif response.get_data() and status != 304:
        content_type = response.headers.get("Content-Type", "")
        try:
            body = response.json
            assert_valid(body)
        except Exception as error:  # any failure to read it is the finding
            problem = f"not a valid FHIR resource ({type(error).__name__})"
        else:
            if status >= 400 and body.get("resourceType") != "OperationOutcome":
                problem = "error is not an OperationOutcome"
            elif not content_type.startswith(FHIR_JSON):
                problem = f"content type {content_type}"
    if problem:
        key = (what, problem, str(status))
        tally.failures[key] += 1
        tally.examples.setdefault(
            key, f"{sent[:600]}\n      → {response.get_data(as_text=True)[:300]}"
        )


@pytest.mark.parametrize("role", ["anonymous", "patient", "clinician", "auditor"])
def test_the_fhir_facade_never_answers_5xx_and_every_error_is_an_operation_outcome(
    app, world, role, queries_refuse_nul
):
    client = Client(app)
    headers = HOST | world["headers"][role] | {"Accept": FHIR_JSON}
    tally = Tally()

    @fuzz_settings(EXAMPLES * 10)
    @given(body=observations(world["patient"]))
    def post_observation(body):
        cache.clear()
        tally.operations.add("POST /fhir/Observation")
        response = client.post(
            "/fhir/Observation",
            data=json.dumps(body),
            headers=headers | {"Content-Type": FHIR_JSON},
        )
        check_fhir_answer(response, tally, "POST /fhir/Observation", json.dumps(body))

    @fuzz_settings(EXAMPLES * 2)
    @given(entries=st.lists(observations(world["patient"]), max_size=3), kind=TEXT)
    def post_bundle(entries, kind):
        cache.clear()
        tally.operations.add("POST /fhir")
        bundle = {
            "resourceType": "Bundle",
            "type": kind if len(kind) % 3 else "transaction",
            "entry": [
                {"resource": entry, "request": {"method": "POST", "url": "Observation"}}
                for entry in entries
            ],
        }
        response = client.post(
            "/fhir", data=json.dumps(bundle), headers=headers | {"Content-Type": FHIR_JSON}
        )
        check_fhir_answer(response, tally, "POST /fhir", json.dumps(bundle))

    post_observation()
    post_bundle()
    for handler in HANDLERS.values():
        search_and_read(client, headers, handler, tally)
    report = tally.summary(f"FHIR as {role}")
    print("\n" + report)
    assert not tally.failures, report
