from django.core.management.base import BaseCommand, CommandError

from models_ml import training
from models_ml.management.commands._shared import actor_named, refused


class Command(BaseCommand):
    help = "Train a dose-response model on simulated and recorded outcomes; register a candidate."

    def add_arguments(self, parser):
        parser.add_argument("--private", action="store_true", help="DP-SGD (Opacus) training")
        parser.add_argument("--epsilon", type=float, help="target ε for private training")
        parser.add_argument("--patients", type=int, default=600, help="simulated cohort size")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--skew", choices=["exclude-black", "mild-only"], help="train on a skewed cohort"
        )
        parser.add_argument("--as", dest="username", help="the user on whose behalf")
        parser.add_argument(
            "--non-private-waiver",
            dest="waiver",
            default="",
            metavar="REASON",
            help="train without DP although the data hold real patients: a model owner's reason "
            "(with --as), journalled and kept in the model's privacy record",
        )

    def handle(self, *args, **options):
        if options["epsilon"] is not None and not options["private"]:
            raise CommandError("--epsilon applies to --private training only.")
        if options["epsilon"] is not None and not 0 < options["epsilon"] <= 50:
            raise CommandError("--epsilon must be a positive number (at most 50).")
        if options["waiver"].strip() and options["private"]:
            raise CommandError("--non-private-waiver applies to training without --private.")
        try:
            version = training.train_model(
                private=options["private"],
                epsilon=options["epsilon"],
                n_patients=options["patients"],
                seed=options["seed"],
                skew=options["skew"],
                actor=actor_named(options["username"]),
                non_private_waiver=options["waiver"],
            )
        except Exception as error:
            raise refused(error) from error
        self.stdout.write(
            f"{version.version} registered as candidate "
            f"(sha256 {version.artifact_sha256[:12]}, metrics {version.metrics})"
        )
