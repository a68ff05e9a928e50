"""The stage changes a model owner signs in the workspace: the registry's ``promote``,
``set_shadow`` and ``rollback`` — the same gates, the same journal as the ``promote`` and
``rollback`` commands — behind two checks the commands leave to the shell: the actor may own
models (``models_ml.own_models``), and they sign the change by entering their password again
(``accounts.identity.signin.reauthenticate``, the signature on a clinician's decision too). A
wrong password changes nothing and is journalled as a failed attempt of the same action."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from accounts.identity.signin import reauthenticate
from audit.models import Action, Outcome
from audit.services import record_event
from core import authz
from core.errors import DomainError
from models_ml import registry
from models_ml.models import ModelVersion, Stage

OWN_MODELS = "models_ml.own_models"
MAX_WAIVER_REASON_LENGTH = 2000


class SignatureRefused(DomainError):
    """The password entered to sign a stage change is not the actor's."""

    http_status = 403
    code = "reauthentication_failed"


def _signed(
    actor, password: str, model_version: ModelVersion, *, action: str, request: str
) -> None:
    """Authorize ``actor`` to own ``model_version`` and check their signature; a wrong password
    is journalled as a failed ``action`` and refused."""
    authz.authorize(actor, OWN_MODELS, model_version)
    if reauthenticate(actor, password or ""):
        return
    with transaction.atomic():
        record_event(
            action=action,
            actor=actor,
            object_type="model_version",
            object_id=model_version.pk,
            outcome=Outcome.FAILURE,
            detail={
                "version": model_version.version,
                "request": request,
                "why": "reauthentication_failed",
            },
        )
    raise SignatureRefused("The password does not match: nothing was changed.", field="password")


def promote_signed(
    model_version: ModelVersion,
    *,
    actor,
    password: str,
    waive: Sequence[str] = (),
    waiver_reason: str = "",
) -> ModelVersion:
    """Promote through the gates (``registry.promote``), signed by ``actor``. ``waive`` names
    the failed waivable gates to waive, each on ``waiver_reason``; none named, none waived."""
    waiver_reason = (waiver_reason or "").strip()
    if waive and not waiver_reason:
        raise DomainError("A waiver needs a written reason.", field="waiver_reason")
    if len(waiver_reason) > MAX_WAIVER_REASON_LENGTH:
        raise DomainError(f"At most {MAX_WAIVER_REASON_LENGTH} characters.", field="waiver_reason")
    _signed(
        actor,
        password,
        model_version,
        action=Action.MODEL_PROMOTION_REFUSED,
        request="promote",
    )
    return registry.promote(
        model_version.version,
        actor=actor,
        waiver_reason=waiver_reason if waive else "",
        waive=list(waive) or None,
    )


def set_shadow_signed(model_version: ModelVersion, *, actor, password: str) -> ModelVersion:
    """Run a candidate beside production (``registry.set_shadow``), signed by ``actor``."""
    _signed(actor, password, model_version, action=Action.MODEL_STAGE_CHANGED, request="shadow")
    return registry.set_shadow(model_version.version, actor=actor)


def rollback_signed(model_version: ModelVersion, *, actor, password: str) -> ModelVersion | None:
    """Roll production back (``registry.rollback``), signed by ``actor``, from the page of the
    version in production: when another version is in production by now, nothing is rolled
    back (the owner decided about the one they were looking at)."""
    _signed(actor, password, model_version, action=Action.MODEL_ROLLED_BACK, request="rollback")
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(stage=Stage.PRODUCTION).first()
        if current is None or current.pk != model_version.pk:
            raise registry.PromotionRefused(
                f"{model_version.version} is no longer in production; nothing was rolled back."
            )
        return registry.rollback(actor=actor)
