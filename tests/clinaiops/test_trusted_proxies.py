"""The client's address comes from ``X-Forwarded-For`` only behind ``TRUSTED_PROXY_COUNT``
proxies, and then from the N-th entry from the right (the one the nearest trusted proxy saw).

Whatever comes left of it was written by the client and proves nothing: a rotating header must
not escape the sign-in throttle, the lockout or the journal's record of where a request came
from. The deployment settings (the middleware first, DRF's ``NUM_PROXIES`` 0) are set here as
``clinaiops/settings.py`` declares them, so these tests hold before and after that file has them.
"""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from audit.models import AuditEvent
from clinaiops.middleware import TrustedProxyMiddleware
from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MIDDLEWARE_PATH = "clinaiops.middleware.TrustedProxyMiddleware"
TOKEN = "/api/v1/auth/token/"
LOGIN_LIMIT = 20  # the default "login" rate, 20/minute (REST_FRAMEWORK in settings)


@pytest.fixture(params=["num_proxies_0", "num_proxies_unset"])
def deployed(request, settings):
    """The middleware first, as in MIDDLEWARE; DRF's own X-Forwarded-For reading off (as
    configured) — and, as a second case, left at DRF's default, which takes the header whole:
    the middleware alone must be enough."""
    settings.MIDDLEWARE = [
        MIDDLEWARE_PATH,
        *(entry for entry in settings.MIDDLEWARE if entry != MIDDLEWARE_PATH),
    ]
    rest = {key: value for key, value in settings.REST_FRAMEWORK.items() if key != "NUM_PROXIES"}
    if request.param == "num_proxies_0":
        rest["NUM_PROXIES"] = 0
    settings.REST_FRAMEWORK = rest
    assert rest["DEFAULT_THROTTLE_RATES"]["login"] == f"{LOGIN_LIMIT}/minute"
    return settings


def _token_attempt(client: APIClient, number: int, forwarded_for: str | None) -> int:
    """One failed sign-in (a different unknown user each time, so no lockout interferes):
    its status code. 429 only from the throttle."""
    headers = {} if forwarded_for is None else {"HTTP_X_FORWARDED_FOR": forwarded_for}
    response = client.post(
        TOKEN, {"username": f"nobody{number}", "password": "wrong"}, format="json", **headers
    )
    if response.status_code == 429:
        assert response.json()["errors"][0]["code"] == "throttled", response.content
    return response.status_code


def test_without_trusted_proxies_a_rotating_forwarded_for_does_not_escape_the_login_throttle(
    deployed,
):
    deployed.TRUSTED_PROXY_COUNT = 0
    client = APIClient()
    statuses = [_token_attempt(client, n, f"198.51.100.{n}") for n in range(25)]
    assert 429 not in statuses[:LOGIN_LIMIT], statuses
    assert set(statuses[LOGIN_LIMIT:]) == {429}, statuses


def test_behind_one_proxy_the_rightmost_address_is_the_client(deployed):
    deployed.TRUSTED_PROXY_COUNT = 1
    client = APIClient()
    # A spoofed leftmost entry, different every time, changes nothing: one client.
    spoofed = [_token_attempt(client, n, f"10.9.9.{n}, 203.0.113.1") for n in range(25)]
    assert 429 not in spoofed[:LOGIN_LIMIT], spoofed
    assert set(spoofed[LOGIN_LIMIT:]) == {429}, spoofed
    # Another client behind the same proxy has its own allowance.
    assert _token_attempt(client, 100, "203.0.113.2") != 429
    assert _token_attempt(client, 101, "10.9.9.1, 203.0.113.2") != 429
    assert _token_attempt(client, 102, "203.0.113.1") == 429


