"""The caregiver's pages: sign-in (password, then the authenticator code when they enrolled
one), the one-time link a patient handed them, and the list of patients they follow.

Every page that shows a patient's data reads it through the controller, narrowed to what each
grant covers, and journals it (the patient's access log shows it)."""

from __future__ import annotations

import functools
import time

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth.forms import AuthenticationForm
from django.db import transaction
from django.shortcuts import redirect, render
from django.views import View
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import staff
from audit.models import Action
from audit.services import record_event
from clinicians.alert_evidence import URGENT_KINDS
from clinicians.caregiver_consumer import CARE_SESSION_KEY
from clinicians.models import AlertStatus
from clinicians.portal.qr import authenticator_enrolment
from clinicians.portal.views import CodeForm
from clinicians.portal.views import WelcomeView as StaffWelcomeView
from clinicians.selectors import alerts_visible_to
from core import authz
from core.errors import DomainError
from patients import caregivers
from patients.models import ReadingType
from patients.selectors import readings_visible_to

FOLLOW = "patients.follow_granted_patients"
PENDING_USER_KEY = "care_pending_user"
PENDING_SINCE_KEY = "care_pending_since"
PENDING_MAX_AGE_SECONDS = 300


def signed_in_caregiver(request):
    """The caregiver of this session, or None: a session whose second factor was verified, or —
    for a caregiver who chose no authenticator — one that signed in here with the password
    (marked; a session opened elsewhere, such as the authorization server's sign-in page, does
    not open this workspace)."""
    user = request.user
    if not user.is_authenticated or not authz.can(user, FOLLOW):
        return None
    if user.is_verified():
        return user
    if caregivers.has_second_factor(user):
        return None
    return user if request.session.get(CARE_SESSION_KEY) == user.pk else None


def caregiver_required(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if signed_in_caregiver(request) is None:
            return redirect("care:login")
        return view(request, *args, **kwargs)

    return wrapper


def _start_session(request, user, device=None) -> None:
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if device is not None:
        otp_login(request, device)
    request.session[CARE_SESSION_KEY] = user.pk


class LoginView(View):
    template_name = "care/login.html"

    def get(self, request):
        return render(request, self.template_name, {"form": AuthenticationForm(request)})

    def post(self, request):
        form = AuthenticationForm(request, data=request.POST)
        if not form.is_valid():
            return render(request, self.template_name, {"form": form}, status=400)
        user = form.get_user()
        if not authz.can(user, FOLLOW):
            form.add_error(None, "This sign-in is for caregivers. Care teams sign in at /portal/.")
            return render(request, self.template_name, {"form": form}, status=403)
        request.session.cycle_key()
        if caregivers.has_second_factor(user):
            request.session[PENDING_USER_KEY] = user.pk
            request.session[PENDING_SINCE_KEY] = int(time.time())
            return redirect("care:verify")
        _start_session(request, user)
        return redirect("care:home")


class SecondFactorView(View):
    """The authenticator code of a caregiver who enrolled one (at their link): asked every time."""

    template_name = "care/verify.html"

    def _pending(self, request):
        user_id = request.session.get(PENDING_USER_KEY)
        since = request.session.get(PENDING_SINCE_KEY, 0)
        if not user_id or time.time() - since > PENDING_MAX_AGE_SECONDS:
            return None, None
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first() if user else None
        return user, device

    def get(self, request):
        _, device = self._pending(request)
        if device is None:
            return redirect("care:login")
        return render(request, self.template_name, {"form": CodeForm()})

    def post(self, request):
        user, device = self._pending(request)
        if device is None:
            return redirect("care:login")
        form = CodeForm(request.POST)
        if not form.is_valid() or not device.verify_token(form.cleaned_data["code"]):
            form.add_error(None, "That code is not valid. Check your authenticator and try again.")
            with transaction.atomic():
                record_event(
                    action=Action.LOGIN_FAILED,
                    actor=user,
                    object_type="user",
                    object_id=user.pk,
                    outcome="failure",
                    detail={"channel": "care", "step": "second_factor"},
                )
            return render(request, self.template_name, {"form": form}, status=400)
        _start_session(request, user, device)
        return redirect("care:home")


@require_POST
def logout_view(request):
    logout(request)
    return redirect("care:login")


class WelcomeForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, strip=False, required=False)
    password_again = forms.CharField(widget=forms.PasswordInput, strip=False, required=False)
    code = forms.CharField(max_length=8, required=False, label="Authenticator code (optional)")


