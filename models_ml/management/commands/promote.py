from django.core.management.base import BaseCommand

from models_ml import registry
from models_ml.management.commands._shared import actor_named, refused


class Command(BaseCommand):
    help = "Promote an evaluated model version to production (or to shadow with --shadow)."

    def add_arguments(self, parser):
        parser.add_argument("version")
        parser.add_argument("--shadow", action="store_true", help="run beside production only")
        parser.add_argument(
            "--waive-fairness",
            metavar="REASON",
            default="",
            help="an admin's written reason to waive the fairness gate",
        )
        parser.add_argument("--as", dest="username", help="the admin promoting it")

    def handle(self, *args, **options):
        try:
            actor = actor_named(options["username"])
            if options["shadow"]:
                version = registry.set_shadow(options["version"], actor=actor)
            else:
                version = registry.promote(
                    options["version"], actor=actor, waiver_reason=options["waive_fairness"]
                )
        except Exception as error:
            raise refused(error) from error
        self.stdout.write(f"{version.version} is now {version.stage}")
