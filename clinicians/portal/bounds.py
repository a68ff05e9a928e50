"""The safety bounds editor on the patient chart (``portal/_bounds.html``).

Per drug, one form with every setting: its absolute limit is the input's ``min``/``max`` and its
recommended range the help text (``clinicians.bounds_policy``). "Preview" re-renders the chart
with the values outside the recommended range and the tier the drug's open proposal would get
under the typed values — nothing is saved. "Save" needs a reason when a new value is outside
the recommended range; a refusal comes back as typed, beside the fields, with 400. The alert
thresholds have the same two layers and the same two buttons.

The services decide (``clinicians.services``); this module shows their rules before they run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.http import HttpResponseForbidden, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.http import require_http_methods, require_POST
from django_otp.decorators import otp_required

from clinicians import services
from clinicians.bounds_policy import (
    BOUNDS_FIELDS,
    REASON_MAX_CHARS,
    Check,
    DrugBounds,
    Setting,
    TierPreview,
    bounds_settings,
    check_bounds,
    check_thresholds,
    number_text,
    preview_tier,
    threshold_settings,
)
from clinicians.evaluation import OPEN_STATUSES
from clinicians.models import (
    Recommendation,
    RecommendationKind,
    SafetyBounds,
    Tier,
)
from clinicians.portal.review import _render_chart
from clinicians.safety import DEFAULT_THRESHOLDS
from clinicians.selectors import bounds_for_patient
from clinicians.treatment import Judgement, course_view, target_for, thresholds_for
from core import authz
from core.errors import DomainError
from patients import course
from patients.formulary import FORMULARY
from patients.models import Patient
from patients.selectors import patients_visible_to

# --- forms --------------------------------------------------------------------------------------


class _TwoLayerForm(forms.Form):
    """A form whose inputs carry the absolute limits (``min``/``max``) and whose help text
    states the recommended range, from the policy's settings."""

    reason = forms.CharField(
        required=False,
        max_length=REASON_MAX_CHARS,
        label="Reason for values outside the recommended range (kept in the journal)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def _apply(self, settings: dict[str, Setting]) -> None:
        for name, setting in settings.items():
            bound = self.fields[name]
            bound.label = f"{setting.label} ({setting.unit})" if setting.unit else setting.label
            bound.help_text = escape(setting.help)  # Django's field template marks it safe
            if setting.hard is not None:
                bound.widget.attrs.update(
                    {"min": number_text(setting.hard.low), "max": number_text(setting.hard.high)}
                )

    def refuses(self, check: Check) -> bool:
        """Whether these values may not be saved: each absolute limit crossed goes beside its
        field, and a missing reason for new values outside the recommended range beside the
        reason (the services would refuse both; here the clinician sees all at once)."""
        for problem in check.refused:
            self.add_error(problem.field if problem.field in self.fields else None, problem.message)
        if not check.is_refused and check.needs_reason and not self.cleaned_data["reason"].strip():
            self.add_error(
                "reason", "A reason is required: a new value is outside the recommended range."
            )
        return bool(self.errors)

    def add_domain_error(self, error: DomainError) -> None:
        self.add_error(error.field if error.field in self.fields else None, error.message)


def _dose_field() -> forms.DecimalField:
    return forms.DecimalField(max_digits=7, decimal_places=2)


class BoundsForm(_TwoLayerForm):
    medication = forms.ChoiceField(
        choices=[(name, name) for name in FORMULARY], widget=forms.HiddenInput
    )
    min_dose_mg = _dose_field()
    max_dose_mg = _dose_field()
    max_auto_step_mg = _dose_field()
    target_systolic_mmhg = forms.IntegerField()
    target_diastolic_mmhg = forms.IntegerField()
    min_interval_days = forms.IntegerField()
    may_start = forms.BooleanField(required=False)
    field_order = ["medication", *BOUNDS_FIELDS, "reason"]

    def __init__(self, medication: str, data=None, initial=None):
        # Ids of its own: a form per drug on one page.
        super().__init__(data, initial=initial, auto_id=f"id_bounds_{medication}_%s")
        self._apply(bounds_settings(medication))

    def candidate(self) -> DrugBounds:
        data = self.cleaned_data
        return DrugBounds(
            medication=data["medication"],
            min_dose_mg=data["min_dose_mg"],
            max_dose_mg=data["max_dose_mg"],
            max_auto_step_mg=data["max_auto_step_mg"],
            target_systolic_mmhg=data["target_systolic_mmhg"],
            target_diastolic_mmhg=data["target_diastolic_mmhg"],
            may_start=data["may_start"],
            min_interval_days=data["min_interval_days"],
        )


class ThresholdsForm(_TwoLayerForm):
    crisis_systolic_mmhg = forms.IntegerField()
    crisis_diastolic_mmhg = forms.IntegerField()
    hypotension_systolic_mmhg = forms.IntegerField()
    stale_after_hours = forms.IntegerField()
    field_order = [*DEFAULT_THRESHOLDS, "reason"]

    def __init__(self, data=None, initial=None):
        super().__init__(data, initial=initial, auto_id="id_thresholds_%s")
        self._apply(threshold_settings())

    def values(self) -> dict[str, int]:
        return {name: self.cleaned_data[name] for name in DEFAULT_THRESHOLDS}


# --- what the template shows --------------------------------------------------------------------


@dataclass(frozen=True)
class TierLine:
    tier: str
    label: str
    reasons: tuple[str, ...]

    @classmethod
    def of(cls, judgement: Judgement) -> TierLine:
        return cls(
            judgement.tier,
            Tier(judgement.tier).label,
            tuple(r["message"] for r in judgement.reasons),
        )


@dataclass
class DrugEditor:
    medication: str
    form: BoundsForm
    bounds: SafetyBounds | None  # stored: in force, or entered at enrolment (pending)
    check: Check | None = None  # after Preview or a refused Save
    preview: TierPreview | None = None
    previewed: bool = False
    is_refusal: bool = False

    @property
    def is_open(self) -> bool:
        return self.bounds is not None or self.check is not None or self.form.is_bound

    @property
    def preview_now(self) -> TierLine | None:
        return TierLine.of(self.preview.now) if self.preview and self.preview.now else None

    @property
    def preview_then(self) -> TierLine | None:
        return TierLine.of(self.preview.then) if self.preview and self.preview.then else None


@dataclass
class ThresholdsEditor:
    form: ThresholdsForm
    check: Check | None = None
    previewed: bool = False
    is_refusal: bool = False


@dataclass
class BoundsEditor:
    """The editor's state for the chart (``_render_chart(bounds_editor=…)``)."""

    drugs: list[DrugEditor] = field(default_factory=list)
    thresholds: ThresholdsEditor | None = None

    @property
    def is_refusal(self) -> bool:
        return any(d.is_refusal for d in self.drugs) or bool(
            self.thresholds and self.thresholds.is_refusal
        )


def _initial_bounds(row: SafetyBounds | None, medication: str, target: tuple[int, int]) -> dict:
    if row is not None:
        return {"medication": medication, **DrugBounds.of(row).values()}
    # No bounds yet: no dose is suggested; every change is reviewed until one is chosen.
    return {
        "medication": medication,
        "max_auto_step_mg": Decimal(0),
        "target_systolic_mmhg": target[0],
        "target_diastolic_mmhg": target[1],
        "min_interval_days": course.DEFAULT_MIN_INTERVAL_DAYS,
        "may_start": False,
    }


def _thresholds_in_force(patient: Patient) -> dict[str, int]:
    return asdict(thresholds_for(patient))


def _editor(
    patient: Patient,
    *,
    drug: DrugEditor | None = None,
    thresholds: ThresholdsEditor | None = None,
) -> BoundsEditor:
    """Every drug's form and the thresholds' form, with ``drug`` or ``thresholds`` (the one
    just previewed or refused) in place of its blank state."""
    rows = {b.medication: b for b in bounds_for_patient(patient)}
    target = target_for(patient)
    drugs = [
        drug
        if drug is not None and drug.medication == name
        else DrugEditor(
            name,
            BoundsForm(name, initial=_initial_bounds(rows.get(name), name, target)),
            rows.get(name),
        )
        for name in FORMULARY
    ]
    return BoundsEditor(
        drugs=drugs,
        thresholds=thresholds
        or ThresholdsEditor(ThresholdsForm(initial=_thresholds_in_force(patient))),
    )


def _open_proposal(patient: Patient, medication: str) -> Recommendation | None:
    """The drug's most recent dose proposal still waiting (for review, blocked, or on the
    patient's phone)."""
    return (
        Recommendation.objects.filter(
            patient=patient,
            medication=medication,
            kind=RecommendationKind.TITRATE,
            status__in=OPEN_STATUSES,
        )
        .order_by("-created_at", "-pk")
        .first()
    )


# --- views --------------------------------------------------------------------------------------


def _patient_to_edit(request, patient_id: int) -> Patient:
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    authz.authorize(request.user, "clinicians.set_bounds", patient)
    return patient


def _back_to_chart(patient: Patient) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("portal:patient", args=[patient.pk]) + "#bounds")


