"""The patient chart shows the loop: goals with progress, the thread (escaped) with a reply
form, and the next visit with its cadence reason."""

from __future__ import annotations

import pytest
from django.test import TestCase

from clinicians.loop.goals import set_goal
from clinicians.loop.messages import send_message
from clinicians.loop.visits import CADENCE, plan_next_visit
from clinicians.models import Goal, Message, Visit
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
    plan_next_visit(patient_a.pk, actor=CADENCE)
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
    visit = plan_next_visit(patient_a.pk, actor=CADENCE).visit
    other = portal_client(clinician_b)
    assert other.post(f"/portal/goals/{goal.pk}/status/", {"status": "active"}).status_code == 404
    assert other.post(f"/portal/visits/{visit.pk}/", {"action": "confirm"}).status_code == 404
    assert (
        other.post(f"/portal/patients/{patient_a.pk}/messages/", {"body": "x"}).status_code == 404
    )
    own = portal_client(clinician_a)
    own.post(f"/portal/goals/{goal.pk}/status/", {"status": "active"})
    own.post(f"/portal/visits/{visit.pk}/", {"action": "confirm"})
    assert Goal.objects.get(pk=goal.pk).status == "active"
    assert Visit.objects.get(pk=visit.pk).status == "confirmed"


def test_the_portals_old_appointment_paths_still_confirm_and_book(
    clinician_a, clinician_b, patient_a
):
    """Forms rendered before visits were named visits post to ``…/appointments/…``: the same
    views answer there, under the same rules; the chart's forms post to the visit paths."""
    from datetime import timedelta

    from django.urls import reverse
    from django.utils import timezone

    visit = plan_next_visit(patient_a.pk, actor=CADENCE).visit
    other = portal_client(clinician_b)
    assert other.post(f"/portal/appointments/{visit.pk}/", {"action": "confirm"}).status_code == 404
    own = portal_client(clinician_a)
    chart = f"/portal/patients/{patient_a.pk}/"
    confirmed = own.post(f"/portal/appointments/{visit.pk}/", {"action": "confirm"})
    assert confirmed.status_code == 302 and confirmed["Location"] == chart
    assert Visit.objects.get(pk=visit.pk).status == "confirmed"
    when = (timezone.localtime() + timedelta(days=2)).replace(second=0, microsecond=0)
    booked = own.post(
        f"/portal/patients/{patient_a.pk}/appointments/",
        {"scheduled_at": when.strftime("%Y-%m-%dT%H:%M")},
    )
    assert booked.status_code == 302 and booked["Location"] == chart
    assert Visit.objects.get(patient=patient_a, source="clinician").scheduled_at == when
    assert reverse("portal:visit-action", args=[visit.pk]) == f"/portal/visits/{visit.pk}/"
    assert reverse("portal:book-visit", args=[patient_a.pk]) == f"{chart}visits/"


def test_an_overdue_proposal_stays_on_the_chart_and_is_confirmed_at_a_new_time(
    clinician_a, patient_a
):
    """The cadence no longer moves a proposal nobody acted on, so once its time has passed the
    chart still shows it, marked overdue, and confirming it asks for a new time."""
    from datetime import timedelta

    from django.utils import timezone

    from clinicians.models import VisitStatus

    plan_next_visit(patient_a.pk, actor=CADENCE)
    proposal = Visit.objects.get(patient=patient_a, status=VisitStatus.PROPOSED)
    Visit.objects.filter(pk=proposal.pk).update(scheduled_at=timezone.now() - timedelta(days=3))
    client = portal_client(clinician_a)
    page = client.get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert "overdue" in page and 'name="scheduled_at"' in page
    api = bearer_client(clinician_a)
    listed = {
        when: [
            item["id"]
            for item in api.get(f"/api/v1/visits/?patient={patient_a.pk}&when={when}").json()[
                "results"
            ]
        ]
        for when in ("upcoming", "past")
    }
    assert listed == {"upcoming": [proposal.pk], "past": []}  # still to be acted on

    client.post(f"/portal/visits/{proposal.pk}/", {"action": "confirm", "scheduled_at": ""})
    proposal.refresh_from_db()
    assert proposal.status == VisitStatus.PROPOSED  # a past time is not confirmed

    when = (timezone.localtime() + timedelta(days=2)).replace(second=0, microsecond=0)
    client.post(
        f"/portal/visits/{proposal.pk}/",
        {"action": "confirm", "scheduled_at": when.strftime("%Y-%m-%dT%H:%M")},
    )
    proposal.refresh_from_db()
    assert proposal.status == VisitStatus.CONFIRMED and proposal.scheduled_at == when

    upcoming = bearer_client(clinician_a).get(
        f"/api/v1/visits/?patient={patient_a.pk}&when=upcoming"
    )
    assert [item["id"] for item in upcoming.json()["results"]] == [proposal.pk]


