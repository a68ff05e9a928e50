"""The evidence on the patient chart (issue #14): ``figures`` (the home-monitoring figures, pure),
``plot`` (the blood-pressure plot's geometry, pure), ``evidence`` (one patient's range read from
the database, for the chart section)."""
