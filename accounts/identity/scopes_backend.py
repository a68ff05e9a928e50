"""django-oauth-toolkit's view of our scopes (``SCOPES_BACKEND_CLASS``). Which scopes a request may
be granted is decided by the validator with ``accounts.identity.scopes``; this only describes
them (the consent page, the discovery documents)."""

from __future__ import annotations

from oauth2_provider.scopes import BaseScopes

from accounts.identity import scopes


class _Descriptions(dict):
    """Every static scope, and a description made on demand for any SMART scope."""

    def __missing__(self, scope: str) -> str:
        return scopes.describe(scope)


class SmartScopesBackend(BaseScopes):
    def get_all_scopes(self) -> dict[str, str]:
        return _Descriptions(scopes.STATIC_SCOPES)

    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        registration = getattr(application, "registration", None)
        return registration.allowed_scopes.split() if registration is not None else []

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        return []
