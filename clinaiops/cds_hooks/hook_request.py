"""A hook call, read and checked before anything is shown: the body's shape, the patient it is
about, the practitioner it is for, and that the prefetch agrees with both.

**Patient identity.** The EHR names the patient by its own ``Patient.id`` (``context.patientId``),
which is not ours. The patient is found by the MRN (``Patient.mrn``, unique), read from, in
order: the prefetched ``Patient``'s identifier in the EHR's registered MRN system (or, without
one registered, the identifier typed ``MR``, HL7 v2 table 0203); ``context.patientId`` itself
when the EHR is registered as using its MRN as the patient id; the EHR's FHIR server read with
the call's ``fhirAuthorization`` when the EHR registered that server. Without any of these the
hook is answered 412 (the specification's "unable to retrieve the necessary FHIR data"). A
patient outside the EHR's care teams is answered as one we do not know: 404.

**Prefetch agreement.** Every prefetched resource must be about ``context.patientId``: a
``Patient`` with another id, or an Observation, MedicationRequest … whose subject is another
patient, is refused (400). The prefetched ``Patient``'s birth date, gender and family name must
agree with our record where both know them (409: the MRN may belong to someone else).

**Practitioner.** ``context.userId`` (``Practitioner/…`` or ``PractitionerRole/…``) must be
registered for this EHR (``CdsPractitioner``) as an active clinician who is on the patient's
care team, in a team the EHR serves (403 otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from accounts.models import Role, User
from clinaiops.cds_hooks import ehr_fhir
from clinaiops.cds_hooks.http import HookRefused
from clinaiops.cds_hooks.models import CdsClient, CdsPractitioner
from patients.models import Patient

MRN_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
MAX_HOOK_INSTANCE = 64
SUBJECT_FIELDS = ("subject", "patient", "beneficiary")


@dataclass(frozen=True)
class HookCall:
    hook: str
    hook_instance: str
    context: dict[str, Any]
    prefetch: dict[str, Any]
    fhir_server: str
    fhir_authorization: dict[str, Any] | None

    @property
    def ehr_patient_id(self) -> str:
        return str(self.context["patientId"])

    @property
    def user_reference(self) -> str:
        return str(self.context.get("userId") or "")


def _bad(message: str, field: str | None = None) -> HookRefused:
    return HookRefused(400, message, code="invalid", field=field)


def parse(raw: bytes, *, hook: str) -> HookCall:
    """The body of a call to a service of ``hook``; 400 naming the first thing wrong."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise _bad(f"The body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise _bad("The body must be a JSON object (a CDS Hooks request).")
    if body.get("hook") != hook:
        raise _bad(f"This service answers the {hook} hook; hook is {body.get('hook')!r}.", "hook")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance or len(instance) > MAX_HOOK_INSTANCE:
        raise _bad("hookInstance (a UUID) is required.", "hookInstance")
    context = body.get("context")
    if not isinstance(context, dict):
        raise _bad("context (an object) is required.", "context")
    for name in ("patientId", "userId"):
        value = context.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > 255:
            raise _bad(f"context.{name} is required.", f"context.{name}")
    fhir_server = body.get("fhirServer") or ""
    if not isinstance(fhir_server, str):
        raise _bad("fhirServer must be a URL.", "fhirServer")
    authorization = body.get("fhirAuthorization")
    if authorization is not None:
        if not isinstance(authorization, dict) or not isinstance(
            authorization.get("access_token"), str
        ):
            raise _bad("fhirAuthorization must carry an access_token.", "fhirAuthorization")
        if not fhir_server:
            raise _bad("fhirServer is required with fhirAuthorization.", "fhirServer")
    prefetch = body.get("prefetch")
    prefetch = {} if prefetch is None else prefetch
    if not isinstance(prefetch, dict):
        raise _bad("prefetch must be an object of FHIR resources.", "prefetch")
    return HookCall(
        hook=hook,
        hook_instance=instance,
        context=context,
        prefetch={key: value for key, value in prefetch.items() if value is not None},
        fhir_server=fhir_server.rstrip("/"),
        fhir_authorization=authorization,
    )


# --- the patient --------------------------------------------------------------------------------


