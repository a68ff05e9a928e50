"""The model owner workspace in the portal (issue 13): every model version with its stage,
lineage, gates and their evidence, fairness, privacy spent, monitoring and clinicians'
overrides; promotion, shadow and rollback signed with the owner's password; model alerts
acknowledged and closed.

Who: model owners only (``models_ml.own_models``; ``models_ml/rules.py``) — every other role
gets 403, anybody without the second factor the portal's sign-in. What is shown and changed is
``models_ml.workspace``'s: the same registry services, gates and journal as the ``promote`` and
``rollback`` commands. The one thing read here is what only ``clinicians`` holds: how
clinicians decided each version's proposals.
"""

from __future__ import annotations

from functools import wraps

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_otp.decorators import otp_required

from audit.services import record_refusal
from clinicians.models import Recommendation
from clinicians.selectors import DECIDED, OVERRIDDEN
from core import authz
from core.errors import DomainError, Forbidden, NotFound
from models_ml import alerts
from models_ml.artifacts import ArtifactIntegrityError
from models_ml.dose_model import FeatureSetMismatch
from models_ml.models import ModelAlert, ModelVersion
from models_ml.workspace import selectors as workspace
from models_ml.workspace import services as stage_changes

OWN_MODELS = stage_changes.OWN_MODELS
FORBIDDEN_TEMPLATE = "portal/models/forbidden.html"


def model_owners_only(view):
    """The second factor first (anybody else goes to the portal's sign-in), then the named
    action: every role but the model owner is answered 403, with the rule's message; a version
    or alert that does not exist is 404."""

    @otp_required(login_url="portal:login")
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not authz.can(request.user, OWN_MODELS):
            return _forbidden(request, authz.message_of(OWN_MODELS))
        try:
            return view(request, *args, **kwargs)
        except Forbidden as refusal:
            return _forbidden(request, refusal.message)
        except NotFound:
            return render(request, "portal/models/missing.html", status=404)

    return wrapped


def _forbidden(request, message: str):
    record_refusal(
        actor=request.user,
        attempted=f"portal:{request.resolver_match.url_name if request.resolver_match else ''}",
        message=message,
        object_type="model_version",
    )
    return render(request, FORBIDDEN_TEMPLATE, {"message": message}, status=403)


def _owned_version(user, version: str) -> ModelVersion:
    """The version, if ``user`` may own it (``Forbidden``, ``NotFound`` otherwise)."""
    model_version = (
        ModelVersion.objects.select_related(
            "dataset", "previous_production", "promoted_by", "waived_by"
        )
        .filter(version=version)
        .first()
    )
    if model_version is None:
        raise NotFound(f"No model version {version!r}.", field="version")
    authz.authorize(user, OWN_MODELS, model_version)
    return model_version


def _owned_alert(user, alert_id: int) -> ModelAlert:
    alert = ModelAlert.objects.select_related("model_version").filter(pk=alert_id).first()
    if alert is None:
        raise NotFound("No such model alert.", field="alert_id")
    authz.authorize(user, OWN_MODELS, alert.model_version)
    return alert


# --- clinicians' overrides of each version's proposals ---------------------------------------


