"""The patient's record and data: Patient and demographics, care-team assignment, devices,
wearable readings and medication intakes; ingestion; the patient mobile API."""
