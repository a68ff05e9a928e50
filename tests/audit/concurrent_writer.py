"""Run by test_concurrency in separate processes: append events as fast as possible.

``python -m tests.audit.concurrent_writer COUNT`` with DATABASE_URL / CLINAIOPS_DATA_DIR set;
prints the JSON list of the sequence numbers it was given.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinaiops.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import transaction

    from audit.services import record_event

    settings.AUDIT_CHECKPOINT_EVERY = 16  # concurrent sealing is exercised too
    settings.AUDIT_CHAINS = int(os.environ.get("AUDIT_CHAINS", "1"))
    # Start together (after Django's start-up, which takes longer than the writing).
    time.sleep(max(0.0, float(os.environ.get("WRITERS_START_AT", "0")) - time.time()))
    count, sequences = int(sys.argv[1]), []
    for number in range(count):
        with transaction.atomic():
            event = record_event(
                action="update", component=f"writer-{os.getpid()}", object_id=number, patient_id=1
            )
        sequences.append(event.sequence)
    print(json.dumps(sequences))


if __name__ == "__main__":
    main()
