"""Settings of the bench's reference server: the project's settings with one extra endpoint.

Only the URLconf differs, so the reference endpoint runs behind the same middleware,
authentication, throttling and database as the real ingestion API.
"""

from clinaiops.settings import *  # noqa: F403

ROOT_URLCONF = "bench.reference_urls"
