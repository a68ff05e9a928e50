"""Append-only enforcement in the database itself, for PostgreSQL and SQLite.

The ORM refusal (models.py) stops mistakes; these triggers stop everything that bypasses the
ORM (raw SQL, a shell, another program). On both databases:

* UPDATE of an event or checkpoint is refused; DELETE and (PostgreSQL) TRUNCATE too;
* an INSERT must extend the head of its chain exactly (next ``chain_sequence``, ``prev_hash`` =
  that head's hash), and the trigger then advances that head — so a head cannot drift from its
  chain, and gaps or forks cannot be written even by raw SQL;
* the head row only moves forward by one and cannot be deleted.

The single exception is ``journal_purge_allowed()``: Django's ``flush`` (used between
transactional tests) must empty the tables, so DELETE/TRUNCATE are let through while a
connection-local switch is on (a session setting on PostgreSQL, a per-connection SQL function
on SQLite). Our ``flush`` command turns it on only in a test run (see
management/commands/flush.py). Someone with DDL rights can drop the triggers; that is what the
hash chain and the signed checkpoints are for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.db import connections

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

PURGE_SETTING = "clinaiops.audit_purge"
PURGE_FUNCTION = "clinaiops_audit_purge_allowed"
PROTECTED_TABLES = ("audit_auditevent", "audit_checkpoint")

_purge = threading.local()

SQLITE_INSTALL = [
    *(
        sql
        for table in PROTECTED_TABLES
        for sql in (
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN "
            f"SELECT RAISE(ABORT, 'audit journal is append-only: UPDATE on {table} refused'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"WHEN NOT {PURGE_FUNCTION}() BEGIN "
            f"SELECT RAISE(ABORT, 'audit journal is append-only: DELETE on {table} refused'); END",
        )
    ),
    "CREATE TRIGGER audit_auditevent_extends_head BEFORE INSERT ON audit_auditevent "
    "WHEN NOT EXISTS (SELECT 1 FROM audit_chainhead WHERE id = NEW.chain "
    "AND last_sequence + 1 = NEW.chain_sequence AND last_hash = NEW.prev_hash) BEGIN "
    "SELECT RAISE(ABORT, 'audit journal: an append must extend the chain head'); END",
    "CREATE TRIGGER audit_auditevent_advance_head AFTER INSERT ON audit_auditevent BEGIN "
    "UPDATE audit_chainhead SET last_sequence = NEW.chain_sequence, last_hash = NEW.hash "
    "WHERE id = NEW.chain; END",
    "CREATE TRIGGER audit_chainhead_forward_only BEFORE UPDATE ON audit_chainhead "
    "WHEN NEW.id != OLD.id OR NEW.last_sequence != OLD.last_sequence + 1 BEGIN "
    "SELECT RAISE(ABORT, 'audit chain head only moves forward, by one append'); END",
    f"CREATE TRIGGER audit_chainhead_no_delete BEFORE DELETE ON audit_chainhead "
    f"WHEN NOT {PURGE_FUNCTION}() BEGIN "
    "SELECT RAISE(ABORT, 'audit chain head cannot be deleted'); END",
]

SQLITE_TRIGGER_NAMES = [
    *(f"{table}_{kind}" for table in PROTECTED_TABLES for kind in ("no_update", "no_delete")),
    "audit_auditevent_extends_head",
    "audit_auditevent_advance_head",
    "audit_chainhead_forward_only",
    "audit_chainhead_no_delete",
]

POSTGRES_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('DELETE', 'TRUNCATE')
         AND coalesce(current_setting('{PURGE_SETTING}', true), '') = 'on' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NULL;
      END IF;
      RAISE EXCEPTION 'audit journal is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION audit_extend_head() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE head_sequence bigint; head_hash varchar;
    BEGIN
      SELECT last_sequence, last_hash INTO head_sequence, head_hash
        FROM audit_chainhead WHERE id = NEW.chain FOR UPDATE;
      IF NOT FOUND OR NEW.chain_sequence <> head_sequence + 1 OR NEW.prev_hash <> head_hash THEN
        RAISE EXCEPTION 'audit journal: an append must extend the chain head'
          USING ERRCODE = 'restrict_violation';
      END IF;
      UPDATE audit_chainhead SET last_sequence = NEW.chain_sequence, last_hash = NEW.hash
        WHERE id = NEW.chain;
      RETURN NEW;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.id <> OLD.id OR NEW.last_sequence <> OLD.last_sequence + 1 THEN
        RAISE EXCEPTION 'audit chain head only moves forward, by one append'
          USING ERRCODE = 'restrict_violation';
      END IF;
      RETURN NEW;
    END $$
    """,
    *(
        sql
        for table in PROTECTED_TABLES
        for sql in (
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
        )
    ),
    "CREATE TRIGGER audit_auditevent_extends_head BEFORE INSERT ON audit_auditevent "
    "FOR EACH ROW EXECUTE FUNCTION audit_extend_head()",
    "CREATE TRIGGER audit_chainhead_forward_only BEFORE UPDATE ON audit_chainhead "
    "FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only()",
    "CREATE TRIGGER audit_chainhead_no_delete BEFORE DELETE ON audit_chainhead "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_chainhead_no_truncate BEFORE TRUNCATE ON audit_chainhead "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
]

POSTGRES_TRIGGERS = [
    *(
        (f"{table}_{kind}", table)
        for table in PROTECTED_TABLES
        for kind in ("no_change", "no_truncate")
    ),
    ("audit_auditevent_extends_head", "audit_auditevent"),
    ("audit_chainhead_forward_only", "audit_chainhead"),
    ("audit_chainhead_no_delete", "audit_chainhead"),
    ("audit_chainhead_no_truncate", "audit_chainhead"),
]


def install_sql(vendor: str) -> list[str]:
    return {"postgresql": POSTGRES_INSTALL, "sqlite": SQLITE_INSTALL}.get(vendor, [])


def uninstall_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table in POSTGRES_TRIGGERS]
    if vendor == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGER_NAMES]
    return []


def is_purge_allowed() -> bool:
    return bool(getattr(_purge, "allowed", False))


def register_sqlite_functions(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: give each SQLite connection the purge switch function."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            PURGE_FUNCTION, 0, lambda: int(is_purge_allowed()), deterministic=False
        )


@contextmanager
def journal_purge_allowed(using: str = "default") -> Iterator[None]:
    """Let DELETE/TRUNCATE through on this thread's connection. Only for emptying a test
    database; never call it from application code."""
    connection = connections[using]
    _purge.allowed = True
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'on', false)", [PURGE_SETTING])
    try:
        yield
    finally:
        _purge.allowed = False
        if connection.vendor == "postgresql" and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, 'off', false)", [PURGE_SETTING])
