"""Pages load nothing from outside the server (#13): the API docs' Swagger UI and Redoc come from
the app's own assets, and static files are served in production mode (DEBUG off) — compressed
and cacheable — so the admin console is styled without a separate web server."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_api_docs_load_no_script_or_style_from_elsewhere(path):
    page = Client().get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert not EXTERNAL.findall(html), EXTERNAL.findall(html)
    assert "/static/" in html


def test_static_files_are_served_with_debug_off(tmp_path, settings):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", "-v", "0")
    with override_settings(DEBUG=False):
        # WhiteNoise indexes STATIC_ROOT when the middleware starts: a fresh client and handler.
        answer = Client().get("/static/admin/css/base.css", HTTP_ACCEPT_ENCODING="gzip")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/css")
    assert "max-age" in answer.get("Cache-Control", "")
