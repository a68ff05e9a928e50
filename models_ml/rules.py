"""Who may read and own the model records (``core.authz``).

Staff read model versions and their cards: clinicians see the card a proposal's model has,
auditors what was deployed when; model owners (the ``model_owner`` role) own them: the owners'
card and workspace, waivers, promotion and rollback. Administrators do not: the people who run
the system are not the people who decide which model treats patients. Patients are refused:
what they need about a proposal is in ``/api/v1/me/decisions/``. Model records hold no
patient's data, so their reads are not journalled as reads of patient data.
"""

from accounts.rules import (
    is_auditor,
    is_clinician,
    is_model_owner,
    is_patient,
    is_service,
    is_staff_member,
)
from core import authz
from core.errors import Forbidden, NotFound
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
    message="Only clinicians, admins, auditors and model owners may read model records.",
    sees="models_ml.model_version",
)
# The models as FHIR ``Device``\\ s (version, software, where the model card is): every caller
# of the FHIR facade reads them — a proposal names its model, and a reference must resolve.
# The card itself stays with staff (``models_ml.read_model_records``).
reads_devices = is_patient | is_clinician | is_auditor | is_service
authz.define_visibility(
    "models_ml.device",
    ModelVersion,
    lambda user: ModelVersion.objects.all() if reads_devices(user) else ModelVersion.objects.none(),
)
authz.define(
    "models_ml.view_device",
    reads_devices,
    message="Only callers of the FHIR facade (patients, care teams, auditors, EHR services) "
    "read the models as devices.",
    sees="models_ml.device",
    reads="device",
)
authz.define(
    "models_ml.own_models",
    is_model_owner,
    message="Only a model owner may do this.",
    sees="models_ml.model_version",
)

# --- waivers -----------------------------------------------------------------------------------
# A waiver lets a model past a check it failed, on a person's written reason kept with their
# name: of a waivable gate at promotion (``models_ml.registry.promote``), of differential privacy
# for training on real patients (``models_ml.private_model.nonprivate_waiver``).

WAIVE_GATES = "models_ml.waive_gates"
WAIVE_PRIVACY = "models_ml.waive_privacy"

authz.define(
    WAIVE_GATES,
    is_model_owner,
    message="Only a model owner may waive a gate.",
    sees="models_ml.model_version",
)
authz.define(
    WAIVE_PRIVACY,
    is_model_owner,
    message="Only a model owner may waive differential privacy.",
)


def is_allowed_to_waive(actor, action: str, obj=None) -> bool:
    """Whether ``actor`` may sign the waiver ``action`` names (on ``obj``). The system acting on
    its own passes every action of the controller, but a waiver is a person's decision: it is
    refused here before the controller is asked."""
    if not authz.is_signed_in(actor):
        return False
    try:
        authz.authorize(actor, action, obj)
    except (Forbidden, NotFound):
        return False
    return True
