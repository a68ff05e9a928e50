"""Reading the EHR's FHIR server with the call's ``fhirAuthorization`` (CDS Hooks 2.0, "FHIR
Resource Access"): only the ``Patient`` the prefetch lacked, only from the server registered for
the EHR (``CdsClient.fhir_server``, matched exactly against the call's ``fhirServer``), over
HTTPS (plain HTTP only to this machine), with a short timeout. Anything else — no server
registered, another server, a failure, an answer that is not that Patient — is the
specification's 412: the service could not get the data it needs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.error import URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

from clinaiops.cds_hooks.http import HookRefused
from clinaiops.cds_hooks.models import CdsClient

TIMEOUT_SECONDS = 2.0  # the whole hook should answer in about 500 ms (the specification)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _unavailable(message: str) -> HookRefused:
    return HookRefused(412, message, code="processing", field="fhirServer")


def fetch_json(url: str, access_token: str) -> Any:
    """GET ``url`` as FHIR JSON with the bearer token (the one outbound call; tests replace it)."""
    request = Request(  # noqa: S310 - the scheme is checked by the caller (https or this host)
        url,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"},
    )
    with urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        return json.loads(response.read(1_000_000))


def read_patient(
    client: CdsClient, fhir_server: str, authorization: dict[str, Any], patient_id: str
) -> dict[str, Any]:
    registered = client.fhir_server.rstrip("/")
    if not registered or registered != fhir_server.rstrip("/"):
        raise _unavailable(
            "The prefetch lacks the patient and this EHR's fhirServer is not one this service "
            "is registered to read."
        )
    parts = urlsplit(registered)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
        raise _unavailable("The EHR's FHIR server must be reached over HTTPS.")
    try:
        resource = fetch_json(
            f"{registered}/Patient/{quote(patient_id, safe='')}", authorization["access_token"]
        )
    except (URLError, OSError, ValueError) as error:
        raise _unavailable(f"The EHR's FHIR server could not be read: {error}") from error
    if (
        not isinstance(resource, dict)
        or resource.get("resourceType") != "Patient"
        or str(resource.get("id", "")) != patient_id
    ):
        raise _unavailable("The EHR's FHIR server did not answer with that Patient.")
    return resource
