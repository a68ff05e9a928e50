import json

from django.core.management.base import BaseCommand

from models_ml import gate_evaluation
from models_ml.management.commands._shared import actor_named, refused


class Command(BaseCommand):
    help = "Run every gate for a model version and record the results (and their evidence)."

    def add_arguments(self, parser):
        parser.add_argument("version")
        parser.add_argument("--as", dest="username")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        try:
            report = gate_evaluation.evaluate(
                options["version"], actor=actor_named(options["username"])
            )
        except Exception as error:
            raise refused(error) from error
        if options["json"]:
            self.stdout.write(json.dumps(report.to_dict(), default=str))
            return
        for gate in report.results:
            waivable = " (waivable)" if gate.waivable and not gate.passed else ""
            self.stdout.write(f"{'PASS' if gate.passed else 'FAIL'} {gate.name}{waivable}")
            for failure in gate.detail.get("failures") or []:
                self.stdout.write(f"  - {failure}")
        self.stdout.write("all gates passed" if report.passed else "gates failed")
