"""What the model commands share: one readable line and a non-zero exit on refusal."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from core.errors import DomainError


def actor_named(username: str | None):
    if not username:
        return None
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"No active user {username!r}.")
    return user


def refused(error: Exception) -> CommandError:
    message = error.message if isinstance(error, DomainError) else str(error)
    return CommandError(message.replace("\n", " "))
