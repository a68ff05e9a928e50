"""Proving who you are: password (django-axes counts failures and locks the username for the
address), then for staff the TOTP code of their confirmed device (django-otp). One lockout for
every door: the portal, the OAuth sign-in page, the direct token endpoint and the password that
signs a clinical decision.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.identity.tokens import needs_second_factor
from accounts.models import User
from core.context import current_context
from core.errors import DomainError


class LockedOut(DomainError):
    http_status = 429
    code = "locked_out"


class SignInRefused(DomainError):
    http_status = 401
    code = "authentication_failed"


def _is_locked(request: HttpRequest) -> bool:
    return bool(getattr(request, "axes_locked_out", False))


# One answer for every refused sign-in, so that the answer never tells a right password (of a
# staff account whose code was missing or wrong) from a wrong one.
REFUSED = (
    "No active account found with the given credentials "
    "(staff: password and the TOTP code from their authenticator)."
)


def check_password(request: HttpRequest, username: str, password: str) -> User:
    """The user whose password this is; ``LockedOut`` or ``SignInRefused`` otherwise."""
    user = authenticate(request, username=username, password=password)
    if _is_locked(request):
        raise LockedOut("Too many failed sign-in attempts; try again later.")
    if user is None:
        raise SignInRefused(REFUSED)
    return user


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def check_second_factor(request: HttpRequest, user: User, code: str | None) -> TOTPDevice | None:
    """For staff, and a caregiver who enrolled an authenticator: their TOTP code must verify (a
    wrong one counts toward the lockout). Returns the device that verified it, or None for one
    who signs in with a password alone and sent no code."""
    if not code and not needs_second_factor(user):
        return None
    device = confirmed_device(user)
    if not code or device is None or not device.verify_token(code):
        # Counted like a wrong password, and answered like one.
        user_login_failed.send(
            sender=__name__, credentials={"username": user.username}, request=request
        )
        if _is_locked(request):
            raise LockedOut("Too many failed sign-in attempts; try again later.")
        raise SignInRefused(REFUSED)
    return device


def reauthenticate(user: User, password: str) -> bool:
    """Whether ``password`` is the signed-in ``user``'s (the signature on a decision). A wrong one
    counts toward the same lockout as signing in, from the same address; while locked out this
    raises ``LockedOut`` even for the right password."""
    request = HttpRequest()
    request.method = "POST"
    context = current_context()
    request.META["REMOTE_ADDR"] = (context.client_address if context else "") or "127.0.0.1"
    try:
        confirmed = check_password(request, user.username, password)
    except SignInRefused:
        return False
    return confirmed.pk == user.pk