@require_http_methods(["GET", "POST"])
@otp_required(login_url="portal:login")
def edit_bounds(request, patient_id: int):
    """GET: the chart with the editor open. POST (one drug's form): ``preview`` shows the two
    layers and the tier preview, saving nothing; otherwise save."""
    try:
        patient = _patient_to_edit(request, patient_id)
    except DomainError as error:
        return HttpResponseForbidden(error.message)
    if request.method != "POST":
        return _render_chart(request, patient, bounds_editor=_editor(patient))
    medication = request.POST.get("medication", "")
    if medication not in FORMULARY:
        messages.error(request, "Choose a drug of the formulary.")
        return _back_to_chart(patient)
    row = bounds_for_patient(patient).filter(medication=medication).first()
    form = BoundsForm(medication, data=request.POST)
    drug = DrugEditor(medication, form, row)
    is_preview = bool(request.POST.get("preview"))
    if not form.is_valid():
        drug.is_refusal = True
        return _render_chart(request, patient, bounds_editor=_editor(patient, drug=drug))
    candidate = form.candidate()
    in_force = DrugBounds.of(row) if row is not None and row.is_confirmed else None
    drug.check = check_bounds(candidate, previous=in_force)
    if is_preview:
        drug.previewed = True
        if not drug.check.is_refused:
            drug.preview = preview_tier(
                course_view(patient, timezone.now()),
                _open_proposal(patient, medication),
                candidate,
            )
        return _render_chart(request, patient, bounds_editor=_editor(patient, drug=drug))
    if form.refuses(drug.check):
        drug.is_refusal = True
        return _render_chart(request, patient, bounds_editor=_editor(patient, drug=drug))
    try:
        services.set_safety_bounds(
            patient=patient,
            actor=request.user,
            reason=form.cleaned_data["reason"],
            medication=medication,
            min_dose_mg=candidate.min_dose_mg,
            max_dose_mg=candidate.max_dose_mg,
            max_auto_step_mg=candidate.max_auto_step_mg,
            target_systolic_mmhg=candidate.target_systolic_mmhg,
            target_diastolic_mmhg=candidate.target_diastolic_mmhg,
            may_start=candidate.may_start,
            min_interval_days=candidate.min_interval_days,
        )
    except DomainError as error:
        form.add_domain_error(error)
        drug.is_refusal = True
        return _render_chart(request, patient, bounds_editor=_editor(patient, drug=drug))
    messages.success(request, f"The {medication} bounds are saved and in force.")
    return _back_to_chart(patient)


