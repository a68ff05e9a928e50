"""The append-only, hash-chained audit journal every other app writes to (see audit/README.md)."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from audit.services import TRAIL_READ_OBJECT_TYPES, record_read
        from audit.triggers import register_sqlite_functions
        from core import authz

        # Reads of patient data, and every read of the journal, are journalled by the
        # authorization controller that allows them (core sits below audit and cannot import it).
        authz.journal_reads_with(record_read, every_read_of=TRAIL_READ_OBJECT_TYPES)

        # SQLite triggers call this function; it must exist on every connection.
        connection_created.connect(register_sqlite_functions, dispatch_uid="audit_sqlite_functions")
