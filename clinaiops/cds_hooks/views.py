"""The CDS Service endpoints (plain Django views: the EHR authenticates with its own JWT, not
with a ClinAIOps session or token, so neither DRF's authentication nor CSRF applies).

Every refusal is journalled (``audit.services.record_refusal``: what was asked, by which EHR,
for which practitioner and patient when known, and why); every answer that showed patient data
is journalled as a read by the practitioner (``services``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.identity import issuer as our_issuer
from audit.services import record_refusal
from clinaiops.cds_hooks import authentication, hook_request, services
from clinaiops.cds_hooks.http import (
    HookRefused,
    json_response,
    operation_outcome,
    preflight,
    refusal_response,
    with_cors,
)


def _method_not_allowed(allowed: str) -> HttpResponse:
    return json_response(
        operation_outcome(f"Use {allowed}.", "not-supported"), 405, {"Allow": allowed}
    )


def _journal(request: HttpRequest, refusal: HookRefused, attempted: str, **known) -> None:
    practitioner = known.get("practitioner")
    patient = known.get("patient")
    verified = known.get("verified")
    call = known.get("call")
    patient_id = patient.pk if patient is not None else refusal.patient_id
    record_refusal(
        actor=practitioner,
        attempted=attempted,
        message=refusal.message,
        field=refusal.field,
        object_type="patient" if patient_id is not None else "",
        object_id=patient_id or "",
        patient_id=patient_id,
        detail={
            "status": refusal.status,
            "ehr": verified.client.issuer
            if verified is not None
            else authentication.issuer_named(request),
            "hook_instance": call.hook_instance if call is not None else "",
        },
    )


@csrf_exempt
def discovery(request: HttpRequest) -> HttpResponse:
    """Public, as the specification's examples are and as /fhir/metadata is: it lists what the
    services are, never a patient."""
    if request.method == "OPTIONS":
        return preflight(request)
    if request.method not in ("GET", "HEAD"):
        return with_cors(request, _method_not_allowed("GET"))
    return with_cors(request, json_response(services.discovery()))


@csrf_exempt
def service(request: HttpRequest, service_id: str) -> HttpResponse:
    if request.method == "OPTIONS":
        return preflight(request)
    if request.method != "POST":
        return with_cors(request, _method_not_allowed("POST"))
    known: dict = {}
    try:
        spec = services.SERVICES.get(service_id)
        if spec is None:
            raise HookRefused(404, f"No CDS Service {service_id} (see /cds-services).", "not-found")
        known["verified"] = verified = authentication.verify(request, service_id=service_id)
        known["call"] = call = hook_request.parse(request.body, hook=spec.hook)
        patient, _ = hook_request.patient_of(call, verified.client)
        known["patient"] = patient
        known["practitioner"] = practitioner = hook_request.practitioner_of(
            call, verified.client, patient
        )
        answer: Callable = services.HOOKS[spec.hook]
        issued = answer(
            call=call,
            verified=verified,
            service_id=service_id,
            patient=patient,
            practitioner=practitioner,
            base=our_issuer.from_request(request),
        )
    except HookRefused as refusal:
        _journal(request, refusal, f"cds_hooks.{service_id}"[:64], **known)
        return with_cors(request, refusal_response(refusal))
    return with_cors(request, json_response({"cards": issued}))


@csrf_exempt
def feedback(request: HttpRequest, service_id: str) -> HttpResponse:
    if request.method == "OPTIONS":
        return preflight(request)
    if request.method != "POST":
        return with_cors(request, _method_not_allowed("POST"))
    known: dict = {}
    try:
        if service_id not in services.SERVICES:
            raise HookRefused(404, f"No CDS Service {service_id} (see /cds-services).", "not-found")
        known["verified"] = verified = authentication.verify(request, service_id=service_id)
        try:
            body = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            raise HookRefused(400, f"The body is not JSON: {error}") from error
        refusals = services.record_feedback(verified=verified, service_id=service_id, body=body)
    except HookRefused as refusal:
        _journal(request, refusal, "cds_hooks.feedback", **known)
        return with_cors(request, refusal_response(refusal))
    if not refusals:
        return with_cors(request, json_response({}))
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid" if item.status == 400 else "business-rule",
                "diagnostics": item.message,
                "expression": [f"feedback[{item.index}]"],
            }
            for item in refusals
        ],
    }
    status = max(item.status for item in refusals)
    return with_cors(request, json_response(outcome, status))
