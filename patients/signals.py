"""Events the patient record announces to the apps above it (which may not be imported here).

Sent after the transaction that stored the data commits, with the patient's id only.
"""

from django.dispatch import Signal

# kwargs: patient_id
readings_recorded = Signal()
intakes_recorded = Signal()
labs_recorded = Signal()
