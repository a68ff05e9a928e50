"""Error answers a view documents itself, in ``extend_schema(responses=...)``: those peculiar to
it. Their body (the API's one error shape) and the errors every operation shares (400, 401, 403,
404, 415, 429) are added to the OpenAPI document by ``clinaiops.api.schema``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

CONFLICT = OpenApiResponse(
    description="The object's current state does not allow this (e.g. already acknowledged; "
    "code invalid_transition). A blocked or stale change carries the rules' reasons."
)
BATCH_TOO_LARGE = OpenApiResponse(
    description="More items than a batch holds (code batch_too_large); nothing was stored."
)
