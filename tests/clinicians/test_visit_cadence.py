"""The visit cadence: the rule's cases with their numbers (docs/patient-clinician-loop.md),
the service that keeps one proposed visit in step, and the visits API."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from clinicians.loop.cadence import CadenceInputs, next_visit
from clinicians.loop.visits import CADENCE, cancel_visit, plan_next_visit
from clinicians.models import Alert, Visit, VisitStatus
from clinicians.tasks import plan_visits
from patients.models import Patient, Prescription
from tests.conftest import bearer_client
from tests.factories import ReadingFactory

TODAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 12, tzinfo=timezone.get_fixed_timezone(0))


def inputs(**changes) -> CadenceInputs:
    values = {
        "today": TODAY,
        "anchor_on": TODAY - timedelta(days=10),
        "target_systolic_mmhg": 130,
        "target_diastolic_mmhg": 80,
        "mean_systolic_7d_mmhg": 122.0,
        "mean_diastolic_7d_mmhg": 76.0,
        "bp_count_7d": 12,
        "min_readings_7d": 6,
    }
    return CadenceInputs(**{**values, **changes})


# --- the rule -----------------------------------------------------------------------------------


def test_controlled_patient_is_seen_every_3_months_from_the_last_visit():
    decision = next_visit(inputs())
    assert decision.reason == "controlled" and decision.interval_days == 90
    assert decision.due_on == TODAY - timedelta(days=10) + timedelta(days=90)
    assert "ACC/AHA 2017" in decision.source


def test_recent_dose_change_brings_the_visit_to_4_weeks_after_the_change():
    changed = NOON - timedelta(days=5)
    decision = next_visit(inputs(last_regimen_change_at=changed))
    assert decision.reason == "regimen_change" and decision.interval_days == 28
    assert decision.due_on == changed.date() + timedelta(days=28)


def test_a_dose_change_older_than_4_weeks_no_longer_counts():
    decision = next_visit(inputs(last_regimen_change_at=NOON - timedelta(days=40)))
    assert decision.reason == "controlled"


def test_open_crisis_means_a_visit_within_3_days():
    decision = next_visit(
        inputs(crisis_opened_at=NOON, last_regimen_change_at=NOON - timedelta(days=2))
    )
    assert decision.reason == "crisis" and decision.due_on == TODAY + timedelta(days=3)
    assert decision.is_urgent


def test_open_hypotension_means_a_visit_within_a_week():
    decision = next_visit(inputs(hypotension_opened_at=NOON))
    assert decision.reason == "hypotension" and decision.due_on == TODAY + timedelta(days=7)


def test_uncontrolled_or_unmeasured_patient_is_seen_monthly():
    above = next_visit(inputs(mean_systolic_7d_mmhg=142.0, mean_diastolic_7d_mmhg=88.0))
    at_target = next_visit(inputs(mean_systolic_7d_mmhg=130.0))  # "< 130" is the goal
    too_few = next_visit(inputs(bp_count_7d=3))
    for decision in (above, at_target, too_few):
        assert decision.reason == "not_controlled" and decision.interval_days == 28
        assert decision.due_on == TODAY - timedelta(days=10) + timedelta(days=28)
    assert "Only 3 home readings" in too_few.explanation


def test_an_overdue_visit_is_proposed_for_tomorrow():
    decision = next_visit(inputs(anchor_on=TODAY - timedelta(days=200)))
    assert decision.due_on == TODAY + timedelta(days=1) and "Overdue" in decision.explanation
    assert decision.nominal_due_on == TODAY - timedelta(days=110) and decision.is_overdue
    # The nominal day and the text do not depend on "today": the rule's answer is stable.
    next_day = next_visit(inputs(today=TODAY + timedelta(days=1), anchor_on=TODAY - timedelta(200)))
    assert next_day.nominal_due_on == decision.nominal_due_on
    assert next_day.explanation == decision.explanation


def test_an_open_alert_names_the_visit_even_behind_an_overdue_routine_day():
    decision = next_visit(inputs(anchor_on=TODAY - timedelta(days=200), crisis_opened_at=NOON))
    assert decision.reason == "crisis" and decision.due_on == TODAY + timedelta(days=1)
    assert decision.nominal_due_on == TODAY - timedelta(days=110)
    assert "Brought forward" in decision.explanation


def test_a_visit_due_today_is_due_today_not_overdue():
    decision = next_visit(inputs(anchor_on=TODAY - timedelta(days=28), bp_count_7d=3))
    assert decision.reason == "not_controlled"
    assert decision.due_on == decision.nominal_due_on == TODAY
    assert not decision.is_overdue and "Overdue" not in decision.explanation


def test_urgent_intervals_count_from_a_visit_after_the_alert():
    opened = NOON - timedelta(days=10)
    after = next_visit(inputs(crisis_opened_at=opened, last_visit_on=TODAY - timedelta(days=1)))
    assert after.reason == "crisis" and after.nominal_due_on == TODAY + timedelta(days=2)
    before = next_visit(inputs(crisis_opened_at=NOON, last_visit_on=TODAY - timedelta(days=5)))
    assert before.nominal_due_on == TODAY + timedelta(days=3)
    low = next_visit(inputs(hypotension_opened_at=opened, last_visit_on=TODAY - timedelta(days=2)))
    assert low.reason == "hypotension" and low.nominal_due_on == TODAY + timedelta(days=5)


def test_an_unattended_visit_is_named_in_the_explanation():
    decision = next_visit(inputs(unattended_visit_on=TODAY - timedelta(days=3)))
    assert f"visit of {(TODAY - timedelta(days=3)).isoformat()} was not completed" in (
        decision.explanation
    )


# --- the service --------------------------------------------------------------------------------


def controlled(patient, *, days_since_change: int = 60) -> None:
    now = timezone.now()
    Prescription.objects.create(
        patient=patient,
        medication="amlodipine",
        dose_mg=Decimal("5"),
        started_at=now - timedelta(days=days_since_change),
        source="import",
    )
    for hours in range(0, 7 * 24, 12):
        ReadingFactory(
            patient=patient,
            systolic_mmhg=121,
            diastolic_mmhg=76,
            measured_at=now - timedelta(hours=hours + 1),
        )


@pytest.mark.django_db
def test_cadence_proposes_a_visit_once_and_is_idempotent(patient_a):
    controlled(patient_a)
    plan = plan_next_visit(patient_a.pk, actor=CADENCE)
    assert plan.outcome == "created" and plan.decision.reason == "controlled"
    visit = plan.visit
    assert visit.status == VisitStatus.PROPOSED and visit.interval_days == 90
    assert timezone.localdate(visit.scheduled_at) == timezone.localdate() + timedelta(days=90)
    event = AuditEvent.objects.get(object_type="visit")
    assert event.actor_id is None and event.action == "create"
    assert "clinicians.visit_cadence" in event.entry
    assert plan_next_visit(patient_a.pk, actor=CADENCE).outcome == "unchanged"
    assert (
        Visit.objects.count() == 1 and AuditEvent.objects.filter(object_type="visit").count() == 1
    )


@pytest.mark.django_db
def test_a_crisis_moves_the_proposal_to_within_days_and_stability_moves_it_back(patient_a):
    controlled(patient_a)
    plan_next_visit(patient_a.pk, actor=CADENCE)
    crisis = Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="x", opened_at=timezone.now()
    )
    plan = plan_next_visit(patient_a.pk, actor=CADENCE)
    assert plan.outcome == "rescheduled" and plan.decision.reason == "crisis"
    assert timezone.localdate(plan.visit.scheduled_at) == timezone.localdate() + timedelta(days=3)
    crisis.status = "resolved"
    crisis.save()
    assert plan_next_visit(patient_a.pk, actor=CADENCE).decision.reason == "controlled"
    assert Visit.objects.filter(status="proposed").count() == 1


@pytest.mark.django_db
def test_a_recent_dose_change_proposes_a_visit_4_weeks_after_it(patient_a):
    controlled(patient_a, days_since_change=3)
    plan = plan_next_visit(patient_a.pk, actor=CADENCE)
    assert plan.decision.reason == "regimen_change"
    assert timezone.localdate(plan.visit.scheduled_at) == timezone.localdate() + timedelta(days=25)


@pytest.mark.django_db
def test_a_confirmed_visit_before_the_due_day_covers_the_proposal(clinician_a, patient_a):
    controlled(patient_a)
    proposal = plan_next_visit(patient_a.pk, actor=CADENCE).visit
    booked = bearer_client(clinician_a).post(
        "/api/v1/visits/",
        {
            "patient": patient_a.pk,
            "scheduled_at": (timezone.now() + timedelta(days=20)).isoformat(),
        },
        format="json",
    )
    assert booked.status_code == 201 and booked.json()["status"] == "confirmed"
    proposal.refresh_from_db()
    assert proposal.status == VisitStatus.CANCELLED
    assert plan_next_visit(patient_a.pk, actor=CADENCE).outcome == "covered"
    assert not Visit.objects.filter(status="proposed").exists()


@pytest.mark.django_db
def test_a_proposal_the_clinician_cancelled_is_not_proposed_again(clinician_a, patient_a):
    controlled(patient_a)
    proposal = plan_next_visit(patient_a.pk, actor=CADENCE).visit
    client = bearer_client(clinician_a)
    no_reason = client.post(f"/api/v1/visits/{proposal.pk}/cancel/", {}, format="json")
    assert no_reason.status_code == 400 and no_reason.json()["errors"][0]["field"] == "reason"
    cancelled = client.post(
        f"/api/v1/visits/{proposal.pk}/cancel/",
        {"reason": "seen by cardiology"},
        format="json",
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert plan_next_visit(patient_a.pk, actor=CADENCE).outcome == "declined"
    assert not Visit.objects.filter(status="proposed").exists()


# --- multi-day simulations: the daily task, replayed on successive days -------------------------


def noon_today() -> datetime:
    return timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)


def enrolled(patient, at: datetime) -> None:
    """Enrolment anchors the routine interval; without readings the patient is not_controlled."""
    Patient.objects.filter(pk=patient.pk).update(created_at=at)


def past_visit(patient, at: datetime, *, completed: bool) -> Visit:
    return Visit.objects.create(
        patient=patient,
        status=VisitStatus.COMPLETED if completed else VisitStatus.CONFIRMED,
        scheduled_at=at,
        source="clinician",
        created_at=at - timedelta(days=7),
        confirmed_at=at - timedelta(days=7),
        completed_at=at if completed else None,
    )


def visit_events() -> int:
    return AuditEvent.objects.filter(object_type="visit").count()


@pytest.mark.django_db
def test_a_cancelled_overdue_proposal_is_not_proposed_again_on_later_days(clinician_a, patient_a):
    start = noon_today()
    enrolled(patient_a, start - timedelta(days=40))  # not_controlled: due 12 days ago
    first = plan_next_visit(patient_a.pk, actor=CADENCE, now=start)
    assert first.outcome == "created"
    cancel_visit(visit=first.visit, actor=clinician_a, reason="seen elsewhere")
    events = visit_events()
    for day in range(7):
        plan = plan_next_visit(patient_a.pk, actor=CADENCE, now=start + timedelta(days=day))
        assert plan.outcome == "declined", day
    assert Visit.objects.count() == 1 and visit_events() == events
    nominal = timezone.localdate(start) - timedelta(days=12)
    assert first.decision.is_overdue and first.visit.nominal_due_on == nominal
    assert plan.decision.nominal_due_on == nominal
    # The rule's answer changes — a visit took place, so a new nominal day: proposed again.
    past_visit(patient_a, start + timedelta(days=7), completed=True)
    again = plan_next_visit(patient_a.pk, actor=CADENCE, now=start + timedelta(days=8))
    assert again.outcome == "created"
    assert again.visit.nominal_due_on == timezone.localdate(start) + timedelta(days=35)


@pytest.mark.django_db
def test_a_cancelled_proposal_comes_back_when_the_reason_changes(clinician_a, patient_a):
    start = noon_today()
    enrolled(patient_a, start - timedelta(days=40))
    cancel_visit(
        visit=plan_next_visit(patient_a.pk, actor=CADENCE, now=start).visit,
        actor=clinician_a,
        reason="seen elsewhere",
    )
    assert (
        plan_next_visit(patient_a.pk, actor=CADENCE, now=start + timedelta(days=1)).outcome
        == "declined"
    )
    Alert.objects.create(
        patient=patient_a,
        kind="hypertensive_crisis",
        message="x",
        opened_at=start + timedelta(days=2),
    )
    plan = plan_next_visit(patient_a.pk, actor=CADENCE, now=start + timedelta(days=2))
    assert plan.outcome == "created" and plan.decision.reason == "crisis"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("days_enrolled", "hour", "proposed_in"), [(28, 7, 0), (28, 12, 1), (40, 12, 1)]
)
def test_a_due_or_overdue_proposal_keeps_its_day_as_the_days_pass(
    patient_a, days_enrolled, hour, proposed_in
):
    """Due today: proposed for today's 09:00 when planned before it, for the next 09:00 when
    planned after (never in the past). Overdue: for tomorrow. Then none moves, and nothing is
    written, while the rule's answer stays the same."""
    start = noon_today().replace(hour=hour)
    enrolled(patient_a, start - timedelta(days=days_enrolled))
    plan = plan_next_visit(patient_a.pk, actor=CADENCE, now=start)
    assert plan.outcome == "created"
    proposal = plan.visit
    assert proposal.scheduled_at > start
    expected_day = timezone.localdate(start) + timedelta(days=proposed_in)
    assert timezone.localdate(proposal.scheduled_at) == expected_day
    events = visit_events()
    for day in range(1, 8):
        again = plan_next_visit(patient_a.pk, actor=CADENCE, now=start + timedelta(days=day))
        assert again.outcome == "unchanged" and again.visit.pk == proposal.pk, day
    proposal.refresh_from_db()
    assert timezone.localdate(proposal.scheduled_at) == expected_day
    assert visit_events() == events and Visit.objects.count() == 1


