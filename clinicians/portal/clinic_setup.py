"""The administrator's workspace: care teams, staff, patients and their phones.

Every action calls one service (``accounts.services``, ``accounts.staff``,
``clinicians.enrolment``, ``patients.services``, ``patients.activation``), which authorizes it
by its named action, journals it with old and new values and journals its refusals. The views
only turn forms into calls and errors into messages beside their field. Pages showing patients
are reads of patient data (``patients.administer``), journalled.

A one-time link or an activation code exists only in the response that shows it: the
administrator hands it on; it is never stored, mailed or shown again.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import wraps

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_otp.decorators import otp_required
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services as team_services
from accounts import staff
from accounts.models import CareTeam, CareTeamMembership, OneTimeLink, Role, User
from audit.services import record_refusal
from clinicians import alerts, enrolment
from clinicians.models import (
    TARGET_DIASTOLIC_LIMITS,
    TARGET_SYSTOLIC_LIMITS,
    EscalationTarget,
    SafetyBounds,
)
from clinicians.portal.qr import qr_svg
from core import authz
from core.errors import DomainError
from core.ids import parse_id
from patients import activation
from patients.formulary import FORMULARY
from patients.identifiers import Identifier, check_system, check_value
from patients.models import Ethnicity, Patient, Race, Sex
from patients.services import transfer_patient

PAGE_SIZE = 50


def admin_only(view):
    """Signed in with the second factor, and an administrator (the services check again)."""

    @wraps(view)
    @otp_required(login_url="portal:login")
    def wrapper(request, *args, **kwargs):
        if not authz.can(request.user, "accounts.manage_users"):
            message = authz.message_of("accounts.manage_users")
            record_refusal(
                actor=request.user,
                attempted=f"portal:{request.resolver_match.url_name}",
                message=message,
            )
            return HttpResponseForbidden(message)
        return view(request, *args, **kwargs)

    return wrapper


def _posted_id(request, name: str) -> int | None:
    """A row id from a form (None when the text names no row: then 404, never 500)."""
    return parse_id(request.POST.get(name) or "")


def _apply_error(form: forms.Form, error: DomainError) -> None:
    problems = getattr(error, "problems", None) or [error]
    for problem in problems:
        field = problem.field if problem.field in form.fields else None
        form.add_error(field, problem.message)


# --- home ----------------------------------------------------------------------------------------


def _staff_status(user: User) -> str:
    if not user.is_active:
        return "deactivated"
    if not user.has_usable_password():
        return "invited"
    if user.role != Role.PATIENT and not getattr(user, "has_authenticator", True):
        return "second factor pending"
    return "active"


@admin_only
def home(request):
    teams = CareTeam.objects.annotate(
        members=Count("memberships", distinct=True),
        in_care=Count(
            "assignments",
            filter=Q(assignments__patient__discharged_at__isnull=True),
            distinct=True,
        ),
    ).order_by("-is_active", "name")
    people = list(
        User.objects.exclude(role__in=[Role.PATIENT, Role.SERVICE])
        .annotate(
            authenticators=Count("totpdevice", filter=Q(totpdevice__confirmed=True), distinct=True)
        )
        .order_by("-is_active", "role", "username")
    )
    for person in people:
        person.has_authenticator = person.authenticators > 0
        person.status = _staff_status(person)
    query = (request.GET.get("q") or "").strip()[:100]
    patients = Patient.objects.prefetch_related("care_teams").annotate(
        pending_bounds=Count(
            "safety_bounds", filter=Q(safety_bounds__confirmed_at__isnull=True), distinct=True
        )
    )
    if query:
        patients = patients.filter(
            Q(mrn__iexact=query) | Q(family_name__icontains=query) | Q(given_name__icontains=query)
        )
    shown = list(patients.order_by("family_name", "given_name", "pk")[:PAGE_SIZE])
    authz.authorize_read(
        request.user,
        "patients.administer",
        shown=[p.pk for p in shown],
        detail={"view": "portal.admin.home", "query": bool(query)},
    )
    return render(
        request,
        "portal/setup/home.html",
        {
            "teams": teams,
            "people": people,
            "patients": shown,
            "query": query,
            "team_form": TeamForm(),
        },
    )


# --- care teams ----------------------------------------------------------------------------------


class TeamForm(forms.Form):
    name = forms.CharField(max_length=120, label="Team name")


class MemberForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=User.objects.filter(role=Role.CLINICIAN, is_active=True).order_by("username"),
        label="Clinician",
    )
    team_role = forms.ChoiceField(choices=CareTeamMembership.TeamRole.choices, label="Role in team")
    is_on_call = forms.BooleanField(required=False, label="On call")


@require_POST
@admin_only
def team_create(request):
    form = TeamForm(request.POST)
    if form.is_valid():
        try:
            team = team_services.create_care_team(
                name=form.cleaned_data["name"], actor=request.user
            )
            messages.success(request, f"Care team “{team.name}” created.")
            return redirect("portal:admin-team", team.pk)
        except DomainError as error:
            _apply_error(form, error)
    messages.error(request, "; ".join(m for errors in form.errors.values() for m in errors))
    return redirect("portal:admin-home")


def _ladder_rows(team: CareTeam) -> list[dict]:
    """The ladder's form: the team's rungs, then empty rows up to the maximum."""
    rungs = alerts.ladder_for(team.pk)
    rows = [{"minutes": r.after_minutes, "target": r.target} for r in rungs]
    rows += [{"minutes": "", "target": ""}] * (alerts.LADDER_MAX_STEPS - len(rows))
    return [{"index": i, **row} for i, row in enumerate(rows)]


@admin_only
def team_detail(request, team_id: int):
    team = get_object_or_404(CareTeam, pk=team_id)
    rename = TeamForm(initial={"name": team.name})
    member_form = MemberForm()
    status = 200
    if request.method == "POST":
        what = request.POST.get("what")
        try:
            if what == "rename":
                rename = TeamForm(request.POST)
                if rename.is_valid():
                    team_services.rename_care_team(
                        care_team=team, name=rename.cleaned_data["name"], actor=request.user
                    )
                    messages.success(request, "Team renamed.")
                    return redirect("portal:admin-team", team.pk)
            elif what == "add":
                member_form = MemberForm(request.POST)
                if member_form.is_valid():
                    team_services.add_team_member(
                        care_team=team,
                        user=member_form.cleaned_data["user"],
                        team_role=member_form.cleaned_data["team_role"],
                        is_on_call=member_form.cleaned_data["is_on_call"],
                        actor=request.user,
                    )
                    messages.success(request, "Member added.")
                    return redirect("portal:admin-team", team.pk)
            elif what in ("change", "remove"):
                membership = get_object_or_404(
                    CareTeamMembership, pk=_posted_id(request, "membership"), care_team=team
                )
                if what == "remove":
                    team_services.remove_team_member(membership=membership, actor=request.user)
                    messages.success(request, "Member removed; their sessions were ended.")
                else:
                    team_services.change_team_member(
                        membership=membership,
                        team_role=request.POST.get("team_role") or None,
                        is_on_call=request.POST.get("is_on_call") == "on",
                        actor=request.user,
                    )
                    messages.success(request, "Member updated.")
                return redirect("portal:admin-team", team.pk)
            elif what == "ladder":
                steps = [
                    (request.POST.get(f"minutes_{i}", "").strip(), request.POST.get(f"target_{i}"))
                    for i in range(alerts.LADDER_MAX_STEPS)
                    if request.POST.get(f"minutes_{i}", "").strip()
                ]
                alerts.set_ladder(team=team, steps=steps, actor=request.user)
                messages.success(request, "Escalation ladder saved; it applies to new alerts.")
                return redirect("portal:admin-team", team.pk)
            elif what == "deactivate":
                team_services.deactivate_care_team(care_team=team, actor=request.user)
                messages.success(request, "Team deactivated.")
                return redirect("portal:admin-team", team.pk)
            status = 400
        except DomainError as error:
            target = member_form if what == "add" else rename
            _apply_error(target, error)
            if what in ("change", "remove", "deactivate", "ladder"):
                messages.error(request, error.message)
            status = 400
    return render(
        request,
        "portal/setup/team.html",
        {
            "team": team,
            "members": team.memberships.select_related("user__clinician_profile").order_by(
                "user__username"
            ),
            "rename": rename,
            "member_form": member_form,
            "team_roles": CareTeamMembership.TeamRole.choices,
            "ladder": _ladder_rows(team),
            "ladder_targets": EscalationTarget.choices,
        },
        status=status,
    )


# --- staff ---------------------------------------------------------------------------------------


class InviteForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(
        choices=[(r.value, r.label) for r in staff.INVITABLE_ROLES],
    )
    email = forms.EmailField(required=False)
    display_name = forms.CharField(
        max_length=120, required=False, label="Name patients see (clinicians)"
    )
    qualification = forms.CharField(max_length=60, required=False)
    care_team = forms.ModelChoiceField(
        queryset=CareTeam.objects.filter(is_active=True), required=False, label="Care team"
    )


def _link_page(request, issued: staff.IssuedLink, what: str):
    url = request.build_absolute_uri(issued.path)
    return render(
        request,
        "portal/setup/link.html",
        {"issued": issued, "url": url, "what": what, "qr_svg": qr_svg(url)},
    )


@admin_only
def staff_invite(request):
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = staff.invite_staff(actor=request.user, **form.cleaned_data)
            return _link_page(request, issued, "invitation")
        except DomainError as error:
            _apply_error(form, error)
    status = 400 if request.method == "POST" else 200
    return render(request, "portal/setup/invite.html", {"form": form}, status=status)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))


@admin_only
def staff_detail(request, user_id: int):
    person = get_object_or_404(
        User.objects.exclude(role__in=[Role.PATIENT, Role.SERVICE]), pk=user_id
    )
    form = ReasonForm(request.POST or None)
    status = 200
    if request.method == "POST":
        what = request.POST.get("what")
        try:
            if what == "reinvite":
                return _link_page(
                    request, staff.reissue_invitation(user=person, actor=request.user), "invitation"
                )
            if form.is_valid():
                reason = form.cleaned_data["reason"]
                if what == "deactivate":
                    staff.deactivate_user(user=person, reason=reason, actor=request.user)
                    messages.success(request, "Account deactivated; every session of it ended.")
                    return redirect("portal:admin-staff", person.pk)
                if what == "reset":
                    issued = staff.reset_second_factor(
                        user=person, reason=reason, actor=request.user
                    )
                    return _link_page(request, issued, "second-factor enrolment")
            status = 400
        except DomainError as error:
            _apply_error(form, error)
            status = 400
    person.has_authenticator = TOTPDevice.objects.filter(user=person, confirmed=True).exists()  # type: ignore[attr-defined]
    return render(
        request,
        "portal/setup/staff.html",
        {
            "person": person,
            "status": _staff_status(person),
            "form": form,
            "teams": person.care_team_memberships.select_related("care_team"),
            "open_link": OneTimeLink.objects.filter(
                user=person, used_at__isnull=True, withdrawn_at__isnull=True
            )
            .order_by("-created_at")
            .first(),
        },
        status=status,
    )


# --- patients ------------------------------------------------------------------------------------


class EnrolForm(forms.Form):
    given_name = forms.CharField(max_length=100)
    family_name = forms.CharField(max_length=100)
    birth_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    sex = forms.ChoiceField(choices=Sex.choices)
    race = forms.ChoiceField(choices=Race.choices, initial=Race.UNKNOWN)
    ethnicity = forms.ChoiceField(choices=Ethnicity.choices, initial=Ethnicity.UNKNOWN)
    mrn = forms.CharField(max_length=64, label="MRN (the EHR's identifier)")
    # Optional: the identifier the EHR itself gives the patient, under the EHR's system, so that
    # the EHR finds the patient by it (FHIR Patient?identifier=, CDS Hooks).
    identifier_system = forms.CharField(
        required=False,
        max_length=255,
        label="EHR identifier system (URI, optional)",
        help_text="e.g. urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14 or https://ehr.example.org/mrn",
    )
    identifier_value = forms.CharField(
        required=False, max_length=128, label="EHR identifier value", strip=False
    )
    care_team = forms.ModelChoiceField(queryset=CareTeam.objects.filter(is_active=True))
    time_zone = forms.CharField(max_length=64, initial="Europe/London", label="Time zone (IANA)")
    contact_phone = forms.CharField(max_length=32, required=False)
    regimen_since = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        label="On this regimen since",
    )
    target_systolic = forms.IntegerField(
        initial=130, min_value=TARGET_SYSTOLIC_LIMITS[0], max_value=TARGET_SYSTOLIC_LIMITS[1]
    )
    target_diastolic = forms.IntegerField(
        initial=80, min_value=TARGET_DIASTOLIC_LIMITS[0], max_value=TARGET_DIASTOLIC_LIMITS[1]
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for drug in FORMULARY:
            for prefix, label in (
                ("dose", "current dose mg"),
                ("min", "bounds: min mg"),
                ("max", "bounds: max mg"),
                ("step", "bounds: largest step without review, mg"),
            ):
                self.fields[f"{prefix}_{drug}"] = forms.CharField(
                    required=False, max_length=12, label=f"{drug} {label}"
                )

    def drug_rows(self):
        return [
            {"drug": drug, "fields": [self[f"{p}_{drug}"] for p in ("dose", "min", "max", "step")]}
            for drug in FORMULARY
        ]

    def _mg(self, name: str) -> Decimal | None:
        text = (self.cleaned_data.get(name) or "").strip()
        if not text:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            self.add_error(name, "Expected a number of mg.")
            return None
        if not value.is_finite() or value < 0:
            self.add_error(name, "Expected a number of mg.")
            return None
        return value

    def enrolment(self) -> enrolment.Enrolment | None:
        data = self.cleaned_data
        regimen: dict[str, Decimal] = {}
        bounds: list[enrolment.ProposedBounds] = []
        for drug in FORMULARY:
            dose = self._mg(f"dose_{drug}")
            if dose is not None and dose > 0:
                regimen[drug] = dose
            limits = [self._mg(f"{p}_{drug}") for p in ("min", "max", "step")]
            if any(v is not None for v in limits):
                if any(v is None for v in limits):
                    self.add_error(f"min_{drug}", "Give minimum, maximum and step, or none.")
                    continue
                bounds.append(enrolment.ProposedBounds(drug, *limits))  # type: ignore[arg-type]
        identifiers = self._identifiers()
        if self.errors:
            return None
        return enrolment.Enrolment(
            given_name=data["given_name"],
            family_name=data["family_name"],
            birth_date=data["birth_date"],
            sex=data["sex"],
            race=data["race"],
            ethnicity=data["ethnicity"],
            care_team=data["care_team"],
            time_zone=data["time_zone"],
            mrn=data["mrn"],
            contact_phone=data["contact_phone"],
            regimen=regimen,
            regimen_since=data["regimen_since"],
            bounds=bounds,
            target_systolic_mmhg=data["target_systolic"],
            target_diastolic_mmhg=data["target_diastolic"],
            identifiers=identifiers,
        )

    def _identifiers(self) -> list[Identifier]:
        """The EHR identifier, if given: both parts, checked as every door checks them."""
        system = (self.cleaned_data.get("identifier_system") or "").strip()
        value = self.cleaned_data.get("identifier_value") or ""
        if not system and not value.strip():
            return []
        try:
            return [Identifier(check_system(system, "identifier_system"), check_value(value))]
        except DomainError as error:
            field = (
                "identifier_system" if error.field == "identifier_system" else "identifier_value"
            )
            self.add_error(field, error.message)
            return []


# Service fields that name one of a drug's form fields.
_SERVICE_FIELDS = {"regimen": "dose_", "min_dose_mg": "min_", "max_dose_mg": "max_"}


@admin_only
def patient_enrol(request):
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        entered = form.enrolment()
        if entered is not None:
            try:
                patient = enrolment.enrol_patient(entered, actor=request.user)
                messages.success(
                    request,
                    "Patient enrolled. Their bounds wait for a clinician of the team to confirm "
                    "them; give the patient an activation code for their phone below.",
                )
                return redirect("portal:admin-patient", patient.pk)
            except DomainError as error:
                _apply_error(form, error)
                if error.field == "identifiers":
                    form.add_error("identifier_value", error.message)
                if error.field in ("target_systolic_mmhg", "target_diastolic_mmhg"):
                    form.add_error(error.field.removesuffix("_mmhg"), error.message)
    status = 400 if request.method == "POST" else 200
    return render(request, "portal/setup/enrol.html", {"form": form}, status=status)


class TransferForm(forms.Form):
    care_team = forms.ModelChoiceField(queryset=CareTeam.objects.filter(is_active=True))
    reason = forms.CharField(max_length=500)


@admin_only
def patient_detail(request, patient_id: int):
    patient = get_object_or_404(Patient.objects.prefetch_related("care_teams"), pk=patient_id)
    transfer = TransferForm(prefix="transfer")
    discharge = ReasonForm(prefix="discharge")
    revoke = ReasonForm(prefix="revoke")
    issued = None
    status = 200
    if request.method == "POST":
        what = request.POST.get("what")
        try:
            if what == "code":
                issued = activation.issue_activation_code(patient=patient, actor=request.user)
            elif what == "transfer":
                transfer = TransferForm(request.POST, prefix="transfer")
                if transfer.is_valid():
                    transfer_patient(patient=patient, actor=request.user, **transfer.cleaned_data)
                    messages.success(request, "Patient transferred.")
                    return redirect("portal:admin-patient", patient.pk)
                status = 400
            elif what == "discharge":
                discharge = ReasonForm(request.POST, prefix="discharge")
                if discharge.is_valid():
                    enrolment.discharge(
                        patient=patient,
                        reason=discharge.cleaned_data["reason"],
                        actor=request.user,
                    )
                    messages.success(request, "Patient discharged; their phone was signed out.")
                    return redirect("portal:admin-patient", patient.pk)
                status = 400
            elif what == "revoke":
                revoke = ReasonForm(request.POST, prefix="revoke")
                phone = get_object_or_404(
                    activation.phones_of(patient), pk=_posted_id(request, "activation")
                )
                if revoke.is_valid():
                    activation.revoke_phone(
                        activation=phone, reason=revoke.cleaned_data["reason"], actor=request.user
                    )
                    messages.success(request, "Phone revoked; it is signed out.")
                    return redirect("portal:admin-patient", patient.pk)
                status = 400
        except DomainError as error:
            messages.error(request, error.message)
            status = 400
    authz.authorize_read(
        request.user, "patients.administer", patient, detail={"view": "portal.admin.patient"}
    )
    server = request.build_absolute_uri("/")
    return render(
        request,
        "portal/setup/patient.html",
        {
            "patient": patient,
            "bounds": SafetyBounds.objects.filter(patient=patient).order_by("medication"),
            "regimen": patient.prescriptions.filter(ended_at__isnull=True).order_by("medication"),
            "phones": activation.phones_of(patient),
            "wearables": patient.devices.order_by("registered_at"),
            "issued": issued,
            "issued_qr": qr_svg(activation.activation_uri(issued.code, server)) if issued else "",
            "transfer": transfer,
            "discharge": discharge,
            "revoke": revoke,
        },
        status=status,
    )


class ImportForm(forms.Form):
    file = forms.FileField(label="Enrolment CSV")


@admin_only
def patient_import(request):
    form = ImportForm(request.POST or None, request.FILES or None)
    report = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > enrolment.MAX_FILE_BYTES:
                form.add_error(
                    "file", f"The file is larger than {enrolment.MAX_FILE_BYTES // 1000} kB."
                )
            else:
                try:
                    report = enrolment.import_enrolment_csv(upload.read(), actor=request.user)
                    status = 200
                except DomainError as error:
                    form.add_error("file", error.message)
    return render(
        request,
        "portal/setup/import.html",
        {
            "form": form,
            "report": report,
            "required": enrolment.REQUIRED_COLUMNS,
            "optional": enrolment.OPTIONAL_COLUMNS,
        },
        status=status,
    )
