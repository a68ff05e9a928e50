"""SMART App Launch 2.x, EHR launch of the review page (the "Review in ClinAIOps" card link).

1. The EHR opens ``/smart/launch?iss=<its FHIR base>&launch=<opaque>``. The ``iss`` must be the
   ``fhir_server`` of a registered, active EHR with a ``smart_client_id`` (else 400). Its
   authorize and token endpoints are the registered ones, or are discovered from
   ``{iss}/.well-known/smart-configuration``. The browser is sent to the authorize endpoint with
   ``launch``, ``aud=iss``, a random ``state`` and ``nonce``, PKCE ``S256`` and the registered
   scope (by default ``launch openid fhirUser patient/Patient.rs``).
2. On ``/smart/callback?code&state`` the ``state`` must be one this browser session started, not
   used and not older than ``LIFETIME`` (else 400). The code is exchanged at the token endpoint
   (with the client secret by HTTP Basic for a confidential client; the PKCE verifier always).
   The ``id_token``, when sent, is verified against the EHR's key set (signature, ``iss``,
   ``aud`` = our client id, ``exp``, ``nonce``) and gives ``fhirUser``. The token response's
   ``patient`` is matched as a hook's patient is (``hook_request.patient_of``: the EHR's Patient
   read with the access token, its identifier in the EHR's ``mrn_system``, then the MRN). The
   token response's ``appContext`` (from the card) may name our patient — it must be the same —
   and the recommendation.
3. The review (``/smart/review/<id>``) is shown only to a clinician signed in to the portal with
   the second factor: the EHR's session does not replace ours. A clinician who cannot reach the
   patient gets 404; a ``fhirUser`` that the EHR registered as another clinician, 403.

Every step is journalled: started (``create`` ``smart_launch``), completed and shown
(``update``), refused (``refused``, ``attempted`` ``cds_hooks.smart_launch``).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit
from urllib.request import Request, urlopen

from django.db import transaction
from django.utils import timezone
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException
from oauthlib.oauth2 import WebApplicationClient

from audit.models import Action
from audit.services import record_event, record_refusal
from clinaiops.cds_hooks.hook_request import HookCall, patient_of
from clinaiops.cds_hooks.http import HookRefused
from clinaiops.cds_hooks.models import CdsClient, CdsPractitioner, SmartLaunch, SmartLaunchStatus
from clinicians.models import Recommendation
from core import authz
from core.authz import System

LIFETIME = timedelta(minutes=10)
TIMEOUT_SECONDS = 3.0
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SESSION_KEY = "smart_launches"
ATTEMPTED = "cds_hooks.smart_launch"
SYSTEM = System("cds_hooks.smart_launch")


class LaunchRefused(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, **detail: Any):
        super().__init__(message)
        self.status, self.message, self.field, self.detail = status, message, field, detail


def refuse(
    status: int, message: str, *, actor: Any = None, field: str | None = None, **detail: Any
) -> LaunchRefused:
    """Journal the refusal (in its own transaction) and return it to raise."""
    record_refusal(
        actor=actor if actor is not None else SYSTEM,
        attempted=ATTEMPTED,
        message=message,
        field=field,
        object_type="smart_launch",
        object_id=detail.get("launch", ""),
        patient_id=detail.pop("patient_id", None),
        detail={"status": status, **detail},
    )
    return LaunchRefused(status, message, field)


# --- outbound calls (HTTPS, or HTTP to this machine) -------------------------------------------


def _check_url(url: str, field: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
        return url
    raise LaunchRefused(502, f"The EHR's {field} must be an HTTPS URL.", field)


def _http_json(
    url: str, *, field: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> Any:
    request = Request(  # noqa: S310 - scheme checked by _check_url
        _check_url(url, field), data=data, headers={"Accept": "application/json", **(headers or {})}
    )
    try:
        with urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.loads(response.read(1_000_000))
    except HTTPError as error:
        try:
            body = json.loads(error.read(10_000))
        except ValueError:
            body = {}
        reason = body.get("error") if isinstance(body, dict) else None
        raise LaunchRefused(
            502, f"The EHR's {field} answered {error.code}" + (f" ({reason})." if reason else ".")
        ) from error
    except (URLError, OSError, ValueError) as error:
        raise LaunchRefused(502, f"The EHR's {field} could not be read: {error}") from error


@dataclass(frozen=True)
class Endpoints:
    authorize: str
    token: str
    jwks: str
    issuer: str


def endpoints_of(client: CdsClient) -> Endpoints:
    """The registered endpoints, else the EHR's ``/.well-known/smart-configuration``."""
    if client.smart_authorize_url and client.smart_token_url:
        return Endpoints(
            client.smart_authorize_url, client.smart_token_url, client.smart_jwks_url, ""
        )
    config = _http_json(
        f"{client.fhir_server}/.well-known/smart-configuration", field="smart-configuration"
    )
    if not isinstance(config, dict):
        raise LaunchRefused(502, "The EHR's smart-configuration is not a JSON object.")
    authorize = client.smart_authorize_url or config.get("authorization_endpoint")
    token = client.smart_token_url or config.get("token_endpoint")
    if not isinstance(authorize, str) or not isinstance(token, str) or not authorize or not token:
        raise LaunchRefused(
            502, "The EHR's smart-configuration names no authorization_endpoint or token_endpoint."
        )
    capabilities = config.get("capabilities") or []
    if isinstance(capabilities, list) and capabilities and "launch-ehr" not in capabilities:
        raise LaunchRefused(502, "The EHR's smart-configuration does not offer launch-ehr.")
    jwks_uri = client.smart_jwks_url or config.get("jwks_uri") or ""
    issuer = config.get("issuer") or ""
    return Endpoints(
        _check_url(authorize, "authorization_endpoint"),
        _check_url(token, "token_endpoint"),
        _check_url(jwks_uri, "jwks_uri") if jwks_uri else "",
        issuer if isinstance(issuer, str) else "",
    )


