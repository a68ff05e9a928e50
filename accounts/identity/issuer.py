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


def from_uri(uri: str) -> str:
    """The same for oauthlib's request, which carries the absolute URI it was built from."""
    if settings.OIDC_ISSUER:
        return settings.OIDC_ISSUER
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def endpoint(request: HttpRequest, path: str) -> str:
    return from_request(request) + path
