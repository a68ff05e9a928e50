"""The model card: generated from the record, served as JSON to staff, reachable from the
portal's review card; private figures stay with the model owners."""

from __future__ import annotations

import pytest

from clinicians.models import Recommendation
from models_ml import dataset_store, gates, loaders, training
from models_ml.model_card import OUT_OF_SCOPE, model_card
from models_ml.models import ModelVersion
from models_ml.protocol import PROTOCOL_VERSION
from tests.clinicians.test_oversight_api import make_recommendation
from tests.clinicians.test_portal import portal_client
from tests.conftest import bearer_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(monkeypatch, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(
        dataset_store, "EVALUATION_COHORT", {"n_patients": 150, "days": 112, "seed": 4242}
    )
    monkeypatch.setattr(gates, "SIMULATION", {**gates.SIMULATION, "n_patients": 80, "days": 84})
    loaders._cache.clear()
    from models_ml.dataset import simulated_training_set

    return training.train_model(seed=3, training=simulated_training_set(n_patients=160, seed=3))


def test_the_card_is_generated_from_the_record(trained):
    card = model_card(trained)

    assert card["model"]["version"] == trained.version
    assert card["model"]["artifact_sha256"] == trained.artifact_sha256
    assert card["out_of_scope"] == list(OUT_OF_SCOPE)
    assert card["evaluation"]["simulated"] is True and card["evaluation"]["evaluated"] is False
    make_up = card["training_data"]["make_up"]
    assert make_up["patients"] == trained.dataset.patient_count
    assert make_up["simulated_patients"] == make_up["patients"] and make_up["real_patients"] == 0
    assert sum(g["patients"] for g in make_up["sex"].values()) == make_up["patients"]
    # Library versions and input ranges were recorded when the model was registered.
    assert "scikit-learn" in card["software"]["libraries"]
    low, high = card["input_ranges"]["mean_systolic_7d"]
    assert 60 < low < 120 < high < 240


def test_figures_from_real_patients_are_for_owners_only(trained):
    """The record marks which figures were computed on real patients' rows outside ε
    (``metrics["visibility"]``); a clinician's card leaves them out, an owner's keeps them."""
    metrics = dict(trained.metrics)
    metrics["visibility"] = {
        **metrics["visibility"],
        "held_out_mae_systolic_mmhg": "model_owners",
    }
    ModelVersion.objects.filter(pk=trained.pk).update(
        metrics=metrics,
        privacy={
            "private": True,
            "epsilon": 2.5,
            "delta": 1e-4,
            "privacy_unit": "patient",
            "n_units": 160,
        },
    )
    trained.refresh_from_db()

    clinician_view = model_card(trained, audience="clinician")
    owner_view = model_card(trained, audience="owner")

    assert "held_out_mae_systolic_mmhg" not in clinician_view["evaluation"]["metrics"]
    assert "withheld" in clinician_view["evaluation"]["metrics"]
    assert clinician_view["evaluation"]["metrics"]["train_rows"] == metrics["train_rows"]
    assert "held_out_mae_systolic_mmhg" in owner_view["evaluation"]["metrics"]
    assert clinician_view["privacy"]["epsilon"] == 2.5 and "record" not in clinician_view["privacy"]


def test_a_waived_non_private_model_says_so(trained):
    waiver = {"reason": "pilot, IRB 2026-14", "by": "admin"}
    ModelVersion.objects.filter(pk=trained.pk).update(
        privacy={"private": False, "real_patients": 12, "waiver": waiver}
    )
    trained.refresh_from_db()

    privacy = model_card(trained)["privacy"]

    assert privacy == {"private": False, "real_patients": 12, "waiver": waiver}


def test_staff_read_the_card_over_the_api_and_patients_do_not(trained, clinician_a, patient_a):
    response = bearer_client(clinician_a).get(f"/api/v1/models/{trained.version}/card/")
    assert response.status_code == 200, response.content
    assert response.json()["model"]["version"] == trained.version

    listing = bearer_client(clinician_a).get("/api/v1/models/").json()
    assert listing[0]["card"] == f"/api/v1/models/{trained.version}/card/"

    assert bearer_client(patient_a.user).get("/api/v1/models/").status_code == 403
    missing = bearer_client(clinician_a).get("/api/v1/models/no-such-model/card/")
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "version"


def test_the_review_card_links_to_the_model_card(trained, clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    Recommendation.objects.filter(pk=rec.pk).update(model_version=trained.version)
    client = portal_client(clinician_a)
    link = f'href="/portal/models/{trained.version}/"'

    assert client.get(f"/portal/patients/{patient_a.pk}/").content.decode().count(link) == 1
    page = client.get(f"/portal/models/{trained.version}/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Intended use" in text and "Pregnancy" in text and trained.version in text
    assert client.get("/portal/models/no-such-model/").status_code == 404

    # A proposal of the rule-based protocol has no model and no card.
    Recommendation.objects.filter(pk=rec.pk).update(model_version=PROTOCOL_VERSION)
    chart = client.get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert "/portal/models/" not in chart and "rule-based protocol" in chart


def test_a_model_owner_sees_the_owners_card(trained):
    admin = UserFactory(role="model_owner")
    body = bearer_client(admin).get(f"/api/v1/models/{trained.version}/card/").json()
    assert "held_out_mae_systolic_mmhg" in body["evaluation"]["metrics"]
    assert Recommendation.objects.count() == 0
