"""Writes on users and care teams. Each starts with its authorization (an administrator, or the
system acting on its own — a seed or a setup command — named explicitly) and runs in one
transaction with its audit event."""

from __future__ import annotations

from django.db import transaction

from accounts.models import CareTeam, CareTeamMembership, ClinicianProfile, Role, User
from audit.models import Action
from audit.services import record_event, refusals_journalled
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


def _team_name(name: str, *, excluding: CareTeam | None = None) -> str:
    name = " ".join(name.split())
    if not name or len(name) > 120:
        raise DomainError("Give the team a name of 1 to 120 characters.", field="name")
    taken = CareTeam.objects.filter(name__iexact=name)
    if excluding is not None:
        taken = taken.exclude(pk=excluding.pk)
    if taken.exists():
        raise DomainError("Another care team has that name.", field="name")
    return name


@refusals_journalled("create_care_team", object_type="care_team", target="care_team")
def create_care_team(*, name: str, actor: User | System) -> CareTeam:
    authz.authorize(actor, "accounts.manage_care_teams")
    name = _team_name(name)
    with transaction.atomic():
        team = CareTeam.objects.create(name=name)
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="care_team",
            object_id=team.pk,
            changes={"name": {"old": None, "new": name}},
        )
    return team


@refusals_journalled("rename_care_team", object_type="care_team", target="care_team")
def rename_care_team(*, care_team: CareTeam, name: str, actor: User | System) -> CareTeam:
    authz.authorize(actor, "accounts.manage_care_teams")
    name = _team_name(name, excluding=care_team)
    with transaction.atomic():
        old = CareTeam.objects.select_for_update().get(pk=care_team.pk).name
        if old == name:
            return care_team
        care_team.name = name
        care_team.save(update_fields=["name"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="care_team",
            object_id=care_team.pk,
            changes={"name": {"old": old, "new": name}},
        )
    return care_team


@refusals_journalled("deactivate_care_team", object_type="care_team", target="care_team")
def deactivate_care_team(*, care_team: CareTeam, actor: User | System) -> CareTeam:
    """A team with patients is not deactivated: its patients would have nobody to watch over
    them. Transfer them first."""
    authz.authorize(actor, "accounts.manage_care_teams")
    with transaction.atomic():
        team = CareTeam.objects.select_for_update().get(pk=care_team.pk)
        if not team.is_active:
            raise DomainError("This care team is already deactivated.", field="care_team")
        patients = team.assignments.filter(patient__discharged_at__isnull=True).count()
        if patients:
            raise DomainError(
                f"The team still cares for {patients} patient(s); transfer or discharge them "
                "first.",
                field="care_team",
            )
        team.is_active = False
        team.save(update_fields=["is_active"])
        members = list(team.memberships.all())
        for membership in members:
            membership.delete()  # each removal revokes the member's sessions (new reach)
        record_event(
            action=Action.DEACTIVATE,
            actor=actor,
            object_type="care_team",
            object_id=team.pk,
            changes={
                "is_active": {"old": True, "new": False},
                "members": {"old": sorted(m.user_id for m in members), "new": []},
            },
        )
    care_team.is_active = False
    return care_team


def _team_role(team_role: str) -> str:
    if team_role not in CareTeamMembership.TeamRole.values:
        allowed = ", ".join(CareTeamMembership.TeamRole.values)
        raise DomainError(f"The team role is one of: {allowed}.", field="team_role")
    return team_role


@refusals_journalled("add_team_member", object_type="care_team", target="care_team")
def add_team_member(
    *,
    care_team: CareTeam,
    user: User,
    team_role: str = CareTeamMembership.TeamRole.PHYSICIAN,
    is_on_call: bool = False,
    actor: User | System,
) -> CareTeamMembership:
    authz.authorize(actor, "accounts.manage_care_teams")
    if user.role != Role.CLINICIAN:
        raise DomainError("Only clinicians can join a care team.", field="user")
    if not user.is_active:
        raise DomainError("This account is deactivated.", field="user")
    if not care_team.is_active:
        raise DomainError("That care team is deactivated.", field="care_team")
    _team_role(team_role)
    if CareTeamMembership.objects.filter(care_team=care_team, user=user).exists():
        raise DomainError("This clinician is already a member of the team.", field="user")
    with transaction.atomic():
        membership = CareTeamMembership.objects.create(
            care_team=care_team, user=user, team_role=team_role, is_on_call=is_on_call
        )
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="care_team_membership",
            object_id=membership.pk,
            changes={
                "team_role": {"old": None, "new": team_role},
                "is_on_call": {"old": None, "new": is_on_call},
            },
            detail={"care_team": care_team.pk, "user": user.pk, "team_role": team_role},
        )
    return membership


@refusals_journalled("change_team_member", object_type="care_team_membership", target="membership")
def change_team_member(
    *,
    membership: CareTeamMembership,
    actor: User | System,
    team_role: str | None = None,
    is_on_call: bool | None = None,
) -> CareTeamMembership:
    """A member's role in the team, and whether they are on call (the escalation's last rung)."""
    authz.authorize(actor, "accounts.manage_care_teams")
    with transaction.atomic():
        row = CareTeamMembership.objects.select_for_update().get(pk=membership.pk)
        values = {
            "team_role": row.team_role if team_role is None else _team_role(team_role),
            "is_on_call": row.is_on_call if is_on_call is None else bool(is_on_call),
        }
        changes = {
            name: {"old": getattr(row, name), "new": value}
            for name, value in values.items()
            if getattr(row, name) != value
        }
        if not changes:
            return row
        for name, value in values.items():
            setattr(row, name, value)
        row.save(update_fields=list(values))
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="care_team_membership",
            object_id=row.pk,
            changes=changes,
            detail={"care_team": row.care_team_id, "user": row.user_id},
        )
    return row


@refusals_journalled("remove_team_member", object_type="care_team_membership", target="membership")
def remove_team_member(*, membership: CareTeamMembership, actor: User | System) -> None:
    """The clinician leaves the team; their sessions end (what they reach changed)."""
    authz.authorize(actor, "accounts.manage_care_teams")
    with transaction.atomic():
        record_event(
            action=Action.DEACTIVATE,
            actor=actor,
            object_type="care_team_membership",
            object_id=membership.pk,
            changes={"member": {"old": membership.user_id, "new": None}},
            detail={"care_team": membership.care_team_id, "user": membership.user_id},
        )
        membership.delete()
