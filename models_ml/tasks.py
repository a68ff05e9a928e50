"""Celery tasks of the model lifecycle: thin shells over ``models_ml.registry``."""

from celery import shared_task

from models_ml import registry


@shared_task(acks_late=True)
def train_candidate(private: bool = False) -> str:
    """Retrain a candidate (never promoted by itself: promotion needs the gates and a person)."""
    return registry.train_model(private=private).version
