"""The patient–clinician loop in the portal: reply in the thread, mark it read, move a goal,
confirm or cancel a visit. Each a POST with CSRF, each one service call; errors come back as
messages on the chart."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_otp.decorators import otp_required

from clinicians.loop import services
from clinicians.loop.selectors import appointments_visible_to, goals_visible_to
from clinicians.models import MESSAGE_MAX_CHARS, GoalStatus
from core.errors import DomainError
from patients.selectors import patients_visible_to


class ReplyForm(forms.Form):
    body = forms.CharField(max_length=MESSAGE_MAX_CHARS, widget=forms.Textarea)


def _chart(patient_id: int):
    return redirect("portal:patient", patient_id=patient_id)


def _refuse(request, text: str) -> None:
    messages.error(request, text)


@require_POST
@otp_required(login_url="portal:login")
def reply(request, patient_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    form = ReplyForm(request.POST)
    if not request.user.has_perm("clinicians.send_message", patient):
        _refuse(request, "Only the patient's care team writes in this thread.")
    elif not form.is_valid():
        _refuse(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
    else:
        try:
            services.send_message(
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
    if request.user.has_perm("clinicians.send_message", patient):
        services.mark_thread_read(patient=patient, actor=request.user)
    return _chart(patient.pk)


@require_POST
@otp_required(login_url="portal:login")
def goal_status(request, goal_id: int):
    goal = get_object_or_404(goals_visible_to(request.user), pk=goal_id)
    wanted = request.POST.get("status", "")
    if wanted not in (GoalStatus.ACTIVE, GoalStatus.ACHIEVED, GoalStatus.ABANDONED):
        _refuse(request, "Choose active, achieved or abandoned.")
    elif not request.user.has_perm("clinicians.manage_goal", goal):
        _refuse(request, "Only a clinician of the care team changes a goal.")
    else:
        try:
            services.change_goal_status(goal=goal, actor=request.user, status=wanted)
        except DomainError as error:
            _refuse(request, error.message)
    return _chart(goal.patient_id)


@require_POST
@otp_required(login_url="portal:login")
def visit_action(request, appointment_id: int):
    visit = get_object_or_404(appointments_visible_to(request.user), pk=appointment_id)
    if not request.user.has_perm("clinicians.manage_visit", visit):
        _refuse(request, "Only a clinician of the care team manages visits.")
        return _chart(visit.patient_id)
    try:
        if request.POST.get("action") == "confirm":
            services.confirm_visit(
                appointment=visit,
                actor=request.user,
                scheduled_at=_local_datetime(request.POST.get("scheduled_at", "")),
            )
        elif request.POST.get("action") == "cancel":
            services.cancel_visit(
                appointment=visit, actor=request.user, reason=request.POST.get("reason", "")
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
