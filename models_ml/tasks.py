"""Celery tasks of the model lifecycle: thin shells over ``models_ml.training``."""

import logging

from celery import shared_task

from models_ml import training
from models_ml.candidate import TrainingRefused

logger = logging.getLogger("models_ml.tasks")


@shared_task(acks_late=True)
def train_candidate(private: bool | None = None) -> str:
    """Retrain a candidate (never promoted by itself: promotion needs the gates and a person).

    What a monitoring alert queues (``MODEL_RETRAIN_ON_ALERT``). ``private=None`` trains with
    DP-SGD whenever the data hold a real patient, within each patient's lifetime budget; no
    waiver can be given here, so a non-private retraining on real patients is refused. A
    refusal (budget spent, too little data) is a decision, not a fault: logged, not retried,
    and ``""`` returned."""
    try:
        return training.train_model(private=private).version
    except TrainingRefused as error:
        logger.warning("retraining_refused", extra={"reason": str(error)})
        return ""
