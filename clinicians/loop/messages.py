"""Secure messages of the patient–clinician loop: one thread per patient, between the patient
and their care team, with read receipts. Each write starts by asking the authorization
controller (``core.authz``; who may do what is ``clinicians/rules.py``'s), then runs in one
transaction with its audit event; the websocket push goes out on commit (``clinicians.notify``).
A message body is free text (``clinicians.loop.free_text``): never journalled, only its
length."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from audit.models import Action
from audit.services import record_event
from clinicians import notify
from clinicians.loop.free_text import has_control_characters
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
    with transaction.atomic():
        message = Message.objects.create(
            patient=patient,
            sender=actor,
            sender_role=SenderRole.PATIENT if role == Role.PATIENT else SenderRole.CLINICIAN,
            body=body,
            created_at=timezone.now(),
        )
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="message",
            object_id=message.pk,
            patient_id=patient.pk,
            detail={"sender_role": message.sender_role, "body_chars": len(body)},
        )
        notify.message_sent(message)
    return message


def mark_message_read(*, message: Message, actor: User) -> Message:
    """The read receipt, set once by the receiving side (``clinicians.read_message``); marking
    a read message again changes nothing and records nothing."""
    authz.authorize(actor, "clinicians.read_message", message)
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.read_at is not None:
            return message
        message.read_at, message.read_by = timezone.now(), actor
        message.save(update_fields=["read_at", "read_by"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="message",
            object_id=message.pk,
            patient_id=message.patient_id,
            changes={"read_at": {"old": None, "new": message.read_at}},
        )
    return message


def mark_thread_read(*, patient: Patient, actor: User) -> int:
    """Read receipts for every message of the other side still unread (the portal's button)."""
    authz.authorize(actor, "clinicians.read_thread", patient)
    other_side = SenderRole.PATIENT if actor.role == Role.CLINICIAN else SenderRole.CLINICIAN
    count = 0
    with transaction.atomic():
        unread = Message.objects.filter(
            patient=patient, sender_role=other_side, read_at__isnull=True
        ).order_by("id")
        for message in unread:
            mark_message_read(message=message, actor=actor)
            count += 1
    return count
