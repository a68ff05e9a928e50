"""The authorization server's pages: sign-in, authorize (consent, SMART launch context, the
patient picker), the token endpoint, and EHR launches from the portal.

Every refusal is the standard OAuth error (a redirect with ``error=`` to a registered redirect
URI, or a JSON error from the token endpoint) and is journalled; nothing is issued.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django_otp import login as otp_login
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.forms import AllowForm
from oauth2_provider.models import Application
from oauth2_provider.views import AuthorizationView, TokenView
from oauthlib.oauth2.rfc6749 import errors as oauth_errors

from accounts.identity import issuer, scopes, signin
from accounts.identity import launch as launches
from accounts.identity.tokens import FIRST_PARTY_CLIENT_ID, is_staff_role
from accounts.identity.validator import AMR, PATIENT, Validator
from accounts.models import LaunchContext, Role
from audit.models import Action
from audit.services import record_event
from core.csp import allow_form_redirects_to
from core.errors import DomainError, NotFound
from patients.selectors import patients_visible_to

PICKER_LIMIT = 500


def _journal_refusal(user, client_id: str, error: str, where: str) -> None:
    with transaction.atomic():
        record_event(
            action=Action.LOGIN_FAILED,
            actor=user if user is not None and user.is_authenticated else None,
            object_type="oauth_client",
            object_id=client_id or "",
            outcome="failure",
            component="" if user is not None and user.is_authenticated else "authentication",
            detail={"channel": "oauth", "step": where, "error": error},
        )


def amr_of_session(request: HttpRequest) -> list[str]:
    verified = getattr(request.user, "is_verified", None)
    return ["pwd", "otp"] if verified and verified() else ["pwd"]


# --- sign-in ------------------------------------------------------------------------------------


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/oauth/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/oauth/signed-in/"


class SignInView(View):
    """Password, and for staff the TOTP code, in one form: the authorize page's sign-in for
    every role (patients included, whom the portal does not admit)."""

    template_name = "oauth/login.html"

    def get(self, request):
        return render(request, self.template_name, {"next": _safe_next(request)})

    def post(self, request):
        context = {"next": _safe_next(request), "username": request.POST.get("username", "")}
        try:
            user = signin.check_password(
                request, request.POST.get("username", ""), request.POST.get("password", "")
            )
            if user.role == Role.SERVICE:
                raise signin.SignInRefused("Service accounts do not sign in here.")
            device = signin.check_second_factor(request, user, request.POST.get("otp") or None)
        except signin.LockedOut as refusal:
            return render(
                request, self.template_name, {**context, "error": str(refusal)}, status=429
            )
        except signin.SignInRefused as refusal:
            return render(
                request, self.template_name, {**context, "error": str(refusal)}, status=400
            )
        request.session.cycle_key()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if device is not None:
            otp_login(request, device)
        return redirect(context["next"])


def signed_in(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Signed in. You can close this page.", content_type="text/plain")


# --- authorize ----------------------------------------------------------------------------------


class LaunchAllowForm(AllowForm):
    launch = forms.CharField(required=False, widget=forms.HiddenInput())
    patient = forms.IntegerField(required=False)


class AuthorizeView(AuthorizationView):
    """django-oauth-toolkit's authorize endpoint with our checks in front: staff must have
    passed their second factor, the scopes must be within the role, and the SMART launch
    context (``launch`` from an EHR launch, or ``launch/patient`` — a patient is themselves, a
    clinician picks one of their patients here) is fixed before the code is issued."""

    template_name = "oauth/authorize.html"
    form_class = LaunchAllowForm

    def get_login_url(self) -> str:
        return reverse("oauth-login")

    def dispatch(self, request, *args, **kwargs):
        user = request.user
        if (
            user.is_authenticated
            and is_staff_role(user.role)
            and amr_of_session(request)
            != [
                "pwd",
                "otp",
            ]
        ):
            return redirect_to_login(request.get_full_path(), self.get_login_url())
        return super().dispatch(request, *args, **kwargs)

    # The launch patient this request settled on (set by get / form_valid, read below).
    launch_patient: int | None = None

    def _refuse(self, credentials, description: str, error_class=oauth_errors.InvalidScopeError):
        application = Application.objects.filter(client_id=credentials.get("client_id")).first()
        redirect_uri = credentials.get("redirect_uri")
        if application is None or not application.redirect_uri_allowed(redirect_uri):
            # Never redirect to a URI that was not registered (the consent form is a POST).
            _journal_refusal(
                self.request.user, credentials.get("client_id", ""), "invalid_request", "authorize"
            )
            return HttpResponse(description, status=400, content_type="text/plain")
        error = OAuthToolkitError(
            error=error_class(description=description, state=credentials.get("state")),
            redirect_uri=credentials.get("redirect_uri"),
        )
        return self.error_response(error, application)

    def error_response(self, error, application, **kwargs):
        oauth_error = getattr(error, "oauthlib_error", None)
        _journal_refusal(
            self.request.user,
            getattr(application, "client_id", "") or self.request.GET.get("client_id", ""),
            getattr(oauth_error, "error", "invalid_request"),
            "authorize",
        )
        return super().error_response(error, application, **kwargs)

    def _settle_launch(self, scope_list, launch_code: str, chosen_patient) -> int | None:
        """The launch patient, or ``ValueError`` saying why there can be none."""
        user = self.request.user
        if launch_code:
            if "launch" not in scope_list:
                raise ValueError("launch was given without the launch scope")
            launch = LaunchContext.objects.filter(
                code=launch_code,
                user=user,
                client__application__client_id=self.request_client_id,
                used_at__isnull=True,
                expires_at__gt=timezone.now(),
            ).first()
            if launch is None:
                raise ValueError("the launch is unknown, expired, used or not for this user")
            return launch.patient_id
        if "launch/patient" not in scope_list:
            return None
        if user.role == Role.PATIENT:
            patient = getattr(user, "patient", None)
            if patient is None:
                raise ValueError("this account has no patient record")
            return patient.pk
        if chosen_patient is None:
            return None  # the picker asks
        if not patients_visible_to(user).filter(pk=chosen_patient).exists():
            raise ValueError("that patient is not one you can open")
        return int(chosen_patient)

    def get(self, request, *args, **kwargs):
        try:
            scope_list, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        self.request_client_id = credentials["client_id"]
        audience = request.GET.get("aud")
        is_first_party = credentials["client_id"] == FIRST_PARTY_CLIENT_ID
        if (audience or not is_first_party) and (audience or "").rstrip("/") != (
            issuer.from_request(request) + "/fhir"
        ):
            return self._refuse(
                credentials,
                f"aud must be this server's FHIR base ({issuer.from_request(request)}/fhir)",
                oauth_errors.InvalidRequestError,
            )
        try:
            scopes.check_role_ceiling(request.user.role, scope_list)
        except scopes.ScopeError as refusal:
            return self._refuse(credentials, str(refusal))
        try:
            self.launch_patient = self._settle_launch(
                scope_list, request.GET.get("launch", ""), None
            )
        except ValueError as refusal:
            return self._refuse(credentials, str(refusal), oauth_errors.InvalidRequestError)
        if "launch/patient" in scope_list and self.launch_patient is None:
            application = Application.objects.get(client_id=credentials["client_id"])
            if application.skip_authorization:
                return self._refuse(
                    credentials,
                    "launch/patient needs a patient to be chosen on the consent page",
                    oauth_errors.InvalidRequestError,
                )
        # The consent form's answer redirects to the app: CSP's form-action must allow its origin.
        return allow_form_redirects_to(
            super().get(request, *args, **kwargs), [credentials.get("redirect_uri") or ""]
        )

    def get_initial(self):
        initial = super().get_initial()
        initial["launch"] = self.request.GET.get("launch", "")
        return initial

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        scope_list = kwargs.get("scopes") or []
        context["scope_rows"] = [(scope, scopes.describe(scope)) for scope in scope_list]
        if "launch/patient" in scope_list and self.launch_patient is None:
            context["pick_patient"] = True
            context["patients"] = patients_visible_to(self.request.user).order_by(
                "family_name", "given_name", "pk"
            )[:PICKER_LIMIT]
        return context

    def form_valid(self, form):
        data = form.cleaned_data
        credentials = {
            "client_id": data.get("client_id"),
            "redirect_uri": data.get("redirect_uri"),
            "state": data.get("state"),
        }
        self.request_client_id = data.get("client_id")
        scope_list = (data.get("scope") or "").split()
        try:
            scopes.check_role_ceiling(self.request.user.role, scope_list)
        except scopes.ScopeError as refusal:
            return self._refuse(credentials, str(refusal))
        try:
            self.launch_patient = self._settle_launch(
                scope_list, data.get("launch") or "", data.get("patient")
            )
        except ValueError as refusal:
            return self._refuse(credentials, str(refusal), oauth_errors.InvalidRequestError)
        if "launch/patient" in scope_list and self.launch_patient is None and data.get("allow"):
            return self._refuse(
                credentials, "choose a patient to open", oauth_errors.InvalidRequestError
            )
        if data.get("launch") and data.get("allow"):
            claimed = LaunchContext.objects.filter(
                code=data["launch"], used_at__isnull=True, expires_at__gt=timezone.now()
            ).update(used_at=timezone.now())
            if claimed != 1:  # a second consent with the same launch, even a concurrent one
                return self._refuse(
                    credentials, "the launch was used already", oauth_errors.InvalidRequestError
                )
        return super().form_valid(form)

    def create_authorization_response(self, request, scopes, credentials, allow):
        credentials[AMR] = amr_of_session(request)
        credentials[PATIENT] = self.launch_patient
        return super().create_authorization_response(request, scopes, credentials, allow)


# --- token endpoint -------------------------------------------------------------------------------


class JournalledTokenView(TokenView):
    """django-oauth-toolkit's token endpoint; each answer is journalled (issued to whom, or
    the OAuth error)."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        try:
            body = json.loads(response.content or b"{}")
        except ValueError:
            body = {}
        grant_type = request.POST.get("grant_type", "")
        client_id = request.POST.get("client_id", "")
        if response.status_code != 200:
            _journal_refusal(None, client_id, str(body.get("error", "")), f"token:{grant_type}")
            return response
        token = Validator()._load_access_token(body.get("access_token", ""))
        if token is not None and token.user is not None:
            with transaction.atomic():
                record_event(
                    action=Action.LOGIN,
                    actor=token.user,
                    object_type="oauth_client",
                    object_id=token.application.client_id if token.application else "",
                    detail={"channel": "oauth", "grant": grant_type, "scope": token.scope},
                )
        return response


