from django.core.management.base import BaseCommand

from models_ml import registry
from models_ml.management.commands._shared import actor_named, refused


class Command(BaseCommand):
    help = "Retire the production model and restore the previous one (or the protocol)."

    def add_arguments(self, parser):
        parser.add_argument("--as", dest="username")

    def handle(self, *args, **options):
        try:
            restored = registry.rollback(actor=actor_named(options["username"]))
        except Exception as error:
            raise refused(error) from error
        self.stdout.write(f"production is now {restored.version if restored else 'the protocol'}")
