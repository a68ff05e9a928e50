"""What the registration commands (``register_client``, ``register_cds_client``) read from their
options, each refusal one readable line naming the option (``CommandError``)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from accounts.models import CareTeam, Role, User


def active_admin(username: str) -> User:
    admin = User.objects.filter(username=username, role=Role.ADMIN, is_active=True).first()
    if admin is None:
        raise CommandError(f"--admin {username}: no active administrator by that name")
    return admin


def key_set(path: Path) -> dict:
    """A JWKS file's JSON (what it holds is the registration service's to check)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CommandError(f"--jwks {path}: {error}") from None


def active_care_teams(names: list[str]) -> list[CareTeam]:
    teams = []
    for name in names:
        team = CareTeam.objects.filter(name=name, is_active=True).first()
        if team is None:
            raise CommandError(f"--care-team {name}: no active care team by that name")
        teams.append(team)
    return teams
