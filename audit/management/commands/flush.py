"""Django's ``flush``, made safe for an append-only journal.

``flush`` empties every table — including the audit journal, which the database refuses
(triggers). Test runs need it (transactional tests are cleaned up with ``flush``), so inside a
test environment this command lets the purge through for its own duration; anywhere else it
refuses, because wiping the audit trail of a real deployment must not be one command away.
"""

from __future__ import annotations

from typing import Any

from django.core import mail
from django.core.management.base import CommandError
from django.core.management.commands.flush import Command as DjangoFlush

from audit.triggers import journal_purge_allowed


def _in_test_environment() -> bool:
    # django.test.utils.setup_test_environment() creates mail.outbox; nothing else does.
    return hasattr(mail, "outbox")


class Command(DjangoFlush):
    help = DjangoFlush.help + " Refused outside tests: it would erase the audit journal."

    def handle(self, **options: Any) -> None:
        if not _in_test_environment():
            raise CommandError(
                "flush would erase the append-only audit journal; refused outside a test run"
            )
        with journal_purge_allowed(options.get("database") or "default"):
            super().handle(**options)