# --- setting a goal and booking a visit from the chart -----------------------------------------


def _chart_after(response) -> str:
    """The chart the form redirected to, with its messages."""
    assert response.redirect_chain[-1][0].endswith("/")
    return response.content.decode()


def test_chart_prefills_a_bp_goal_from_the_bounds_and_sets_it(clinician_a, patient_a):
    from audit.models import AuditEvent
    from tests.clinicians.conftest import set_bounds

    set_bounds(patient_a, clinician_a, target=(125, 75))
    client = portal_client(clinician_a)
    page = client.get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert 'name="target_systolic_mmhg" value="125"' in page
    assert 'name="target_diastolic_mmhg" value="75"' in page
    assert f'action="/portal/patients/{patient_a.pk}/goals/"' in page

    response = client.post(
        f"/portal/patients/{patient_a.pk}/goals/",
        {
            "kind": "blood_pressure",
            "target_systolic_mmhg": "125",
            "target_diastolic_mmhg": "75",
            "description": "<b>morning</b> readings",
            # a field of the other kind, left over in the page, is not passed on
            "measure": "steps_per_day",
        },
        follow=True,
    )
    page = _chart_after(response)
    goal = Goal.objects.get(patient=patient_a)
    assert (goal.kind, goal.status, goal.proposed_by) == ("blood_pressure", "active", clinician_a)
    assert (goal.target_systolic_mmhg, goal.target_diastolic_mmhg) == (125, 75)
    assert goal.measure == "" and goal.description == "<b>morning</b> readings"
    assert "Goal set." in page and "Home BP &lt; 125/75 mmHg" in page
    assert "&lt;b&gt;morning&lt;/b&gt; readings" in page and "<b>morning" not in page
    assert AuditEvent.objects.get(object_type="goal", action="create").actor_id == clinician_a.pk


def test_bp_goal_left_empty_takes_the_bounds_target(clinician_a, patient_a):
    client = portal_client(clinician_a)
    client.post(
        f"/portal/patients/{patient_a.pk}/goals/",
        {"kind": "blood_pressure", "target_systolic_mmhg": "", "target_diastolic_mmhg": ""},
    )
    goal = Goal.objects.get(patient=patient_a)
    assert (goal.target_systolic_mmhg, goal.target_diastolic_mmhg) == (130, 80)  # no bounds


def test_bp_goal_that_disagrees_with_the_bounds_is_refused_on_the_chart(clinician_a, patient_a):
    from audit.models import AuditEvent
    from tests.clinicians.conftest import set_bounds

    set_bounds(patient_a, clinician_a, target=(130, 80))
    response = portal_client(clinician_a).post(
        f"/portal/patients/{patient_a.pk}/goals/",
        {"kind": "blood_pressure", "target_systolic_mmhg": "120", "target_diastolic_mmhg": "80"},
        follow=True,
    )
    assert response.status_code == 200
    page = _chart_after(response)
    assert "must match the patient" in page and "treatment target 130/80 mmHg" in page
    assert 'class="msg error"' in page
    assert not Goal.objects.exists()
    assert not AuditEvent.objects.filter(object_type="goal").exists()


def test_lifestyle_goal_from_the_chart(clinician_a, patient_a):
    from decimal import Decimal

    client = portal_client(clinician_a)
    response = client.post(
        f"/portal/patients/{patient_a.pk}/goals/",
        {
            "kind": "lifestyle",
            "measure": "sodium_mg_per_day",
            "target_value": "1500",
            "description": "less bread",
            # the prefilled BP targets of the other form are not passed on
            "target_systolic_mmhg": "130",
        },
        follow=True,
    )
    goal = Goal.objects.get(patient=patient_a)
    assert (goal.kind, goal.measure, goal.target_value) == (
        "lifestyle",
        "sodium_mg_per_day",
        Decimal("1500"),
    )
    assert goal.target_systolic_mmhg is None and goal.status == "active"
    assert "Sodium (mg per day): 1500" in _chart_after(response)

    # The service's checks come back as messages: out of range, a free text without words,
    # a measure that does not exist (escaped, as everything the form sends back).
    for body, expected in (
        ({"measure": "steps_per_day", "target_value": "90"}, "between 500 and 50000"),
        ({"measure": "free_text"}, "Describe a free-text goal."),
        ({"measure": "<i>x</i>"}, "&lt;i&gt;x&lt;/i&gt; is not one of the available choices"),
        ({"measure": "weight_kg", "target_value": "abc"}, "Target value: Enter a number."),
    ):
        page = _chart_after(
            client.post(
                f"/portal/patients/{patient_a.pk}/goals/",
                {"kind": "lifestyle", **body},
                follow=True,
            )
        )
        assert expected in page, expected
    assert Goal.objects.count() == 1


