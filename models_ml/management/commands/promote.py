from django.core.management.base import BaseCommand, CommandError

from models_ml import registry
from models_ml.management.commands._shared import actor_named, refused


class Command(BaseCommand):
    help = (
        "Promote an evaluated model version to production (or to shadow with --shadow). When "
        "production changed since the evaluation, the gates are run again against it first."
    )

    def add_arguments(self, parser):
        parser.add_argument("version")
        parser.add_argument("--shadow", action="store_true", help="run beside production only")
        parser.add_argument(
            "--waive-fairness",
            metavar="REASON",
            default="",
            help="a model owner's written reason to waive the fairness gate",
        )
        parser.add_argument(
            "--waive",
            metavar="GATE",
            action="append",
            default=[],
            help="a failed waivable gate to waive (fairness, first_line_drug_choice, "
            "training_representativeness); repeat for several; needs --reason and a model owner",
        )
        parser.add_argument(
            "--reason", default="", help="the model owner's written reason to waive"
        )
        parser.add_argument("--as", dest="username", help="the model owner promoting it")

    def handle(self, *args, **options):
        waive, reason = list(options["waive"]), options["reason"].strip()
        if options["waive_fairness"].strip():
            waive.append("fairness")
            reason = reason or options["waive_fairness"].strip()
        if waive and not reason:
            raise CommandError("A waiver needs a written reason (--reason).")
        try:
            actor = actor_named(options["username"])
            if options["shadow"]:
                version = registry.set_shadow(options["version"], actor=actor)
            else:
                version = registry.promote(
                    options["version"], actor=actor, waiver_reason=reason, waive=waive or None
                )
        except Exception as error:
            raise refused(error) from error
        self.stdout.write(f"{version.version} is now {version.stage}")
