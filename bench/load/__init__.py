"""The load harness (issue 17): simulated phones, clinicians and an auditor against daphne +
Celery + beat on PostgreSQL and Redis. ``python -m bench.load --help``; docs/load-testing.md."""