def test_booking_a_visit_from_the_chart_confirms_and_audits_it(clinician_a, patient_a):
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import AuditEvent
    from clinicians.models import VisitSource, VisitStatus

    plan_next_visit(
        patient_a.pk, actor=CADENCE
    )  # a cadence proposal, due later than the booked visit
    proposal = Visit.objects.get(patient=patient_a, status=VisitStatus.PROPOSED)
    when = (timezone.localtime() + timedelta(days=1)).replace(
        hour=14, minute=30, second=0, microsecond=0
    )
    assert timezone.localdate(when) <= timezone.localdate(proposal.scheduled_at)
    response = portal_client(clinician_a).post(
        f"/portal/patients/{patient_a.pk}/visits/",
        {"scheduled_at": when.strftime("%Y-%m-%dT%H:%M")},
        follow=True,
    )
    visit = Visit.objects.get(patient=patient_a, source=VisitSource.CLINICIAN)
    assert visit.status == VisitStatus.CONFIRMED and visit.scheduled_at == when
    assert visit.created_by == clinician_a and visit.confirmed_by == clinician_a
    event = AuditEvent.objects.get(object_type="visit", object_id=str(visit.pk), action="create")
    assert event.actor_id == clinician_a.pk and event.patient_id == patient_a.pk
    proposal.refresh_from_db()
    assert proposal.status == VisitStatus.CANCELLED  # covered by the booked visit
    page = _chart_after(response)
    assert "Visit booked for" in page and when.strftime("%H:%M") in page


def test_booking_a_visit_in_the_past_or_without_a_time_is_refused(clinician_a, patient_a):
    from datetime import timedelta

    from django.utils import timezone

    client = portal_client(clinician_a)
    past = timezone.localtime() - timedelta(hours=1)
    for value, expected in (
        (past.strftime("%Y-%m-%dT%H:%M"), "A visit is scheduled in the future."),
        ("", "Give the visit&#x27;s date and time."),
        ("tomorrow", "Give the visit&#x27;s date and time."),
    ):
        response = client.post(
            f"/portal/patients/{patient_a.pk}/visits/", {"scheduled_at": value}, follow=True
        )
        assert expected in _chart_after(response), value
    assert not Visit.objects.filter(patient=patient_a).exists()


def test_another_teams_clinician_cannot_set_goals_or_book_visits(
    clinician_a, clinician_b, patient_a
):
    from datetime import timedelta

    from django.utils import timezone

    other = portal_client(clinician_b)
    when = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    goal = other.post(
        f"/portal/patients/{patient_a.pk}/goals/",
        {"kind": "lifestyle", "measure": "steps_per_day", "target_value": "7000"},
    )
    visit = other.post(f"/portal/patients/{patient_a.pk}/visits/", {"scheduled_at": when})
    assert (goal.status_code, visit.status_code) == (404, 404)
    assert other.get(f"/portal/patients/{patient_a.pk}/goals/").status_code == 405
    assert not Goal.objects.exists() and not Visit.objects.exists()


def test_goal_and_visit_forms_refuse_a_post_without_the_csrf_token(clinician_a, patient_a):
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    client = portal_client(clinician_a)
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies  # the same signed-in, verified session
    when = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    goal = strict.post(f"/portal/patients/{patient_a.pk}/goals/", {"kind": "blood_pressure"})
    visit = strict.post(f"/portal/patients/{patient_a.pk}/visits/", {"scheduled_at": when})
    assert (goal.status_code, visit.status_code) == (403, 403)
    assert not Goal.objects.exists() and not Visit.objects.exists()
    # The same session with the page's token gets through.
    page = strict.get(f"/portal/patients/{patient_a.pk}/")
    assert page.status_code == 200
    token = page.context["csrf_token"]
    ok = strict.post(
        f"/portal/patients/{patient_a.pk}/visits/",
        {"scheduled_at": when, "csrfmiddlewaretoken": str(token)},
    )
    assert ok.status_code == 302 and Visit.objects.filter(patient=patient_a).count() == 1
