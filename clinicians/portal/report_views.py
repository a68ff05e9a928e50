"""The visit report in the portal: ``/portal/visits/<id>/report/`` (HTML, for the care team) and
``/portal/visits/<id>/report.pdf`` (the same report as a PDF for the record). Each read is
decided and journalled by the controller (``clinicians.portal.visit_report.visit_report_for``);
another team's visit is a 404, journalled as a refusal."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_otp.decorators import otp_required

from clinicians.portal.report_pdf import care_team_pdf
from clinicians.portal.visit_report import (
    dip_text,
    figures_summary,
    surge_text,
    visit_report_for,
)
from core import authz
from core.errors import Forbidden, NotFound


def _report(request, visit_id: int, view: str):
    authz.authorize(request.user, "clinicians.use_portal")
    try:
        return visit_report_for(actor=request.user, visit_id=visit_id, view=view)
    except NotFound as error:
        raise Http404(error.message) from error


@require_GET
@otp_required(login_url="portal:login")
def visit_report(request, visit_id: int):
    try:
        report = _report(request, visit_id, "portal.visit_report")
    except Forbidden as error:
        return HttpResponse(error.message, status=403, content_type="text/plain")
    context = {
        "report": report,
        "p": report.patient,
        "numbers": figures_summary(report),
        "dip_text": dip_text(report),
        "surge_text": surge_text(report),
    }
    return render(request, "portal/visit_report.html", context)


@require_GET
@otp_required(login_url="portal:login")
def visit_report_pdf(request, visit_id: int):
    try:
        report = _report(request, visit_id, "portal.visit_report_pdf")
    except Forbidden as error:
        return HttpResponse(error.message, status=403, content_type="text/plain")
    response = HttpResponse(care_team_pdf(report), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="visit-{report.visit.pk}-report.pdf"'
    response["Cache-Control"] = "no-store"
    return response
