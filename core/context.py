"""Who is acting, from where, in which request — carried through a request or a task.

The middleware (``clinaiops.middleware``) and Celery task wrappers set it; the audit journal and
the log formatter read it. A context variable keeps it correct under ASGI concurrency.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    client_address: str = ""
    user_id: int | None = None
    component: str = ""


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "clinaiops_request_context", default=None
)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_context() -> RequestContext | None:
    return _current.get()


def bind_user(user_id: int | None) -> None:
    """Record the authenticated user once authentication has happened (after the middleware)."""
    context = _current.get()
    if context is not None and context.user_id != user_id:
        _current.set(replace(context, user_id=user_id))


@contextmanager
def request_context(
    *,
    request_id: str | None = None,
    client_address: str = "",
    user_id: int | None = None,
    component: str = "",
) -> Iterator[RequestContext]:
    context = RequestContext(
        request_id=request_id or new_request_id(),
        client_address=client_address,
        user_id=user_id,
        component=component,
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