@pytest.mark.django_db
def test_a_no_show_does_not_reset_the_interval(patient_a):
    start = noon_today()
    enrolled(patient_a, start - timedelta(days=200))
    completed = past_visit(patient_a, start - timedelta(days=20), completed=True)
    missed = past_visit(patient_a, start - timedelta(days=5), completed=False)
    for day in range(3):
        plan = plan_next_visit(patient_a.pk, actor=CADENCE, now=start + timedelta(days=day))
        assert plan.decision.reason == "not_controlled"
        assert plan.decision.due_on == timezone.localdate(completed.scheduled_at) + timedelta(
            days=28
        )
        assert (
            f"visit of {timezone.localdate(missed.scheduled_at).isoformat()} was not completed"
            in plan.decision.explanation
        )
    assert "was not completed" in Visit.objects.get(status="proposed").explanation


@pytest.mark.django_db
def test_a_visit_after_the_crisis_answers_it(patient_a):
    start = noon_today()
    enrolled(patient_a, start - timedelta(days=10))
    Alert.objects.create(
        patient=patient_a,
        kind="hypertensive_crisis",
        message="x",
        opened_at=start - timedelta(days=10),
    )
    past_visit(patient_a, start - timedelta(days=1), completed=True)
    plan = plan_next_visit(patient_a.pk, actor=CADENCE, now=start)
    assert plan.decision.reason == "crisis"
    due = timezone.localdate(start) + timedelta(days=2)  # the visit + 3 days
    assert timezone.localdate(plan.visit.scheduled_at) == due
    events = visit_events()
    for day in (1, 2):
        assert (
            plan_next_visit(patient_a.pk, actor=CADENCE, now=start + timedelta(days=day)).outcome
            == "unchanged"
        )
    assert visit_events() == events


