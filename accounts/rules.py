"""Role predicates, and the named actions that depend on role alone (``core.authz``).

Object-level actions on patient data are declared in ``patients/rules.py`` (and in higher apps
for their own objects), built from these predicates. Anything not granted by a rule is denied.
The audit journal's actions are declared here: ``audit`` sits below ``accounts`` and cannot
name roles, and its services ask the controller by action name.
"""

import rules

from accounts.models import Role
from audit.models import AuditExport
from core import authz


def _has_role(role: str):
    @rules.predicate(name=f"is_{role}")
    def predicate(user) -> bool:
        return bool(authz.is_signed_in(user) and user.role == role)

    return predicate


is_patient = _has_role(Role.PATIENT)
is_clinician = _has_role(Role.CLINICIAN)
is_admin = _has_role(Role.ADMIN)
is_auditor = _has_role(Role.AUDITOR)
is_service = _has_role(Role.SERVICE)
is_model_owner = _has_role(Role.MODEL_OWNER)
# Reads what a patient granted (``patients.rules``), writes nothing.
is_caregiver = _has_role(Role.CAREGIVER)
is_signed_in = rules.predicate(authz.is_signed_in, name="is_signed_in")
is_staff_member = is_clinician | is_admin | is_auditor | is_model_owner


@rules.predicate
def is_operator(user) -> bool:
    """Django's own flag for the admin console (``is_staff``; not a clinical role)."""
    return authz.is_signed_in(user) and user.is_staff


@rules.predicate
def is_superuser(user) -> bool:
    return authz.is_signed_in(user) and user.is_superuser


authz.define("accounts.manage_users", is_admin, message="Only administrators manage user accounts.")
authz.define(
    "accounts.manage_care_teams", is_admin, message="Only administrators manage care teams."
)
authz.define(
    "accounts.sign_out",
    is_signed_in,
    message="Only a signed-in account can sign out.",
)
authz.define(
    "accounts.launch_smart_app",
    is_clinician,
    message="Only clinicians open SMART apps on a patient.",
)
authz.define(
    "accounts.manage_oauth_clients",
    is_admin,
    message="Only administrators register OAuth clients.",
)
authz.define(
    "accounts.use_admin_site", is_operator, message="Only operators use the admin console."
)

# --- the audit journal -------------------------------------------------------------------------
# The people who run the system (admins, superusers included) are not the people who audit it.

authz.define(
    "audit.view_trail",
    is_auditor,
    message="Only auditors read the audit trail.",
    reads="audit_event",
)
authz.define("audit.export_trail", is_auditor, message="Only auditors may export the audit trail.")
# Auditors share one export list (compliance is a team function); nobody else sees any.
authz.define_visibility(
    "audit.export",
    AuditExport,
    lambda user: AuditExport.objects.all() if is_auditor(user) else AuditExport.objects.none(),
)
