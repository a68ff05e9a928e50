"""Writes on users and care teams. Each runs in one transaction with its audit event."""

from __future__ import annotations

from django.db import transaction

from accounts.models import CareTeam, CareTeamMembership, ClinicianProfile, Role, User
from audit.services import record_event
from core.errors import DomainError


def create_user(
    *,
    username: str,
    password: str | None,
    role: str,
    actor: User | None = None,
    email: str = "",
    password_hash: str | None = None,
) -> User:
    """``password_hash`` (from ``make_password``) lets bulk seeding hash a shared password once."""
    if role not in Role.values:
        raise DomainError(f"Unknown role {role!r}.", field="role")
    with transaction.atomic():
        user = User(username=username, role=role, email=email)
        if password_hash is not None:
            user.password = password_hash
        else:
            user.set_password(password)
        user.is_staff = role == Role.ADMIN
        user.is_superuser = role == Role.ADMIN
        user.save()
        record_event(
            action="create",
            actor=actor,
            object_type="user",
            object_id=user.pk,
            changes={"role": {"old": None, "new": role}},
            component="" if actor else "accounts.create_user",
        )
    return user


def create_clinician(
    *,
    username: str,
    password: str | None,
    display_name: str,
    qualification: str = "",
    actor: User | None = None,
    password_hash: str | None = None,
) -> User:
    with transaction.atomic():
        user = create_user(
            username=username,
            password=password,
            role=Role.CLINICIAN,
            actor=actor,
            password_hash=password_hash,
        )
        ClinicianProfile.objects.create(
            user=user, display_name=display_name, qualification=qualification
        )
    return user


def create_care_team(*, name: str, actor: User | None = None) -> CareTeam:
    with transaction.atomic():
        team = CareTeam.objects.create(name=name)
        record_event(
            action="create",
            actor=actor,
            object_type="care_team",
            object_id=team.pk,
            component="" if actor else "accounts.create_care_team",
        )
    return team


def add_team_member(
    *,
    care_team: CareTeam,
    user: User,
    team_role: str = CareTeamMembership.TeamRole.PHYSICIAN,
    actor: User | None = None,
) -> CareTeamMembership:
    if user.role != Role.CLINICIAN:
        raise DomainError("Only clinicians can join a care team.", field="user")
    with transaction.atomic():
        membership = CareTeamMembership.objects.create(
            care_team=care_team, user=user, team_role=team_role
        )
        record_event(
            action="create",
            actor=actor,
            object_type="care_team_membership",
            object_id=membership.pk,
            detail={"care_team": care_team.pk, "user": user.pk, "team_role": team_role},
            component="" if actor else "accounts.add_team_member",
        )
    return membership
