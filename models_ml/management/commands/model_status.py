import json

from django.core.management.base import BaseCommand

from models_ml import registry
from models_ml.alerts import alerts_in_force_by_version
from models_ml.models import DriftReport


class Command(BaseCommand):
    help = (
        "The registry: versions, stages, lineage, metrics, gates; per version the monitoring "
        "alerts in force (open or acknowledged) and the latest verdict of each monitor."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        status = registry.status()
        in_force = alerts_in_force_by_version()
        for row in status["models"]:
            row["alerts"] = [
                {
                    "id": alert.pk,
                    "kind": alert.kind,
                    "status": alert.status,
                    "message": alert.message,
                    "opened_at": alert.opened_at.isoformat(),
                    "acknowledged_by": alert.acknowledged_by.username
                    if alert.acknowledged_by
                    else None,
                    "acknowledged_at": alert.acknowledged_at.isoformat()
                    if alert.acknowledged_at
                    else None,
                }
                for alert in in_force.get(row["version"], [])
            ]
            row["monitoring"] = latest_verdicts(row["version"])
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
            if row["monitoring"]:
                verdicts = ", ".join(
                    f"{monitor}={latest['verdict']}"
                    for monitor, latest in row["monitoring"].items()
                )
                self.stdout.write(f"  monitoring: {verdicts}")
            for alert in row["alerts"]:
                seen = (
                    f", acknowledged by {alert['acknowledged_by']}"
                    if alert["acknowledged_by"]
                    else ""
                )
                self.stdout.write(
                    f"  ALERT #{alert['id']} {alert['kind']} {alert['status'].upper()} since "
                    f"{alert['opened_at'][:10]}{seen}: {alert['message']}"
                )


def latest_verdicts(version: str) -> dict[str, dict]:
    """The latest report of each monitor for a version: verdict and when."""
    latest: dict[str, dict] = {}
    for monitor, verdict, created_at in DriftReport.objects.filter(
        model_version__version=version
    ).values_list("monitor", "verdict", "created_at"):
        latest.setdefault(monitor, {"verdict": verdict, "at": created_at.isoformat()})
    return latest
