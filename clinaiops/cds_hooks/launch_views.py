"""The SMART EHR launch of the review page (``clinaiops.cds_hooks.launch``): thin views.

``/smart/launch`` and ``/smart/callback`` are opened by the EHR in the clinician's browser, before
any ClinAIOps sign-in (their credentials are the EHR's: ``iss`` registered, ``state`` of this
browser session, the code). ``/smart/review/<id>`` needs the portal sign-in with the second
factor: without it the browser is sent to the portal's login, with ``next`` this page.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_otp.decorators import otp_required

from clinaiops.cds_hooks import launch


def _refused(request: HttpRequest, refusal: launch.LaunchRefused) -> HttpResponse:
    return render(
        request,
        "cds_hooks/launch_refused.html",
        {"message": refusal.message, "field": refusal.field, "status": refusal.status},
        status=refusal.status,
    )


def _callback_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("smart-callback"))


@require_GET
def start(request: HttpRequest) -> HttpResponse:
    try:
        url = launch.start(
            iss=request.GET.get("iss", ""),
            launch=request.GET.get("launch", ""),
            redirect_uri=_callback_uri(request),
            session=request.session,
        )
    except launch.LaunchRefused as refusal:
        return _refused(request, refusal)
    return HttpResponseRedirect(url)


@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    try:
        row = launch.complete(
            state=request.GET.get("state", ""),
            code=request.GET.get("code", ""),
            error=request.GET.get("error", ""),
            redirect_uri=_callback_uri(request),
            session=request.session,
        )
    except launch.LaunchRefused as refusal:
        return _refused(request, refusal)
    # The review page itself sends an anonymous browser to the portal's sign-in.
    return HttpResponseRedirect(reverse("smart-review", args=[row.pk]))


@require_GET
@otp_required(login_url="portal:login")
def review(request: HttpRequest, launch_id: int) -> HttpResponse:
    try:
        row = launch.launched(launch_id, request.session, request.user)
    except launch.LaunchRefused as refusal:
        return _refused(request, refusal)
    url = reverse("portal:patient", args=[row.patient_id])
    if row.recommendation_id is not None:
        url += f"#rec-{row.recommendation_id}"
    return HttpResponseRedirect(url)