class WelcomeView(StaffWelcomeView):
    """The link a patient handed to their caregiver: a new caregiver chooses a password, one who
    already follows someone confirms with theirs; an authenticator is optional. The same
    per-address limit on openings as the staff links (``dispatch``)."""

    template_name = "care/welcome.html"

    def _render(self, request, link, form, status=200):
        context = {
            "form": form,
            "link": link,
            "is_new": not link.user.has_usable_password(),
            "has_second_factor": caregivers.has_second_factor(link.user),
            "patients": [grant.patient.display_name for grant in caregivers.pending_for(link.user)],
            **authenticator_enrolment(staff.pending_device(link.user)),
        }
        return render(request, self.template_name, context, status=status)

    def _gone(self, request, error):
        return render(request, "care/gone.html", {"message": error.message}, status=410)

    def _link(self, token: str):
        link = staff.link_for(token)
        if link.user.role != "caregiver":  # a staff link belongs on /portal/welcome/
            raise staff.LinkRefused(staff.LINK_REFUSED_MESSAGE, field="link")
        return link

    def get(self, request, token: str):
        try:
            link = self._link(token)
        except staff.LinkRefused as error:
            return self._gone(request, error)
        return self._render(request, link, WelcomeForm())

    def post(self, request, token: str):
        try:
            link = self._link(token)
        except staff.LinkRefused as error:
            return self._gone(request, error)
        form = WelcomeForm(request.POST)
        if form.is_valid():
            try:
                caregivers.accept_invitation(token=token, **form.cleaned_data)
            except staff.LinkRefused as error:
                return self._gone(request, error)
            except DomainError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, "All set. Sign in with your username and password.")
                return redirect("care:login")
        return self._render(request, link, form, status=400)


@caregiver_required
def home(request):
    """The patients this caregiver follows: per grant, the latest blood pressure (readings) and
    the open urgent alerts (alerts). Each part shown is journalled as a read of that patient."""
    user = request.user
    grants = caregivers.grants_in_force_for(user)
    ids = [grant.patient_id for grant in grants]
    latest: dict[int, object] = {}
    for reading in (
        readings_visible_to(user)
        .in_use()
        .filter(patient_id__in=ids, reading_type=ReadingType.BLOOD_PRESSURE)
        .order_by("patient_id", "-measured_at", "-id")
    ):
        latest.setdefault(reading.patient_id, reading)
    urgent: dict[int, list] = {}
    for alert in (
        alerts_visible_to(user)
        .filter(patient_id__in=ids, status=AlertStatus.OPEN, kind__in=URGENT_KINDS)
        .order_by("-opened_at")
    ):
        urgent.setdefault(alert.patient_id, []).append(alert)
    detail = {"view": "care.home"}
    authz.authorize_read(user, "patients.view_patient", shown=ids, detail=detail)
    authz.authorize_read(user, "patients.view_readings", shown=sorted(latest), detail=detail)
    authz.authorize_read(user, "clinicians.view_alert", shown=sorted(urgent), detail=detail)
    rows = [
        {
            "grant": grant,
            "latest": latest.get(grant.patient_id),
            "alerts": urgent.get(grant.patient_id, []),
            "shares_readings": grant.shares_readings,
            "shares_alerts": grant.shares_alerts,
        }
        for grant in grants
    ]
    return render(request, "care/home.html", {"rows": rows, "caregiver": user})
