"""The patient–clinician loop (DESIGN.md): shared goals, secure messages, and a visit cadence
that adapts to how stable the patient is. Models live in ``clinicians.models``; the writes in
``goals``, ``messages`` and ``visits`` (what people may write in them: ``free_text``), the
reads in ``selectors``, the cadence rule (pure, with its sources) in ``cadence``. See
docs/patient-clinician-loop.md."""
