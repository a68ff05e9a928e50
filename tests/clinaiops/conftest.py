"""Fixtures for the whole-API tests (bad input, fuzzing)."""

from __future__ import annotations

import pytest
from django.db import DataError, connection


def _values(params, many: bool) -> list:
    if params is None:
        return []
    rows = params if many else [params]
    values: list = []
    for row in rows:
        values.extend(row.values() if isinstance(row, dict) else row)
    return values


@pytest.fixture
def queries_refuse_nul():
    """PostgreSQL refuses a NUL in any text value (psycopg raises ``DataError``, and the whole
    statement fails); SQLite stores it. On SQLite this makes a query carrying a NUL fail as it
    would in production, so that a NUL which gets past validation shows as the 500 it would be
    there, on either database."""

    def refuse(execute, sql, params, many, context):
        if any(isinstance(value, str) and "\x00" in value for value in _values(params, many)):
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        yield
