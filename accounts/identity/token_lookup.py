"""The access token behind a bearer request, with its application, user and sign-in context, in
one statement whose SQL is built once per process.

Every API, FHIR and websocket request loads its token. Built by the ORM
(``AccessToken.objects.select_related("application", "user", "context")``), the statement is the
same each time but Django compiles it afresh: four models' columns, three joins. That compilation
was ~25 % of the web process's CPU for a phone's upload (issue 17, profile in
docs/load-testing.md). Here the SQL and each column's converters are made once, from the
models' own metadata, and each request runs the statement and builds the rows with
``Model.from_db`` — the instances the ORM would have built, relations cached as
``select_related`` caches them.

Nothing is cached between requests but the SQL: a token deleted or revoked, an account made
inactive, is seen by the very next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.db.models import Field, Model
from oauth2_provider.models import get_access_token_model, get_application_model

from accounts.models import TokenContext


@dataclass(frozen=True)
class _Part:
    """One model's columns in the statement: where they start and how each is converted."""

    model: type[Model]
    attnames: tuple[str, ...]  # every concrete field, in the model's order (``from_db``'s)
    pk_offset: int
    start: int
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]  # (offset, converters, column)

    def build(self, alias: str, row: tuple, connection) -> Model | None:
        values = list(row[self.start : self.start + len(self.attnames)])
        if values[self.pk_offset] is None:  # no row joined (a LEFT JOIN that found none)
            return None
        for offset, converters, column in self.converters:
            value = values[offset]
            for converter in converters:
                value = converter(value, column, connection)
            values[offset] = value
        return self.model.from_db(alias, list(self.attnames), values)


@dataclass(frozen=True)
class _Statement:
    sql: str
    token: _Part
    application: _Part
    user: _Part
    context: _Part


def _part(model: type[Model], table_alias: str, start: int, connection) -> tuple[_Part, list[str]]:
    quote = connection.ops.quote_name
    # All concrete fields in the model's own order: ``Model.from_db`` given a full row builds
    # the instance positionally in that order, whatever names it is given.
    fields = list(model._meta.concrete_fields)
    pk_offset = fields.index(model._meta.pk)
    columns, converters = [], []
    for offset, field in enumerate(fields):
        columns.append(f"{table_alias}.{quote(field.column)}")
        column = field.get_col(table_alias)
        found = tuple(connection.ops.get_db_converters(column)) + tuple(
            cast(Any, field).get_db_converters(connection)
        )
        if found:
            converters.append((offset, found, column))
    part = _Part(model, tuple(f.attname for f in fields), pk_offset, start, tuple(converters))
    return part, columns


@cache
def _statement(alias: str) -> _Statement:
    connection = connections[alias]
    quote = connection.ops.quote_name
    token_model, application_model = get_access_token_model(), get_application_model()
    user_model = get_user_model()
    token, token_columns = _part(token_model, "t", 0, connection)
    start = len(token_columns)
    application, application_columns = _part(application_model, "a", start, connection)
    start += len(application_columns)
    user, user_columns = _part(user_model, "u", start, connection)
    start += len(user_columns)
    context, context_columns = _part(TokenContext, "c", start, connection)

    def column(model: type[Model], name: str) -> str:
        return quote(cast(Field, model._meta.get_field(name)).column)

    # Only the models' own table and column names, quoted; the checksum is a parameter.
    columns = ", ".join(token_columns + application_columns + user_columns + context_columns)
    sql = (
        f"SELECT {columns}"  # noqa: S608
        f" FROM {quote(token_model._meta.db_table)} t"
        f" LEFT JOIN {quote(application_model._meta.db_table)} a"
        f" ON a.{quote(application_model._meta.pk.column)} = t.{column(token_model, 'application')}"
        f" LEFT JOIN {quote(user_model._meta.db_table)} u"
        f" ON u.{quote(user_model._meta.pk.column)} = t.{column(token_model, 'user')}"
        f" LEFT JOIN {quote(TokenContext._meta.db_table)} c"
        f" ON c.{column(TokenContext, 'access_token')} = t.{quote(token_model._meta.pk.column)}"
        f" WHERE t.{column(token_model, 'token_checksum')} = %s"
    )
    return _Statement(sql, token, application, user, context)


def load_access_token(checksum: str):
    """The stored access token whose checksum is ``checksum``, with ``application``, ``user``
    and ``context`` loaded as ``select_related`` loads them (``context`` raises
    ``TokenContext.DoesNotExist`` when the token has none); None when no token has it."""
    token_model = get_access_token_model()
    alias = router.db_for_read(token_model)
    connection = connections[alias]
    statement = _statement(alias)
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [checksum])
        row = cursor.fetchone()
    if row is None:
        return None
    token = statement.token.build(alias, row, connection)
    if token is None:  # the WHERE matched a row: its primary key is never NULL
        return None
    application = statement.application.build(alias, row, connection)
    user = statement.user.build(alias, row, connection)
    context = statement.context.build(alias, row, connection)
    token_model._meta.get_field("application").set_cached_value(token, application)
    token_model._meta.get_field("user").set_cached_value(token, user)
    reverse = TokenContext._meta.get_field("access_token")
    reverse.remote_field.set_cached_value(token, context)  # token.context (None: DoesNotExist)
    if context is not None:
        reverse.set_cached_value(context, token)
    return token
