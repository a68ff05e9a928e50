"""Named actions on clinical-oversight objects, and who sees which of them (``core.authz``),
built on the patient-record reach (``patients.rules``).

Every refusal message here is the one the API, the portal and the FHIR facade show.
"""

from __future__ import annotations

from dataclasses import dataclass

import rules
from django.db.models import CharField, Q
from django.db.models.functions import Cast

from accounts.models import Role, User
from accounts.rules import (
    is_admin,
    is_auditor,
    is_caregiver,
    is_clinician,
    is_patient,
    is_service,
    is_staff_member,
)
from audit.models import AuditEvent
from clinicians.models import (
    Alert,
    Goal,
    GoalStatus,
    Message,
    Recommendation,
    RecommendationStatus,
    Visit,
)
from core import authz
from patients.models import Patient, Prescription
from patients.rules import (
    PATIENT,
    care_teams_of,
    granted_patients,
    is_own_record,
    is_under_care,
    reached_patients,
    reads,
    treats_patient,
)


@rules.predicate
def owns_patient_of(user, obj) -> bool:
    return obj is not None and is_own_record(user, obj.patient)


@rules.predicate
def treats_patient_of(user, obj) -> bool:
    return (
        obj is not None and Patient.objects.filter(care_teams_of(user), pk=obj.patient_id).exists()
    )


takes_part_in_loop = (is_patient & is_own_record) | treats_patient


def _patient_id(row) -> int:
    return row.patient_id


# --- who sees what -------------------------------------------------------------------------------

# What a patient is shown of the proposals about them: changes they may act on, and decisions
# made for them. Proposals under review, blocked or rejected stay with the care team (fail closed).
PATIENT_VISIBLE_STATUSES = (
    RecommendationStatus.DELIVERED,
    RecommendationStatus.ACKNOWLEDGED,
    RecommendationStatus.APPROVED,
    RecommendationStatus.MODIFIED,
)


def _recommendations(user):
    """A caregiver with the medications scope sees what the patient sees of them."""
    shown = Recommendation.objects.filter(patient__in=granted_patients(user, "medications"))
    patient_side = is_patient(user) or is_caregiver(user)
    return shown.filter(status__in=PATIENT_VISIBLE_STATUSES) if patient_side else shown


def _alerts(user):
    """Alerts are the care team's: a patient is told by their clinician, not by the alarm. A
    caregiver the patient chose reads them when the grant covers alerts."""
    if is_caregiver(user):
        return Alert.objects.filter(patient__in=granted_patients(user, "alerts"))
    if is_patient(user):  # their own, after a crisis too (issue 16)
        return Alert.objects.filter(patient__in=reached_patients(user))
    if not is_clinician(user):
        return Alert.objects.none()
    return Alert.objects.filter(patient__in=reached_patients(user))


def _visits(user):
    """A patient sees the visits a clinician confirmed (and their cancellation or completion);
    what the cadence merely proposes stays with the care team until a clinician confirms it. A
    caregiver sees what the patient sees, with the goals scope ("my goals and visits")."""
    visits = Visit.objects.filter(patient__in=granted_patients(user, "goals"))
    patient_side = is_patient(user) or is_caregiver(user)
    return visits.filter(confirmed_at__isnull=False) if patient_side else visits


authz.define_visibility(
    "clinicians.recommendation", Recommendation, _recommendations, patient_of=_patient_id
)
authz.define_visibility("clinicians.alert", Alert, _alerts, patient_of=_patient_id)
authz.define_visibility(
    "clinicians.goal",
    Goal,
    lambda user: Goal.objects.filter(patient__in=granted_patients(user, "goals")),
    patient_of=_patient_id,
)
authz.define_visibility(
    "clinicians.message",
    Message,
    lambda user: Message.objects.filter(patient__in=granted_patients(user, "messages")),
    patient_of=_patient_id,
)
authz.define_visibility("clinicians.visit", Visit, _visits, patient_of=_patient_id)


def _provenance(user):
    """The journal entries that are a recommendation's provenance (its creation, the decisions
    on it): auditors see all, others those of the recommendations they see."""
    events = AuditEvent.objects.filter(
        object_type="recommendation", action__in=("create", "decision"), outcome="success"
    )
    if is_auditor(user):
        return events
    shown = (
        _recommendations(user)
        .annotate(text_id=Cast("pk", output_field=CharField()))
        .values("text_id")
    )
    return events.filter(object_id__in=shown)


