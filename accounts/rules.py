"""Role predicates and the named actions that depend on role alone.

Object-level actions on patient data are declared in ``patients/rules.py`` (and in higher apps
for their own objects), built from these predicates. Anything not granted by a rule is denied.
"""

import rules

from accounts.models import Role


def _has_role(role: str):
    @rules.predicate(name=f"is_{role}")
    def predicate(user) -> bool:
        return bool(
            user is not None and user.is_authenticated and user.is_active and user.role == role
        )

    return predicate


is_patient = _has_role(Role.PATIENT)
is_clinician = _has_role(Role.CLINICIAN)
is_admin = _has_role(Role.ADMIN)
is_auditor = _has_role(Role.AUDITOR)

rules.add_perm("accounts.manage_users", is_admin)
rules.add_perm("accounts.manage_care_teams", is_admin)
rules.add_perm("audit.view_trail", is_auditor)
rules.add_perm("audit.export_trail", is_auditor)