@pytest.mark.django_db
def test_daily_task_plans_every_patient(patient_a, patient_b):
    assert plan_visits.apply().get() == 2
    assert Visit.objects.filter(status="proposed").count() == 2


def test_the_daily_task_is_in_the_beat_schedule(settings):
    entries = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "clinicians.tasks.plan_visits" in entries


# --- the visits API -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_clinician_confirms_a_proposal_and_then_the_patient_sees_it(clinician_a, patient_a):
    controlled(patient_a)
    proposal = plan_next_visit(patient_a.pk, actor=CADENCE).visit
    phone, portal = bearer_client(patient_a.user), bearer_client(clinician_a)
    assert phone.get("/api/v1/visits/").json()["results"] == []
    rows = portal.get(f"/api/v1/visits/?patient={patient_a.pk}&when=upcoming").json()
    assert [r["status"] for r in rows["results"]] == ["proposed"]
    assert rows["results"][0]["cadence_reason"] == "controlled"
    # The patient does not see a mere proposal at all.
    assert phone.post(f"/api/v1/visits/{proposal.pk}/confirm/").status_code == 404
    at = (timezone.now() + timedelta(days=60)).replace(microsecond=0)
    confirmed = portal.post(
        f"/api/v1/visits/{proposal.pk}/confirm/",
        {"scheduled_at": at.isoformat()},
        format="json",
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
    seen = phone.get("/api/v1/visits/?when=upcoming").json()["results"]
    assert [r["id"] for r in seen] == [proposal.pk]
    assert phone.get("/api/v1/visits/?when=past").json()["results"] == []
    cancel = phone.post(f"/api/v1/visits/{proposal.pk}/cancel/", {"reason": "x"}, format="json")
    assert cancel.status_code == 403
    again = portal.post(f"/api/v1/visits/{proposal.pk}/confirm/", {}, format="json")
    assert again.status_code == 409
    event = AuditEvent.objects.filter(
        object_type="visit", action="update", actor_id=clinician_a.pk
    ).last()
    assert event.changes["status"] == {"old": "proposed", "new": "confirmed"}


@pytest.mark.django_db
def test_visits_are_team_scoped_and_validated(clinician_a, clinician_b, patient_a):
    proposal = plan_next_visit(patient_a.pk, actor=CADENCE).visit
    other = bearer_client(clinician_b)
    assert other.post(f"/api/v1/visits/{proposal.pk}/confirm/").status_code == 404
    assert other.get(f"/api/v1/visits/?patient={patient_a.pk}").json()["results"] == []
    future = (timezone.now() + timedelta(days=3)).isoformat()
    assert (
        other.post(
            "/api/v1/visits/",
            {"patient": patient_a.pk, "scheduled_at": future},
            format="json",
        ).status_code
        == 404
    )
    assert (
        bearer_client(patient_a.user)
        .post(
            "/api/v1/visits/",
            {"patient": patient_a.pk, "scheduled_at": future},
            format="json",
        )
        .status_code
        == 403
    )
    past = bearer_client(clinician_a).post(
        "/api/v1/visits/",
        {"patient": patient_a.pk, "scheduled_at": (timezone.now() - timedelta(days=1)).isoformat()},
        format="json",
    )
    assert past.status_code == 400 and past.json()["errors"][0]["field"] == "scheduled_at"
    bad = bearer_client(clinician_a).get("/api/v1/visits/?when=someday")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "when"


@pytest.mark.django_db
def test_plan_endpoint_runs_the_cadence_for_one_patient(clinician_a, patient_a):
    response = bearer_client(clinician_a).post(
        "/api/v1/visits/plan/", {"patient": patient_a.pk}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "created" and body["reason"] == "not_controlled"
    assert body["interval_days"] == 28 and body["visit"]["status"] == "proposed"
    assert body["appointment"] == body["visit"]  # the name before the rename, kept (API.md)


@pytest.mark.django_db
def test_booking_any_future_visit_answers_an_overdue_proposal(clinician_a, patient_a):
    """An overdue proposal keeps its past day; a visit the clinician books next week is the
    answer to it — the proposal is cancelled as covered and the cadence does not re-propose."""
    from clinicians.loop.visits import schedule_visit

    start = timezone.now()
    enrolled(patient_a, start - timedelta(days=40))
    proposal = plan_next_visit(patient_a.pk, actor=CADENCE, now=start - timedelta(days=3)).visit
    assert proposal is not None and proposal.scheduled_at < start  # overdue now
    booked = schedule_visit(
        patient=patient_a, actor=clinician_a, scheduled_at=start + timedelta(days=6)
    )
    proposal.refresh_from_db()
    assert proposal.status == VisitStatus.CANCELLED
    plan = plan_next_visit(patient_a.pk, actor=CADENCE, now=start)
    assert plan.outcome == "covered" and plan.visit.pk == booked.pk
    assert not Visit.objects.filter(patient=patient_a, status=VisitStatus.PROPOSED).exists()


@pytest.mark.django_db
def test_planning_a_visit_names_who_asks(patient_a):
    """No default actor: the cadence (``CADENCE``) or a clinician is named by every caller."""
    with pytest.raises(TypeError):
        plan_next_visit(patient_a.pk)


@pytest.mark.django_db
def test_the_old_appointments_path_answers_as_the_visits_path(clinician_a, clinician_b, patient_a):
    """API.md keeps ``/api/v1/appointments/`` working now that visits are named visits: the same
    view behind both paths, so the same answers — lists, filters, one visit, refusals, writes."""
    controlled(patient_a)
    proposal = plan_next_visit(patient_a.pk, actor=CADENCE).visit
    own, other = bearer_client(clinician_a), bearer_client(clinician_b)
    for client, suffix in [
        (own, f"?patient={patient_a.pk}"),
        (own, f"?patient={patient_a.pk}&when=upcoming&status=proposed"),
        (own, "?when=someday"),
        (own, f"{proposal.pk}/"),
        (other, f"?patient={patient_a.pk}"),
        (other, f"{proposal.pk}/"),
    ]:
        old = client.get(f"/api/v1/appointments/{suffix}")
        new = client.get(f"/api/v1/visits/{suffix}")
        assert (old.status_code, old.json()) == (new.status_code, new.json()), suffix
    assert own.get(f"/api/v1/appointments/{proposal.pk}/").json()["id"] == proposal.pk
    assert other.post(f"/api/v1/appointments/{proposal.pk}/confirm/").status_code == 404
    confirmed = own.post(f"/api/v1/appointments/{proposal.pk}/confirm/", {}, format="json")
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
    assert confirmed.json() == own.get(f"/api/v1/visits/{proposal.pk}/").json()
    again = own.post(f"/api/v1/visits/{proposal.pk}/confirm/", {}, format="json")
    assert again.status_code == 409
    assert AuditEvent.objects.filter(
        object_type="visit", action="update", actor_id=clinician_a.pk
    ).last().changes["status"] == {"old": "proposed", "new": "confirmed"}
