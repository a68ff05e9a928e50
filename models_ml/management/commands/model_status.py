import json

from django.core.management.base import BaseCommand

from models_ml import registry


class Command(BaseCommand):
    help = "The registry: versions, stages, lineage, metrics, gates."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        status = registry.status()
        if options["json"]:
            self.stdout.write(json.dumps(status, default=str))
            return
        self.stdout.write(f"producer in production: {status['producer']}")
        for row in status["models"]:
            gates = ", ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in row["gates"].items())
            self.stdout.write(
                f"{row['version']:<16} {row['stage']:<10} {row['kind']:<14} "
                f"{row['metrics'].get('held_out_mae_systolic_mmhg', float('nan')):.2f}"
                f" mmHg MAE  {gates or 'not evaluated'}"
            )
