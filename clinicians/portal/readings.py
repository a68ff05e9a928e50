"""Marking a reading entered in error from the chart's readings table (``patients.readings``):
one POST with CSRF and a reason. A missing or too long reason comes back beside that reading's
form, as typed, with 400; any other refusal (already marked, not of the care team) as a
message on the chart."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_otp.decorators import otp_required

from clinicians.portal.chart.evidence import chart_range, table_type
from clinicians.portal.review import _render_chart
from core.errors import DomainError
from patients.readings import mark_entered_in_error
from patients.selectors import patients_visible_to, readings_visible_to


@dataclass(frozen=True)
class ReadingRefusal:
    """A refused mark, shown beside the form of ``reading_id``."""

    reading_id: int
    reason: str  # as typed
    message: str


@require_POST
@otp_required(login_url="portal:login")
def entered_in_error(request, patient_id: int, reading_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    reading = get_object_or_404(readings_visible_to(request.user), pk=reading_id, patient=patient)
    reason = request.POST.get("reason", "")
    try:
        mark_entered_in_error(reading=reading, reason=reason, actor=request.user)
    except DomainError as error:
        if error.field == "reason":
            refusal = ReadingRefusal(reading.pk, reason, error.message)
            return _render_chart(request, patient, reading_refusal=refusal)
        messages.error(request, error.message)
    else:
        messages.success(
            request,
            f"Reading {reading.pk} is marked entered in error. It stays in the record and the "
            "journal; it no longer counts in the figures, the plot or the alerts.",
        )
    # Back to the same range and table, at the reading.
    query = urlencode(
        {
            "days": chart_range(request.GET.get("days"))[0],
            "type": table_type(request.GET.get("type")),
        }
    )
    return HttpResponseRedirect(
        f"{reverse('portal:patient', args=[patient.pk])}?{query}#reading-{reading.pk}"
    )
