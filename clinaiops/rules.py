"""Named actions on the patient's copy of their record (``clinaiops.record_export``), declared in
``core.authz``: only the patient requests it, only the patient who requested it downloads it.
Everyone else does not see an export at all (404)."""

from __future__ import annotations

import rules

from accounts.rules import is_patient
from clinicians.models import RecordExport
from core import authz
from patients.rules import PATIENT, is_own_record


@rules.predicate
def requested_it(user, export) -> bool:
    return export is not None and export.requested_by_id == user.pk


authz.define_visibility(
    "clinaiops.record_export",
    RecordExport,
    lambda user: RecordExport.objects.filter(patient__user_id=user.pk, requested_by_id=user.pk),
    patient_of=lambda export: export.patient_id,
)
authz.define(
    "clinaiops.request_record_export",
    is_patient & is_own_record,
    message="Only the patient requests a copy of their own record.",
    sees=PATIENT,
)
authz.define(
    "clinaiops.view_record_export",
    is_patient & requested_it,
    message="Only the patient who requested this copy sees it.",
    sees="clinaiops.record_export",
)
