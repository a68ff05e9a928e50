"""CDS Hooks 2.0 (``/cds-services``): ClinAIOps as a CDS Service an EHR calls.

What it owns: the EHRs registered as CDS Clients (issuer, key set, the care teams they serve, the
practitioners they may name), the ``jti`` of every accepted JWT, and the cards issued — so that
feedback on a card lands as the decision of the clinician it was shown to.

| module | holds |
|---|---|
| ``models`` | ``CdsClient``, ``CdsPractitioner``, ``CdsTokenUse``, ``CdsCard`` |
| ``registration`` | registering an EHR and the practitioners it may name (audited) |
| ``authentication`` | the EHR's JWT: signature by its registered JWKS, iss, aud, exp, ``jti`` |
| ``hook_request`` | the request body, the patient (MRN), the practitioner, the prefetch checks |
| ``ehr_fhir`` | the one outbound read: the EHR's Patient with the call's ``fhirAuthorization`` |
| ``cards`` | cards in the specification's shape, in words (pure) |
| ``services`` | discovery, ``patient-view``, ``order-sign``, feedback |
| ``http`` | errors as OperationOutcome, CORS for the EHR's origin |
| ``launch`` | SMART EHR launch of the review page: ``iss``, PKCE, code exchange, patient |
| ``views``, ``launch_views``, ``urls`` | thin views |

See ``docs/cds-hooks.md``.
"""
