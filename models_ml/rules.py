"""Who may read and own the model records (``core.authz``).

Staff read model versions and their cards: clinicians see the card a proposal's model has,
auditors what was deployed when; admins are the model owners (the owners' card, waivers,
promotion). Patients are refused: what they need about a proposal is in
``/api/v1/me/decisions/``. Model records hold no patient's data, so their reads are not
journalled as reads of patient data.
"""

from accounts.rules import is_admin, is_staff_member
from core import authz
from models_ml.models import ModelVersion

authz.define_visibility(
    "models_ml.model_version",
    ModelVersion,
    lambda user: (
        ModelVersion.objects.all() if is_staff_member(user) else ModelVersion.objects.none()
    ),
)
authz.define(
    "models_ml.read_model_records",
    is_staff_member,
    message="Only clinicians, admins and auditors may read model records.",
    sees="models_ml.model_version",
)
authz.define(
    "models_ml.own_models",
    is_admin,
    message="Only an admin (a model owner) may do this.",
    sees="models_ml.model_version",
)