authz.define_visibility("clinicians.provenance", AuditEvent, _provenance)


def _order_provenance(user):
    """The journal entries that are an order's provenance (a prescription opened, or stopped):
    auditors see all, others those of the prescriptions they see (``patients.prescription``)."""
    events = AuditEvent.objects.filter(
        object_type="prescription", action__in=("create", "update"), outcome="success"
    )
    if is_auditor(user):
        return events
    shown = (
        authz.visible(user, "patients.prescription")
        .annotate(text_id=Cast("pk", output_field=CharField()))
        .values("text_id")
    )
    return events.filter(object_id__in=shown)


authz.define_visibility("clinicians.order_provenance", AuditEvent, _order_provenance)


def _practitioners(user):
    """The clinicians as FHIR ``Practitioner``\\ s: the care teams, auditors and EHR services see
    every clinician (name and identifiers only); a patient those of their care teams and those
    who decided a proposal they see or ordered a dose of theirs."""
    clinicians = User.objects.filter(role=Role.CLINICIAN)
    if is_clinician(user) or is_auditor(user) or is_service(user):
        return clinicians
    if not is_patient(user):
        return clinicians.none()
    own = reached_patients(user)
    acted = User.objects.filter(
        Q(care_team_memberships__care_team__patients__in=own)
        | Q(pk__in=_recommendations(user).values("decided_by"))
        | Q(pk__in=Prescription.objects.filter(patient__in=own).values("prescribed_by"))
    )
    return clinicians.filter(pk__in=acted.values("pk"))


authz.define_visibility("clinicians.practitioner", User, _practitioners)


# --- recommendations, alerts, bounds -------------------------------------------------------------

authz.define(
    "clinicians.view_recommendation",
    reads("medications"),
    message="Only the patient and their care team read these recommendations.",
    sees="clinicians.recommendation",
    reads="recommendation",
)
# The patient's own proposal whatever its status (a withdrawn one answers 409 with the reason,
# not 404), still never another patient's.
authz.define(
    "clinicians.acknowledge_recommendation",
    is_patient & owns_patient_of,
    message="Only the patient acknowledges their recommendation.",
    sees=PATIENT,
    subject=lambda recommendation: recommendation.patient,
)
authz.define(
    "clinicians.decide_recommendation",
    is_clinician & treats_patient_of,
    message="Only a clinician of the patient's care team decides.",
    sees="clinicians.recommendation",
)
authz.define(
    "clinicians.view_alert",
    reads("alerts"),
    message="Only the patient's care team reads their alerts.",
    sees="clinicians.alert",
    reads="alert",
)
authz.define(
    "clinicians.handle_alert",
    is_clinician & treats_patient_of,
    message="Only a clinician of the patient's care team handles its alerts.",
    sees="clinicians.alert",
)
authz.define(
    "clinicians.snooze_alerts",
    treats_patient & is_under_care,
    message="Only a clinician of the patient's care team snoozes their alerts.",
    sees=PATIENT,
)
authz.define(
    "clinicians.set_escalation_ladder",
    is_admin,
    message="Only administrators set a care team's escalation ladder.",
)
authz.define(
    "clinicians.set_bounds",
    treats_patient & is_under_care,
    message="Only a clinician of the patient's care team sets these.",
    sees=PATIENT,
)
authz.define(
    "clinicians.propose_bounds",
    is_admin,
    message="Only an administrator enters the bounds a clinician prescribed at enrolment.",
    sees="patients.administered",
)
authz.define(
    "clinicians.view_safety_bounds",
    reads(None),
    message="Only the patient and their care team read the safety bounds.",
    sees=PATIENT,
    reads="safety_bounds",
)
authz.define(
    "clinicians.view_alert_thresholds",
    reads(None),
    message="Only the patient and their care team read the alert thresholds.",
    sees=PATIENT,
    reads="alert_thresholds",
)
authz.define(
    "clinicians.view_chart",
    reads(None),
    message="Only the patient's care team reads the chart.",
    sees=PATIENT,
    reads="patient_chart",
)
authz.define(
    "clinicians.place_orders",
    is_clinician,
    message="Only a clinician of the patient's care team places orders (a patient changes a "
    "dose by acknowledging a proposal).",
)
# The clinicians as FHIR Practitioners (name and identifiers), narrowed by
# ``clinicians.practitioner``. No patient's data: never journalled as a read of one.
authz.define(
    "clinicians.view_practitioner",
    is_clinician | is_auditor | is_service | is_patient,
    message="Only care teams, auditors, EHR services and patients (their own clinicians) read "
    "practitioners.",
    sees="clinicians.practitioner",
    reads="practitioner",
)
# Provenance of the recommendations the caller sees (auditors: all); narrowed by the facade.
authz.define(
    "clinicians.view_provenance",
    reads(None),
    message="Only the patient, their care team and auditors read provenance.",
    reads="provenance",
)


