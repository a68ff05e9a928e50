"""Reads of patient data over the API, through the controller's ``authorize_read`` (which
journals them): one read event per answer, listing the patients it showed (docs/architecture.md).

A viewset names its read action (``read_action``, or ``read_actions`` per viewset action);
every 200 answer is then journalled as that action's read of the patients in the rows shown
— lists, single objects and the answers of POST actions that return a patient's row alike. A
view that shows one patient's data it fetched itself (``/patients/{id}/readings/``) calls
``authorize_read(obj)`` before it reads, which decides (404/403) and journals at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import authz

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    _ViewBase = APIView  # the mixin is only ever mixed into a DRF view
else:
    _ViewBase = object


class AuthorizedReadMixin(_ViewBase):
    read_action = "patients.view_patient"
    read_actions: dict[str, str] = {}  # viewset action -> read action, where it differs
    read_patient_key = "id"  # the field of each row that holds the patient's id

    def read_action_now(self) -> str:
        return self.read_actions.get(getattr(self, "action", "") or "", self.read_action)

    def authorize_read(self, obj: Any) -> None:
        """This answer shows ``obj``'s patient's data: decided and journalled now, once."""
        authz.authorize_read(
            self.request.user, self.read_action_now(), obj, detail=self._read_detail()
        )
        self._read_journalled = True

    def shows_patients(self, patient_ids: list[int]) -> None:
        """This answer shows data of these patients (not its rows': a computed answer)."""
        self._shown_patient_ids = patient_ids

    def _read_detail(self) -> dict[str, Any]:
        return {"view": getattr(self, "action", "") or ""}

    def _patient_ids_in(self, payload: Any) -> list[int]:
        rows = payload if isinstance(payload, list) else [payload]
        return sorted({row[self.read_patient_key] for row in rows if self.read_patient_key in row})

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        data = getattr(response, "data", None)
        if (
            response.status_code == 200
            and data is not None
            and not getattr(self, "_read_journalled", False)
        ):
            patient_ids = getattr(self, "_shown_patient_ids", None)
            if patient_ids is None:
                rows = data["results"] if isinstance(data, dict) and "results" in data else data
                patient_ids = self._patient_ids_in(rows)
            authz.authorize_read(
                request.user, self.read_action_now(), shown=patient_ids, detail=self._read_detail()
            )
            self._read_journalled = True
        return response
