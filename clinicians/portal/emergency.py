"""Emergency access from the portal: the exact MRN, a reason and a duration; then the chart."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_otp.decorators import otp_required

from clinicians.portal.worklist import worklist_for
from core.errors import DomainError
from patients.emergency import DURATION_CHOICES_MINUTES, open_emergency_access


class EmergencyAccessForm(forms.Form):
    mrn = forms.CharField(max_length=64, label="MRN (exact)")
    reason = forms.CharField(
        max_length=500,
        required=False,  # the service says why it is needed, in one place
        label="Why you need this record now (journalled; the auditor reviews it)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    minutes = forms.TypedChoiceField(
        coerce=int,
        choices=[(m, f"{m} minutes") for m in DURATION_CHOICES_MINUTES],
        initial=60,
        label="For",
    )


@require_POST
@otp_required(login_url="portal:login")
def start(request):
    form = EmergencyAccessForm(request.POST, prefix="emergency")
    if form.is_valid():
        try:
            access = open_emergency_access(actor=request.user, **form.cleaned_data)
        except DomainError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.warning(
                request,
                f"Emergency access to {access.patient.identity} until "
                f"{access.expires_at:%H:%M %Z}. Your reads are journalled and reviewed.",
            )
            return redirect("portal:patient", access.patient_id)
    worklist = worklist_for(request.user)
    context = {"worklist": worklist, "emergency_form": form}
    return render(request, "portal/home.html", context, status=400)
