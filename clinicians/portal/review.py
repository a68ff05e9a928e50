"""The patient chart in the portal: trend, regimen, bounds, alerts, and the review of
recommendations (approve / modify / reject, signed by re-entering the password)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_otp.decorators import otp_required

from accounts.identity import issuer, launch
from clinicians import decisions, services
from clinicians.models import SafetyBounds
from clinicians.portal.alerts import chart_alerts
from clinicians.portal.selectors import chart_for
from clinicians.selectors import recommendations_visible_to
from core import authz
from core.csp import allow_form_redirects_to
from core.errors import DomainError
from patients.emergency import active_access
from patients.selectors import patients_visible_to


class DecisionForm(forms.Form):
    """The signed decision. No action is chosen for the clinician (no default), the reason stays
    in the record, the note goes to the patient's phone word for word; the password is never
    shown back."""

    action = forms.ChoiceField(
        choices=[("approve", "Approve"), ("modify", "Modify"), ("reject", "Reject")],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose approve, modify or reject."},
    )
    dose_mg = forms.CharField(required=False, max_length=12, label="Dose (mg, for modify)")
    reason = forms.CharField(
        max_length=500,
        label="Reason, for the record (not sent to the patient)",
        error_messages={"required": "A reason is required."},
    )
    patient_note = forms.CharField(
        max_length=500,
        required=False,
        label="Note for the patient (sent to the patient, word for word)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    override = forms.BooleanField(required=False, label="Override the block (audited)")
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        strip=False,
        label="Your password (signs the decision)",
        error_messages={"required": "Your password signs the decision."},
    )


def decision_form(rec_pk: int, data=None) -> DecisionForm:
    """One form per card, with ids of its own (several cards share a page)."""
    return DecisionForm(data, auto_id=f"id_rec{rec_pk}_%s")


DONE = {"approve": "approved", "modify": "modified", "reject": "rejected"}


@otp_required(login_url="portal:login")
def patient_chart(request, patient_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    return _render_chart(request, patient)


def _render_chart(
    request,
    patient,
    *,
    refused: DecisionForm | None = None,
    refused_pk=None,
    reading_refusal=None,
    bounds_editor=None,
):
    """The chart; after a refused decision, that card's form comes back as typed (but for the
    password) with its errors beside the fields, and the answer is 400 — as after a refused
    "entered in error" (``clinicians.portal.readings``), beside that reading's form."""
    authz.authorize_read(
        request.user, "clinicians.view_chart", patient, detail={"view": "portal.patient_chart"}
    )
    chart = chart_for(
        request.user, patient, days=request.GET.get("days"), reading_type=request.GET.get("type")
    )
    cards = [
        (
            rec,
            card,
            refused if refused is not None and rec.pk == refused_pk else decision_form(rec.pk),
        )
        for rec, card in chart.review_cards
    ]
    context = {
        "chart": chart,
        "cards": cards,
        "smart_apps": launch.launchable_apps(),
        "emergency_access": active_access(request.user, patient),
        **chart_alerts(chart.alerts, patient),
        "reading_refusal": reading_refusal,
        # The bounds editor (``clinicians.portal.bounds``): open, previewed or refused.
        "bounds_editor": bounds_editor,
    }
    refusal = refused is not None or reading_refusal is not None
    refusal = refusal or (bounds_editor is not None and bounds_editor.is_refusal)
    page = render(request, "portal/patient.html", context, status=400 if refusal else 200)
    # "Open in app" redirects to the app's launch URI: CSP's form-action must allow its origin.
    return allow_form_redirects_to(page, [app.launch_uri for app in context["smart_apps"]])


@require_POST
@otp_required(login_url="portal:login")
def launch_app(request, patient_id: int):
    """Open a registered SMART app on this patient (an EHR launch): the app receives a
    single-use launch code and this server's FHIR base."""
    try:
        opened = launch.create_launch(
            actor=request.user,
            client_id=request.POST.get("client_id", ""),
            patient_id=patient_id,
            fhir_base=issuer.from_request(request) + "/fhir",
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("portal:patient", patient_id=patient_id)
    return HttpResponseRedirect(opened.url)


@require_POST
@otp_required(login_url="portal:login")
def decide(request, recommendation_id: int):
    rec = get_object_or_404(recommendations_visible_to(request.user), pk=recommendation_id)
    form = decision_form(rec.pk, request.POST)
    if form.is_valid():
        try:
            decisions.decide_recommendation(
                recommendation=rec, actor=request.user, **form.cleaned_data
            )
        except DomainError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            done = DONE[form.cleaned_data["action"]]
            messages.success(request, f"Recommendation {rec.pk}: {done}.")
            return HttpResponseRedirect(
                reverse("portal:patient", args=[rec.patient_id]) + f"#rec-{rec.pk}"
            )
    return _render_chart(request, rec.patient, refused=form, refused_pk=rec.pk)


@require_POST
@otp_required(login_url="portal:login")
def confirm_bounds(request, patient_id: int, bounds_id: int):
    """A clinician of the team confirms bounds an administrator entered at enrolment; from now
    on proposals use them (``clinicians.services.confirm_safety_bounds`` re-checks the limits)."""
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    bounds = get_object_or_404(SafetyBounds, pk=bounds_id, patient=patient)
    try:
        services.confirm_safety_bounds(bounds=bounds, actor=request.user)
        messages.success(request, f"The {bounds.medication} bounds are confirmed and in force.")
    except DomainError as error:
        messages.error(request, error.message)
    return redirect("portal:patient", patient.pk)