def override_counts(versions: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """Per model version: proposals clinicians (or patients) decided, and those clinicians
    modified or rejected — the counts the override monitor judges
    (``clinicians.selectors.monitoring_inputs``), over the version's whole life. Counts only:
    no patient's data leaves this query."""
    recommendations = Recommendation.objects.filter(status__in=DECIDED)
    if versions is not None:
        recommendations = recommendations.filter(model_version__in=versions)
    return {
        row["model_version"]: (row["decided"], row["overridden"])
        for row in recommendations.values("model_version").annotate(
            decided=Count("id"), overridden=Count("id", filter=Q(status__in=OVERRIDDEN))
        )
    }


# --- forms ----------------------------------------------------------------------------------


class _SignedForm(forms.Form):
    password = forms.CharField(
        label="Your password (signs this change)",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        strip=False,
    )


class PromoteForm(_SignedForm):
    waive = forms.MultipleChoiceField(
        label="Waive these failed gates",
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    waiver_reason = forms.CharField(
        label="Written reason for the waiver",
        required=False,
        max_length=stage_changes.MAX_WAIVER_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args, waivable: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        waive = self.fields["waive"]
        assert isinstance(waive, forms.MultipleChoiceField)
        waive.choices = [(name, name) for name in waivable]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("waive") and not (cleaned.get("waiver_reason") or "").strip():
            self.add_error("waiver_reason", "A waiver needs a written reason.")
        return cleaned


class CloseAlertForm(forms.Form):
    reason = forms.CharField(max_length=alerts.MAX_REASON_LENGTH, widget=forms.Textarea)


# --- pages ----------------------------------------------------------------------------------


@model_owners_only
def versions(request):
    """Every model version, newest first, with what an owner decides on."""
    rows = workspace.versions_overview(override_counts())
    in_force = list(alerts.alerts_for().filter(is_open=True))
    return render(
        request,
        "portal/models/home.html",
        {
            "rows": rows,
            "production": next((row for row in rows if row.stage == "production"), None),
            "shadow": next((row for row in rows if row.stage == "shadow"), None),
            "alerts_in_force": in_force,
        },
    )


def _render_version(
    request,
    model_version: ModelVersion,
    *,
    status: int = 200,
    bound: dict[str, forms.Form] | None = None,
    refusal: str = "",
    failing: list | None = None,
) -> HttpResponse:
    """The page of one version; ``bound`` holds the form that was posted (by its name in the
    page: ``promote_form``, ``shadow_form``, ``rollback_form``), kept with its errors."""
    decided, overridden = override_counts([model_version.version]).get(
        model_version.version, (0, 0)
    )
    evidence = workspace.version_evidence(model_version, decided=decided, overridden=overridden)
    return render(
        request,
        "portal/models/version.html",
        {
            "evidence": evidence,
            "mv": model_version,
            "card": evidence.card,
            "promote_form": PromoteForm(waivable=evidence.waivable_failed),
            "shadow_form": _SignedForm(),
            "rollback_form": _SignedForm(),
            **(bound or {}),
            "refusal": refusal,
            "failing": failing or [],
        },
        status=status,
    )


@model_owners_only
def version_page(request, version: str):
    return _render_version(request, _owned_version(request.user, version))


def _refused(error: Exception) -> tuple[str, int]:
    """The refusal's words and status: a domain refusal says its own (409 for a refused
    promotion, 403 for a wrong password, 429 when locked out); a gate re-run that could not
    load an artifact is a conflict with the record."""
    if isinstance(error, DomainError):
        return error.message, error.http_status
    return f"The gates could not be run again against production: {error}", 409


@require_POST
@model_owners_only
def promote(request, version: str):
    """Promote to production through the gates, signed; a refusal is shown with the failing
    gates and their reasons, the form kept (the password aside)."""
    model_version = _owned_version(request.user, version)
    form = PromoteForm(request.POST, waivable=workspace.waivable_failed_gates(model_version))
    if not form.is_valid():
        return _render_version(request, model_version, status=400, bound={"promote_form": form})
    try:
        promoted = stage_changes.promote_signed(
            model_version,
            actor=request.user,
            password=form.cleaned_data["password"],
            waive=form.cleaned_data["waive"],
            waiver_reason=form.cleaned_data["waiver_reason"],
        )
    except (DomainError, ArtifactIntegrityError, FeatureSetMismatch, OSError) as error:
        message, status = _refused(error)
        field = getattr(error, "field", None)
        if field in form.fields:
            form.add_error(field, message)
        model_version.refresh_from_db()
        waived = form.cleaned_data["waive"] if form.cleaned_data["waiver_reason"].strip() else []
        failing = workspace.failing_gates(model_version, waived=waived) if status == 409 else []
        return _render_version(
            request,
            model_version,
            status=status,
            bound={"promote_form": form},
            refusal=message,
            failing=failing,
        )
    messages.success(request, f"{promoted.version} is now {promoted.stage}.")
    return redirect("portal:models-version", version=promoted.version)


def _signed_change(request, version: str, change, form_name: str, done) -> HttpResponse:
    """A stage change signed with the password alone: a refusal shows on the page with the
    form, a success goes back to the page with ``done(model_version, result)`` said."""
    model_version = _owned_version(request.user, version)
    form = _SignedForm(request.POST)
    if not form.is_valid():
        return _render_version(request, model_version, status=400, bound={form_name: form})
    try:
        result = change(model_version, actor=request.user, password=form.cleaned_data["password"])
    except DomainError as error:
        if error.field in form.fields:
            form.add_error(error.field, error.message)
        model_version.refresh_from_db()
        return _render_version(
            request,
            model_version,
            status=error.http_status,
            refusal=error.message,
            bound={form_name: form},
        )
    messages.success(request, done(model_version, result))
    return redirect("portal:models-version", version=model_version.version)


@require_POST
@model_owners_only
def shadow(request, version: str):
    """Run a candidate beside production, signed."""
    return _signed_change(
        request,
        version,
        stage_changes.set_shadow_signed,
        "shadow_form",
        lambda model_version, moved: f"{moved.version} is now in shadow.",
    )


@require_POST
@model_owners_only
def rollback(request, version: str):
    """Retire the production model and restore the one it replaced, signed."""
    return _signed_change(
        request,
        version,
        stage_changes.rollback_signed,
        "rollback_form",
        lambda model_version, restored: (
            f"{model_version.version} is retired; production is now "
            f"{restored.version if restored else 'the protocol'}."
        ),
    )


def _back(request, alert: ModelAlert):
    if request.POST.get("next") == "home":
        return redirect("portal:models-home")
    return redirect("portal:models-version", version=alert.model_version.version)


@require_POST
@model_owners_only
def acknowledge_alert(request, alert_id: int):
    alert = _owned_alert(request.user, alert_id)
    try:
        alerts.acknowledge(alert, request.user)
        messages.success(request, f"Alert {alert.pk} acknowledged: it stays in force.")
    except DomainError as error:
        messages.error(request, error.message)
    return _back(request, alert)


@require_POST
@model_owners_only
def close_alert(request, alert_id: int):
    alert = _owned_alert(request.user, alert_id)
    form = CloseAlertForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, "Say why the alert can be closed (what was done, or why it was a false alarm)."
        )
        return _back(request, alert)
    try:
        alerts.close(alert, request.user, form.cleaned_data["reason"])
        messages.success(request, f"Alert {alert.pk} closed.")
    except DomainError as error:
        messages.error(request, error.message)
    return _back(request, alert)
