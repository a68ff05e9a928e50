"""The API's common behaviour: one error shape, body limits, health, schema."""

import pytest
from django.test import override_settings

from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


def test_unknown_api_path_is_404_in_the_error_shape(api_client):
    response = api_client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_oversized_body_is_413_without_parsing(api_client, settings):
    settings.API_MAX_BODY_BYTES = 1024
    response = api_client.post(
        "/api/v1/auth/token/",
        data='{"username": "' + "a" * 2048 + '"}',
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "request_too_large"


def test_non_json_content_type_is_415(api_client):
    response = api_client.post("/api/v1/auth/token/", data="username=a", content_type="text/plain")
    assert response.status_code == 415
    assert "errors" in response.json()


def test_method_not_allowed_is_405_in_the_error_shape(clinician_a):
    response = bearer_client(clinician_a).delete("/api/v1/patients/")
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "method_not_allowed"


def test_healthz_reports_ok_without_auth(api_client):
    response = api_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_healthz_is_503_when_the_broker_is_unreachable_and_leaks_nothing(api_client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = api_client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body == {"status": "unavailable", "checks": {"database": "ok", "broker": "unavailable"}}
    assert "127.0.0.1" not in response.content.decode()


def test_openapi_schema_lists_the_public_paths(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/auth/token/", "/api/v1/patients/", "/api/v1/patients/{id}/"):
        assert path in paths


def test_the_openapi_document_is_valid_openapi_without_warnings(tmp_path):
    """What client generators read must validate: drf-spectacular checks the document against
    the OpenAPI 3 schema and fails on any warning (e.g. a view it cannot describe)."""
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/readings/" in out.read_text()


def test_api_docs_page_renders(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200


def test_every_response_carries_a_request_id(api_client):
    response = api_client.get("/healthz", HTTP_X_REQUEST_ID="abcdef0123456789")
    assert response["X-Request-ID"] == "abcdef0123456789"
    assert len(api_client.get("/healthz", HTTP_X_REQUEST_ID="bad id!")["X-Request-ID"]) == 32
