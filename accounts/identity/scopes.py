"""What a token may do: OAuth scopes, SMART App Launch v2 scopes, and the ceiling each role sets.

A scope narrows what the role already allows; it never widens it. The role's rules
(``core.authz``) still decide every request; a token additionally needs a scope that covers the
resource and the interaction. SMART v2 scopes (hl7.org/fhir/smart-app-launch/scopes-and-launch-
context.html) read ``<context>/<resource>.<permissions>``:

- context ``patient`` (the launch patient's compartment), ``user`` (whatever the user may reach),
  ``system`` (a back-end service, no user);
- resource a FHIR type or ``*``;
- permissions an ordered subset of ``c r u d s`` (create, read, update, delete, search); the v1
  forms ``read``, ``write`` and ``*`` are read as ``rs``, ``cud`` and ``cruds``.

Granular scopes with a query (``patient/Observation.rs?category=…``) are refused as
``invalid_scope``: they are not implemented, and accepting them would widen what was asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from accounts.models import Role

# The first-party REST API (``/api/v1/``, the portal's and the phone's websockets). Only clients
# registered as first-party may hold it.
API_SCOPE = "api"

STATIC_SCOPES: dict[str, str] = {
    "openid": "Sign you in (OpenID Connect)",
    "profile": "Your name and role",
    "fhirUser": "Who you are, as a FHIR resource",
    "launch": "Open in the context of the record the EHR shows",
    "launch/patient": "Choose the patient when the app starts",
    "offline_access": "Stay signed in when you are not using the app",
    "online_access": "Stay signed in while you use the app",
    API_SCOPE: "Use the ClinAIOps app (readings, recommendations, alerts, messages)",
}

LETTERS = "cruds"
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_SMART = re.compile(
    r"^(?P<context>patient|user|system)/(?P<resource>\*|[A-Z][A-Za-z]{1,63})"
    r"\.(?P<permissions>\*|read|write|c?r?u?d?s?)$"
)
_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


class ScopeError(ValueError):
    """A requested scope that cannot be granted; the message says which and why."""


@dataclass(frozen=True)
class SmartScope:
    context: str
    resource: str  # a FHIR type, or "*"
    permissions: frozenset[str]

    def covers(self, other: SmartScope) -> bool:
        return (
            self.context == other.context
            and self.resource in ("*", other.resource)
            and other.permissions <= self.permissions
        )

    def allows(self, resource: str, letter: str) -> bool:
        return self.resource in ("*", resource) and letter in self.permissions

    def describe(self) -> str:
        what = "all records" if self.resource == "*" else f"{self.resource} records"
        verbs = ", ".join(_WORDS[letter] for letter in LETTERS if letter in self.permissions)
        whose = {
            "patient": "of the selected patient",
            "user": "you can reach",
            "system": "of the care teams this service serves",
        }[self.context]
        return f"{verbs.capitalize()} {what} {whose}"


def parse_smart(scope: str) -> SmartScope | None:
    """The SMART scope ``scope`` names, or None when it is not one (a static scope)."""
    match = _SMART.match(scope)
    if match is None:
        return None
    permissions = match["permissions"]
    letters = _V1_PERMISSIONS.get(permissions, permissions)
    if not letters:
        return None
    return SmartScope(match["context"], match["resource"], frozenset(letters))


def is_known(scope: str) -> bool:
    return scope in STATIC_SCOPES or parse_smart(scope) is not None


def describe(scope: str) -> str:
    smart = parse_smart(scope)
    return smart.describe() if smart else STATIC_SCOPES.get(scope, scope)


# --- what each role may ever hold ---------------------------------------------------------------
# (contexts, {resource: letters}). A scope naming a resource or an interaction outside its role
# is refused; a wildcard (``*``) is accepted and means "what the role allows".

_CLINICAL_READ = {
    "Patient": "rs",
    "MedicationRequest": "rs",
    "Provenance": "rs",
    "Practitioner": "rs",
    "Device": "rs",
    "DetectedIssue": "rs",
}
# Update of a Patient is of its EHR identifiers only (FHIR update, docs/fhir.md).
_PATIENT_IDENTIFIERS = {"Patient": "rus"}
ROLE_CEILING: dict[str, tuple[frozenset[str], dict[str, str]]] = {
    Role.PATIENT: (frozenset({"patient", "user"}), _CLINICAL_READ | {"Observation": "crs"}),
    Role.CLINICIAN: (
        frozenset({"patient", "user"}),
        _CLINICAL_READ | _PATIENT_IDENTIFIERS | {"Observation": "crs", "MedicationRequest": "crs"},
    ),
    Role.AUDITOR: (
        frozenset({"user"}),
        {"AuditEvent": "rs", "Provenance": "rs", "Practitioner": "rs", "Device": "rs"},
    ),
    Role.ADMIN: (frozenset(), {}),
    Role.MODEL_OWNER: (frozenset(), {}),
    Role.SERVICE: (
        frozenset({"system"}),
        _CLINICAL_READ | _PATIENT_IDENTIFIERS | {"Observation": "rs"},
    ),
}


def check_role_ceiling(role: str, scopes: Iterable[str]) -> None:
    """Raise ``ScopeError`` for the first scope that asks for more than ``role`` allows."""
    contexts, resources = ROLE_CEILING.get(role, (frozenset(), {}))
    for scope in scopes:
        smart = parse_smart(scope)
        if smart is None:
            continue
        if smart.context not in contexts:
            raise ScopeError(f"{scope}: a {role} account cannot hold {smart.context}/ scopes")
        if smart.resource == "*":
            continue
        allowed = resources.get(smart.resource)
        if allowed is None:
            raise ScopeError(f"{scope}: a {role} account has no access to {smart.resource}")
        beyond = smart.permissions - set(allowed)
        if _is_v1(scope) and smart.permissions & set(allowed):
            # A v1 word (``write``: c, u, d) asks for what the role may do of it, as the
            # wildcard resource does; the role's rules still decide each interaction.
            beyond = frozenset()
        if beyond:
            words = ", ".join(_WORDS[letter] for letter in LETTERS if letter in beyond)
            raise ScopeError(f"{scope}: a {role} account cannot {words} {smart.resource}")


def _is_v1(scope: str) -> bool:
    return scope.rpartition(".")[2] in _V1_PERMISSIONS


def check_client_allows(allowed: str, scopes: Iterable[str]) -> None:
    """Raise ``ScopeError`` for the first scope the client's registration does not cover."""
    allowed_list = allowed.split()
    allowed_smart = [s for s in (parse_smart(a) for a in allowed_list) if s is not None]
    for scope in scopes:
        if not is_known(scope):
            raise ScopeError(f"{scope}: not a scope this server knows")
        smart = parse_smart(scope)
        if smart is None:
            if scope not in allowed_list:
                raise ScopeError(f"{scope}: not registered for this client")
        elif not any(pattern.covers(smart) for pattern in allowed_smart):
            raise ScopeError(f"{scope}: not registered for this client")


# --- what a granted token may do -------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """The answer for one interaction: whether any scope allows it and, if only ``patient/``
    scopes do, that the patient compartment applies."""

    allowed: bool
    compartment_only: bool = False


def reach(scopes: Iterable[str], resource: str, letter: str) -> Reach:
    granted = [s for s in (parse_smart(scope) for scope in scopes) if s is not None]
    matching = [s for s in granted if s.allows(resource, letter)]
    if not matching:
        return Reach(False)
    return Reach(True, compartment_only=all(s.context == "patient" for s in matching))


def has_fhir_scopes(scopes: Iterable[str]) -> bool:
    return any(parse_smart(scope) is not None for scope in scopes)
