"""The FHIR R4 facade at ``/fhir/`` (docs/fhir.md): EHRs and SMART-style clients read
patients, observations, medication requests, audit events and provenance, and post observations.

It owns no data. Every write goes through the owning app's service (readings and laboratory
results through ``patients.ingestion``, so validation, de-duplication, audit and alerting are
those of ``POST /api/v1/readings/`` and ``/api/v1/labs/``); every read starts from the
selectors that already narrow data to what the caller may see, and is journalled as the
``/api/v1`` reads are.

Modules: ``http`` (media types, OperationOutcome errors, the base view), ``search`` (parameter
parsing, paging, searchset Bundles), one module per resource family, ``capability`` (the
CapabilityStatement, built from the same registry the views dispatch on), ``views``, ``urls``.
"""
