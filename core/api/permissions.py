"""DRF's permission hooks, delegated to the authorization controller (``core.authz``): a view
declares *which* named action guards it, never *who* may do it.

- ``allowed_to(action)`` — a permission class for a whole view (``has_permission``): the rule
  asked without an object (a role rule, such as "auditors export the trail"). Refused with the
  action's message (401 for an anonymous caller, as DRF does).
- ``ObjectActions`` — the view's object checks (``get_object`` and ``check_object_permissions``
  call it): ``view.object_actions`` maps the viewset action (or, on a plain ``APIView``, the
  HTTP method) to the named action authorized on the object. It runs where DRF runs object
  checks — before the request body is read — so a refusal answers before a malformed body does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.permissions import BasePermission

from core import authz

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


def allowed_to(action: str) -> type[BasePermission]:
    class AllowedTo(BasePermission):
        @property
        def message(self) -> str:
            return authz.message_of(action)

        def has_permission(self, request: Request, view: APIView) -> bool:
            return authz.can(request.user, action)

    AllowedTo.__name__ = AllowedTo.__qualname__ = f"AllowedTo[{action}]"
    return AllowedTo


class ObjectActions(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return True

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        actions: dict[str, str] = getattr(view, "object_actions", {})
        name = actions.get(getattr(view, "action", None) or "") or actions.get(request.method or "")
        if name is not None:
            authz.authorize(request.user, name, obj)  # NotFound / Forbidden, with the message
        return True
