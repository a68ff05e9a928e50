"""The bearer token of a request in one statement built once per process
(``accounts.identity.token_lookup``, issue 17): the same instances the ORM's ``select_related``
builds, each value converted as the ORM converts it, and nothing kept between requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import AccessToken

from accounts.identity.token_lookup import load_access_token
from accounts.identity.validator import token_checksum
from accounts.models import TokenContext
from tests.conftest import bearer_client
from tests.tokens import access_token_for

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def _orm(checksum: str) -> AccessToken:
    return (
        AccessToken.objects.select_related("application", "user", "context")
        .filter(token_checksum=checksum)
        .get()
    )


def test_the_token_its_application_user_and_context_are_what_the_orm_loads(clinician_a):
    checksum = token_checksum(access_token_for(clinician_a))
    expected = _orm(checksum)
    with CaptureQueriesContext(connection) as queries:
        token = load_access_token(checksum)
        # Everything a request reads of it, without another statement.
        loaded = (token.application, token.user, token.context)
    assert len(queries.captured_queries) == 1
    assert _values(token) == _values(expected)
    assert _values(loaded[0]) == _values(expected.application)
    assert _values(loaded[1]) == _values(expected.user)
    assert _values(loaded[2]) == _values(expected.context)
    assert loaded[2].amr == ["pwd", "otp"]  # JSON decoded, as the ORM decodes it
    assert token.expires.tzinfo is not None and token.expires > timezone.now()
    assert token.is_valid(["api"]) is expected.is_valid(["api"])
    assert loaded[2].access_token is token


def test_a_token_without_application_or_context_loads_as_the_orm_loads_it(patient_a):
    token = AccessToken.objects.create(
        user=patient_a.user,
        token="bare-token",
        expires=timezone.now() + timedelta(minutes=5),
        scope="api",
    )
    loaded = load_access_token(token.token_checksum)
    assert loaded.pk == token.pk and loaded.application is None
    assert loaded.user.pk == patient_a.user.pk
    with pytest.raises(TokenContext.DoesNotExist):
        loaded.context  # noqa: B018 - read for its exception, as select_related leaves it


def test_an_unknown_token_is_none():
    assert load_access_token(token_checksum("nobody-has-this")) is None


def test_a_revoked_token_or_an_inactive_account_is_refused_on_the_next_request(
    patient_a, patient_b
):
    client = bearer_client(patient_a.user)
    assert client.get("/api/v1/me/medications/").status_code == 200
    patient_a.user.is_active = False
    patient_a.user.save(update_fields=["is_active"])
    assert client.get("/api/v1/me/medications/").status_code == 401

    client = bearer_client(patient_b.user)
    assert client.get("/api/v1/me/medications/").status_code == 200
    AccessToken.objects.filter(user=patient_b.user).delete()
    assert client.get("/api/v1/me/medications/").status_code == 401
