"""The Django admin is the operators' console. Who may open it is the controller's
(``accounts.use_admin_site``, declared in ``accounts/rules.py``), asked on every admin page."""

from django.contrib import admin
from django.http import HttpRequest

from core import authz


def _operators_only(request: HttpRequest) -> bool:
    return authz.can(request.user, "accounts.use_admin_site")


# Replaces the check on the one site instance (a plain function, called with the request only).
admin.site.has_permission = _operators_only  # type: ignore[method-assign]
