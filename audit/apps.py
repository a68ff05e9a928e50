"""The append-only, hash-chained audit journal every other app writes to (see audit/README.md)."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from audit.triggers import register_sqlite_functions

        # SQLite triggers call this function; it must exist on every connection.
        connection_created.connect(register_sqlite_functions, dispatch_uid="audit_sqlite_functions")
