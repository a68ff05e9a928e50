"""Model alerts from opening to closing, through the API a model owner uses: acknowledged,
closed with a reason, every step audited; refused to every other role; shown by ``model_status``; a
version's drift reports readable."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from core.errors import DomainError, Forbidden
from models_ml import alerts
from models_ml.models import DatasetSnapshot, DriftReport, ModelAlert, ModelVersion, Stage
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/models/alerts/"


def make_version(name: str = "dose-gbr-101", stage: str = Stage.PRODUCTION) -> ModelVersion:
    dataset, _ = DatasetSnapshot.objects.get_or_create(
        content_hash="c" * 64,
        defaults={
            "row_count": 1000,
            "patient_count": 100,
            "feature_set": "home_bp_v1",
            "privacy_budget_epsilon": 6.0,
            "delta": 1e-4,
        },
    )
    return ModelVersion.objects.create(
        version=name,
        kind="sklearn_gbr",
        stage=stage,
        artifact_path="/nowhere.skops",
        artifact_sha256="0" * 64,
        feature_set="home_bp_v1",
        feature_names=[],
        dataset=dataset,
        code_version="test",
    )


@pytest.fixture
def version():
    return make_version()


@pytest.fixture
def alert(version):
    return alerts.raise_alert(
        version,
        kind="drift",
        message="weekly drift in mean_systolic_7d",
        evidence={"drifted": ["mean_systolic_7d"]},
        window="weekly",
    )


@pytest.fixture
def admin(model_owner):
    return bearer_client(model_owner)


def events_for(alert: ModelAlert):
    return AuditEvent.objects.filter(object_type="model_alert", object_id=str(alert.pk)).order_by(
        "sequence"
    )


def test_monitoring_opens_one_alert_per_kind_and_version_until_it_is_closed(version, alert):
    again = alerts.raise_alert(version, kind="drift", message="again", evidence={})
    assert again is None
    assert ModelAlert.objects.filter(kind="drift").count() == 1
    opened = events_for(alert).get()
    assert opened.action == "create" and opened.component == "models_ml.monitoring"
    assert alert.status == "open" and alert.is_open


def test_admin_lists_alerts_filtered_by_status_and_version(admin, version, alert):
    other = make_version("dose-gbr-102", stage=Stage.RETIRED)
    alerts.raise_alert(other, kind="outcome_bias", message="bias", evidence={})

    body = admin.get(ALERTS).json()
    assert body["count"] == 2
    mine = admin.get(ALERTS, {"version": version.version}).json()["results"]
    assert [(row["id"], row["version"], row["kind"]) for row in mine] == [
        (alert.pk, version.version, "drift")
    ]
    assert mine[0]["status"] == "open" and mine[0]["is_in_force"] is True
    assert mine[0]["evidence"] == {"drifted": ["mean_systolic_7d"]}
    assert admin.get(ALERTS, {"status": "closed"}).json()["count"] == 0
    bad = admin.get(ALERTS, {"status": "gone"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"


def test_acknowledge_then_close_with_a_reason_each_step_audited(admin, model_owner, alert):
    response = admin.post(f"{ALERTS}{alert.pk}/acknowledge/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "acknowledged" and body["is_in_force"] is True
    assert body["acknowledged_by"] == model_owner.username and body["acknowledged_at"]

    reason = "Reference rebuilt after the cuff firmware update; shift explained."
    response = admin.post(f"{ALERTS}{alert.pk}/close/", {"reason": reason}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "closed" and body["is_in_force"] is False
    assert body["closed_by"] == model_owner.username and body["close_reason"] == reason

    alert.refresh_from_db()
    assert (alert.status, alert.is_open, alert.close_reason) == ("closed", False, reason)
    created, acknowledged, closed = events_for(alert)
    assert created.action == "create"
    assert acknowledged.actor_id == model_owner.pk and acknowledged.action == "update"
    assert acknowledged.changes == {"status": {"old": "open", "new": "acknowledged"}}
    assert closed.actor_id == model_owner.pk
    assert closed.changes["status"] == {"old": "acknowledged", "new": "closed"}
    assert closed.changes["close_reason"]["new"] == reason


def test_an_open_alert_may_be_closed_without_acknowledging_first(admin, model_owner, alert):
    response = admin.post(f"{ALERTS}{alert.pk}/close/", {"reason": "false alarm"}, format="json")
    assert response.status_code == 200
    alert.refresh_from_db()
    assert alert.acknowledged_by == model_owner and alert.closed_by == model_owner


def test_closing_needs_a_reason(admin, alert):
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        response = admin.post(f"{ALERTS}{alert.pk}/close/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert response.json()["errors"][0]["field"] == "reason"
    unknown = admin.post(f"{ALERTS}{alert.pk}/close/", {"reason": "x", "why": "y"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "why"
    alert.refresh_from_db()
    assert alert.status == "open"
    assert events_for(alert).count() == 1


def test_illegal_transitions_are_refused_with_409(admin, alert):
    assert admin.post(f"{ALERTS}{alert.pk}/acknowledge/").status_code == 200
    again = admin.post(f"{ALERTS}{alert.pk}/acknowledge/")
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "invalid_transition"
    assert "only an open alert" in again.json()["errors"][0]["message"]
    assert (
        admin.post(f"{ALERTS}{alert.pk}/close/", {"reason": "fixed"}, format="json").status_code
        == 200
    )
    for path, body in (("close/", {"reason": "again"}), ("acknowledge/", None)):
        response = admin.post(f"{ALERTS}{alert.pk}/{path}", body, format="json")
        assert response.status_code == 409, path
        assert response.json()["errors"][0]["code"] == "invalid_transition"
    assert events_for(alert).count() == 3  # create, acknowledge, close: no more


def test_an_alert_that_does_not_exist_is_404(admin, alert):
    assert admin.post(f"{ALERTS}{alert.pk + 1000}/acknowledge/").status_code == 404
    response = admin.post(f"{ALERTS}{alert.pk + 1000}/close/", {"reason": "x"}, format="json")
    assert response.status_code == 404


def test_only_model_owners_see_or_handle_model_alerts(
    alert, version, clinician_a, patient_a, auditor, admin_user, api_client
):
    DriftReport.objects.create(
        model_version=version, monitor="drift", verdict="ok", window_end=timezone.now()
    )
    routes = [
        ("get", ALERTS, None),
        ("post", f"{ALERTS}{alert.pk}/acknowledge/", None),
        ("post", f"{ALERTS}{alert.pk}/close/", {"reason": "not mine to close"}),
        ("get", f"/api/v1/models/{version.version}/drift-reports/", None),
    ]
    for user in (clinician_a, patient_a.user, auditor, admin_user):
        client = bearer_client(user)
        for method, path, body in routes:
            response = getattr(client, method)(path, body, format="json")
            assert response.status_code == 403, (user.role, path, response.status_code)
    for method, path, body in routes:
        assert getattr(api_client, method)(path, body, format="json").status_code == 401
    alert.refresh_from_db()
    assert alert.status == "open" and events_for(alert).count() == 1


def test_the_services_check_the_role_and_the_reason_themselves(alert, clinician_a, model_owner):
    with pytest.raises(Forbidden):
        alerts.acknowledge(alert, clinician_a)
    with pytest.raises(Forbidden):
        alerts.close(alert, clinician_a, "reason")
    with pytest.raises(DomainError) as refused:
        alerts.close(alert, model_owner, "  ")
    assert refused.value.field == "reason"


def test_a_versions_drift_reports_are_readable_newest_first(admin, version):
    now = timezone.now()
    for monitor, verdict in (("drift", "insufficient"), ("outcome", "ok"), ("drift", "alarm")):
        DriftReport.objects.create(
            model_version=version,
            monitor=monitor,
            verdict=verdict,
            window_start=now - timezone.timedelta(days=7),
            window_end=now,
            live_rows=40,
            reference_rows=877,
            report={"summary": f"{monitor} {verdict}"},
        )
    rows = admin.get(f"/api/v1/models/{version.version}/drift-reports/").json()["results"]
    assert [(r["monitor"], r["verdict"]) for r in rows] == [
        ("drift", "alarm"),
        ("outcome", "ok"),
        ("drift", "insufficient"),
    ]
    assert rows[0]["live_rows"] == 40 and rows[0]["report"] == {"summary": "drift alarm"}
    drift_only = admin.get(
        f"/api/v1/models/{version.version}/drift-reports/", {"monitor": "drift"}
    ).json()
    assert drift_only["count"] == 2
    assert admin.get("/api/v1/models/no-such-model/drift-reports/").status_code == 404


def test_the_endpoints_are_in_the_openapi_document(admin):
    schema = admin.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = json.loads(schema.content)["paths"]
    assert {"get"} <= set(paths["/api/v1/models/alerts/"])
    assert "post" in paths["/api/v1/models/alerts/{alert_id}/acknowledge/"]
    close = paths["/api/v1/models/alerts/{alert_id}/close/"]["post"]
    assert {"200", "400", "403", "404", "409"} <= set(close["responses"])
    assert "get" in paths["/api/v1/models/{version}/drift-reports/"]


def test_model_status_shows_the_alerts_in_force(version, alert, model_owner):
    other = make_version("dose-gbr-102", stage=Stage.RETIRED)
    closed = alerts.raise_alert(other, kind="overrides", message="overrides", evidence={})
    alerts.close(closed, model_owner, "clinicians were retrained on the new bounds")
    alerts.raise_alert(version, kind="outcome_bias", message="mean error +8.1 mmHg", evidence={})
    alerts.acknowledge(alert, model_owner)
    DriftReport.objects.create(
        model_version=version, monitor="drift", verdict="alarm", window_end=timezone.now()
    )

    out = StringIO()
    call_command("model_status", stdout=out)
    text = out.getvalue()
    assert f"ALERT #{alert.pk} drift ACKNOWLEDGED" in text
    assert f"acknowledged by {model_owner.username}" in text
    assert "outcome_bias OPEN" in text and "mean error +8.1 mmHg" in text
    assert "overrides" not in text.split("dose-gbr-102")[1]  # closed: not shown
    assert "monitoring: drift=alarm" in text

    out = StringIO()
    call_command("model_status", "--json", stdout=out)
    rows = {row["version"]: row for row in json.loads(out.getvalue())["models"]}
    assert [(a["kind"], a["status"]) for a in rows[version.version]["alerts"]] == [
        ("drift", "acknowledged"),
        ("outcome_bias", "open"),
    ]
    assert rows["dose-gbr-102"]["alerts"] == []
    assert rows[version.version]["monitoring"]["drift"]["verdict"] == "alarm"
