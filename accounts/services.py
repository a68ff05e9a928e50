"""Writes on users and care teams. Each starts with its authorization (an administrator, or the
system acting on its own — a seed or a setup command — named explicitly) and runs in one
transaction with its audit event."""

from __future__ import annotations

from django.db import transaction

from accounts.models import CareTeam, CareTeamMembership, ClinicianProfile, Role, User
from audit.models import Action
from audit.services import record_event
from core import authz
from core.authz import System
from core.errors import DomainError


def create_user(
    *,
    username: str,
    password: str | None,
    role: str,
    actor: User | System,
    email: str = "",
    password_hash: str | None = None,
) -> User:
    """``password_hash`` (from ``make_password``) lets bulk seeding hash a shared password once."""
    authz.authorize(actor, "accounts.manage_users")
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
            action=Action.CREATE,
            actor=actor,
            object_type="user",
            object_id=user.pk,
            changes={"role": {"old": None, "new": role}},
        )
    return user


def create_clinician(
    *,
    username: str,
    password: str | None,
    display_name: str,
    qualification: str = "",
    actor: User | System,
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


def create_care_team(*, name: str, actor: User | System) -> CareTeam:
    authz.authorize(actor, "accounts.manage_care_teams")
    with transaction.atomic():
        team = CareTeam.objects.create(name=name)
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="care_team",
            object_id=team.pk,
        )
    return team


def add_team_member(
    *,
    care_team: CareTeam,
    user: User,
    team_role: str = CareTeamMembership.TeamRole.PHYSICIAN,
    actor: User | System,
) -> CareTeamMembership:
    authz.authorize(actor, "accounts.manage_care_teams")
    if user.role != Role.CLINICIAN:
        raise DomainError("Only clinicians can join a care team.", field="user")
    with transaction.atomic():
        membership = CareTeamMembership.objects.create(
            care_team=care_team, user=user, team_role=team_role
        )
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="care_team_membership",
            object_id=membership.pk,
            detail={"care_team": care_team.pk, "user": user.pk, "team_role": team_role},
        )
    return membership
