"""Events the patient record announces to the apps above it (which may not be imported here).

Sent after the transaction that stored the data commits, with the patient's id (and, for
readings, which kinds arrived).
"""

from django.dispatch import Signal

# kwargs: patient_id, reading_types (frozenset of ReadingType values stored by the upload)
readings_recorded = Signal()
# kwargs: patient_id
intakes_recorded = Signal()
labs_recorded = Signal()
# kwargs: patient_id, reading_id — a clinician marked that reading entered in error
reading_entered_in_error = Signal()
