"""``Device``: the software that proposes doses — each registered model version
(``models_ml.ModelVersion``, id ``model-<pk>``) and the rule-based stepwise protocol (id
``stepwise-protocol-1``) — so that a proposal's ``requester`` and its Provenance agent are
references an EHR can resolve.

A Device says what the software is (``deviceName``, ``type``), which version
(``version``: the model version, the code version and the feature set it was built with;
``identifier`` ``urn:clinaiops:model-version|<version>``) and where its model card is
(``contact`` of system ``url``, and a ``note``): the portal page a clinician opens, and the JSON
of ``GET /api/v1/models/<version>/card/``. The card itself stays with staff
(``models_ml.read_model_records``); the Device is readable by every caller of the facade
(``models_ml.view_device``). Model records hold no patient's data: reads are not journalled as
reads of patient data.

A version that no record names (a proposal from a producer never registered) has no Device: it
is named by identifier only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from clinaiops.fhir.http import not_found
from clinaiops.fhir.resources import (
    MODEL_VERSION_SYSTEM,
    ResourceHandler,
    SearchResult,
    with_meta,
)
from clinaiops.fhir.search import LAST_UPDATED, SearchParam, SearchRequest, date_range, token
from core import authz
from models_ml.models import ModelVersion
from models_ml.protocol import PROTOCOL_VERSION

MODEL_PREFIX = "model-"
MANUFACTURER = "ClinAIOps"
# The protocol is code, not a trained record: it has no creation time of its own. Its
# definition is as old as the product (fixed, so that its versionId and lastUpdated are stable).
PROTOCOL_SINCE = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Row:
    """One device: a registered model version, or the protocol (``model`` None)."""

    version: str
    model: ModelVersion | None

    @property
    def id(self) -> str:
        return f"{MODEL_PREFIX}{self.model.pk}" if self.model is not None else PROTOCOL_VERSION

    @property
    def last_updated(self) -> datetime:
        return PROTOCOL_SINCE if self.model is None else self.model.created_at

    @property
    def key(self) -> tuple[int, int, int]:
        """Its place in a search (the protocol first, then model versions by id), as paging's
        (sort value, rank, id)."""
        return (0, 0, 0) if self.model is None else (self.model.pk, 1, self.model.pk)


def _card_urls(version: str) -> tuple[str, str]:
    """The model card: the portal page, and its JSON in the API. Absolute when the server's
    public address is configured (``OIDC_ISSUER``), else paths on this server."""
    base = (settings.OIDC_ISSUER or "").rstrip("/")
    return f"{base}/portal/models/{version}/", f"{base}/api/v1/models/{version}/card/"


def to_fhir(row: _Row) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": row.id,
        "identifier": [{"system": MODEL_VERSION_SYSTEM, "value": row.version}],
        "manufacturer": MANUFACTURER,
        "modelNumber": row.version,
    }
    model = row.model
    if model is None:
        resource["deviceName"] = [
            {"name": f"ClinAIOps stepwise protocol {row.version}", "type": "user-friendly-name"}
        ]
        resource["type"] = {"text": "Rule-based antihypertensive dose-titration protocol"}
        resource["version"] = [{"type": {"text": "protocol version"}, "value": row.version}]
        resource["note"] = [
            {
                "text": "A fixed stepwise protocol (guideline order of first-line drugs, one "
                "step at a time), not a trained model: it has no model card."
            }
        ]
        return with_meta(resource, PROTOCOL_SINCE)
    page, api = _card_urls(model.version)
    resource["deviceName"] = [
        {"name": f"ClinAIOps dose model {model.version}", "type": "user-friendly-name"}
    ]
    resource["type"] = {"text": "Machine-learning antihypertensive dose-titration model"}
    resource["version"] = [
        {"type": {"text": "model version"}, "value": model.version},
        {"type": {"text": "code version"}, "value": model.code_version or "unknown"},
        {"type": {"text": "feature set"}, "value": model.feature_set or "unknown"},
    ]
    resource["contact"] = [{"system": "url", "value": page, "rank": 1}]
    resource["note"] = [{"text": f"Model card: {page} (JSON: {api})."}]
    return with_meta(resource, model.created_at)


def device_ids(versions: Iterable[str]) -> dict[str, str]:
    """The Device id of each of ``versions`` that is a device here (one query): ``model-<pk>``
    of a registered version, the protocol's own name. A version missing from the answer is
    named by identifier only."""
    wanted = {version for version in versions if version}
    found = {
        version: f"{MODEL_PREFIX}{pk}"
        for version, pk in ModelVersion.objects.filter(version__in=wanted).values_list(
            "version", "pk"
        )
    }
    if PROTOCOL_VERSION in wanted:
        found[PROTOCOL_VERSION] = PROTOCOL_VERSION
    return found


def device_reference(version: str, ids: dict[str, str] | None = None) -> dict[str, Any]:
    """A reference to the model ``version`` as a Device: resolvable (``Device/<id>``) when it is
    one, always with its identifier and a display. ``ids`` from ``device_ids`` for a page."""
    known = device_ids([version]) if ids is None else ids
    reference: dict[str, Any] = {}
    if version in known:
        reference["reference"] = f"Device/{known[version]}"
    reference |= {
        "type": "Device",
        "identifier": {"system": MODEL_VERSION_SYSTEM, "value": version},
        "display": f"ClinAIOps dose model {version}",
    }
    return reference


def _rows(user) -> list[_Row]:
    """The devices ``user`` reads (the rule first: the protocol is no row a visibility hides)."""
    authz.authorize(user, "models_ml.view_device")
    models = authz.visible(user, "models_ml.device").order_by("pk")
    return [_Row(PROTOCOL_VERSION, None), *(_Row(model.version, model) for model in models)]


def read(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    for row in _matching(_rows(user), "_id", [[resource_id]]):
        return to_fhir(row), []
    raise not_found("Device", resource_id)


def _matches(row: _Row, name: str, raw: str) -> bool:
    if name == LAST_UPDATED.name:
        prefix, start, end = date_range(name, raw)
        moment, inside = row.last_updated, start <= row.last_updated < end
        return {
            "eq": inside,
            "ne": not inside,
            "gt": moment >= end,
            "ge": moment >= start,
            "lt": moment < start,
            "le": moment < end,
        }[prefix]
    if name == "_id":
        return row.id == raw.strip()
    if name == "model":  # a string parameter: case-insensitive, from the start
        return row.version.lower().startswith(raw.strip().lower())
    system, value = token(raw)
    if name == "identifier" and system not in (None, MODEL_VERSION_SYSTEM):
        return False
    return value is not None and value == row.version


def _matching(rows: list[_Row], name: str, occurrences: list[list[str]]) -> list[_Row]:
    for alternatives in occurrences:
        rows = [row for row in rows if any(_matches(row, name, raw) for raw in alternatives)]
    return rows


SEARCH_PARAMS = (
    SearchParam("_id", "token", "model-<id> (a registered model version) or stepwise-protocol-1."),
    LAST_UPDATED,
    SearchParam(
        "identifier",
        "token",
        f"The model version ({MODEL_VERSION_SYSTEM}|<version>, or the version alone).",
    ),
    SearchParam("model", "string", "The model version (Device.modelNumber), from its start."),
)


def search(user, request: SearchRequest) -> SearchResult:
    """Every device the filters keep, the protocol first, then model versions by id. A short
    list (one row per registered version): filtered and paged here, on the same keyset as
    every search (``paging``)."""
    rows = _rows(user)
    for param in SEARCH_PARAMS:
        rows = _matching(rows, param.name, request.all(param.name))
    rows = [row for row in rows if row.last_updated <= request.as_of]
    total = len(rows)
    if request.after is not None:
        rows = [row for row in rows if row.key > request.after]
    if request.summary_count or request.count == 0:
        return SearchResult(total=total, resources=[], patient_ids=[])
    page = rows[request.offset : request.offset + request.count]
    more = len(rows) > request.offset + request.count and bool(page)
    return SearchResult(
        total=total,
        resources=[to_fhir(row) for row in page],
        patient_ids=[],
        next_key=page[-1].key if more else None,
    )


HANDLER = ResourceHandler(
    type="Device",
    documentation="The software that proposes doses: each registered model version "
    "(model-<id>) and the stepwise protocol (stepwise-protocol-1), with its version, code "
    "version and feature set, and a link to its model card (contact, note). A proposal's "
    "requester and its Provenance agent reference these. Readable by every caller of the "
    "facade; no patient data.",
    read_action="models_ml.view_device",
    search_params=SEARCH_PARAMS,
    read=read,
    search=search,
    access_action="models_ml.view_device",
    sorts=(),
)