def test_the_journal_records_the_address_the_trusted_proxy_saw(deployed, clinician_a, patient_a):
    client = APIClient()
    client.force_authenticate(clinician_a)
    path = f"/api/v1/patients/{patient_a.pk}/"

    deployed.TRUSTED_PROXY_COUNT = 1
    response = client.get(path, HTTP_X_FORWARDED_FOR="192.0.2.9, 203.0.113.7")
    assert response.status_code == 200, response.content
    behind_proxy = AuditEvent.objects.filter(action="read").latest("sequence")

    deployed.TRUSTED_PROXY_COUNT = 0
    client.get(path, HTTP_X_FORWARDED_FOR="203.0.113.7")
    direct = AuditEvent.objects.filter(action="read").latest("sequence")

    assert behind_proxy.client_address == "203.0.113.7"
    assert direct.sequence > behind_proxy.sequence
    assert direct.client_address == "127.0.0.1"  # the socket's peer; the header is ignored


def _admin_sign_in(client, username: str, password: str, forwarded_for: str) -> int:
    """A sign-in to the operators' console (django-axes guards every sign-in alike)."""
    response = client.post(
        "/admin/login/",
        {"username": username, "password": password, "next": "/admin/"},
        HTTP_X_FORWARDED_FOR=forwarded_for,
    )
    return response.status_code


def test_the_lockout_follows_the_trusted_address(deployed, client):
    """django-axes locks a username for one address (AXES_IPWARE_META_PRECEDENCE_ORDER is
    REMOTE_ADDR): the address the middleware settled on."""
    deployed.TRUSTED_PROXY_COUNT = 1
    operator = UserFactory(role="admin", is_staff=True, is_superuser=True)
    limit = deployed.AXES_FAILURE_LIMIT
    for attempt in range(limit):
        _admin_sign_in(client, operator.username, "wrong", f"10.0.0.{attempt}, 203.0.113.5")
    # Locked for that client, whatever it writes on the left; not for another client.
    assert _admin_sign_in(client, operator.username, PASSWORD, "10.0.0.99, 203.0.113.5") == 429
    # (200: the console's form, which next asks for the second factor; 429 would be the lockout.)
    assert _admin_sign_in(client, operator.username, PASSWORD, "203.0.113.6") == 200


def test_without_trusted_proxies_the_lockout_ignores_the_header(deployed, client):
    deployed.TRUSTED_PROXY_COUNT = 0
    operator = UserFactory(role="admin", is_staff=True, is_superuser=True)
    for attempt in range(deployed.AXES_FAILURE_LIMIT):
        _admin_sign_in(client, operator.username, "wrong", f"198.51.100.{attempt}")
    assert _admin_sign_in(client, operator.username, PASSWORD, "198.51.100.200") == 429


@pytest.mark.parametrize(
    ("count", "forwarded_for", "remote_addr"),
    [
        (0, "203.0.113.9", "127.0.0.1"),  # no proxy: the header is the client's word
        (1, None, "127.0.0.1"),  # no header: the peer
        (1, "203.0.113.9", "203.0.113.9"),
        (1, " 10.1.1.1 ,203.0.113.9 ", "203.0.113.9"),
        (2, "10.1.1.1, 203.0.113.9, 192.0.2.1", "203.0.113.9"),
        (2, "203.0.113.9", "127.0.0.1"),  # fewer entries than proxies: not from our proxies
        (1, "unknown", "127.0.0.1"),  # not an address
        (1, "10.1.1.1, 203.0.113.9:443", "127.0.0.1"),
        (1, "", "127.0.0.1"),
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_is_taken_only_from_trusted_entries(
    settings, count, forwarded_for, remote_addr
):
    settings.TRUSTED_PROXY_COUNT = count
    seen = {}

    def view(request):
        seen["remote_addr"] = request.META["REMOTE_ADDR"]
        seen["forwarded_for"] = request.META.get("HTTP_X_FORWARDED_FOR")

    headers = {} if forwarded_for is None else {"HTTP_X_FORWARDED_FOR": forwarded_for}
    TrustedProxyMiddleware(view)(RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", **headers))
    assert seen["remote_addr"] == remote_addr
    # Consumed: nothing after the middleware can take the client's word for its address.
    assert seen["forwarded_for"] is None
