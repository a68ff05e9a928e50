"""The authorization controller: every permission is a named action, decided here and nowhere
else.

Each app's ``rules.py`` declares, beside each other,

- its **actions** (``define``): the rule (a django-rules predicate of ``(user, obj)``), the
  refusal message the API, the portal and the FHIR facade all show, the **visibility** the
  object must be in (outside it the object does not exist for the caller: ``NotFound``, 404,
  never 403), and for an action that discloses patient data the journal's object type;
- its **visibilities** (``define_visibility``): who sees which rows of one model, as a queryset
  filter. Selectors (``patients_visible_to`` …) delegate to them: one definition of who sees
  what, for lists and for the 404 of a single object alike.

Callers ask in one of four ways:

- ``authorize(actor, action, obj=None)`` — every service starts with it; raises ``NotFound`` or
  ``Forbidden`` (``core.errors``), which one handler per surface maps to HTTP.
- ``authorize_read(actor, action, obj=None, *, shown=(), detail=None)`` — a read of patient
  data: decided and **journalled in the same call** (one ``read`` event naming the patients of
  ``obj`` and ``shown``). A read action cannot be authorized on an object any other way, so a
  view cannot show a patient's data and forget the journal.
- ``can(actor, action, obj=None) -> bool`` — for menus, templates and websocket handshakes;
  decides, raises nothing, journals nothing.
- ``visible(actor, visibility) -> QuerySet`` — the rows the actor sees.

**Actors.** A signed-in user, or the system acting on its own (a Celery task, a management
command, the evaluation pipeline): ``System("component")``, named explicitly by the caller and
recorded as the journal's component. The system is not subject to rules — that is the point of
naming it. ``None``, an anonymous or an inactive user is *nobody*: refused by every action (never
mistaken for the system). Anything is denied unless a rule allows it; an unknown action name is
a programming error (``AuthorizationUsageError``), not a refusal.

Unlike CARE's ``AuthorizationController`` there are no hooks that do nothing by default: a
decision is a rule, and a rule is a predicate in one ``rules.py``.

For tests, ``ledger()`` records every decision taken in a block (per request, under ASGI too:
a context variable), so that a test can tell whether a route consulted the controller at all.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import rules
from django.db import transaction
from django.db.models import Model, QuerySet

from core.errors import Forbidden, NotFound

NOT_FOUND_MESSAGE = "Not found."  # as DRF says it: a refused object and a missing one look alike


class AuthorizationUsageError(RuntimeError):
    """A caller used the controller wrongly (unknown action, a read not journalled, the system
    asking for a visibility): a bug to fix, never an answer to a client."""


@dataclass(frozen=True)
class System:
    """The system acting on its own, named by the part of it that acts (the journal's
    component). Services accept it where no person acts; it is never inferred from a missing
    actor."""

    component: str

    def __post_init__(self) -> None:
        if not self.component:
            raise AuthorizationUsageError("the system names the component that acts")


@dataclass(frozen=True)
class Visibility:
    """Who sees which rows of ``model``: ``rows(user)`` for a signed-in user (nobody else sees
    any). ``patient_of(row)`` names the patient a row belongs to (journalling; None when rows are
    no patient's data)."""

    name: str
    model: type[Model]
    rows: Callable[[Any], QuerySet[Any]]
    patient_of: Callable[[Any], int] | None = None
    # ``shortcut(user, row)`` True: the row is in ``rows(user)``, known without a query (a
    # patient's own record, on every upload). False decides nothing: the rows do.
    shortcut: Callable[[Any, Any], bool] | None = None


@dataclass(frozen=True)
class Action:
    """One named action. ``sees``: the visibility ``subject(obj)`` must be in (else NotFound);
    ``reads``: the journal object type of a read of patient data (authorized only by
    ``authorize_read``)."""

    name: str
    message: str
    sees: str | None = None
    subject: Callable[[Any], Any] | None = None
    reads: str | None = None


@dataclass
class Ledger:
    """The decisions taken while it was open: ``(kind, action, actor)`` with kind one of
    authorize, read, can, visible — and ``system`` for the system's own."""

    decisions: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def consulted_for_a_person(self) -> bool:
        return any(kind != "system" for kind, _, _ in self.decisions)


_actions: dict[str, Action] = {}
_visibilities: dict[str, Visibility] = {}
_journal: Callable[..., Any] | None = None
_every_read_journalled: frozenset[str] = frozenset()
_reader_journals: list[tuple[Callable[[Any], bool], Callable[..., Any]]] = []
_ledger: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar(
    "clinaiops_authz_ledger", default=None
)


# --- declaring -------------------------------------------------------------------------------


def define(
    name: str,
    rule: rules.Predicate,
    *,
    message: str,
    sees: str | None = None,
    subject: Callable[[Any], Any] | None = None,
    reads: str | None = None,
) -> Action:
    """Declare an action (in the owning app's ``rules.py``). The rule is registered with
    django-rules under the same name: one predicate engine, one place to replace a rule."""
    if name in _actions:
        raise AuthorizationUsageError(f"action {name!r} is declared twice")
    rules.add_perm(name, rule)
    action = Action(name=name, message=message, sees=sees, subject=subject, reads=reads)
    _actions[name] = action
    return action


def define_visibility(
    name: str,
    model: type[Model],
    rows: Callable[[Any], QuerySet[Any]],
    *,
    patient_of: Callable[[Any], int] | None = None,
    shortcut: Callable[[Any, Any], bool] | None = None,
) -> Visibility:
    if name in _visibilities:
        raise AuthorizationUsageError(f"visibility {name!r} is declared twice")
    visibility = Visibility(
        name=name, model=model, rows=rows, patient_of=patient_of, shortcut=shortcut
    )
    _visibilities[name] = visibility
    return visibility


def journal_reads_with(journal: Callable[..., Any], *, every_read_of: Iterable[str] = ()) -> None:
    """The audit app hands over its ``record_read`` (it sits above this module). Until it has,
    a read of patient data is refused as a usage error rather than shown unjournalled.
    ``every_read_of``: the object types (the journal's own) whose every read is journalled,
    whether or not it showed a patient."""
    global _journal, _every_read_journalled
    _journal = journal
    _every_read_journalled = frozenset(every_read_of)


def journal_reads_of(readers: Callable[[Any], bool], journal: Callable[..., Any]) -> None:
    """The reads of actors ``readers`` accepts are journalled by ``journal`` (the audit journal's
    signature) instead: an app that knows *why* such a reader reaches a patient names it (a
    caregiver's read names the patient's grant)."""
    _reader_journals.append((readers, journal))


def action(name: str) -> Action:
    try:
        return _actions[name]
    except KeyError:
        raise AuthorizationUsageError(f"no action named {name!r}") from None


def message_of(name: str) -> str:
    return action(name).message


def actions() -> dict[str, Action]:
    return dict(_actions)


# --- deciding --------------------------------------------------------------------------------


def is_signed_in(actor: Any) -> bool:
    return bool(
        actor is not None
        and not isinstance(actor, System)
        and getattr(actor, "is_authenticated", False)
        and getattr(actor, "is_active", False)
    )


def _note(kind: str, name: str, actor: Any) -> None:
    ledger = _ledger.get()
    if ledger is not None:
        who = actor.component if isinstance(actor, System) else str(getattr(actor, "pk", None))
        ledger.decisions.append(("system" if isinstance(actor, System) else kind, name, who))


def _sees(actor: Any, visibility: str, row: Any) -> bool:
    if row is None or getattr(row, "pk", None) is None:
        return False
    seen = _visibility(visibility)
    if seen.shortcut is not None and seen.shortcut(actor, row):
        return True
    return seen.rows(actor).filter(pk=row.pk).exists()


def _refusal(actor: Any, act: Action, obj: Any) -> Forbidden | NotFound | None:
    """Why ``actor`` may not do ``act`` on ``obj``, or None when a rule allows it."""
    sees = act.sees if obj is not None else None  # the visibility obj must be in, if any
    if not is_signed_in(actor):
        return NotFound(NOT_FOUND_MESSAGE) if sees is not None else Forbidden(act.message)
    if sees is not None and not _sees(actor, sees, act.subject(obj) if act.subject else obj):
        return NotFound(NOT_FOUND_MESSAGE)
    if not rules.has_perm(act.name, actor, obj):
        return Forbidden(act.message)
    return None


def authorize(actor: Any, name: str, obj: Any = None) -> None:
    """Raise ``NotFound`` (the object is outside what the actor sees) or ``Forbidden`` (the
    rule says no, with its message) unless ``actor`` may do ``name`` on ``obj``. The system
    passes."""
    act = action(name)
    _note("authorize", name, actor)
    if isinstance(actor, System):
        return
    if act.reads is not None and obj is not None:
        raise AuthorizationUsageError(
            f"{name} reads patient data: authorize it with authorize_read, which journals it"
        )
    refusal = _refusal(actor, act, obj)
    if refusal is not None:
        raise refusal


def authorize_read(
    actor: Any,
    name: str,
    obj: Any = None,
    *,
    shown: Iterable[int] = (),
    detail: dict[str, Any] | None = None,
    every_answer: Callable[..., Any] | None = None,
) -> None:
    """Decide a read of patient data and journal it: one ``read`` event (object type: the
    action's) naming the patient of ``obj`` and the patients in ``shown`` (a list's rows, taken
    from a visibility). Runs in its own transaction, so the event is written whatever the
    caller's. Nothing is journalled for a reader the journal leaves out (a patient reading
    their own record) or when no patient is shown — except for a read of the journal itself
    (``journal_reads_with(every_read_of=…)``), which is journalled every time.

    ``every_answer``: a surface that journals *every* answer it gives (the FHIR facade: IHE
    BALP audits each interaction, a patient's own and the empty ones included) passes its
    journal write (the same arguments); it is called whoever reads and whatever was shown —
    unless a reader journal (``journal_reads_of``) takes a read that showed patients."""
    act = action(name)
    _note("read", name, actor)
    if act.reads is None:
        raise AuthorizationUsageError(f"{name} is not a read of patient data: use authorize")
    if isinstance(actor, System):
        return
    refusal = _refusal(actor, act, obj)
    if refusal is not None:
        raise refusal
    patient_ids = set(shown)
    if obj is not None:
        patient_ids.add(_patient_of(act, obj))
    if not patient_ids and act.reads not in _every_read_journalled and every_answer is None:
        return
    journal = next(
        (
            j
            for readers, j in _reader_journals
            if (patient_ids or not every_answer) and readers(actor)
        ),
        every_answer or _journal,
    )
    if journal is None:
        raise AuthorizationUsageError("no read journal: the audit app has not registered it")
    with transaction.atomic():
        journal(actor=actor, object_type=act.reads, patient_ids=sorted(patient_ids), detail=detail)


def _patient_of(act: Action, obj: Any) -> int:
    row = act.subject(obj) if act.subject else obj
    visibility = _visibility(act.sees) if act.sees else None
    if visibility is None or visibility.patient_of is None:
        raise AuthorizationUsageError(f"{act.name} cannot name the patient of {obj!r}")
    return visibility.patient_of(row)


def can(actor: Any, name: str, obj: Any = None) -> bool:
    """Whether ``actor`` may do ``name`` on ``obj`` (for menus, templates, handshakes)."""
    act = action(name)
    _note("can", name, actor)
    return isinstance(actor, System) or _refusal(actor, act, obj) is None


def _visibility(name: str) -> Visibility:
    try:
        return _visibilities[name]
    except KeyError:
        raise AuthorizationUsageError(f"no visibility named {name!r}") from None


def visible(actor: Any, name: str) -> QuerySet[Any]:
    """The rows of the visibility's model ``actor`` sees (none for anybody not signed in)."""
    visibility = _visibility(name)
    _note("visible", name, actor)
    if isinstance(actor, System):
        raise AuthorizationUsageError("the system reads its models directly, not by visibility")
    if not is_signed_in(actor):
        return visibility.model._default_manager.none()
    return visibility.rows(actor)


# --- instrumentation (tests) -----------------------------------------------------------------


@contextmanager
def ledger() -> Iterator[Ledger]:
    """Record the decisions taken inside the block (a test around one request)."""
    book = Ledger()
    token = _ledger.set(book)
    try:
        yield book
    finally:
        _ledger.reset(token)
