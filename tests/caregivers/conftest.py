"""Caregivers: a patient's grant, accepted by the person with their one-time link."""

from __future__ import annotations

import pytest

from patients import caregivers
from tests.conftest import PASSWORD


def grant_to(patient, *, email, scopes, name="Sam Carer", live_alerts=False, **period):
    """A grant from ``patient`` accepted by the person (a new account's password is PASSWORD);
    returns the grant, its caregiver reloaded."""
    invitation = caregivers.grant_caregiver_access(
        patient=patient,
        actor=patient.user,
        name=name,
        email=email,
        scopes=list(scopes),
        live_alerts=live_alerts,
        **period,
    )
    caregivers.accept_invitation(token=invitation.token, password=PASSWORD, password_again=PASSWORD)
    invitation.grant.refresh_from_db()
    invitation.grant.caregiver.refresh_from_db()
    return invitation.grant


@pytest.fixture
def full_grant(patient_a):
    """Sam follows patient A with every scope and live alerts."""
    return grant_to(
        patient_a,
        email="sam@example.org",
        scopes=("readings", "alerts", "medications", "goals", "messages"),
        live_alerts=True,
    )


@pytest.fixture
def caregiver(full_grant):
    return full_grant.caregiver