# --- 1. the launch -----------------------------------------------------------------------------


def client_for_iss(iss: str) -> CdsClient:
    base = iss.strip().rstrip("/")
    client = (
        CdsClient.objects.filter(fhir_server=base, is_active=True)
        .exclude(smart_client_id="")
        .first()
        if base
        else None
    )
    if client is None:
        raise refuse(
            400,
            "This EHR (iss) is not registered to launch ClinAIOps.",
            field="iss",
            iss=iss[:255],
        )
    return client


def start(*, iss: str, launch: str, redirect_uri: str, session: Any) -> str:
    """The URL of the EHR's authorize endpoint for this launch (the launch is recorded)."""
    client = client_for_iss(iss)
    if not launch:
        raise refuse(400, "The EHR sent no launch parameter.", field="launch", ehr=client.issuer)
    try:
        where = endpoints_of(client)
    except LaunchRefused as refusal:
        raise refuse(refusal.status, refusal.message, field="iss", ehr=client.issuer) from None
    oauth = WebApplicationClient(client.smart_client_id)
    verifier = oauth.create_code_verifier(64)
    challenge = oauth.create_code_challenge(verifier, "S256")
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with transaction.atomic():
        row = SmartLaunch.objects.create(
            client=client,
            state=state,
            code_verifier=verifier,
            nonce=nonce,
            token_url=where.token,
            jwks_url=where.jwks,
            oidc_issuer=where.issuer,
            started_at=timezone.now(),
        )
        record_event(
            action=Action.CREATE,
            actor=SYSTEM,
            object_type="smart_launch",
            object_id=row.pk,
            detail={"ehr": client.issuer, "iss": client.fhir_server, "step": "started"},
        )
    session[SESSION_KEY] = [*session.get(SESSION_KEY, [])[-9:], row.pk]
    # Built here rather than by oauthlib, which refuses any http URL: ``_check_url`` already
    # allowed plain HTTP only to this machine (the tests' EHR).
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.smart_client_id,
            "redirect_uri": redirect_uri,
            "scope": client.smart_scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "launch": launch,
            "aud": client.fhir_server,
            "nonce": nonce,
        }
    )
    return f"{where.authorize}{'&' if '?' in where.authorize else '?'}{query}"


