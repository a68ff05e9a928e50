"""Secure messages of the patient–clinician loop: one thread per patient, between the patient
and their care team, with read receipts. Each write starts by asking the authorization
controller (``core.authz``; who may do what is ``clinicians/rules.py``'s), then runs in one
transaction with its audit event; the websocket push goes out on commit (``clinicians.notify``).
A message body is free text (``clinicians.loop.free_text``): never journalled, only its
length.

Read receipts are live: whoever reads the other side's messages (one, the thread, or by
replying — a reply marks the thread read) sends one ``message.read`` push to the sockets of the
side that wrote them. A patient's message with urgent words (``clinicians.loop.urgency``) is
flagged for the care team, pushed to them as ``message.urgent`` too, and the patient is shown
emergency guidance at once (the API's answer, the *today* screen)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from audit.models import Action
from audit.services import record_event
from clinicians import notify
from clinicians.loop.free_text import has_control_characters
from clinicians.loop.urgency import urgent_terms_in
from clinicians.models import MESSAGE_MAX_CHARS, Message, SenderRole
from core import authz
from core.errors import DomainError
from patients.models import Patient


def send_message(*, patient: Patient, actor: User, body: str) -> Message:
    """The patient writes to their care team, or a clinician of the team writes to the patient
    (one thread per patient). The body is plain text; HTML in it is text, escaped on render."""
    authz.authorize(actor, "clinicians.send_message", patient)
    role = actor.role
    body = (body or "").strip()
    if not body:
        raise DomainError("A message needs a body.", field="body")
    if len(body) > MESSAGE_MAX_CHARS:
        raise DomainError(
            f"A message is at most {MESSAGE_MAX_CHARS} characters (this one has {len(body)}).",
            field="body",
        )
    if has_control_characters(body):
        raise DomainError("Control characters are not allowed in a message.", field="body")
    if role == Role.CLINICIAN and patient.user_id is None:
        raise DomainError(
            "This patient has no app account: a message cannot reach them.", field="patient"
        )
    sender_role = SenderRole.PATIENT if role == Role.PATIENT else SenderRole.CLINICIAN
    terms = urgent_terms_in(body) if sender_role == SenderRole.PATIENT else ()
    with transaction.atomic():
        # A reply answers what came before it: the other side's messages are read first (their
        # receipts precede the reply), in the same transaction.
        _read_other_side(patient, actor, sender_role)
        message = Message.objects.create(
            patient=patient,
            sender=actor,
            sender_role=sender_role,
            body=body,
            created_at=timezone.now(),
            is_urgent=bool(terms),
            urgent_terms=list(terms),
        )
        detail: dict[str, object] = {"sender_role": message.sender_role, "body_chars": len(body)}
        if terms:
            detail["urgent"] = True  # which terms is PHI: kept on the row, not in the journal
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="message",
            object_id=message.pk,
            patient_id=patient.pk,
            detail=detail,
        )
        notify.message_sent(message)
    return message


def _receipt(message: Message, actor: User, now: datetime) -> None:
    """Set one message's receipt and journal it (the caller holds the row lock)."""
    message.read_at, message.read_by = now, actor
    message.save(update_fields=["read_at", "read_by"])
    record_event(
        action=Action.UPDATE,
        actor=actor,
        object_type="message",
        object_id=message.pk,
        patient_id=message.patient_id,
        changes={"read_at": {"old": None, "new": message.read_at}},
    )


def _read_other_side(patient: Patient, actor: User, own_role: str) -> list[Message]:
    """Receipts for every message of the other side still unread, and one live push of them."""
    other_side = SenderRole.CLINICIAN if own_role == SenderRole.PATIENT else SenderRole.PATIENT
    unread = list(
        Message.objects.select_for_update()
        .filter(patient=patient, sender_role=other_side, read_at__isnull=True)
        .order_by("id")
    )
    now = timezone.now()
    for message in unread:
        _receipt(message, actor, now)
    if unread:
        notify.messages_read(patient.pk, unread, reader_role=own_role)
    return unread


def mark_message_read(*, message: Message, actor: User) -> Message:
    """The read receipt, set once by the receiving side (``clinicians.read_message``); marking
    a read message again changes nothing and records nothing."""
    authz.authorize(actor, "clinicians.read_message", message)
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.read_at is not None:
            return message
        _receipt(message, actor, timezone.now())
        reader = (
            SenderRole.CLINICIAN
            if message.sender_role == SenderRole.PATIENT
            else SenderRole.PATIENT
        )
        notify.messages_read(message.patient_id, [message], reader_role=reader)
    return message


def mark_thread_read(*, patient: Patient, actor: User) -> int:
    """Read receipts for every message of the other side still unread (the portal's button,
    the app's thread screen), pushed live as one ``message.read``; the count marked."""
    authz.authorize(actor, "clinicians.read_thread", patient)
    own_role = SenderRole.CLINICIAN if actor.role == Role.CLINICIAN else SenderRole.PATIENT
    with transaction.atomic():
        return len(_read_other_side(patient, actor, own_role))
