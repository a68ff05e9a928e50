"""The model card in the portal: where a proposal names the model that made it, the clinician
can read what that model is for, what it learnt from and how it was judged
(``models_ml.model_card``; the same document as ``GET /api/v1/models/<version>/card/``)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django_otp.decorators import otp_required

from models_ml.api.views import card_of
from models_ml.model_card import model_card


@otp_required(login_url="portal:login")
def card(request, version: str):
    """Staff read model records; the owners (``models_ml.own_models``) get the owners' card."""
    found = card_of(request.user, version)
    if found is None:
        raise Http404("No such model version.")
    model_version, audience = found
    return render(
        request,
        "portal/model_card.html",
        {"card": model_card(model_version, audience=audience), "audience": audience},
    )
