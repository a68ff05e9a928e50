"""``/care/``: the caregiver's workspace (docs/caregivers.md) — sign in, the patients they follow
with the latest reading and open urgent alerts each grant shows, and a live region for urgent
alerts (``/ws/care/``)."""
