"""Portal sign-in in two steps — password, then a TOTP code (enrolled on first sign-in) — and
the portal's home page. Patients use the mobile app, not the portal."""

from __future__ import annotations

import time

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.decorators import otp_required
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import staff
from audit.models import Action
from audit.services import record_event
from clinicians.portal.emergency import EmergencyAccessForm
from clinicians.portal.qr import authenticator_enrolment
from clinicians.portal.worklist import worklist_for
from core import authz
from core.errors import DomainError

PENDING_USER_KEY = "portal_pending_user"
PENDING_SINCE_KEY = "portal_pending_since"
NEXT_KEY = "portal_next"  # where to go once signed in (a page of this site only)
PENDING_MAX_AGE_SECONDS = 300


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Authenticator code",
        max_length=8,
        min_length=6,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class LoginView(View):
    template_name = "portal/login.html"

    def get(self, request):
        return render(request, self.template_name, {"form": AuthenticationForm(request)})

    def post(self, request):
        form = AuthenticationForm(request, data=request.POST)
        if not form.is_valid():
            return render(request, self.template_name, {"form": form}, status=400)
        user = form.get_user()
        if not authz.can(user, "clinicians.use_portal"):
            form.add_error(None, authz.message_of("clinicians.use_portal"))
            return render(request, self.template_name, {"form": form}, status=403)
        request.session.cycle_key()
        request.session[PENDING_USER_KEY] = user.pk
        request.session[PENDING_SINCE_KEY] = int(time.time())
        next_url = request.GET.get("next", "")
        if url_has_allowed_host_and_scheme(
            next_url, {request.get_host()}, require_https=request.is_secure()
        ):
            request.session[NEXT_KEY] = next_url  # back there once both factors are in
        return redirect("portal:verify")


class SecondFactorView(View):
    template_name = "portal/verify.html"

    def _pending_user(self, request):
        user_id = request.session.get(PENDING_USER_KEY)
        since = request.session.get(PENDING_SINCE_KEY, 0)
        if not user_id or time.time() - since > PENDING_MAX_AGE_SECONDS:
            return None
        return get_user_model().objects.filter(pk=user_id, is_active=True).first()

    def _device(self, user) -> tuple[TOTPDevice, bool]:
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        if device is not None:
            return device, False
        device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name="portal", confirmed=False)
        return device, True

    def _context(self, user, device, enrolling, form):
        context = {"form": form, "enrolling": enrolling}
        if enrolling:
            context |= authenticator_enrolment(device)
        return context

    def _refuse_enrolment(self, request, user):
        """Staff with an open one-time link enrol with it, not by signing in: a password alone
        (perhaps known to someone else) never sets up the second factor of an invited or reset
        account."""
        refusal = "Set up your authenticator with the one-time link your administrator gave you."
        return render(request, "portal/welcome_gone.html", {"message": refusal}, status=403)

    def get(self, request):
        user = self._pending_user(request)
        if user is None:
            return redirect("portal:login")
        device, enrolling = self._device(user)
        if enrolling and staff.must_enrol_by_link(user):
            return self._refuse_enrolment(request, user)
        return render(
            request, self.template_name, self._context(user, device, enrolling, CodeForm())
        )

    def post(self, request):
        user = self._pending_user(request)
        if user is None:
            return redirect("portal:login")
        device, enrolling = self._device(user)
        if enrolling and staff.must_enrol_by_link(user):
            return self._refuse_enrolment(request, user)
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
                    detail={"channel": "portal", "step": "second_factor"},
                )
            context = self._context(user, device, enrolling, form)
            return render(request, self.template_name, context, status=400)
        if enrolling:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        otp_login(request, device)
        return redirect(request.session.pop(NEXT_KEY, "") or "portal:home")


@require_POST
def logout_view(request):
    logout(request)
    return redirect("portal:login")


# Each role's home in the portal.
WORKSPACES = {
    "admin": "portal:admin-home",
    "auditor": "portal:audit-home",
    "model_owner": "portal:models-home",
}


@otp_required(login_url="portal:login")
def home(request):
    """The worklist: what needs a clinician now, then the panel. Administrators, auditors and
    model owners have their own workspace."""
    workspace = WORKSPACES.get(request.user.role)
    if workspace is not None and authz.can(request.user, "clinicians.use_portal"):
        return redirect(workspace)
    worklist = worklist_for(request.user, request.GET)
    authz.authorize_read(
        request.user,
        "patients.view_patient",
        shown=[row.patient.pk for row in worklist.patients],
        detail={"view": "portal.home"},
    )
    status = 400 if request.GET and not worklist.filters.is_valid() else 200
    context = {"worklist": worklist, "emergency_form": EmergencyAccessForm(prefix="emergency")}
    return render(request, "portal/home.html", context, status=status)


class WelcomeForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, strip=False, required=False)
    password_again = forms.CharField(widget=forms.PasswordInput, strip=False, required=False)
    code = forms.CharField(max_length=8, label="Authenticator code")


WELCOME_ATTEMPTS = 30
WELCOME_WINDOW_SECONDS = 600


class WelcomeView(View):
    """A one-time link (``accounts.staff``): an invited member of staff chooses their password
    and enrols their authenticator; after a reset, the person enrols a new authenticator with
    their password. The link is refused once used, withdrawn or expired."""

    template_name = "portal/welcome.html"

    def _render(self, request, link, form, status=200):
        context = {
            "form": form,
            "link": link,
            "inviting": link.purpose == "invite",
            **authenticator_enrolment(staff.pending_device(link.user)),
        }
        return render(request, self.template_name, context, status=status)

    def _gone(self, request, error):
        return render(
            request,
            "portal/welcome_gone.html",
            {"message": error.message, "link_refused": True},
            status=410,
        )

    def dispatch(self, request, *args, **kwargs):
        """At most ``WELCOME_ATTEMPTS`` openings per address per window: a guessed token is
        answered 429 and writes nothing to the journal (each refusal below the limit does)."""
        key = f"portal-welcome:{request.META.get('REMOTE_ADDR', '')}"
        cache.add(key, 0, timeout=WELCOME_WINDOW_SECONDS)
        if cache.incr(key) > WELCOME_ATTEMPTS:
            return render(
                request,
                "portal/welcome_gone.html",
                {"message": "Too many attempts from this address; try again in a few minutes."},
                status=429,
            )
        return super().dispatch(request, *args, **kwargs)

    def get(self, request, token: str):
        try:
            link = staff.link_for(token)
        except staff.LinkRefused as error:
            return self._gone(request, error)
        return self._render(request, link, WelcomeForm())

    def post(self, request, token: str):
        try:
            link = staff.link_for(token)
        except staff.LinkRefused as error:
            return self._gone(request, error)
        form = WelcomeForm(request.POST)
        if form.is_valid():
            try:
                staff.redeem_link(token=token, **form.cleaned_data)
            except staff.LinkRefused as error:
                return self._gone(request, error)
            except DomainError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, "All set. Sign in with your password and a code.")
                return redirect("portal:login")
        return self._render(request, link, form, status=400)
