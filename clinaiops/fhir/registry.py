"""The resource types the facade serves, by name. The views dispatch on this table and the
CapabilityStatement is generated from it: what ``/fhir/metadata`` lists is what answers."""

from __future__ import annotations

from clinaiops.fhir import (
    audit_trail,
    detected_issues,
    devices,
    medications,
    observations,
    patients,
    practitioners,
    provenance,
)
from clinaiops.fhir.resources import PROVENANCE_TARGET, ResourceHandler, vital_sign_profiles

OBSERVATION = ResourceHandler(
    revincludes=(PROVENANCE_TARGET,),
    type="Observation",
    documentation="Wearable readings: blood pressure (LOINC 85354-9 with components 8480-6 "
    "and 8462-4, mm[Hg]), heart rate (8867-4, /min), steps (55423-8, {steps}). Create goes "
    "through the same ingestion as POST /api/v1/readings/ (patients only, for themselves); the "
    "identifier is the de-duplication key, so re-posting answers 200 with the stored reading. "
    "Laboratory results (category laboratory, ids lab-<id>): potassium (2823-3, mmol/L; meq/L "
    "accepted), creatinine (2160-0, mg/dL; umol/L accepted and converted), eGFR (33914-3, "
    "62238-1, 98979-8, mL/min/{1.73_m2}); created by a clinician of the patient's care team "
    "through the same validation as POST /api/v1/labs/, served in the canonical unit.",
    read_action="patients.view_readings",
    search_params=observations.SEARCH_PARAMS,
    read=observations.read,
    search=observations.search,
    creatable=True,
    sorts=("date", "_lastUpdated"),
    default_sort="-date",
    profiles=tuple(
        dict.fromkeys(
            p for code in observations.CODES.values() for p in vital_sign_profiles(code.profile)
        )
    ),
)

HANDLERS: dict[str, ResourceHandler] = {
    handler.type: handler
    for handler in (
        patients.HANDLER,
        OBSERVATION,
        medications.HANDLER,
        audit_trail.AUDIT_EVENT,
        provenance.PROVENANCE,
        practitioners.HANDLER,
        devices.HANDLER,
        detected_issues.HANDLER,
    )
}
