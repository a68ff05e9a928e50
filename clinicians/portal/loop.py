"""The patient–clinician loop in the portal: reply in the thread, mark it read, set a goal or
move one, book a visit, confirm or cancel one. Each a POST with CSRF, each one service call —
which asks the controller — and errors, refusals included (the rule's words, as the API's),
come back as messages on the chart."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_otp.decorators import otp_required

from clinicians.loop import goals, visits
from clinicians.loop import messages as loop_messages
from clinicians.loop.free_text import NOTE_MAX_CHARS
from clinicians.loop.selectors import goals_visible_to, visits_visible_to
from clinicians.models import MESSAGE_MAX_CHARS, GoalKind, GoalMeasure, GoalStatus
from core.errors import DomainError
from patients.selectors import patients_visible_to


class ReplyForm(forms.Form):
    body = forms.CharField(max_length=MESSAGE_MAX_CHARS, widget=forms.Textarea)


class GoalForm(forms.Form):
    """Input shapes only: which fields a kind takes, the targets, the bounds match and the
    plausible ranges are ``set_goal``'s to check (one place for the API and the portal)."""

    kind = forms.ChoiceField(choices=GoalKind.choices, label="Kind")
    target_systolic_mmhg = forms.IntegerField(
        required=False, min_value=0, max_value=400, label="Systolic target"
    )
    target_diastolic_mmhg = forms.IntegerField(
        required=False, min_value=0, max_value=400, label="Diastolic target"
    )
    measure = forms.ChoiceField(choices=GoalMeasure.choices, required=False, label="Measure")
    target_value = forms.DecimalField(
        required=False, max_digits=9, decimal_places=2, label="Target value"
    )
    description = forms.CharField(required=False, max_length=NOTE_MAX_CHARS, label="Note")

    def service_arguments(self) -> dict:
        """The fields the chosen kind takes: the chart has one form per kind, and a field of
        the other kind is never passed on."""
        data = self.cleaned_data
        arguments = {"kind": data["kind"], "description": data["description"]}
        if data["kind"] == GoalKind.BLOOD_PRESSURE:
            arguments["target_systolic_mmhg"] = data["target_systolic_mmhg"]
            arguments["target_diastolic_mmhg"] = data["target_diastolic_mmhg"]
        else:
            arguments["measure"] = data["measure"]
            arguments["target_value"] = data["target_value"]
        return arguments


def _form_errors(form: forms.Form) -> str:
    def label(name: str) -> str:
        return str(form.fields[name].label) if name in form.fields else "Form"

    return "; ".join(
        f"{label(name)}: {' '.join(map(str, errors))}" for name, errors in form.errors.items()
    )


def _chart(patient_id: int):
    return redirect("portal:patient", patient_id=patient_id)


def _refuse(request, text: str) -> None:
    messages.error(request, text)


@require_POST
@otp_required(login_url="portal:login")
def reply(request, patient_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    form = ReplyForm(request.POST)
    if not form.is_valid():
        _refuse(request, "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in form.errors.items()))
    else:
        try:
            loop_messages.send_message(
                patient=patient, actor=request.user, body=form.cleaned_data["body"]
            )
            messages.success(request, "Message sent.")
        except DomainError as error:
            _refuse(request, error.message)
    return _chart(patient.pk)


@require_POST
@otp_required(login_url="portal:login")
def mark_thread_read(request, patient_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    try:
        loop_messages.mark_thread_read(patient=patient, actor=request.user)
    except DomainError as error:
        _refuse(request, error.message)
    return _chart(patient.pk)


@require_POST
@otp_required(login_url="portal:login")
def new_goal(request, patient_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    form = GoalForm(request.POST)
    if not form.is_valid():
        _refuse(request, _form_errors(form))
    else:
        try:
            goals.set_goal(patient=patient, actor=request.user, **form.service_arguments())
            messages.success(request, "Goal set.")
        except DomainError as error:
            _refuse(request, error.message)
    return _chart(patient.pk)


@require_POST
@otp_required(login_url="portal:login")
def book_visit(request, patient_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    try:
        when = _local_datetime(request.POST.get("scheduled_at", ""))
        if when is None:
            raise DomainError("Give the visit's date and time.", field="scheduled_at")
        visit = visits.schedule_visit(patient=patient, actor=request.user, scheduled_at=when)
        messages.success(
            request,
            f"Visit booked for {timezone.localtime(visit.scheduled_at):%a %d %b %Y, %H:%M}.",
        )
    except DomainError as error:
        _refuse(request, error.message)
    return _chart(patient.pk)


@require_POST
@otp_required(login_url="portal:login")
def goal_status(request, goal_id: int):
    goal = get_object_or_404(goals_visible_to(request.user), pk=goal_id)
    wanted = request.POST.get("status", "")
    if wanted not in (GoalStatus.ACTIVE, GoalStatus.ACHIEVED, GoalStatus.ABANDONED):
        _refuse(request, "Choose active, achieved or abandoned.")
    else:
        try:
            goals.change_goal_status(goal=goal, actor=request.user, status=wanted)
        except DomainError as error:
            _refuse(request, error.message)
    return _chart(goal.patient_id)


@require_POST
@otp_required(login_url="portal:login")
def visit_action(request, visit_id: int):
    visit = get_object_or_404(visits_visible_to(request.user), pk=visit_id)
    try:
        if request.POST.get("action") == "confirm":
            visits.confirm_visit(
                visit=visit,
                actor=request.user,
                scheduled_at=_local_datetime(request.POST.get("scheduled_at", "")),
            )
        elif request.POST.get("action") == "cancel":
            visits.cancel_visit(
                visit=visit, actor=request.user, reason=request.POST.get("reason", "")
            )
        else:
            _refuse(request, "Choose confirm or cancel.")
    except DomainError as error:
        _refuse(request, error.message)
    return _chart(visit.patient_id)


def _local_datetime(value: str):
    """A ``datetime-local`` form value in the server's time zone, or None when left empty."""
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as error:
        raise DomainError("Give the visit's date and time.", field="scheduled_at") from error
    return parsed if parsed.tzinfo else timezone.make_aware(parsed)