def _resources(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every resource in a prefetch value (a resource or a Bundle), with its path."""
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":
        for index, entry in enumerate(value.get("entry") or []):
            if isinstance(entry, dict):
                yield from _resources(entry.get("resource"), f"{path}.entry[{index}].resource")
    elif isinstance(value.get("resourceType"), str):
        yield path, value


def referenced_patient(reference: Any) -> str | None:
    """The patient id of ``Patient/x`` (relative or absolute), else None."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    parts = reference["reference"].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    return None


def check_prefetch_subjects(call: HookCall) -> list[dict[str, Any]]:
    """The prefetched ``Patient`` resources; 400 if any resource is about another patient."""
    patients = []
    for key, value in call.prefetch.items():
        for path, resource in _resources(value, f"prefetch.{key}"):
            if resource["resourceType"] == "Patient":
                if str(resource.get("id", "")) != call.ehr_patient_id:
                    raise _bad(
                        f"The prefetch names Patient/{resource.get('id')} but "
                        f"context.patientId is {call.ehr_patient_id}.",
                        path,
                    )
                patients.append(resource)
                continue
            for name in SUBJECT_FIELDS:
                other = referenced_patient(resource.get(name))
                if other is not None and other != call.ehr_patient_id:
                    raise _bad(
                        f"The prefetch holds a {resource['resourceType']} of Patient/{other} "
                        f"but context.patientId is {call.ehr_patient_id}.",
                        f"{path}.{name}",
                    )
    return patients


def _mrn_of(resource: dict[str, Any], client: CdsClient) -> str | None:
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
            continue
        if client.mrn_system:
            if identifier.get("system") == client.mrn_system:
                return identifier["value"]
            continue
        codings = ((identifier.get("type") or {}).get("coding")) or []
        if any(
            isinstance(c, dict) and c.get("system") == MRN_TYPE_SYSTEM and c.get("code") == "MR"
            for c in codings
        ):
            return identifier["value"]
    return None


def patient_of(call: HookCall, client: CdsClient) -> tuple[Patient, list[dict[str, Any]]]:
    """Our patient, and the EHR's Patient resources that describe them (checked)."""
    described = check_prefetch_subjects(call)
    mrn = next((m for m in (_mrn_of(r, client) for r in described) if m), None)
    if mrn is None and client.patient_id_is_mrn:
        mrn = call.ehr_patient_id
    if mrn is None and call.fhir_authorization is not None:
        fetched = ehr_fhir.read_patient(
            client, call.fhir_server, call.fhir_authorization, call.ehr_patient_id
        )
        described.append(fetched)
        mrn = _mrn_of(fetched, client)
    if mrn is None:
        raise HookRefused(
            412,
            "The patient cannot be identified: send the patient prefetch "
            "(Patient/{{context.patientId}}) with its MRN identifier"
            + (f" ({client.mrn_system})" if client.mrn_system else " (type MR)")
            + "; this service does not call the EHR's FHIR server without a registered "
            "fhirServer and a fhirAuthorization.",
            code="processing",
            field="prefetch.patient",
        )
    # The EHR's identifier in its registered system (``PatientIdentifier``, set at enrolment or
    # by FHIR update) names the patient first; the clinic's MRN (``Patient.mrn``) otherwise.
    served = Patient.objects.filter(care_teams__in=client.care_teams.all())
    patient = (
        served.filter(identifiers__system=client.mrn_system, identifiers__value=mrn)
        .distinct()
        .first()
        if client.mrn_system
        else None
    ) or served.filter(mrn=mrn).distinct().first()
    if patient is None:
        raise HookRefused(
            404,
            "No patient with this MRN is followed by the care teams this EHR serves.",
            code="not-found",
            field="context.patientId",
        )
    try:
        for resource in described:
            _check_demographics(resource, patient)
    except HookRefused as refusal:
        refusal.patient_id = patient.pk
        raise
    return patient, described


def _check_demographics(resource: dict[str, Any], patient: Patient) -> None:
    disagreements = []
    birth = resource.get("birthDate")
    if isinstance(birth, str) and birth:
        ours = patient.birth_date.isoformat() if patient.birth_date else str(patient.birth_year)
        if len(birth) >= 10 and patient.birth_date is not None:
            agrees = birth[:10] == ours
        else:
            agrees = birth[:4] == ours[:4]
        if not agrees:
            disagreements.append("birthDate")
    gender = resource.get("gender")
    known = ("male", "female", "other")
    if gender in known and patient.sex in known and gender != patient.sex:
        disagreements.append("gender")
    families = {
        name.get("family", "").strip().casefold()
        for name in resource.get("name") or []
        if isinstance(name, dict) and isinstance(name.get("family"), str)
    } - {""}
    if families and patient.family_name.strip().casefold() not in families:
        disagreements.append("name.family")
    if disagreements:
        raise HookRefused(
            409,
            "The EHR's Patient and the ClinAIOps record with this MRN disagree on "
            + ", ".join(disagreements)
            + ": it may not be the same person, so nothing is shown. Check the MRN.",
            code="conflict",
            field="prefetch.patient",
        )


# --- the practitioner ---------------------------------------------------------------------------


def practitioner_of(call: HookCall, client: CdsClient, patient: Patient) -> User:
    reference = call.user_reference
    kind = reference.partition("/")[0]
    if kind not in ("Practitioner", "PractitionerRole"):
        raise HookRefused(
            403,
            f"This service answers practitioners only; context.userId is a {kind}.",
            code="forbidden",
            field="context.userId",
        )
    link = (
        CdsPractitioner.objects.select_related("user")
        .filter(client=client, reference=reference)
        .first()
    )
    if link is None:
        raise HookRefused(
            403,
            f"{reference} is not registered with ClinAIOps for this EHR.",
            code="forbidden",
            field="context.userId",
        )
    user = link.user
    shared = patient.care_teams.filter(
        pk__in=client.care_teams.values("pk"),
        memberships__user=user,
    )
    if not (user.is_active and user.role == Role.CLINICIAN and shared.exists()):
        raise HookRefused(
            403,
            f"{reference} is not a clinician of this patient's care team.",
            code="forbidden",
            field="context.userId",
        )
    return user