# --- the patient–clinician loop (docs/patient-clinician-loop.md) ---------------------------------


@dataclass(frozen=True)
class GoalMove:
    """A goal and the status it would move to: who may move it depends on both."""

    goal: Goal
    status: str

    @property
    def patient(self) -> Patient:
        return self.goal.patient

    @property
    def patient_id(self) -> int:
        return self.goal.patient_id


@rules.predicate
def is_withdrawal_of_a_proposal(user, move: GoalMove) -> bool:
    return (
        move is not None
        and move.goal.status == GoalStatus.PROPOSED
        and move.status == GoalStatus.ABANDONED
    )


@rules.predicate
def sent_by_patient(user, message) -> bool:
    return message is not None and message.sender_role == "patient"


@rules.predicate
def sent_by_clinician(user, message) -> bool:
    return message is not None and message.sender_role == "clinician"


for _name, _reads, _visibility, _scope in (
    ("clinicians.view_goal", "goal", "clinicians.goal", "goals"),
    ("clinicians.view_message", "message", "clinicians.message", "messages"),
    ("clinicians.view_visit", "visit", "clinicians.visit", "goals"),
):
    authz.define(
        _name,
        reads(_scope),
        message="Only the patient and their care team read this.",
        sees=_visibility,
        reads=_reads,
    )

# On a Patient: who may write into their loop. The patient proposes a goal, a clinician of the
# care team sets one (``set_goal`` decides which by the actor's role).
authz.define(
    "clinicians.set_goal",
    takes_part_in_loop,
    message="Only the patient or their care team sets goals.",
    sees=PATIENT,
)
authz.define(
    "clinicians.send_message",
    takes_part_in_loop,
    message="Only the patient and their care team write in this thread.",
    sees=PATIENT,
)
authz.define(
    "clinicians.read_thread",
    takes_part_in_loop,
    message="Only the patient and their care team read this thread.",
    sees=PATIENT,
)
authz.define(
    "clinicians.schedule_visit",
    treats_patient & is_under_care,
    message="Only a clinician of the care team schedules visits.",
    sees=PATIENT,
)
# On a GoalMove, a Message, a Visit.
authz.define(
    "clinicians.change_goal_status",
    (is_clinician & treats_patient_of)
    | (is_patient & owns_patient_of & is_withdrawal_of_a_proposal),
    message="Only a clinician of the care team changes a goal; a patient may withdraw their own "
    "proposal.",
    sees="clinicians.goal",
    subject=lambda move: move.goal,
)
authz.define(
    "clinicians.read_message",
    (is_patient & owns_patient_of & sent_by_clinician)
    | (is_clinician & treats_patient_of & sent_by_patient),
    message="Only the receiving side marks a message read.",
    sees="clinicians.message",
)
authz.define(
    "clinicians.manage_visit",
    is_clinician & treats_patient_of,
    message="Only a clinician of the care team manages visits.",
    sees="clinicians.visit",
)

# --- the portal and live events (websockets) ------------------------------------------------

authz.define(
    "clinicians.use_portal",
    is_staff_member,
    message="The portal is for care teams; patients use the mobile app.",
)
authz.define(
    "clinicians.follow_care_team_events",
    is_clinician,
    message="Only clinicians follow their care teams' alerts.",
)
authz.define(
    "clinicians.follow_own_events",
    is_patient,
    message="Only a patient follows their own events.",
)