# --- 2. the callback ---------------------------------------------------------------------------


def _pending(state: str, session: Any) -> SmartLaunch:
    row = (
        SmartLaunch.objects.select_related("client").filter(state=state).first() if state else None
    )
    if row is None or row.pk not in session.get(SESSION_KEY, []):
        raise refuse(
            400, "Unknown or missing state: start the launch from the EHR again.", field="state"
        )
    if row.status != SmartLaunchStatus.STARTED:
        raise refuse(400, "This launch was already used.", field="state", launch=row.pk)
    if timezone.now() - row.started_at > LIFETIME:
        _close(row)
        raise refuse(
            400, "This launch expired: open it from the EHR again.", field="state", launch=row.pk
        )
    return row


def _close(row: SmartLaunch) -> None:
    row.status = SmartLaunchStatus.REFUSED
    row.completed_at = timezone.now()
    row.save(update_fields=["status", "completed_at"])


def _exchange(row: SmartLaunch, code: str, redirect_uri: str) -> dict[str, Any]:
    client = row.client
    oauth = WebApplicationClient(client.smart_client_id)
    body = oauth.prepare_request_body(
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=row.code_verifier,
        include_client_id=not client.smart_client_secret,
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if client.smart_client_secret:
        pair = f"{client.smart_client_id}:{client.smart_client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    answer = _http_json(row.token_url, field="token endpoint", data=body.encode(), headers=headers)
    if not isinstance(answer, dict) or not answer.get("access_token"):
        raise LaunchRefused(502, "The EHR's token endpoint sent no access_token.")
    if str(answer.get("token_type", "")).lower() != "bearer":
        raise LaunchRefused(502, "The EHR's token endpoint sent a token that is not Bearer.")
    return answer


def _id_token_claims(row: SmartLaunch, id_token: str) -> dict[str, Any]:
    client = row.client
    keys = _http_json(row.jwks_url, field="jwks_uri") if row.jwks_url else client.jwks
    try:
        key_set = jwk.JWKSet.from_json(json.dumps(keys))
        token = jwt.JWT(
            jwt=id_token,
            key=key_set,
            algs=["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384"],
            check_claims={"exp": None, "aud": client.smart_client_id},
        )
        claims = json.loads(token.claims)
    except (JWException, ValueError, TypeError) as error:
        raise LaunchRefused(
            400, f"The EHR's id_token does not verify: {error}", "id_token"
        ) from None
    allowed_issuers = {row.oidc_issuer, client.fhir_server, client.issuer} - {""}
    if str(claims.get("iss", "")).rstrip("/") not in {i.rstrip("/") for i in allowed_issuers}:
        raise LaunchRefused(400, "The id_token was issued by another server.", "id_token")
    if claims.get("nonce") != row.nonce:
        raise LaunchRefused(400, "The id_token's nonce is not this launch's.", "id_token")
    if int(claims.get("iat", 0)) > time.time() + 60:
        raise LaunchRefused(400, "The id_token was issued in the future.", "id_token")
    return claims


def _app_context(answer: dict[str, Any]) -> dict[str, Any]:
    raw = answer.get("appContext")
    if isinstance(raw, str) and raw:
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def complete(*, state: str, code: str, error: str, redirect_uri: str, session: Any) -> SmartLaunch:
    """Exchange the code, match the patient; the launch then waits for the portal sign-in."""
    row = _pending(state, session)
    client = row.client
    facts: dict[str, Any] = {"launch": row.pk, "ehr": client.issuer}
    if error or not code:
        _close(row)
        raise refuse(
            400,
            f"The EHR did not authorize the launch ({error or 'no code'}).",
            field="code",
            **facts,
        )
    try:
        answer = _exchange(row, code, redirect_uri)
        claims = _id_token_claims(row, answer["id_token"]) if answer.get("id_token") else {}
        fhir_user = str(claims.get("fhirUser") or claims.get("profile") or "")
        ehr_patient = answer.get("patient")
        if not isinstance(ehr_patient, str) or not ehr_patient:
            raise LaunchRefused(400, "The EHR's token response names no patient.", "patient")
        call = HookCall(
            hook="smart-launch",
            hook_instance=row.state,
            context={"patientId": ehr_patient},
            prefetch={},
            fhir_server=client.fhir_server,
            fhir_authorization={
                "access_token": answer["access_token"],
                "token_type": "Bearer",
                "scope": answer.get("scope", ""),
                "subject": client.smart_client_id,
            },
        )
        try:
            patient, _ = patient_of(call, client)
        except HookRefused as refused:
            raise LaunchRefused(refused.status, refused.message, "patient") from None
        context = _app_context(answer)
        if "patient" in context and str(context["patient"]) != str(patient.pk):
            raise LaunchRefused(
                409, "The card's patient and the EHR's patient are not the same.", "appContext"
            )
        recommendation = None
        if context.get("recommendation") is not None:
            recommendation = Recommendation.objects.filter(
                pk=str(context["recommendation"])
                if str(context["recommendation"]).isdigit()
                else 0,
                patient=patient,
            ).first()
            if recommendation is None:
                raise LaunchRefused(
                    404, "The card's recommendation is not this patient's.", "appContext"
                )
    except LaunchRefused as refusal:
        _close(row)
        raise refuse(refusal.status, refusal.message, field=refusal.field, **facts) from None
    with transaction.atomic():
        row.status = SmartLaunchStatus.COMPLETED
        row.completed_at = timezone.now()
        row.ehr_patient, row.fhir_user = ehr_patient[:255], fhir_user[:255]
        row.patient, row.recommendation = patient, recommendation
        row.save()
        record_event(
            action=Action.UPDATE,
            actor=SYSTEM,
            object_type="smart_launch",
            object_id=row.pk,
            patient_id=patient.pk,
            detail={
                **facts,
                "step": "completed",
                "ehr_patient": row.ehr_patient,
                "fhir_user": row.fhir_user,
                "recommendation": recommendation.pk if recommendation else None,
            },
        )
    return row


# --- 3. the review, for a clinician signed in to the portal -------------------------------------


def launched(pk: int, session: Any, user: Any) -> SmartLaunch:
    """The completed launch this browser session holds, for this signed-in user (journalled)."""
    row = (
        SmartLaunch.objects.select_related("client", "patient").filter(pk=pk).first()
        if pk in session.get(SESSION_KEY, [])
        else None
    )
    if row is None or row.status != SmartLaunchStatus.COMPLETED or row.patient is None:
        raise refuse(404, "No launch to show: open it from the EHR again.", actor=user, launch=pk)
    facts: dict[str, Any] = {
        "launch": row.pk,
        "ehr": row.client.issuer,
        "patient_id": row.patient_id,
    }
    if row.completed_at is None or timezone.now() - row.completed_at > LIFETIME:
        _close(row)
        raise refuse(404, "This launch expired: open it from the EHR again.", actor=user, **facts)
    if not authz.can(user, "clinicians.view_chart", row.patient):
        raise refuse(404, "No such patient in your care teams.", actor=user, **facts)
    if row.fhir_user:
        named = (
            CdsPractitioner.objects.filter(client=row.client, reference=row.fhir_user)
            .values_list("user_id", flat=True)
            .first()
        )
        if named is not None and named != user.pk:
            _close(row)
            raise refuse(
                403,
                "The EHR launched this for another clinician: sign in to ClinAIOps as yourself.",
                actor=user,
                field="fhirUser",
                **facts,
            )
    with transaction.atomic():
        row.status = SmartLaunchStatus.SHOWN
        row.save(update_fields=["status"])
        record_event(
            action=Action.UPDATE,
            actor=user,
            object_type="smart_launch",
            object_id=row.pk,
            patient_id=row.patient_id,
            detail={"launch": row.pk, "ehr": row.client.issuer, "step": "shown"},
        )
    return row
