"""The patient chart shows the loop: goals with progress, the thread (escaped) with a reply
form, and the next visit with its cadence reason."""

from __future__ import annotations

import pytest
from django.test import TestCase

from clinicians.loop.services import plan_next_visit, send_message, set_goal
from clinicians.models import Appointment, Goal, Message
from tests.clinicians.test_portal import portal_client
from tests.conftest import bearer_client
from tests.factories import ReadingFactory

pytestmark = pytest.mark.django_db


def test_chart_shows_goals_thread_and_next_visit_with_html_escaped(clinician_a, patient_a):
    ReadingFactory(patient=patient_a, systolic_mmhg=120, diastolic_mmhg=75)
    set_goal(patient=patient_a, actor=clinician_a, kind="blood_pressure")
    with TestCase.captureOnCommitCallbacks(execute=True):
        send_message(
            patient=patient_a, actor=patient_a.user, body='<script>alert("x")</script> dizzy'
        )
    plan_next_visit(patient_a.pk)
    page = portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert "Home BP &lt; 130/80 mmHg" in page and "1 of 1 home readings" in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; dizzy" in page
    assert "1 unread" in page
    assert "Cadence: Only 1 home reading in 7 days" in page and "interval 28 days" in page
    assert "csrfmiddlewaretoken" in page


def test_reply_from_the_portal_reaches_the_thread_and_read_marks_it(clinician_a, patient_a):
    with TestCase.captureOnCommitCallbacks(execute=True):
        send_message(patient=patient_a, actor=patient_a.user, body="question")
    client = portal_client(clinician_a)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(f"/portal/patients/{patient_a.pk}/messages/", {"body": "answer"})
    assert response.status_code == 302
    reply = Message.objects.get(sender=clinician_a)
    assert reply.body == "answer" and reply.patient == patient_a
    client.post(f"/portal/patients/{patient_a.pk}/messages/read/")
    assert Message.objects.get(body="question").read_by == clinician_a


def test_portal_goal_and_visit_actions_are_team_scoped(clinician_a, clinician_b, patient_a):
    goal = set_goal(
        patient=patient_a,
        actor=patient_a.user,
        kind="lifestyle",
        measure="steps_per_day",
        target_value=7000,
    )
    visit = plan_next_visit(patient_a.pk).appointment
    other = portal_client(clinician_b)
    assert other.post(f"/portal/goals/{goal.pk}/status/", {"status": "active"}).status_code == 404
    assert other.post(f"/portal/appointments/{visit.pk}/", {"action": "confirm"}).status_code == 404
    assert (
        other.post(f"/portal/patients/{patient_a.pk}/messages/", {"body": "x"}).status_code == 404
    )
    own = portal_client(clinician_a)
    own.post(f"/portal/goals/{goal.pk}/status/", {"status": "active"})
    own.post(f"/portal/appointments/{visit.pk}/", {"action": "confirm"})
    assert Goal.objects.get(pk=goal.pk).status == "active"
    assert Appointment.objects.get(pk=visit.pk).status == "confirmed"


def test_an_overdue_proposal_stays_on_the_chart_and_is_confirmed_at_a_new_time(
    clinician_a, patient_a
):
    """The cadence no longer moves a proposal nobody acted on, so once its time has passed the
    chart still shows it, marked overdue, and confirming it asks for a new time."""
    from datetime import timedelta

    from django.utils import timezone

    from clinicians.models import AppointmentStatus

    plan_next_visit(patient_a.pk)
    proposal = Appointment.objects.get(patient=patient_a, status=AppointmentStatus.PROPOSED)
    Appointment.objects.filter(pk=proposal.pk).update(
        scheduled_at=timezone.now() - timedelta(days=3)
    )
    client = portal_client(clinician_a)
    page = client.get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert "overdue" in page and 'name="scheduled_at"' in page

    client.post(f"/portal/appointments/{proposal.pk}/", {"action": "confirm", "scheduled_at": ""})
    proposal.refresh_from_db()
    assert proposal.status == AppointmentStatus.PROPOSED  # a past time is not confirmed

    when = (timezone.localtime() + timedelta(days=2)).replace(second=0, microsecond=0)
    client.post(
        f"/portal/appointments/{proposal.pk}/",
        {"action": "confirm", "scheduled_at": when.strftime("%Y-%m-%dT%H:%M")},
    )
    proposal.refresh_from_db()
    assert proposal.status == AppointmentStatus.CONFIRMED and proposal.scheduled_at == when

    upcoming = bearer_client(clinician_a).get(
        f"/api/v1/appointments/?patient={patient_a.pk}&when=upcoming"
    )
    assert [item["id"] for item in upcoming.json()["results"]] == [proposal.pk]
