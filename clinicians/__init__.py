"""Oversight: clinicians' work — safety bounds, recommendations and their review, alerts,
goals, visits, messages — and the clinician portal."""
