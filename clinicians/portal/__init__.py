"""The clinician portal (``/portal/``): server-rendered pages behind password + TOTP."""