@require_POST
@otp_required(login_url="portal:login")
def edit_thresholds(request, patient_id: int):
    """The alert thresholds: ``preview`` shows the two layers, saving nothing; otherwise save."""
    try:
        patient = _patient_to_edit(request, patient_id)
    except DomainError as error:
        return HttpResponseForbidden(error.message)
    form = ThresholdsForm(data=request.POST)
    editor = ThresholdsEditor(form)
    if not form.is_valid():
        editor.is_refusal = True
        return _render_chart(request, patient, bounds_editor=_editor(patient, thresholds=editor))
    values = form.values()
    editor.check = check_thresholds(values, previous=_thresholds_in_force(patient))
    if request.POST.get("preview"):
        editor.previewed = True
        return _render_chart(request, patient, bounds_editor=_editor(patient, thresholds=editor))
    if form.refuses(editor.check):
        editor.is_refusal = True
        return _render_chart(request, patient, bounds_editor=_editor(patient, thresholds=editor))
    try:
        services.set_alert_thresholds(
            patient=patient, actor=request.user, reason=form.cleaned_data["reason"], **values
        )
    except DomainError as error:
        form.add_domain_error(error)
        editor.is_refusal = True
        return _render_chart(request, patient, bounds_editor=_editor(patient, thresholds=editor))
    messages.success(request, "The alert thresholds are saved and in force.")
    return _back_to_chart(patient)
