"""The issuer: the URL every discovery document, ID token and SMART configuration names. The
``OIDC_ISSUER`` setting when set (a deployment behind a proxy that rewrites Host), otherwise the
scheme and host of the request (Django honours X-Forwarded-Proto through
``SECURE_PROXY_SSL_HEADER``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest


def from_request(request: HttpRequest) -> str:
    if settings.OIDC_ISSUER:
        return settings.OIDC_ISSUER
    return request.build_absolute_uri("/").rstrip("/")


def from_oauthlib(request) -> str:
    """The same for oauthlib's request: django-oauth-toolkit gives it the path and Django's
    META as headers (``HTTP_HOST``, and ``X_DJANGO_OAUTH_TOOLKIT_SECURE`` when the request was
    secure); a request built here carries an absolute URI instead."""
    if settings.OIDC_ISSUER:
        return settings.OIDC_ISSUER
    parts = urlsplit(getattr(request, "uri", "") or "")
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    headers = getattr(request, "headers", None) or {}
    host = headers.get("HTTP_HOST") or headers.get("SERVER_NAME", "")
    scheme = "https" if headers.get("X_DJANGO_OAUTH_TOOLKIT_SECURE") == "1" else "http"
    return f"{scheme}://{host}"


def endpoint_of_oauthlib(request) -> str:
    """The absolute URL oauthlib's request was made to, without its query."""
    path = urlsplit(getattr(request, "uri", "") or "").path
    return from_oauthlib(request) + path


def endpoint(request: HttpRequest, path: str) -> str:
    return from_request(request) + path