# --- EHR launch ---------------------------------------------------------------------------------


def create_launch(request: HttpRequest) -> JsonResponse:
    """``POST /oauth/launch/`` ``{"client_id", "patient"}`` by a signed-in clinician (portal
    session with its second factor): a single-use launch code, and the URL that opens the app
    with it (``<launch_uri>?iss=<FHIR base>&launch=<code>``)."""
    if request.method != "POST":
        return JsonResponse({"error": "method_not_allowed"}, status=405)
    user = request.user
    if not user.is_authenticated or amr_of_session(request) != ["pwd", "otp"]:
        return JsonResponse({"error": "login_required"}, status=401)
    try:
        body = json.loads(request.body or b"{}")
        client_id, patient_id = str(body["client_id"]), int(body["patient"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse(
            {"error": "invalid_request", "error_description": "client_id and patient required"},
            status=400,
        )
    try:
        launch = launches.create_launch(
            actor=user,
            client_id=client_id,
            patient_id=patient_id,
            fhir_base=issuer.from_request(request) + "/fhir",
        )
    except NotFound:
        return JsonResponse({"error": "not_found"}, status=404)
    except DomainError as refusal:
        status = getattr(refusal, "http_status", 400)
        return JsonResponse(
            {"error": "invalid_request", "error_description": str(refusal)}, status=status
        )
    return JsonResponse({"launch": launch.code, "url": launch.url}, status=201)
