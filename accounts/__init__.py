"""Identity and reach: users and their role, care teams, memberships, and the access rules.

Care teams live here rather than in ``clinicians`` because access to a patient's record is
decided by them, and that decision is needed by every app above (patients, models_ml,
clinicians, the FHIR facade). Putting them in ``clinicians`` would force the lower apps to import
a higher one.
"""
